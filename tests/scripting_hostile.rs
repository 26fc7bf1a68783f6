//! Hostile tests of the scripting hooks: what a script, a client or a
//! backend can do to crash rsp, stall its loop, or get past the rules.

mod common;

use std::thread;
use std::time::Duration;

use common::{Backend, Proxy, Recorder};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

/// A hook that never ends must fail its call (the budget), not stall the
/// loop: rsp is then still answering.
fn assert_budget_stops(hook: &str) {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\nroute_instruction_limit = 100000\n{hook}",
        recorder.address
    ));
    let mut client = proxy.connect();
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let response = client.try_response(false);
    assert!(
        response.is_some(),
        "the hook stalled the event loop: no answer in 5 s\n{}",
        proxy.log()
    );
}

#[test]
fn the_budget_covers_a_loop_inside_a_coroutine() {
    // A generator (coroutine.wrap) is the common Lua idiom; one that never
    // ends ran without any budget: the hook mlua sets is the main
    // thread's, and a coroutine's copy of it removes itself.
    assert_budget_stops(
        r#"function route(req)
  local next_one = coroutine.wrap(function() while true do end end)
  next_one()
  return "default"
end"#,
    );
}

#[test]
fn the_budget_covers_a_loop_that_catches_its_error_with_pcall() {
    // The budget's error is caught by the pcall; the loop around it runs
    // a few instructions per turn, so the next check falls inside the
    // pcall again, forever.
    assert_budget_stops(
        r#"function route(req)
  repeat local ok = pcall(function() while true do end end) until ok
  return "default"
end"#,
    );
}

#[test]
fn a_reload_while_a_request_is_in_flight_leaves_req_ctx_usable() {
    // route() fills req.ctx in the old Lua state; the reply comes after a
    // SIGHUP made a new one, whose respond() reads req.ctx: rsp panicked
    // ("Lua instance passed Value created from a different main Lua
    // state") and every connection went with it.
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
    thread::sleep(Duration::from_millis(300));
    proxy.reload(&script);
    proxy.wait_for_log("reload done", 1);
    let status = slow.join().unwrap();
    assert!(proxy.is_running(), "rsp died:\n{}", proxy.log());
    assert_eq!(status, Some(200), "{}", proxy.log());
    assert_eq!(proxy.get("/after").status, 200);
}

#[test]
fn the_budget_covers_pcall_loops_in_coroutines_made_after_it_ran_out() {
    // Each new coroutine takes its creator's hook count: the check must
    // not assume that the thread it fires in was already made strict.
    assert_budget_stops(
        r#"function route(req)
  while true do
    coroutine.resume(coroutine.create(function()
      while true do pcall(function() while true do end end) end
    end))
  end
end"#,
    );
}

#[test]
fn a_call_after_one_that_ran_over_has_its_whole_budget() {
    // A coroutine kept in a global was left checked at every instruction:
    // a later call that resumes it must still get its whole budget.
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
route_instruction_limit = 100000
kept = nil
function route(req)
  if req.path == "/spend" then
    kept = coroutine.create(function()
      while true do pcall(function() while true do end end); coroutine.yield() end
    end)
    coroutine.resume(kept)
    while true do end
  end
  coroutine.resume(kept)
  local n = 0
  for i = 1, 20000 do n = n + i end
  req:set_header("X-N", n)
  return "default"
end"#,
        recorder.address
    ));
    assert_eq!(proxy.get("/spend").status, 500);
    let response = proxy.get("/after");
    assert_eq!(response.status, 200, "{}", proxy.log());
    assert!(recorder.requests()[0].contains("X-N: 200010000\r\n"));
}

#[test]
fn a_gc_finalizer_is_refused() {
    // A finalizer stuck in a loop would stall the loop for good: no hook
    // runs inside a __gc metamethod (lgc.c GCTM sets allowhook = 0), and
    // it runs at whatever allocation collects its object. rsp's
    // setmetatable refuses a metatable with __gc: route() fails.
    assert_budget_stops(
        r#"function route(req)
  setmetatable({}, { __gc = function() while true do end end })
  collectgarbage()
  return "default"
end"#,
    );
}

#[test]
fn a_read_of_host_after_set_host_sees_what_the_backend_gets() {
    let recorder = Recorder::start(OK);
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
    // route() read old.example, the backend got new.example.
    assert!(request.contains("X-Saw: new.example\r\n"), "{request}");
}

#[test]
fn a_reply_table_cannot_replace_the_request_id() {
    // res:set_header("X-Request-Id") is refused ("rsp writes it"); a reply
    // table's headers replace the id rsp logged, so the client and the
    // log disagree.
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

#[test]
fn a_script_cannot_take_unbounded_memory() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
function route(req)
  if req.path == "/big" then local s = string.rep("x", 2^30) end
  return "default"
end"#,
        recorder.address
    ));
    assert_eq!(proxy.get("/big").status, 500);
    assert!(proxy.log().contains("not enough memory"), "{}", proxy.log());
    assert!(proxy.rss_kib() < 512 * 1024);
    assert_eq!(proxy.get("/").status, 200);
}

#[test]
fn numbers_are_written_as_lua_writes_them_and_odd_hosts_are_refused() {
    let recorder = Recorder::start(OK);
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
    let recorder = Recorder::start(OK);
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
    let recorder = Recorder::start(OK);
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
