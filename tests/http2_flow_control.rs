//! HTTP/2 flow control on uploads: padding given back to both windows,
//! a body sent before rsp's SETTINGS are acknowledged, frames of the size
//! rsp announced whatever `buffer_bytes` is. Python's `h2` drives the
//! client (tests/h2/edges.py).

mod common;

use common::h2::*;
use common::*;
use serde_json::Value;

const ROUTE: &str = r#"function route(req) return "default" end"#;

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
    let seen = edges(&proxy, "padded", &["1000000", "255"]);
    assert_eq!(seen["sent"], 1_000_000, "{seen}");
    assert_uploaded(&seen, 1_000_000, &proxy);
}

/// Padding on a small body (within one window) is fine: it is dropped
/// and the body arrives as it was.
#[test]
fn padded_data_within_one_window_arrives_unpadded() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    let seen = edges(&proxy, "padded", &["20000", "255"]);
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
    let seen = edges(&proxy, "early", &["60000"]);
    assert_uploaded(&seen, 60_000, &proxy);
}

/// The same body within the window rsp announces goes through.
#[test]
fn a_body_sent_with_the_request_in_the_default_window_is_taken() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    let seen = edges(&proxy, "early", &["65535"]);
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
    let seen = edges(&proxy, "upload", &["100000", "8192"]);
    assert_uploaded(&seen, 100_000, &proxy);
    let seen = edges(&proxy, "upload", &["100000"]);
    assert_eq!(seen["sent"], 100_000, "{seen}");
    assert_uploaded(&seen, 100_000, &proxy);
}

/// With the default buffer, an upload in full-size frames goes through.
#[test]
fn frames_of_the_announced_size_are_read() {
    let backend = Backend::start("web");
    let proxy = h2c(&backend, "");
    let seen = edges(&proxy, "upload", &["300000"]);
    assert_uploaded(&seen, 300_000, &proxy);
}
