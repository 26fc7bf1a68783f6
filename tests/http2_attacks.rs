//! Hostile HTTP/2 clients against the real rsp over loopback: the floods
//! and resets behind the HTTP/2 CVEs (rapid reset, CONTINUATION flood,
//! MadeYouReset), HPACK bombs, stalled flow control, too many streams.
//! Each attack gets the answer RFC 9113 gives it (GOAWAY or RST_STREAM
//! with its code, a 431), and rsp goes on serving other clients meanwhile
//! and after.
//!
//! The attacker is `tests/h2/attack.py` (Python's `h2` package makes the
//! frames a real client would, raw frames the rest; installed with pip
//! from tests/requirements.txt when missing).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::h2::*;
use common::*;
use serde_json::Value;

#[test]
fn rapid_reset_gets_goaway_enhance_your_calm() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let seen = while_serving(&proxy, || attack(&proxy, &["rapid_reset", "5000"]));
    assert_eq!(goaway_code(&seen), Some(ENHANCE_YOUR_CALM), "{seen}");
    assert_eq!(seen["goaway"]["debug"], "too many streams reset");
    assert_eq!(seen["closed"], true);
    // 200 resets in a second are allowed, the 201st is not: rsp stopped
    // taking streams long before the 5000 the client made.
    let last = seen["goaway"]["last_stream"].as_u64().unwrap();
    assert!((401..2000).contains(&last), "last stream {last}");
    assert_bystander_served(&seen);
    proxy.wait_for_log("HTTP/2 GOAWAY EnhanceYourCalm: too many streams reset", 1);
    assert_serves(&mut proxy);
}

#[test]
fn header_blocks_are_bounded_exactly_in_frames_and_bytes() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // 32 CONTINUATIONs are allowed, a 33rd is not; 2 x 32768 bytes of
    // block are allowed, one byte more is not.
    for mode in ["frames", "bytes"] {
        let seen = attack(&proxy, &["continuation_bound", mode]);
        assert_eq!(seen["goaway_before_limit"], false, "{mode}: {seen}");
        assert_eq!(
            goaway_code(&seen),
            Some(ENHANCE_YOUR_CALM),
            "{mode}: {seen}"
        );
        assert_eq!(
            seen["goaway"]["debug"],
            "a header block over its bound (bytes or CONTINUATION frames)"
        );
        assert_eq!(seen["closed"], true);
        assert_bystander_served(&seen);
    }
    proxy.wait_for_log(
        "HTTP/2 GOAWAY EnhanceYourCalm: a header block over its bound",
        2,
    );
    assert_serves(&mut proxy);
}

#[test]
fn continuation_flood_is_cut_with_memory_bounded() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    assert_serves(&mut proxy);
    let before = proxy.memory_kib("VmRSS");
    // Four connections at once, each writing CONTINUATIONs (of 16 KB, then
    // of 1 KB) until rsp cuts it, or 16 MiB.
    for size in ["16384", "1024"] {
        let seen = while_serving(&proxy, || {
            attack(&proxy, &["continuation_flood", "16", "4", size])
        });
        assert_eq!(
            seen["goaway_codes"],
            serde_json::json!([11, 11, 11, 11]),
            "{seen}\n{}",
            proxy.log()
        );
        for one in seen["all"].as_array().unwrap() {
            assert_eq!(one["closed"], true, "{one}");
            // Cut long before its 16 MiB (what went out is rsp's 64 KiB
            // bound plus what the kernel buffers).
            assert!(one["sent"].as_u64().unwrap() < 12 << 20, "{one}");
        }
        assert_bystander_served(&seen);
    }
    let peak = proxy.memory_kib("VmHWM");
    assert!(
        peak < before + 4 * 1024,
        "rsp grew from {before} KiB to a peak of {peak} KiB"
    );
    proxy.wait_for_log(
        "HTTP/2 GOAWAY EnhanceYourCalm: a header block over its bound",
        8,
    );
    assert_serves(&mut proxy);
}

#[test]
fn made_you_reset_counts_in_the_reset_budget() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let seen = while_serving(&proxy, || attack(&proxy, &["made_you_reset", "2000"]));
    assert_eq!(goaway_code(&seen), Some(ENHANCE_YOUR_CALM), "{seen}");
    assert_eq!(seen["goaway"]["debug"], "too many streams reset");
    assert_eq!(seen["closed"], true);
    // rsp reset them itself, with the code each deserved: a stream window
    // over 2^31-1 (FLOW_CONTROL_ERROR), DATA past the content-length
    // (PROTOCOL_ERROR), DATA or HEADERS after END_STREAM (STREAM_CLOSED)...
    assert_eq!(seen["codes"], serde_json::json!([1, 3, 5]), "{seen}");
    // ... 200 of them, and then the connection.
    let resets = seen["rst_before_goaway"].as_u64().unwrap();
    assert!(
        (200..400).contains(&resets),
        "{resets} resets before GOAWAY"
    );
    assert_bystander_served(&seen);
    proxy.wait_for_log("HTTP/2 GOAWAY EnhanceYourCalm: too many streams reset", 1);
    proxy.wait_for_log("reset (FlowControlError): a stream window over 2^31 - 1", 1);
    proxy.wait_for_log("reset (ProtocolError): DATA that does not add up", 1);
    proxy.wait_for_log("reset (StreamClosed): DATA after the end of the stream", 1);
    proxy.wait_for_log(
        "reset (StreamClosed): HEADERS after the end of the stream",
        1,
    );
    assert_serves(&mut proxy);
}

#[test]
fn data_rsp_throws_away_comes_back_as_connection_window() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // 80 bodies of 16000 bytes that rsp refuses (past their
    // content-length), sent within the connection window: 1.28 MB in all,
    // more than the ~1 MiB window rsp opens.
    let seen = attack(&proxy, &["window_leak", "80", "16000"]);
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_eq!(seen["rst_count"], 80, "{seen}");
    assert_eq!(seen["stalled_at"], Value::Null, "{seen}");
    assert_serves(&mut proxy);
}

#[test]
fn hpack_bomb_gets_431_and_the_connection_goes_on() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    assert_serves(&mut proxy);
    let before = proxy.memory_kib("VmRSS");
    // 20 streams in turn, each a 4 KB field named 10000 times by index: a
    // header list of 40 MB each from 12 KB of block.
    let seen = while_serving(&proxy, || attack(&proxy, &["hpack_bomb", "10000", "20"]));
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    for stream in (1..=39).step_by(2) {
        assert_eq!(
            seen["status"][stream.to_string()],
            431,
            "stream {stream}: {seen}"
        );
    }
    // The next stream on the same connection is served.
    assert_eq!(seen["honest"], 41);
    assert_eq!(seen["status"]["41"], 200, "{seen}");
    assert_eq!(seen["text"]["41"], "hello from web");
    assert_eq!(seen["closed"], false);
    assert_bystander_served(&seen);
    let peak = proxy.memory_kib("VmHWM");
    assert!(
        peak < before + 4 * 1024,
        "rsp grew from {before} KiB to a peak of {peak} KiB"
    );
    proxy.wait_for_log("431, header list over 32768 bytes", 20);
    // None of them reached the backend.
    assert!(backend.heads().iter().all(|head| !head.contains("x-bomb")));
    assert_serves(&mut proxy);
}

#[test]
fn control_frame_floods_get_goaway_enhance_your_calm() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let floods = [
        ("ping", "PING flood"),
        ("settings", "SETTINGS flood"),
        ("empty_data", "a flood of empty DATA frames"),
        ("window_update", "WINDOW_UPDATE flood"),
        ("priority", "PRIORITY flood"),
        ("unknown", "a flood of unknown frames"),
    ];
    // All six at once, each on its own connection, while another client
    // is served.
    let results = while_serving(&proxy, || {
        thread::scope(|scope| {
            let attacks: Vec<_> = floods
                .iter()
                .map(|(kind, _)| scope.spawn(|| attack(&proxy, &["flood", kind, "25000"])))
                .collect();
            attacks
                .into_iter()
                .map(|attack| attack.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    for ((kind, why), seen) in floods.iter().zip(results) {
        assert_eq!(
            goaway_code(&seen),
            Some(ENHANCE_YOUR_CALM),
            "{kind}: {seen}"
        );
        assert_eq!(seen["goaway"]["debug"], *why, "{kind}");
        assert_eq!(seen["closed"], true, "{kind}");
        assert_bystander_served(&seen);
        proxy.wait_for_log(&format!("HTTP/2 GOAWAY EnhanceYourCalm: {why}"), 1);
    }
    assert_serves(&mut proxy);
}

#[test]
fn a_busy_honest_client_stays_under_the_budgets() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // 150 cancelled streams and 9000 PINGs, then a request: allowed.
    let seen = attack(&proxy, &["under_budget", "150", "9000"]);
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_eq!(seen["pings"], 9000, "{seen}");
    assert_eq!(seen["status"][seen["last"].to_string()], 200, "{seen}");
    assert_serves(&mut proxy);
}

#[test]
fn a_zero_window_stall_is_cut_after_the_idle_timeout() {
    let backend = Backend::start("web");
    // One backend connection at a time: the stalled stream holds it, so
    // the other client is served only once rsp lets it go.
    let mut proxy = Proxy::start_h2c(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\" }}, max_conns = 1 }} }}\n\
         timeouts = {{ idle = 1000 }}",
        backend.address
    ));
    let (seen, other, waited) = thread::scope(|scope| {
        let attacker = scope.spawn(|| attack(&proxy, &["zero_window", "/size/8388608", "6"]));
        assert!(
            wait_until(Duration::from_secs(5), || backend
                .heads()
                .iter()
                .any(|head| head.starts_with("GET /size/"))),
            "the large answer never reached the backend"
        );
        let started = Instant::now();
        let other = proxy.get("/");
        (attacker.join().unwrap(), other, started.elapsed())
    });
    // rsp sent the head, no DATA (the window is 0), and after a second
    // without progress reset the stream.
    assert_eq!(seen["status"]["1"], 200, "{seen}");
    assert!(seen["body"]["1"].as_u64().unwrap_or(0) == 0, "{seen}");
    assert!(seen["rst"]["1"].is_u64(), "no RST_STREAM: {seen}");
    let cut_at = seen["cut_at"].as_f64().unwrap();
    assert!((0.9..4.0).contains(&cut_at), "cut after {cut_at} s: {seen}");
    // The connection goes on: a body-less answer needs no window.
    assert_eq!(seen["status"]["3"], 204, "{seen}");
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_bystander_served(&seen);
    // The backend connection was let go: the other client, queued behind
    // it, got its answer (not a 503 after the 5 s queue timeout), and the
    // backend saw its connection end.
    assert_eq!(other.status, 200, "{}", proxy.log());
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert!(
        wait_until(Duration::from_secs(5), || backend.connections().1 >= 1),
        "the backend connection was never closed"
    );
    assert_serves(&mut proxy);
}

#[test]
fn a_stream_waiting_for_its_backend_costs_no_cpu() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    assert_serves(&mut proxy);
    // The same wait over HTTP/1.1 first: a request to a backend that never
    // answers, given up after a second.
    let before = proxy.cpu_time();
    let mut client = proxy.connect();
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    client.send(b"GET /silent HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(client.try_response(false).is_none());
    drop(client);
    let http1 = proxy.cpu_time() - before;
    let before = proxy.cpu_time();
    let url = format!("http://{}/silent", proxy.address);
    let output = curl(&["--http2-prior-knowledge", "--max-time", "1", &url]);
    assert!(!output.success());
    let http2 = proxy.cpu_time() - before;
    assert!(http1 < Duration::from_millis(200), "HTTP/1.1: {http1:?}");
    assert!(
        http2 < Duration::from_millis(200),
        "rsp used {http2:?} of CPU while one HTTP/2 stream waited 1 s (HTTP/1.1: {http1:?})"
    );
    assert_serves(&mut proxy);
}

#[test]
fn streams_past_max_concurrent_streams_are_refused() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "http2 = { max_concurrent_streams = 5 }");
    let seen = while_serving(&proxy, || {
        attack(&proxy, &["concurrency", "8", "/sleep/800"])
    });
    for stream in [1, 3, 5, 7, 9] {
        let id = stream.to_string();
        assert_eq!(seen["status"][&id], 200, "stream {stream}: {seen}");
        assert_eq!(seen["text"][&id], "hello from web");
    }
    for stream in [11, 13, 15] {
        assert_eq!(
            seen["rst"][stream.to_string()],
            REFUSED_STREAM,
            "stream {stream}: {seen}"
        );
        assert_eq!(seen["status"][stream.to_string()], Value::Null);
    }
    // The five ran side by side, and a stream after them is served.
    assert!(seen["elapsed"].as_f64().unwrap() < 3.0, "{seen}");
    assert_eq!(seen["status"][seen["after"].to_string()], 200, "{seen}");
    assert_eq!(seen["goaway"], Value::Null);
    assert_bystander_served(&seen);
    let slow = backend
        .heads()
        .iter()
        .filter(|head| head.starts_with("GET /sleep/"))
        .count();
    assert_eq!(slow, 5);
    proxy.wait_for_log("refused: 5 streams open", 3);
    assert_serves(&mut proxy);
}
