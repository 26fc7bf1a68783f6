//! Hostile input from either side: refused, logged, never forwarded, never fatal.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn ambiguous_or_invalid_requests_are_refused_before_the_backend() {
    let backend = Backend::start("one");
    let proxy = Proxy::in_front_of(&backend, "");
    let cases: &[(&str, &[u8])] = &[
        ("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("differing CLs", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"),
        ("CL not decimal", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x4\r\n\r\n"),
        ("CL with sign", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n"),
        ("TE not ending in chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
        ("TE gzip only", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        ("NUL in a value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"),
        ("bare CR in a value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
        ("space in a name", b"GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n"),
        ("space-smuggled target", b"GET /a HTTP/1.1 /b HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
        ("HTTP/0.9 style", b"GET /\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ];
    for (name, raw) in cases {
        let mut client = proxy.connect();
        client.send(raw);
        let response = client
            .try_response(false)
            .unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(response.status, 400, "{name}");
        assert!(client.is_closed(), "{name}: connection left open");
    }
    // The bad chunk size is the one case whose head was fine: its head may
    // have gone out, but no other case reached the backend.
    assert!(backend.count() <= 1, "{:?}", backend.heads());
    assert!(proxy.log().matches(": 400, ").count() >= cases.len());
}

#[test]
fn request_bodies_over_max_body_bytes_get_413() {
    let backend = Backend::start("one");
    let proxy = Proxy::in_front_of(&backend, "max_body_bytes = 1000");
    let mut client = proxy.connect();
    client.send(b"POST /checksum HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
    assert_eq!(client.response(false).status, 413);
    assert_eq!(backend.count(), 0);

    let mut client = proxy.connect();
    client.send(b"POST /checksum HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        let _ = client
            .reader
            .get_mut()
            .write_all(format!("258\r\n{}\r\n", "a".repeat(600)).as_bytes());
    }
    assert_eq!(client.response(false).status, 413);

    let mut client = proxy.connect();
    client.send(b"POST /checksum HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(client.response(false).status, 200);
}

/// A backend that answers every request with `answer` and then does `after`.
fn raw_backend(answer: &'static [u8], reset: bool) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let _ = read_head(&mut reader);
            let _ = stream.write_all(answer);
            if reset {
                // SO_LINGER 0: close sends a reset.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt on a socket we own, with a correctly sized struct.
                unsafe {
                    use std::os::fd::AsRawFd;
                    libc::setsockopt(
                        stream.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &linger as *const libc::linger as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    );
                }
            }
        }
    });
    address
}

#[test]
fn backend_faults_become_502_or_a_clean_close() {
    let malformed = raw_backend(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", false);
    let proxy = Proxy::start(&format!("backends = {{ \"{malformed}\" }}"));
    assert_eq!(proxy.get("/").status, 502);

    let oversized: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000))
            .into_bytes()
            .into_boxed_slice(),
    );
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}",
        raw_backend(oversized, false)
    ));
    assert_eq!(proxy.get("/").status, 502);

    // Closes (FIN) mid-response: the client's connection closes too.
    let closing = raw_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhalf",
        false,
    );
    let proxy = Proxy::start(&format!("backends = {{ \"{closing}\" }}"));
    let mut client = proxy.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut received = Vec::new();
    let _ = client.reader.read_to_end(&mut received);
    assert!(String::from_utf8_lossy(&received).ends_with("half"));
    assert!(proxy.log().contains("closed the connection mid-response"));

    // Dies mid-response: the client sees its connection close, not a hang.
    let dying = raw_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial",
        true,
    );
    let proxy = Proxy::start(&format!("backends = {{ \"{dying}\" }}"));
    let started = Instant::now();
    let mut client = proxy.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut received = Vec::new();
    let _ = client.reader.read_to_end(&mut received);
    assert!(String::from_utf8_lossy(&received).ends_with("partial"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // rsp goes on serving: the next request meets the same dying backend.
    let mut next = proxy.connect();
    next.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut again = Vec::new();
    let _ = next.reader.read_to_end(&mut again);
    assert!(String::from_utf8_lossy(&again).starts_with("HTTP/1.1 200 OK"));
}
