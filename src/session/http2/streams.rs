//! The streams' side: driving their exchanges, their ends (END_STREAM,
//! resets), the windows given back as their bodies are taken, and what
//! the worker asks of them (backend readiness, pool slots, memory).

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use mio::event::Event;

use crate::h2::frame::{self, ErrorCode, FrameError};
use crate::memory::Pressure;
use crate::services::Services;
use crate::timer;

use super::super::{Client, End, Step};
use super::stream;
use super::{Http2, Stream, connection_window, cut_short, stream_key};

impl Http2 {
    /// A new stream (its id above every open one's) takes a slot.
    pub(super) fn insert_stream(&mut self, stream: Stream) -> usize {
        let id = stream.io.id;
        let slot = self.streams.insert(stream);
        debug_assert!(self.ids.last().is_none_or(|&(last, _)| last < id));
        self.ids.push((id, slot));
        slot
    }

    /// The stream in `slot` leaves.
    pub(super) fn remove_stream(&mut self, slot: usize) -> Stream {
        let stream = self.streams.remove(slot);
        if let Ok(at) = self.ids.binary_search_by_key(&stream.io.id, |&(id, _)| id) {
            self.ids.remove(at);
        }
        stream
    }

    /// The client reset the stream in `slot`: its exchange ends as one
    /// whose client left.
    pub(super) fn client_reset(&mut self, session: usize, slot: usize, services: &mut Services) {
        let stream = self.remove_stream(slot);
        self.tx.credit += stream.io.body.len() as u64;
        self.closed.reset(stream.io.id, false, timer::now());
        let key = stream_key(session, slot);
        stream
            .busy
            .close(key.waiter, services, &End::ClientGone(None));
    }

    /// rsp resets a stream because of what the client sent (a stream
    /// error): its exchange ends as one whose client left, and the reset
    /// counts against the budget (MadeYouReset).
    pub(super) fn cut_stream(
        &mut self,
        session: usize,
        slot: usize,
        code: ErrorCode,
        services: &mut Services,
        why: &str,
    ) -> Result<(), FrameError> {
        let stream = self.remove_stream(slot);
        // The body it held unread is the connection's window again.
        self.tx.credit += stream.io.body.len() as u64;
        // Even after rsp's END_STREAM (trailers): the client may still be
        // sending, and must learn of the error.
        self.reset_stream(stream.client, stream.io.id, code, &why, services);
        let waiter = stream_key(session, slot).waiter;
        stream.busy.close(waiter, services, &End::ClientGone(None));
        self.flood.reset()
    }

    /// Every RST_STREAM rsp sends: the stream is one rsp reset from now on
    /// (its late frames are ignored), and the reset is logged with why,
    /// at info level within the connection's bound
    /// (`closed::RESETS_LOGGED`).
    pub(super) fn reset_stream(
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

    /// Drives the exchanges of the streams something happened to.
    pub(super) fn drive_streams(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
    ) -> bool {
        let mut progress = false;
        // By slot, not by iterator: a stream may end (and leave the slab)
        // as it is driven, and nothing is allocated to list them first.
        for slot in 0..self.streams.capacity() {
            let Some(stream) = self.streams.get_mut(slot).filter(|stream| stream.dirty) else {
                continue;
            };
            stream.io.blocked = false;
            let key = stream_key(session, slot);
            let mut step = stream.drive(key, client, &mut self.tx, services);
            if !matches!(step, Step::Close(_)) && stream.busy.answered_before_body() {
                // Answered by rsp with the body still coming: the stream
                // ends, and the client is told to stop (RST_STREAM NO_ERROR).
                stream.busy.forgo_body();
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
                    // The request's head refuses upgrades; a 101 cannot come.
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

    /// A stream's exchange is done: its end goes to the client (END_STREAM,
    /// or a reset when its answer was cut), and its slot is freed.
    pub(super) fn finish_stream(
        &mut self,
        session: usize,
        slot: usize,
        end: End,
        services: &mut Services,
    ) {
        let Stream {
            io, busy, client, ..
        } = self.remove_stream(slot);
        // The body it held unread is the connection's window again.
        self.tx.credit += io.body.len() as u64;
        let key = stream_key(session, slot);
        let done = matches!(end, End::Done { .. });
        // rsp ended the stream already: trailers ended the answer.
        let rsp_ended = io.state.rsp_ended();
        let complete = done && (rsp_ended || io.phase != stream::Phase::Head);
        if !rsp_ended && complete {
            self.tx.write_data(io.id, &[], true);
        }
        if !rsp_ended && !complete {
            let why = cut_short(&end);
            self.reset_stream(client, io.id, ErrorCode::InternalError, &why, services);
        } else if !io.state.client_ended() {
            // §8.1: the answer is complete, the request need not be.
            let why = "answered before the end of the request";
            self.reset_stream(client, io.id, ErrorCode::NoError, &why, services);
        }
        busy.close(key.waiter, services, &end);
    }

    /// Gives back the windows of body bytes the exchanges took.
    pub(super) fn give_windows(&mut self) {
        let threshold = u64::from(self.settings.initial_window / 2).max(1);
        for (_, stream) in self.streams.iter_mut() {
            let io = &mut stream.io;
            // A stream's whole window, or half of it, goes back at once:
            // not a WINDOW_UPDATE for every chunk the stage takes.
            if io.credit > 0
                && !io.state.client_ended()
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

    /// An event for backend socket `fd`, if the stream in `slot` (its
    /// owner in the idle store's table) still holds it.
    pub fn mark_backend_ready(&mut self, slot: Option<usize>, fd: RawFd, event: &Event) -> bool {
        let Some(stream) = slot.and_then(|slot| self.streams.get_mut(slot)) else {
            return false;
        };
        match stream.busy.backend_mut() {
            Some(backend) if backend.stream.as_raw_fd() == fd => {
                backend.mark(event);
                stream.dirty = true;
                true
            }
            _ => false,
        }
    }

    /// A slot freed in the pool the stream in `slot` waits on.
    pub fn wake(&mut self, slot: Option<usize>) {
        if let Some(stream) = slot.and_then(|slot| self.streams.get_mut(slot)) {
            stream.busy.wake();
            stream.dirty = true;
        }
    }

    /// Why a new stream must be refused for memory (REFUSED_STREAM, which
    /// the client may retry), if it must: the worker past its limit and
    /// the connection holding streams already, the worker at its
    /// ceiling, or the connection at `memory.per_connection` (its streams'
    /// buffers, heads and `req.ctx`, with the new one's head, which rsp
    /// holds about twice, as it arrived and as parsed).
    pub(super) fn memory_refusal(&self, services: &Services, block: usize) -> Option<String> {
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
            .map(|(_, stream)| stream.held() + stream.reserved.bytes())
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
            let waits = stream.busy.waits_on_client(stream.inbound.is_empty());
            if let Some(time) = stream.busy.stalled(now, waits)
                && time >= crate::memory::stall_grace(pressure)
                && needed(services, stream.busy.leased_pool())
            {
                stalled.push((slot, time, stream.held()));
            }
        }
        for &(slot, time, held) in &stalled {
            let stream = self.remove_stream(slot);
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
            let waiter = stream_key(session, slot).waiter;
            stream.busy.close(waiter, services, &End::ClientGone(None));
        }
        !stalled.is_empty()
    }
}
