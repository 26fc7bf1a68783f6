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
/// gives it back, to the stream's window as to the connection's: an
/// upload of far more than `initial_window / padding` padded frames goes
/// through whole.
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
/// below 65535 (the config allows 16384), a client that sends its body
/// with its request, as h2c clients do, has it taken: rsp's smaller
/// window holds only once its SETTINGS are acknowledged.
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

/// Frames of the size rsp itself announced (SETTINGS_MAX_FRAME_SIZE, at
/// least 16384) are read whole whatever `buffer_bytes` is: with a
/// 16384-byte buffer (HAProxy's default bufsize), a full-size frame and
/// its 9-byte header, which do not fit it, are read as readily as
/// smaller ones.
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
