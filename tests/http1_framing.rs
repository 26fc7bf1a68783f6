//! HTTP/1 framing from either side: ambiguous or invalid requests are
//! refused before the backend, broken or oversized answers become a 502
//! or a clean close, upgrades and interim answers are bounded, and no
//! bytes of one exchange are ever read as the next one's. Never forwarded,
//! never fatal.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

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
    assert!(proxy.log().contains("response head too large"));

    // Its own bound, not the buffer's: 5 KB heads over a 4 KiB bound.
    let five_kb: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(5_000)
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let address = raw_backend(five_kb, false);
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{address}\" }}\nmax_response_header_bytes = 4096"
    ));
    assert_eq!(proxy.get("/").status, 502);
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{address}\" }}\nmax_response_header_bytes = 8192"
    ));
    assert_eq!(proxy.get("/").status, 200);

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

/// A request head, then the connection: its answer as raw bytes, read
/// until the proxy closes or goes quiet for `quiet`.
fn exchange_raw(proxy: &Proxy, raw: &[u8], quiet: Duration) -> Vec<u8> {
    let mut client = proxy.connect();
    client.stream().set_read_timeout(Some(quiet)).unwrap();
    client.send(raw);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 65536];
    while let Ok(count) = client.reader.read(&mut chunk) {
        if count == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..count]);
    }
    answer
}

const WEBSOCKET: &str = "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn upgrades_table() {
    const SWITCH: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\ntunnel";
    const TO_H2C: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
    const BARE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
    let plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let h2c = "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
    // (backend's answer, request, switched?)
    let cases: &[(&[u8], &str, bool)] = &[
        (SWITCH, WEBSOCKET, true),
        (SWITCH, plain, false),
        (TO_H2C, WEBSOCKET, false),
        (BARE, WEBSOCKET, false),
        (TO_H2C, h2c, false),
    ];
    for (answer, request, switched) in cases {
        let recorder = Recorder::start(answer);
        let proxy = Proxy::start(&format!("backends = {{ \"{}\" }}", recorder.address));
        let got = String::from_utf8_lossy(&exchange_raw(
            &proxy,
            request.as_bytes(),
            Duration::from_millis(500),
        ))
        .into_owned();
        if *switched {
            assert!(got.starts_with("HTTP/1.1 101 "), "{request:?}: {got}");
            assert!(got.ends_with("\r\n\r\ntunnel"), "{got}");
        } else {
            // 502, and the connection closed (exchange_raw read to its end).
            assert!(
                got.starts_with("HTTP/1.1 502 "),
                "{request:?} / {:?}: {got}",
                String::from_utf8_lossy(answer)
            );
            assert!(got.contains("\r\nConnection: close\r\n"), "{got}");
            assert!(!got.contains("tunnel"), "{got}");
        }
        let received = recorder.requests().concat();
        if request.contains("h2c") {
            // Never offered to the backend.
            assert!(field(&received, "upgrade").is_empty(), "{received}");
            assert!(
                !received
                    .to_ascii_lowercase()
                    .contains("connection: upgrade"),
                "{received}"
            );
        }
    }

    // Which protocols go on is a setting; h2c is never among them.
    let recorder = Recorder::start(OK);
    let default = Proxy::start(&format!("backends = {{ \"{}\" }}", recorder.address));
    let offers = "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c, foo/2, WebSocket\r\n\r\n";
    let (_, received) = through(&default, &recorder, offers.as_bytes());
    assert_eq!(field(&received.unwrap(), "upgrade"), vec!["WebSocket"]);
    let (_, received) = through(
        &default,
        &recorder,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n",
    );
    let received = received.unwrap();
    assert!(
        field(&received, "upgrade").is_empty() && field(&received, "connection").is_empty(),
        "{received}"
    );
    let foo = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\nupgrades = {{ \"websocket\", \"foo\" }}",
        recorder.address
    ));
    let (_, received) = through(&foo, &recorder, offers.as_bytes());
    assert_eq!(
        field(&received.unwrap(), "upgrade"),
        vec!["foo/2, WebSocket"]
    );
    let config = temp_file(
        "h2c.lua",
        "listen = \"127.0.0.1:1\"\nbackends = { \"127.0.0.1:1\" }\nupgrades = { \"websocket\", \"h2c\" }\n",
    );
    let (code, stderr) = check_config(&config);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(":3: upgrades: h2c is never forwarded"),
        "{stderr}"
    );
}

/// A backend that answers every request with `interim` 1xx heads (forever
/// when `None`), then a 200.
fn interim_backend(interim: Option<usize>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let _ = read_head(&mut reader);
                let mut sent = 0;
                while interim.is_none_or(|count| sent < count) {
                    if stream
                        .write_all(b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                    sent += 1;
                }
                let _ = stream.write_all(OK);
            });
        }
    });
    address
}

#[test]
fn interim_responses_are_bounded_in_number_and_memory() {
    // Ten are passed on (without their meaningless Content-Length), then
    // the final answer.
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}",
        interim_backend(Some(10))
    ));
    let got = String::from_utf8_lossy(&exchange_raw(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    ))
    .into_owned();
    assert_eq!(
        got.matches("HTTP/1.1 100 Continue\r\n\r\n").count(),
        10,
        "{got}"
    );
    assert!(!got.contains("Content-Length: 5"), "{got}");
    assert!(got.ends_with("\r\n\r\nok"), "{got}");
    // An eleventh is a broken backend: 502.
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}",
        interim_backend(Some(11))
    ));
    let got = String::from_utf8_lossy(&exchange_raw(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    ))
    .into_owned();
    assert_eq!(got.matches("HTTP/1.1 100 Continue").count(), 10, "{got}");
    assert!(got.contains("HTTP/1.1 502 "), "{got}");
    assert!(proxy.log().contains("more than 10 interim responses"));

    // An endless stream of them to a client that reads nothing: rsp's
    // memory stays where it was.
    let proxy = Proxy::start(&format!("backends = {{ \"{}\" }}", interim_backend(None)));
    let before = proxy.rss_kib();
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut client = proxy.connect();
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        idle.push(client);
    }
    // The flood runs a second and a half.
    thread::sleep(Duration::from_millis(1500));
    let grown = proxy.rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "rsp grew by {grown} KiB");
    // Still serving: a new client gets its (interim) answer at once.
    assert_eq!(proxy.get("/").status, 100, "rsp still serves");
}

#[test]
fn framing_leftovers_table() {
    let recorder = Recorder::start(OK);
    let proxy = Proxy::start(&format!("backends = {{ \"{}\" }}", recorder.address));
    let refused: &[&str] = &[
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding:\r\n\r\nabc",
        "POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: CHUNKED\r\nCONTENT-LENGTH: 3\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
    ];
    for raw in refused {
        let (response, received) = through(&proxy, &recorder, raw.as_bytes());
        assert_eq!(response.status, 400, "{raw:?}");
        assert!(received.is_none(), "{raw:?} reached the backend");
    }
    // A field spelled with an underscore is no framing field: dropped, and
    // the request framed by its Content-Length.
    let (response, received) = through(
        &proxy,
        &recorder,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(response.status, 200);
    let received = received.unwrap();
    assert!(
        !received.contains("Transfer_Encoding") && received.ends_with("\r\n\r\nabc"),
        "{received}"
    );

    // Trailers that could reframe or reroute are removed; others pass.
    let (response, received) = through(
        &proxy,
        &recorder,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\
          Content-Length: 99\r\nHost: evil\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nX-Forwarded-For: 6.6.6.6\r\n\
          X-Checksum: 900150983cd24fb0\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    let received = received.unwrap();
    let trailers = received.split("\r\n0\r\n").nth(1).unwrap();
    assert_eq!(
        trailers, "X-Checksum: 900150983cd24fb0\r\n\r\n",
        "{received}"
    );
}

#[test]
fn response_framing_leftovers_table() {
    // (backend's answer, status the client gets, fields it must not see)
    let cases: &[(&[u8], u16, &[&str])] = &[
        (b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n", 502, &[]),
        (b"HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n", 502, &[]),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\nok", 502, &[]),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding:\r\n\r\nok", 502, &[]),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", 204, &["content-length", "transfer-encoding"]),
        (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n", 304, &["content-length", "transfer-encoding"]),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 200, &["content-length"]),
    ];
    for (answer, status, absent) in cases {
        let recorder = Recorder::start(answer);
        let proxy = Proxy::start(&format!("backends = {{ \"{}\" }}", recorder.address));
        let mut client = proxy.connect();
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = client.response(false);
        assert_eq!(
            response.status,
            *status,
            "{}",
            String::from_utf8_lossy(answer)
        );
        for name in *absent {
            assert_eq!(response.header(name), None, "{}", response.head);
        }
        if *status != 502 {
            // Framed as the client read it: the connection goes on.
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            assert_eq!(client.response(false).status, *status);
        }
    }
}

#[test]
fn rsp_own_answers_carry_no_body_where_none_may_be() {
    let proxy = Proxy::start(
        "backends = { \"127.0.0.1:1\" }\n\
         function route(req)\n\
           if req.path == \"/empty\" then return { status = 204, body = \"not allowed\" } end\n\
           if req.path == \"/same\" then return { status = 304, body = \"x\" } end\n\
           if req.path == \"/ping\" then return { body = \"pong\" } end\n\
           return nil\n\
         end\n",
    );
    let mut client = proxy.connect();
    for (request, status) in [
        ("GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", 204),
        ("GET /same HTTP/1.1\r\nHost: x\r\n\r\n", 304),
        ("HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        ("HEAD /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 503),
    ] {
        client.send(request.as_bytes());
        let response = client.response(true);
        assert_eq!(response.status, status, "{request}");
        assert_eq!(response.header("content-length"), None, "{}", response.head);
    }
    // Nothing was left on the connection: the next answer starts clean.
    client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = client.response(false);
    assert_eq!(response.text(), "pong");
    assert!(
        proxy
            .log()
            .contains("route() returned a body with status 204")
    );
}

/// What a broken backend sent is nobody's answer: not the next request's on
/// the same client connection (stale bytes left in the buffer would be read
/// as the next backend's response).
#[test]
fn a_broken_backend_leaves_nothing_for_the_next_request() {
    let broken =
        Recorder::start(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nSTALE-STALE-STALE");
    let good = Backend::start("good");
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\", \"{}\" }} }} }}",
        broken.address, good.address
    ));
    let mut client = proxy.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 502);
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let next = client.response(false);
    assert_eq!(next.status, 200, "{}", next.head);
    assert_eq!(next.text(), "hello from good");
}
