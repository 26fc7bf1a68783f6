//! Request targets and hosts as route() sees them: the forms a target
//! may take, the normalization a rule on a path relies on (against a real
//! nginx behind rsp too), and the invariant that what route() saw of an
//! accepted request is what the backend got.

mod common;

use std::time::Duration;

use common::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A route() with access rules of the kind users write: no /admin, no
/// internal host; everything else to the backend.
const GUARDED: &str = r#"
function route(req)
  if req.path == "/admin" or req.path:sub(1, 7) == "/admin/" then
    return { status = 403, body = "denied " .. req.path }
  end
  if req.host == "www.example" or req.host == "internal.corp" then
    return { status = 403, body = "denied host " .. req.host }
  end
  return "default"
end
"#;

#[test]
fn target_forms_table() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\n{GUARDED}",
        recorder.address
    ));
    // (request, status, request line the backend got, Host it got)
    let cases: &[(&str, u16, Option<&str>, Option<&str>)] = &[
        // The issue's bypasses: "://" inside an origin-form target.
        (
            "GET /admin?x=:// HTTP/1.1\r\nHost: a\r\n\r\n",
            403,
            None,
            None,
        ),
        (
            "GET /?u=http://www.example/ HTTP/1.1\r\nHost: shop\r\n\r\n",
            200,
            Some("GET /?u=http://www.example/ HTTP/1.1"),
            Some("shop"),
        ),
        (
            "GET /?u=http://shop/ HTTP/1.1\r\nHost: internal.corp\r\n\r\n",
            403,
            None,
            None,
        ),
        // Absolute-form: origin-form and the URL's authority go on.
        (
            "GET http://Shop.Example:8080/p?q=1 HTTP/1.1\r\nHost: internal.corp\r\n\r\n",
            200,
            Some("GET /p?q=1 HTTP/1.1"),
            Some("shop.example:8080"),
        ),
        (
            "GET http://internal.corp/p HTTP/1.1\r\nHost: shop\r\n\r\n",
            403,
            None,
            None,
        ),
        (
            "GET https://shop HTTP/1.1\r\nHost: shop\r\n\r\n",
            200,
            Some("GET / HTTP/1.1"),
            Some("shop"),
        ),
        (
            "GET http://shop?x HTTP/1.1\r\nHost: shop\r\n\r\n",
            200,
            Some("GET /?x HTTP/1.1"),
            Some("shop"),
        ),
        (
            "GET http://shop/admin HTTP/1.1\r\nHost: shop\r\n\r\n",
            403,
            None,
            None,
        ),
        // Asterisk-form for OPTIONS only.
        (
            "OPTIONS * HTTP/1.1\r\nHost: shop\r\n\r\n",
            200,
            Some("OPTIONS * HTTP/1.1"),
            Some("shop"),
        ),
        ("GET * HTTP/1.1\r\nHost: shop\r\n\r\n", 400, None, None),
        // Authority-form is CONNECT's, which rsp does not do: 501.
        (
            "CONNECT shop:443 HTTP/1.1\r\nHost: shop:443\r\n\r\n",
            501,
            None,
            None,
        ),
        (
            "GET shop:443 HTTP/1.1\r\nHost: shop\r\n\r\n",
            400,
            None,
            None,
        ),
        // Neither form.
        (
            "GET ftp://shop/ HTTP/1.1\r\nHost: shop\r\n\r\n",
            400,
            None,
            None,
        ),
        (
            "GET http://user@shop/ HTTP/1.1\r\nHost: shop\r\n\r\n",
            400,
            None,
            None,
        ),
        (
            "GET http:///admin HTTP/1.1\r\nHost: shop\r\n\r\n",
            400,
            None,
            None,
        ),
        ("GET admin HTTP/1.1\r\nHost: shop\r\n\r\n", 400, None, None),
        (
            "GET /a#frag HTTP/1.1\r\nHost: shop\r\n\r\n",
            400,
            None,
            None,
        ),
        // Hosts a server could read as another.
        (
            "GET / HTTP/1.1\r\nHost: shop/admin\r\n\r\n",
            400,
            None,
            None,
        ),
        (
            "GET / HTTP/1.1\r\nHost: user@internal.corp\r\n\r\n",
            400,
            None,
            None,
        ),
        ("GET / HTTP/1.1\r\nHost: shop:80x\r\n\r\n", 400, None, None),
        ("GET / HTTP/1.1\r\nHost: sh op\r\n\r\n", 400, None, None),
        ("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, None, None),
        (
            "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            200,
            Some("GET / HTTP/1.1"),
            Some("[::1]:8080"),
        ),
    ];
    for (raw, status, line, host) in cases {
        let (response, received) = through(&proxy, &recorder, raw.as_bytes());
        assert_eq!(response.status, *status, "{raw:?}: {}", response.text());
        match (line, &received) {
            (Some(line), Some(received)) => {
                assert_eq!(request_line(received), *line, "{raw:?}");
                assert_eq!(
                    field(received, "host"),
                    vec![host.unwrap()],
                    "{raw:?}: {received}"
                );
                assert_eq!(
                    field(received, "x-forwarded-host"),
                    vec![host.unwrap()],
                    "{raw:?}"
                );
            }
            (None, None) => {}
            _ => panic!("{raw:?}: backend got {received:?}"),
        }
    }
    assert!(proxy.log().contains("501, CONNECT"));
}

#[test]
fn normalization_table() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\n{GUARDED}",
        recorder.address
    ));
    // (target, what the backend gets, or the status rsp answers with)
    let cases: &[(&str, Result<&str, u16>)] = &[
        ("//admin", Err(403)),
        ("/x/../admin", Err(403)),
        ("/./admin", Err(403)),
        ("/%61dmin", Err(403)),
        ("/%2e/admin", Err(403)),
        ("/%2E%2E/admin", Err(400)),
        ("/admin/./../admin/x", Err(403)),
        ("/ADMIN", Ok("/ADMIN")),
        ("/a//b///c", Ok("/a/b/c")),
        ("/a/./b/../c/", Ok("/a/c/")),
        ("/%7Euser/%7e", Ok("/~user/~")),
        ("/a%3fb%3F", Ok("/a%3Fb%3F")),
        ("/caf%c3%a9", Ok("/caf%C3%A9")),
        ("/caf\u{e9}", Ok("/caf%C3%A9")),
        ("/p?q=/../x&r=%2f", Ok("/p?q=/../x&r=%2f")),
        ("/..", Err(400)),
        ("/a/../..", Err(400)),
        ("/%", Err(400)),
        ("/%G0", Err(400)),
        ("/admin%2Fx", Err(400)),
        ("/a%5Cb", Err(400)),
        ("/a\\b", Err(400)),
        ("/a%00", Err(400)),
    ];
    for (target, expected) in cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
        let (response, received) = through(&proxy, &recorder, raw.as_bytes());
        match expected {
            Ok(path) => {
                assert_eq!(response.status, 200, "{target}: {}", response.text());
                let received = received.unwrap_or_default();
                assert_eq!(
                    request_line(&received),
                    format!("GET {path} HTTP/1.1"),
                    "{target}"
                );
            }
            Err(status) => {
                assert_eq!(response.status, *status, "{target}: {}", response.text());
                assert!(received.is_none(), "{target}: the backend got {received:?}");
            }
        }
    }
    // The settings: encoded slashes kept or decoded, backslashes as slashes, off.
    let keep = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\npath_normalization = {{ escaped_slash = \"keep\", backslash = \"slash\", merge_slashes = false }}\n",
        recorder.address
    ));
    for (target, path) in [("/a%2fb", "/a%2Fb"), ("/a\\b", "/a/b"), ("/a//b", "/a//b")] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: shop\r\n\r\n");
        let (response, received) = through(&keep, &recorder, raw.as_bytes());
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(
            request_line(&received.unwrap()),
            format!("GET {path} HTTP/1.1")
        );
    }
    let decode = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\npath_normalization = {{ escaped_slash = \"decode\" }}\n{GUARDED}",
        recorder.address
    ));
    let (response, _) = through(
        &decode,
        &recorder,
        b"GET /x%2F..%2Fadmin HTTP/1.1\r\nHost: shop\r\n\r\n",
    );
    assert_eq!(response.status, 403);
    let off = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\npath_normalization = false\n",
        recorder.address
    ));
    let (response, received) = through(
        &off,
        &recorder,
        b"GET //x/../%61?q HTTP/1.1\r\nHost: shop\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        request_line(&received.unwrap()),
        "GET //x/../%61?q HTTP/1.1"
    );
}

/// req.target is what goes to the backend; req.raw_target what the client
/// sent; the access log writes the normalized target.
#[test]
fn lua_sees_the_normalized_target_and_the_raw_one() {
    let recorder = Recorder::start(OK);
    let log = temp_file("access.log", "");
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\naccess_log = {log:?}\n\
         function route(req)\n\
           if req:header(\"x-show\") then return {{ body = req.target .. \" \" .. req.raw_target .. \" \" .. req.path .. \" \" .. tostring(req.query) }} end\n\
           return \"default\"\n\
         end\n",
        recorder.address
    ));
    let (response, _) = through(
        &proxy,
        &recorder,
        b"GET /a/./b/%7e/../c?x=1 HTTP/1.1\r\nHost: s\r\nX-Show: 1\r\n\r\n",
    );
    assert_eq!(response.text(), "/a/b/c?x=1 /a/./b/%7e/../c?x=1 /a/b/c x=1");
    let (_, received) = through(
        &proxy,
        &recorder,
        b"GET //a/%62 HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(request_line(&received.unwrap()), "GET /a/b HTTP/1.1");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .unwrap()
            .contains("\"GET /a/b HTTP/1.1\"")),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// Against a real nginx, which resolves all of these to its `/admin`
/// location: with rsp's normalization route() sees `/admin` too; without
/// it, the same rule is bypassed (which is why the default is on).
#[test]
fn nginx_behind_rsp_never_serves_admin_past_the_rule() {
    let nginx = Nginx::start(
        "    location /admin { return 200 \"nginx admin\\n\"; }\n    location / { return 200 \"nginx public\\n\"; }\n",
    );
    let bypasses = [
        "/admin",
        "//admin",
        "/x/../admin",
        "/./admin",
        "/%61dmin",
        "/%2e/admin",
        "/admin/../admin/x",
        "/%2Fadmin",
    ];
    let guarded = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\n{GUARDED}",
        nginx.address
    ));
    for target in bypasses {
        let response = guarded.get(target);
        assert!(
            [403, 400].contains(&response.status),
            "{target}: {} {}",
            response.status,
            response.text()
        );
    }
    assert_eq!(guarded.get("/public/../index").text(), "nginx public\n");
    assert!(
        !nginx.access_log().contains("admin"),
        "{}",
        nginx.access_log()
    );
    // The control: the same rule without normalization lets them through.
    let unguarded = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\npath_normalization = false\n{GUARDED}",
        nginx.address
    ));
    let reached: Vec<&str> = bypasses
        .iter()
        .copied()
        .filter(|target| unguarded.get(target).text() == "nginx admin\n")
        .collect();
    assert!(reached.len() >= 5, "{reached:?}");
}

/// The invariant of the security issue, over generated targets and hosts
/// through the real binary: whatever route() saw of an accepted request
/// (path, query, host) is what the backend received.
#[test]
fn what_route_saw_is_what_the_backend_got() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\n\
         function route(req)\n\
           if req:header(\"x-probe\") then return {{ body = req.path .. \"\\n\" .. (req.query or \"-\") .. \"\\n\" .. req.host }} end\n\
           return \"default\"\n\
         end\n",
        recorder.address
    ));
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    let strategy = (target_strategy(), host_strategy(), any::<bool>());
    runner
        .run(&strategy, |(origin, host, absolute)| {
            let target = if absolute {
                format!("http://{host}{origin}")
            } else {
                origin
            };
            let send = |probe: bool| {
                let mut client = proxy.connect();
                let probe = if probe { "X-Probe: 1\r\n" } else { "" };
                let raw = format!(
                    "GET {target} HTTP/1.1\r\nHost: {host}\r\n{probe}Connection: close\r\n\r\n"
                );
                client.send(raw.as_bytes());
                client.response(false)
            };
            let seen = send(true);
            let before = recorder.count();
            let forwarded = send(false);
            prop_assert_eq!(
                seen.status == 200,
                forwarded.status == 200,
                "{} {}",
                target,
                host
            );
            if seen.status != 200 {
                prop_assert_eq!(recorder.count(), before);
                return Ok(());
            }
            let text = seen.text();
            let mut lines = text.split('\n');
            let (path, query, lua_host) = (
                lines.next().unwrap(),
                lines.next().unwrap(),
                lines.next().unwrap(),
            );
            let received = recorder.requests()[before].clone();
            let sent = request_line(&received)
                .split(' ')
                .nth(1)
                .unwrap()
                .to_owned();
            let (sent_path, sent_query) = match sent.split_once('?') {
                Some((path, query)) => (path.to_owned(), query.to_owned()),
                None => (sent.clone(), "-".to_owned()),
            };
            prop_assert_eq!(sent_path, path);
            prop_assert_eq!(sent_query, query);
            let hosts = field(&received, "host");
            prop_assert_eq!(hosts.len(), 1);
            let sent_host = hosts[0].to_ascii_lowercase();
            let sent_host = match sent_host.rsplit_once(':') {
                Some((name, port)) if !port.contains(']') => name.to_owned(),
                _ => sent_host.clone(),
            };
            prop_assert_eq!(sent_host, lua_host);
            Ok(())
        })
        .unwrap();
}
