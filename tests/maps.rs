//! Live maps: routing from a file of "key value" lines, changed over the
//! admin API with nothing lost, seen by every worker. Against the real
//! binary, a real `ab` load and `kill -9`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::thread;

use std::path::Path;

use common::{Backend, Client, Proxy, admin, check_config, ensure_package, free_port, temp_file};

/// The PythonAnywhere shape: each web app's domain mapped to its backend.
fn settings(admin: u16, map: &std::path::Path, backend: &Backend, workers: usize) -> String {
    format!(
        r#"workers = {workers}
admin = {{ addr = "127.0.0.1:{admin}" }}
backends = {{ "{}" }}
maps = {{ webapps = {{ file = {map:?} }} }}
function route(req)
  local server = rsp.map("webapps"):get(req.host)
  if server then return server end
  return "default"
end"#,
        backend.address
    )
}

fn get_host(proxy: &Proxy, host: &str) -> common::Response {
    proxy.get_raw(&format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ))
}

#[test]
fn a_put_is_seen_by_every_worker_and_survives_kill_9() {
    let default = Backend::start("default");
    let app = Backend::start("app");
    let map = temp_file("webapps.map", "");
    let port = free_port();
    let mut proxy = Proxy::start(&settings(port, &map, &default, 2));
    assert_eq!(
        get_host(&proxy, "user.example").text(),
        "hello from default"
    );
    let put = admin(
        port,
        "PUT",
        "/maps/webapps/User.Example",
        &app.address.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(
        std::fs::read_to_string(&map)
            .unwrap()
            .contains(&format!("user.example {}", app.address))
    );
    // New connections, spread over both workers, all see it; keys are
    // compared case-insensitively.
    for host in ["user.example", "USER.example", "user.EXAMPLE:80"] {
        // (req.host has no port: "user.EXAMPLE:80" is the same key.)
        for _ in 0..4 {
            assert_eq!(get_host(&proxy, host).text(), "hello from app", "{host}");
        }
    }
    // A server of no pool is counted as unlisted.
    let stats = admin(port, "GET", "/stats.json", "").text();
    assert!(
        stats.contains(&format!("\"address\":\"{}\"", app.address)),
        "{stats}"
    );
    // kill -9, then a new rsp on the same file: the entry is there.
    proxy.signal(libc::SIGKILL);
    let _ = proxy.child.wait();
    let port = free_port();
    let proxy = Proxy::start(&settings(port, &map, &default, 1));
    assert_eq!(get_host(&proxy, "user.example").text(), "hello from app");
    assert_eq!(
        admin(port, "GET", "/maps/webapps/user.example", "").text(),
        format!("{}\n", app.address)
    );
}

#[test]
fn bad_changes_are_refused_and_change_nothing() {
    let default = Backend::start("default");
    let dir = std::env::temp_dir().join(format!("rsp-maps-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let map = dir.join("webapps.map");
    std::fs::write(&map, "a.example 127.0.0.1:1\n").unwrap();
    let port = free_port();
    let _proxy = Proxy::start(&settings(port, &map, &default, 1));
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("PUT", "/maps/nope/k", "v", 404, "no map named \"nope\""),
        (
            "PUT",
            "/maps/webapps/k",
            &"v".repeat(5000),
            400,
            "a value is 1 to 4096 bytes",
        ),
        (
            "PUT",
            "/maps/webapps/k",
            "",
            400,
            "a value is 1 to 4096 bytes",
        ),
        ("PUT", "/maps/webapps/%ff", "v", 400, "not UTF-8"),
        ("PUT", "/maps/webapps/k%20x", "v", 400, "no spaces"),
        ("POST", "/maps/webapps", "[1]", 400, "JSON object"),
        ("POST", "/maps/webapps", "{\"k\": 1}", 400, "not a string"),
        ("DELETE", "/maps/webapps/missing", "", 404, "has no key"),
        (
            "PATCH",
            "/maps/webapps/k",
            "v",
            405,
            "takes GET, HEAD, PUT, DELETE",
        ),
    ];
    for (method, path, body, status, text) in cases {
        let response = admin(port, method, path, body);
        assert_eq!(
            response.status,
            *status,
            "{method} {path}: {}",
            response.text()
        );
        assert!(
            response.text().contains(text),
            "{method} {path}: {}",
            response.text()
        );
    }
    // Without the change header: 403, as drains are.
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    client.send(
        format!("PUT /maps/webapps/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv").as_bytes(),
    );
    assert_eq!(client.response(false).status, 403);
    // The file cannot be written: 500, and the map is as it was.
    std::fs::remove_dir_all(&dir).unwrap();
    let response = admin(port, "PUT", "/maps/webapps/k", "127.0.0.1:2");
    assert_eq!(response.status, 500, "{}", response.text());
    assert!(
        response.text().contains("cannot write"),
        "{}",
        response.text()
    );
    assert_eq!(
        admin(port, "GET", "/maps/webapps", "").text(),
        "{\"a.example\":\"127.0.0.1:1\"}\n"
    );
    // A whole map replaced at once.
    std::fs::create_dir_all(&dir).unwrap();
    let response = admin(
        port,
        "POST",
        "/maps/webapps",
        "{\"B.example\": \"web\", \"c.example\": \"127.0.0.1:3\"}",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        std::fs::read_to_string(&map).unwrap(),
        "b.example web\nc.example 127.0.0.1:3\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_names_the_first_bad_line_of_a_map_file() {
    let map = temp_file("bad.map", "# apps\ngood.example 127.0.0.1:1\nbad.example\n");
    let config = temp_file(
        "maps.lua",
        &format!(
            "listen = \"127.0.0.1:1\"\nbackends = {{ \"127.0.0.1:2\" }}\nmaps = {{ apps = {{ file = {map:?} }} }}\n"
        ),
    );
    let (status, output) = check_config(&config);
    assert_eq!(status, Some(1), "{output}");
    assert!(
        output.contains("bad.map:3: a value is 1 to 4096 bytes"),
        "{output}"
    );
}

#[test]
fn a_thousand_concurrent_puts_under_load_lose_nothing() {
    ensure_package("ab", "apache2-utils");
    let default = Backend::start("default");
    let map = temp_file("load.map", "");
    let port = free_port();
    let proxy = Proxy::start(&settings(port, &map, &default, 2));
    let url = format!("http://{}/", proxy.address);
    let load = thread::spawn(move || {
        Command::new("ab")
            .args(["-q", "-k", "-n", "20000", "-c", "20", &url])
            .output()
            .unwrap()
    });
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..10)
        .map(|_| {
            let next = next.clone();
            thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n >= 1000 {
                        return;
                    }
                    let response = admin(
                        port,
                        "PUT",
                        &format!("/maps/webapps/app{n}.example"),
                        &format!("127.0.0.1:{}", 10_000 + n),
                    );
                    assert_eq!(response.status, 200, "{}", response.text());
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let output = load.join().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("Complete requests:      20000"), "{report}");
    assert!(report.contains("Failed requests:        0"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    let lines = std::fs::read_to_string(&map).unwrap();
    assert_eq!(lines.lines().count(), 1000);
    let all = admin(port, "GET", "/maps/webapps", "").text();
    assert_eq!(all.matches(".example\":").count(), 1000);
}

/// The README's hosting example: an app's domain mapped to its machine
/// with one PUT, its reload URL routed by the domain in its path.
#[test]
fn the_readme_hosting_example_routes_apps_and_their_reload_urls() {
    let coming_soon = Backend::start("coming soon");
    let machine = Backend::start("machine 42");
    let map = temp_file("hosting.map", "");
    let port = free_port();
    let proxy = Proxy::start(&format!(
        r#"admin = {{ addr = "127.0.0.1:{port}" }}
pools = {{ default = {{ servers = {{ "{}" }} }} }}
maps = {{ webapps = {{ file = {map:?} }} }}
limits = {{ per_ip = {{ rate = 50, per = "second", burst = 100 }} }}
function route(req)
  local ok, retry_after = rsp.limit("per_ip", req.client_ip)
  if not ok then return {{ status = 429, headers = {{ ["Retry-After"] = retry_after }} }} end
  local domain = req.path:match("^/reload/([^/]+)$")
  local server = rsp.map("webapps"):get(domain or req.host)
  if server then return server end
  return "default"
end"#,
        coming_soon.address
    ));
    assert_eq!(
        get_host(&proxy, "www.example.com").text(),
        "hello from coming soon"
    );
    let put = admin(
        port,
        "PUT",
        "/maps/webapps/www.example.com",
        &machine.address.to_string(),
    );
    assert_eq!(put.status, 200);
    assert_eq!(
        get_host(&proxy, "www.example.com").text(),
        "hello from machine 42"
    );
    let reload = proxy.get_raw(
        "GET /reload/WWW.example.com HTTP/1.1\r\nHost: panel.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reload.text(), "hello from machine 42");
    assert!(
        machine
            .heads()
            .last()
            .unwrap()
            .starts_with("GET /reload/WWW.example.com ")
    );
}

#[test]
fn a_map_holds_at_most_its_max_keys() {
    let default = Backend::start("default");
    let map = temp_file("small.map", "a 1\nb 2\n");
    let port = free_port();
    let _proxy = Proxy::start(&settings(port, &map, &default, 1).replace(
        &format!("file = {map:?} }}"),
        &format!("file = {map:?}, max_keys = 3 }}"),
    ));
    assert_eq!(admin(port, "PUT", "/maps/webapps/c", "3").status, 200);
    let full = admin(port, "PUT", "/maps/webapps/d", "4");
    assert_eq!(full.status, 507, "{}", full.text());
    // An existing key may still change.
    assert_eq!(admin(port, "PUT", "/maps/webapps/a", "10").status, 200);
    let replaced = admin(
        port,
        "POST",
        "/maps/webapps",
        r#"{"w":"1","x":"2","y":"3","z":"4"}"#,
    );
    assert_eq!(replaced.status, 413, "{}", replaced.text());
    assert_eq!(std::fs::read_to_string(&map).unwrap(), "a 10\nb 2\nc 3\n");
    // A file over max_keys is a config error.
    let config = temp_file(
        "small.lua",
        &format!(
            "listen = \"127.0.0.1:1\"\nbackends = {{ \"127.0.0.1:2\" }}\nmaps = {{ m = {{ file = {map:?}, max_keys = 2 }} }}\n"
        ),
    );
    let (status, output) = check_config(&config);
    assert_eq!(status, Some(1));
    assert!(
        output.contains("3 keys, over the map's max_keys of 2"),
        "{output}"
    );
}

/// An admin port on `admin`, the map `webapps` of `map`, and `route` as
/// the body of route() (no backend answers).
fn scripted_settings(admin: u16, map: &Path, route: &str) -> String {
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

/// A key starting with `#` would be written as `#key value`, a comment
/// the next start (or `rsp --check`) drops: it is refused, by PUT and by
/// POST alike, so no acknowledged change is lost.
#[test]
fn a_key_that_would_be_written_as_a_comment_is_refused() {
    let map = temp_file("hash.map", "a.example one\n");
    let port = free_port();
    let _proxy = Proxy::start(&scripted_settings(port, &map, ECHO_HOST));
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
    let _proxy = Proxy::start(&scripted_settings(port, &map, ECHO_HOST));
    assert_eq!(
        admin(port, "GET", "/maps/webapps/a%23b", "").text(),
        "value\n"
    );
}

/// Two maps of one file would each write their entries over the other's,
/// losing acknowledged changes: such a config is refused, however the
/// file's name is spelled.
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
    let proxy = Proxy::start(&scripted_settings(
        port,
        &map,
        r#"  local value = rsp.map("webapps"):get("\255\254")
  return { status = 200, body = tostring(value) .. "\n" }"#,
    ));
    let response = proxy.get("/");
    assert_eq!(response.status, 200, "{}", proxy.log());
    assert_eq!(response.text(), "nil\n");
}

/// The operator edits the map file by hand and reloads: the reload reads
/// the file (which holds every acknowledged change, so nothing is lost by
/// reading it), rsp serves the edit, and the next admin PUT keeps it.
#[test]
fn a_reload_reads_a_map_file_edited_by_hand() {
    let map = temp_file("edited.map", "a.example one\n");
    let port = free_port();
    let proxy = Proxy::start(&scripted_settings(port, &map, ECHO_HOST));
    assert_eq!(
        proxy
            .get_raw("GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
            .text(),
        "one\n"
    );
    std::fs::write(&map, "a.example two\nb.example three\n").unwrap();
    proxy.reload(&scripted_settings(port, &map, ECHO_HOST));
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

/// A map entry naming rsp's own listener (one PUT away) would make a
/// request a forwarding loop: rsp sees its own hop and answers 508 at
/// once, and never runs out of file descriptors.
#[test]
fn a_map_entry_naming_rsp_itself_is_no_loop() {
    let map = temp_file("loop.map", "");
    let port = free_port();
    let proxy = Proxy::start(&scripted_settings(
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
/// them) stays one after a PUT, and the file it names takes the change.
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
    let _proxy = Proxy::start(&scripted_settings(port, &link, ECHO_HOST));
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

/// A PUT whose body the admin port does not read says why: 411 Length
/// Required for a chunked body, 413 for one longer than the client
/// buffer holds (not "a value is 1 to 4096 bytes", as if it were empty).
#[test]
fn unread_admin_bodies_are_named_as_such() {
    let map = temp_file("bodies.map", "");
    let port = free_port();
    let _proxy = Proxy::start(&scripted_settings(port, &map, ECHO_HOST));
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

/// A PUT with `Expect: 100-continue` (curl sends it for big bodies, and
/// other clients wait for it before sending any) gets `100 Continue` at
/// once, then its answer once the body came. (The admin port once never
/// sent it: such a client waited for its own fallback, or rsp's 408.)
#[test]
fn an_admin_put_expecting_100_continue_gets_it() {
    let map = temp_file("expect.map", "");
    let port = free_port();
    let _proxy = Proxy::start(&scripted_settings(port, &map, ECHO_HOST));
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
    client.send(b"value");
    let response = client.response(false);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(admin(port, "GET", "/maps/webapps/k", "").text(), "value\n");
}
