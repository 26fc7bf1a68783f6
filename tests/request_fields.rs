//! A request's fields as route() sees them and as the backend gets them:
//! the client's forwarding and connection fields, repeated fields, fields
//! a script sets, and the spellings servers behind rsp read otherwise.
//! What route() saw is exactly what the backend gets.

mod common;

use std::net::SocketAddr;

use common::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The fields route() saw of `names`, as `name=value` lines, and the head
/// the backend got, for one raw request.
fn seen_and_forwarded(raw: &str, names: &[&str], settings: &str) -> (String, String) {
    let recorder = Recorder::start(OK);
    let list = names
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
{settings}
function route(req)
  local seen = {{}}
  for _, name in ipairs({{ {list} }}) do
    for _, value in ipairs(req:header_values(name)) do
      seen[#seen + 1] = name .. "=" .. value
    end
  end
  req.ctx.seen = table.concat(seen, "\n")
  return "default"
end
function respond(req, res)
  res:set_header("X-Seen", (req.ctx.seen or ""):gsub("\n", " | "))
end"#,
        recorder.address
    ));
    let response = proxy.get_raw(raw);
    assert_eq!(response.status, 200, "{}", response.head);
    let seen = response.header("x-seen").unwrap_or_default();
    let forwarded = recorder.requests().pop().unwrap_or_default();
    (seen, forwarded)
}

/// The value of `name` in a raw head, every occurrence.
fn values_in(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .collect()
}

/// An untrusted client's own `X-Forwarded-For`, `X-Forwarded-Host`,
/// `X-Forwarded-Proto` and `Forwarded` never reach the backend (rsp
/// writes its own in their place), and route() does not see them either:
/// a rule on `req:header("X-Forwarded-For")` (an allow-list behind rsp, a
/// tenant from `X-Forwarded-Host`) never decides on a value the client
/// forged. What route() saw is exactly what the backend gets.
#[test]
fn route_never_sees_forwarding_fields_the_backend_will_not_get() {
    let names = [
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "Forwarded",
    ];
    let (seen, forwarded) = seen_and_forwarded(
        "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 10.0.0.1\r\n\
         X-Forwarded-Host: admin.internal\r\nX-Forwarded-Proto: https\r\n\
         Forwarded: for=10.0.0.1;proto=https\r\nConnection: close\r\n\r\n",
        &names,
        "forwarded_headers = { forwarded = true }",
    );
    for name in names {
        let backend_got: Vec<String> = values_in(&forwarded, name);
        let route_saw: Vec<String> = seen
            .split(" | ")
            .filter_map(|line| line.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .collect();
        // Whatever route() saw of the field, the backend got.
        for value in &route_saw {
            assert!(
                backend_got.contains(value),
                "route() saw {name}: {value}, the backend got {backend_got:?}\n{forwarded}"
            );
        }
    }
}

/// The same invariant for Connection-named fields,
/// hop-by-hop fields in odd spellings (`Connection: , ,X`, names in upper
/// case, `TE` and `Upgrade` on a request that is no upgrade), the Host in
/// every form: what route() saw of them is exactly what the backend got.
#[test]
fn connection_fields_in_odd_spellings_never_reach_route_nor_the_backend() {
    let names = [
        "X-A",
        "X-B",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Connection",
        "Proxy-Connection",
        "Host",
        "Via",
        "X-Kept",
    ];
    for (raw, gone) in [
        (
            "GET / HTTP/1.1\r\nHost: A.Example.:80\r\nConnection: , ,X-A\r\nConnection: ,x-b ,\r\nX-A: 1\r\n\
             X-B: 2\r\nX-Kept: 3\r\nconnection: close\r\n\r\n",
            &["X-A", "X-B", "Connection"][..],
        ),
        (
            "GET / HTTP/1.0\r\nHost: a.example\r\nConnection: Keep-Alive, X-A\r\nKeep-Alive: timeout=5\r\n\
             X-A: 1\r\nX-Kept: 3\r\nConnection: close\r\n\r\n",
            &["X-A", "Keep-Alive", "Connection"],
        ),
        (
            // An upgrade with a body is no upgrade: Upgrade and its
            // Connection token go, for route() and the backend alike.
            "POST / HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\
             Content-Length: 0\r\nTE: trailers\r\nX-Kept: 3\r\n\r\n",
            &["Upgrade", "TE", "Connection"],
        ),
        (
            // Connection naming Host or Content-Length removes neither.
            "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: host, content-length, close\r\n\
             Proxy-Connection: keep-alive\r\nVia: 1.1 other\r\nX-Kept: 3\r\n\r\n",
            &["Proxy-Connection", "Connection"],
        ),
    ] {
        let (seen, forwarded) = seen_and_forwarded(raw, &names, "");
        for name in gone {
            assert!(
                !seen
                    .to_ascii_lowercase()
                    .contains(&format!("{}=", name.to_ascii_lowercase())),
                "route() saw {name}: {seen}"
            );
        }
        assert!(seen.contains("X-Kept=3"), "{seen}");
        let host = values_in(&forwarded, "host");
        assert_eq!(host, ["a.example"], "{forwarded}");
        assert!(seen.contains("Host=a.example"), "{seen}");
        for name in [
            "x-a",
            "x-b",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-connection",
        ] {
            assert!(
                values_in(&forwarded, name).is_empty(),
                "{name} reached: {forwarded}"
            );
        }
    }
}

/// The answer of the recorders whose requests a script rewrote.
const OK_LINE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

#[test]
fn a_read_of_host_after_set_host_sees_what_the_backend_gets() {
    let recorder = Recorder::start(OK_LINE);
    let proxy = Proxy::start(&format!(
        r#"request_id = false
backends = {{ "{}" }}
function route(req)
  req:set_host("new.example")
  req:set_header("X-Saw", tostring(req:header("host")))
  return "default"
end"#,
        recorder.address
    ));
    proxy.get_raw("GET / HTTP/1.1\r\nHost: old.example\r\nConnection: close\r\n\r\n");
    let request = &recorder.requests()[0];
    assert!(request.contains("Host: new.example\r\n"), "{request}");
    // route() read what the backend got: new.example.
    assert!(request.contains("X-Saw: new.example\r\n"), "{request}");
}

#[test]
fn numbers_are_written_as_lua_writes_them_and_odd_hosts_are_refused() {
    let recorder = Recorder::start(OK_LINE);
    let proxy = Proxy::start(&format!(
        r#"request_id = false
backends = {{ "{}" }}
function route(req)
  req:set_header("X-Int", 42)
  req:set_header("X-Float", 2^63)
  req:set_header("X-Half", 0.5)
  local refused = {{}}
  for _, host in ipairs({{ "", ":80", "evil:0", "evil:99999", "a b", "[::1", "h/x" }}) do
    if not pcall(req.set_host, req, host) then refused[#refused + 1] = "r" end
  end
  req:set_header("X-Refused", #refused)
  req:set_host("[::1]:8080")
  return "default"
end"#,
        recorder.address
    ));
    proxy.get("/");
    let request = &recorder.requests()[0];
    assert!(request.contains("X-Int: 42\r\n"), "{request}");
    assert!(
        request.contains("X-Float: 9.2233720368548e+18\r\n"),
        "{request}"
    );
    assert!(request.contains("X-Half: 0.5\r\n"), "{request}");
    assert!(request.contains("X-Refused: 7\r\n"), "{request}");
    assert!(request.contains("Host: [::1]:8080\r\n"), "{request}");
}

/// A field sent twice with different values: `req:header` gives the
/// first, a server reading the last would see the other. A rule over
/// `req:header_values` sees every value, in order, and the backend gets
/// them all as route() saw them.
#[test]
fn a_rule_over_every_value_of_a_repeated_field_cannot_be_passed() {
    let recorder = Recorder::start(OK_LINE);
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
function route(req)
  for _, role in ipairs(req:header_values("X-Role")) do
    if role:lower() == "admin" then return {{ status = 403, body = "denied\n" }} end
  end
  return {{ status = 200, body = "first " .. tostring(req:header("X-Role")) .. ", " .. #req:header_values("x-role") .. " values\n" }}
end"#,
        recorder.address
    ));
    let denied =
        proxy.get_raw("GET / HTTP/1.1\r\nHost: h\r\nX-Role: user\r\nx-role: admin\r\n\r\n");
    assert_eq!(denied.status, 403);
    let allowed =
        proxy.get_raw("GET / HTTP/1.1\r\nHost: h\r\nX-Role: user\r\nx-role: guest\r\n\r\n");
    assert_eq!(allowed.text(), "first user, 2 values\n");
    let none = proxy.get_raw("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(none.text(), "first nil, 0 values\n");
    // Forwarded: both values, in order, as route() saw them.
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
function route(req)
  assert(table.concat(req:header_values("X-Role"), ",") == "user,guest")
  return "default"
end"#,
        recorder.address
    ));
    let response =
        proxy.get_raw("GET / HTTP/1.1\r\nHost: h\r\nX-Role: user\r\nx-role: guest\r\n\r\n");
    assert_eq!(response.status, 200);
    let request = recorder.requests().pop().unwrap();
    assert!(
        request.contains("X-Role: user\r\nx-role: guest\r\n"),
        "{request}"
    );
}

/// A field the client's `Connection` names describes its connection: rsp
/// removes it before route() runs, so a rule never sees what the backend
/// will not get (nor the other way round); the same for the hop-by-hop
/// fields themselves.
#[test]
fn route_never_sees_a_field_the_backend_will_not_get() {
    let recorder = Recorder::start(OK_LINE);
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
function route(req)
  local seen = {{}}
  for _, name in ipairs({{ "X-Role", "Connection", "Keep-Alive", "TE", "Upgrade", "Proxy-Connection", "X-Kept" }}) do
    if req:header(name) then seen[#seen + 1] = name end
  end
  if req.path == "/show" then return {{ status = 200, body = table.concat(seen, ",") .. "\n" }} end
  if req:header("X-Role") == "admin" then return {{ status = 403 }} end
  return "default"
end"#,
        recorder.address
    ));
    let raw = "GET /show HTTP/1.1\r\nHost: h\r\nConnection: X-Role, keep-alive\r\nX-Role: admin\r\n\
               Keep-Alive: 5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: x\r\nX-Kept: 1\r\n\r\n";
    assert_eq!(proxy.get_raw(raw).text(), "X-Kept\n");
    let response = proxy.get_raw(&raw.replace("/show", "/app"));
    assert_eq!(response.status, 200);
    let request = recorder.requests().pop().unwrap();
    let lower = request.to_ascii_lowercase();
    for gone in [
        "x-role",
        "keep-alive:",
        "te:",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(
            !lower.contains(gone),
            "{gone} reached the backend: {request}"
        );
    }
    assert!(request.contains("X-Kept: 1\r\n"));
}

#[test]
fn underscored_fields_never_reach_a_wsgi_backend_as_forwarding_fields() {
    // Python's wsgiref, the reference WSGI server: it maps X_Forwarded_For
    // and X-Forwarded-For alike to HTTP_X_FORWARDED_FOR.
    let port = free_port();
    let app = temp_file(
        "wsgi.py",
        &format!(
            "from wsgiref.simple_server import make_server\n\
             def app(environ, start):\n\
             \x20   body = environ.get('HTTP_X_FORWARDED_FOR', '-').encode()\n\
             \x20   start('200 OK', [('Content-Length', str(len(body)))])\n\
             \x20   return [body]\n\
             make_server('127.0.0.1', {port}, app).serve_forever()\n"
        ),
    );
    let mut wsgi = std::process::Command::new("python3")
        .arg(&app)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let backend: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_listener(backend, &app);
    let request =
        "GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n";
    let dropping = Proxy::start(&format!("backends = {{ \"{backend}\" }}"));
    assert_eq!(dropping.get_raw(request).text(), "127.0.0.1");
    let rejecting = Proxy::start(&format!(
        "backends = {{ \"{backend}\" }}\nunderscore_headers = \"reject\""
    ));
    assert_eq!(rejecting.get_raw(request).status, 400);
    let allowing = Proxy::start(&format!(
        "backends = {{ \"{backend}\" }}\nunderscore_headers = \"allow\""
    ));
    assert!(allowing.get_raw(request).text().starts_with("6.6.6.6"));
    let _ = wsgi.kill();
    let _ = wsgi.wait();
}
