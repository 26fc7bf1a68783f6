//! The one routine that moves a message from a buffer to a socket, for
//! both directions: bytes rsp wrote itself (a head, trailers, an answer)
//! first, then the body bytes that belong to the message, claimed by its
//! framer. Backpressure is the buffers': a source is read only while its
//! buffer has room, and a buffer empties only as its sink takes bytes.

use std::fmt;
use std::io;

use crate::buffer::Buffer;
use crate::framing::{BodyFramer, Framing, FramingError};
use crate::message::{Field, Out, Wire};

use crate::transport::Sink;

/// Bytes rsp itself produced (heads, local answers, trailers), sent ahead
/// of any body bytes still in a buffer.
#[derive(Default)]
pub struct Queue {
    bytes: Vec<u8>,
    sent: usize,
    /// What the queue's heads are written for: its peer's codec.
    pub wire: Wire,
}

impl Queue {
    /// Where to write a head (or trailer section) to send after what is
    /// queued, in the peer's wire form.
    pub fn out(&mut self) -> Out<'_> {
        Out {
            wire: self.wire,
            bytes: &mut self.bytes,
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    pub fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    /// Where to append what is to be sent after what is queued.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub fn advance(&mut self, count: usize) {
        self.sent += count;
        if self.is_empty() {
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
        // A large head or answer once is not kept for the next: an
        // exchange waiting on its client would hold it all along.
        if self.bytes.capacity() > QUEUE_KEPT {
            self.bytes = Vec::new();
        }
    }
}

/// Storage a queue keeps once emptied.
const QUEUE_KEPT: usize = 8 * 1024;

/// A body being passed through: `claimed` bytes at the front of its buffer
/// belong to it and are not yet written.
#[derive(Debug)]
pub struct Body {
    kind: Kind,
    claimed: usize,
}

#[derive(Debug)]
enum Kind {
    /// Framed in its own bytes (a content-length, chunked coding), read
    /// as it passes, as it came.
    Framed(BodyFramer),
    /// Unframed runs, as a codec hands them over (HTTP/2 DATA), sent in
    /// HTTP/1.1's chunked coding; the codec tells the end (`end`).
    Runs(Runs),
}

/// A body of runs on its way out as chunks.
#[derive(Debug, Default)]
struct Runs {
    /// Data bytes passed so far.
    length: u64,
    /// The claimed bytes are a chunk whose line is queued: its CRLF
    /// follows them.
    in_chunk: bool,
    /// The codec said the body ended, with these trailer fields.
    ended: Option<Vec<Field>>,
    /// The last chunk and the trailer section are queued.
    finished: bool,
}

/// What `Body::claim` found: body bytes to pass on as they are, and the
/// length of a trailer section it took (already queued, to be consumed).
#[derive(Debug, Default, Clone, Copy)]
pub struct Claimed {
    pub body: usize,
    pub trailers: usize,
}

impl Body {
    /// `None` when the framing carries no body.
    pub fn new(framing: &Framing) -> Option<Body> {
        BodyFramer::new(framing).map(|framer| Body {
            kind: Kind::Framed(framer),
            claimed: 0,
        })
    }

    /// The body of a request whose codec frames it itself (an HTTP/2
    /// request without a content-length): its runs are sent chunked.
    pub fn runs() -> Body {
        Body {
            kind: Kind::Runs(Runs::default()),
            claimed: 0,
        }
    }

    /// The body a request head announces: as it is framed, but an HTTP/2
    /// request's chunked one, which comes as runs.
    pub fn of_request(head: &crate::http::RequestHead) -> Option<Body> {
        match head.framing {
            Framing::Chunked if head.http2 => Some(Body::runs()),
            ref framing => Body::new(framing),
        }
    }

    /// The codec's word that a body of runs ended, with its trailers.
    pub fn end(&mut self, trailers: Vec<Field>) {
        if let Kind::Runs(runs) = &mut self.kind {
            runs.ended.get_or_insert(trailers);
        }
    }

    /// Claims what it can of `data` and returns how many leading bytes of it
    /// belong to this body. At a chunked body's trailer section, once every
    /// claimed byte was written, the section is taken whole: what may be
    /// forwarded of it is appended to `out`, and `trailers` says how many
    /// bytes of `data` to consume for it. `full`: `data` can grow no more,
    /// so a trailer section not complete in it never will be. A body of
    /// runs queues its chunk lines (and its end) in `out` instead.
    pub fn claim(&mut self, data: &[u8], full: bool, out: Out) -> Result<Claimed, FramingError> {
        let framer = match &mut self.kind {
            Kind::Runs(runs) => {
                if self.claimed == 0 {
                    self.claimed = runs.claim(data.len(), out);
                }
                return Ok(Claimed {
                    body: self.claimed,
                    trailers: 0,
                });
            }
            Kind::Framed(framer) => framer,
        };
        if self.claimed == 0 && framer.awaits_trailers() {
            return match framer.take_trailers(data, out)? {
                Some(trailers) => Ok(Claimed { body: 0, trailers }),
                None if full => Err(FramingError::Trailers),
                None => Ok(Claimed::default()),
            };
        }
        if !framer.is_complete() && self.claimed < data.len() {
            self.claimed += framer.claim(&data[self.claimed..])?;
        }
        Ok(Claimed {
            body: self.claimed,
            trailers: 0,
        })
    }

    /// `count` claimed bytes were written.
    fn written(&mut self, count: usize) {
        self.claimed -= count;
    }

    /// Reads and drops what it can of the body from `source` (rsp answered
    /// the request itself); returns how many bytes went.
    pub fn discard(&mut self, source: &mut Buffer) -> Result<usize, FramingError> {
        let mut dropped = Vec::new();
        let claimed = self.claim(source.data(), source.is_full(), Out::http1(&mut dropped))?;
        let count = claimed.body + claimed.trailers;
        source.consume(count);
        self.claimed = 0;
        Ok(count)
    }

    /// Every byte of the body was claimed and written.
    pub fn is_complete(&self) -> bool {
        self.claimed == 0 && self.is_claimed()
    }

    /// The last byte has been claimed (some may still be unwritten).
    pub fn is_claimed(&self) -> bool {
        match &self.kind {
            Kind::Framed(framer) => framer.is_complete(),
            Kind::Runs(runs) => runs.finished,
        }
    }

    /// Nothing claimed is waiting to be written.
    pub fn is_flushed(&self) -> bool {
        self.claimed == 0
    }

    /// Decoded bytes of a chunked body so far (of a body of runs, the
    /// bytes passed), for the bound on bodies of no stated length.
    pub fn chunked_data(&self) -> Option<u64> {
        match &self.kind {
            Kind::Framed(framer) => framer.chunked_data(),
            Kind::Runs(runs) => Some(runs.length),
        }
    }
}

impl Runs {
    /// The next chunk: of the `available` bytes, all (its line queued in
    /// `out`, after the CRLF that ends the chunk before); none left and
    /// the end told, the last chunk and the trailer section. Returns the
    /// bytes claimed.
    fn claim(&mut self, available: usize, out: Out) -> usize {
        if self.finished || (available == 0 && self.ended.is_none()) {
            return 0;
        }
        if std::mem::take(&mut self.in_chunk) {
            out.bytes.extend_from_slice(b"\r\n");
        }
        if available > 0 {
            let mut digits = [0; 16];
            out.bytes.extend_from_slice(hex(available, &mut digits));
            out.bytes.extend_from_slice(b"\r\n");
            self.in_chunk = true;
            self.length += available as u64;
            return available;
        }
        out.bytes.extend_from_slice(b"0\r\n");
        let mut section = out.trailers();
        for (name, value) in self.ended.iter().flatten() {
            if crate::framing::trailer_forwarded(name) {
                section.field(name, value);
            }
        }
        section.end(false);
        self.finished = true;
        0
    }
}

/// `value` in hexadecimal digits (a chunk's size), written into `out`.
fn hex(value: usize, out: &mut [u8; 16]) -> &[u8] {
    let digits = (usize::BITS - value.leading_zeros()).div_ceil(4).max(1) as usize;
    for (at, slot) in out[..digits].iter_mut().enumerate() {
        *slot = b"0123456789abcdef"[(value >> (4 * (digits - 1 - at))) & 0xf];
    }
    &out[..digits]
}

/// The body of one of rsp's own answers (an error, a Lua reply, an admin
/// page) or of a stored response (a part of it, for a range): written
/// from where it is as the client takes it, after its head, never copied
/// into the client queue.
#[derive(Debug, Default)]
pub struct LocalBody {
    bytes: Bytes,
    sent: usize,
    end: usize,
}

#[derive(Debug)]
enum Bytes {
    Own(std::borrow::Cow<'static, [u8]>),
    /// A stored response's, shared with the cache.
    Shared(std::sync::Arc<[u8]>),
}

impl Default for Bytes {
    fn default() -> Bytes {
        Bytes::Own(std::borrow::Cow::Borrowed(&[]))
    }
}

impl LocalBody {
    pub fn new(bytes: impl Into<std::borrow::Cow<'static, [u8]>>) -> LocalBody {
        let bytes = bytes.into();
        LocalBody {
            end: bytes.len(),
            bytes: Bytes::Own(bytes),
            sent: 0,
        }
    }

    /// `range` of a stored body.
    pub fn shared(bytes: std::sync::Arc<[u8]>, range: std::ops::Range<usize>) -> LocalBody {
        let end = range.end.min(bytes.len());
        LocalBody {
            bytes: Bytes::Shared(bytes),
            sent: range.start.min(end),
            end,
        }
    }

    pub fn pending(&self) -> &[u8] {
        let all: &[u8] = match &self.bytes {
            Bytes::Own(bytes) => bytes,
            Bytes::Shared(bytes) => bytes,
        };
        &all[self.sent..self.end]
    }

    pub fn is_done(&self) -> bool {
        self.sent == self.end
    }

    fn advance(&mut self, count: usize) {
        self.sent += count;
    }
}

/// What of `source` makes up the message being forwarded.
pub enum Passage<'a> {
    /// Only what is queued (a bodiless message's head).
    Queued,
    /// What is queued, then rsp's own body (not in `source`).
    Local(&'a mut LocalBody),
    /// A framed body, and the fill that stores it as it passes, if any.
    Body(&'a mut Body, Option<&'a mut crate::cache::Fill>),
    /// A body compressed on its way (`None` once all of it was read):
    /// the client gets the encoder's chunks.
    Encode(
        Option<&'a mut Body>,
        &'a mut crate::compress::Encoder,
        Option<&'a mut crate::cache::Fill>,
    ),
    /// Every byte, as it comes (a tunnel).
    Raw,
}

impl Passage<'_> {
    /// `passed` bytes of the body went to the sink (and to the fill that
    /// stores them, if any).
    fn written(&mut self, source: &mut Buffer, passed: usize) {
        match self {
            Passage::Body(body, fill) => {
                body.written(passed);
                if let Some(fill) = fill {
                    fill.feed(&source.data()[..passed]);
                }
                source.consume(passed);
            }
            Passage::Local(local) => local.advance(passed),
            Passage::Encode(_, encoder, fill) => {
                if let Some(fill) = fill {
                    fill.feed(&encoder.pending()[..passed]);
                }
                encoder.sent(passed);
            }
            Passage::Queued | Passage::Raw => source.consume(passed),
        }
    }
}

/// What one `forward` moved, for the byte counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Queued bytes written.
    pub queued: usize,
    /// Bytes of `source` written as they were.
    pub passed: usize,
    /// Bytes of `source` taken as a trailer section (rewritten into the queue).
    pub trailers: usize,
}

impl Moved {
    pub fn any(&self) -> bool {
        self.queued + self.passed + self.trailers > 0
    }
}

#[derive(Debug)]
pub enum ForwardError {
    /// The source's message broke its framing.
    Framing(FramingError),
    /// A chunked body grew past the limit.
    TooLarge(u64),
    /// The sink failed.
    Sink(io::Error),
    /// The encoder failed.
    Encoding(io::Error),
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::Framing(error) => error.fmt(f),
            ForwardError::TooLarge(limit) => write!(f, "chunked body over {limit} bytes"),
            ForwardError::Sink(error) => error.fmt(f),
            ForwardError::Encoding(error) => write!(f, "compressing: {error}"),
        }
    }
}

/// Writes to `sink` what it takes of one message: `queue` first, then the
/// body bytes of `source` that `passage` says belong to it. `ends_connection`:
/// the connection closes once the message is out, so its last bytes may
/// carry the end of stream (see `Endpoint::write_two`). `limit` bounds a
/// chunked body's decoded length.
pub fn forward(
    source: &mut Buffer,
    mut passage: Passage<'_>,
    queue: &mut Queue,
    sink: &mut impl Sink,
    ends_connection: bool,
    limit: Option<u64>,
) -> Result<Moved, ForwardError> {
    let mut moved = Moved::default();
    while sink.writable() {
        let body_length = match &mut passage {
            Passage::Queued => 0,
            Passage::Local(body) => body.pending().len(),
            Passage::Raw => source.len(),
            Passage::Body(body, _) => {
                let claimed = body
                    .claim(source.data(), source.is_full(), queue.out())
                    .map_err(ForwardError::Framing)?;
                source.consume(claimed.trailers);
                moved.trailers += claimed.trailers;
                if let (Some(decoded), Some(limit)) = (body.chunked_data(), limit)
                    && decoded > limit
                {
                    return Err(ForwardError::TooLarge(limit));
                }
                claimed.body
            }
            Passage::Encode(body, encoder, _) => {
                encode_more(source, body.as_deref_mut(), encoder)?;
                if encoder.awaits_end() {
                    // The chunks end with an empty trailer section (for an
                    // HTTP/2 client, END_STREAM), queued after them.
                    queue.out().trailers().end(false);
                    encoder.terminated = true;
                }
                encoder.pending().len()
            }
        };
        let closing = ends_connection
            && match &passage {
                Passage::Body(body, _) => body.is_claimed(),
                Passage::Encode(_, encoder, _) => encoder.is_done(),
                Passage::Queued | Passage::Local(_) => true,
                Passage::Raw => false,
            };
        let head = queue.pending();
        if head.is_empty() && body_length == 0 {
            break;
        }
        let body = match &passage {
            Passage::Local(local) => local.pending(),
            Passage::Encode(_, encoder, _) => encoder.pending(),
            _ => &source.data()[..body_length],
        };
        let written = sink
            .write_two(head, body, closing)
            .map_err(ForwardError::Sink)?;
        let Some(count) = written else {
            break;
        };
        let from_queue = count.min(head.len());
        queue.advance(from_queue);
        let passed = count - from_queue;
        passage.written(source, passed);
        moved.queued += from_queue;
        moved.passed += passed;
    }
    Ok(moved)
}

/// Feeds the encoder what `body` has in `source` until it has chunks for
/// the client (one run at a time: the bound on what it holds), and ends
/// its output once the body is all read.
fn encode_more(
    source: &mut Buffer,
    mut body: Option<&mut Body>,
    encoder: &mut crate::compress::Encoder,
) -> Result<(), ForwardError> {
    while encoder.pending().is_empty() && !encoder.awaits_end() && !encoder.is_done() {
        let Some(body) = body.as_deref_mut().filter(|body| !body.is_claimed()) else {
            // All of it went in (or the backend's close ended it).
            return encoder.finish().map_err(ForwardError::Encoding);
        };
        // A compressed body's trailers are not passed on: the encoder's
        // chunks end with none.
        let mut trailers = Vec::new();
        let claimed = body
            .claim(source.data(), source.is_full(), Out::http1(&mut trailers))
            .map_err(ForwardError::Framing)?;
        source.consume(claimed.trailers);
        if claimed.body == 0 {
            if body.is_claimed() {
                continue;
            }
            return Ok(());
        }
        encoder
            .feed(&source.data()[..claimed.body])
            .map_err(ForwardError::Encoding)?;
        body.written(claimed.body);
        source.consume(claimed.body);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_hex() {
        for size in [0, 1, 15, 16, 255, 4096, 65_535, usize::MAX] {
            assert_eq!(hex(size, &mut [0; 16]), format!("{size:x}").as_bytes());
        }
    }

    /// A body of runs, given `runs` then its end, queues what an HTTP/1.1
    /// backend reads as chunked coding: each run a chunk, then the last
    /// chunk and the trailers rsp passes on.
    #[test]
    fn runs_go_out_as_chunks() {
        let mut body = Body::runs();
        let mut wire = Vec::new();
        for run in [&b"hello"[..], &b""[..], &[b'x'; 20][..]] {
            let mut queued = Vec::new();
            let claimed = body.claim(run, false, Out::http1(&mut queued)).unwrap();
            assert_eq!(claimed.body, run.len());
            wire.extend_from_slice(&queued);
            wire.extend_from_slice(&run[..claimed.body]);
            body.written(claimed.body);
        }
        assert!(!body.is_claimed());
        let trailers = vec![
            (b"Grpc-Status".to_vec(), b"0".to_vec()),
            (b"Content-Length".to_vec(), b"1".to_vec()),
        ];
        body.end(trailers);
        let mut queued = Vec::new();
        assert_eq!(
            body.claim(b"", false, Out::http1(&mut queued))
                .unwrap()
                .body,
            0
        );
        wire.extend_from_slice(&queued);
        assert!(body.is_complete());
        assert_eq!(
            wire,
            [
                &b"5\r\nhello\r\n14\r\n"[..],
                &[b'x'; 20],
                b"\r\n0\r\nGrpc-Status: 0\r\n\r\n"
            ]
            .concat()
        );
        assert_eq!(body.chunked_data(), Some(25));
        // What it queued reads back as the body it was.
        let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
        let claimed = framer.claim(&wire).unwrap();
        let mut trailers = Vec::new();
        assert_eq!(
            framer.take_trailers(&wire[claimed..], Out::http1(&mut trailers)),
            Ok(Some(wire.len() - claimed))
        );
        assert_eq!(framer.chunked_data(), Some(25));
    }
}
