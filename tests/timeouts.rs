//! Timeouts: slow clients get 408, idle connections close, silent backends 504.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn proxy_with(backend: &Backend, timeouts: &str) -> Proxy {
    Proxy::in_front_of(backend, &format!("timeouts = {{ {timeouts} }}"))
}

#[test]
fn a_slowloris_client_gets_408_while_others_are_served() {
    let backend = Backend::start("one");
    let proxy = proxy_with(&backend, "client_header = 400");
    let started = Instant::now();
    let mut slow = proxy.connect();
    // A byte every 100 ms never finishes the head; trickling does not extend the deadline.
    let trickler = thread::spawn(move || {
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
            if slow.reader.get_mut().write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_millis(700) {
                break;
            }
        }
        slow.response(false)
    });
    // Meanwhile a normal client is served at once.
    let normal_started = Instant::now();
    assert_eq!(proxy.get("/").status, 200);
    assert!(normal_started.elapsed() < Duration::from_millis(300));
    let response = trickler.join().unwrap();
    assert_eq!(response.status, 408);
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(
        backend.count(),
        1,
        "the slow request must not reach the backend"
    );
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let backend = Backend::start("one");
    let proxy = proxy_with(&backend, "client_idle = 300");
    let mut client = proxy.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 200);
    let started = Instant::now();
    assert!(client.is_closed());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

/// Open connections as the admin port counts them (its own included).
fn open_connections(admin: std::net::SocketAddr) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_slice(&admin_request(admin, "GET", "/stats.json").body).unwrap();
    stats["connections"]["open"].as_u64().unwrap()
}

#[test]
fn a_connection_that_never_speaks_is_closed_after_client_header() {
    let backend = Backend::start("one");
    let eager_port = free_port();
    let eager: std::net::SocketAddr = format!("127.0.0.1:{eager_port}").parse().unwrap();
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{eager}\", defer_accept = false }}"),
        &format!(
            "backends = {{ \"{}\" }}\ntimeouts = {{ client_header = 400, client_idle = 60000 }}",
            backend.address
        ),
    );
    wait_for_listener(eager, &proxy.log);
    // Not client_idle: a connection that never asked anything gets the
    // request head's time, and is closed without a 408.
    let started = Instant::now();
    let mut silent = Client::connect(eager);
    let mut byte = [0u8; 1];
    assert_eq!(
        silent.reader.read(&mut byte).unwrap(),
        0,
        "closed without an answer"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // Deferred (the default for HTTP): the kernel hands it over after about
    // a second, and client_header runs from there.
    let started = Instant::now();
    let mut deferred = proxy.connect();
    assert_eq!(deferred.reader.read(&mut byte).unwrap(), 0);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    proxy.wait_for_log("no request within 400ms", 2);
    assert!(!proxy.log().contains(": 408,"), "{}", proxy.log());
    // A connection that did send a request keeps its client_idle.
    let mut client = proxy.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 200);
    client
        .stream()
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    assert!(
        client.reader.read(&mut byte).is_err(),
        "kept open while idle"
    );
}

#[test]
fn http_listeners_take_a_connection_only_once_it_speaks() {
    let backend = Backend::start("one");
    let eager_port = free_port();
    let eager: std::net::SocketAddr = format!("127.0.0.1:{eager_port}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{eager}\", defer_accept = false }}"),
        &format!(
            "backends = {{ \"{}\" }}\nadmin = \"{admin}\"",
            backend.address
        ),
    );
    wait_for_listener(eager, &proxy.log);
    wait_for_listener(admin, &proxy.log);
    assert_eq!(open_connections(admin), 1);
    // Connected but silent: the default listener leaves it to the kernel,
    // the one with defer_accept = false takes it at once.
    let mut deferred = proxy.connect();
    // Time for a listener that took it to count it.
    thread::sleep(Duration::from_millis(200));
    let _eager = Client::connect(eager);
    assert!(
        wait_until(Duration::from_secs(2), || open_connections(admin) >= 2),
        "the eager listener's client"
    );
    assert_eq!(
        open_connections(admin),
        2,
        "the deferred one was taken early"
    );
    // Once it speaks, it is served as any other.
    deferred.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(deferred.response(false).status, 200);
    assert_eq!(open_connections(admin), 3);
}

#[test]
fn a_backend_that_never_answers_gets_504() {
    let backend = Backend::start("one");
    let proxy = proxy_with(&backend, "backend_response = 300");
    let started = Instant::now();
    let mut client = proxy.connect();
    client.send(b"GET /sleep/3000 HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The client connection goes on.
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 200);
}

#[test]
fn a_backend_that_stalls_mid_body_is_cut_off() {
    let staller = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = staller.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in staller.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let _ = read_head(&mut reader);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part");
            thread::sleep(Duration::from_secs(5));
        }
    });
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{address}\" }}\ntimeouts = {{ idle = 300 }}"
    ));
    let started = Instant::now();
    let mut client = proxy.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut received = Vec::new();
    let _ = client.reader.read_to_end(&mut received);
    assert!(String::from_utf8_lossy(&received).ends_with("only part"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(proxy.log().contains("no bytes moved"));
}

#[test]
fn at_max_connections_rsp_stops_accepting_and_resumes() {
    let backend = Backend::start("one");
    let proxy = Proxy::in_front_of(&backend, "max_connections = 3");
    let mut held: Vec<Client> = (0..3).map(|_| proxy.connect()).collect();
    for client in &mut held {
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(client.response(false).status, 200);
    }
    // The kernel completes the handshake, but rsp does not take the connection.
    let mut waiting = proxy.connect();
    waiting.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    waiting
        .stream()
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        waiting.reader.get_mut().peek(&mut byte).is_err(),
        "served beyond max_connections"
    );
    assert!(proxy.log().contains("at max_connections"));
    drop(held.pop());
    waiting
        .stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(waiting.response(false).status, 200);
    assert!(proxy.log().contains("accepting connections again"));
}

#[test]
fn out_of_descriptors_pauses_accepting_without_spinning() {
    let backend = Backend::start("one");
    let port = free_port();
    let config = temp_file(
        "emfile.lua",
        &format!(
            "listen = \"127.0.0.1:{port}\"\nbackends = {{ \"{}\" }}\n",
            backend.address
        ),
    );
    let log = config.with_extension("log");
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 32 && exec {} {}",
            rsp_binary(),
            config.display()
        ))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_listener(address, &log);
    // More clients than rsp has descriptors for, each with a request
    // begun (a silent one would wait in the kernel: accepts are deferred).
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.write_all(b"GET").unwrap();
            stream
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .unwrap()
            .contains("pausing accepts")),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let before = cpu_ticks(child.id());
    thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(child.id()) - before;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("accept failed") && text.contains("pausing accepts"),
        "{text}"
    );
    assert!(
        spent < 30,
        "rsp used {spent} CPU ticks in 1 s while out of descriptors"
    );
    assert!(
        text.matches("accept failed").count() <= 3,
        "accept errors not rate-limited: {text}"
    );
    drop(idle);
    // Waits in the backlog until rsp accepts again.
    let mut client = Client::connect(address);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A backend that answers `100 Continue` only after `delay` (it decides
/// whether to take the body, as an upload service checking a quota does),
/// then reads the body and answers 200; any other request is answered at
/// once. The count is of the heads it read.
fn late_continue_backend(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let counted = heads.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let heads = counted.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                while let Some(head) = read_head(&mut reader) {
                    heads.fetch_add(1, Ordering::SeqCst);
                    let lower = head.to_ascii_lowercase();
                    let length: usize = lower
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |value| value.trim().parse().unwrap());
                    if lower.contains("expect: 100-continue") {
                        thread::sleep(delay);
                        if writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                            return;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if writer.write_all(OK).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, heads)
}

/// A client that sent `Expect: 100-continue` waits for the backend's
/// `100 Continue` before it sends its body (RFC 9110 §10.1.1): the
/// exchange waits on its backend, not on a stalled client, and is not cut
/// while the pool has requests queued, however long the backend decides.
#[test]
fn a_client_waiting_for_its_backends_100_continue_is_not_cut() {
    let (backend, heads) = late_continue_backend(Duration::from_secs(4));
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{backend}\" }}, max_conns = 1, queue_timeout_ms = 15000 }} }}"
    ));
    let mut uploader = proxy.connect();
    uploader.send(
        b"PUT /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    // The upload holds the pool's one connection...
    assert!(wait_until(Duration::from_secs(5), || heads
        .load(Ordering::SeqCst)
        == 1));
    // ... and a second request waits in the pool's queue meanwhile.
    let waiter = {
        let address = proxy.address;
        thread::spawn(move || {
            let mut client = Client::connect(address);
            client.send(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            client.try_response(false).map(|response| response.status)
        })
    };
    let interim = uploader.try_response(false);
    assert_eq!(
        interim.as_ref().map(|response| response.status),
        Some(100),
        "the upload was cut while its backend decided: {}",
        proxy.log()
    );
    uploader.send(b"hello");
    let last = uploader.try_response(false);
    assert_eq!(last.map(|response| response.status), Some(200));
    assert_eq!(waiter.join().unwrap(), Some(200));
    assert!(!proxy.log().contains("connection cut"), "{}", proxy.log());
}
