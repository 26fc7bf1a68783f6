//! Pools of servers and how a server is picked for a request.
//!
//! The interface follows nginx's upstream peers: `pick` a server, later
//! `release` it with the outcome. The pool keeps each server's weight,
//! active exchanges and outage record (outage.rs: rests after failed
//! connects, ejections after runs of bad answers), so every algorithm sees
//! the same state.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{Algorithm, EjectConfig, PoolConfig, RetryOn};
use crate::health::HealthConfig;
use crate::proxy_protocol;
use crate::stats::{PoolStats, ServerStats};
use crate::timer;

mod outage;

pub use outage::{Cause, Outage, Record};

/// What `pick` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Server(usize),
    /// Servers are up but all at `max_conns` (or others wait first): queue.
    Full,
    /// No server can take the request.
    NoneUp,
}

/// One exchange's hold on a pool's server, from `pick` to `release`: the
/// server counts it as active until then. nginx's get-peer / free-peer
/// pair, made impossible to forget: a lease dropped unreleased is a bug
/// (a debug assertion says so), and `release` takes it by value.
#[must_use = "a lease ends only through Lease::release (or Lease::forget after a reload)"]
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    pool: usize,
    server: usize,
    /// When the server was picked: an outcome of an exchange begun before
    /// the server's latest outage says nothing new (outage.rs).
    picked_at: Instant,
}

impl Lease {
    /// The lease of a server `Pool::pick` chose in pool number `pool`, now.
    pub fn new(pool: usize, server: usize) -> Lease {
        Lease {
            pool,
            server,
            picked_at: timer::now(),
        }
    }

    pub fn pool(&self) -> usize {
        self.pool
    }

    pub fn server(&self) -> usize {
        self.server
    }

    /// Gives the server back with how the exchange went; returns the
    /// session waiting in that pool's queue that the freed slot lets go.
    pub fn release(self, pools: &mut [Pool], outcome: Outcome) -> Option<usize> {
        let lease = std::mem::ManuallyDrop::new(self);
        let pool = pools.get_mut(lease.pool)?;
        pool.release(lease.server, outcome, lease.picked_at);
        pool.next_waiting()
    }

    /// A reload renumbered the pools: the server is now `server` of `pool`.
    pub fn moved(&mut self, pool: usize, server: usize) {
        self.pool = pool;
        self.server = server;
    }

    /// Ends a lease whose server a reload removed: nothing is left to
    /// give it back to.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            debug_assert!(
                false,
                "the lease of server {} of pool {} was dropped without release",
                self.server, self.pool
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The server could not be reached: rest it and try another.
    ConnectFailed,
    /// The server was reached but its answer was broken or late: count an
    /// error, without resting it (active checks judge its health).
    Failed,
    /// The server answered, with a 5xx status.
    ServerError,
}

/// What the stats page says of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Up,
    /// Active health checks failed.
    DownByCheck,
    /// Resting after a failed connect.
    Resting,
    /// Ejected by the pool's `eject` after a run of 5xx answers or errors.
    Ejected,
    /// Taken out of rotation by the admin API; requests in flight finish.
    Draining,
}

impl ServerState {
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::DownByCheck | ServerState::Resting => "down",
            ServerState::Ejected => "ejected",
            ServerState::Draining => "draining",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// Smooth weighted round robin's running weight (nginx's algorithm).
    current_weight: i64,
    pub active: u32,
    /// Its outages and the streaks that lead to them.
    pub record: Record,
    /// Active checks said down (`fall` failures in a row), until `rise`
    /// successes in a row.
    checked_down: bool,
    streak: u32,
    /// The server's own hash for rendezvous hashing, from its address.
    hash_seed: u64,
    /// Out of rotation by the admin API until enabled again.
    pub drained: bool,
    pub stats: ServerStats,
}

impl Server {
    fn is_up(&self, now: Instant) -> bool {
        !self.checked_down && !self.record.is_out(now)
    }

    pub fn state(&self, now: Instant) -> ServerState {
        if self.drained {
            ServerState::Draining
        } else if self.checked_down {
            ServerState::DownByCheck
        } else if self.record.is_ejected(now) {
            ServerState::Ejected
        } else if self.record.is_out(now) {
            ServerState::Resting
        } else {
            ServerState::Up
        }
    }
}

#[derive(Clone)]
pub struct Pool {
    pub name: String,
    servers: Vec<Server>,
    algorithm: Algorithm,
    random: u64,
    max_conns: Option<u32>,
    pub queue_timeout: Duration,
    pub health: Option<HealthConfig>,
    pub send_proxy: Option<proxy_protocol::Version>,
    /// Re-sends of one request after a `retry_on` answer or a "retry".
    pub retries: u32,
    pub retry_on: RetryOn,
    /// Passive outlier ejection; `None`: servers are never ejected (failed
    /// connects still rest them).
    pub eject: Option<EjectConfig>,
    /// Its responses may be cached.
    pub cache: bool,
    /// Sessions waiting for a server below `max_conns`, oldest first.
    waiting: VecDeque<usize>,
    /// Requests queued in other workers, in a merged view for the stats.
    queued_elsewhere: usize,
    /// `pick`'s list of eligible servers, kept so a pick allocates nothing.
    candidates: Vec<usize>,
    pub stats: PoolStats,
}

impl Pool {
    pub fn new(config: &PoolConfig) -> Pool {
        Pool {
            name: config.name.clone(),
            servers: config
                .servers
                .iter()
                .map(|server| Server {
                    address: server.address,
                    weight: server.weight,
                    backup: server.backup,
                    current_weight: 0,
                    active: 0,
                    record: Record::default(),
                    checked_down: false,
                    streak: 0,
                    hash_seed: mix(fnv1a(
                        server.address.to_string().bytes(),
                        0xcbf2_9ce4_8422_2325,
                    )),
                    drained: false,
                    stats: ServerStats::default(),
                })
                .collect(),
            algorithm: config.algorithm,
            random: 0x9E37_79B9_7F4A_7C15,
            max_conns: config.max_conns,
            queue_timeout: config.queue_timeout,
            health: config.health.clone().map(|health| HealthConfig {
                send_proxy: config.send_proxy,
                ..health
            }),
            send_proxy: config.send_proxy,
            retries: config.retries,
            retry_on: config.retry_on.clone(),
            eject: config.eject,
            cache: config.cache,
            waiting: VecDeque::new(),
            queued_elsewhere: 0,
            candidates: Vec::new(),
            stats: PoolStats::default(),
        }
    }

    /// Adds another worker's copy of this pool to this one, for the stats:
    /// counters, requests in flight, queued requests, and the worst
    /// outage any worker sees (each worker rests and ejects on its own).
    pub fn absorb(&mut self, other: &Pool) {
        let now = timer::now();
        self.stats.add(&other.stats);
        self.queued_elsewhere += other.queued();
        for server in &mut self.servers {
            if let Some(theirs) = other
                .servers
                .iter()
                .find(|theirs| theirs.address == server.address)
            {
                server.stats.add(&theirs.stats);
                server.active += theirs.active;
                server.record.absorb(&theirs.record, now);
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn max_conns(&self) -> Option<u32> {
        self.max_conns
    }

    /// Requests waiting for a server below `max_conns`.
    pub fn queued(&self) -> usize {
        self.waiting.len() + self.queued_elsewhere
    }

    pub fn server_mut(&mut self, server: usize) -> Option<&mut Server> {
        self.servers.get_mut(server)
    }

    /// The admin API's drain (`true`) or enable (`false`) of the server at
    /// `address`; `None` when the pool has no such server.
    pub fn set_drained(&mut self, address: SocketAddr, drained: bool) -> Option<&Server> {
        let server = self
            .servers
            .iter_mut()
            .find(|server| server.address == address)?;
        server.drained = drained;
        Some(server)
    }

    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    pub fn address(&self, server: usize) -> SocketAddr {
        self.servers[server].address
    }

    /// The server may be picked now (up, and not drained), load aside.
    pub fn may_serve(&self, server: usize) -> bool {
        self.servers
            .get(server)
            .is_some_and(|server| !server.drained && server.is_up(timer::now()))
    }

    /// Picks a server for one exchange, skipping `tried` ones, servers
    /// in an outage (resting or ejected) and servers at `max_conns`; backups serve
    /// only when no normal server can. `key` steers the `hash` algorithm.
    /// A request that was not `waiting` queues behind those that are.
    pub fn pick(&mut self, key: Option<&[u8]>, tried: &[usize], waiting: bool) -> Pick {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        let pick = self.pick_among(&mut candidates, key, tried, waiting);
        self.candidates = candidates;
        pick
    }

    fn pick_among(
        &mut self,
        candidates: &mut Vec<usize>,
        key: Option<&[u8]>,
        tried: &[usize],
        waiting: bool,
    ) -> Pick {
        let now = timer::now();
        self.notice_returns(now);
        let max_conns = self.max_conns.unwrap_or(u32::MAX);
        let mut any_up = false;
        for backup in [false, true] {
            for (index, server) in self.servers.iter().enumerate() {
                if server.backup == backup
                    && !server.drained
                    && server.is_up(now)
                    && !tried.contains(&index)
                {
                    any_up = true;
                    if server.active < max_conns {
                        candidates.push(index);
                    }
                }
            }
            if any_up {
                break;
            }
        }
        if !any_up {
            return Pick::NoneUp;
        }
        if candidates.is_empty() || (!waiting && !self.waiting.is_empty()) {
            return Pick::Full;
        }
        let chosen = match self.algorithm {
            Algorithm::RoundRobin => self.smooth_weighted(candidates),
            Algorithm::LeastConn => self.least_connections(candidates),
            Algorithm::Random => self.two_random_choices(candidates),
            Algorithm::Hash => self.rendezvous(candidates, key.unwrap_or_default()),
        };
        self.servers[chosen].active += 1;
        self.servers[chosen].stats.selected += 1;
        Pick::Server(chosen)
    }

    /// Queues a session; one that had already waited keeps its turn.
    pub fn enqueue(&mut self, session: usize, waited: bool) {
        if waited {
            self.waiting.push_front(session);
        } else {
            self.waiting.push_back(session);
        }
    }

    /// Takes a session out of the queue (it left or timed out).
    pub fn dequeue(&mut self, session: usize) {
        self.waiting.retain(|&waiting| waiting != session);
    }

    /// The session to wake when a slot frees, if any waits.
    pub fn next_waiting(&mut self) -> Option<usize> {
        self.waiting.pop_front()
    }

    /// Reports how an exchange with `server`, picked at `picked_at`,
    /// ended. Its outcome counts toward the server's streaks unless it is
    /// old news (outage.rs); a failed connect rests the server, and a
    /// streak at the pool's `eject` threshold ejects it, unless that
    /// would put more than `max_percent` of the pool's servers out.
    /// Returns the outage that began, which it has logged.
    pub fn release(
        &mut self,
        server: usize,
        outcome: Outcome,
        picked_at: Instant,
    ) -> Option<Outage> {
        let now = timer::now();
        self.notice_returns(now);
        let index = server;
        let server = self.servers.get_mut(index)?;
        server.active = server.active.saturating_sub(1);
        if matches!(outcome, Outcome::Failed | Outcome::ConnectFailed) {
            server.stats.errors += 1;
        }
        if !server.record.count(outcome, picked_at, now) {
            return None;
        }
        let due = self
            .eject
            .as_ref()
            .and_then(|eject| self.servers[index].record.ejection_due(eject));
        // Only an ejection that is due needs the pool's count of ejected
        // servers: a release is on every request's path.
        let ejected = match due {
            Some(_) => self
                .servers
                .iter()
                .filter(|server| server.record.is_ejected(now))
                .count(),
            None => 0,
        };
        let total = self.servers.len();
        let server = &mut self.servers[index];
        if let Some(eject) = &self.eject
            && let Some(cause) = due
        {
            if ejection_allowed(ejected, total, eject.max_percent) {
                let outage = server.record.eject(cause, now, eject);
                server.stats.ejections += 1;
                log::warn!(
                    "pool {}: server {} ejected for {} after {}",
                    self.name,
                    server.address,
                    outage::length_text(outage.length()),
                    cause.description()
                );
                return Some(outage);
            }
            if eject.just_reached(cause) {
                log::warn!(
                    "pool {}: server {} not ejected after {}: {ejected} of {total} servers are \
                     already out, max_percent is {}",
                    self.name,
                    server.address,
                    cause.description(),
                    eject.max_percent
                );
            }
        }
        if outcome == Outcome::ConnectFailed {
            let outage = server.record.rest(now);
            log::warn!(
                "pool {}: server {} rested for {} after {}{}",
                self.name,
                server.address,
                outage::length_text(outage.length()),
                Cause::FailedConnect.description(),
                in_a_row(outage.step)
            );
            return Some(outage);
        }
        None
    }

    /// Logs, once each, the servers whose outage is over at `now`: noticed
    /// at the next pick or release, so no timer is needed.
    fn notice_returns(&mut self, now: Instant) {
        for server in &mut self.servers {
            if let Some(outage) = server.record.come_back(now) {
                let how = if outage.cause.is_ejection() {
                    "ejected"
                } else {
                    "resting"
                };
                log::info!(
                    "pool {}: server {} is back after {} {how}",
                    self.name,
                    server.address,
                    outage::length_text(outage.length())
                );
            }
        }
    }

    /// Takes over the state of the servers this pool shares (by address)
    /// with the pool it replaces in a reload, and that pool's queue.
    pub fn inherit(&mut self, old: &Pool) {
        for server in &mut self.servers {
            if let Some(before) = old
                .servers
                .iter()
                .find(|before| before.address == server.address)
            {
                server.current_weight = before.current_weight;
                server.active = before.active;
                server.record = before.record.clone();
                server.checked_down = before.checked_down;
                server.streak = before.streak;
                // A drained server stays out until the admin API enables it.
                server.drained = before.drained;
                server.stats = before.stats.clone();
            }
        }
        self.waiting = old.waiting.clone();
        self.stats = old.stats.clone();
    }

    /// Counts an active check's result; `rise` successes in a row bring a
    /// server up, `fall` failures in a row take it down.
    pub fn record_check(&mut self, server: usize, healthy: bool, why: &str) {
        let Some(config) = &self.health else {
            return;
        };
        let (rise, fall) = (config.rise, config.fall);
        let name = &self.name;
        let Some(server) = self.servers.get_mut(server) else {
            return;
        };
        // The streak counts results that disagree with the current state.
        if healthy == server.checked_down {
            server.streak += 1;
        } else {
            server.streak = 0;
        }
        if server.checked_down && server.streak >= rise {
            server.checked_down = false;
            server.streak = 0;
            server.record.checks_passed(timer::now());
            log::info!(
                "pool {name}: server {} is up (health check passed {rise} times)",
                server.address
            );
        } else if !server.checked_down && server.streak >= fall {
            server.checked_down = true;
            server.streak = 0;
            log::warn!(
                "pool {name}: server {} marked down by health check ({fall} failures, last: {why})",
                server.address
            );
        }
    }

    /// nginx's smooth weighted round robin: even interleaving, exact shares.
    fn smooth_weighted(&mut self, candidates: &[usize]) -> usize {
        let mut total = 0i64;
        let mut best = candidates[0];
        for &index in candidates {
            let server = &mut self.servers[index];
            server.current_weight += i64::from(server.weight);
            total += i64::from(server.weight);
            if server.current_weight > self.servers[best].current_weight {
                best = index;
            }
        }
        self.servers[best].current_weight -= total;
        best
    }

    /// Fewest active exchanges per unit of weight; ties go round robin.
    /// `candidates` is narrowed to the tied servers.
    fn least_connections(&mut self, candidates: &mut Vec<usize>) -> usize {
        let load = |server: &Server| (u64::from(server.active) << 16) / u64::from(server.weight);
        let least = candidates
            .iter()
            .map(|&index| load(&self.servers[index]))
            .min()
            .unwrap_or(0);
        candidates.retain(|&index| load(&self.servers[index]) == least);
        self.smooth_weighted(candidates)
    }

    /// Power of two choices: two servers drawn by weight, the less loaded wins.
    fn two_random_choices(&mut self, candidates: &[usize]) -> usize {
        let first = self.weighted_draw(candidates);
        let second = self.weighted_draw(candidates);
        let (a, b) = (&self.servers[first], &self.servers[second]);
        // active/weight compared without division.
        if u64::from(b.active) * u64::from(a.weight) < u64::from(a.active) * u64::from(b.weight) {
            second
        } else {
            first
        }
    }

    fn weighted_draw(&mut self, candidates: &[usize]) -> usize {
        let total: u64 = candidates
            .iter()
            .map(|&index| u64::from(self.servers[index].weight))
            .sum();
        let mut ticket = self.next_random() % total.max(1);
        for &index in candidates {
            let weight = u64::from(self.servers[index].weight);
            if ticket < weight {
                return index;
            }
            ticket -= weight;
        }
        candidates[0]
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: quality enough for spreading load, no dependency.
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Weighted rendezvous hashing: each key goes to the server with the best
    /// score, so removing one of N servers moves only that server's keys.
    fn rendezvous(&self, candidates: &[usize], key: &[u8]) -> usize {
        let key_hash = fnv1a(
            key.iter().map(u8::to_ascii_lowercase),
            0xcbf2_9ce4_8422_2325,
        );
        let score = |index: usize| {
            let server = &self.servers[index];
            let hash = mix(key_hash ^ server.hash_seed);
            // Map to (0, 1), then -w / ln(u): larger is better.
            let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            -f64::from(server.weight) / unit.ln()
        };
        candidates
            .iter()
            .map(|&index| (score(index), index))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(candidates[0], |(_, index)| index)
    }
}

/// Whether one more of a pool's `total` servers may be ejected while
/// `ejected` are: never more than `max_percent` of them at once, rounding
/// down, so with 2 servers and 50 one may be, with 3 servers and 50 one,
/// and a pool of one server is never left empty by an ejection. (Envoy
/// ejects while fewer than `max_ejection_percent` are out, which lets 2 of
/// 3 go at 50 and always lets one go.)
fn ejection_allowed(ejected: usize, total: usize, max_percent: u32) -> bool {
    (ejected + 1) * 100 <= total * max_percent as usize
}

/// ", the 3rd in a row" for the log when a rest is not the first in a row.
fn in_a_row(step: u32) -> String {
    if step <= 1 {
        return String::new();
    }
    let suffix = match (step % 10, step % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!(", the {step}{suffix} in a row")
}

fn fnv1a(bytes: impl Iterator<Item = u8>, seed: u64) -> u64 {
    bytes.fold(seed, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads FNV's weak low bits.
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests;
