//! Hostile tests of the process-wide script state: live maps and their
//! admin API, dictionaries, limiters, `rsp.log`. Each test names what it
//! attacks; the `#[ignore]`d ones are open findings (run them with
//! `--ignored` to see them fail).

mod common;

use std::path::Path;

use common::{Client, Proxy, admin, check_config, free_port, temp_file};

fn settings(admin: u16, map: &Path, route: &str) -> String {
    format!(
        r#"admin = {{ addr = "127.0.0.1:{admin}" }}
backends = {{ "127.0.0.1:1" }}
maps = {{ webapps = {{ file = {map:?} }} }}
function route(req)
{route}
end"#
    )
}

/// The map's value for the request's Host, as a local reply.
const ECHO_HOST: &str = r#"  local value = rsp.map("webapps"):get(req.host)
  return { status = 200, body = tostring(value) .. "\n" }"#;

/// A key starting with `#` was answered 200 and written as
/// `#key value`, a comment: the next start (or `rsp --check`) drops it, so
/// an acknowledged change was lost. It must be refused instead, by PUT and
/// by POST alike.
#[test]
fn a_key_that_would_be_written_as_a_comment_is_refused() {
    let map = temp_file("hash.map", "a.example one\n");
    let port = free_port();
    let _proxy = Proxy::start(&settings(port, &map, ECHO_HOST));
    let put = admin(port, "PUT", "/maps/webapps/%23secret", "value");
    assert_eq!(put.status, 400, "{}", put.text());
    let post = admin(
        port,
        "POST",
        "/maps/webapps",
        "{\"#x\": \"y\", \"b\": \"c\"}",
    );
    assert_eq!(post.status, 400, "{}", post.text());
    // Nothing changed, in memory or in the file.
    assert_eq!(
        admin(port, "GET", "/maps/webapps", "").text(),
        "{\"a.example\":\"one\"}\n"
    );
    assert_eq!(std::fs::read_to_string(&map).unwrap(), "a.example one\n");
    // A '#' later in a key is no comment and is kept, across a restart.
    let put = admin(port, "PUT", "/maps/webapps/a%23b", "value");
    assert_eq!(put.status, 200, "{}", put.text());
    drop(_proxy);
    let port = free_port();
    let _proxy = Proxy::start(&settings(port, &map, ECHO_HOST));
    assert_eq!(
        admin(port, "GET", "/maps/webapps/a%23b", "").text(),
        "value\n"
    );
}

/// Two maps of one file: each writes its own entries over the other's, so
/// a PUT to one map, answered 200, is gone from the file after a PUT to
/// the other (and from both maps at the next start). The config must be
/// refused.
#[test]
fn two_maps_of_one_file_are_refused() {
    let map = temp_file("shared.map", "");
    let config = temp_file(
        "shared.lua",
        &format!(
            "listen = \"127.0.0.1:1\"\nbackends = {{ \"127.0.0.1:2\" }}\n\
             maps = {{ one = {{ file = {map:?} }}, two = {{ file = {map:?} }} }}\n"
        ),
    );
    let (status, output) = check_config(&config);
    assert_eq!(status, Some(1), "{output}");
    assert!(output.contains("same file"), "{output}");
    // Two spellings of one file that does not exist yet (it is made at
    // start) are one file too.
    let dir = std::env::temp_dir();
    let missing = format!("rsp-hostile-{}-missing.map", std::process::id());
    let config = temp_file(
        "spelled.lua",
        &format!(
            "listen = \"127.0.0.1:1\"\nbackends = {{ \"127.0.0.1:2\" }}\n\
             maps = {{ one = {{ file = {:?} }}, two = {{ file = {:?} }} }}\n",
            dir.join(&missing),
            dir.join(".").join(&missing)
        ),
    );
    let (status, output) = check_config(&config);
    assert_eq!(status, Some(1), "{output}");
    assert!(output.contains("same file"), "{output}");
}

/// `map:get` of a key that is not UTF-8 (a script's own bytes, or a
/// header's obs-text) cannot match any key of the map: it is nil, not an
/// error that fails route() with a 500.
#[test]
fn a_map_read_with_a_key_that_is_not_utf8_is_nil() {
    let map = temp_file("bytes.map", "a.example one\n");
    let port = free_port();
    let proxy = Proxy::start(&settings(
        port,
        &map,
        r#"  local value = rsp.map("webapps"):get("\255\254")
  return { status = 200, body = tostring(value) .. "\n" }"#,
    ));
    let response = proxy.get("/");
    assert_eq!(response.status, 200, "{}", proxy.log());
    assert_eq!(response.text(), "nil\n");
}

/// The operator edits the map file by hand and reloads: rsp keeps serving
/// the old entries (a map of the same file "is the same map"), and the
/// next admin PUT writes the old entries back over the edit, silently. A
/// restart would have read the edit. The reload must read the file (which
/// holds every acknowledged change, so nothing is lost by reading it).
#[test]
fn a_reload_reads_a_map_file_edited_by_hand() {
    let map = temp_file("edited.map", "a.example one\n");
    let port = free_port();
    let proxy = Proxy::start(&settings(port, &map, ECHO_HOST));
    assert_eq!(
        proxy
            .get_raw("GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
            .text(),
        "one\n"
    );
    std::fs::write(&map, "a.example two\nb.example three\n").unwrap();
    proxy.reload(&settings(port, &map, ECHO_HOST));
    proxy.wait_for_log("reload done", 1);
    assert_eq!(
        proxy
            .get_raw("GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
            .text(),
        "two\n"
    );
    let put = admin(port, "PUT", "/maps/webapps/c.example", "four");
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        std::fs::read_to_string(&map).unwrap(),
        "a.example two\nb.example three\nc.example four\n"
    );
}

/// A PUT whose body is chunked, or longer than the client buffer holds, is
/// answered "a value is 1 to 4096 bytes" (the body was never read: it is
/// taken as empty). The value was not empty; the answer should say what
/// is wrong: 411 Length Required for chunked, 413 for too long.
#[test]
fn unread_admin_bodies_are_named_as_such() {
    let map = temp_file("bodies.map", "");
    let port = free_port();
    let _proxy = Proxy::start(&settings(port, &map, ECHO_HOST));
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    client.send(
        format!(
            "PUT /maps/webapps/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Rsp-Admin: 1\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    let chunked = client.response(false);
    assert_eq!(chunked.status, 411, "{}", chunked.text());
    let long = admin(port, "PUT", "/maps/webapps/k", &"v".repeat(300 * 1024));
    assert_eq!(long.status, 413, "{}", long.text());
}

/// `rate = 1, per = "day", burst = 300000`: (burst - 1) × a day in
/// nanoseconds was past a u64, the tolerance saturated, and the limiter
/// never refused. Such a bucket (over 100 years deep) is a config error
/// now, and the deepest allowed one still limits.
#[test]
fn a_huge_burst_at_a_slow_rate_still_limits() {
    use rsp::config::LimitConfig;
    use rsp::state::{Limiter, Verdict};
    let config = temp_file(
        "burst.lua",
        "listen = \"127.0.0.1:1\"\nbackends = { \"127.0.0.1:2\" }\n\
         limits = { slow = { rate = 1, per = \"day\", burst = 300000 } }\n",
    );
    let (status, output) = common::check_config(&config);
    assert_eq!(status, Some(1), "{output}");
    assert!(output.contains("over 100 years deep"), "{output}");
    let limiter = Limiter::new(LimitConfig {
        name: "slow".into(),
        rate: 1,
        per: std::time::Duration::from_secs(86_400),
        burst: 36_000,
        max_keys: 10,
        max_bytes: usize::MAX,
    });
    let now = 1_000_000_000;
    for request in 0..36_000 {
        assert_eq!(limiter.check(b"k", now), Verdict::Allowed, "{request}");
    }
    assert!(matches!(limiter.check(b"k", now), Verdict::Refused { .. }));
}

/// A map entry naming rsp's own listener (one PUT away) makes one request
/// a forwarding loop: rsp connects to itself until it runs out of file
/// descriptors (EMFILE, accepts paused), and the loop's ~1,000 idle
/// connection pairs stay open until the keep-alive timeouts. rsp should
/// see its own hop (a Via-style header, or its listen addresses) and
/// answer 508 (or 502) at once.
#[test]
fn a_map_entry_naming_rsp_itself_is_no_loop() {
    let map = temp_file("loop.map", "");
    let port = free_port();
    let proxy = Proxy::start(&settings(
        port,
        &map,
        r#"  local server = rsp.map("webapps"):get(req.host)
  if server then return server end
  return { status = 200, body = "default\n" }"#,
    ));
    let put = admin(
        port,
        "PUT",
        "/maps/webapps/loop.example",
        &proxy.address.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let started = std::time::Instant::now();
    let response =
        proxy.get_raw("GET / HTTP/1.1\r\nHost: loop.example\r\nConnection: close\r\n\r\n");
    assert_eq!(response.status, 508, "{}", response.text());
    assert!(
        !proxy.log().contains("Too many open files"),
        "rsp ran out of file descriptors in {:?}",
        started.elapsed()
    );
}

/// A map file that is a symbolic link (as configuration management makes
/// them): a PUT renamed its temporary file over the link, so the link
/// became a plain file and the file it named kept the old map. The link
/// must stay, and the file it names take the change.
#[test]
fn a_map_file_that_is_a_symbolic_link_stays_one() {
    let real = temp_file("real.map", "a.example one\n");
    let link = real.with_file_name(format!(
        "{}-link.map",
        real.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let port = free_port();
    let _proxy = Proxy::start(&settings(port, &link, ECHO_HOST));
    let put = admin(port, "PUT", "/maps/webapps/b.example", "two");
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        "a.example one\nb.example two\n"
    );
}

/// A PUT with `Expect: 100-continue` (curl sends it for big bodies, and
/// other clients wait for it before sending any): the admin port never
/// sends `100 Continue`, so such a client waits until its own fallback or
/// rsp's 408 after the head timeout.
#[test]
#[ignore = "finding: the admin port never answers Expect: 100-continue"]
fn an_admin_put_expecting_100_continue_gets_it() {
    let map = temp_file("expect.map", "");
    let port = free_port();
    let _proxy = Proxy::start(&settings(port, &map, ECHO_HOST));
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    client
        .stream()
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    client.send(
        format!(
            "PUT /maps/webapps/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Rsp-Admin: 1\r\n\
             Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        .as_bytes(),
    );
    let mut first = [0u8; 25];
    let read = std::io::Read::read(&mut client.stream(), &mut first).unwrap_or(0);
    assert!(
        first[..read].starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&first[..read])
    );
}
