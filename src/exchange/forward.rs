//! The one routine that moves a message from a buffer to a socket, for
//! both directions: bytes rsp wrote itself (a head, trailers, an answer)
//! first, then the body bytes that belong to the message, claimed by its
//! framer. Backpressure is the buffers': a source is read only while its
//! buffer has room, and a buffer empties only as its sink takes bytes.

use std::fmt;
use std::io;

use crate::buffer::Buffer;
use crate::framing::{BodyFramer, Framing, FramingError};
use crate::message::{Out, Wire};

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
    framer: BodyFramer,
    claimed: usize,
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
        BodyFramer::new(framing).map(|framer| Body { framer, claimed: 0 })
    }

    /// Claims what it can of `data` and returns how many leading bytes of it
    /// belong to this body. At a chunked body's trailer section, once every
    /// claimed byte was written, the section is taken whole: what may be
    /// forwarded of it is appended to `out`, and `trailers` says how many
    /// bytes of `data` to consume for it. `full`: `data` can grow no more,
    /// so a trailer section not complete in it never will be.
    pub fn claim(&mut self, data: &[u8], full: bool, out: Out) -> Result<Claimed, FramingError> {
        if self.claimed == 0 && self.framer.awaits_trailers() {
            return match self.framer.take_trailers(data, out)? {
                Some(trailers) => Ok(Claimed { body: 0, trailers }),
                None if full => Err(FramingError::Trailers),
                None => Ok(Claimed::default()),
            };
        }
        if !self.framer.is_complete() && self.claimed < data.len() {
            self.claimed += self.framer.claim(&data[self.claimed..])?;
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
        self.claimed == 0 && self.framer.is_complete()
    }

    /// The last byte has been claimed (some may still be unwritten).
    pub fn is_claimed(&self) -> bool {
        self.framer.is_complete()
    }

    /// Nothing claimed is waiting to be written.
    pub fn is_flushed(&self) -> bool {
        self.claimed == 0
    }

    /// Decoded bytes of a chunked body so far.
    pub fn chunked_data(&self) -> Option<u64> {
        self.framer.chunked_data()
    }
}

/// The body of one of rsp's own answers (an error, a Lua reply, an admin
/// page): written from where it is as the client takes it, after its
/// head, never copied into the client queue.
#[derive(Debug, Default)]
pub struct LocalBody {
    bytes: std::borrow::Cow<'static, [u8]>,
    sent: usize,
}

impl LocalBody {
    pub fn new(bytes: impl Into<std::borrow::Cow<'static, [u8]>>) -> LocalBody {
        LocalBody {
            bytes: bytes.into(),
            sent: 0,
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    pub fn is_done(&self) -> bool {
        self.sent == self.bytes.len()
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
    /// A framed body.
    Body(&'a mut Body),
    /// Every byte, as it comes (a tunnel).
    Raw,
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
}

impl fmt::Display for ForwardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardError::Framing(error) => error.fmt(f),
            ForwardError::TooLarge(limit) => write!(f, "chunked body over {limit} bytes"),
            ForwardError::Sink(error) => error.fmt(f),
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
            Passage::Body(body) => {
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
        };
        let closing = ends_connection
            && match &passage {
                Passage::Body(body) => body.is_claimed(),
                Passage::Queued | Passage::Local(_) => true,
                Passage::Raw => false,
            };
        let head = queue.pending();
        if head.is_empty() && body_length == 0 {
            break;
        }
        let body = match &passage {
            Passage::Local(local) => local.pending(),
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
        match &mut passage {
            Passage::Body(body) => {
                body.written(passed);
                source.consume(passed);
            }
            Passage::Local(local) => local.advance(passed),
            _ => source.consume(passed),
        }
        moved.queued += from_queue;
        moved.passed += passed;
    }
    Ok(moved)
}
