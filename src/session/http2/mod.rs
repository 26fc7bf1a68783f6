//! The HTTP/2 stage (RFC 9113): one client connection carrying many
//! streams, each stream one exchange, driven by an HTTP/1 stage of its
//! own that reads the request translated to HTTP/1.1 and whose answer is
//! translated back into frames (`stream.rs`). Backends stay HTTP/1.1.
//!
//! ```text
//! client bytes ──frames──> streams: HEADERS ─> head ─┐
//!                                   DATA ───> body ──┴─> Http1 ─> exchange ─> backend
//! client <──frames── Tx <── HEADERS/DATA <── Http1's answer <──────────────────┘
//! ```
//!
//! Flow control is the backpressure: a stream's window is given back only
//! as its stage takes the body (and the stage only as its backend reads),
//! and DATA is made only while the client's windows and the connection's
//! output bound allow, so a stage's response buffer fills and its
//! backend stops being read. The defences (floods, resets, header block
//! bounds) are budgets of the connection's, in `Flood`.

mod closed;
mod stream;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Registry, Token};

use crate::buffer::Buffer;
use crate::config::Timeouts;
use crate::h2::frame::{self, ErrorCode, Frame, FrameError, setting};
use crate::h2::request::{self, BodyFraming};
use crate::h2::{self as h2, Settings, hpack};
use crate::memory::{Pressure, Tracked};
use crate::reply::ErrorReply;
use crate::services::Services;
use crate::timer;

use super::http1::Http1;
use super::{Client, End, Key, Step, Timeout, client_error};

use closed::{ClosedStreams, Ended, Late};
use stream::{StreamIo, StreamPeer, Tx};

/// The most header block bytes (HEADERS and its CONTINUATIONs) rsp
/// gathers before decoding: twice the decoded bound, as Huffman coding
/// may shrink text to less than half. More is a CONTINUATION flood
/// (CVE-2024-27316): the connection ends.
const BLOCK_FACTOR: usize = 2;
/// The most fields a decoded header list keeps; past them the stream gets
/// 431. The bound on a request's field count is the HTTP/1 parser's
/// (`http::MAX_HEADERS`), on the head the list translates to, as for an
/// HTTP/1 client: this one only bounds what a list may hold before (four
/// pseudo-header fields, cookies in crumbs that become one line).
const DECODED_FIELDS: usize = 4 * crate::http::MAX_HEADERS;
/// The most CONTINUATION frames one header block may take.
const MAX_CONTINUATIONS: u32 = 32;
/// Frames rsp may hold for a client that does not read, beyond which the
/// connection is cut: only control frames go past `OUTPUT_HIGH`, and a
/// client that makes this many of them and reads none is flooding.
const OUTPUT_MAX: usize = 1024 * 1024;
/// The stage buffers of a stream share this per connection (between
/// `STREAM_BUFFER_MIN` and `STREAM_BUFFER_MAX` each).
const CONNECTION_BUFFER: usize = 2 * 1024 * 1024;
const STREAM_BUFFER_MIN: usize = 16 * 1024;
const STREAM_BUFFER_MAX: usize = 64 * 1024;

/// What a connection may do of each costly-but-legal thing before it is
/// told to calm down (GOAWAY ENHANCE_YOUR_CALM). The counts halve every
/// `FLOOD_HALF_LIFE`, so a busy but honest client never reaches them,
/// and a flood does within a fraction of a second.
#[derive(Debug, Default)]
struct Flood {
    /// Streams reset by the client before their end (rapid reset,
    /// CVE-2023-44487), and by rsp because of what the client sent
    /// (MadeYouReset, CVE-2025-8671), refused streams included.
    resets: u32,
    /// PING, SETTINGS, PRIORITY, empty DATA, WINDOW_UPDATE frames and
    /// frames of unknown types: cheap for the client, work for rsp.
    control: u32,
    since: Option<Instant>,
}

const FLOOD_HALF_LIFE: Duration = Duration::from_secs(1);
/// The window every stream starts with until SETTINGS say otherwise.
const DEFAULT_WINDOW: i64 = 65_535;
/// Bytes of output or header-list storage an idle connection keeps.
const IDLE_KEPT: usize = 4096;
const MAX_RESETS: u32 = 200;
/// Streams one connection opens in one round of the loop at most, and the
/// header block bytes (as sent and decoded) it may have read in it
/// (`round_used`): a browser's burst of requests, each of a few hundred
/// bytes, goes in one round; large header lists, two a round.
const NEW_STREAMS_PER_ROUND: u32 = 32;
const HEADER_BYTES_PER_ROUND: usize = 64 * 1024;
const MAX_CONTROL: u32 = 10_000;

impl Flood {
    fn decay(&mut self, now: Instant) {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= FLOOD_HALF_LIFE {
            self.resets /= 2;
            self.control /= 2;
            self.since = Some(now);
        }
    }

    fn reset(&mut self) -> Result<(), FrameError> {
        self.decay(timer::now());
        self.resets += 1;
        if self.resets > MAX_RESETS {
            return Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                "too many streams reset",
            ));
        }
        Ok(())
    }

    fn control(&mut self, what: &'static str) -> Result<(), FrameError> {
        self.decay(timer::now());
        self.control += 1;
        if self.control > MAX_CONTROL {
            return Err(FrameError::Connection(ErrorCode::EnhanceYourCalm, what));
        }
        Ok(())
    }
}

/// A header block being gathered: a HEADERS frame's fragment and the
/// CONTINUATIONs that follow it.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
    continuations: u32,
}

struct Stream {
    io: StreamIo,
    stage: Http1,
    /// When bytes of this stream last moved.
    last: Instant,
    /// Something happened that its stage should see.
    dirty: bool,
    /// The connection's client, for log lines.
    client: std::net::SocketAddr,
    /// The bound of the stage's answer buffer, and what of it is not yet
    /// taken, counted in what the worker holds: admitting streams looks
    /// at what they may come to hold, not what they hold the moment they
    /// open (their answers arrive later, and would overshoot the bound).
    bound: usize,
    reserved: Tracked,
}

impl Stream {
    /// Counts the part of the answer buffer's bound not yet taken.
    fn reserve(&mut self) {
        let taken = self.stage.answer_buffer_held();
        self.reserved.set(self.bound.saturating_sub(taken));
    }
}

pub struct Http2 {
    /// Frames from the client, not yet read.
    inbound: Buffer,
    tx: Tx,
    decoder: hpack::Decoder,
    /// The header list of the block being read (kept for its storage).
    list: hpack::HeaderList,
    settings: Settings,
    streams: slab::Slab<Stream>,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE: new streams' send window.
    peer_initial_window: i64,
    /// The connection preface has been read.
    preface: bool,
    /// The client's first SETTINGS has been read.
    settings_seen: bool,
    /// The client acknowledged rsp's SETTINGS.
    settings_acked: bool,
    /// What the client may still send on the connection before rsp opens
    /// its window again.
    receive_window: i64,
    /// The highest stream id the client opened.
    last_stream: u32,
    /// How the streams that are not open ended: every id at or below
    /// `last_stream` without a stream is closed, and its late frames get
    /// what RFC 9113 §5.1 says (`closed::late`).
    closed: ClosedStreams,
    block: Option<Block>,
    /// rsp sent GOAWAY: no new streams are taken.
    goaway_sent: bool,
    /// The client sent GOAWAY: it opens no more streams.
    goaway_received: bool,
    /// A connection error: the GOAWAY is written, the connection closes
    /// once it is out.
    failed: Option<String>,
    flood: Flood,
    /// The reload this connection began under: a newer one sends GOAWAY.
    generation: u64,
    /// Listed in `Services::flushes`: its frames go out after this batch.
    flush_queued: bool,
    /// Streams opened (or refused), and header block bytes read (as sent
    /// and decoded), in the loop's round `round`: past
    /// `NEW_STREAMS_PER_ROUND` or `HEADER_BYTES_PER_ROUND` the rest of the
    /// client's frames wait for the next round, after other connections
    /// had theirs (however many times the connection is driven in a
    /// round: each of its streams' backends' events drives it).
    opened: u32,
    header_bytes: usize,
    round: u64,
}

/// The connection window rsp offers: enough for a number of streams to
/// send at full speed at once, bounded like their buffers.
fn connection_window(settings: &Settings) -> i64 {
    (i64::from(settings.initial_window) * 16).min(i64::from(frame::MAX_WINDOW))
}

impl Http2 {
    /// The stage for a connection that speaks HTTP/2 (ALPN said so, or the
    /// client's first bytes were the preface); `inbound` holds what the
    /// client sent so far.
    pub fn new(inbound: Buffer, settings: Settings, generation: u64) -> Http2 {
        let mut tx = Tx {
            out: Vec::new(),
            sent: 0,
            window: 65_535,
            max_frame: frame::DEFAULT_MAX_FRAME_SIZE as usize,
            table_update: true,
            credit: 0,
        };
        frame::write_settings(
            &mut tx.out,
            &[
                (setting::HEADER_TABLE_SIZE, h2::HEADER_TABLE_SIZE as u32),
                (setting::ENABLE_PUSH, 0),
                (
                    setting::MAX_CONCURRENT_STREAMS,
                    settings.max_concurrent_streams,
                ),
                (setting::INITIAL_WINDOW_SIZE, settings.initial_window),
                (setting::MAX_FRAME_SIZE, settings.max_frame_size),
                (setting::MAX_HEADER_LIST_SIZE, settings.max_header_list_size),
            ],
        );
        let window = connection_window(&settings);
        if window > 65_535 {
            frame::write_window_update(&mut tx.out, 0, (window - 65_535) as u32);
        }
        Http2 {
            inbound,
            tx,
            decoder: h2::decoder(),
            list: hpack::HeaderList::default(),
            settings,
            streams: slab::Slab::new(),
            peer_initial_window: 65_535,
            preface: false,
            settings_seen: false,
            settings_acked: false,
            receive_window: window,
            last_stream: 0,
            closed: ClosedStreams::default(),
            block: None,
            goaway_sent: false,
            goaway_received: false,
            failed: None,
            flood: Flood::default(),
            generation,
            flush_queued: false,
            opened: 0,
            header_bytes: 0,
            round: 0,
        }
    }

    /// Makes all the progress the sockets allow.
    pub fn drive(&mut self, session: usize, client: &mut Client, services: &mut Services) -> Step {
        let buffer_bytes = services.settings.buffer_bytes;
        if self.round != services.round {
            self.round = services.round;
            self.opened = 0;
            self.header_bytes = 0;
        }
        let step = super::drive_rounds(buffer_bytes, || self.run_once(session, client, services));
        match step {
            // Frames held back for the next round: no readiness event will
            // tell of them, they are already read.
            Step::Continue { .. } if self.round_used() && !self.inbound.is_empty() => Step::Yield,
            step => step,
        }
    }

    /// This round opened as many streams as a round may: what one client
    /// asks for at once (a new stream runs `route()`, and may carry a
    /// header list of `max_header_list_size`) waits while others are
    /// served, so their latency does not grow with its requests.
    fn round_used(&self) -> bool {
        self.opened >= NEW_STREAMS_PER_ROUND || self.header_bytes >= HEADER_BYTES_PER_ROUND
    }

    fn run_once(
        &mut self,
        session: usize,
        client: &mut Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let mut progress = self.flush(session, client, services)?;
        if self.failed.is_none() {
            progress |= self.read_client(client)?;
            if let Err(error) = self.receive(session, client, services) {
                self.fail(client, error);
                progress = true;
            }
        }
        if self.failed.is_none() {
            progress |= self.drive_streams(session, client, services);
            self.give_windows();
            self.go_away_if_asked(services);
        }
        progress |= self.flush(session, client, services)?;
        if self.tx.pending() > OUTPUT_MAX {
            return Err(Step::Close(End::Aborted(
                "HTTP/2: the client reads none of what it makes rsp send".into(),
            )));
        }
        if self.tx.pending() == 0 {
            if let Some(why) = self.failed.take() {
                return Err(Step::Close(End::Aborted(why)));
            }
            if (self.goaway_sent || self.goaway_received) && self.streams.is_empty() {
                return Err(Step::Close(End::Done { linger: true }));
            }
            if client.eof && self.streams.is_empty() {
                return Err(Step::Close(End::Done { linger: false }));
            }
        }
        if client.eof && !self.streams.is_empty() && self.inbound.is_empty() {
            // The client closed with streams open: they are cut.
            return Err(Step::Close(End::ClientGone(None)));
        }
        Ok(progress)
    }

    /// Writes the frames rsp holds for the client, unless the worker is
    /// in a batch of events: then once, after it (`Services::flushes`).
    fn flush(
        &mut self,
        session: usize,
        client: &mut Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let pending = self.tx.pending();
        if services.defer_writes
            && pending < stream::OUTPUT_HIGH
            && self.failed.is_none()
            && !client.transport.wants_write()
        {
            if pending > 0 && !self.flush_queued {
                self.flush_queued = true;
                services.flushes.push(session);
            }
            return Ok(false);
        }
        self.flush_queued = false;
        self.write_client(client)
    }

    fn read_client(&mut self, client: &mut Client) -> Result<bool, Step> {
        // A client that does not read what rsp sends is not read either.
        if self.tx.pending() >= stream::OUTPUT_HIGH {
            return Ok(false);
        }
        let fill = client.read_into(&mut self.inbound).map_err(Step::Close)?;
        Ok(fill.read > 0)
    }

    fn write_client(&mut self, client: &mut Client) -> Result<bool, Step> {
        use super::transport::Sink;
        let mut progress = false;
        if client.transport.wants_write() && client.transport.endpoint().writable {
            client.transport.flush().map_err(client_error)?;
            progress = true;
        }
        while self.tx.pending() > 0 && client.transport.writable() {
            let pending = &self.tx.out[self.tx.sent..];
            match client.transport.write_two(pending, &[], false) {
                Ok(Some(count)) => {
                    self.tx.sent += count;
                    progress = true;
                }
                Ok(None) => break,
                Err(error) => return Err(client_error(error)),
            }
        }
        if self.tx.pending() == 0 && !self.tx.out.is_empty() {
            self.tx.out.clear();
            self.tx.sent = 0;
            // Streams that waited for room may go on (not those whose
            // own window is shut: a WINDOW_UPDATE for them wakes them).
            for (_, stream) in self.streams.iter_mut() {
                stream.dirty |= stream.io.waits_on_connection();
            }
            if self.streams.is_empty() {
                self.shed();
            }
        }
        Ok(progress)
    }

    /// A connection with nothing open gives back what its busy time grew
    /// (frame output, header list, stream slots), so an idle HTTP/2
    /// connection costs what a new one does, whatever it carried before.
    fn shed(&mut self) {
        if self.tx.out.capacity() > IDLE_KEPT {
            self.tx.out = Vec::new();
        }
        if self.list.capacity() > IDLE_KEPT {
            self.list = hpack::HeaderList::default();
        }
        if self.streams.capacity() > 0 {
            self.streams = slab::Slab::new();
        }
        self.closed.shed(timer::now());
        self.decoder.shed();
    }

    /// A connection error: GOAWAY with its code, logged; the connection
    /// closes once that is out.
    fn fail(&mut self, client: &Client, error: FrameError) {
        let (code, why) = match error {
            FrameError::Connection(code, why) => (code, why),
            FrameError::Stream(_, code, why) => (code, why),
        };
        crate::client_log!(
            log::Level::Info,
            "{}: HTTP/2 GOAWAY {code:?}: {why}",
            client.address
        );
        frame::write_goaway(&mut self.tx.out, self.last_stream, code, why.as_bytes());
        self.goaway_sent = true;
        self.failed = Some(format!("HTTP/2 {code:?}: {why}"));
    }

    /// Reads every whole frame the client sent. The buffer is taken out
    /// while its frames are handled, so they borrow it and nothing is
    /// copied before it is needed.
    fn receive(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<(), FrameError> {
        let mut inbound = std::mem::replace(&mut self.inbound, Buffer::new(0));
        let result = self.receive_from(&mut inbound, session, client, services);
        self.inbound = inbound;
        result
    }

    fn receive_from(
        &mut self,
        inbound: &mut Buffer,
        session: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<(), FrameError> {
        if !self.preface {
            let data = inbound.data();
            let length = data.len().min(frame::PREFACE.len());
            if data[..length] != frame::PREFACE[..length] {
                return Err(FrameError::Connection(
                    ErrorCode::ProtocolError,
                    "no connection preface",
                ));
            }
            if length < frame::PREFACE.len() {
                return Ok(());
            }
            inbound.consume(length);
            self.preface = true;
        }
        loop {
            if self.round_used() && self.block.is_none() {
                break;
            }
            let data = inbound.data();
            let (parsed, length) = match frame::parse(data, self.settings.max_frame_size) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                // One stream's error (a PRIORITY or WINDOW_UPDATE it may
                // not have): that stream is reset, the connection goes
                // on. A HEADERS frame's carries a header block that must
                // be decoded to keep HPACK in step: the connection's.
                Err(FrameError::Stream(stream, code, why))
                    if frame::Header::read(data)
                        .is_some_and(|header| header.kind != frame::kind::HEADERS) =>
                {
                    // On a stream not yet opened (RST_STREAM may not name
                    // one, §6.4), or inside a header block: the connection's.
                    if stream > self.last_stream || self.block.is_some() {
                        return Err(FrameError::Connection(ErrorCode::ProtocolError, why));
                    }
                    let length = frame::Header::read(data).map_or(data.len(), |header| {
                        frame::HEADER_LENGTH + header.length as usize
                    });
                    inbound.consume(length);
                    match self.slot(stream) {
                        Some(slot) => self.cut_stream(session, slot, code, services, why)?,
                        // Frames on a stream rsp reset are ignored (§5.1).
                        None if self.closed.ended(stream) == Ended::ResetByRsp => {
                            self.flood.control("a flood of frames on closed streams")?;
                        }
                        None => {
                            self.reset_stream(client.address, stream, code, &why, services);
                            self.flood.reset()?;
                        }
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            // The frame borrows the buffer: what it carries is copied out
            // by the handler, then the bytes are consumed.
            let handled = self.frame(session, client, services, parsed);
            inbound.consume(length);
            handled?;
            if self.failed.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn frame(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        frame: Frame,
    ) -> Result<(), FrameError> {
        if !self.settings_seen && !matches!(frame, Frame::Settings { ack: false, .. }) {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "the first frame is not SETTINGS",
            ));
        }
        if let Some(block) = &self.block
            && !matches!(&frame, Frame::Continuation { stream, .. } if *stream == block.stream)
        {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a header block interrupted",
            ));
        }
        match frame {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_length,
            } => self.data(
                session,
                client,
                services,
                (stream, end_stream),
                data,
                flow_length,
            ),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                self.block = Some(Block {
                    stream,
                    end_stream,
                    bytes: fragment.to_vec(),
                    continuations: 0,
                });
                self.check_block()?;
                if end_headers {
                    self.header_block(session, client, services)?;
                }
                Ok(())
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => {
                let Some(block) = self.block.as_mut() else {
                    return Err(FrameError::Connection(
                        ErrorCode::ProtocolError,
                        "CONTINUATION without HEADERS",
                    ));
                };
                block.bytes.extend_from_slice(fragment);
                block.continuations += 1;
                self.check_block()?;
                if end_headers {
                    self.header_block(session, client, services)?;
                }
                Ok(())
            }
            // PRIORITY may name any stream, idle ones too (§5.1); rsp
            // does not act on priorities (RFC 9113 deprecates them).
            Frame::Priority { .. } => self.flood.control("PRIORITY flood"),
            Frame::RstStream { stream: id, code } => {
                self.check_known(id)?;
                let Some(slot) = self.slot(id) else {
                    return self.late_frame(client, services, frame::kind::RST_STREAM, id);
                };
                self.flood.reset()?;
                log::debug!(
                    "{}: HTTP/2 stream {id} reset by the client: {code:?}",
                    client.address
                );
                let mut stream = self.streams.remove(slot);
                self.tx.credit += stream.io.body.len() as u64;
                stream.io.ended_by_rsp = true;
                self.closed.reset(id, false, timer::now());
                let key = stream_key(session, slot);
                stream.stage.close(key, services, &End::ClientGone(None));
                Ok(())
            }
            Frame::Settings { ack, payload } => {
                self.flood.control("SETTINGS flood")?;
                if ack {
                    self.settings_acknowledged();
                    return Ok(());
                }
                self.settings_seen = true;
                self.apply_settings(payload)?;
                frame::write_settings_ack(&mut self.tx.out);
                Ok(())
            }
            Frame::PushPromise { .. } => Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a client may not push",
            )),
            Frame::Ping { ack, data } => {
                self.flood.control("PING flood")?;
                if !ack {
                    frame::write_ping_ack(&mut self.tx.out, data);
                }
                Ok(())
            }
            Frame::GoAway { code, .. } => {
                log::debug!(
                    "{}: HTTP/2 GOAWAY from the client: {code:?}",
                    client.address
                );
                self.goaway_received = true;
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                self.flood.control("WINDOW_UPDATE flood")?;
                self.window_update(session, client, services, stream, increment)
            }
            Frame::Unknown { .. } => self.flood.control("a flood of unknown frames"),
        }
    }

    /// A stream id the client has not opened yet may only be opened
    /// (RFC 9113 §5.1: anything else on an idle stream is a connection
    /// error).
    fn check_known(&self, stream: u32) -> Result<(), FrameError> {
        if stream > self.last_stream {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a frame on a stream not yet opened",
            ));
        }
        Ok(())
    }

    fn slot(&self, id: u32) -> Option<usize> {
        self.streams
            .iter()
            .find(|(_, stream)| stream.io.id == id)
            .map(|(slot, _)| slot)
    }

    fn check_block(&self) -> Result<(), FrameError> {
        let Some(block) = &self.block else {
            return Ok(());
        };
        let bound = self.settings.max_header_list_size as usize * BLOCK_FACTOR;
        if block.bytes.len() > bound || block.continuations > MAX_CONTINUATIONS {
            return Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                "a header block over its bound (bytes or CONTINUATION frames)",
            ));
        }
        Ok(())
    }

    fn apply_settings(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        for (id, value) in frame::settings(payload) {
            frame::check_setting(id, value)?;
            match id {
                setting::INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    for (_, stream) in self.streams.iter_mut() {
                        stream.io.send_window += delta;
                        if stream.io.send_window > i64::from(frame::MAX_WINDOW) {
                            return Err(FrameError::Connection(
                                ErrorCode::FlowControlError,
                                "a stream window over 2^31 - 1",
                            ));
                        }
                        stream.dirty = true;
                    }
                }
                setting::MAX_FRAME_SIZE => self.tx.max_frame = value as usize,
                // rsp's encoder keeps no table; a change of the client's
                // is answered by saying so again (RFC 7541 §4.2).
                setting::HEADER_TABLE_SIZE => self.tx.table_update = true,
                _ => {}
            }
        }
        Ok(())
    }

    fn window_update(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        stream: u32,
        increment: u32,
    ) -> Result<(), FrameError> {
        if stream == 0 {
            self.tx.window += i64::from(increment);
            if self.tx.window > i64::from(frame::MAX_WINDOW) {
                return Err(FrameError::Connection(
                    ErrorCode::FlowControlError,
                    "the connection window over 2^31 - 1",
                ));
            }
            for (_, stream) in self.streams.iter_mut() {
                stream.dirty |= stream.io.waits_on_connection();
            }
            return Ok(());
        }
        self.check_known(stream)?;
        let Some(slot) = self.slot(stream) else {
            return self.late_frame(client, services, frame::kind::WINDOW_UPDATE, stream);
        };
        let entry = &mut self.streams[slot];
        entry.io.send_window += i64::from(increment);
        entry.dirty = true;
        if entry.io.send_window > i64::from(frame::MAX_WINDOW) {
            let why = "a stream window over 2^31 - 1";
            self.cut_stream(session, slot, ErrorCode::FlowControlError, services, why)?;
        }
        Ok(())
    }

    /// A frame of `kind` on stream `id`, at or below the highest opened
    /// and not open: closed, and what it gets depends on how (§5.1).
    fn late_frame(
        &mut self,
        client: &Client,
        services: &mut Services,
        kind: u8,
        id: u32,
    ) -> Result<(), FrameError> {
        match closed::late(kind, self.closed.ended(id)) {
            // PRIORITY and WINDOW_UPDATE were charged as they came.
            Late::Ignore if matches!(kind, frame::kind::PRIORITY | frame::kind::WINDOW_UPDATE) => {
                Ok(())
            }
            Late::Ignore => self.flood.control("a flood of frames on closed streams"),
            Late::Reset(code, why) => {
                self.reset_stream(client.address, id, code, &why, services);
                self.flood.reset()
            }
            Late::Connection(code, why) => Err(FrameError::Connection(code, why)),
        }
    }

    fn data(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        (stream, end_stream): (u32, bool),
        data: &[u8],
        flow_length: u32,
    ) -> Result<(), FrameError> {
        self.receive_window -= i64::from(flow_length);
        if self.receive_window < 0 {
            return Err(FrameError::Connection(
                ErrorCode::FlowControlError,
                "DATA past the connection window",
            ));
        }
        // Padding is flow-controlled but never buffered: given back now.
        self.tx.credit += u64::from(flow_length) - data.len() as u64;
        if data.is_empty() && !end_stream {
            self.flood.control("a flood of empty DATA frames")?;
        }
        self.check_known(stream)?;
        let Some(slot) = self.slot(stream) else {
            // A closed stream: its window is the connection's again.
            self.tx.credit += data.len() as u64;
            return self.late_frame(client, services, frame::kind::DATA, stream);
        };
        let entry = &mut self.streams[slot];
        let io = &mut entry.io;
        // Whatever of this frame is not kept is the connection's again.
        let dropped = data.len() as u64;
        if io.ended_by_client {
            self.tx.credit += dropped;
            let why = "DATA after the end of the stream";
            return self.cut_stream(session, slot, ErrorCode::StreamClosed, services, why);
        }
        io.receive_window -= i64::from(flow_length);
        if io.receive_window < 0 {
            self.tx.credit += dropped;
            let why = "DATA past the stream's window";
            return self.cut_stream(session, slot, ErrorCode::FlowControlError, services, why);
        }
        // Padding is counted against the stream's window too, and is never
        // kept: given back with the body bytes the stage takes.
        io.credit += u64::from(flow_length) - dropped;
        io.received += data.len() as u64;
        let too_long = matches!(io.framing, BodyFraming::Length(length) if io.received > length);
        let too_short =
            end_stream && matches!(io.framing, BodyFraming::Length(length) if io.received < length);
        if too_long || too_short {
            self.tx.credit += dropped;
            let why = "DATA that does not add up to its content-length";
            return self.cut_stream(session, slot, ErrorCode::ProtocolError, services, why);
        }
        io.body.extend_from_slice(data);
        if end_stream {
            io.ended_by_client = true;
            if io.framing == BodyFraming::Chunked {
                io.tail.extend_from_slice(b"0\r\n\r\n");
            }
        }
        entry.dirty = true;
        Ok(())
    }

    /// rsp resets a stream because of what the client sent (a stream
    /// error): its exchange ends as one whose client left, and the reset
    /// counts against the budget (MadeYouReset).
    fn cut_stream(
        &mut self,
        session: usize,
        slot: usize,
        code: ErrorCode,
        services: &mut Services,
        why: &str,
    ) -> Result<(), FrameError> {
        let stream = self.streams.remove(slot);
        // The body it held unread is the connection's window again.
        self.tx.credit += stream.io.body.len() as u64;
        // Even after rsp's END_STREAM (trailers): the client may still be
        // sending, and must learn of the error.
        self.reset_stream(stream.client, stream.io.id, code, &why, services);
        stream
            .stage
            .close(stream_key(session, slot), services, &End::ClientGone(None));
        self.flood.reset()
    }

    /// Every RST_STREAM rsp sends: the stream is one rsp reset from now on
    /// (its late frames are ignored), and the reset is logged with why,
    /// at info level within the connection's bound
    /// (`closed::RESETS_LOGGED`).
    fn reset_stream(
        &mut self,
        address: std::net::SocketAddr,
        id: u32,
        code: ErrorCode,
        why: &dyn std::fmt::Display,
        services: &mut Services,
    ) {
        self.tx.reset(id, code);
        let now = timer::now();
        self.closed.reset(id, true, now);
        match self.closed.admit_log_line(now) {
            Some(0) => crate::client_log!(
                log::Level::Info,
                "{address}: HTTP/2 stream {id} reset ({code:?}): {why}"
            ),
            Some(unlogged) => crate::client_log!(
                log::Level::Info,
                "{address}: HTTP/2 stream {id} reset ({code:?}): {why} \
                 ({unlogged} resets before it not logged)"
            ),
            None => {
                services.totals.resets_unlogged += 1;
                log::debug!("{address}: HTTP/2 stream {id} reset ({code:?}): {why}");
            }
        }
    }

    /// A whole header block arrived: a new stream's request, or trailers.
    fn header_block(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<(), FrameError> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let limit = self.settings.max_header_list_size as usize;
        let mut list = std::mem::take(&mut self.list);
        let decoded = self
            .decoder
            .decode(&block.bytes, limit, DECODED_FIELDS, &mut list);
        self.header_bytes += block.bytes.len() + list.bytes();
        let result = match decoded {
            Ok(()) => self.header_list(session, client, services, &block, &list),
            Err(hpack::HpackError(why)) => {
                log::debug!("{}: HPACK: {why}", client.address);
                Err(FrameError::Connection(
                    ErrorCode::CompressionError,
                    "a header block that is not HPACK",
                ))
            }
        };
        self.list = list;
        result
    }

    /// A decoded header block: a new stream's request, or trailers.
    fn header_list(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        block: &Block,
        decoded: &hpack::HeaderList,
    ) -> Result<(), FrameError> {
        let limit = self.settings.max_header_list_size as usize;
        let fields: Vec<h2::Field> = decoded.iter().collect();
        let id = block.stream;
        if let Some(slot) = self.slot(id) {
            let trailers = (block.end_stream, decoded.too_large, &fields[..]);
            return self.trailers(session, client, services, slot, trailers);
        }
        if id.is_multiple_of(2) {
            // A server's id: §5.1.1.
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a stream id that is not odd",
            ));
        }
        if id <= self.last_stream {
            // A closed stream's: trailers the client sent before it saw
            // rsp's reset, say. Decoded (HPACK stays in step), then as
            // §5.1 says.
            return self.late_frame(client, services, frame::kind::HEADERS, id);
        }
        self.opened += 1;
        self.closed.opened(id, self.last_stream);
        self.last_stream = id;
        if self.goaway_sent {
            // After GOAWAY, new streams are ignored (§6.8), and so are
            // their frames (`ClosedStreams::goaway`).
            return Ok(());
        }
        if self.streams.len() >= self.settings.max_concurrent_streams as usize {
            let why = format!("refused: {} streams open", self.streams.len());
            self.reset_stream(client.address, id, ErrorCode::RefusedStream, &why, services);
            return self.flood.reset();
        }
        if let Some(why) = self.memory_refusal(services, block.bytes.len()) {
            services.totals.refused_for_memory += 1;
            self.reset_stream(client.address, id, ErrorCode::RefusedStream, &why, services);
            return self.flood.reset();
        }
        let mut head = Vec::with_capacity(256);
        let framing = if decoded.too_large {
            BodyFraming::None
        } else {
            match request::to_http1(&fields, block.end_stream, &mut head) {
                Ok(framing) => framing,
                Err(malformed) => {
                    let why = format!("malformed request: {malformed}");
                    self.reset_stream(client.address, id, ErrorCode::ProtocolError, &why, services);
                    return self.flood.reset();
                }
            }
        };
        let buffer = self.stream_buffer(services);
        let windows = (
            self.receive_window_of_new_stream(),
            self.peer_initial_window,
        );
        let mut io = StreamIo::new(id, head, framing, windows);
        io.ended_by_client = block.end_stream;
        let slot = self.streams.insert(Stream {
            io,
            stage: Http1::new(Buffer::new(buffer)),
            last: timer::now(),
            dirty: true,
            client: client.address,
            bound: buffer,
            reserved: Tracked::default(),
        });
        self.streams[slot].reserve();
        if decoded.too_large {
            crate::client_log!(
                log::Level::Info,
                "{}: HTTP/2 stream {id}: 431, header list over {limit} bytes or {DECODED_FIELDS} fields",
                client.address,
            );
            // The stream keeps its real end: a client that had not ended
            // it may still send, and is told to stop (RST_STREAM NO_ERROR).
            let stream = &mut self.streams[slot];
            stream
                .stage
                .refuse(client, services, ErrorReply::HeadTooLarge);
        }
        Ok(())
    }

    /// What a new stream's client may send: rsp's `initial_window` once
    /// the client acknowledged rsp's SETTINGS; before that, what the client
    /// may still assume (RFC 9113 §6.9.2: the protocol's 65,535 while
    /// rsp's setting is not known to be in force).
    fn receive_window_of_new_stream(&self) -> i64 {
        let initial = i64::from(self.settings.initial_window);
        if self.settings_acked {
            initial
        } else {
            initial.max(DEFAULT_WINDOW)
        }
    }

    /// The client acknowledged rsp's SETTINGS: a window smaller than the
    /// protocol's default is in force from now on, streams opened before
    /// included.
    fn settings_acknowledged(&mut self) {
        if self.settings_acked {
            return;
        }
        self.settings_acked = true;
        let shrink = DEFAULT_WINDOW - i64::from(self.settings.initial_window);
        if shrink > 0 {
            for (_, stream) in self.streams.iter_mut() {
                stream.io.receive_window -= shrink;
            }
        }
    }

    /// The buffers a new stream's stage gets: the connection's share,
    /// never less than a request head needs.
    fn stream_buffer(&self, services: &Services) -> usize {
        let streams = self.streams.len() + 1;
        (CONNECTION_BUFFER / streams)
            .clamp(STREAM_BUFFER_MIN, STREAM_BUFFER_MAX)
            .max(services.settings.max_header_bytes + 1024)
            .min(services.settings.buffer_bytes)
    }

    /// HEADERS after a stream's request: its trailers, which end it.
    fn trailers(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        slot: usize,
        (end_stream, too_large, fields): (bool, bool, &[h2::Field]),
    ) -> Result<(), FrameError> {
        let io = &mut self.streams[slot].io;
        let protocol = ErrorCode::ProtocolError;
        if io.ended_by_client {
            let why = "HEADERS after the end of the stream";
            return self.cut_stream(session, slot, ErrorCode::StreamClosed, services, why);
        }
        if !end_stream || too_large {
            let why = "trailers that do not end the stream, or over the bound";
            return self.cut_stream(session, slot, protocol, services, why);
        }
        if matches!(io.framing, BodyFraming::Length(length) if io.received < length) {
            let why = "DATA that does not add up to its content-length";
            return self.cut_stream(session, slot, protocol, services, why);
        }
        match io.framing {
            BodyFraming::Chunked => {
                if request::trailers_to_http1(fields, &mut io.tail).is_err() {
                    let why = "malformed trailers";
                    return self.cut_stream(session, slot, protocol, services, why);
                }
            }
            // A body of known length carries no trailers in HTTP/1.1.
            _ => log::debug!(
                "{}: HTTP/2 stream {}: trailers dropped (the body has a content-length)",
                client.address,
                io.id
            ),
        }
        io.ended_by_client = true;
        self.streams[slot].dirty = true;
        Ok(())
    }

    /// Drives the stages of the streams something happened to.
    fn drive_streams(&mut self, session: usize, client: &Client, services: &mut Services) -> bool {
        let mut progress = false;
        let slots: Vec<usize> = self
            .streams
            .iter()
            .filter(|(_, stream)| stream.dirty)
            .map(|(slot, _)| slot)
            .collect();
        for slot in slots {
            let Some(stream) = self.streams.get_mut(slot) else {
                continue;
            };
            stream.io.blocked = false;
            let key = stream_key(session, slot);
            let mut peer = StreamPeer {
                client,
                io: &mut stream.io,
                tx: &mut self.tx,
            };
            let mut step = stream.stage.drive(key, &mut peer, services);
            if !matches!(step, Step::Close(_)) && stream.stage.answered_before_body() {
                // Answered by rsp with the body still coming: the stream
                // ends, and the client is told to stop (RST_STREAM NO_ERROR).
                stream.stage.forgo_body();
                step = Step::Close(End::Done { linger: false });
            }
            stream.reserve();
            match step {
                Step::Continue { progress: moved } => {
                    stream.dirty = moved;
                    if moved {
                        stream.last = timer::now();
                        progress = true;
                    }
                }
                Step::Yield => {
                    stream.dirty = true;
                    stream.last = timer::now();
                    progress = true;
                }
                Step::Upgrade => {
                    // The translation refuses upgrades; a 101 cannot come.
                    self.finish_stream(session, slot, End::Aborted("an upgrade".into()), services);
                    progress = true;
                }
                Step::Close(end) => {
                    self.finish_stream(session, slot, end, services);
                    progress = true;
                }
            }
        }
        progress
    }

    /// A stream's stage is done: its end goes to the client (END_STREAM,
    /// or a reset when its answer was cut), and its slot is freed.
    fn finish_stream(&mut self, session: usize, slot: usize, end: End, services: &mut Services) {
        let Stream {
            io, stage, client, ..
        } = self.streams.remove(slot);
        // The body it held unread is the connection's window again.
        self.tx.credit += io.body.len() as u64;
        let key = stream_key(session, slot);
        let done = matches!(end, End::Done { .. });
        // `ended_by_rsp` here: trailers ended the answer.
        let complete = done && (io.ended_by_rsp || io.phase != stream::Phase::Head);
        if !io.ended_by_rsp && complete {
            self.tx.write_data(io.id, &[], true);
        }
        if !io.ended_by_rsp && !complete {
            let why = cut_short(&end);
            self.reset_stream(client, io.id, ErrorCode::InternalError, &why, services);
        } else if !io.ended_by_client {
            // §8.1: the answer is complete, the request need not be.
            let why = "answered before the end of the request";
            self.reset_stream(client, io.id, ErrorCode::NoError, &why, services);
        }
        stage.close(key, services, &end);
    }

    /// Gives back the windows of body bytes the stages took.
    fn give_windows(&mut self) {
        let threshold = u64::from(self.settings.initial_window / 2).max(1);
        for (_, stream) in self.streams.iter_mut() {
            let io = &mut stream.io;
            // A stream's whole window, or half of it, goes back at once:
            // not a WINDOW_UPDATE for every chunk the stage takes.
            if io.credit > 0
                && !io.ended_by_client
                && (io.credit >= threshold || io.body.is_empty())
            {
                frame::write_window_update(&mut self.tx.out, io.id, io.credit as u32);
                io.receive_window += io.credit as i64;
                io.credit = 0;
            }
        }
        let window = connection_window(&self.settings);
        if self.tx.credit > 0 && (self.tx.credit as i64 >= window / 4 || self.streams.is_empty()) {
            frame::write_window_update(&mut self.tx.out, 0, self.tx.credit as u32);
            self.receive_window += self.tx.credit as i64;
            self.tx.credit = 0;
        }
    }

    /// Shutdown and reloads close HTTP/2 connections gracefully: GOAWAY
    /// with the last stream taken, the open ones finish, then the close.
    fn go_away_if_asked(&mut self, services: &Services) {
        if self.goaway_sent || !(services.draining || services.generation != self.generation) {
            return;
        }
        frame::write_goaway(&mut self.tx.out, self.last_stream, ErrorCode::NoError, b"");
        self.goaway_sent = true;
        self.closed.goaway(self.last_stream);
    }

    /// The stage's next deadline: the earliest of its streams', or the
    /// connection's own when it has none.
    pub fn deadline(&self, timeouts: &Timeouts, last: Instant) -> (Instant, Timeout) {
        let own = if !self.preface || !self.settings_seen {
            (last + timeouts.client_header, Timeout::Silent)
        } else {
            (last + self.settings.idle_timeout, Timeout::ClientIdle)
        };
        self.streams
            .iter()
            .map(|(_, stream)| stream.stage.deadline(timeouts, stream.last))
            .min_by_key(|(at, _)| *at)
            .unwrap_or(own)
    }

    /// A deadline passed: the streams whose did act on it; a connection
    /// with none open that idled closes.
    pub fn expire(
        &mut self,
        session: usize,
        client: &mut Client,
        services: &mut Services,
        now: Instant,
    ) -> Step {
        if self.streams.is_empty() {
            log::debug!("{}: idle HTTP/2 connection closed", client.address);
            frame::write_goaway(&mut self.tx.out, self.last_stream, ErrorCode::NoError, b"");
            let _ = self.write_client(client);
            return Step::Close(End::Done { linger: false });
        }
        let timeouts = services.settings.timeouts;
        let due: Vec<(usize, Timeout)> = self
            .streams
            .iter()
            .filter_map(|(slot, stream)| {
                let (at, timeout) = stream.stage.deadline(&timeouts, stream.last);
                (at <= now).then_some((slot, timeout))
            })
            .collect();
        for (slot, timeout) in due {
            let stream = &mut self.streams[slot];
            let key = stream_key(session, slot);
            match stream.stage.expire(key, client, services, timeout) {
                Step::Close(end) => self.finish_stream(session, slot, end, services),
                _ => stream.dirty = true,
            }
        }
        self.drive(session, client, services)
    }

    pub fn update_interest(
        &mut self,
        client: &mut Client,
        registry: &Registry,
        token: Token,
    ) -> io::Result<()> {
        for (_, stream) in self.streams.iter_mut() {
            stream.stage.update_backend_interest(registry)?;
        }
        // A write held for the end of the batch needs no event.
        let wants_write =
            (self.tx.pending() > 0 && !self.flush_queued) || client.transport.wants_write();
        client
            .transport
            .endpoint_mut()
            .update_interest(registry, token, wants_write)
    }

    /// An event for backend socket `fd`, if one of the streams holds it.
    pub fn mark_backend_ready(&mut self, fd: RawFd, event: &Event) -> bool {
        for (_, stream) in self.streams.iter_mut() {
            if let Some(backend) = stream.stage.backend_mut()
                && backend.stream.as_raw_fd() == fd
            {
                backend.mark(event);
                stream.dirty = true;
                return true;
            }
        }
        false
    }

    /// A slot freed in the pool the stream in `slot` waits on.
    pub fn wake(&mut self, slot: Option<usize>) {
        if let Some(stream) = slot.and_then(|slot| self.streams.get_mut(slot)) {
            stream.stage.wake();
            stream.dirty = true;
        }
    }

    pub fn follow_reload(
        &mut self,
        session: usize,
        client: &Client,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
        services: &mut Services,
    ) -> bool {
        let mut any = false;
        for (slot, stream) in self.streams.iter_mut() {
            let key = stream_key(session, slot);
            if stream
                .stage
                .follow_reload(key, client, moved, pool_moved, services)
            {
                stream.dirty = true;
                any = true;
            }
        }
        // Connections made before the reload are told to go away.
        any || !self.goaway_sent
    }

    /// Why a new stream must be refused for memory (REFUSED_STREAM, which
    /// the client may retry), if it must: the worker past its limit and
    /// the connection holding streams already, the worker at its
    /// ceiling, or the connection at `memory.per_connection` (its streams'
    /// buffers, heads and `req.ctx`, with the new one's head, which rsp
    /// holds about twice, as it arrived and as parsed).
    fn memory_refusal(&self, services: &Services, block: usize) -> Option<String> {
        let (_, pressure) = services.memory();
        match pressure {
            Pressure::Ceiling => return Some("refused: rsp is at its memory ceiling".into()),
            Pressure::Full if !self.streams.is_empty() => {
                return Some("refused: rsp is at its memory limit".into());
            }
            _ => {}
        }
        let bound = services.settings.memory.per_connection;
        let held: usize = self
            .streams
            .iter()
            .map(|(_, stream)| stream.stage.held() + stream.io.held() + stream.reserved.bytes())
            .sum();
        let wanted = held + 2 * block;
        (wanted > bound && !self.streams.is_empty()).then(|| {
            format!(
                "refused: the connection holds {held} bytes, near memory.per_connection ({bound})"
            )
        })
    }

    /// Cuts the streams stalled on the client past the grace whose hold is
    /// `needed` (see `Session::reclaim`); true when one was.
    pub fn reclaim(
        &mut self,
        session: usize,
        services: &mut Services,
        now: Instant,
        pressure: Pressure,
        needed: impl Fn(&Services, Option<usize>) -> bool,
    ) -> bool {
        let mut stalled = Vec::new();
        for (slot, stream) in self.streams.iter_mut() {
            if let Some(time) = stream.stage.stalled(now)
                && time >= crate::memory::stall_grace(pressure)
                && needed(services, stream.stage.leased_pool())
            {
                stalled.push((slot, time, stream.stage.held() + stream.io.held()));
            }
        }
        for &(slot, time, held) in &stalled {
            let stream = self.streams.remove(slot);
            self.tx.credit += stream.io.body.len() as u64;
            services.totals.stalled_cut += 1;
            let why = format!(
                "cut: its client took nothing for {:.1} s while {} ({held} bytes held)",
                time.as_secs_f64(),
                if pressure >= Pressure::High {
                    "memory was needed"
                } else {
                    "its pool had requests waiting"
                },
            );
            self.reset_stream(
                stream.client,
                stream.io.id,
                ErrorCode::Cancel,
                &why,
                services,
            );
            stream
                .stage
                .close(stream_key(session, slot), services, &End::ClientGone(None));
        }
        !stalled.is_empty()
    }

    /// The connection ends with streams open: their exchanges end as ones
    /// whose client left (499), since whatever ended the connection (the
    /// client, its protocol error, a timeout, a shutdown past its grace)
    /// is no backend's failure.
    pub fn close(self, session: usize, services: &mut Services, end: &End) {
        let end = match end {
            End::Done { .. } => end,
            _ => &End::ClientGone(None),
        };
        for (slot, stream) in self.streams {
            stream.stage.close(stream_key(session, slot), services, end);
        }
    }
}

/// Why a stream's answer was cut short, for the log line of its reset.
fn cut_short(end: &End) -> String {
    match end {
        End::Aborted(why) => why.clone(),
        End::ClientGone(Some(error)) => format!("the client's side failed: {error}"),
        End::ClientGone(None) => "the client's side ended".into(),
        End::Done { .. } => "the exchange ended before its answer did".into(),
    }
}

/// A stream's key: its session's, with its own place in pool queues.
fn stream_key(session: usize, slot: usize) -> Key {
    Key {
        session,
        waiter: crate::token::waiter(session, Some(slot)),
    }
}
