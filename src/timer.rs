//! Deadlines for the event loop: a min-heap of (when, session key).
//!
//! Cancelling is lazy: a session that moved on simply ignores its expired
//! timer, so scheduling is the only cost on the request path.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Timers {
    pub fn schedule(&mut self, at: Instant, session: usize) {
        self.heap.push(Reverse((at, session)));
    }

    /// How long poll may sleep before the next deadline.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }

    /// The next session whose deadline has passed.
    pub fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((_, session))| session)
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
        timers.schedule(now + Duration::from_millis(30), 3);
        timers.schedule(now + Duration::from_millis(10), 1);
        timers.schedule(now + Duration::from_millis(20), 2);
        assert_eq!(timers.timeout(now), Some(Duration::from_millis(10)));
        assert_eq!(timers.pop_expired(now), None);
        let later = now + Duration::from_millis(25);
        assert_eq!(timers.pop_expired(later), Some(1));
        assert_eq!(timers.pop_expired(later), Some(2));
        assert_eq!(timers.pop_expired(later), None);
        assert_eq!(timers.timeout(later), Some(Duration::from_millis(5)));
    }
}
