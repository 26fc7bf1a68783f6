//! The bounds on a script: an instruction budget no loop gets past
//! (coroutines, pcall, finalizers), and memory it cannot take without
//! limit. A hook that runs over fails its request, never the loop.

mod common;

use std::time::Duration;

use common::{Proxy, Recorder};

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
    // A generator (coroutine.wrap) is the common Lua idiom: a loop inside
    // one is counted against the budget like any other (each coroutine
    // gets the budget's hook, not only the main thread).
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
    // The budget's error is caught by the pcall, and the loop around it
    // runs a few instructions per turn: once the budget is spent, every
    // further instruction fails, inside the pcall or not.
    assert_budget_stops(
        r#"function route(req)
  repeat local ok = pcall(function() while true do end end) until ok
  return "default"
end"#,
    );
}

#[test]
fn the_budget_covers_pcall_loops_in_coroutines_made_after_it_ran_out() {
    // Each new coroutine takes its creator's hook count: one made after
    // the budget ran out is held to it as strictly as its creator.
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
    // A coroutine kept in a global from a call that ran over: a later call
    // that resumes it still gets its whole budget.
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
    // No budget reaches inside a __gc metamethod (lgc.c GCTM sets
    // allowhook = 0), which runs at whatever allocation collects its
    // object: rsp's setmetatable refuses a metatable with __gc, and
    // route() fails instead of the loop stalling.
    assert_budget_stops(
        r#"function route(req)
  setmetatable({}, { __gc = function() while true do end end })
  collectgarbage()
  return "default"
end"#,
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
