//! HTTP/2 frames (RFC 9113 §4, §6), sans I/O: `parse` reads one frame
//! from the start of a buffer and checks everything a frame alone can
//! violate (sizes, stream ids, padding, flags' payloads); `write_*` append
//! frames to an output buffer. What the frames mean to a connection
//! (stream states, flow control, header blocks) is the connection's.

use std::fmt;

/// What a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The start of the preface no HTTP/1 request has (its version is 2.0):
/// a cleartext connection that begins with it speaks HTTP/2.
const PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0";
pub const HEADER_LENGTH: usize = 9;
/// The smallest SETTINGS_MAX_FRAME_SIZE, and every peer's until it says more.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
pub const MAX_FRAME_SIZE_LIMIT: u32 = (1 << 24) - 1;
pub const MAX_WINDOW: u32 = (1 << 31) - 1;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    ConnectError = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

impl ErrorCode {
    /// A code a peer sent; unknown codes are no error of ours to name
    /// (RFC 9113 §7: treated as INTERNAL_ERROR).
    pub fn from_wire(code: u32) -> ErrorCode {
        use ErrorCode::*;
        [
            NoError,
            ProtocolError,
            InternalError,
            FlowControlError,
            SettingsTimeout,
            StreamClosed,
            FrameSizeError,
            RefusedStream,
            Cancel,
            CompressionError,
            ConnectError,
            EnhanceYourCalm,
            InadequateSecurity,
            Http11Required,
        ]
        .get(code as usize)
        .copied()
        .unwrap_or(InternalError)
    }
}

/// A frame that breaks the protocol: the whole connection's error, or one
/// stream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    Connection(ErrorCode, &'static str),
    Stream(u32, ErrorCode, &'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Connection(code, why) => write!(f, "{code:?}: {why}"),
            FrameError::Stream(stream, code, why) => write!(f, "stream {stream}: {code:?}: {why}"),
        }
    }
}

/// The fixed 9-byte header of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Header {
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let bytes: &[u8; HEADER_LENGTH] = bytes.get(..HEADER_LENGTH)?.try_into().ok()?;
        Some(Header {
            length: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: bytes[3],
            flags: bytes[4],
            // The reserved bit is ignored on receipt (§4.1).
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & MAX_WINDOW,
        })
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A stream's dependency and weight (PRIORITY, or HEADERS with the
/// PRIORITY flag); RFC 9113 deprecates acting on them, but a stream may
/// not depend on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub exclusive: bool,
    pub depends_on: u32,
    pub weight: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        /// Bytes the frame counts against flow control (padding included).
        flow_length: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
        fragment: &'a [u8],
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        /// (identifier, value) pairs, six bytes each.
        payload: &'a [u8],
    },
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
        debug: &'a [u8],
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    /// A frame of a type this implementation does not know: ignored (§5.5).
    Unknown {
        kind: u8,
    },
}

fn connection(code: ErrorCode, why: &'static str) -> FrameError {
    FrameError::Connection(code, why)
}

/// Reads one frame at the start of `buffer`: `Ok(None)` while it is not
/// all there, else the frame and the bytes it took. `max_frame_size` is
/// the SETTINGS_MAX_FRAME_SIZE rsp announced.
pub fn parse(buffer: &[u8], max_frame_size: u32) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(header) = Header::read(buffer) else {
        return Ok(None);
    };
    if header.length > max_frame_size {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "a frame larger than SETTINGS_MAX_FRAME_SIZE",
        ));
    }
    let total = HEADER_LENGTH + header.length as usize;
    let Some(payload) = buffer.get(HEADER_LENGTH..total) else {
        return Ok(None);
    };
    frame(header, payload).map(|frame| Some((frame, total)))
}

/// What the first bytes of a cleartext connection on a listener that
/// takes HTTP/2 with prior knowledge (RFC 9113 §3.3) say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// They begin with `PRI * HTTP/2.0`: HTTP/2, whose stage reads the
    /// rest of the preface (a preface that goes on otherwise is its
    /// protocol error, GOAWAY, not an HTTP/1 request to answer with 400).
    Http2,
    /// A part of that line, and no more yet.
    Undecided,
    Http1,
}

pub fn opening(data: &[u8]) -> Opening {
    match preface_part(data, PREFACE_LINE) {
        None => Opening::Http1,
        Some(length) if length == PREFACE_LINE.len() => Opening::Http2,
        Some(_) => Opening::Undecided,
    }
}

/// How much of the connection preface `data` begins with: `None` when it
/// goes on otherwise, else the length matched (the whole preface's at
/// most). `expected` is the preface, or its first line.
fn preface_part(data: &[u8], expected: &[u8]) -> Option<usize> {
    let length = data.len().min(expected.len());
    (data[..length] == expected[..length]).then_some(length)
}

/// The bytes of the whole preface at the start of `data`: `Ok(None)`
/// while only a part of it is here, an error when it goes on otherwise.
pub fn preface(data: &[u8]) -> Result<Option<usize>, FrameError> {
    match preface_part(data, PREFACE) {
        None => Err(connection(
            ErrorCode::ProtocolError,
            "no connection preface",
        )),
        Some(length) if length == PREFACE.len() => Ok(Some(length)),
        Some(_) => Ok(None),
    }
}

/// A stream frame (DATA, HEADERS, ...) must name a stream; a connection
/// frame (SETTINGS, PING, GOAWAY) must not.
fn on_stream(header: &Header, what: &'static str) -> Result<u32, FrameError> {
    if header.stream == 0 {
        return Err(connection(ErrorCode::ProtocolError, what));
    }
    Ok(header.stream)
}

fn on_connection(header: &Header, what: &'static str) -> Result<(), FrameError> {
    if header.stream != 0 {
        return Err(connection(ErrorCode::ProtocolError, what));
    }
    Ok(())
}

/// The payload without its padding (PADDED flag: a length byte first).
fn unpadded<'a>(header: &Header, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if !header.has(flag::PADDED) {
        return Ok(payload);
    }
    let Some((&padding, rest)) = payload.split_first() else {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "a padded frame without its pad length",
        ));
    };
    rest.len()
        .checked_sub(usize::from(padding))
        .map(|length| &rest[..length])
        .ok_or(connection(
            ErrorCode::ProtocolError,
            "padding longer than the frame",
        ))
}

fn priority(bytes: &[u8], stream: u32) -> Result<Priority, FrameError> {
    let word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let priority = Priority {
        exclusive: word & !MAX_WINDOW != 0,
        depends_on: word & MAX_WINDOW,
        weight: bytes[4],
    };
    if priority.depends_on == stream {
        return Err(FrameError::Stream(
            stream,
            ErrorCode::ProtocolError,
            "a stream that depends on itself",
        ));
    }
    Ok(priority)
}

fn word(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn frame<'a>(header: Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    match header.kind {
        kind::DATA => {
            let stream = on_stream(&header, "DATA on stream 0")?;
            Ok(Frame::Data {
                stream,
                end_stream: header.has(flag::END_STREAM),
                data: unpadded(&header, payload)?,
                flow_length: header.length,
            })
        }
        kind::HEADERS => headers(&header, payload),
        kind::PRIORITY => {
            let stream = on_stream(&header, "PRIORITY on stream 0")?;
            if payload.len() != 5 {
                return Err(FrameError::Stream(
                    stream,
                    ErrorCode::FrameSizeError,
                    "PRIORITY not 5 bytes",
                ));
            }
            Ok(Frame::Priority {
                stream,
                priority: priority(payload, stream)?,
            })
        }
        kind::RST_STREAM => {
            let stream = on_stream(&header, "RST_STREAM on stream 0")?;
            if payload.len() != 4 {
                return Err(connection(
                    ErrorCode::FrameSizeError,
                    "RST_STREAM not 4 bytes",
                ));
            }
            Ok(Frame::RstStream {
                stream,
                code: ErrorCode::from_wire(word(payload)),
            })
        }
        kind::SETTINGS => settings_frame(&header, payload),
        kind::PUSH_PROMISE => Ok(Frame::PushPromise {
            stream: header.stream,
        }),
        kind::PING => {
            on_connection(&header, "PING on a stream")?;
            let data: [u8; 8] = payload
                .try_into()
                .map_err(|_| connection(ErrorCode::FrameSizeError, "PING not 8 bytes"))?;
            Ok(Frame::Ping {
                ack: header.has(flag::ACK),
                data,
            })
        }
        kind::GOAWAY => {
            on_connection(&header, "GOAWAY on a stream")?;
            if payload.len() < 8 {
                return Err(connection(
                    ErrorCode::FrameSizeError,
                    "GOAWAY shorter than 8 bytes",
                ));
            }
            Ok(Frame::GoAway {
                last_stream: word(payload) & MAX_WINDOW,
                code: ErrorCode::from_wire(word(&payload[4..])),
                debug: &payload[8..],
            })
        }
        kind::WINDOW_UPDATE => window_update(&header, payload),
        kind::CONTINUATION => Ok(Frame::Continuation {
            stream: on_stream(&header, "CONTINUATION on stream 0")?,
            end_headers: header.has(flag::END_HEADERS),
            fragment: payload,
        }),
        other => Ok(Frame::Unknown { kind: other }),
    }
}

/// A HEADERS frame: its padding and priority off, the block fragment.
fn headers<'a>(header: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let stream = on_stream(header, "HEADERS on stream 0")?;
    let mut block = unpadded(header, payload)?;
    let priority = if header.has(flag::PRIORITY) {
        if block.len() < 5 {
            return Err(connection(
                ErrorCode::FrameSizeError,
                "HEADERS too short for its priority",
            ));
        }
        let priority = priority(block, stream)?;
        block = &block[5..];
        Some(priority)
    } else {
        None
    };
    Ok(Frame::Headers {
        stream,
        end_stream: header.has(flag::END_STREAM),
        end_headers: header.has(flag::END_HEADERS),
        priority,
        fragment: block,
    })
}

/// A SETTINGS frame: an ACK is empty, and every setting's value within
/// its bounds.
fn settings_frame<'a>(header: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    on_connection(header, "SETTINGS on a stream")?;
    let ack = header.has(flag::ACK);
    if ack && !payload.is_empty() {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "a SETTINGS ACK with a payload",
        ));
    }
    if !payload.len().is_multiple_of(6) {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "SETTINGS not a multiple of 6 bytes",
        ));
    }
    for pair in payload.chunks_exact(6) {
        check_setting(u16::from_be_bytes([pair[0], pair[1]]), word(&pair[2..]))?;
    }
    Ok(Frame::Settings { ack, payload })
}

/// A WINDOW_UPDATE: 4 bytes, an increment other than 0 (a stream's error
/// on a stream, the connection's on it).
fn window_update<'a>(header: &Header, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    if payload.len() != 4 {
        return Err(connection(
            ErrorCode::FrameSizeError,
            "WINDOW_UPDATE not 4 bytes",
        ));
    }
    let increment = word(payload) & MAX_WINDOW;
    if increment == 0 {
        return Err(match header.stream {
            0 => connection(ErrorCode::ProtocolError, "a WINDOW_UPDATE of 0"),
            stream => FrameError::Stream(stream, ErrorCode::ProtocolError, "a WINDOW_UPDATE of 0"),
        });
    }
    Ok(Frame::WindowUpdate {
        stream: header.stream,
        increment,
    })
}

/// A setting's value as RFC 9113 §6.5.2 bounds it (unknown ones are
/// ignored).
pub fn check_setting(id: u16, value: u32) -> Result<(), FrameError> {
    match id {
        setting::ENABLE_PUSH if value > 1 => Err(connection(
            ErrorCode::ProtocolError,
            "SETTINGS_ENABLE_PUSH not 0 or 1",
        )),
        setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => Err(connection(
            ErrorCode::FlowControlError,
            "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
        )),
        setting::MAX_FRAME_SIZE
            if !(DEFAULT_MAX_FRAME_SIZE..=MAX_FRAME_SIZE_LIMIT).contains(&value) =>
        {
            Err(connection(
                ErrorCode::ProtocolError,
                "SETTINGS_MAX_FRAME_SIZE outside 16384..2^24-1",
            ))
        }
        _ => Ok(()),
    }
}

/// The settings of a SETTINGS payload, as (identifier, value).
pub fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload
        .chunks_exact(6)
        .map(|pair| (u16::from_be_bytes([pair[0], pair[1]]), word(&pair[2..])))
}

pub fn write_header(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&header_bytes(length, kind, flags, stream));
}

/// A frame's header, to write over one put in place before its payload's
/// length was known.
pub fn header_bytes(length: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LENGTH] {
    let length = (length as u32).min(MAX_FRAME_SIZE_LIMIT).to_be_bytes();
    let stream = (stream & MAX_WINDOW).to_be_bytes();
    [
        length[1], length[2], length[3], kind, flags, stream[0], stream[1], stream[2], stream[3],
    ]
}

pub fn write_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    write_header(out, settings.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_header(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn write_ping_ack(out: &mut Vec<u8>, data: [u8; 8]) {
    write_header(out, 8, kind::PING, flag::ACK, 0);
    out.extend_from_slice(&data);
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode, debug: &[u8]) {
    write_header(out, 8 + debug.len(), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_WINDOW).to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    write_header(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    write_header(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & MAX_WINDOW).to_be_bytes());
}

/// A DATA frame's header; its `length` bytes of data follow.
pub fn write_data_header(out: &mut Vec<u8>, stream: u32, length: usize, end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    write_header(out, length, kind::DATA, flags, stream);
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
