//! A rate limiter: GCRA (the generic cell rate algorithm, a token bucket
//! kept as one timestamp per key), exact to the request: `rate` per `per`
//! with `burst` lets `burst` requests through at once, then one every
//! `per / rate`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::config::{LimitConfig, OnError};

use super::bounded::Bounded;
use super::{StateStats, lock};

pub struct Limiter {
    pub config: LimitConfig,
    /// Nanoseconds between two requests at the steady rate (T).
    interval: u64,
    /// How far ahead of now a key's theoretical arrival time may be and
    /// still let a request through: (burst - 1) * T.
    tolerance: u64,
    inner: Mutex<Keys>,
    /// Redis cannot be reached: a shared limit acts by its `on_error`.
    fallback: AtomicBool,
    /// Times a shared limit fell back (Redis lost).
    fallbacks: AtomicU64,
    /// When the cluster's view last came (`now_nanos` + 1; 0: never).
    synced_at: AtomicU64,
}

struct Keys {
    /// A shared limit's keys seen since its last sync, with the requests
    /// of each this instance let through (0: refused only): what the next
    /// sync tells the cluster, and asks it about. At most `max_keys`.
    pending: HashMap<Box<[u8]>, u64>,
    /// The bytes of `pending`'s keys: at most `max_bytes`, as the buckets'.
    pending_bytes: usize,
    /// Each key's theoretical arrival time, in `now_nanos` time; the least
    /// recently used is dropped when `max_keys` are held (a dropped key
    /// starts again with a full burst, as an unseen one does).
    arrivals: Bounded<u64>,
    allowed: u64,
    refused: u64,
}

impl Keys {
    fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Allowed => self.allowed += 1,
            Verdict::Refused { .. } => self.refused += 1,
        }
    }
}

/// What a limiter says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; the next request of this key would be allowed after this
    /// many nanoseconds.
    Refused {
        retry_after: u64,
    },
}

impl Limiter {
    pub fn new(config: LimitConfig) -> Limiter {
        let rate = u128::from(config.rate.max(1));
        let interval = (config.per.as_nanos() / rate).max(1) as u64;
        // (burst - 1) × T, from the exact product (the config bounds it
        // to 100 years, so it fits).
        let tolerance = (u128::from(config.burst.max(1) - 1) * config.per.as_nanos() / rate)
            .min(u128::from(u64::MAX / 2)) as u64;
        let arrivals = Bounded::new(config.max_keys, config.max_bytes, |_| 8);
        Limiter {
            config,
            interval,
            tolerance,
            inner: Mutex::new(Keys {
                pending: HashMap::new(),
                pending_bytes: 0,
                arrivals,
                allowed: 0,
                refused: 0,
            }),
            fallback: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            synced_at: AtomicU64::new(0),
        }
    }

    /// Nanoseconds between two requests at the steady rate.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// How far ahead of now a key's arrival time may be for a request to
    /// pass: (burst - 1) × interval.
    pub fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// Whether a shared limit now acts by its `on_error` (Redis lost);
    /// returns whether that changed.
    pub fn set_fallback(&self, fallback: bool) -> bool {
        let changed = self.fallback.swap(fallback, Ordering::Relaxed) != fallback;
        if changed && fallback {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The keys seen since the last sync (at most `max`), with the requests
    /// let through of each: they leave the list.
    pub fn take_pending(&self, max: usize) -> Vec<(Box<[u8]>, u64)> {
        let mut keys = lock(&self.inner);
        let taken: Vec<(Box<[u8]>, u64)> = if keys.pending.len() <= max {
            keys.pending.drain().collect()
        } else {
            let names: Vec<Box<[u8]>> = keys.pending.keys().take(max).cloned().collect();
            names
                .into_iter()
                .filter_map(|key| keys.pending.remove_entry(&key))
                .collect()
        };
        let bytes: usize = taken.iter().map(|(key, _)| key.len()).sum();
        keys.pending_bytes -= bytes;
        if keys.pending.is_empty() && keys.pending.capacity() > 1024 {
            keys.pending = HashMap::new();
        }
        taken
    }

    /// The cluster's view came at `now` (a sync's reply).
    pub fn mark_synced(&self, now: u64) {
        self.synced_at.store(now + 1, Ordering::Relaxed);
    }

    /// The cluster's word on `key`: its arrival time is `ahead` nanoseconds
    /// past `now`, every instance's requests counted; this instance's
    /// moves up to it.
    pub fn apply(&self, key: &[u8], ahead: u64, now: u64) {
        let cluster = now.saturating_add(ahead);
        let mut keys = lock(&self.inner);
        match keys.arrivals.get_mut(key) {
            Some(arrival) => *arrival = (*arrival).max(cluster),
            None => keys.arrivals.put(key, cluster),
        }
    }

    /// One request of `key` at `now` (nanoseconds, `now_nanos`). A shared
    /// limit decides from what this instance knows (its own requests, and
    /// the cluster's as of the last sync), and notes the key for the next
    /// sync; while Redis is lost, by its `on_error`.
    pub fn check(&self, key: &[u8], now: u64) -> Verdict {
        let shared = self.config.shared;
        let fallback = shared.is_some() && self.fallback.load(Ordering::Relaxed);
        let mut interval = self.interval;
        let mut keys = lock(&self.inner);
        if let Some(shared) = shared.filter(|_| fallback) {
            let verdict = match shared.on_error {
                OnError::Local => None,
                OnError::Allow => Some(Verdict::Allowed),
                OnError::Deny => Some(Verdict::Refused {
                    retry_after: shared.sync.as_nanos() as u64,
                }),
            };
            if let Some(verdict) = verdict {
                keys.count(verdict);
                return verdict;
            }
            // Alone, this instance takes its share of the rate.
            interval = interval.saturating_mul(shared.instances);
        }
        let verdict = match keys.arrivals.get_mut(key) {
            Some(arrival) => self.take(arrival, now, interval),
            None => {
                let mut arrival = now;
                let verdict = self.take(&mut arrival, now, interval);
                keys.arrivals.put(key, arrival);
                verdict
            }
        };
        keys.count(verdict);
        if shared.is_some() && !fallback {
            let max_keys = self.config.max_keys;
            let allowed = u64::from(verdict == Verdict::Allowed);
            if let Some(count) = keys.pending.get_mut(key) {
                *count += allowed;
            } else if keys.pending.len() < max_keys
                && keys.pending_bytes + key.len() <= self.config.max_bytes
            {
                keys.pending_bytes += key.len();
                keys.pending.insert(key.into(), allowed);
            }
        }
        verdict
    }

    /// GCRA for one key whose theoretical arrival time is `arrival`.
    fn take(&self, arrival: &mut u64, now: u64, interval: u64) -> Verdict {
        let at = (*arrival).max(now);
        let allowed_from = at.saturating_sub(self.tolerance);
        if now < allowed_from {
            return Verdict::Refused {
                retry_after: allowed_from - now,
            };
        }
        *arrival = at.saturating_add(interval);
        Verdict::Allowed
    }

    pub fn stats(&self) -> StateStats {
        let keys = lock(&self.inner);
        StateStats {
            name: self.config.name.clone(),
            keys: keys.arrivals.len(),
            max_keys: self.config.max_keys,
            bytes: keys.arrivals.bytes(),
            allowed: keys.allowed,
            refused: keys.refused,
            shared: self.config.shared.map(|_| {
                let synced = self.synced_at.load(Ordering::Relaxed);
                let age =
                    (synced > 0).then(|| super::now_nanos().saturating_sub(synced - 1) / 1_000_000);
                (self.fallbacks(), age)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(rate: u64, per: Duration, burst: u64, max_keys: usize) -> Limiter {
        Limiter::new(LimitConfig {
            name: "test".into(),
            rate,
            per,
            burst,
            max_keys,
            max_bytes: usize::MAX,
            shared: None,
        })
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_burst_goes_at_once_then_the_rate() {
        let limit = limiter(100, Duration::from_secs(1), 200, 10);
        let allowed = (0..300)
            .filter(|_| limit.check(b"a", SECOND) == Verdict::Allowed)
            .count();
        assert_eq!(allowed, 200);
        // 10 ms later: one more (100/s).
        assert_eq!(limit.check(b"a", SECOND + 10_000_000), Verdict::Allowed);
        assert!(matches!(
            limit.check(b"a", SECOND + 10_000_000),
            Verdict::Refused { retry_after } if retry_after == 10_000_000
        ));
        // Other keys have their own bucket.
        assert_eq!(limit.check(b"b", SECOND), Verdict::Allowed);
    }

    #[test]
    fn over_three_seconds_a_limit_lets_burst_plus_rate_through() {
        let limit = limiter(10, Duration::from_secs(1), 5, 10);
        let mut allowed = 0;
        // A request every millisecond for 3 s.
        for step in 0..3000u64 {
            if limit.check(b"k", SECOND + step * 1_000_000) == Verdict::Allowed {
                allowed += 1;
            }
        }
        assert!((34..=36).contains(&allowed), "{allowed}");
        let stats = limit.stats();
        assert_eq!((stats.allowed, stats.refused), (allowed, 3000 - allowed));
    }

    fn shared(on_error: OnError, instances: u64) -> Limiter {
        Limiter::new(LimitConfig {
            shared: Some(crate::config::SharedLimit {
                sync: Duration::from_millis(50),
                on_error,
                instances,
            }),
            ..limiter(10, Duration::from_secs(1), 2, 100).config
        })
    }

    #[test]
    fn a_shared_limit_notes_its_keys_and_moves_up_to_the_cluster() {
        let limit = shared(OnError::Local, 1);
        assert_eq!(limit.check(b"a", SECOND), Verdict::Allowed);
        assert_eq!(limit.check(b"a", SECOND), Verdict::Allowed);
        assert!(matches!(limit.check(b"a", SECOND), Verdict::Refused { .. }));
        assert!(matches!(limit.check(b"b", SECOND), Verdict::Allowed));
        let mut pending = limit.take_pending(10);
        pending.sort();
        assert_eq!(pending, [(b"a"[..].into(), 2), (b"b"[..].into(), 1)]);
        assert!(limit.take_pending(10).is_empty(), "taken once");
        // The cluster says key c is 5 intervals ahead: refused here too.
        limit.apply(b"c", 5 * limit.interval(), SECOND);
        assert!(matches!(limit.check(b"c", SECOND), Verdict::Refused { .. }));
        // Refused keys are noted too (count 0), to learn the cluster's view.
        assert_eq!(limit.take_pending(10), [(b"c"[..].into(), 0)]);
    }

    #[test]
    fn a_shared_limit_without_redis_acts_by_on_error() {
        let allow = shared(OnError::Allow, 1);
        assert!(allow.set_fallback(true));
        assert!(!allow.set_fallback(true), "a switch is news once");
        assert!((0..100).all(|_| allow.check(b"k", SECOND) == Verdict::Allowed));
        assert_eq!(allow.fallbacks(), 1);
        let deny = shared(OnError::Deny, 1);
        deny.set_fallback(true);
        assert!(matches!(deny.check(b"k", SECOND), Verdict::Refused { .. }));
        // Alone, at its share of four instances: 10/s becomes 2.5/s.
        let local = shared(OnError::Local, 4);
        local.set_fallback(true);
        let allowed = (0..2000u64)
            .filter(|step| local.check(b"k", SECOND + step * 1_000_000) == Verdict::Allowed)
            .count();
        assert!((5..=7).contains(&allowed), "{allowed} in 2 s");
        assert!(
            local.take_pending(10).is_empty(),
            "nothing noted while alone"
        );
    }

    #[test]
    fn keys_are_bounded_least_recently_used_first() {
        let limit = limiter(1, Duration::from_secs(60), 1, 1000);
        for key in 0..200_000u32 {
            limit.check(&key.to_be_bytes(), SECOND);
        }
        assert_eq!(limit.stats().keys, 1000);
        // The newest are held: refused; the oldest were dropped: allowed again.
        assert!(matches!(
            limit.check(&199_999u32.to_be_bytes(), SECOND),
            Verdict::Refused { .. }
        ));
        assert_eq!(limit.check(&0u32.to_be_bytes(), SECOND), Verdict::Allowed);
    }
}
