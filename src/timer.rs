//! Deadlines for the event loop: a min-heap of (when, what).
//!
//! Cancelling is lazy: a session that moved on simply ignores its expired
//! timer, so scheduling is the only cost on the request path.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

thread_local! {
    static LOOP_TIME: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The event loop's time, read from the clock once per turn of the loop (as
/// nginx and HAProxy keep theirs): a request reads the time about ten times
/// on its way through, and a clock read was an eighth of rsp's own CPU time.
/// Outside a loop (config checks, tests) it is the clock.
pub fn now() -> Instant {
    LOOP_TIME.with(Cell::get).unwrap_or_else(Instant::now)
}

/// The loop's time as milliseconds since the Unix epoch (`rsp.now()`):
/// the wall clock read once per thread, moved on by the loop's clock.
pub fn epoch_millis() -> i64 {
    thread_local! {
        static START: (Instant, i64) = (
            Instant::now(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as i64),
        );
    }
    START.with(|(instant, epoch)| {
        let elapsed = now().saturating_duration_since(*instant);
        epoch + elapsed.as_millis() as i64
    })
}

/// Sets this thread's loop time, for tests of what happens as time passes.
#[cfg(test)]
pub fn pretend(now: Instant) {
    LOOP_TIME.with(|time| time.set(Some(now)));
}

/// Reads the clock for this thread's loop: after each wait for events, and
/// before running expired timers.
pub fn tick() -> Instant {
    let now = Instant::now();
    LOOP_TIME.with(|time| time.set(Some(now)));
    now
}

/// Which timeout a session's next deadline enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// A new connection that never sent a byte, or a PROXY header or TLS
    /// handshake that never completed.
    Silent,
    ClientIdle,
    ClientHeader,
    Queue,
    Connect,
    BackendResponse,
    Idle,
    Tunnel,
}

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Deadline {
    /// A session's deadline (a queued request's timeout).
    Session(usize),
    /// The next active health check of a pool's server is due.
    HealthDue {
        generation: u64,
        pool: usize,
        server: usize,
    },
    /// A running health check's time is up.
    HealthTimeout(usize),
    /// Accepting paused after accept() failed; try again.
    ResumeAccept,
    /// A kept backend connection may have been idle too long.
    IdleBackend { key: usize, serial: u64 },
    /// Time for this worker to publish its counters for the admin port.
    Publish,
    /// Time to drop expired entries of the script's dictionaries (worker 0).
    Sweep,
    /// Time to see whether exchanges must give back what they hold.
    Reclaim,
    /// The Redis connection's next turn (worker 0): a retry, a timeout, a
    /// `PING`.
    Redis,
}

/// Lets a repeated warning through at most once a second, so a condition
/// that lasts cannot flood the log.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    pub fn ready(&mut self, now: Instant) -> bool {
        let ready = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= Duration::from_secs(1));
        if ready {
            self.last = Some(now);
        }
        ready
    }
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Deadline)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, deadline: Deadline) {
        self.heap.push(Reverse((at, deadline)));
    }

    /// How long poll may sleep before the next deadline.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops the entries `keep` rejects: superseded timers of live sessions
    /// and timers of closed ones, which would otherwise pile up for a whole
    /// timeout under heavy traffic.
    pub fn retain(&mut self, mut keep: impl FnMut(Instant, Deadline) -> bool) {
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((at, deadline))| keep(*at, *deadline))
            .collect();
    }

    /// The next deadline that has passed.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Deadline> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((_, deadline))| deadline)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_deadline_order() {
        let now = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(now + Duration::from_millis(30), Deadline::Session(3));
        timers.schedule(now + Duration::from_millis(10), Deadline::Session(1));
        timers.schedule(now + Duration::from_millis(20), Deadline::HealthTimeout(2));
        assert_eq!(timers.timeout(now), Some(Duration::from_millis(10)));
        assert_eq!(timers.pop_expired(now), None);
        let later = now + Duration::from_millis(25);
        assert_eq!(timers.pop_expired(later), Some(Deadline::Session(1)));
        assert_eq!(timers.pop_expired(later), Some(Deadline::HealthTimeout(2)));
        assert_eq!(timers.pop_expired(later), None);
        assert_eq!(timers.timeout(later), Some(Duration::from_millis(5)));
        timers.retain(|_, deadline| deadline != Deadline::Session(3));
        assert!(timers.is_empty());
    }
}
