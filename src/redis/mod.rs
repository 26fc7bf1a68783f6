//! The Redis that several rsp instances share state through: one
//! connection per process, owned by worker 0's event loop (the state it
//! will carry — limits, live maps — is the process's already, so one
//! connection serves every worker, and Redis sees one client per
//! instance). Non-blocking: the connect, the handshake (`AUTH`, `SELECT`)
//! and every command go through the loop, pipelined, their replies matched
//! in order (`Pipeline`); a slow or dead Redis fails the connection after
//! `timeout`, and rsp connects again with back-off, to the next server of
//! the list. Nothing waits for Redis but the work that needs it.

mod pipeline;
pub mod resp;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry};

use std::sync::Arc;

use crate::config::RedisConfig;
use crate::state::Limiter;
use crate::token::TokenKind;

pub use pipeline::{Full, MAX_PENDING, Pipeline};
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
    Ping,
    /// `SCRIPT LOAD` of the shared limits' script: its SHA1.
    Load,
    /// A shared limit's sync: the cluster's arrival time of each key.
    Limit {
        limiter: Arc<Limiter>,
        keys: Vec<Box<[u8]>>,
    },
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

enum State {
    /// Not connected; the next try is at `retry_at`.
    Down { retry_at: Instant },
    Connecting {
        stream: TcpStream,
        server: SocketAddr,
        since: Instant,
    },
    /// Connected; `ready` once the handshake's replies came.
    Up {
        stream: TcpStream,
        server: SocketAddr,
        ready: bool,
    },
}

pub struct Client {
    config: RedisConfig,
    state: State,
    pipeline: Pipeline<Purpose>,
    backoff: Duration,
    /// The server tried next (an index into `config.servers`).
    next: usize,
    last_ping: Instant,
    /// The outage being lived through was logged (once, at warn).
    outage_logged: bool,
    /// The shared limits this connection syncs.
    limits: Vec<Synced>,
    /// The limits' script, once Redis has it (`SCRIPT LOAD`).
    script: Option<String>,
    loading: bool,
}

impl Client {
    pub fn new(config: RedisConfig, now: Instant) -> Client {
        CONFIGURED.store(true, Ordering::Relaxed);
        Client {
            config,
            state: State::Down { retry_at: now },
            pipeline: Pipeline::default(),
            backoff: FIRST_BACKOFF,
            next: 0,
            last_ping: now,
            outage_logged: false,
            limits: Vec::new(),
            script: None,
            loading: false,
        }
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
        matches!(self.state, State::Up { ready: true, .. })
    }

    /// Queues a command (sent on the next turn); refused when the
    /// connection is not ready or the queue is full.
    pub fn command(&mut self, purpose: Purpose, args: &[&[u8]], now: Instant) -> Result<(), Full> {
        if !self.is_ready() {
            stats().refused.fetch_add(1, Ordering::Relaxed);
            return Err(Full);
        }
        let queued = self.pipeline.push(purpose, args, now);
        if queued.is_err() {
            stats().refused.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// The socket's event (or a timer's turn): connects, writes, reads,
    /// and fails the connection on an error or a timeout. Returns when it
    /// wants its next turn at the latest.
    pub fn drive(&mut self, registry: &Registry, now: Instant) -> Instant {
        let mut result = self.step(registry, now);
        if result.is_ok() && self.sync(now) {
            result = self.exchange(now);
        }
        if let Err(why) = result {
            self.fail(registry, &why, now);
        }
        self.follow_health();
        stats()
            .pending
            .store(self.pipeline.pending() as u64, Ordering::Relaxed);
        match &self.state {
            State::Down { retry_at } => *retry_at,
            State::Connecting { since, .. } => *since + self.config.timeout,
            State::Up { .. } => {
                let sync = self
                    .limits
                    .iter()
                    .map(|synced| {
                        synced.last
                            + synced
                                .limiter
                                .config
                                .shared
                                .map_or(PING_EVERY, |shared| shared.sync)
                    })
                    .min();
                let next = (self.last_ping + PING_EVERY).min(now + self.config.timeout);
                sync.map_or(next, |sync| next.min(sync))
            }
        }
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
                return self.pipeline.push(Purpose::Load, load, now).is_ok();
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
                if self.pipeline.push(purpose, &args, now).is_err() {
                    stats().refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                queued = true;
            }
        }
        queued
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

    fn step(&mut self, registry: &Registry, now: Instant) -> Result<(), String> {
        if let State::Down { retry_at } = self.state {
            if now < retry_at {
                return Ok(());
            }
            self.connect(registry, now)?;
        }
        if let State::Connecting {
            stream,
            server,
            since,
        } = &mut self.state
        {
            match stream.peer_addr() {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::NotConnected => {
                    if let Ok(Some(error)) | Err(error) = stream.take_error() {
                        return Err(format!("connect: {error}"));
                    }
                    if now.saturating_duration_since(*since) >= self.config.timeout {
                        return Err(format!("connect timed out after {:?}", self.config.timeout));
                    }
                    return Ok(());
                }
                Err(error) => return Err(format!("connect: {error}")),
            }
            let server = *server;
            let State::Connecting { stream, .. } =
                std::mem::replace(&mut self.state, State::Down { retry_at: now })
            else {
                return Ok(());
            };
            self.state = State::Up {
                stream,
                server,
                ready: false,
            };
            self.handshake(now);
        }
        self.exchange(now)
    }

    fn connect(&mut self, registry: &Registry, now: Instant) -> Result<(), String> {
        let server = self.config.servers[self.next % self.config.servers.len()];
        let mut stream =
            TcpStream::connect(server).map_err(|error| format!("{server}: {error}"))?;
        registry
            .register(
                &mut stream,
                TokenKind::Redis.token(),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|error| format!("{server}: {error}"))?;
        self.state = State::Connecting {
            stream,
            server,
            since: now,
        };
        Ok(())
    }

    /// `AUTH` and `SELECT` first, then a `PING` whose reply says all is ready.
    fn handshake(&mut self, now: Instant) {
        let pipeline = &mut self.pipeline;
        if let Some(password) = &self.config.password {
            let _ = pipeline.push(Purpose::Auth, &[b"AUTH", password.as_bytes()], now);
        }
        if self.config.db != 0 {
            let db = self.config.db.to_string();
            let _ = pipeline.push(Purpose::Select, &[b"SELECT", db.as_bytes()], now);
        }
        let _ = pipeline.push(Purpose::Ping, &[b"PING"], now);
        self.last_ping = now;
    }

    /// Writes what is queued, reads what came, and acts on the replies.
    fn exchange(&mut self, now: Instant) -> Result<(), String> {
        let State::Up { stream, ready, .. } = &mut self.state else {
            return Ok(());
        };
        if *ready && now.saturating_duration_since(self.last_ping) >= PING_EVERY {
            let _ = self.pipeline.push(Purpose::Ping, &[b"PING"], now);
            self.last_ping = now;
        }
        while !self.pipeline.unsent().is_empty() {
            match stream.write(self.pipeline.unsent()) {
                Ok(0) => return Err("the connection closed".into()),
                Ok(count) => self.pipeline.sent(count),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("write: {error}")),
            }
        }
        let mut buffer = [0u8; 16 * 1024];
        let mut replies = Vec::new();
        let mut ended = None;
        loop {
            let room = self.pipeline.input_room().clamp(1, buffer.len());
            match stream.read(&mut buffer[..room]) {
                Ok(0) => {
                    ended = Some("Redis closed the connection".to_owned());
                    break;
                }
                Ok(count) => replies.extend(
                    self.pipeline
                        .received(&buffer[..count])
                        .map_err(|error| format!("a reply rsp cannot read: {error}"))?,
                ),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    ended = Some(format!("read: {error}"));
                    break;
                }
            }
        }
        for (purpose, since, reply) in replies {
            self.on_reply(purpose, since, reply, now)?;
        }
        if let Some(why) = ended {
            return Err(why);
        }
        if let Some(oldest) = self.pipeline.oldest()
            && now.saturating_duration_since(oldest) >= self.config.timeout
        {
            return Err(format!("no reply within {:?}", self.config.timeout));
        }
        Ok(())
    }

    fn on_reply(
        &mut self,
        purpose: Purpose,
        since: Instant,
        reply: Reply,
        now: Instant,
    ) -> Result<(), String> {
        let counters = stats();
        counters.commands.fetch_add(1, Ordering::Relaxed);
        if let Reply::Error(error) = &reply {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            return match purpose {
                Purpose::Auth => Err(format!("AUTH refused: {error}")),
                Purpose::Select => Err(format!("SELECT {} refused: {error}", self.config.db)),
                Purpose::Ping => Err(format!("PING answered {error}")),
                Purpose::Load => Err(format!("SCRIPT LOAD refused: {error}")),
                Purpose::Limit { limiter, .. } => {
                    if error.starts_with("NOSCRIPT") {
                        // Redis restarted or was flushed: load it again.
                        self.script = None;
                        self.loading = false;
                    } else {
                        log::warn!("redis: limit {}: {error}", limiter.config.name);
                    }
                    Ok(())
                }
            };
        }
        match purpose {
            Purpose::Load => {
                self.loading = false;
                match reply {
                    Reply::BulkString(sha) | Reply::SimpleString(sha) => {
                        self.script = Some(String::from_utf8_lossy(&sha).into_owned());
                    }
                    _ => return Err("SCRIPT LOAD answered no SHA1".into()),
                }
                return Ok(());
            }
            Purpose::Limit { limiter, keys } => {
                let Reply::Array(ahead) = reply else {
                    return Err("a limit's sync answered no array".into());
                };
                let local = crate::state::now_nanos();
                limiter.mark_synced(local);
                for (key, ahead) in keys.iter().zip(ahead) {
                    if let Reply::Integer(micros) = ahead {
                        limiter.apply(key, (micros.max(0) as u64).saturating_mul(1000), local);
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        if matches!(purpose, Purpose::Ping) {
            let round_trip = now.saturating_duration_since(since);
            counters
                .round_trip_us
                .store(round_trip.as_micros() as u64, Ordering::Relaxed);
            if let State::Up { ready, server, .. } = &mut self.state
                && !*ready
            {
                *ready = true;
                self.backoff = FIRST_BACKOFF;
                counters.connected.store(true, Ordering::Relaxed);
                counters.connects.fetch_add(1, Ordering::Relaxed);
                let db = self.config.db;
                log::info!("redis: connected to {server} (db {db}), round trip {round_trip:?}");
                self.outage_logged = false;
            }
        }
        Ok(())
    }

    /// The connection failed (`why`): what it awaited is dropped, and the
    /// next server is tried after the back-off.
    fn fail(&mut self, registry: &Registry, why: &str, now: Instant) {
        let server = match &mut self.state {
            State::Connecting { stream, server, .. } | State::Up { stream, server, .. } => {
                let _ = registry.deregister(stream);
                Some(*server)
            }
            State::Down { .. } => None,
        };
        let counters = stats();
        counters.connected.store(false, Ordering::Relaxed);
        counters.failures.fetch_add(1, Ordering::Relaxed);
        self.pipeline.reset();
        self.script = None;
        self.loading = false;
        self.next = self.next.wrapping_add(1);
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.state = State::Down {
            retry_at: now + wait,
        };
        let server = server.map_or_else(|| "redis".into(), |server| server.to_string());
        if self.outage_logged {
            log::debug!("redis: {server}: {why}; trying again in {wait:?}");
        } else {
            self.outage_logged = true;
            log::warn!(
                "redis: {server}: {why}; trying again in {wait:?} (shared state is local until then)"
            );
        }
    }
}
