//! The streams of a connection that are no longer open, and what a frame
//! that comes for one of them gets (RFC 9113 §5.1).
//!
//! Every id at or below the highest the client opened that has no stream
//! is closed. How it closed decides what its late frames get, so that is
//! remembered where it matters: the streams that ended in a reset (rsp's
//! or the client's), the ids the client skipped, and those it opened
//! after rsp's GOAWAY. The rest ended normally (END_STREAM both ways).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::h2::frame::{ErrorCode, kind};

/// How long a reset stream is remembered. RFC 9113 §5.1 lets an endpoint
/// bound the period over which it ignores frames on a stream it reset;
/// frames still in flight arrive within a round trip, so this is
/// generous by two orders of magnitude.
pub const KEPT_FOR: Duration = Duration::from_secs(60);
/// And how many resets at most (12 bytes each: 48 KiB). The flood budget
/// lets a client make rsp reset about 100 streams a second, so at that
/// rate resets are still remembered for 40 s; only resets no client
/// caused (answers cut by backends) can go faster, and shorten it more.
pub const MAX_KEPT: usize = 4096;
/// Ranges of ids the client skipped that are remembered; only the code
/// of a connection error depends on them (a HEADERS that reuses a
/// skipped id, PROTOCOL_ERROR, §5.1.1, or a closed one, STREAM_CLOSED).
const MAX_SKIPPED: usize = 32;

/// How a stream that is not open ended, as its late frames see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// rsp reset it (refused, malformed, a stream error, an answer cut
    /// short or given before the request's end), or ignored it (opened
    /// after rsp's GOAWAY): the client may have sent frames before it
    /// learnt so, and they are ignored (§5.1, §6.8).
    ResetByRsp,
    /// The client reset it.
    ResetByClient,
    /// Both sides ended it with END_STREAM (or its reset was longer ago
    /// than `KEPT_FOR`).
    Closed,
    /// The client never opened it: it opened a higher id first (§5.1.1).
    Skipped,
}

/// What a frame on a closed stream gets. DATA's length is given back to
/// the connection window whatever this says (§6.9: it was counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Late {
    Ignore,
    /// RST_STREAM with this code (once: the stream is then one rsp reset).
    Reset(ErrorCode, &'static str),
    /// The connection ends (GOAWAY with this code).
    Connection(ErrorCode, &'static str),
}

/// RFC 9113 §5.1's rules for a frame of `frame_kind` (a stream frame a
/// client may send; PUSH_PROMISE and CONTINUATION are the connection's
/// errors or part of a header block before this) on a closed stream.
pub fn late(frame_kind: u8, ended: Ended) -> Late {
    use Ended::*;
    match (frame_kind, ended) {
        // "An endpoint MUST ignore frames that it receives on closed
        // streams after it has sent a RST_STREAM frame."
        (_, ResetByRsp) => Late::Ignore,
        // PRIORITY may come on any stream; WINDOW_UPDATE may cross the
        // end of a stream (§6.9); RST_STREAM is never answered with one
        // (§5.4.2, no loops).
        (kind::PRIORITY | kind::WINDOW_UPDATE | kind::RST_STREAM, _) => Late::Ignore,
        // §6.1: DATA on a stream that is neither open nor half-closed
        // (local) is a stream error, STREAM_CLOSED.
        (kind::DATA, _) => Late::Reset(ErrorCode::StreamClosed, "DATA on a closed stream"),
        // §5.1, closed: a frame other than PRIORITY after the client's
        // RST_STREAM is a stream error, STREAM_CLOSED...
        (kind::HEADERS, ResetByClient) => Late::Reset(
            ErrorCode::StreamClosed,
            "HEADERS on a stream the client reset",
        ),
        // ... and any after its END_STREAM a connection error.
        (kind::HEADERS, Closed) => Late::Connection(
            ErrorCode::StreamClosed,
            "HEADERS on a stream the client ended",
        ),
        // §5.1.1: a new stream's id must be higher than every one before.
        (kind::HEADERS, Skipped) => Late::Connection(
            ErrorCode::ProtocolError,
            "a stream id lower than one already opened",
        ),
        // Frame types this table is not asked about (PUSH_PROMISE is a
        // connection error before; unknown types are ignored).
        _ => Late::Ignore,
    }
}

#[derive(Debug, Clone, Copy)]
struct Reset {
    id: u32,
    /// Seconds since `Known::epoch`.
    at: u32,
    by_rsp: bool,
}

/// Lines about the streams rsp resets that a connection may log at info
/// level per `RESET_LOG_PERIOD`; the rest go to debug and are counted
/// (`Totals::resets_unlogged`), so one client cannot fill the log.
pub const RESETS_LOGGED: u32 = 20;
pub const RESET_LOG_PERIOD: Duration = Duration::from_secs(60);

/// The bound on a connection's log lines about the resets rsp sends.
#[derive(Debug, Default)]
struct ResetLog {
    since: Option<Instant>,
    /// Lines logged at info level since `since`.
    logged: u32,
    /// Lines left out (logged at debug) since the last one at info.
    unlogged: u64,
}

impl ResetLog {
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= RESET_LOG_PERIOD {
            self.since = Some(now);
            self.logged = 0;
        }
        if self.logged >= RESETS_LOGGED {
            self.unlogged += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The closed streams of a connection, as far as they are not closed
/// normally. Boxed, and only once needed: most connections see no reset,
/// and an idle one keeps nothing here.
#[derive(Debug, Default)]
pub struct ClosedStreams {
    known: Option<Box<Known>>,
}

#[derive(Debug, Default)]
struct Known {
    /// Streams that ended in a reset, sorted by id.
    resets: Vec<Reset>,
    epoch: Option<Instant>,
    /// When expired resets were last let go (seconds since `epoch`).
    swept: u32,
    /// Ranges of ids the client skipped (first, last), latest last.
    skipped: VecDeque<(u32, u32)>,
    /// rsp's GOAWAY named this the last stream it takes: higher ids were
    /// ignored.
    goaway: Option<u32>,
    log: ResetLog,
}

impl ClosedStreams {
    fn known(&mut self) -> &mut Known {
        self.known.get_or_insert_default()
    }

    /// How a stream that is not open, at or below the highest id the
    /// client opened, ended.
    pub fn ended(&self, id: u32) -> Ended {
        let Some(known) = &self.known else {
            return Ended::Closed;
        };
        if known.goaway.is_some_and(|last| id > last) {
            return Ended::ResetByRsp;
        }
        if let Ok(at) = known.resets.binary_search_by_key(&id, |reset| reset.id) {
            return if known.resets[at].by_rsp {
                Ended::ResetByRsp
            } else {
                Ended::ResetByClient
            };
        }
        if known
            .skipped
            .iter()
            .any(|&(first, last)| (first..=last).contains(&id))
        {
            return Ended::Skipped;
        }
        Ended::Closed
    }

    /// The client opens `id`, after `last`, the highest before it.
    pub fn opened(&mut self, id: u32, last: u32) {
        // Client ids are odd: the next is `last + 2` (1 for the first).
        let next = if last == 0 { 1 } else { last + 2 };
        if id > next {
            let skipped = &mut self.known().skipped;
            if skipped.len() >= MAX_SKIPPED {
                skipped.pop_front();
            }
            skipped.push_back((next, id - 2));
        }
    }

    /// rsp sent GOAWAY naming `last`: streams above it are not taken.
    pub fn goaway(&mut self, last: u32) {
        self.known().goaway.get_or_insert(last);
    }

    /// Stream `id` ended in a reset, sent by rsp (`by_rsp`) or the client.
    pub fn reset(&mut self, id: u32, by_rsp: bool, now: Instant) {
        let known = self.known();
        let at = known.seconds(now);
        known.sweep(at);
        let resets = &mut known.resets;
        match resets.binary_search_by_key(&id, |reset| reset.id) {
            Ok(index) => {
                let reset = &mut resets[index];
                reset.by_rsp |= by_rsp;
                reset.at = at;
            }
            Err(mut index) => {
                if resets.len() >= MAX_KEPT {
                    // The oldest goes (the first of them, by id).
                    let oldest = (0..resets.len())
                        .min_by_key(|&index| resets[index].at)
                        .unwrap_or(0);
                    resets.remove(oldest);
                    if oldest < index {
                        index -= 1;
                    }
                }
                resets.insert(index, Reset { id, at, by_rsp });
            }
        }
    }

    /// Whether a line about a reset rsp sends now goes to the log at info
    /// level; with it, how many were left out before it.
    pub fn admit_log_line(&mut self, now: Instant) -> Option<u64> {
        self.known().log.admit(now)
    }

    /// Lets go of resets older than `KEPT_FOR`, and of the storage an
    /// idle connection need not keep.
    pub fn shed(&mut self, now: Instant) {
        let Some(known) = &mut self.known else {
            return;
        };
        let at = known.seconds(now);
        known.sweep(at);
        if known.resets.is_empty() {
            known.resets = Vec::new();
            // The last reset is older than the log's period too.
            if known.skipped.is_empty() && known.goaway.is_none() {
                self.known = None;
            }
        }
    }
}

impl Known {
    fn seconds(&mut self, now: Instant) -> u32 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch)
            .as_secs()
            .min(u64::from(u32::MAX)) as u32
    }

    /// At most once a second: the resets older than `KEPT_FOR` go.
    fn sweep(&mut self, now: u32) {
        if now <= self.swept {
            return;
        }
        self.swept = now;
        let kept = KEPT_FOR.as_secs() as u32;
        self.resets
            .retain(|reset| now.saturating_sub(reset.at) < kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_ends_as_it_was_ended() {
        let now = Instant::now();
        let mut closed = ClosedStreams::default();
        closed.opened(1, 0);
        closed.opened(3, 1);
        // 5 and 7 skipped.
        closed.opened(9, 3);
        closed.reset(3, true, now);
        closed.reset(9, false, now);
        closed.reset(11, false, now);
        assert_eq!(closed.ended(1), Ended::Closed);
        assert_eq!(closed.ended(3), Ended::ResetByRsp);
        assert_eq!(closed.ended(5), Ended::Skipped);
        assert_eq!(closed.ended(7), Ended::Skipped);
        assert_eq!(closed.ended(9), Ended::ResetByClient);
        // rsp answered the client's reset stream: now it is rsp's.
        closed.reset(9, true, now);
        assert_eq!(closed.ended(9), Ended::ResetByRsp);
        // Streams after rsp's GOAWAY are ignored.
        closed.goaway(11);
        assert_eq!(closed.ended(11), Ended::ResetByClient);
        assert_eq!(closed.ended(13), Ended::ResetByRsp);
    }

    #[test]
    fn the_first_stream_need_not_be_1() {
        let mut closed = ClosedStreams::default();
        closed.opened(5, 0);
        assert_eq!(closed.ended(1), Ended::Skipped);
        assert_eq!(closed.ended(3), Ended::Skipped);
        closed.opened(7, 5);
        assert_eq!(closed.known.as_ref().unwrap().skipped.len(), 1);
    }

    #[test]
    fn resets_are_remembered_for_a_bounded_time_and_number() {
        let start = Instant::now();
        let mut closed = ClosedStreams::default();
        closed.reset(1, true, start);
        closed.reset(3, true, start + Duration::from_secs(30));
        let later = start + KEPT_FOR + Duration::from_secs(1);
        closed.shed(later);
        assert_eq!(closed.ended(1), Ended::Closed);
        assert_eq!(closed.ended(3), Ended::ResetByRsp);
        closed.shed(later + KEPT_FOR);
        // Nothing left to know: the box goes.
        assert!(closed.known.is_none());
        // Past the count, the oldest go first, whatever their ids.
        let mut closed = ClosedStreams::default();
        closed.reset(u32::MAX >> 1, true, start);
        for index in 0..MAX_KEPT as u32 {
            closed.reset(2 * index + 1, true, start + Duration::from_secs(1));
        }
        let resets = &closed.known.as_ref().unwrap().resets;
        assert_eq!(resets.len(), MAX_KEPT);
        assert!(resets.windows(2).all(|pair| pair[0].id < pair[1].id));
        assert_eq!(closed.ended(u32::MAX >> 1), Ended::Closed);
        assert_eq!(closed.ended(1), Ended::ResetByRsp);
    }

    #[test]
    fn a_connection_that_sees_no_reset_keeps_nothing() {
        let mut closed = ClosedStreams::default();
        for id in (1..100).step_by(2) {
            closed.opened(id, id.saturating_sub(2));
        }
        assert!(closed.known.is_none());
        assert_eq!(closed.ended(1), Ended::Closed);
        assert!(std::mem::size_of::<ClosedStreams>() <= 8);
    }

    #[test]
    fn reset_lines_are_bounded_per_connection_and_period() {
        let start = Instant::now();
        let mut closed = ClosedStreams::default();
        for _ in 0..RESETS_LOGGED {
            assert_eq!(closed.admit_log_line(start), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(closed.admit_log_line(start + RESET_LOG_PERIOD / 2), None);
        }
        // The next period's first line says how many were left out.
        let next = start + RESET_LOG_PERIOD;
        assert_eq!(closed.admit_log_line(next), Some(5));
        assert_eq!(closed.admit_log_line(next), Some(0));
    }

    #[test]
    fn skipped_ranges_are_bounded() {
        let mut closed = ClosedStreams::default();
        let mut last = 0;
        for id in (1..1000).step_by(4) {
            closed.opened(id, last);
            last = id;
        }
        assert_eq!(closed.known.as_ref().unwrap().skipped.len(), MAX_SKIPPED);
        assert_eq!(closed.ended(last - 2), Ended::Skipped);
        // Forgotten: a connection error all the same, with the other code.
        assert_eq!(closed.ended(3), Ended::Closed);
    }

    #[test]
    fn late_frames_follow_rfc_9113_section_5_1() {
        use Ended::*;
        use ErrorCode::*;
        let reset = |code| move |late: Late| matches!(late, Late::Reset(got, _) if got == code);
        let connection =
            |code| move |late: Late| matches!(late, Late::Connection(got, _) if got == code);
        let ignore = |late: Late| late == Late::Ignore;
        type Check = Box<dyn Fn(Late) -> bool>;
        let table: [(u8, [Check; 4]); 5] = [
            // ResetByRsp, ResetByClient, Closed, Skipped
            (
                kind::DATA,
                [
                    Box::new(ignore),
                    Box::new(reset(StreamClosed)),
                    Box::new(reset(StreamClosed)),
                    Box::new(reset(StreamClosed)),
                ],
            ),
            (
                kind::HEADERS,
                [
                    Box::new(ignore),
                    Box::new(reset(StreamClosed)),
                    Box::new(connection(StreamClosed)),
                    Box::new(connection(ProtocolError)),
                ],
            ),
            (
                kind::PRIORITY,
                [0, 1, 2, 3].map(|_| Box::new(ignore) as Check),
            ),
            (
                kind::RST_STREAM,
                [0, 1, 2, 3].map(|_| Box::new(ignore) as Check),
            ),
            (
                kind::WINDOW_UPDATE,
                [0, 1, 2, 3].map(|_| Box::new(ignore) as Check),
            ),
        ];
        for (frame_kind, checks) in table {
            for (ended, check) in [ResetByRsp, ResetByClient, Closed, Skipped]
                .into_iter()
                .zip(checks)
            {
                let got = late(frame_kind, ended);
                assert!(check(got), "kind {frame_kind} on {ended:?}: {got:?}");
            }
        }
    }
}
