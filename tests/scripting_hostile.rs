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
