//! The response cache against the real binary: an origin whose answers
//! each test scripts (status, fields, body), raw clients, curl over
//! HTTP/2; what RFC 9111 says is stored and served, row by row.

mod common;

use std::time::Duration;

use common::origin::{Answer, Origin};
use common::*;

fn cached_proxy(origin: &Origin, cache: &str, extra: &str) -> (Proxy, u16) {
    let admin = free_port();
    let proxy = Proxy::start(&format!(
        r#"admin = "127.0.0.1:{admin}"
workers = 1
cache = {{ {cache} }}
pools = {{ web = {{ servers = {{ "{}" }}, cache = true }} }}
{extra}
function route(req)
  if req.path:sub(1, 8) == "/bypass/" then req:no_cache() end
  if req.path:sub(1, 8) == "/shared/" then req:cache_key(req.path) end
  return "web"
end"#,
        origin.address
    ));
    (proxy, admin)
}

fn get(proxy: &Proxy, path: &str, fields: &str) -> Response {
    proxy.get_raw(&format!(
        "GET {path} HTTP/1.1\r\nHost: site.example\r\n{fields}Connection: close\r\n\r\n"
    ))
}

fn metric(admin_port: u16, name: &str) -> f64 {
    admin(admin_port, "GET", "/metrics", "")
        .text()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn a_fresh_response_is_served_from_the_cache() {
    let origin = Origin::start();
    origin.set(
        "/page",
        200,
        &[
            ("Cache-Control", "max-age=60"),
            ("ETag", "\"v1\""),
            ("Connection", "X-Hop"),
            ("X-Hop", "for this connection only"),
        ],
        "hello cache\n",
    );
    let (proxy, admin_port) = cached_proxy(&origin, "", "");
    let first = get(&proxy, "/page", "");
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "hello cache\n");
    assert!(
        first.header("cache-status").unwrap().contains("fwd=miss"),
        "{}",
        first.head
    );
    assert!(first.header("cache-status").unwrap().contains("stored"));
    let second = get(&proxy, "/page", "");
    assert_eq!(second.text(), "hello cache\n");
    assert_eq!(origin.hits("/page"), 1, "the second came from the cache");
    assert_eq!(second.header("cache-status").as_deref(), Some("rsp; hit"));
    assert!(second.header("age").is_some());
    assert_eq!(second.header("content-length").as_deref(), Some("12"));
    assert_eq!(second.header("etag").as_deref(), Some("\"v1\""));
    assert_eq!(
        second.header("x-hop"),
        None,
        "a field Connection names is not stored"
    );
    assert_eq!(
        second.header("x-hop"),
        None,
        "a field Connection names is not stored"
    );
    // HEAD is answered from the stored GET: its length, no body.
    let mut client = proxy.connect();
    client.send(b"HEAD /page HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n");
    let head = client.response(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("12"));
    assert!(head.body.is_empty());
    assert_eq!(origin.hits("/page"), 1);
    // A client's matching validator: 304 from the cache.
    let conditional = get(&proxy, "/page", "If-None-Match: W/\"v1\"\r\n");
    assert_eq!(conditional.status, 304, "{}", conditional.head);
    assert_eq!(origin.hits("/page"), 1);
    assert_eq!(metric(admin_port, "rsp_cache_hits_total"), 3.0);
    assert_eq!(metric(admin_port, "rsp_cache_stored_total"), 1.0);
    let page = admin(admin_port, "GET", "/stats", "").text();
    assert!(page.contains("cache: 3 hits, 1 misses"), "{page}");
    let json = admin(admin_port, "GET", "/stats.json", "").text();
    assert!(json.contains("\"hits\":3"), "{json}");
    assert!(metric(admin_port, "rsp_cache_bytes") > 12.0);
}

/// §3: one row per rule that keeps a response out of the cache.
#[test]
fn what_rfc_9111_keeps_out_of_the_cache() {
    let origin = Origin::start();
    let (proxy, _) = cached_proxy(&origin, "", "");
    // (path, the response's fields, the request's fields)
    type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let rows: &[Row] = &[
        (
            "/no-store",
            &[("Cache-Control", "max-age=60, no-store")],
            "",
        ),
        ("/private", &[("Cache-Control", "private, max-age=60")], ""),
        (
            "/cookie",
            &[("Cache-Control", "max-age=60"), ("Set-Cookie", "a=1")],
            "",
        ),
        ("/no-freshness", &[], ""),
        (
            "/vary-star",
            &[("Cache-Control", "max-age=60"), ("Vary", "*")],
            "",
        ),
        (
            "/authorized",
            &[("Cache-Control", "max-age=60")],
            "Authorization: Basic eDp5\r\n",
        ),
        (
            "/request-no-store",
            &[("Cache-Control", "max-age=60")],
            "Cache-Control: no-store\r\n",
        ),
        ("/bypass/x", &[("Cache-Control", "max-age=60")], ""),
        ("/invalid-max-age", &[("Cache-Control", "max-age=soon")], ""),
        ("/expired", &[("Expires", "0")], ""),
    ];
    for (path, fields, request_fields) in rows {
        origin.set(path, 200, fields, "body");
        for _ in 0..2 {
            assert_eq!(get(&proxy, path, request_fields).status, 200, "{path}");
        }
        assert_eq!(origin.hits(path), 2, "{path} was served from the cache");
    }
    // What may be stored with Authorization: public, s-maxage, must-revalidate.
    for (path, cache_control) in [
        ("/auth-public", "public, max-age=60"),
        ("/auth-s", "s-maxage=60"),
    ] {
        origin.set(path, 200, &[("Cache-Control", cache_control)], "body");
        for _ in 0..2 {
            get(&proxy, path, "Authorization: Basic eDp5\r\n");
        }
        assert_eq!(origin.hits(path), 1, "{path}");
    }
}

#[test]
fn freshness_ends_and_the_request_can_ask_for_fresher() {
    let origin = Origin::start();
    origin.set("/short", 200, &[("Cache-Control", "max-age=1")], "short");
    origin.set(
        "/aged",
        200,
        &[("Cache-Control", "max-age=60"), ("Age", "100")],
        "aged",
    );
    origin.set("/long", 200, &[("Cache-Control", "max-age=600")], "long");
    let (proxy, _) = cached_proxy(&origin, "", "");
    get(&proxy, "/short", "");
    get(&proxy, "/short", "");
    assert_eq!(origin.hits("/short"), 1);
    std::thread::sleep(Duration::from_millis(2100));
    get(&proxy, "/short", "");
    assert_eq!(origin.hits("/short"), 2, "stale after max-age");
    // An Age past max-age: stale on arrival.
    get(&proxy, "/aged", "");
    get(&proxy, "/aged", "");
    assert_eq!(origin.hits("/aged"), 2);
    // The client's no-cache and max-age=0 go to the origin, and refresh.
    get(&proxy, "/long", "");
    get(&proxy, "/long", "Cache-Control: no-cache\r\n");
    get(&proxy, "/long", "Cache-Control: max-age=0\r\n");
    get(&proxy, "/long", "Pragma: no-cache\r\n");
    assert_eq!(origin.hits("/long"), 4);
    get(&proxy, "/long", "");
    assert_eq!(origin.hits("/long"), 4);
    // only-if-cached with nothing stored: 504.
    assert_eq!(
        get(&proxy, "/nothing", "Cache-Control: only-if-cached\r\n").status,
        504
    );
    assert_eq!(origin.hits("/nothing"), 0);
}

#[test]
fn variants_by_vary_and_chunked_bodies() {
    let origin = Origin::start();
    origin.set_answer(
        "/varied",
        Answer {
            status: 200,
            fields: vec![
                ("Cache-Control".into(), "max-age=60".into()),
                ("Vary".into(), "Accept-Language, X-Custom".into()),
            ],
            body: vec![b'v'; 5000],
            chunked: true,
            ..Answer::default()
        },
    );
    let (proxy, _) = cached_proxy(&origin, "", "");
    for language in ["en", "fr", "en", "fr"] {
        let response = get(
            &proxy,
            "/varied",
            &format!("Accept-Language: {language}\r\nX-Custom: a\r\n"),
        );
        assert_eq!(response.body.len(), 5000);
        assert!(response.body.iter().all(|&byte| byte == b'v'));
    }
    assert_eq!(origin.hits("/varied"), 2, "one per language");
    let hit = get(&proxy, "/varied", "Accept-Language: en\r\nX-Custom: a\r\n");
    assert_eq!(
        hit.header("content-length").as_deref(),
        Some("5000"),
        "{}",
        hit.head
    );
    get(&proxy, "/varied", "Accept-Language: en\r\nX-Custom: b\r\n");
    get(&proxy, "/varied", "Accept-Language: en\r\n");
    assert_eq!(
        origin.hits("/varied"),
        4,
        "another X-Custom, or none, is another variant"
    );
    // Two lines of a field are one list: "en" then "fr" is not "en".
    get(
        &proxy,
        "/varied",
        "Accept-Language: en\r\nAccept-Language: fr\r\nX-Custom: a\r\n",
    );
    assert_eq!(origin.hits("/varied"), 5, "every line of a field counts");
    get(
        &proxy,
        "/varied",
        "Accept-Language: en, fr\r\nX-Custom: a\r\n",
    );
    assert_eq!(origin.hits("/varied"), 5, "the same list on one line");
}

#[test]
fn unsafe_methods_invalidate_and_purges_remove() {
    let origin = Origin::start();
    origin.set("/item", 200, &[("Cache-Control", "max-age=60")], "item");
    origin.set("/other", 200, &[("Cache-Control", "max-age=60")], "other");
    origin.set("/list/a", 200, &[("Cache-Control", "max-age=60")], "a");
    origin.set("/list/b", 200, &[("Cache-Control", "max-age=60")], "b");
    let (proxy, admin_port) = cached_proxy(&origin, "", "");
    for path in ["/item", "/other", "/list/a", "/list/b"] {
        get(&proxy, path, "");
    }
    // A POST to /item answered 303 with Location /other: both go.
    origin.set("/item", 303, &[("Location", "/other")], "");
    let post = proxy.get_raw(
        "POST /item HTTP/1.1\r\nHost: site.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, 303);
    origin.set("/item", 200, &[("Cache-Control", "max-age=60")], "item");
    get(&proxy, "/item", "");
    get(&proxy, "/other", "");
    assert_eq!((origin.hits("/item"), origin.hits("/other")), (3, 2));
    // Purges: one key, then a prefix.
    let purge = admin(
        admin_port,
        "POST",
        "/cache/purge",
        r#"{"key": "site.example/item"}"#,
    );
    assert_eq!(purge.status, 200, "{}", purge.text());
    get(&proxy, "/item", "");
    assert_eq!(origin.hits("/item"), 4);
    assert_eq!(
        admin(
            admin_port,
            "POST",
            "/cache/purge",
            r#"{"prefix": "site.example/list/"}"#
        )
        .status,
        200
    );
    get(&proxy, "/list/a", "");
    get(&proxy, "/list/b", "");
    assert_eq!((origin.hits("/list/a"), origin.hits("/list/b")), (2, 2));
    assert_eq!(admin(admin_port, "POST", "/cache/purge", "{}").status, 400);
    assert!(metric(admin_port, "rsp_cache_invalidated_total") >= 5.0);
}

#[test]
fn the_memory_bound_holds_and_large_objects_pass() {
    let origin = Origin::start();
    let big = "x".repeat(300 * 1024);
    for index in 0..8 {
        origin.set(
            &format!("/big/{index}"),
            200,
            &[("Cache-Control", "max-age=60")],
            &big,
        );
    }
    origin.set(
        "/huge",
        200,
        &[("Cache-Control", "max-age=60")],
        &"y".repeat(600 * 1024),
    );
    let (proxy, admin_port) = cached_proxy(&origin, r#"memory = "1m", max_object = "512k""#, "");
    for index in 0..8 {
        assert_eq!(
            get(&proxy, &format!("/big/{index}"), "").body.len(),
            big.len()
        );
    }
    let bytes = metric(admin_port, "rsp_cache_bytes");
    assert!(bytes > 0.0 && bytes <= 1024.0 * 1024.0, "{bytes}");
    assert!(metric(admin_port, "rsp_cache_evictions_total") >= 5.0);
    // The most recent is still there; the first went.
    get(&proxy, "/big/7", "");
    assert_eq!(origin.hits("/big/7"), 1);
    get(&proxy, "/big/0", "");
    assert_eq!(origin.hits("/big/0"), 2);
    for _ in 0..2 {
        assert_eq!(get(&proxy, "/huge", "").body.len(), 600 * 1024);
    }
    assert_eq!(origin.hits("/huge"), 2, "over max_object: not stored");
}

#[test]
fn scripts_choose_keys_and_lifetimes_and_targeted_fields_win() {
    let origin = Origin::start();
    origin.set(
        "/shared/logo",
        200,
        &[("Cache-Control", "max-age=60")],
        "logo",
    );
    origin.set("/styled.css", 200, &[], "css");
    origin.set(
        "/targeted",
        200,
        &[
            ("Cache-Control", "no-cache"),
            ("CDN-Cache-Control", "max-age=60"),
        ],
        "targeted",
    );
    let respond = r#"function respond(req, res)
  if req.path:match("%.css$") then res.ttl = 3600 end
end"#;
    let (proxy, _) = cached_proxy(&origin, "", respond);
    // One key for every host, as route() chose.
    for host in ["a.example", "b.example"] {
        proxy.get_raw(&format!(
            "GET /shared/logo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ));
    }
    assert_eq!(origin.hits("/shared/logo"), 1);
    get(&proxy, "/styled.css", "");
    get(&proxy, "/styled.css", "");
    assert_eq!(origin.hits("/styled.css"), 1, "res.ttl stored it");
    let first = get(&proxy, "/targeted", "");
    assert_eq!(first.header("cdn-cache-control"), None, "not passed on");
    assert_eq!(first.header("cache-control").as_deref(), Some("no-cache"));
    get(&proxy, "/targeted", "");
    assert_eq!(
        origin.hits("/targeted"),
        1,
        "CDN-Cache-Control overrides Cache-Control"
    );
}

#[test]
fn http2_clients_share_the_cache() {
    let origin = Origin::start();
    origin.set("/h2", 200, &[("Cache-Control", "max-age=60")], "over h2\n");
    let admin_port = free_port();
    let proxy = Proxy::start_h2c(&format!(
        r#"admin = "127.0.0.1:{admin_port}"
workers = 1
cache = {{ }}
pools = {{ web = {{ servers = {{ "{}" }}, cache = true }} }}
function route(req) return "web" end"#,
        origin.address
    ));
    get(&proxy, "/h2", "");
    let url = format!("http://{}/h2", proxy.address);
    let output = std::process::Command::new("curl")
        .args([
            "-s",
            "-i",
            "--http2-prior-knowledge",
            "-H",
            "Host: site.example",
            &url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("cache-status: rsp; hit"), "{text}");
    assert!(text.ends_with("over h2\n"), "{text}");
    assert_eq!(origin.hits("/h2"), 1);
}

/// §4.3: a stale entry with a validator is revalidated; the origin's 304
/// makes it fresh again, and the client gets the stored body.
#[test]
fn a_stale_entry_is_revalidated_with_its_validator() {
    let origin = Origin::start();
    origin.set(
        "/validated",
        200,
        &[
            ("Cache-Control", "max-age=1"),
            ("ETag", "\"abc\""),
            ("X-Version", "1"),
        ],
        "stored body",
    );
    let (proxy, admin_port) = cached_proxy(&origin, "", "");
    assert_eq!(get(&proxy, "/validated", "").text(), "stored body");
    std::thread::sleep(Duration::from_millis(2100));
    // The origin now sends 304 for the ETag, with a new field.
    origin.set(
        "/validated",
        200,
        &[
            ("Cache-Control", "max-age=60"),
            ("ETag", "\"abc\""),
            ("X-Version", "2"),
        ],
        "a body the origin would send",
    );
    let revalidated = get(&proxy, "/validated", "");
    assert_eq!(revalidated.status, 200, "{}", revalidated.head);
    assert_eq!(revalidated.text(), "stored body");
    assert_eq!(
        revalidated.header("x-version").as_deref(),
        Some("2"),
        "updated by the 304"
    );
    assert!(
        revalidated
            .header("cache-status")
            .unwrap()
            .contains("fwd-status=304")
    );
    let heads = origin.heads("/validated");
    assert_eq!(heads.len(), 2);
    assert!(heads[1].contains("If-None-Match: \"abc\""), "{}", heads[1]);
    // Fresh again for max-age=60: no third request.
    assert_eq!(get(&proxy, "/validated", "").text(), "stored body");
    assert_eq!(origin.hits("/validated"), 2);
    assert_eq!(metric(admin_port, "rsp_cache_revalidations_total"), 1.0);
}

/// RFC 5861's stale-if-error, and `serve_stale_on_error`: a stale entry
/// answers when the origin answers 5xx or is down.
#[test]
fn stale_entries_keep_the_site_up() {
    let origin = Origin::start();
    origin.set(
        "/sie",
        200,
        &[("Cache-Control", "max-age=1, stale-if-error=60")],
        "kept",
    );
    origin.set("/plain", 200, &[("Cache-Control", "max-age=1")], "plain");
    origin.set(
        "/strict",
        200,
        &[("Cache-Control", "max-age=1, must-revalidate")],
        "strict",
    );
    let (proxy, admin_port) = cached_proxy(&origin, "", "");
    for path in ["/sie", "/plain", "/strict"] {
        get(&proxy, path, "");
    }
    std::thread::sleep(Duration::from_millis(2100));
    origin.set("/sie", 503, &[], "down for maintenance");
    let stale = get(&proxy, "/sie", "");
    assert_eq!(
        (stale.status, stale.text().as_str()),
        (200, "kept"),
        "{}",
        stale.head
    );
    assert!(stale.header("cache-status").unwrap().contains("fwd=stale"));
    // Without stale-if-error the 5xx passes on.
    origin.set("/plain", 503, &[], "down");
    assert_eq!(get(&proxy, "/plain", "").status, 503);
    // Down altogether: 502, but the entry with stale-if-error answers.
    origin.set_down(true);
    assert_eq!(get(&proxy, "/sie", "").text(), "kept");
    assert_eq!(get(&proxy, "/plain", "").status, 502);
    assert!(metric(admin_port, "rsp_cache_stale_total") >= 2.0);

    // serve_stale_on_error: any stale entry but one that forbids it.
    let origin = Origin::start();
    origin.set("/any", 200, &[("Cache-Control", "max-age=1")], "any");
    origin.set(
        "/strict",
        200,
        &[("Cache-Control", "max-age=1, must-revalidate")],
        "strict",
    );
    let (proxy, _) = cached_proxy(&origin, "serve_stale_on_error = true", "");
    get(&proxy, "/any", "");
    get(&proxy, "/strict", "");
    std::thread::sleep(Duration::from_millis(2100));
    origin.set_down(true);
    assert_eq!(get(&proxy, "/any", "").text(), "any");
    assert_eq!(
        get(&proxy, "/strict", "").status,
        502,
        "must-revalidate forbids it"
    );
}

/// Concurrent misses of one key: one request goes to the origin, the
/// others wait for its answer and are served from the store; an answer
/// that is not stored sends the waiting ones on at once.
#[test]
fn concurrent_misses_are_collapsed_into_one_fetch() {
    raise_open_file_limit();
    let origin = Origin::start();
    let slow = |cache_control: &str| Answer {
        status: 200,
        fields: vec![("Cache-Control".into(), cache_control.into())],
        body: vec![b'c'; 20_000],
        delay: Duration::from_millis(300),
        ..Answer::default()
    };
    origin.set_answer("/popular", slow("max-age=60"));
    origin.set_answer("/private", slow("private"));
    let (proxy, admin_port) = cached_proxy(&origin, "", "");
    let proxy = std::sync::Arc::new(proxy);
    for path in ["/popular", "/private"] {
        let clients: Vec<_> = (0..100)
            .map(|_| {
                let proxy = proxy.clone();
                std::thread::spawn(move || get(&proxy, path, "").body.len())
            })
            .collect();
        for client in clients {
            assert_eq!(client.join().unwrap(), 20_000, "{path}");
        }
    }
    assert_eq!(origin.hits("/popular"), 1, "one fetch for 100 clients");
    assert_eq!(origin.hits("/private"), 100, "not stored: each went on");
    let collapsed = metric(admin_port, "rsp_cache_collapsed_total");
    let hits = metric(admin_port, "rsp_cache_hits_total");
    assert!(collapsed >= 50.0, "{collapsed}");
    assert!(collapsed + hits >= 99.0, "{collapsed} + {hits}");
}

/// RFC 9110 §14: a single range of a stored response is answered 206
/// from the store, one past its end 416; several, or an If-Range that
/// does not match, get the whole response.
#[test]
fn ranges_are_answered_from_the_store() {
    let origin = Origin::start();
    origin.set(
        "/file",
        200,
        &[("Cache-Control", "max-age=60"), ("ETag", "\"f1\"")],
        "0123456789",
    );
    let (proxy, _) = cached_proxy(&origin, "", "");
    get(&proxy, "/file", "");
    let cases = [
        ("bytes=2-5", 206, "2345", Some("bytes 2-5/10")),
        ("bytes=7-", 206, "789", Some("bytes 7-9/10")),
        ("bytes=-3", 206, "789", Some("bytes 7-9/10")),
        ("bytes=5-100", 206, "56789", Some("bytes 5-9/10")),
        ("bytes=10-", 416, "", Some("bytes */10")),
        ("bytes=1-2,4-5", 200, "0123456789", None),
        ("bytes=5-2", 200, "0123456789", None),
        ("lines=1-2", 200, "0123456789", None),
    ];
    for (range, status, body, content_range) in cases {
        let response = get(&proxy, "/file", &format!("Range: {range}\r\n"));
        assert_eq!(response.status, status, "{range}: {}", response.head);
        assert_eq!(response.text(), body, "{range}");
        assert_eq!(
            response.header("content-range").as_deref(),
            content_range,
            "{range}"
        );
    }
    let matching = get(&proxy, "/file", "Range: bytes=0-1\r\nIf-Range: \"f1\"\r\n");
    assert_eq!((matching.status, matching.text().as_str()), (206, "01"));
    let stale = get(&proxy, "/file", "Range: bytes=0-1\r\nIf-Range: \"old\"\r\n");
    assert_eq!(stale.status, 200);
    assert_eq!(origin.hits("/file"), 1, "all from the store");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The cache's memory holds in the process's RSS: 20 MB of distinct
/// objects through a cache of 8 MB leave rsp within the 8 MB (plus what
/// its allocator keeps), every object served whole.
#[test]
fn the_process_stays_within_the_cache_memory() {
    let origin = Origin::start();
    let object = "r".repeat(512 * 1024);
    for index in 0..40 {
        origin.set(
            &format!("/obj/{index}"),
            200,
            &[("Cache-Control", "max-age=600")],
            &object,
        );
    }
    let (proxy, admin_port) = cached_proxy(&origin, r#"memory = "8m", max_object = "1m""#, "");
    let fresh = rss_kib(proxy.child.id());
    for round in 0..2 {
        for index in 0..40 {
            let response = get(&proxy, &format!("/obj/{index}"), "");
            assert_eq!(
                response.body.len(),
                object.len(),
                "round {round}, object {index}"
            );
        }
    }
    let bytes = metric(admin_port, "rsp_cache_bytes");
    assert!(bytes <= 8.0 * 1024.0 * 1024.0, "{bytes}");
    let loaded = rss_kib(proxy.child.id());
    println!("RSS: {fresh} KiB fresh, {loaded} KiB after 40 MB through an 8 MB cache");
    assert!(
        loaded < fresh + 16 * 1024,
        "{fresh} KiB fresh, {loaded} KiB loaded"
    );
}

/// Review findings, each a regression test: a request that waited for
/// another's fetch is not answered with the 304 of validators rsp added;
/// res.ttl gives a lifetime but does not store what must not be; each
/// pool's responses are its own.
#[test]
fn waiting_ttl_and_pools_hold_their_rules() {
    let origin = Origin::start();
    origin.set_answer(
        "/validated",
        Answer {
            status: 200,
            fields: vec![
                ("Cache-Control".into(), "no-cache".into()),
                ("ETag".into(), "\"v1\"".into()),
            ],
            body: b"whole body".to_vec(),
            delay: Duration::from_millis(300),
            ..Answer::default()
        },
    );
    origin.set(
        "/secret.css",
        200,
        &[
            ("Cache-Control", "private"),
            ("Set-Cookie", "session=SECRET"),
        ],
        "css",
    );
    let other = Origin::start();
    origin.set("/same", 200, &[("Cache-Control", "max-age=60")], "from web");
    other.set(
        "/same",
        200,
        &[("Cache-Control", "max-age=60")],
        "from admin",
    );
    let admin = free_port();
    let proxy = Proxy::start(&format!(
        r#"admin = "127.0.0.1:{admin}"
workers = 1
cache = {{ }}
pools = {{ web = {{ servers = {{ "{}" }}, cache = true }}, internal = {{ servers = {{ "{}" }}, cache = true }} }}
function route(req)
  if req:header("X-Internal") then return "internal" end
  return "web"
end
function respond(req, res)
  if req.path:match("%.css$") then res.ttl = 3600 end
end"#,
        origin.address, other.address
    ));
    let proxy = std::sync::Arc::new(proxy);
    assert_eq!(get(&proxy, "/validated", "").status, 200);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let proxy = proxy.clone();
            std::thread::spawn(move || get(&proxy, "/validated", ""))
        })
        .collect();
    for client in clients {
        let response = client.join().unwrap();
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "whole body"),
            "{}",
            response.head
        );
    }
    for _ in 0..2 {
        let response = get(&proxy, "/secret.css", "Authorization: Bearer alice\r\n");
        assert_eq!(
            response.header("set-cookie").as_deref(),
            Some("session=SECRET")
        );
    }
    let anonymous = get(&proxy, "/secret.css", "");
    assert!(
        anonymous.header("cache-status").unwrap().contains("fwd="),
        "{}",
        anonymous.head
    );
    assert_eq!(
        origin.hits("/secret.css"),
        3,
        "res.ttl does not store a private answer"
    );
    assert_eq!(get(&proxy, "/same", "").text(), "from web");
    assert_eq!(
        get(&proxy, "/same", "X-Internal: 1\r\n").text(),
        "from admin"
    );
    assert_eq!(get(&proxy, "/same", "").text(), "from web");
}
