//! The HTTP/2 stage (RFC 9113): one client connection carrying many
//! streams, each stream driving one exchange of its own (`exchange.rs`):
//! the request head read from the header list, its body from DATA; the
//! answer the exchange writes is framed as HEADERS and DATA
//! (`stream.rs`). Backends stay HTTP/1.1.
//!
//! ```text
//! client bytes ──frames──> streams: HEADERS ─> RequestHead ─┐
//!                                   DATA ───> body runs ────┴─> exchange ─> backend
//! client <──frames── Tx <── HEADERS/DATA <── heads (message.rs), body <──────┘
//! ```
//!
//! Flow control is the backpressure: a stream's window is given back only
//! as its exchange takes the body (and the exchange only as its backend
//! reads), and DATA is made only while the client's windows and the
//! connection's output bound allow, so an exchange's response buffer
//! fills and its backend stops being read. The defences (floods, resets, header block
//! bounds) are budgets of the connection's, in `Flood`.
//!
//! Here: the connection's life (`Life`), its input and output, deadlines
//! and reloads; `receive.rs`: the frames the client sends; `streams.rs`:
//! the streams, their ends and windows; `exchange.rs`: a stream driving
//! its exchange; `stream.rs`: one stream's frames and its RFC 9113 state; `closed.rs`: what late frames on
//! closed streams get; `flood.rs`: the budgets.

mod closed;
mod exchange;
mod flood;
mod receive;
mod stream;
mod streams;

use std::io;
use std::time::Instant;

use mio::{Registry, Token};

use crate::buffer::Buffer;
use crate::config::Timeouts;
use crate::h2::frame::{self, ErrorCode, FrameError, setting};
use crate::h2::{self as h2, Settings};
use crate::hpack;
use crate::memory::Tracked;
use crate::services::Services;
use crate::timer;

use super::exchange::Busy;
use super::{Client, End, Key, Step, Timeout, client_error};

use closed::ClosedStreams;
use flood::Flood;
use stream::{StreamIo, Tx};

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
/// The buffers of a stream share this per connection (between
/// `STREAM_BUFFER_MIN` and `STREAM_BUFFER_MAX` each).
const CONNECTION_BUFFER: usize = 2 * 1024 * 1024;
const STREAM_BUFFER_MIN: usize = 16 * 1024;
const STREAM_BUFFER_MAX: usize = 64 * 1024;

/// The window every stream starts with until SETTINGS say otherwise.
const DEFAULT_WINDOW: i64 = 65_535;
/// Bytes of output or header-list storage an idle connection keeps.
const IDLE_KEPT: usize = 4096;
/// Streams one connection opens in one round of the loop at most, and the
/// header block bytes (as sent and decoded) it may have read in it
/// (`round_used`): a browser's burst of requests, each of a few hundred
/// bytes, goes in one round; large header lists, two a round.
const NEW_STREAMS_PER_ROUND: u32 = 32;
const HEADER_BYTES_PER_ROUND: usize = 64 * 1024;

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
    /// The stream's exchange and what it holds (from the spare list).
    busy: Box<Busy>,
    /// The request's body as its backend takes it (`StreamIo::fill`).
    inbound: Buffer,
    /// The request as read from its header list, not yet routed: the
    /// bytes it would take as an HTTP/1.1 head, or why it is refused.
    unrouted: Option<Result<usize, crate::http::HeadError>>,
    /// When bytes of this stream last moved.
    last: Instant,
    /// Something happened that its exchange should see.
    dirty: bool,
    /// The connection's client, for log lines.
    client: std::net::SocketAddr,
    /// The bound of the exchange's answer buffer, and what of it is not yet
    /// taken, counted in what the worker holds: admitting streams looks
    /// at what they may come to hold, not what they hold the moment they
    /// open (their answers arrive later, and would overshoot the bound).
    bound: usize,
    reserved: Tracked,
}

impl Stream {
    /// Counts the part of the answer buffer's bound not yet taken.
    fn reserve(&mut self) {
        let taken = self.busy.outbound.held();
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
    /// The open streams' ids and slots, by id (ids only grow, so a new
    /// stream goes last): a frame finds its stream without a scan.
    ids: Vec<(u32, usize)>,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE: new streams' send window.
    peer_initial_window: i64,
    life: Life,
    /// The client acknowledged rsp's SETTINGS (at any point of its life).
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
    header_bytes: u32,
    round: u64,
}

/// Where the connection is in its life (RFC 9113 §3.4, §6.8).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Life {
    /// The client's connection preface is not all read yet.
    Preface,
    /// The preface is read: the client's first frame must be SETTINGS.
    FirstSettings,
    /// Streams may open.
    Open,
    /// A GOAWAY went (`sent`, rsp's: a reload or shutdown) or came
    /// (`received`): no new streams; the connection closes once the open
    /// ones are done.
    GoingAway { sent: bool, received: bool },
    /// A connection error: its GOAWAY is written, and the connection
    /// closes once that is out.
    Failed(Box<str>),
}

impl Life {
    fn failed(&self) -> bool {
        matches!(self, Life::Failed(_))
    }

    /// rsp told the client it takes no new streams.
    fn goaway_sent(&self) -> bool {
        matches!(self, Life::GoingAway { sent: true, .. } | Life::Failed(_))
    }

    /// A GOAWAY went (`by_rsp`) or came.
    fn go_away(&mut self, by_rsp: bool) {
        let (sent, received) = match self {
            Life::Failed(_) => return,
            Life::GoingAway { sent, received } => (*sent || by_rsp, *received || !by_rsp),
            _ => (by_rsp, !by_rsp),
        };
        *self = Life::GoingAway { sent, received };
    }
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
            max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
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
            ids: Vec::new(),
            peer_initial_window: 65_535,
            life: Life::Preface,
            settings_acked: false,
            receive_window: window,
            last_stream: 0,
            closed: ClosedStreams::default(),
            block: None,
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
        self.opened >= NEW_STREAMS_PER_ROUND || self.header_bytes as usize >= HEADER_BYTES_PER_ROUND
    }

    fn run_once(
        &mut self,
        session: usize,
        client: &mut Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let mut progress = self.flush(session, client, services)?;
        if !self.life.failed() {
            progress |= self.read_client(client)?;
            if let Err(error) = self.receive(session, client, services) {
                self.fail(client, error);
                progress = true;
            }
        }
        if !self.life.failed() {
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
            if let Life::Failed(why) = &self.life {
                return Err(Step::Close(End::Aborted(why.to_string())));
            }
            if matches!(self.life, Life::GoingAway { .. }) && self.streams.is_empty() {
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
            && !self.life.failed()
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
            self.ids = Vec::new();
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
        self.life = Life::Failed(format!("HTTP/2 {code:?}: {why}").into());
    }

    /// Shutdown and reloads close HTTP/2 connections gracefully: GOAWAY
    /// with the last stream taken, the open ones finish, then the close.
    fn go_away_if_asked(&mut self, services: &Services) {
        if self.life.goaway_sent() || !(services.draining || services.generation != self.generation)
        {
            return;
        }
        frame::write_goaway(&mut self.tx.out, self.last_stream, ErrorCode::NoError, b"");
        self.life.go_away(true);
        self.closed.goaway(self.last_stream);
    }

    /// The stage's next deadline: the earliest of its streams', or the
    /// connection's own when it has none.
    pub fn deadline(&self, timeouts: &Timeouts, last: Instant) -> (Instant, Timeout) {
        let own = if matches!(self.life, Life::Preface | Life::FirstSettings) {
            (last + timeouts.client_header, Timeout::Silent)
        } else {
            (last + self.settings.idle_timeout, Timeout::ClientIdle)
        };
        self.streams
            .iter()
            .map(|(_, stream)| stream.deadline(timeouts))
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
        for slot in 0..self.streams.capacity() {
            let Some(stream) = self.streams.get_mut(slot) else {
                continue;
            };
            let (at, timeout) = stream.deadline(&timeouts);
            if at > now {
                continue;
            }
            let key = stream_key(session, slot);
            match stream.expire(key, client, services, timeout) {
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
            let inbound_empty = stream.inbound.is_empty();
            stream
                .busy
                .update_backend_interest(registry, inbound_empty)?;
        }
        // A write held for the end of the batch needs no event.
        let wants_write =
            (self.tx.pending() > 0 && !self.flush_queued) || client.transport.wants_write();
        client
            .transport
            .endpoint_mut()
            .update_interest(registry, token, wants_write)
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
            let link = (key.waiter, client, &mut stream.inbound);
            if let Some(flow) = stream.busy.follow_reload(link, moved, pool_moved, services) {
                // A queued request answered: driven on the next turn.
                let _ = flow;
                stream.dirty = true;
                any = true;
            }
        }
        // Connections made before the reload are told to go away.
        any || !self.life.goaway_sent()
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
            stream
                .busy
                .close(stream_key(session, slot).waiter, services, end);
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
