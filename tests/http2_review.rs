//! Edges of rsp's HTTP/2 found in a review, against the real binary over
//! loopback: flow control with padding, DATA sent before rsp's SETTINGS
//! is acknowledged, frames larger than `buffer_bytes`, ALPN on TLS tcp
//! listeners, a queued stream the client resets, WebSocket on an h2c
//! listener. Python's `h2` drives the clients (tests/h2/review.py).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ROUTE: &str = r#"function route(req) return "default" end"#;

/// Runs tests/h2/review.py; its JSON answer.
fn review(proxy: &Proxy, args: &[&str]) -> Value {
    ensure_python_h2();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/h2/review.py");
    let output = Command::new("python3")
        .arg("-B")
        .arg(script)
        .arg(args[0])
        .arg(proxy.address.port().to_string())
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "review.py {args:?}: {}\nrsp log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.log()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("review.py {args:?}: {error}: {stdout}"))
}

fn h2c(backend: &Backend, settings: &str) -> Proxy {
    Proxy::start_h2c(&format!(
        "backends = {{ \"{}\" }}\n{ROUTE}\n{settings}",
        backend.address
    ))
}

/// The backend's /checksum answer came whole for `size` bytes.
fn assert_uploaded(seen: &Value, size: usize, proxy: &Proxy) {
    assert_eq!(seen["status"], "200", "{seen}\nrsp log:\n{}", proxy.log());
    let body = seen["body"].as_str().unwrap_or_default();
    assert!(body.starts_with(&format!("{size} ")), "{seen}");
}

/// RFC 9113 §6.1: padding counts against flow control, so the receiver
/// must give it back. rsp credits padding to the connection window only
/// (src/session/http2/mod.rs `data`: `self.tx.credit += flow_length -
/// data.len()`) and never to the stream's (`io.credit` counts only body
/// bytes the stage read, give_windows sends only that), so each padded
/// frame shrinks the stream's window for good and an upload of more
/// than about `initial_window / padding` frames stalls.
#[test]
fn padded_data_gives_its_padding_back_to_the_stream_window() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    // 1000 bytes of data and 256 of padding a frame: the 65535 window is
    // gone after ~256 frames without the padding coming back.
    let seen = review(&proxy, &["padded", "1000000", "255"]);
    assert_eq!(seen["sent"], 1_000_000, "{seen}");
    assert_uploaded(&seen, 1_000_000, &proxy);
}

/// Padding on a small body (within one window) is fine: it is dropped
/// and the body arrives as it was.
#[test]
fn padded_data_within_one_window_arrives_unpadded() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    let seen = review(&proxy, &["padded", "20000", "255"]);
    assert_uploaded(&seen, 20_000, &proxy);
}

/// RFC 9113 §6.5.3/§6.9.2: until the client acknowledges rsp's SETTINGS,
/// it may send in the default 65535-byte windows. With `initial_window`
/// below 65535 (the config allows 16384), rsp enforces its smaller window
/// from the first byte (src/session/http2/mod.rs `header_list`:
/// `StreamIo::new(..., settings.initial_window, ...)`, `data`: "DATA
/// past the stream's window"), so a client that sends its body with its
/// request, as h2c clients do, gets RST_STREAM(FLOW_CONTROL_ERROR).
#[test]
fn a_body_sent_before_rsps_settings_are_acknowledged_is_taken() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "http2 = { initial_window = 16384 }");
    let seen = review(&proxy, &["early", "60000"]);
    assert_uploaded(&seen, 60_000, &proxy);
}

/// The same body within the window rsp announces goes through.
#[test]
fn a_body_sent_with_the_request_in_the_default_window_is_taken() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    let seen = review(&proxy, &["early", "65535"]);
    assert_uploaded(&seen, 65_535, &proxy);
}

/// The HTTP/2 stage reads frames into the connection's inbound buffer,
/// bounded by `buffer_bytes` (src/session/mod.rs `http2`: the HTTP/1 or
/// handshake stage's buffer is handed on), and parses only whole frames
/// (`receive_from`). A frame of the size rsp itself announced
/// (SETTINGS_MAX_FRAME_SIZE, at least 16384) plus its 9-byte header
/// does not fit a 16384-byte buffer (buffer_bytes may be as small as
/// 1024, HAProxy's default bufsize is 16384), so the connection stops
/// reading and hangs until a timeout. Config validation does not tie
/// http2.max_frame_size to buffer_bytes either.
#[test]
fn frames_of_the_announced_size_are_read_with_a_small_buffer_bytes() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "buffer_bytes = 16384");
    // Frames that fit the buffer go through: the frame size is the cause.
    let seen = review(&proxy, &["upload", "100000", "8192"]);
    assert_uploaded(&seen, 100_000, &proxy);
    let seen = review(&proxy, &["upload", "100000"]);
    assert_eq!(seen["sent"], 100_000, "{seen}");
    assert_uploaded(&seen, 100_000, &proxy);
}

/// With the default buffer, an upload in full-size frames goes through.
#[test]
fn frames_of_the_announced_size_are_read() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    let seen = review(&proxy, &["upload", "300000"]);
    assert_uploaded(&seen, 300_000, &proxy);
}

/// A stream queued for a `max_conns = 1` pool that the client resets
/// leaves the queue: the one queued after it is served once the first
/// is done, and the connection goes on.
#[test]
fn a_queued_stream_the_client_resets_leaves_the_pool_queue() {
    let backend = Backend::start("web");
    let proxy = Proxy::start_h2c(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\" }}, max_conns = 1 }} }}\n{ROUTE}",
        backend.address
    ));
    let seen = review(&proxy, &["queued"]);
    assert_eq!(seen["first"]["status"], "200", "{seen}");
    assert_eq!(seen["third"]["status"], "200", "{seen}");
    assert_eq!(seen["fourth"]["status"], "200", "{seen}");
    assert!(seen["seconds"].as_f64().unwrap() < 5.0, "{seen}");
    let heads = backend.heads();
    assert!(
        !heads.iter().any(|head| head.starts_with("GET /second")),
        "{heads:?}"
    );
}

/// A TLS listener in tcp mode passes the decrypted bytes to its pool's
/// servers unparsed, so whatever ALPN agreed on is what the server gets.
/// Before HTTP/2 it offered http/1.1 only; now every TLS listener gets
/// `default_alpn()` = h2, http/1.1 (src/config/listen.rs `tls_files`),
/// tcp ones too, so a client that speaks h2 (curl, any browser) agrees
/// on h2 and its HTTP/1.1 server behind rsp gets an HTTP/2 preface.
#[test]
fn a_tcp_mode_tls_listener_does_not_offer_h2() {
    let backend = Backend::start("web");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = temp_file("review-tcp.pem", &certified.cert.pem());
    let key = temp_file("review-tcp.key", &certified.signing_key.serialize_pem());
    let port = free_port();
    let proxy = Proxy::start_listening(
        &format!(
            "{{ addr = \"127.0.0.1:{port}\", mode = \"tcp\", pool = \"web\", \
             tls = {{ cert = {cert:?}, key = {key:?} }} }}"
        ),
        &format!(
            "pools = {{ web = {{ servers = {{ \"{}\" }} }} }}\nbackends = {{ \"{}\" }}\n{ROUTE}",
            backend.address, backend.address
        ),
    );
    proxy.wait_for_log(&format!("listening on 127.0.0.1:{port}"), 1);
    ensure_package("curl", "curl");
    let output = Command::new("curl")
        .args(["-s", "-S", "-k", "--max-time", "10", "--http2"])
        .args(["-w", " %{http_version}"])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        out,
        "hello from web 1.1",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    let proxy = Proxy::start_h2c(&format!("backends = {{ \"{address}\" }}\n{ROUTE}"));
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

/// A request whose header list is over the bound gets 431 at once; its
/// HEADERS did not end the stream, so the client may still end its side
/// after rsp's END_STREAM, with trailers (RFC 9113 §5.1: the stream is
/// half-closed (remote) for the client until it ends its side). rsp
/// marks such a stream ended by the client
/// (src/session/http2/mod.rs `header_list`: `stream.io.ended_by_client =
/// true` on the 431 path), so `forget` does not keep its id among the
/// ended-early ones, no RST_STREAM(NO_ERROR) tells the client to stop
/// (`finish_stream`), and the trailers' HEADERS on that id is taken for
/// "a stream id that is not new and odd": GOAWAY(PROTOCOL_ERROR), and
/// every other stream of the connection is cut.
#[test]
fn trailers_after_a_431_do_not_cut_the_connection() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    let seen = review(&proxy, &["refused"]);
    assert_eq!(seen["first"]["status"], "431", "{seen}");
    // The client had not ended its request: it is told it need not.
    assert_eq!(seen["reset"], serde_json::json!([0]), "{seen}");
    assert_eq!(seen["goaway"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["again"]["status"], "200", "{seen}");
}
