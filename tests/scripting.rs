//! The script shapes traffic: `route()` rewrites requests, `respond()`
//! sees every response head, `log()` every finished exchange; pools retry
//! on the answers they name. Each against the real binary, with backends
//! that record the exact bytes they get.

mod common;

use std::thread;
use std::time::Duration;

use common::{
    Backend, Nginx, Proxy, Recorder, check_config, ensure_package, temp_file, wait_until,
};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nServer: recorder/1.0\r\nX-Powered-By: php\r\nContent-Length: 3\r\n\r\nok\n";

/// The head a backend got, up to its blank line.
fn head_of(request: &str) -> &str {
    request.split("\r\n\r\n").next().unwrap()
}

#[test]
fn route_rewrites_reach_the_backend_byte_for_byte_and_reads_see_them() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        r#"request_id = false
forwarded_headers = {{ via = "edge-1" }}
pools = {{ web = {{ servers = {{ "{}" }} }} }}
function route(req)
  req:set_header("X-Tenant", "t1")
  req:add_header("Via", "1.1 rsp")
  req:del_header("Cookie")
  req:set_path("/v2" .. req.path)
  req:set_query("page=2")
  req:set_host("app.internal")
  -- Reads after a write see the new value.
  local seen = table.concat({{ req:header("x-tenant"), req.path, tostring(req.query), req.host, req.target }}, " ")
  if seen ~= "t1 /v2/a page=2 app.internal /v2/a?page=2" then
    return {{ status = 500, body = seen }}
  end
  return "web"
end"#,
        recorder.address
    ));
    let mut client = proxy.connect();
    client.send(
        b"GET /a?x=1 HTTP/1.1\r\nHost: www.example\r\nCookie: a=b\r\nX-Tenant: old\r\n\
Accept: */*\r\nX-Tenant: older\r\nCookie: c=d\r\n\r\n",
    );
    let response = client.response(false);
    assert_eq!(response.status, 200, "{}", response.text());
    let requests = recorder.requests();
    assert_eq!(
        head_of(&requests[0]),
        "GET /v2/a?page=2 HTTP/1.1\r\nHost: app.internal\r\nX-Tenant: t1\r\nAccept: */*\r\n\
Via: 1.1 rsp\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
X-Forwarded-Host: www.example\r\nVia: 1.1 edge-1"
    );
    // The query: nil removes it; set_path keeps it.
    let proxy = Proxy::start(&format!(
        r#"request_id = false
forwarded_headers = {{ x_forwarded_for = false, x_forwarded_proto = false, x_forwarded_host = false, via = false }}
backends = {{ "{}" }}
function route(req)
  if req.path == "/q" then req:set_query(nil) else req:set_path("/kept") end
  return "default"
end"#,
        recorder.address
    ));
    proxy.get_raw("GET /q?drop=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    proxy.get_raw("GET /p?stay=1 HTTP/1.1\r\nHost: h\r\n\r\n");
    let requests = recorder.requests();
    assert_eq!(head_of(&requests[1]), "GET /q HTTP/1.1\r\nHost: h");
    assert_eq!(
        head_of(&requests[2]),
        "GET /kept?stay=1 HTTP/1.1\r\nHost: h"
    );
}

#[test]
fn refused_writes_are_lua_errors_naming_the_field_and_the_request_goes_on_unharmed() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        r#"request_id = false
backends = {{ "{}" }}
local attempts = {{
  function(req) req:set_header("Content-Length", "0") end,
  function(req) req:add_header("transfer-encoding", "chunked") end,
  function(req) req:set_header("Connection", "close") end,
  function(req) req:set_header("Keep-Alive", "1") end,
  function(req) req:set_header("Upgrade", "websocket") end,
  function(req) req:set_header("TE", "trailers") end,
  function(req) req:del_header("Host") end,
  function(req) req:set_header("X-Forwarded-For", "10.0.0.1") end,
  function(req) req:set_header("Forwarded", "for=10.0.0.1") end,
  function(req) req:del_header("X-Request-Id") end,
  function(req) req:set_header("X-Bad\r\nInjected", "1") end,
  function(req) req:set_header("X-Bad", "a\r\nInjected: 1") end,
  function(req) req:set_header("X-Bad", "a\0b") end,
  function(req) req:set_header("", "x") end,
  function(req) req:set_header("X Space", "x") end,
  function(req) req:set_path("no-slash") end,
  function(req) req:set_path("/a b") end,
  function(req) req:set_path("/a?b") end,
  function(req) req:set_query("a#b") end,
  function(req) req:set_host("evil.example/admin") end,
  function(req) req:set_host("a b") end,
}}
function route(req)
  local errors = {{}}
  for _, attempt in ipairs(attempts) do
    local ok, message = pcall(attempt, req)
    errors[#errors + 1] = ok and "ALLOWED" or tostring(message):gsub("[\r\n%z]", "?")
  end
  return {{ body = table.concat(errors, "\n") }}
end"#,
        recorder.address
    ));
    let response = proxy.get_raw(
        "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    let text = response.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21, "{text}");
    let named = [
        "Content-Length",
        "transfer-encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Host",
        "X-Forwarded-For",
        "Forwarded",
        "X-Request-Id",
        "X-Bad\r\nInjected",
        "X-Bad",
        "X-Bad",
        "",
        "X Space",
        "no-slash",
        "/a b",
        "/a?b",
        "a#b",
        "evil.example/admin",
        "a b",
    ];
    for (line, name) in lines.iter().zip(named) {
        assert!(!line.contains("ALLOWED"), "{name}: {line}");
        assert!(line.contains(&format!("{name:?}")), "{name}: {line}");
    }
    assert!(lines[0].contains("rsp frames the request"), "{}", lines[0]);
    assert!(lines[7].contains("forwarded_headers"), "{}", lines[7]);

    // The same refused writes, the request forwarded after them: it is
    // what the client sent.
    let proxy = Proxy::start(&format!(
        r#"request_id = false
forwarded_headers = {{ x_forwarded_for = false, x_forwarded_proto = false, x_forwarded_host = false, via = false }}
backends = {{ "{}" }}
function route(req)
  pcall(req.set_header, req, "Content-Length", "0")
  pcall(req.add_header, req, "Transfer-Encoding", "chunked")
  pcall(req.set_header, req, "X-Bad", "a\r\nX-Injected: 1")
  pcall(req.set_path, req, "relative")
  return "default"
end"#,
        recorder.address
    ));
    let response = proxy.get_raw("POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(response.status, 200);
    assert_eq!(
        recorder.requests().last().unwrap(),
        "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    );

    // Unprotected, a refused write fails route(): 500, and nothing is sent.
    let before = recorder.count();
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
function route(req) req:set_header("Content-Length", "5") return "default" end"#,
        recorder.address
    ));
    assert_eq!(proxy.get("/").status, 500);
    assert!(proxy.log().contains(r#"req:set_header("Content-Length")"#));
    assert_eq!(recorder.count(), before);
}

/// rsp's own forwarding fields are written after route(), from what rsp
/// knows: a script cannot forge them (refused above), and a field it sets
/// reaches the backend even when the client's Connection names it.
#[test]
fn forwarding_fields_stay_rsps_and_set_fields_survive_connection_options() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        r#"request_id = false
forwarded_headers = {{ via = "edge-1" }}
backends = {{ "{}" }}
function route(req)
  req:set_header("X-Tenant", "from-script")
  req:set_host("inner")
  return "default"
end"#,
        recorder.address
    ));
    proxy.get_raw(
        "GET / HTTP/1.1\r\nHost: outer\r\nConnection: keep-alive, X-Tenant\r\nX-Tenant: from-client\r\n\
X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: forged\r\n\r\n",
    );
    let head = recorder.requests()[0].clone();
    assert_eq!(
        head_of(&head),
        "GET / HTTP/1.1\r\nHost: inner\r\nX-Tenant: from-script\r\nX-Forwarded-For: 127.0.0.1\r\n\
X-Forwarded-Proto: http\r\nX-Forwarded-Host: outer\r\nVia: 1.1 edge-1"
    );
}

#[test]
fn respond_edits_backend_heads_and_styles_rsps_own_answers() {
    let recorder = Recorder::start(OK);
    let dead = common::free_port();
    let proxy = Proxy::start(&format!(
        r#"request_id = false
pools = {{
  web = {{ servers = {{ "{}" }} }},
  dead = {{ servers = {{ "127.0.0.1:{dead}" }} }},
}}
function route(req)
  req.ctx.route_saw = req.path
  if req.path == "/local" then return {{ status = 200, body = "from route\n" }} end
  if req.path == "/dead" then return "dead" end
  return "web"
end
function respond(req, res)
  res:set_header("Strict-Transport-Security", "max-age=63072000")
  res:del_header("Server")
  res:add_header("X-Source", res.source)
  res:add_header("X-Server", tostring(res.server))
  res:add_header("X-Ctx", req.ctx.route_saw)
  if res:header("x-powered-by") then res:set_header("X-Powered-By", "redacted") end
  if req.path == "/status" then res.status = 203 end
  if res.status == 502 then
    return {{ status = 502, body = "<h1>Down for a moment</h1>", headers = {{ ["Content-Type"] = "text/html" }} }}
  end
end"#,
        recorder.address
    ));
    let mut client = proxy.connect();
    client.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.head,
        format!(
            "HTTP/1.1 200 OK\r\nX-Powered-By: redacted\r\nContent-Length: 3\r\n\
Strict-Transport-Security: max-age=63072000\r\nX-Source: backend\r\nX-Server: {}\r\nX-Ctx: /x\r\n\r\n",
            recorder.address
        )
    );
    assert_eq!(response.text(), "ok\n");
    // A status changed: its reason follows.
    client.send(b"GET /status HTTP/1.1\r\nHost: h\r\n\r\n");
    let response = client.response(false);
    assert!(
        response
            .head
            .starts_with("HTTP/1.1 203 Non-Authoritative Information\r\n"),
        "{}",
        response.head
    );
    assert_eq!(response.text(), "ok\n");
    // route()'s own answer is rsp's.
    client.send(b"GET /local HTTP/1.1\r\nHost: h\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.text(), "from route\n");
    assert_eq!(response.header("x-source").as_deref(), Some("rsp"));
    assert_eq!(response.header("x-server").as_deref(), Some("nil"));
    assert_eq!(response.header("x-ctx").as_deref(), Some("/local"));
    // A 502 of rsp's, replaced by the script's page; the connection goes on.
    client.send(b"GET /dead HTTP/1.1\r\nHost: h\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.status, 502);
    assert_eq!(response.text(), "<h1>Down for a moment</h1>");
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/html")
    );
    client.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.response(false).status, 200);
}

#[test]
fn respond_refuses_framing_changes_with_an_error_and_the_response_goes_on() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        r#"request_id = false
backends = {{ "{}" }}
local attempts = {{
  function(res) res:set_header("Content-Length", "99") end,
  function(res) res:del_header("Transfer-Encoding") end,
  function(res) res:set_header("Connection", "close") end,
  function(res) res:set_header("X-Bad", "a\r\nSet-Cookie: x") end,
  function(res) res.status = 99 end,
  function(res) res.status = 304 end,
  function(res) res.status = 700 end,
}}
function respond(req, res)
  local errors = {{}}
  for _, attempt in ipairs(attempts) do
    local ok, message = pcall(attempt, res)
    errors[#errors + 1] = ok and "ALLOWED" or "refused"
  end
  res:set_header("X-Errors", table.concat(errors, ","))
  if req.path == "/unprotected" then res:set_header("Content-Length", "1") end
end"#,
        recorder.address
    ));
    let response = proxy.get("/");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("x-errors").as_deref(),
        Some("refused,refused,refused,refused,refused,refused,refused")
    );
    assert_eq!(response.header("content-length").as_deref(), Some("3"));
    // An error in respond() leaves the response as it was then.
    let response = proxy.get("/unprotected");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "ok\n");
    assert!(proxy.log().contains("respond() failed"), "{}", proxy.log());
}

#[test]
fn a_server_answering_503_is_retried_for_gets_not_for_posts() {
    let bad =
        Recorder::start(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n");
    let good = Backend::start("good");
    for (name, settings) in [
        (
            "respond",
            r#"function respond(req, res)
  if res.status == 503 and res.source == "backend" then return "retry" end
end"#,
        ),
        ("retry_on", ""),
    ] {
        let retry_on = if settings.is_empty() {
            ", retry_on = { 503 }"
        } else {
            ""
        };
        let proxy = Proxy::start(&format!(
            "pools = {{ default = {{ servers = {{ \"{}\", \"{}\" }}{retry_on} }} }}\n{settings}",
            bad.address, good.address
        ));
        let bad_before = bad.count();
        let mut client = proxy.connect();
        for _ in 0..100 {
            client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
            let response = client.response(false);
            assert_eq!(response.status, 200, "{name}: {}", response.text());
            assert_eq!(response.text(), "hello from good");
        }
        // Round robin sent half the first tries to the bad server.
        let tried_bad = bad.count() - bad_before;
        assert!((40..=60).contains(&tried_bad), "{name}: {tried_bad}");
        // A POST is not sent twice: the bad server's answer goes through.
        let mut statuses = Vec::new();
        for _ in 0..10 {
            client.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
            statuses.push(client.response(false).status);
        }
        assert_eq!(
            statuses.iter().filter(|&&status| status == 503).count(),
            5,
            "{name}: {statuses:?}"
        );
        assert!(
            proxy
                .log()
                .contains("not retried: it is not idempotent or has a body")
        );
    }
    // With both servers answering 503, retries end with the last answer.
    let also_bad =
        Recorder::start(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nbusy\n");
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\", \"{}\" }}, retry_on = {{ 503 }}, retries = 5 }} }}",
        bad.address, also_bad.address
    ));
    let (bad_before, also_before) = (bad.count(), also_bad.count());
    let response = proxy.get("/");
    assert_eq!(response.status, 503);
    assert_eq!(response.text(), "busy\n");
    assert_eq!(bad.count() + also_bad.count() - bad_before - also_before, 2);
    assert!(
        proxy
            .log()
            .contains("no other server of the pool can take it")
    );
}

#[test]
fn retries_are_bounded_by_the_pools_retries() {
    let bad: Vec<Recorder> = (0..4)
        .map(|_| Recorder::start(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"))
        .collect();
    let servers: Vec<String> = bad
        .iter()
        .map(|server| format!("\"{}\"", server.address))
        .collect();
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ {} }}, retry_on = {{ 502 }}, retries = 2 }} }}",
        servers.join(", ")
    ));
    assert_eq!(proxy.get("/").status, 502);
    let tries: usize = bad.iter().map(Recorder::count).sum();
    assert_eq!(tries, 3, "one try and two retries");
    assert!(proxy.log().contains("the pool's 2 retries are used up"));
}

#[test]
fn a_late_server_is_retried_with_retry_on_timeout() {
    let slow = Backend::start("slow");
    let fast = Backend::start("fast");
    let proxy = Proxy::start(&format!(
        "timeouts = {{ backend_response = 200 }}\n\
         pools = {{ default = {{ servers = {{ \"{}\", \"{}\" }}, retry_on = {{ \"timeout\" }} }} }}\n\
         function route(req) req:set_path(\"/sleep/2000\") return \"default\" end\n\
         function respond(req, res) end",
        slow.address, fast.address
    ));
    // Both sleep: the retry times out too, and the answer is 504.
    let response = proxy.get("/");
    assert_eq!(response.status, 504);
    assert!(
        proxy.log().contains("retrying on another server"),
        "{}",
        proxy.log()
    );
    assert_eq!(slow.count() + fast.count(), 2);
}

#[test]
fn log_runs_after_every_exchange_with_its_outcome_and_ctx() {
    let backend = Backend::start("web");
    let out = temp_file("hook.log", "");
    let proxy = Proxy::in_front_of(
        &backend,
        &format!(
            r#"function route(req)
  req.ctx.t0 = rsp.now()
  req.ctx.tenant = req:header("x-tenant") or "none"
  if req.path == "/local" then return {{ status = 201, body = "made" }} end
  return "default"
end
function log(req, res)
  local f = io.open({out:?}, "a")
  f:write(table.concat({{ req.path, res.status, res.bytes_sent, tostring(res.completed),
    tostring(res.server), req.ctx.tenant, math.type(req.ctx.t0), tostring(res.duration_ms >= 0) }}, " "), "\n")
  f:close()
end"#
        ),
    );
    let mut client = proxy.connect();
    client.send(b"GET /size/10 HTTP/1.1\r\nHost: h\r\nX-Tenant: acme\r\n\r\n");
    let sent = client.response(false);
    client.send(b"GET /local HTTP/1.1\r\nHost: h\r\n\r\n");
    client.response(false);
    drop(client);
    // A client that leaves mid-answer: completed is false.
    let mut leaving = proxy.connect();
    leaving.send(b"GET /size/20000000 HTTP/1.1\r\nHost: h\r\n\r\n");
    drop(leaving);
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&out).unwrap().lines().count() >= 3
    }));
    let lines = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let bytes = sent.head.len() + sent.body.len();
    assert_eq!(
        lines[0],
        format!(
            "/size/10 200 {bytes} true {} acme integer true",
            backend.address
        )
    );
    assert!(lines[1].starts_with("/local 201 "), "{}", lines[1]);
    assert!(
        lines[1].ends_with(" true nil none integer true"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("/size/20000000 200 "), "{}", lines[2]);
    assert!(lines[2].contains(" false "), "{}", lines[2]);
}

#[test]
fn a_hook_that_fails_or_loops_never_turns_a_good_answer_into_a_failure() {
    let backend = Backend::start("web");
    let proxy = Proxy::in_front_of(
        &backend,
        r#"route_instruction_limit = 100000
function respond(req, res)
  if req.path == "/loop" then while true do end end
  error("respond broke")
end
function log(req, res)
  if req.path == "/loop" then while true do end end
  error("log broke")
end"#,
    );
    for path in ["/", "/loop"] {
        let response = proxy.get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.text(), "hello from web");
    }
    proxy.wait_for_log(
        "respond() ran over its budget of 100000 Lua instructions",
        1,
    );
    proxy.wait_for_log("log() ran over its budget of 100000 Lua instructions", 1);
    proxy.wait_for_log("respond() failed", 2);
    proxy.wait_for_log("log broke", 1);
}

#[test]
fn check_reports_the_hooks_and_other_global_functions() {
    let config = temp_file(
        "hooks.lua",
        "listen = \"127.0.0.1:1\"\nbackends = { \"127.0.0.1:9\" }\nfunction respond(req, res) end\n\
         function log(req, res) end\nfunction helper() end\nfunction reponse() end\n",
    );
    let (status, output) = check_config(&config);
    assert_eq!(status, Some(0), "{output}");
    assert!(output.contains("hooks: respond, log"), "{output}");
    assert!(output.contains("hooks.lua:5: helper"), "{output}");
    assert!(output.contains("hooks.lua:6: reponse"), "{output}");
}

/// The shipped example in front of a real nginx, asked by curl: security
/// headers on every answer, nginx's Server removed, the A/B split's
/// rewritten path and header reach nginx, the canary goes to its pool, and
/// with nginx gone the styled 502 page.
#[test]
fn the_shipped_shaping_example_in_front_of_nginx_as_curl_sees_it() {
    ensure_package("curl", "curl");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shaping.lua");
    let (status, output) = check_config(std::path::Path::new(example));
    assert_eq!(status, Some(0), "{output}");
    assert!(output.contains("hooks: route, respond, log"), "{output}");
    let nginx = Nginx::start(
        "    add_header X-Got-Variant \"$http_x_variant\";\n\
             location /b/ { return 200 \"variant b: $uri\\n\"; }\n\
             location / { return 200 \"variant a: $uri\\n\"; }\n",
    );
    let canary = Backend::start("canary");
    let config: String = std::fs::read_to_string(example)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("listen"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("127.0.0.1:8081", &nginx.address.to_string())
        .replace("127.0.0.1:8082", &nginx.address.to_string())
        .replace("127.0.0.1:8083", &canary.address.to_string());
    let proxy = Proxy::start(&config);
    let curl = |arguments: &[&str]| {
        let url = format!("http://{}/shop", proxy.address);
        let output = common::curl(&[&["-i", "--max-time", "10"], arguments, &[&url]].concat());
        output.text().replace("\r\n", "\n")
    };
    let a = curl(&[]);
    assert!(a.starts_with("HTTP/1.1 200 OK\n"), "{a}");
    assert!(a.ends_with("\n\nvariant a: /shop\n"), "{a}");
    assert!(
        a.contains("\nStrict-Transport-Security: max-age=63072000; includeSubDomains\n"),
        "{a}"
    );
    assert!(a.contains("\nX-Content-Type-Options: nosniff\n"), "{a}");
    assert!(!a.to_ascii_lowercase().contains("\nserver:"), "{a}");
    let b = curl(&["-b", "ab=b"]);
    assert!(b.ends_with("\n\nvariant b: /b/shop\n"), "{b}");
    assert!(b.contains("\nX-Got-Variant: b\n"), "{b}");
    let canaried = curl(&["-H", "X-Canary: 1"]);
    assert!(canaried.ends_with("\n\nhello from canary"), "{canaried}");
    assert!(
        canary.heads()[0].contains("X-Variant: canary"),
        "{:?}",
        canary.heads()
    );
    drop(nginx);
    let down = curl(&[]);
    assert!(down.starts_with("HTTP/1.1 502 Bad Gateway\n"), "{down}");
    assert!(
        down.contains("\nContent-Type: text/html; charset=utf-8\n"),
        "{down}"
    );
    assert!(down.contains("\nRetry-After: 5\n"), "{down}");
    assert!(down.contains("We'll be right back"), "{down}");
    assert!(down.contains("\nStrict-Transport-Security:"), "{down}");
}

/// A request routed by one script and answered after a reload meets the
/// new script's hooks: its `req.ctx` (of the old Lua state) is not passed
/// to the new one; the new hooks see an empty table.
#[test]
fn a_request_routed_before_a_reload_meets_the_new_hooks_safely() {
    let backend = Backend::start("web");
    let settings = |tag: &str| {
        format!(
            r#"backends = {{ "{}" }}
function route(req) req.ctx.tag = "{tag}" return "default" end
function respond(req, res) res:set_header("X-Tag", tostring(req.ctx.tag)) end
function log(req, res) req.ctx.seen = true end"#,
            backend.address
        )
    };
    let mut proxy = Proxy::start(&settings("old"));
    let mut client = proxy.connect();
    client.send(b"GET /sleep/700 HTTP/1.1\r\nHost: h\r\n\r\n");
    // Routed by the old script: the backend has it.
    assert!(wait_until(Duration::from_secs(5), || backend.count() == 1));
    proxy.reload(&settings("new"));
    proxy.wait_for_log("reload done", 1);
    let response = client.response(false);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-tag").as_deref(), Some("nil"));
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.header("x-tag").as_deref(), Some("new"));
    assert!(proxy.is_running());
}

#[test]
fn a_reload_while_a_request_is_in_flight_leaves_req_ctx_usable() {
    // route() fills req.ctx in the old Lua state; the reply comes after a
    // SIGHUP made a new one, whose respond() and log() read req.ctx: the
    // request is answered, and rsp goes on.
    let backend = Backend::start("b");
    let script = format!(
        r#"backends = {{ "{}" }}
function route(req) req.ctx.seen = "route"; return "default" end
function respond(req, res) res:set_header("X-Ctx", tostring(req.ctx.seen)) end
function log(req, res) local _ = req.ctx.seen end"#,
        backend.address
    );
    let mut proxy = Proxy::start(&script);
    let address = proxy.address;
    let slow = thread::spawn(move || {
        let mut client = common::Client::connect(address);
        client.send(b"GET /sleep/1000 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        client.try_response(false).map(|response| response.status)
    });
    // Routed by the old Lua state: the backend has it.
    assert!(wait_until(Duration::from_secs(5), || backend.count() == 1));
    proxy.reload(&script);
    proxy.wait_for_log("reload done", 1);
    let status = slow.join().unwrap();
    assert!(proxy.is_running(), "rsp died:\n{}", proxy.log());
    assert_eq!(status, Some(200), "{}", proxy.log());
    assert_eq!(proxy.get("/after").status, 200);
}

#[test]
fn a_reply_table_cannot_replace_the_request_id() {
    // res:set_header("X-Request-Id") is refused ("rsp writes it"), and so
    // is the same field in a reply table's headers: the client gets the id
    // rsp logged.
    let proxy = Proxy::start(
        r#"function route(req)
  return { status = 200, headers = { ["X-Request-Id"] = "forged" } }
end"#,
    );
    let response = proxy.get_raw(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: client-id-1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        response.header("x-request-id").as_deref(),
        Some("client-id-1")
    );
}

/// A reply table's body is written from where it is as the client takes
/// it, after its head, over HTTP/1.1 and HTTP/2 alike: a 3 MB body (more
/// than the buffers hold) arrives whole, to a client that reads slowly
/// too.
#[test]
fn a_large_reply_body_arrives_whole_over_both_protocols() {
    let proxy = Proxy::start_h2c(
        "function route(req)\n  return { status = 200, body = string.rep(\"0123456789\", 300000) }\nend",
    );
    let url = format!("http://{}/big", proxy.address);
    for protocol in ["--http1.1", "--http2-prior-knowledge"] {
        let fetched = common::curl(&[protocol, "--limit-rate", "4M", &url]);
        assert!(fetched.success(), "{protocol}: {}", fetched.stderr);
        assert_eq!(fetched.stdout.len(), 3_000_000, "{protocol}");
        assert!(
            fetched
                .stdout
                .chunks(10)
                .all(|piece| piece == b"0123456789"),
            "{protocol}: the body came changed"
        );
    }
    // A HEAD request gets the head alone.
    let head = proxy.get_raw("HEAD /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.text().is_empty(), "{}", head.head);
}

/// A backend's head without a reason phrase (`HTTP/1.1 200`, which
/// httparse takes) is read for `respond()` as any other: the script sees
/// it, the client gets it, and the worker goes on. (rsp once located the
/// missing reason by pointer arithmetic and crashed on it.)
#[test]
fn a_head_without_a_reason_phrase_is_read_for_respond() {
    let recorder = Recorder::start(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok");
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
function respond(req, res)
  res:set_header("X-Status", tostring(res.status))
end
"#,
        recorder.address
    ));
    for _ in 0..3 {
        let response = proxy.get("/");
        assert_eq!(response.status, 200, "{}", proxy.log());
        assert_eq!(
            response.header("X-Status").as_deref(),
            Some("200"),
            "{}",
            response.head
        );
        assert_eq!(response.body, b"ok");
    }
}
