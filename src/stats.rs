//! Counters behind `/stats` and `/metrics`. Each server's live in its
//! `balancer::Server`, each pool's in its `Pool`, the rest in `Totals`; all
//! are plain integers bumped by the one loop thread, so no atomics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// Servers outside every pool (an address `route()` or a map returned)
/// counted at most; past it, new ones go uncounted.
pub const MAX_UNLISTED: usize = 1024;

/// What was asked of one server outside every pool.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnlistedStats {
    pub responses: StatusClasses,
    /// Requests rsp answered itself for it (502, 503, 504): failures.
    pub errors: u64,
}

/// Upper bounds of the duration histogram buckets, in microseconds.
pub const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Response counts by status class: 1xx to 5xx, then anything else
/// (no answer at all).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatusClasses(pub [u64; 6]);

pub const CLASS_NAMES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

impl StatusClasses {
    pub fn count(&mut self, status: u16) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.0[class] += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn add(&mut self, other: &StatusClasses) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// Durations in `BUCKETS_US` buckets (each count is its own bucket's, not
/// cumulative), their sum and count.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: [u64; BUCKETS_US.len()],
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    pub fn record(&mut self, duration: Duration) {
        let micros = duration.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(bucket) = BUCKETS_US.iter().position(|&bound| micros <= bound) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(micros);
    }

    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }
}

/// HAProxy's sliding average: roughly the mean of the last `WINDOW`
/// samples, in constant space.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SlidingAverage {
    sum: u64,
    samples: u64,
}

impl SlidingAverage {
    const WINDOW: u64 = 1024;

    pub fn add(&mut self, value: u64) {
        if self.samples < Self::WINDOW {
            self.samples += 1;
            self.sum += value;
        } else {
            self.sum = self.sum + value - self.sum.div_ceil(Self::WINDOW);
        }
    }

    pub fn mean(&self) -> Option<u64> {
        (self.samples > 0).then(|| self.sum / self.samples)
    }

    /// Pools another worker's recent samples with these.
    pub fn merge(&mut self, other: &SlidingAverage) {
        self.sum += other.sum;
        self.samples += other.samples;
    }
}

/// One server's traffic.
#[derive(Debug, Default, Clone)]
pub struct ServerStats {
    /// Times the balancer chose it.
    pub selected: u64,
    /// TCP connections opened to it (kept ones serve several requests).
    pub connections: u64,
    /// Requests it took part in, by the status the client got.
    pub responses: StatusClasses,
    /// Failed connects, broken or late responses.
    pub errors: u64,
    /// Requests moved from it to another server.
    pub retries: u64,
    /// Times the pool's `eject` took it out of rotation.
    pub ejections: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// From routing to the response head, in microseconds.
    pub response_time_us: SlidingAverage,
}

impl ServerStats {
    pub fn add(&mut self, other: &ServerStats) {
        self.selected += other.selected;
        self.connections += other.connections;
        self.responses.add(&other.responses);
        self.errors += other.errors;
        self.retries += other.retries;
        self.ejections += other.ejections;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.response_time_us.merge(&other.response_time_us);
    }
}

/// One pool's traffic, including requests no server took (503s).
#[derive(Debug, Default, Clone)]
pub struct PoolStats {
    pub responses: StatusClasses,
    pub duration: Histogram,
}

impl PoolStats {
    pub fn add(&mut self, other: &PoolStats) {
        self.responses.add(&other.responses);
        self.duration.add(&other.duration);
    }
}

/// Everything else the loop counts.
#[derive(Debug, Clone)]
pub struct Totals {
    pub started: Instant,
    pub started_wall: SystemTime,
    /// Client connections now open (the admin port's included).
    pub connections: u64,
    pub connections_total: u64,
    /// Requests counted on completion, by the status the client got.
    pub responses: StatusClasses,
    /// Answers rsp wrote itself (Lua replies and errors).
    pub local_responses: u64,
    /// Requests by the protocol the client spoke: `PROTOCOLS`' order.
    pub protocols: [u64; 3],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration: Histogram,
    /// Servers outside every pool, by address.
    pub unlisted: BTreeMap<SocketAddr, UnlistedStats>,
    /// Bytes held for clients (buffers, heads, the script's state), as of
    /// the last look (`memory.rs`).
    pub memory_held: u64,
    /// Exchanges cut because they stalled on their client while what they
    /// held was needed (memory, or a pool's slots).
    pub stalled_cut: u64,
    /// Exchanges refused because the worker was at its memory bound, or
    /// their connection at its own.
    pub refused_for_memory: u64,
    /// Lines about HTTP/2 streams rsp reset that were logged at debug
    /// level only, past a connection's bound at info.
    pub resets_unlogged: u64,
    /// The response cache's, when there is one (as of the last look).
    pub cache: Option<crate::cache::CacheTotals>,
}

/// The protocols requests are counted by, as access logs name them.
pub const PROTOCOLS: [&str; 3] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0"];

impl Totals {
    /// Counts a request that came as `protocol` (one of `PROTOCOLS`).
    pub fn count_protocol(&mut self, protocol: &str) {
        if let Some(index) = PROTOCOLS.iter().position(|known| *known == protocol) {
            self.protocols[index] += 1;
        }
    }

    /// Counts an answer for `server`, a server of no pool.
    pub fn count_unlisted(&mut self, server: SocketAddr, status: u16, local: bool) {
        if self.unlisted.len() >= MAX_UNLISTED && !self.unlisted.contains_key(&server) {
            return;
        }
        let stats = self.unlisted.entry(server).or_default();
        stats.responses.count(status);
        stats.errors += u64::from(local && matches!(status, 502..=504));
    }

    /// Adds another worker's counts (its start time is the same process's).
    pub fn add(&mut self, other: &Totals) {
        self.connections += other.connections;
        self.connections_total += other.connections_total;
        self.responses.add(&other.responses);
        self.local_responses += other.local_responses;
        for (mine, theirs) in self.protocols.iter_mut().zip(other.protocols) {
            *mine += theirs;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.duration.add(&other.duration);
        self.memory_held += other.memory_held;
        self.stalled_cut += other.stalled_cut;
        self.refused_for_memory += other.refused_for_memory;
        self.resets_unlogged += other.resets_unlogged;
        if let Some(theirs) = &other.cache {
            self.cache.get_or_insert_with(Default::default).add(theirs);
        }
        for (server, theirs) in &other.unlisted {
            if self.unlisted.len() < MAX_UNLISTED || self.unlisted.contains_key(server) {
                let mine = self.unlisted.entry(*server).or_default();
                mine.responses.add(&theirs.responses);
                mine.errors += theirs.errors;
            }
        }
    }
}

impl Default for Totals {
    fn default() -> Totals {
        Totals {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            connections: 0,
            connections_total: 0,
            responses: StatusClasses::default(),
            local_responses: 0,
            protocols: [0; 3],
            bytes_in: 0,
            bytes_out: 0,
            duration: Histogram::default(),
            unlisted: BTreeMap::new(),
            memory_held: 0,
            stalled_cut: 0,
            refused_for_memory: 0,
            resets_unlogged: 0,
            cache: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let mut classes = StatusClasses::default();
        for status in [101, 200, 204, 302, 404, 502, 503, 0, 999] {
            classes.count(status);
        }
        assert_eq!(classes.0, [1, 2, 1, 1, 2, 2]);
        assert_eq!(classes.total(), 9);
    }

    #[test]
    fn histogram_buckets_and_sum() {
        let mut histogram = Histogram::default();
        histogram.record(Duration::from_micros(10));
        histogram.record(Duration::from_micros(500));
        histogram.record(Duration::from_micros(501));
        histogram.record(Duration::from_secs(60));
        assert_eq!(histogram.buckets[0], 2);
        assert_eq!(histogram.buckets[1], 1);
        assert_eq!(histogram.buckets.iter().sum::<u64>(), 3);
        assert_eq!(histogram.count, 4);
        assert_eq!(histogram.sum_us, 10 + 500 + 501 + 60_000_000);
    }

    #[test]
    fn sliding_average_follows_recent_samples() {
        let mut average = SlidingAverage::default();
        assert_eq!(average.mean(), None);
        average.add(100);
        average.add(300);
        assert_eq!(average.mean(), Some(200));
        for _ in 0..20_000 {
            average.add(1000);
        }
        let mean = average.mean().unwrap();
        assert!((990..=1000).contains(&mean), "{mean}");
    }
}
