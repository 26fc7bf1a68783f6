//! Live maps: routing from a file of "key value" lines, changed over the
//! admin API with nothing lost, seen by every worker. Against the real
//! binary, a real `ab` load and `kill -9`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::thread;

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
