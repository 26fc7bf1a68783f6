//! SIGTERM: stop accepting, finish what is in flight, exit 0.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_cleanly() {
    let backend = Backend::start("one");
    let mut proxy = Proxy::in_front_of(&backend, "");
    let mut idle = proxy.connect();
    idle.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(idle.response(false).status, 200);
    let mut slow = proxy.connect();
    slow.send(b"GET /sleep/800 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(wait_until(Duration::from_secs(5), || backend.count() == 2));

    let started = Instant::now();
    proxy.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed at once.
    assert!(idle.is_closed());
    // The request in flight still gets its whole answer, then the connection closes.
    let response = slow.response(false);
    assert_eq!(response.text(), "hello from one");
    assert!(slow.is_closed());
    // No new connections, and rsp exits 0 once drained.
    assert!(std::net::TcpStream::connect(proxy.address).is_err());
    let mut exit = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            exit = proxy.child.try_wait().unwrap();
            exit.is_some()
        }),
        "rsp did not exit"
    );
    let status = exit.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(proxy.log().contains("every request finished"));
    assert!(
        proxy
            .log()
            .contains("(2 requests read, 0 connections closed unanswered)"),
        "{}",
        proxy.log()
    );
}

#[test]
fn shutdown_timeout_bounds_the_wait() {
    let backend = Backend::start("one");
    let mut proxy = Proxy::in_front_of(&backend, "shutdown_timeout_ms = 300");
    let mut slow = proxy.connect();
    slow.send(b"GET /sleep/5000 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(wait_until(Duration::from_secs(5), || backend.count() == 1));
    let started = Instant::now();
    proxy.signal(libc::SIGINT);
    let status = proxy.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
