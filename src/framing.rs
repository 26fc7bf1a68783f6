//! Message body framing (RFC 9112 §6, §7.1): where a body ends.
//!
//! Bodies are forwarded as they arrive, unchanged; a framer only *claims*
//! the bytes that belong to the current message so that the bytes after it
//! (the next pipelined request) stay where they are. The one exception is a
//! chunked body's trailer section: it is parsed whole and forwarded without
//! the fields that could reframe or reroute the message.

use std::fmt;

/// Bounds that keep a hostile peer from making us scan forever.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer fields in one trailer section; the section's size is bounded by
/// the buffer that must hold it whole.
const MAX_TRAILER_FIELDS: usize = 64;

/// Trailer fields never forwarded (RFC 9110 §6.5.1): a recipient that
/// merged them into the head would see another framing, host or
/// connection than rsp did, or forwarding fields rsp did not write.
const DROPPED_TRAILERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
];
/// Larger chunk sizes are rejected rather than risk overflow.
const MAX_CHUNK_SIZE: u64 = 1 << 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    ChunkSize,
    ChunkLine,
    ChunkData,
    Trailers,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FramingError::ChunkSize => "invalid chunk size",
            FramingError::ChunkLine => "invalid chunk line",
            FramingError::ChunkData => "chunk data not followed by CRLF",
            FramingError::Trailers => "invalid or oversized trailer section",
        })
    }
}

/// How the end of a body is found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Framing {
    /// No body at all.
    #[default]
    Empty,
    Length(u64),
    Chunked,
    /// The body ends when the sender closes (responses only).
    UntilClose,
}

/// Tracks one body as its bytes are claimed.
#[derive(Debug)]
pub enum BodyFramer {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl BodyFramer {
    /// `None` when the framing carries no body.
    pub fn new(framing: &Framing) -> Option<BodyFramer> {
        match framing {
            Framing::Empty | Framing::Length(0) => None,
            Framing::Length(length) => Some(BodyFramer::Length(*length)),
            Framing::Chunked => Some(BodyFramer::Chunked(Chunked::default())),
            Framing::UntilClose => Some(BodyFramer::UntilClose),
        }
    }

    /// Claims the leading bytes of `data` that belong to this body and
    /// returns how many. `data` starts right after the last claimed byte.
    pub fn claim(&mut self, data: &[u8]) -> Result<usize, FramingError> {
        match self {
            BodyFramer::Length(remaining) => {
                let count = (*remaining).min(data.len() as u64);
                *remaining -= count;
                Ok(count as usize)
            }
            BodyFramer::Chunked(chunked) => chunked.claim(data),
            BodyFramer::UntilClose => Ok(data.len()),
        }
    }

    /// Decoded bytes of a chunked body so far (its length is not known up front).
    pub fn chunked_data(&self) -> Option<u64> {
        match self {
            BodyFramer::Chunked(chunked) => Some(chunked.data),
            _ => None,
        }
    }

    /// A chunked body whose last chunk was claimed: its trailer section
    /// comes next, to be taken whole by `take_trailers`.
    pub fn awaits_trailers(&self) -> bool {
        matches!(self, BodyFramer::Chunked(chunked) if chunked.state == ChunkState::Trailers)
    }

    /// The trailer section at the start of `data`, once it is all there:
    /// writes what may be forwarded of it to `out` and returns how many
    /// bytes of `data` it took; `None` until the section is complete.
    pub fn take_trailers(
        &mut self,
        data: &[u8],
        out: crate::message::Out,
    ) -> Result<Option<usize>, FramingError> {
        let BodyFramer::Chunked(chunked) = self else {
            return Ok(None);
        };
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let (length, fields) = match httparse::parse_headers(data, &mut fields) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(FramingError::Trailers),
        };
        // httparse takes a bare LF for a line end; a chunked body may not.
        let bare_lf = data[..length]
            .iter()
            .enumerate()
            .any(|(at, &byte)| byte == b'\n' && (at == 0 || data[at - 1] != b'\r'));
        if bare_lf {
            return Err(FramingError::Trailers);
        }
        let mut out = out.trailers();
        for field in fields.iter() {
            if trailer_forwarded(field.name.as_bytes()) {
                out.field(field.name.as_bytes(), field.value);
            }
        }
        out.end(false);
        chunked.state = ChunkState::Done;
        Ok(Some(length))
    }

    /// True once every byte of the body has been claimed. A close-delimited
    /// body is never complete by itself: its sender's close completes it.
    pub fn is_complete(&self) -> bool {
        match self {
            BodyFramer::Length(remaining) => *remaining == 0,
            BodyFramer::Chunked(chunked) => chunked.state == ChunkState::Done,
            BodyFramer::UntilClose => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the size digits: whitespace, then `;` or CR.
    SizeEnd,
    /// After a `;`: extension text up to CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: the trailer section (or its empty line), taken
    /// whole by `take_trailers`.
    Trailers,
    Done,
}

/// A trailer field rsp passes on: none that could reframe, reroute or
/// pose as a forwarding field, and none with an underscore.
pub fn trailer_forwarded(name: &[u8]) -> bool {
    !name.contains(&b'_')
        && !DROPPED_TRAILERS
            .iter()
            .any(|dropped| name.eq_ignore_ascii_case(dropped.as_bytes()))
}

/// A strict chunked-coding scanner: CRLF line ends only, bounded lines.
#[derive(Debug)]
pub struct Chunked {
    /// Data bytes (without chunk framing) claimed so far.
    data: u64,
    state: ChunkState,
    size: u64,
    digits: usize,
    line: usize,
}

impl Default for Chunked {
    fn default() -> Chunked {
        Chunked {
            data: 0,
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            line: 0,
        }
    }
}

impl Chunked {
    fn claim(&mut self, data: &[u8]) -> Result<usize, FramingError> {
        self.walk(data, usize::MAX, |_| {})
            .map(|(walked, _)| walked)
    }

    /// Reads `data` as chunked coding, up to the trailer section: each
    /// run of chunk data goes to `on_data`, and the walk stops once
    /// `budget` bytes of data went (a sink that takes the data without
    /// its framing, such as HTTP/2's DATA frames, within its window).
    /// Returns the bytes walked, framing included, and the data given.
    pub fn walk(
        &mut self,
        data: &[u8],
        budget: usize,
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<(usize, usize), FramingError> {
        let (mut at, mut given) = (0, 0);
        while at < data.len() && !matches!(self.state, ChunkState::Trailers | ChunkState::Done) {
            if self.state == ChunkState::Data {
                if given >= budget {
                    break;
                }
                let room = (budget - given) as u64;
                let count = self.size.min(room).min((data.len() - at) as u64) as usize;
                on_data(&data[at..at + count]);
                self.size -= count as u64;
                self.data += count as u64;
                at += count;
                given += count;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            self.step(data[at])?;
            at += 1;
        }
        Ok((at, given))
    }

    fn step(&mut self, byte: u8) -> Result<(), FramingError> {
        use ChunkState::*;
        match self.state {
            Size => match (byte as char).to_digit(16) {
                Some(digit) => {
                    self.digits += 1;
                    self.size = self.size * 16 + u64::from(digit);
                    if self.size > MAX_CHUNK_SIZE {
                        return Err(FramingError::ChunkSize);
                    }
                }
                None if self.digits == 0 => return Err(FramingError::ChunkSize),
                None => {
                    self.line = self.digits;
                    self.state = SizeEnd;
                    return self.step(byte);
                }
            },
            SizeEnd | Extension => {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err(FramingError::ChunkLine);
                }
                match (self.state, byte) {
                    (_, b'\r') => self.state = SizeLf,
                    (_, b'\n' | 0) => return Err(FramingError::ChunkLine),
                    (SizeEnd, b' ' | b'\t') => {}
                    (SizeEnd, b';') => self.state = Extension,
                    (SizeEnd, _) => return Err(FramingError::ChunkSize),
                    _ => {}
                }
            }
            SizeLf => {
                if byte != b'\n' {
                    return Err(FramingError::ChunkLine);
                }
                self.digits = 0;
                if self.size == 0 {
                    self.state = Trailers;
                } else {
                    self.state = Data;
                }
            }
            Data => unreachable!("data is claimed in bulk"),
            DataCr => {
                if byte != b'\r' {
                    return Err(FramingError::ChunkData);
                }
                self.state = DataLf;
            }
            DataLf => {
                if byte != b'\n' {
                    return Err(FramingError::ChunkData);
                }
                self.state = Size;
            }
            Trailers => unreachable!("trailers are taken whole"),
            Done => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks `body` as a sink that takes data without framing would, in
    /// pieces of `step` bytes, `budget` bytes of data a walk.
    fn data_in_steps(body: &[u8], step: usize, budget: usize) -> Vec<u8> {
        let mut chunked = Chunked::default();
        let (mut out, mut at, mut end) = (Vec::new(), 0, 0);
        while chunked.state != ChunkState::Trailers {
            end = (end.max(at) + step).min(body.len());
            let (walked, _) = chunked
                .walk(&body[at..end], budget, |data| out.extend_from_slice(data))
                .unwrap();
            at += walked;
            if walked == 0 && end == body.len() {
                break;
            }
        }
        out
    }

    #[test]
    fn chunks_lose_their_framing_however_they_are_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for step in 1..body.len() {
            for budget in [1, 3, 100] {
                assert_eq!(
                    data_in_steps(body, step, budget),
                    b"helloabcdefghijklmnopqrstuvwxyz",
                    "step {step} budget {budget}"
                );
            }
        }
    }

    /// Claims `data` `step` bytes at a time, the trailer section whole;
    /// returns the bytes claimed and the trailers forwarded.
    fn claim_all(
        framer: &mut BodyFramer,
        data: &[u8],
        step: usize,
    ) -> Result<(usize, Vec<u8>), FramingError> {
        let (mut total, mut window_end, mut trailers) = (0, 0, Vec::new());
        while !framer.is_complete() {
            window_end = (window_end.max(total) + step).min(data.len());
            let taken = if framer.awaits_trailers() {
                framer.take_trailers(
                    &data[total..window_end],
                    crate::message::Out::http1(&mut trailers),
                )?
            } else {
                Some(framer.claim(&data[total..window_end])?)
            };
            total += taken.unwrap_or(0);
            if taken.unwrap_or(0) == 0 && window_end == data.len() {
                break;
            }
        }
        Ok((total, trailers))
    }

    #[test]
    fn length_claims_exactly_its_bytes() {
        let mut framer = BodyFramer::new(&Framing::Length(5)).unwrap();
        assert_eq!(framer.claim(b"abc").unwrap(), 3);
        assert!(!framer.is_complete());
        assert_eq!(framer.claim(b"deGET /").unwrap(), 2);
        assert!(framer.is_complete());
        assert!(BodyFramer::new(&Framing::Length(0)).is_none());
        assert!(BodyFramer::new(&Framing::Empty).is_none());
    }

    #[test]
    fn chunked_stops_at_the_end_of_the_message_in_any_split() {
        let body = b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        for step in 1..input.len() {
            let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
            assert_eq!(
                claim_all(&mut framer, &input, step).unwrap(),
                (body.len(), b"X-Trailer: yes\r\n\r\n".to_vec()),
                "step {step}"
            );
            assert!(framer.is_complete());
            assert_eq!(framer.chunked_data(), Some(5 + 26));
        }
    }

    #[test]
    fn chunked_without_trailers() {
        let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
        assert_eq!(framer.claim(b"0\r\n\r\nrest").unwrap(), 3);
        assert!(framer.awaits_trailers() && !framer.is_complete());
        let mut out = Vec::new();
        assert_eq!(
            framer.take_trailers(b"\r\nrest", crate::message::Out::http1(&mut out)),
            Ok(Some(2))
        );
        assert_eq!(out, b"\r\n");
        assert!(framer.is_complete());
    }

    #[test]
    fn trailers_that_could_reframe_or_reroute_are_dropped() {
        let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
        assert_eq!(framer.claim(b"0\r\n").unwrap(), 3);
        let section = b"Content-Length: 5\r\nX-Checksum: abc\r\nHost: evil\r\nTransfer-Encoding: chunked\r\n\
                        Connection: close\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nTE: x\r\n\r\nGET";
        let mut out = Vec::new();
        assert_eq!(
            framer.take_trailers(&section[..20], crate::message::Out::http1(&mut out)),
            Ok(None)
        );
        assert_eq!(
            framer.take_trailers(section, crate::message::Out::http1(&mut out)),
            Ok(Some(section.len() - 3))
        );
        assert_eq!(String::from_utf8(out).unwrap(), "X-Checksum: abc\r\n\r\n");
    }

    #[test]
    fn chunked_rejects_bad_framing() {
        let cases: &[&[u8]] = &[
            b"\r\n",                      // no size
            b"x\r\n",                     // not hex
            b"-1\r\n",                    // sign
            b"5\nhello\r\n",              // bare LF after size
            b"5\r\nhelloXX",              // data not followed by CRLF
            b"5 x\r\nhello\r\n",          // garbage after size without ';'
            b"fffffffffffffffffff\r\n",   // overflow
            b"0\r\nBad\nTrailer\r\n\r\n", // bare LF in trailers
            b"0\r\n\n",                   // bare LF as the final line
        ];
        for case in cases {
            let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
            assert!(
                claim_all(&mut framer, case, 64).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn chunked_rejects_endless_extension_lines() {
        let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE + 10));
        assert_eq!(framer.claim(&line), Err(FramingError::ChunkLine));
    }

    #[test]
    fn until_close_claims_everything_and_never_completes() {
        let mut framer = BodyFramer::new(&Framing::UntilClose).unwrap();
        assert_eq!(framer.claim(b"anything").unwrap(), 8);
        assert!(!framer.is_complete());
    }
}
