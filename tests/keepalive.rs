//! Backend connections kept open between requests: reused, retried when the
//! backend closed one, closed when idle too long.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

#[test]
fn backend_connections_are_kept_and_reused() {
    let backend = Backend::start("a");
    let proxy = Proxy::in_front_of(&backend, "");
    for _ in 0..3 {
        let mut client = proxy.connect();
        for index in 0..20 {
            let (request, head_only) = match index % 4 {
                0 => (
                    format!("GET /size/{index} HTTP/1.1\r\nHost: x\r\n\r\n"),
                    false,
                ),
                1 => (
                    "HEAD /size/100 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
                    true,
                ),
                2 => (
                    "GET /chunked/20000 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
                    false,
                ),
                _ => (
                    "GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
                    false,
                ),
            };
            client.send(request.as_bytes());
            let response = client.response(head_only);
            assert!(response.status == 200 || response.status == 404);
        }
    }
    // An HTTP/1.0 client's request asks the backend to keep the connection.
    let old = proxy.get_raw("GET /size/5 HTTP/1.0\r\n\r\n");
    assert_eq!(old.body.len(), 5);
    assert_eq!(backend.count(), 61);
    assert_eq!(
        backend.connections().0,
        1,
        "61 requests, one backend connection"
    );
    let heads = backend.heads();
    assert!(heads[..60].iter().all(|head| !head.contains("Connection")));
    assert!(
        heads[60].contains("\r\nConnection: keep-alive\r\n"),
        "{}",
        heads[60]
    );

    // A close-delimited response ends its connection: the next request opens one.
    assert_eq!(proxy.get("/close/1000").body.len(), 1000);
    assert_eq!(proxy.get("/size/1").body.len(), 1);
    assert_eq!(backend.connections().0, 2);
}

/// A backend that answers the first request on each connection, keeps the
/// connection open, and closes it when the next request arrives: the race
/// every proxy that keeps connections must survive.
fn one_request_per_connection_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let Some(head) = read_head(&mut reader) else {
                    return;
                };
                if let Some(length) = head
                    .lines()
                    .find_map(|line| line.strip_prefix("Content-Length: "))
                {
                    let mut body = vec![0; length.trim().parse().unwrap()];
                    std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                }
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                // The next request, if one comes, is dropped with the connection.
                let _ = read_head(&mut reader);
            });
        }
    });
    (address, connections)
}

#[test]
fn a_backend_closing_a_kept_connection_costs_no_request() {
    let (address, connections) = one_request_per_connection_backend();
    let proxy = Proxy::start(&format!("backends = {{ \"{address}\" }}"));
    let mut client = proxy.connect();
    for _ in 0..20 {
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = client.response(false);
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "ok");
    }
    // A POST never takes a kept connection (it could not be sent again).
    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(client.response(false).status, 200);
    assert!(connections.load(Ordering::SeqCst) >= 21);
    assert!(!proxy.log().contains(": 502,"), "{}", proxy.log());
}

#[test]
fn kept_connections_close_after_their_idle_timeout() {
    let backend = Backend::start("a");
    let proxy = Proxy::in_front_of(&backend, "timeouts = { backend_keepalive = 300 }");
    assert_eq!(proxy.get("/size/1").status, 200);
    // A third of the idle timeout passes: the connection is still open.
    thread::sleep(Duration::from_millis(100));
    assert_eq!(backend.connections(), (1, 0), "closed before its timeout");
    assert!(
        wait_until(Duration::from_secs(5), || {
            backend.connections() == (1, 1)
        }),
        "timed out waiting for the idle connection to close"
    );
    // The next request opens a new one.
    assert_eq!(proxy.get("/size/1").status, 200);
    assert_eq!(backend.connections().0, 2);
}

#[test]
fn backend_keepalive_zero_closes_every_connection() {
    let backend = Backend::start("a");
    let proxy = Proxy::in_front_of(&backend, "backend_keepalive = 0");
    let mut client = proxy.connect();
    for _ in 0..5 {
        client.send(b"GET /size/3 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(client.response(false).body.len(), 3);
    }
    assert_eq!(backend.connections().0, 5);
    assert!(
        backend
            .heads()
            .iter()
            .all(|head| head.contains("\r\nConnection: close\r\n"))
    );
}
