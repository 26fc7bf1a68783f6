//! The Redis that several rsp instances share state through: one
//! connection per process, owned by worker 0's event loop (the state it
//! will carry — limits, live maps — is the process's already, so one
//! connection serves every worker, and Redis sees one client per
//! instance). Non-blocking: the connect, the handshake (`AUTH`, `SELECT`)
//! and every command go through the loop, pipelined, their replies matched
//! in order (`Pipeline`); a slow or dead Redis fails the connection after
//! `timeout`, and rsp connects again with back-off, to the next server of
//! the list. Nothing waits for Redis but the work that needs it.

mod connection;
mod map_writes;
mod maps;
mod pipeline;
pub mod resp;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::Registry;

use std::sync::Arc;

use crate::config::RedisConfig;
use crate::state::{Limiter, LiveMap, Settled, Waiting};
use crate::token::TokenKind;

use connection::{Connection, Turn};
use resp::Reply;

/// The first wait before connecting again; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a connection with nothing else to say is checked (`PING`).
const PING_EVERY: Duration = Duration::from_secs(1);

/// What the connection's counters say, for `/metrics` (any worker reads
/// them; worker 0 writes).
#[derive(Default)]
pub struct Stats {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub failures: AtomicU64,
    pub errors: AtomicU64,
    pub commands: AtomicU64,
    pub refused: AtomicU64,
    pub pending: AtomicU64,
    /// The last round trip, in microseconds.
    pub round_trip_us: AtomicU64,
    /// The live maps' subscriber is subscribed.
    pub subscribed: AtomicBool,
    /// Changes announced on the maps' channel.
    pub map_messages: AtomicU64,
    /// Whole reads of a shared map.
    pub map_reloads: AtomicU64,
    /// Whole reads that found none of a map this instance holds keys of.
    pub map_missing: AtomicU64,
    /// Maps this instance stored back into a Redis that lost them.
    pub map_restores: AtomicU64,
    /// Reconnects that found another Redis than before (a restart).
    pub restarts: AtomicU64,
}

/// The process's Redis counters.
pub fn stats() -> &'static Stats {
    static STATS: std::sync::OnceLock<Stats> = std::sync::OnceLock::new();
    STATS.get_or_init(Stats::default)
}

/// Whether the config has a Redis (then the counters are shown).
pub fn configured() -> bool {
    CONFIGURED.load(Ordering::Relaxed)
}

/// A reload took `redis` out of the config: the counters say it is gone.
pub fn unconfigured() {
    CONFIGURED.store(false, Ordering::Relaxed);
    stats().connected.store(false, Ordering::Relaxed);
}

static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// What a reply is for.
pub enum Purpose {
    Auth,
    Select,
    /// `INFO server`: the `run_id`, to tell a Redis restarted.
    Info,
    Ping,
    /// `SCRIPT LOAD` of the shared limits' script: its SHA1.
    Load,
    /// A shared limit's sync: the cluster's arrival time of each key.
    Limit {
        limiter: Arc<Limiter>,
        keys: Vec<Box<[u8]>>,
    },
    /// The subscriber's `SUBSCRIBE` to the maps' channel.
    Subscribe,
    /// A message on it (a reply to no command).
    Message,
    /// A changed key of a shared map.
    MapGet {
        map: Arc<LiveMap>,
        key: String,
    },
    /// Part of a shared map's whole read, and what it found before.
    MapScan {
        map: Arc<LiveMap>,
        staged: Box<maps::Staged>,
    },
    /// A map stored back into a Redis that lost it.
    MapSeed {
        map: Arc<LiveMap>,
    },
    /// An admin change to a shared map, its request waiting.
    MapStore(Box<Waiting>),
}

impl Purpose {
    /// What it is, for the log.
    fn name(&self) -> &'static str {
        match self {
            Purpose::Auth => "AUTH",
            Purpose::Select => "SELECT",
            Purpose::Info => "INFO",
            Purpose::Ping => "PING",
            Purpose::Load => "SCRIPT LOAD",
            Purpose::Limit { .. } => "a limit's sync",
            Purpose::Subscribe => "SUBSCRIBE",
            Purpose::Message => "a message",
            Purpose::MapGet { .. } => "HGET",
            Purpose::MapScan { .. } => "HSCAN",
            Purpose::MapSeed { .. } | Purpose::MapStore(_) => "a map's change",
        }
    }
}

/// The shared limits' script: for each key, the requests this instance
/// let through (`ARGV[i + 2]`) move the key's arrival time (GCRA, in
/// Redis's own clock, microseconds) by that many intervals (`ARGV[1]`);
/// the reply is how far ahead of now each key's arrival time is, every
/// instance's requests counted. A key expires once its arrival time is
/// past by more than the bucket's depth (`ARGV[2]`), as an idle bucket is
/// full again anyway.
const LIMIT_SCRIPT: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local depth = tonumber(ARGV[2])
local ahead = {}
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[i + 2])
  local arrival = tonumber(redis.call('GET', key) or '0') or 0
  if arrival < now then arrival = now end
  if count > 0 then
    arrival = arrival + count * interval
    redis.call('SET', key, string.format('%d', arrival), 'PX', math.floor((arrival - now + depth) / 1000) + 1000)
  end
  ahead[i] = arrival - now
end
return ahead
"#;

/// Keys one sync command carries at most.
const KEYS_PER_SYNC: usize = 512;

/// A shared limit and when it last synced.
struct Synced {
    limiter: Arc<Limiter>,
    last: Instant,
}

pub struct Client {
    config: RedisConfig,
    connection: Connection,
    /// The shared limits this connection syncs.
    limits: Vec<Synced>,
    /// The limits' script, once Redis has it (`SCRIPT LOAD`).
    script: Option<String>,
    loading: bool,
    /// The shared live maps and their subscriber, if the config has any.
    maps: Option<maps::Maps>,
    /// Admin changes to maps no longer followed.
    unfollowed: Vec<Settled>,
}

impl Client {
    pub fn new(config: RedisConfig, now: Instant) -> Client {
        CONFIGURED.store(true, Ordering::Relaxed);
        Client {
            config,
            connection: Connection::new(TokenKind::Redis, now),
            limits: Vec::new(),
            script: None,
            loading: false,
            maps: None,
            unfollowed: Vec::new(),
        }
    }

    /// The shared maps to follow (the config's, after each reload): each
    /// is read whole again; none, and the subscriber closes.
    pub fn set_maps(&mut self, maps: Vec<Arc<LiveMap>>, now: Instant) {
        match (&mut self.maps, maps.is_empty()) {
            (_, true) => {
                self.maps = None;
                stats().subscribed.store(false, Ordering::Relaxed);
            }
            (Some(followed), false) => followed.set_maps(maps),
            (None, false) => self.maps = Some(maps::Maps::new(maps, now)),
        }
    }

    /// Admin changes to shared maps: each goes to Redis, and is settled
    /// (`take_settled`) once Redis replied, or at once when it cannot.
    pub fn store(&mut self, stores: Vec<Waiting>, now: Instant) {
        let ready = self.is_ready();
        for waiting in stores {
            match &mut self.maps {
                Some(maps) => maps.store(
                    &self.config,
                    &mut self.connection.pipeline,
                    waiting,
                    ready,
                    now,
                ),
                None => self.unfollowed.push(unfollowed(waiting)),
            }
        }
    }

    /// The admin changes settled since the last look.
    pub fn take_settled(&mut self) -> Vec<Settled> {
        let mut settled = std::mem::take(&mut self.unfollowed);
        if let Some(maps) = &mut self.maps {
            settled.extend(maps.take_settled());
        }
        settled
    }

    /// The client is replaced or gone (a reload): the admin changes it
    /// carries are settled, not made.
    pub fn abandon(mut self) -> Vec<Settled> {
        let lost = self.connection.pipeline.reset();
        if let Some(maps) = &mut self.maps {
            maps.lost(lost);
        }
        self.take_settled()
    }

    /// The shared limits to sync (the config's, after each reload).
    pub fn set_limits(&mut self, limiters: Vec<Arc<Limiter>>, now: Instant) {
        self.limits = limiters
            .into_iter()
            .map(|limiter| Synced { limiter, last: now })
            .collect();
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The connection is up and its handshake done.
    pub fn is_ready(&self) -> bool {
        self.connection.is_ready()
    }

    /// The socket's event (or a timer's turn): connects, writes, reads,
    /// and fails the connection on an error or a timeout. Returns when it
    /// wants its next turn at the latest.
    pub fn drive(&mut self, registry: &Registry, now: Instant) -> Instant {
        // The subscriber first: a change announced is noted before the
        // replies of a whole read under way are taken in.
        let mut next = None;
        if let Some(maps) = &mut self.maps {
            let commands = self
                .connection
                .is_ready()
                .then_some(&mut self.connection.pipeline);
            next = Some(maps.drive_subscriber(&self.config, registry, commands, now));
        }
        let turn = self.connection.step(&self.config, registry, now);
        let mut failed = self.on_turn(turn, now);
        if failed.is_none() {
            if let Some(maps) = &mut self.maps {
                let ready = self.connection.is_ready();
                maps.queue(&self.config, &mut self.connection.pipeline, ready, now);
            }
            if self.sync(now) || !self.connection.pipeline.unsent().is_empty() {
                let turn = self.connection.exchange(&self.config, now);
                failed = self.on_turn(turn, now);
            }
        }
        if let Some(why) = failed {
            let lost = self.connection.fail(registry, &why, now);
            if let Some(maps) = &mut self.maps {
                maps.lost(lost);
            }
            self.script = None;
            self.loading = false;
        }
        if let Some(maps) = &mut self.maps {
            maps.apply();
        }
        self.follow_health();
        stats()
            .pending
            .store(self.connection.pipeline.pending() as u64, Ordering::Relaxed);
        let own = self.connection.next_turn(&self.config, now);
        let next = next.map_or(own, |next: Instant| next.min(own));
        if !self.connection.is_ready() {
            return next;
        }
        self.limits
            .iter()
            .filter_map(|synced| Some(synced.last + synced.limiter.config.shared?.sync))
            .fold(next, Instant::min)
    }

    /// Queues what is due: the script's load, each shared limit's sync.
    /// Returns whether anything was queued.
    fn sync(&mut self, now: Instant) -> bool {
        if !self.is_ready() || self.limits.is_empty() {
            return false;
        }
        let Some(sha) = self.script.clone() else {
            if !self.loading {
                self.loading = true;
                let load: &[&[u8]] = &[b"SCRIPT", b"LOAD", LIMIT_SCRIPT.as_bytes()];
                return self
                    .connection
                    .pipeline
                    .push(Purpose::Load, load, now)
                    .is_ok();
            }
            return false;
        };
        let mut queued = false;
        let prefix = self.config.prefix.clone();
        for synced in &mut self.limits {
            let Some(shared) = synced.limiter.config.shared else {
                continue;
            };
            if now < synced.last + shared.sync {
                continue;
            }
            synced.last = now;
            let limiter = &synced.limiter;
            let interval = (limiter.interval() / 1000).max(1).to_string();
            let depth = (limiter.tolerance() / 1000 + limiter.interval() / 1000).to_string();
            loop {
                let pending = limiter.take_pending(KEYS_PER_SYNC);
                if pending.is_empty() {
                    break;
                }
                let names: Vec<Vec<u8>> = pending
                    .iter()
                    .map(|(key, _)| {
                        [
                            prefix.as_bytes(),
                            b"limit:",
                            limiter.config.name.as_bytes(),
                            b":",
                            key,
                        ]
                        .concat()
                    })
                    .collect();
                let counts: Vec<String> =
                    pending.iter().map(|(_, count)| count.to_string()).collect();
                let count = pending.len().to_string();
                let mut args: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), count.as_bytes()];
                args.extend(names.iter().map(Vec::as_slice));
                args.push(interval.as_bytes());
                args.push(depth.as_bytes());
                args.extend(counts.iter().map(String::as_bytes));
                let keys = pending.into_iter().map(|(key, _)| key).collect();
                let purpose = Purpose::Limit {
                    limiter: Arc::clone(limiter),
                    keys,
                };
                if self.connection.pipeline.push(purpose, &args, now).is_err() {
                    stats().refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                queued = true;
            }
        }
        queued
    }

    /// The replies for the client's own commands: the script's load, the
    /// limits' syncs (an error reply fails the connection only where
    /// nothing else can be done).
    /// Every reply is taken in, an error among them or not (an admin
    /// change's is answered all the same); returns why the connection
    /// fails, if it does.
    fn on_turn(&mut self, turn: Turn, now: Instant) -> Option<String> {
        let mut failed = turn.failed;
        for (purpose, reply) in turn.replies {
            if let Err(why) = self.on_reply(purpose, reply, now) {
                failed = failed.or(Some(why));
            }
        }
        failed
    }

    fn on_reply(&mut self, purpose: Purpose, reply: Reply, now: Instant) -> Result<(), String> {
        match (purpose, reply) {
            (Purpose::Load, Reply::Error(error)) => Err(format!("SCRIPT LOAD refused: {error}")),
            (Purpose::Load, Reply::BulkString(sha) | Reply::SimpleString(sha)) => {
                self.loading = false;
                self.script = Some(String::from_utf8_lossy(&sha).into_owned());
                Ok(())
            }
            (Purpose::Load, _) => Err("SCRIPT LOAD answered no SHA1".into()),
            (Purpose::Limit { limiter, .. }, Reply::Error(error)) => {
                if error.starts_with("NOSCRIPT") {
                    // Redis restarted or was flushed: load it again.
                    self.script = None;
                    self.loading = false;
                } else {
                    log::warn!("redis: limit {}: {error}", limiter.config.name);
                }
                Ok(())
            }
            (Purpose::Limit { limiter, keys }, Reply::Array(ahead)) => {
                let local = crate::state::now_nanos();
                limiter.mark_synced(local);
                for (key, ahead) in keys.iter().zip(ahead) {
                    if let Reply::Integer(micros) = ahead {
                        limiter.apply(key, (micros.max(0) as u64).saturating_mul(1000), local);
                    }
                }
                Ok(())
            }
            (Purpose::Limit { .. }, _) => Err("a limit's sync answered no array".into()),
            (
                purpose @ (Purpose::MapGet { .. }
                | Purpose::MapScan { .. }
                | Purpose::MapSeed { .. }
                | Purpose::MapStore(_)),
                reply,
            ) => {
                match &mut self.maps {
                    Some(maps) => maps.on_reply(
                        &self.config,
                        purpose,
                        reply,
                        &mut self.connection.pipeline,
                        now,
                    ),
                    None => {
                        if let Purpose::MapStore(waiting) = purpose {
                            self.unfollowed.push(unfollowed(*waiting));
                        }
                    }
                }
                Ok(())
            }
            // The handshake's are the connection's; the subscriber's never
            // come here.
            _ => Ok(()),
        }
    }

    /// The shared limits act by their `on_error` while Redis cannot sync
    /// them, and go back to syncing once it can; each switch is logged.
    fn follow_health(&mut self) {
        let healthy = self.is_ready() && self.script.is_some();
        for synced in &self.limits {
            let limiter = &synced.limiter;
            let Some(shared) = limiter.config.shared else {
                continue;
            };
            if limiter.set_fallback(!healthy) {
                let name = &limiter.config.name;
                if healthy {
                    log::info!("limit {name}: shared through Redis");
                } else if stats().connects.load(Ordering::Relaxed) == 0 {
                    log::info!(
                        "limit {name}: acting by on_error = {:?} until Redis is reached",
                        shared.on_error
                    );
                } else {
                    log::warn!(
                        "limit {name}: Redis cannot be reached; acting by on_error = {:?} until it can",
                        shared.on_error
                    );
                }
            }
        }
    }
}

/// A change to a map this client no longer follows (a reload made it
/// unshared): not made.
fn unfollowed(waiting: Waiting) -> Settled {
    (waiting, Err("is no longer followed (reloaded)".into()))
}
