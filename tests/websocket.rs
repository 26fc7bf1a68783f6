//! WebSocket through rsp, between a real server and a real client (the
//! Python `websockets` library, installed from tests/requirements.txt when
//! missing).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/websocket")
        .join(name)
}

/// The WebSocket server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        ensure_python_websockets();
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(script("echo_server.py"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one client scenario against `path` through the proxy; returns its
/// "ok ..." line.
fn client(proxy: &Proxy, path: &str, scenario: &str) -> String {
    let output = Command::new("python3")
        .arg(script("client.py"))
        .arg(format!("ws://{}{path}", proxy.address))
        .arg(scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{scenario}: {stdout}{}\nrsp log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.log()
    );
    stdout
}

fn proxy_in_front_of(server: &Server, settings: &str) -> Proxy {
    Proxy::start(&format!(
        "backends = {{ \"127.0.0.1:{}\" }}\n{settings}",
        server.port
    ))
}

#[test]
fn websocket_messages_pass_both_ways() {
    let server = Server::start();
    let proxy = proxy_in_front_of(&server, "access_log = \"-\"");
    assert!(client(&proxy, "/echo", "echo").starts_with("ok 1000 echoed"));
    assert!(client(&proxy, "/echo", "big").starts_with("ok 10485760 bytes echoed intact"));
    assert!(client(&proxy, "/echo", "close").starts_with("ok closed by the client"));
    assert!(client(&proxy, "/bye", "bye").starts_with("ok closed by the server with 4000"));
    // Each tunnel ended cleanly: nothing counted as unanswered or cut.
    assert!(!proxy.log().contains("connection cut"), "{}", proxy.log());
    // Plain HTTP still works on the same proxy.
    let plain = proxy.get("/echo");
    assert_eq!(plain.status, 426, "{}", plain.text());
}

#[test]
fn a_slow_websocket_reader_keeps_memory_bounded() {
    let server = Server::start();
    let proxy = proxy_in_front_of(&server, "");
    let baseline = proxy.rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let (sampled, pid) = (peak.clone(), proxy.child.id());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let sampler = thread::spawn(move || {
        while !finished.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(rss) = status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            {
                sampled.fetch_max(rss, std::sync::atomic::Ordering::SeqCst);
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let started = Instant::now();
    assert!(client(&proxy, "/push", "slow").starts_with("ok 20480800 bytes read slowly"));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "20 MB pushed to a slow reader in {:?}: rsp RSS {baseline} KiB, peak {peak} KiB",
        started.elapsed()
    );
    // Two bounded buffers (64 KiB each by default), not the stream.
    assert!(peak < baseline + 8 * 1024, "{baseline} KiB -> {peak} KiB");
}

#[test]
fn an_idle_tunnel_closes_after_its_timeout() {
    let server = Server::start();
    let proxy = proxy_in_front_of(&server, "timeouts = { tunnel = 300 }");
    // A raw handshake, then silence.
    let mut raw = proxy.connect();
    raw.send(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let switched = raw.response(true);
    assert_eq!(switched.status, 101);
    assert_eq!(
        switched.header("sec-websocket-accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let started = Instant::now();
    assert!(raw.is_closed());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    proxy.wait_for_log("tunnel idle for 300ms, closed", 1);
}
