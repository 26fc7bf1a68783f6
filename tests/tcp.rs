//! `mode = "tcp"` listeners: raw bytes to a pool, for protocols that are
//! not HTTP (here one where the server speaks first, as MySQL does).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;

/// Greets with "hello from NAME\n", then echoes every byte until the
/// client stops sending, then closes.
fn banner_echo_server(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = stream.try_clone().unwrap();
                let mut writer = stream;
                writer
                    .write_all(format!("hello from {name}\n").as_bytes())
                    .unwrap();
                let mut chunk = [0u8; 65536];
                loop {
                    match reader.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(count) => {
                            if writer.write_all(&chunk[..count]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = writer.shutdown(Shutdown::Write);
            });
        }
    });
    address
}

/// Connects, reads the banner, sends `payload`, half-closes, and reads the
/// echo to the end: (banner, echo).
fn exchange(address: SocketAddr, payload: &[u8]) -> (String, Vec<u8>) {
    let stream = TcpStream::connect(address).unwrap();
    // tcp listeners do not defer accept: the server's banner comes without
    // the client sending a byte (a deferred one would wait a second or more).
    stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut banner = String::new();
    reader.read_line(&mut banner).unwrap();
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream;
    let sent = payload.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echo = Vec::new();
    reader.read_to_end(&mut echo).unwrap();
    sender.join().unwrap();
    (banner.trim().to_owned(), echo)
}

#[test]
fn tcp_listeners_pass_raw_bytes_to_their_pool() {
    let (first, second) = (banner_echo_server("first"), banner_echo_server("second"));
    let tcp_port = free_port();
    let tcp: SocketAddr = format!("127.0.0.1:{tcp_port}").parse().unwrap();
    let backend = Backend::start("web");
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{tcp}\", mode = \"tcp\", pool = \"echo\" }}"),
        &format!(
            "pools = {{ echo = {{ servers = {{ \"{first}\", \"{second}\", \"127.0.0.1:1\" }} }}, \
             default = {{ servers = {{ \"{}\" }} }} }}\n",
            backend.address
        ),
    );
    wait_for_listener(tcp, &proxy.log);
    // Bytes that are no HTTP at all, both ways, ending with a half-close.
    let payload: Vec<u8> = (0..2_000_000u32).map(|index| (index % 251) as u8).collect();
    let mut banners = Vec::new();
    for _ in 0..4 {
        let (banner, echo) = exchange(tcp, &payload);
        assert_eq!(echo.len(), payload.len());
        assert!(echo == payload, "the echo differs");
        banners.push(banner);
    }
    // Round robin over the two live servers; the dead one cost nothing.
    banners.sort();
    assert_eq!(
        banners,
        [
            "hello from first",
            "hello from first",
            "hello from second",
            "hello from second"
        ]
    );
    // The HTTP listener beside it is unaffected.
    assert_eq!(proxy.get("/").text(), "hello from web");
}

#[test]
fn route_conn_chooses_the_pool_of_a_tcp_listener() {
    let (first, second) = (banner_echo_server("first"), banner_echo_server("second"));
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{tcp}\", mode = \"tcp\" }}"),
        &format!(
            "pools = {{ one = {{ servers = {{ \"{first}\" }} }}, two = {{ servers = {{ \"{second}\" }} }} }}\n\
             route = function(r)\n\
               if r.mode == \"tcp\" then\n\
                 assert(r.listen == \"{tcp}\" and r.client_ip == \"127.0.0.1\" and r.client_port > 0)\n\
                 return \"two\"\n\
               end\n\
               return \"one\"\n\
             end\n"
        ),
    );
    wait_for_listener(tcp, &proxy.log);
    let (banner, echo) = exchange(tcp, b"ping");
    assert_eq!(banner, "hello from second");
    assert_eq!(echo, b"ping");
}

#[test]
fn a_tcp_pool_with_no_server_up_closes_the_connection() {
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{tcp}\", mode = \"tcp\", pool = \"dead\" }}"),
        "pools = { dead = { servers = { \"127.0.0.1:1\" } } }\nbackends = { \"127.0.0.1:1\" }",
    );
    wait_for_listener(tcp, &proxy.log);
    let mut stream = TcpStream::connect(tcp).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    // Closed without a byte: no HTTP error page on a tcp listener.
    assert_eq!(stream.read_to_end(&mut answer).unwrap_or(0), 0);
    assert!(answer.is_empty());
}

#[test]
fn listener_options_are_checked() {
    for (listen, expected) in [
        (
            "{ \"127.0.0.1:1\", { mode = \"tcp\", pool = \"p\" } }",
            "a listener table needs addr",
        ),
        (
            "{ { addr = \"127.0.0.1:1\", mode = \"udp\" } }",
            "mode: unexpected value \"udp\"",
        ),
        (
            "{ { addr = \"127.0.0.1:1\", mode = \"tcp\", pool = \"nope\" } }",
            "no pool named \"nope\"",
        ),
        (
            "{ { addr = \"127.0.0.1:1\", pool = \"p\" } }",
            "pool is for mode = \"tcp\" listeners",
        ),
        (
            "{ { addr = \"127.0.0.1:1\", colour = \"red\" } }",
            "unknown listener option \"colour\"",
        ),
        (
            "{ { addr = \"127.0.0.1:1\", defer_accept = 1 } }",
            "defer_accept: unexpected value 1",
        ),
    ] {
        let config = temp_file(
            "listeners.lua",
            &format!(
                "pools = {{ p = {{ servers = {{ \"127.0.0.1:2\" }} }} }}\nbackends = {{ \"127.0.0.1:2\" }}\nlisten = {listen}\n"
            ),
        );
        let (code, stderr) = check_config(&config);
        assert_eq!(code, Some(1), "{listen}: {stderr}");
        assert!(
            stderr.contains(":3: listen: ") && stderr.contains(expected),
            "{listen}: {stderr}"
        );
    }
}

#[test]
fn max_conns_queues_tcp_connections() {
    let server = banner_echo_server("only");
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{tcp}\", mode = \"tcp\", pool = \"one\" }}"),
        &format!(
            "pools = {{ one = {{ servers = {{ \"{server}\" }}, max_conns = 1 }} }}\nbackends = {{ \"{server}\" }}"
        ),
    );
    wait_for_listener(tcp, &proxy.log);
    let first = TcpStream::connect(tcp).unwrap();
    let mut first_reader = BufReader::new(first.try_clone().unwrap());
    let mut banner = String::new();
    first_reader.read_line(&mut banner).unwrap();
    assert_eq!(banner, "hello from only\n");
    // The second waits in the pool's queue while the first holds the slot.
    let second = TcpStream::connect(tcp).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut second_reader = BufReader::new(second.try_clone().unwrap());
    let mut line = String::new();
    assert!(
        second_reader.read_line(&mut line).is_err(),
        "served at once: {line:?}"
    );
    // The first leaves: the second is served.
    first.shutdown(Shutdown::Both).unwrap();
    drop(first_reader);
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    line.clear();
    second_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello from only\n");
}
