//! The tests of `frame.rs`.

use super::*;

fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

#[test]
fn frames_are_read_as_written() {
    let mut out = Vec::new();
    write_settings(
        &mut out,
        &[
            (setting::MAX_CONCURRENT_STREAMS, 100),
            (setting::INITIAL_WINDOW_SIZE, 65_535),
        ],
    );
    write_ping_ack(&mut out, *b"12345678");
    write_goaway(&mut out, 7, ErrorCode::EnhanceYourCalm, b"calm");
    write_window_update(&mut out, 3, 1000);
    write_rst_stream(&mut out, 5, ErrorCode::RefusedStream);
    let mut at = 0;
    let mut frames = Vec::new();
    while let Some((frame, used)) = parse(&out[at..], DEFAULT_MAX_FRAME_SIZE).unwrap() {
        frames.push(format!("{frame:?}"));
        at += used;
    }
    assert_eq!(at, out.len());
    assert_eq!(frames.len(), 5);
    assert!(frames[1].contains("ack: true"));
    assert!(frames[2].contains("last_stream: 7, code: EnhanceYourCalm"));
    // Not all there: wait for more.
    assert_eq!(parse(&out[..12], DEFAULT_MAX_FRAME_SIZE), Ok(None));
}

#[test]
fn a_connection_that_begins_with_the_preface_line_is_http2() {
    use Opening::*;
    for (bytes, expected) in [
        (&b""[..], Undecided),
        (b"P", Undecided),
        (b"PRI * HTTP/2.", Undecided),
        (b"PRI * HTTP/2.0", Http2),
        (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", Http2),
        (PREFACE, Http2),
        (b"PRI * HTTP/1.1\r\n", Http1),
        (b"GET / HTTP/1.1\r\n", Http1),
        (b"PRX", Http1),
    ] {
        assert_eq!(
            opening(bytes),
            expected,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn what_a_frame_alone_can_violate() {
    use ErrorCode::*;
    let connection_error = |bytes: Vec<u8>| match parse(&bytes, DEFAULT_MAX_FRAME_SIZE) {
        Err(FrameError::Connection(code, _)) => Some(code),
        _ => None,
    };
    let stream_error = |bytes: Vec<u8>| match parse(&bytes, DEFAULT_MAX_FRAME_SIZE) {
        Err(FrameError::Stream(_, code, _)) => Some(code),
        _ => None,
    };
    let cases = [
        (frame_bytes(kind::DATA, 0, 0, b"x"), ProtocolError),
        (frame_bytes(kind::HEADERS, 0, 0, b""), ProtocolError),
        (frame_bytes(kind::SETTINGS, 0, 1, b""), ProtocolError),
        (
            frame_bytes(kind::SETTINGS, flag::ACK, 0, &[0; 6]),
            FrameSizeError,
        ),
        (frame_bytes(kind::SETTINGS, 0, 0, &[0; 5]), FrameSizeError),
        (
            frame_bytes(kind::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
            ProtocolError,
        ),
        (
            frame_bytes(kind::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            FlowControlError,
        ),
        (
            frame_bytes(kind::SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]),
            ProtocolError,
        ),
        (frame_bytes(kind::PING, 0, 0, &[0; 7]), FrameSizeError),
        (frame_bytes(kind::PING, 0, 3, &[0; 8]), ProtocolError),
        (frame_bytes(kind::GOAWAY, 0, 0, &[0; 7]), FrameSizeError),
        (frame_bytes(kind::RST_STREAM, 0, 1, &[0; 3]), FrameSizeError),
        (
            frame_bytes(kind::WINDOW_UPDATE, 0, 0, &[0; 4]),
            ProtocolError,
        ),
        (
            frame_bytes(kind::DATA, flag::PADDED, 1, &[5, 1, 2]),
            ProtocolError,
        ),
        (
            frame_bytes(kind::DATA, flag::PADDED, 1, &[]),
            FrameSizeError,
        ),
        (
            frame_bytes(kind::HEADERS, flag::PRIORITY, 1, &[0; 4]),
            FrameSizeError,
        ),
        (frame_bytes(kind::DATA, 0, 1, &[0; 16_385]), FrameSizeError),
    ];
    for (bytes, code) in cases {
        assert_eq!(
            connection_error(bytes.clone()),
            Some(code),
            "{:?}",
            &bytes[..9]
        );
    }
    assert_eq!(
        stream_error(frame_bytes(kind::WINDOW_UPDATE, 0, 3, &[0; 4])),
        Some(ProtocolError)
    );
    assert_eq!(
        stream_error(frame_bytes(kind::PRIORITY, 0, 3, &[0; 4])),
        Some(FrameSizeError)
    );
    assert_eq!(
        stream_error(frame_bytes(kind::PRIORITY, 0, 3, &[0, 0, 0, 3, 16])),
        Some(ProtocolError)
    );
    // Unknown types are ignored; padding is taken off.
    assert_eq!(
        parse(&frame_bytes(0xfa, 0, 0, b"?"), DEFAULT_MAX_FRAME_SIZE)
            .unwrap()
            .unwrap()
            .0,
        Frame::Unknown { kind: 0xfa }
    );
    let padded = frame_bytes(
        kind::DATA,
        flag::PADDED | flag::END_STREAM,
        1,
        &[2, b'h', b'i', 0, 0],
    );
    assert_eq!(
        parse(&padded, DEFAULT_MAX_FRAME_SIZE).unwrap().unwrap().0,
        Frame::Data {
            stream: 1,
            end_stream: true,
            data: b"hi",
            flow_length: 5
        }
    );
}
