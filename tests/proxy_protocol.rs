//! The PROXY protocol: `accept_proxy` on listeners, `send_proxy` on pools.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;

/// A backend that records the first bytes of each connection (the PROXY
/// header, if any) and answers one HTTP request per connection.
fn recording_backend() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, received) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sender = sender.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut start = Vec::new();
                // Up to the end of the HTTP head (or of a tcp client's line).
                loop {
                    let mut line = Vec::new();
                    if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    start.extend_from_slice(&line);
                    // A v2 header itself starts with an empty line.
                    let http_head_done = start.windows(11).any(|w| w == b" HTTP/1.1\r\n")
                        && start.ends_with(b"\r\n\r\n");
                    if http_head_done || start.ends_with(b"ping\n") {
                        break;
                    }
                }
                let _ = writer.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                let _ = sender.send(start);
            });
        }
    });
    (address, received)
}

fn proxy_with_listener(options: &str, settings: &str) -> (Proxy, SocketAddr) {
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_listening(&format!("{{ addr = \"{address}\", {options} }}"), settings);
    wait_for_listener(address, &proxy.log);
    (proxy, address)
}

fn send(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn accept_proxy_takes_the_client_from_the_header() {
    let backend = Backend::start("a");
    let log = temp_file("proxied.log", "");
    std::fs::remove_file(&log).unwrap();
    let (proxy, address) = proxy_with_listener(
        "accept_proxy = true",
        &format!(
            "backends = {{ \"{}\" }}\naccess_log = {log:?}",
            backend.address
        ),
    );
    // Version 1, then a request.
    let answer = send(
        address,
        b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\nGET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("\r\nX-Forwarded-For: 203.0.113.7\r\n"),
        "{text}"
    );
    // Version 2 (binary), IPv4, then a request.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 192, 0, 2, 1, 0x1f, 0x90, 0x01, 0xbb]);
    v2.extend_from_slice(b"GET /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&send(address, &v2)).into_owned();
    assert!(
        text.contains("\r\nX-Forwarded-For: 198.51.100.9\r\n"),
        "{text}"
    );
    // No header: closed unanswered, nothing forwarded.
    let before = backend.count();
    assert!(send(address, b"GET /head HTTP/1.1\r\nHost: x\r\n\r\n").is_empty());
    assert_eq!(backend.count(), before);
    proxy.wait_for_log(
        "refused: the connection does not start with a PROXY protocol header",
        1,
    );
    // The access log names the real clients.
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(5), || lines()
            .contains("198.51.100.9 - - [")),
        "{}",
        lines()
    );
    assert!(lines().starts_with("203.0.113.7 - - ["), "{}", lines());
    // The plain listener beside it still takes plain HTTP.
    assert_eq!(proxy.get("/").status, 200);
}

#[test]
fn send_proxy_tells_each_backend_connection_its_client() {
    let (backend, received) = recording_backend();
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{backend}\" }}, send_proxy = \"v1\" }} }}"
    ));
    let mut client = proxy.connect();
    let client_port = client.stream().local_addr().unwrap().port();
    for _ in 0..2 {
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(client.response(false).text(), "ok");
        let start =
            String::from_utf8(received.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
        // A header per backend connection, naming this client and rsp's port.
        let expected = format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {}\r\nGET / HTTP/1.1\r\n",
            proxy.address.port()
        );
        assert!(start.starts_with(&expected), "{start}");
    }
}

#[test]
fn a_tcp_listener_passes_the_client_on_in_version_2() {
    let (backend, received) = recording_backend();
    let (_proxy, address) = proxy_with_listener(
        "mode = \"tcp\", pool = \"raw\", accept_proxy = true",
        &format!(
            "pools = {{ raw = {{ servers = {{ \"{backend}\" }}, send_proxy = \"v2\" }} }}\nbackends = {{ \"{backend}\" }}"
        ),
    );
    let answer = send(
        address,
        b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 3307\r\nping\n",
    );
    assert!(String::from_utf8_lossy(&answer).ends_with("ok"));
    let start = received.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut expected = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    expected.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    expected.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    expected.extend_from_slice(&4000u16.to_be_bytes());
    expected.extend_from_slice(&3307u16.to_be_bytes());
    expected.extend_from_slice(b"ping\n");
    assert_eq!(start, expected);
}

#[test]
fn health_checks_to_send_proxy_servers_say_they_are_local() {
    let (backend, received) = recording_backend();
    let _proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{backend}\" }}, send_proxy = \"v2\", \
         health = {{ path = \"/healthz\", interval_ms = 100 }} }} }}"
    ));
    let start = received.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut expected = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    expected.extend_from_slice(b"GET /healthz HTTP/1.1\r\n");
    assert!(
        start.starts_with(&expected),
        "{:?}",
        String::from_utf8_lossy(&start)
    );
}
