//! One HTTP/2 stream's side of its exchange: the request body the client
//! sends, moved to the exchange's inbound buffer, and the answer the
//! exchange writes (`StreamSink`), made into HEADERS and DATA frames as
//! far as flow control and the connection's output bound allow.

use std::io;

use crate::buffer::Buffer;
use crate::framing::Chunked;
use crate::h2::frame::{self, ErrorCode};
use crate::h2::request::BodyFraming;
use crate::message::Field;
use crate::message::Record;

use super::super::transport::Sink;

/// The first header block's dynamic table size update, to 0: rsp's
/// encoder keeps no table.
const TABLE_SIZE_ZERO: u8 = 0x20;

/// Frames rsp holds for a client beyond which no more DATA is made: the
/// connection's output bound (control frames are small and few, and are
/// bounded by the flood budgets).
pub const OUTPUT_HIGH: usize = 64 * 1024;

/// What goes to the client: frames, and the state they are made from.
pub struct Tx {
    pub out: Vec<u8>,
    pub sent: usize,
    /// The connection's send window (the client's receive window).
    pub window: i64,
    /// The client's SETTINGS_MAX_FRAME_SIZE.
    pub max_frame: u32,
    /// The next header block starts with a dynamic table size update
    /// (to 0: rsp's encoder keeps no table).
    pub table_update: bool,
    /// Body bytes the streams moved into their stages, for the
    /// connection's WINDOW_UPDATE.
    pub credit: u64,
}

impl Tx {
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Room for DATA under the output bound.
    fn room(&self) -> usize {
        OUTPUT_HIGH.saturating_sub(self.pending())
    }

    /// Writes a header block rsp encoded for `stream` as HEADERS and,
    /// past the client's frame size, CONTINUATION frames.
    pub fn write_headers(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        let update = std::mem::take(&mut self.table_update);
        let length = block.len() + usize::from(update);
        if length <= self.max_frame as usize {
            let flags = frame::flag::END_HEADERS | end_flag(end_stream);
            frame::write_header(&mut self.out, length, frame::kind::HEADERS, flags, stream);
            if update {
                self.out.push(TABLE_SIZE_ZERO);
            }
            self.out.extend_from_slice(block);
            return;
        }
        // Past the client's frame size (a head over 16 KiB at least): in
        // frames of that size, CONTINUATIONs after the HEADERS.
        let mut whole = Vec::with_capacity(length);
        if update {
            whole.push(TABLE_SIZE_ZERO);
        }
        whole.extend_from_slice(block);
        self.write_block(stream, &whole, end_stream);
    }

    fn write_block(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        let mut chunks = block.chunks((self.max_frame as usize).max(1)).peekable();
        let mut kind = frame::kind::HEADERS;
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let mut flags = 0;
            if first {
                flags |= end_flag(end_stream);
            }
            if chunks.peek().is_none() {
                flags |= frame::flag::END_HEADERS;
            }
            frame::write_header(&mut self.out, chunk.len(), kind, flags, stream);
            self.out.extend_from_slice(chunk);
            kind = frame::kind::CONTINUATION;
            first = false;
        }
    }

    pub fn write_data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        frame::write_data_header(&mut self.out, stream, data.len(), end_stream);
        self.out.extend_from_slice(data);
    }

    pub fn reset(&mut self, stream: u32, code: ErrorCode) {
        frame::write_rst_stream(&mut self.out, stream, code);
    }
}

fn end_flag(end_stream: bool) -> u8 {
    if end_stream {
        frame::flag::END_STREAM
    } else {
        0
    }
}

/// Where the answer going to the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The next bytes rsp writes are a response head (interim ones too).
    Head,
    /// Past the final head: body bytes (decoded when `chunked`); queued
    /// bytes after a chunked body are its trailer section.
    Body { chunked: bool },
}

/// A stream's state (RFC 9113 §5.1) while rsp keeps it: idle streams
/// have none yet, and closed ones only their end (`closed.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// The client sent END_STREAM: its request is all here.
    HalfClosedRemote,
    /// rsp sent END_STREAM (or reset the stream).
    HalfClosedLocal,
    /// Both did: the stream goes once its exchange is done.
    Closed,
}

impl State {
    pub fn client_ended(self) -> bool {
        matches!(self, State::HalfClosedRemote | State::Closed)
    }

    pub fn rsp_ended(self) -> bool {
        matches!(self, State::HalfClosedLocal | State::Closed)
    }

    pub fn end_by_client(&mut self) {
        *self = if self.rsp_ended() {
            State::Closed
        } else {
            State::HalfClosedRemote
        };
    }

    pub fn end_by_rsp(&mut self) {
        *self = if self.client_ended() {
            State::Closed
        } else {
            State::HalfClosedLocal
        };
    }
}

/// A stream's side of the translation, both ways.
pub struct StreamIo {
    pub id: u32,
    /// DATA the client sent that the stage has not read yet: at most the
    /// stream's receive window.
    pub body: Vec<u8>,
    pub framing: BodyFraming,
    /// Body bytes received, checked against a content-length.
    pub received: u64,
    /// The trailer fields the client sent (HEADERS after DATA).
    pub trailers: Vec<Field>,
    /// The exchange's body was told its end (the client's, and the
    /// trailers).
    pub end_told: bool,
    /// Who ended the stream so far.
    pub state: State,
    /// What the client may still send before rsp opens the window.
    pub receive_window: i64,
    /// Body bytes the stage read that the client's window has not been
    /// given back for yet.
    pub credit: u64,
    /// What rsp may still send on this stream.
    pub send_window: i64,
    pub phase: Phase,
    /// The answer's chunked coding, read off as its data goes in DATA
    /// frames (the same decoder the body's framer is).
    dechunk: Chunked,
    /// A DATA frame could not be made for want of window or room.
    pub blocked: bool,
}

impl StreamIo {
    /// What the stream holds besides its stage: the body and trailers
    /// received.
    pub fn held(&self) -> usize {
        self.body.capacity()
            + self
                .trailers
                .iter()
                .map(|(name, value)| name.capacity() + value.capacity())
                .sum::<usize>()
    }

    pub fn new(
        id: u32,
        (framing, end_stream): (BodyFraming, bool),
        windows: (i64, i64),
    ) -> StreamIo {
        StreamIo {
            id,
            body: Vec::new(),
            framing,
            received: 0,
            trailers: Vec::new(),
            end_told: false,
            state: if end_stream {
                State::HalfClosedRemote
            } else {
                State::Open
            },
            receive_window: windows.0,
            credit: 0,
            send_window: windows.1,
            phase: Phase::Head,
            dechunk: Chunked::default(),
            blocked: false,
        }
    }

    /// `count` bytes of DATA went out: both send windows shrink by them.
    fn charge(&mut self, tx: &mut Tx, count: usize) {
        self.send_window -= count as i64;
        tx.window -= count as i64;
    }

    /// A response head rsp wrote (interim or final) as a HEADERS frame,
    /// or a chunked body's trailer section as HEADERS that end the stream
    /// (an empty DATA that does, when no field is left of it); returns the
    /// bytes of the record taken.
    fn send_head(&mut self, tx: &mut Tx, queued: &[u8]) -> io::Result<usize> {
        let Some((record, block)) = Record::read(queued) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "queued bytes that are not a head rsp wrote",
            ));
        };
        match (record.trailers, self.phase) {
            (false, Phase::Head) => {
                tx.write_headers(self.id, block, false);
                if record.status >= 200 {
                    self.phase = Phase::Body {
                        chunked: record.chunked,
                    };
                }
            }
            (true, Phase::Body { chunked: true }) => {
                if block.is_empty() {
                    tx.write_data(self.id, &[], true);
                } else {
                    tx.write_headers(self.id, block, true);
                }
                self.state.end_by_rsp();
            }
            // rsp queues nothing after a head but a chunked body's
            // trailers (its own answers' bodies come as `body`).
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a head queued where the stream takes none",
                ));
            }
        }
        Ok(record.length)
    }

    /// Body bytes as DATA frames, within the windows and the output bound:
    /// `body` (a backend's, passed on, its chunk coding taken off when
    /// `chunked`; or rsp's own, `LocalBody`). Returns the bytes taken.
    fn send_body(&mut self, tx: &mut Tx, body: &[u8], chunked: bool) -> io::Result<Option<usize>> {
        let budget = self.send_budget(tx);
        if budget == 0 {
            self.blocked = true;
            return Ok(None);
        }
        if body.is_empty() {
            return Ok(None);
        }
        if !chunked {
            let count = body.len().min(budget);
            tx.write_data(self.id, &body[..count], false);
            self.charge(tx, count);
            return Ok(Some(count));
        }
        // A DATA frame of the chunks' data, without their framing: its
        // header is written once its length is known.
        let at = tx.out.len();
        frame::write_data_header(&mut tx.out, self.id, 0, false);
        let walked = self
            .dechunk
            .walk(body, budget, |data| tx.out.extend_from_slice(data));
        let Ok((walked, given)) = walked else {
            // The body's framer took these bytes: they are chunked coding.
            tx.out.truncate(at);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a chunked body its framer took does not read",
            ));
        };
        if given == 0 {
            tx.out.truncate(at);
        } else {
            let header = frame::header_bytes(given, frame::kind::DATA, 0, self.id);
            tx.out[at..at + frame::HEADER_LENGTH].copy_from_slice(&header);
            self.charge(tx, given);
        }
        if walked == 0 {
            return Ok(None);
        }
        Ok(Some(walked))
    }

    /// The window rsp may send DATA in now.
    /// The stream could not send for want of the connection's window or
    /// room, with its own window open: the connection's WINDOW_UPDATE or
    /// drained output lets it go on. (One whose own window is shut waits
    /// for its own WINDOW_UPDATE: waking it for the connection's would
    /// only drive it to find its window shut, every time, for every such
    /// stream.)
    pub fn waits_on_connection(&self) -> bool {
        self.blocked && self.send_window > 0
    }

    fn send_budget(&self, tx: &Tx) -> usize {
        let window = self.send_window.min(tx.window).max(0) as usize;
        window.min(tx.room()).min(tx.max_frame as usize)
    }
}

/// Where a stream's exchange writes its answer: the stream's frames, in
/// the connection's output.
pub struct StreamSink<'a> {
    pub io: &'a mut StreamIo,
    pub tx: &'a mut Tx,
}

impl StreamIo {
    /// Moves the DATA the client sent into `buffer`, the request body's
    /// runs as they came (the exchange's upstream frames them as its
    /// protocol wants). Returns the bytes moved: they are the client's
    /// window again (`credit`).
    pub fn fill(&mut self, buffer: &mut Buffer, tx: &mut Tx) -> usize {
        if self.body.is_empty() {
            return 0;
        }
        let moved = buffer.push(&self.body);
        self.body.drain(..moved);
        self.credit += moved as u64;
        tx.credit += moved as u64;
        moved
    }

    /// The client ended the stream and all it sent of the body was moved
    /// on: its end (and trailers) go to the body, once (`None` before).
    pub fn take_end(&mut self) -> Option<Vec<Field>> {
        let ended = self.state.client_ended() && self.body.is_empty() && !self.end_told;
        self.end_told |= ended;
        ended.then(|| std::mem::take(&mut self.trailers))
    }
}

impl Sink for StreamSink<'_> {
    /// Always: a stream that cannot send for want of window or room says
    /// so from `write_two`, which marks it blocked, so that a window
    /// opening or the output draining drives it again.
    fn writable(&self) -> bool {
        true
    }

    /// `head`: bytes rsp wrote for the client (a response head, a trailer
    /// section); `body`: the answer's body bytes (a backend's, or rsp's
    /// own). Returns how many of them (head first) were taken.
    fn write_two(&mut self, head: &[u8], body: &[u8], _closing: bool) -> io::Result<Option<usize>> {
        let io = &mut *self.io;
        let tx = &mut *self.tx;
        if io.state.rsp_ended() {
            // Reset: whatever the stage still writes is dropped.
            return Ok(Some(head.len() + body.len()));
        }
        match io.phase {
            _ if !head.is_empty() => io.send_head(tx, head).map(Some),
            Phase::Head => Ok(None),
            Phase::Body { chunked } => io.send_body(tx, body, chunked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Tx {
        Tx {
            out: vec![b'x'],
            sent: 1,
            window: 65_535,
            max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            table_update: true,
            credit: 0,
        }
    }

    /// A frame's kind, flags and payload length.
    type Written = (u8, u8, usize);
    type Field = (Vec<u8>, Vec<u8>);

    /// The frames in `tx`'s output, and the header block they carry,
    /// decoded.
    fn frames(tx: &Tx) -> (Vec<Written>, Vec<Field>) {
        let (mut at, mut out, mut block) = (tx.sent, Vec::new(), Vec::new());
        while at < tx.out.len() {
            let header = frame::Header::read(&tx.out[at..]).unwrap();
            let end = at + frame::HEADER_LENGTH + header.length as usize;
            block.extend_from_slice(&tx.out[at + frame::HEADER_LENGTH..end]);
            out.push((header.kind, header.flags, header.length as usize));
            at = end;
        }
        let fields = loona_hpack::Decoder::new().decode(&block).unwrap();
        (out, fields)
    }

    /// The HPACK block of a head of `status` with `fields`, as the
    /// exchange's writer makes it.
    fn block(status: Option<u16>, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        use crate::message::{HeadWriter, RECORD_HEADER, Wire};
        let mut out = Vec::new();
        let mut head = match status {
            Some(status) => HeadWriter::response(Wire::Http2, &mut out, status, ""),
            None => HeadWriter::trailers(Wire::Http2, &mut out),
        };
        for (name, value) in fields {
            head.field(name, value);
        }
        head.end(false);
        out.split_off(RECORD_HEADER)
    }

    #[test]
    fn a_header_block_goes_in_one_frame_or_in_frames_of_the_clients_size() {
        use frame::flag::{END_HEADERS, END_STREAM};
        use frame::kind::{CONTINUATION, HEADERS};
        let small: [(&[u8], &[u8]); 2] = [(b"Content-Type", b"text/plain"), (b"x-a", b"b")];
        let mut one = tx();
        one.write_headers(1, &block(Some(200), &small), true);
        let (written, fields) = frames(&one);
        assert_eq!(written, [(HEADERS, END_HEADERS | END_STREAM, written[0].2)]);
        assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(
            fields[1],
            (b"content-type".to_vec(), b"text/plain".to_vec())
        );
        // 40,000 bytes of fields: 16,384, 16,384, then the rest.
        let value = vec![b'v'; 1000];
        let large: Vec<(&[u8], &[u8])> = (0..40).map(|_| (&b"x-large"[..], &value[..])).collect();
        let mut split = tx();
        split.write_headers(3, &block(Some(200), &large), false);
        let (written, fields) = frames(&split);
        let kinds: Vec<(u8, u8)> = written
            .iter()
            .map(|(kind, flags, _)| (*kind, *flags))
            .collect();
        assert_eq!(
            kinds,
            [(HEADERS, 0), (CONTINUATION, 0), (CONTINUATION, END_HEADERS)]
        );
        assert_eq!(written[0].2, 16_384);
        assert_eq!(written[1].2, 16_384);
        assert_eq!(fields.len(), 41);
        // Trailers: no status; an empty block is one empty frame.
        let mut empty = tx();
        empty.table_update = false;
        empty.write_headers(5, &block(None, &[]), true);
        assert_eq!(frames(&empty).0, [(HEADERS, END_HEADERS | END_STREAM, 0)]);
    }
}
