//! What scripts remember: rate limits and shared dictionaries, the same
//! for every worker, bounded, kept across reloads. Against the real
//! binary over loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Backend, Client, Proxy, admin_request, check_config, free_port, temp_file};

const LIMITED: &str = r#"
limits = { per_ip = { rate = 10, per = "second", burst = 5 } }
function route(req)
  local ok, retry_after = rsp.limit("per_ip", req.client_ip)
  if not ok then return { status = 429, headers = { ["Retry-After"] = retry_after } } end
  return "default"
end"#;

/// Requests on `connections` keep-alive connections at once for `time`:
/// (answered 200, answered 429).
fn hammer(proxy: &Proxy, connections: usize, time: Duration) -> (usize, usize) {
    let (ok, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let deadline = Instant::now() + time;
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (ok, refused, address) = (ok.clone(), refused.clone(), proxy.address);
            thread::spawn(move || {
                let mut client = Client::connect(address);
                while Instant::now() < deadline {
                    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
                    match client.response(false).status {
                        200 => ok.fetch_add(1, Ordering::SeqCst),
                        429 => refused.fetch_add(1, Ordering::SeqCst),
                        other => panic!("status {other}"),
                    };
                    thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    (ok.load(Ordering::SeqCst), refused.load(Ordering::SeqCst))
}

#[test]
fn a_limit_is_exact_with_one_worker_and_with_two() {
    let backend = Backend::start("web");
    for workers in [1, 2] {
        let proxy = Proxy::in_front_of(&backend, &format!("workers = {workers}\n{LIMITED}"));
        // 10/s with a burst of 5 over 3 s: 5 at once, then 30.
        let (ok, refused) = hammer(&proxy, 6, Duration::from_secs(3));
        assert!((33..=37).contains(&ok), "workers = {workers}: {ok} allowed");
        assert!(refused > 100, "workers = {workers}: {refused} refused");
        // Tokens come back at 10/s: of a few requests at once, some are
        // refused, saying when to come back.
        let refusal = (0..5)
            .map(|_| proxy.get("/"))
            .find(|response| response.status == 429)
            .expect("a 429");
        assert_eq!(refusal.header("retry-after").as_deref(), Some("1"));
    }
}

#[test]
fn keys_stay_within_max_keys() {
    let backend = Backend::start("web");
    let admin = free_port();
    let proxy = Proxy::in_front_of(
        &backend,
        &format!(
            r#"admin = {{ addr = "127.0.0.1:{admin}" }}
limits = {{ many = {{ rate = 1, per = "minute", burst = 1, max_keys = 1000 }} }}
dicts = {{ seen = {{ max_keys = 500 }}, big = {{ max_bytes = 65536 }} }}
function route(req)
  for i = 1, 1000 do
    rsp.limit("many", req.path .. "/" .. i)
    rsp.dict("seen"):set(req.path .. "/" .. i, string.rep("x", 100))
    rsp.dict("big"):set(req.path .. "/" .. i, string.rep("y", 1000))
  end
  return "default"
end"#
        ),
    );
    let before = proxy.rss_kib();
    let mut client = proxy.connect();
    // 200 requests of 1,000 new keys each: 200,000 keys.
    for n in 0..200 {
        client.send(format!("GET /{n} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        assert_eq!(client.response(false).status, 200);
    }
    let metrics = admin_request(
        format!("127.0.0.1:{admin}").parse().unwrap(),
        "GET",
        "/metrics",
    )
    .text();
    assert!(
        metrics.contains("rsp_limit_keys{limit=\"many\"} 1000\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rsp_limit_allowed_total{limit=\"many\"} 200000\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rsp_dict_keys{dict=\"seen\"} 500\n"),
        "{metrics}"
    );
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 16 * 1024, "rsp grew by {grown} KiB");
}

#[test]
fn dictionaries_are_shared_expire_and_count() {
    let backend = Backend::start("web");
    let proxy = Proxy::in_front_of(
        &backend,
        r#"workers = 2
dicts = { seen = { max_keys = 100 } }
function route(req)
  local seen = rsp.dict("seen")
  if req.path == "/set" then seen:set("k", "v", 300) end
  if req.path == "/flag" then seen:set("f", true) end
  if req.path == "/incr" then return { body = tostring(seen:incr("n", 2)) } end
  if req.path == "/bad" then
    local ok, message = pcall(seen.incr, seen, "f", 1)
    return { body = tostring(message) }
  end
  return { body = tostring(seen:get("k")) .. " " .. tostring(seen:get("f")) .. " " .. math.type(seen:get("n") or 0) }
end"#,
    );
    assert_eq!(proxy.get("/set").status, 200);
    proxy.get("/flag");
    // New connections, spread over both workers, see the same entries.
    for _ in 0..6 {
        assert_eq!(proxy.get("/").text(), "v true integer");
    }
    let sums: Vec<String> = (0..6).map(|_| proxy.get("/incr").text()).collect();
    assert_eq!(sums, ["2", "4", "6", "8", "10", "12"]);
    assert!(proxy.get("/bad").text().contains("not a number"));
    // Past the 300 ms the entry was set for.
    thread::sleep(Duration::from_millis(400));
    assert_eq!(proxy.get("/").text(), "nil true integer");
}

#[test]
fn limits_and_dictionaries_survive_a_reload_when_unchanged() {
    let backend = Backend::start("web");
    let settings = |rate: u32| {
        format!(
            r#"backends = {{ "{}" }}
limits = {{ slow = {{ rate = {rate}, per = "hour", burst = 2 }} }}
dicts = {{ kept = {{ max_keys = 10 }} }}
function route(req)
  if req.path == "/put" then rsp.dict("kept"):set("k", "still here") end
  if req.path == "/get" then return {{ body = tostring(rsp.dict("kept"):get("k")) }} end
  local ok = rsp.limit("slow", "one key")
  if not ok then return {{ status = 429 }} end
  return "default"
end"#,
            backend.address
        )
    };
    let proxy = Proxy::start(&settings(1));
    proxy.get("/put");
    assert_eq!(proxy.get("/").status, 200);
    assert_eq!(proxy.get("/").status, 429);
    proxy.reload(&settings(1));
    proxy.wait_for_log("reload done", 1);
    // The same limiter: the key's burst is still spent.
    assert_eq!(proxy.get("/").status, 429);
    assert_eq!(proxy.get("/get").text(), "still here");
    // Changed settings make a new limiter.
    proxy.reload(&settings(2));
    proxy.wait_for_log("reload done", 2);
    assert_eq!(proxy.get("/").status, 200);
}

#[test]
fn scripts_log_through_rsp_and_bad_calls_are_errors() {
    let backend = Backend::start("web");
    let proxy = Proxy::in_front_of(
        &backend,
        r#"function route(req)
  rsp.log("warn", "tenant " .. req.path .. "\nforged line")
  if req.path == "/nolimit" then rsp.limit("missing", "k") end
  if req.path == "/nodict" then rsp.dict("missing") end
  if req.path == "/level" then rsp.log("loud", "x") end
  return "default"
end"#,
    );
    assert_eq!(proxy.get("/ok").status, 200);
    proxy.wait_for_log("rsp::script] tenant /ok\\nforged line", 1);
    for (path, message) in [
        ("/nolimit", "rsp.limit(\"missing\"): no such limiter"),
        ("/nodict", "rsp.dict(\"missing\"): no such dictionary"),
        ("/level", "rsp.log(\"loud\")"),
    ] {
        assert_eq!(proxy.get(path).status, 500, "{path}");
        proxy.wait_for_log(message, 1);
    }
}

/// `rate = 1, per = "day", burst = 300000`: (burst - 1) × a day in
/// nanoseconds is past a u64. Such a bucket (over 100 years deep) is a
/// config error, and the deepest allowed one still limits.
#[test]
fn a_huge_burst_at_a_slow_rate_still_limits() {
    use rsp::config::LimitConfig;
    use rsp::state::{Limiter, Verdict};
    let config = temp_file(
        "burst.lua",
        "listen = \"127.0.0.1:1\"\nbackends = { \"127.0.0.1:2\" }\n\
         limits = { slow = { rate = 1, per = \"day\", burst = 300000 } }\n",
    );
    let (status, output) = check_config(&config);
    assert_eq!(status, Some(1), "{output}");
    assert!(output.contains("over 100 years deep"), "{output}");
    let limiter = Limiter::new(LimitConfig {
        name: "slow".into(),
        rate: 1,
        per: std::time::Duration::from_secs(86_400),
        burst: 36_000,
        max_keys: 10,
        max_bytes: usize::MAX,
        shared: None,
    });
    let now = 1_000_000_000;
    for request in 0..36_000 {
        assert_eq!(limiter.check(b"k", now), Verdict::Allowed, "{request}");
    }
    assert!(matches!(limiter.check(b"k", now), Verdict::Refused { .. }));
}
