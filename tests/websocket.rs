//! WebSocket through rsp, between a real server and a real client (the
//! Python `websockets` library, installed from tests/requirements.txt when
//! missing).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
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

/// WebSocket (HTTP/1.1 Upgrade) still works on a listener that also takes
/// h2c, and a tunnel's bytes that happen to be the HTTP/2 preface stay
/// tunnel bytes.
#[test]
fn websocket_upgrades_on_an_h2c_listener_stay_tunnels() {
    // A backend that switches protocols and echoes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let Some(_) = read_head(&mut reader) else {
                    return;
                };
                writer
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                          Connection: Upgrade\r\n\r\n",
                    )
                    .unwrap();
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                    writer.write_all(&line).unwrap();
                    line.clear();
                }
            });
        }
    });
    let proxy = Proxy::start_h2c(&format!(
        "backends = {{ \"{address}\" }}\nfunction route(req) return \"default\" end"
    ));
    let mut client = TcpStream::connect(proxy.address).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let head = read_head(&mut reader).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nhello\n")
        .unwrap();
    let mut echoed = Vec::new();
    while !echoed.ends_with(b"hello\n") {
        let mut line = Vec::new();
        assert!(
            reader.read_until(b'\n', &mut line).unwrap() > 0,
            "{echoed:?}"
        );
        echoed.extend_from_slice(&line);
    }
    assert_eq!(echoed, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nhello\n");
}
