//! A `mode = "tcp"` listener in front of a real Redis, driven by redis-cli
//! and redis-benchmark (Debian's redis-server package, installed by the
//! test when missing).

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::redis::Redis;
use common::*;

fn redis_cli(address: SocketAddr, arguments: &[&str], input: Option<&[u8]>) -> String {
    let mut command = Command::new("redis-cli");
    command
        .args(["-h", "127.0.0.1", "-p", &address.port().to_string()])
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(input) = input {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn redis_through_a_tcp_listener() {
    let redis = Redis::start();
    let tcp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{tcp}\", mode = \"tcp\", pool = \"redis\" }}"),
        &format!(
            "pools = {{ redis = {{ servers = {{ \"{}\" }}, health = {{ interval_ms = 200 }} }} }}\nbackends = {{ \"{}\" }}",
            redis.address, redis.address
        ),
    );
    wait_for_listener(tcp, &proxy.log);
    assert_eq!(redis_cli(tcp, &["ping"], None), "PONG");
    assert_eq!(
        redis_cli(tcp, &["set", "greeting", "hello through rsp"], None),
        "OK"
    );
    // Written through rsp, read straight from Redis, and back.
    assert_eq!(
        redis_cli(redis.address, &["get", "greeting"], None),
        "hello through rsp"
    );
    let big = vec![b'r'; 1_000_000];
    assert_eq!(redis_cli(tcp, &["-x", "set", "big"], Some(&big)), "OK");
    assert_eq!(redis_cli(tcp, &["strlen", "big"], None), "1000000");
    // Many clients, pipelined commands.
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &tcp.port().to_string()])
        .args(["-q", "-n", "20000", "-c", "20", "-P", "16", "-t", "set,get"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains("SET: ") && report.contains("GET: "),
        "{report}"
    );
    // Every benchmark key went to the real Redis.
    let keys: u64 = redis_cli(redis.address, &["dbsize"], None).parse().unwrap();
    assert!(keys >= 3, "{keys}");
}
