//! One connection to Redis: its socket, its traffic, its back-off. The
//! connect and the handshake (`AUTH`, `SELECT`, a `PING` that makes it
//! ready) are its own; every other reply goes back to its `Client`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry};

use crate::config::RedisConfig;
use crate::token::TokenKind;

use super::pipeline::Pipeline;
use super::resp::Reply;
use super::{FIRST_BACKOFF, MAX_BACKOFF, PING_EVERY, Purpose, stats};

/// What a turn brought: the replies that are not the handshake's (those
/// read before a failure too), and why the connection failed, if it did.
#[derive(Default)]
pub struct Turn {
    pub replies: Vec<(Purpose, Reply)>,
    pub failed: Option<String>,
}

impl Turn {
    fn failed(why: String) -> Turn {
        Turn {
            replies: Vec::new(),
            failed: Some(why),
        }
    }

    /// Another turn's, after this one's.
    pub fn and(mut self, next: Turn) -> Turn {
        self.replies.extend(next.replies);
        self.failed = self.failed.or(next.failed);
        self
    }
}

/// Bytes read from a connection in one turn at most: a flood of messages
/// does not keep the loop (the rest is read a millisecond later).
const READ_PER_TURN: usize = 1024 * 1024;

pub enum State {
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

pub struct Connection {
    pub state: State,
    pub pipeline: Pipeline<Purpose>,
    backoff: Duration,
    /// The server tried next (an index into the config's `servers`).
    next: usize,
    pub last_ping: Instant,
    /// The outage being lived through was logged (once, at warn).
    outage_logged: bool,
    token: TokenKind,
    /// The live maps' subscriber (`redis::maps`), not the connection that
    /// carries commands (the one the `connected` gauge follows).
    subscriber: bool,
    /// The `run_id` of the Redis last connected to: another one after a
    /// reconnect is a Redis restarted (its memory lost, unless it
    /// persists) or another server.
    run_id: Option<Vec<u8>>,
    /// A turn stopped reading at `READ_PER_TURN`: the next comes at once.
    more: bool,
}

impl Connection {
    pub fn new(token: TokenKind, now: Instant) -> Connection {
        Connection {
            state: State::Down { retry_at: now },
            pipeline: Pipeline::default(),
            backoff: FIRST_BACKOFF,
            next: 0,
            last_ping: now,
            outage_logged: false,
            token,
            subscriber: false,
            run_id: None,
            more: false,
        }
    }

    /// A connection that subscribes: pub/sub messages arrive on it as
    /// replies to `Purpose::Message`.
    pub fn subscriber(token: TokenKind, now: Instant) -> Connection {
        Connection {
            pipeline: Pipeline::subscriber(|| Purpose::Message),
            subscriber: true,
            ..Connection::new(token, now)
        }
    }

    /// What it is, for the log.
    fn role(&self) -> &'static str {
        if self.subscriber {
            "redis (subscriber)"
        } else {
            "redis"
        }
    }

    /// Up, and its handshake done.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Up { ready: true, .. })
    }

    /// When it wants its next turn at the latest.
    pub fn next_turn(&mut self, config: &RedisConfig, now: Instant) -> Instant {
        if std::mem::take(&mut self.more) {
            // After the loop's other work (a poll) in between.
            return now + Duration::from_millis(1);
        }
        match &self.state {
            State::Down { retry_at } => *retry_at,
            State::Connecting { since, .. } => *since + config.timeout,
            State::Up { .. } => (self.last_ping + PING_EVERY).min(now + config.timeout),
        }
    }

    /// Connects when due, completes a connect, writes what is queued and
    /// reads what came: the replies that are not the handshake's.
    pub fn step(&mut self, config: &RedisConfig, registry: &Registry, now: Instant) -> Turn {
        if let State::Down { retry_at } = self.state {
            if now < retry_at {
                return Turn::default();
            }
            if let Err(why) = self.connect(config, registry, now) {
                return Turn::failed(why);
            }
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
                        return Turn::failed(format!("connect: {error}"));
                    }
                    if now.saturating_duration_since(*since) >= config.timeout {
                        let why = format!("connect timed out after {:?}", config.timeout);
                        return Turn::failed(why);
                    }
                    return Turn::default();
                }
                Err(error) => return Turn::failed(format!("connect: {error}")),
            }
            let server = *server;
            let State::Connecting { stream, .. } =
                std::mem::replace(&mut self.state, State::Down { retry_at: now })
            else {
                return Turn::default();
            };
            self.state = State::Up {
                stream,
                server,
                ready: false,
            };
            self.handshake(config, now);
        }
        self.exchange(config, now)
    }

    fn connect(
        &mut self,
        config: &RedisConfig,
        registry: &Registry,
        now: Instant,
    ) -> Result<(), String> {
        let server = config.servers[self.next % config.servers.len()];
        let mut stream =
            TcpStream::connect(server).map_err(|error| format!("{server}: {error}"))?;
        registry
            .register(
                &mut stream,
                self.token.token(),
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
    fn handshake(&mut self, config: &RedisConfig, now: Instant) {
        let pipeline = &mut self.pipeline;
        if let Some(password) = &config.password {
            let _ = pipeline.push(Purpose::Auth, &[b"AUTH", password.as_bytes()], now);
        }
        if config.db != 0 {
            let db = config.db.to_string();
            let _ = pipeline.push(Purpose::Select, &[b"SELECT", db.as_bytes()], now);
        }
        if !self.subscriber {
            let _ = pipeline.push(Purpose::Info, &[b"INFO", b"server"], now);
        }
        let _ = pipeline.push(Purpose::Ping, &[b"PING"], now);
        self.last_ping = now;
    }

    /// Writes what is queued, reads what came: the replies that are not
    /// the handshake's.
    pub fn exchange(&mut self, config: &RedisConfig, now: Instant) -> Turn {
        let State::Up { stream, ready, .. } = &mut self.state else {
            return Turn::default();
        };
        if *ready && now.saturating_duration_since(self.last_ping) >= PING_EVERY {
            let _ = self.pipeline.push(Purpose::Ping, &[b"PING"], now);
            self.last_ping = now;
        }
        let mut failed = None;
        while failed.is_none() && !self.pipeline.unsent().is_empty() {
            match stream.write(self.pipeline.unsent()) {
                Ok(0) => failed = Some("the connection closed".into()),
                Ok(count) => self.pipeline.sent(count),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => failed = Some(format!("write: {error}")),
            }
        }
        let mut buffer = [0u8; 16 * 1024];
        let mut replies = Vec::new();
        let mut read = 0;
        while failed.is_none() {
            let room = self.pipeline.input_room().clamp(1, buffer.len());
            match stream.read(&mut buffer[..room]) {
                Ok(0) => failed = Some("Redis closed the connection".to_owned()),
                Ok(count) => {
                    if let Err(error) = self.pipeline.received(&buffer[..count], &mut replies) {
                        failed = Some(format!("a reply rsp cannot read: {error}"));
                    }
                    read += count;
                    if read >= READ_PER_TURN {
                        self.more = true;
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => failed = Some(format!("read: {error}")),
            }
        }
        let mut turn = Turn {
            replies: Vec::with_capacity(replies.len()),
            failed,
        };
        for (purpose, since, reply) in replies {
            match self.on_reply(config, purpose, since, reply, now) {
                Ok(Some(other)) => turn.replies.push(other),
                Ok(None) => {}
                Err(why) => turn.failed = turn.failed.or(Some(why)),
            }
        }
        if let Some(oldest) = self.pipeline.oldest()
            && now.saturating_duration_since(oldest) >= config.timeout
        {
            let why = format!("no reply within {:?}", config.timeout);
            turn.failed = turn.failed.or(Some(why));
        }
        turn
    }

    /// A reply: the handshake's are the connection's (an error fails it;
    /// the `PING` makes it ready); the others go back to the client.
    fn on_reply(
        &mut self,
        config: &RedisConfig,
        purpose: Purpose,
        since: Instant,
        reply: Reply,
        now: Instant,
    ) -> Result<Option<(Purpose, Reply)>, String> {
        let counters = stats();
        counters.commands.fetch_add(1, Ordering::Relaxed);
        let error = match &reply {
            Reply::Error(error) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                Some(error.clone())
            }
            _ => None,
        };
        match (&purpose, error) {
            (Purpose::Auth, Some(error)) => Err(format!("AUTH refused: {error}")),
            (Purpose::Select, Some(error)) => Err(format!("SELECT {} refused: {error}", config.db)),
            (Purpose::Ping, Some(error)) => Err(format!("PING answered {error}")),
            (Purpose::Auth | Purpose::Select, None) => Ok(None),
            (Purpose::Info, None) => {
                if let Reply::BulkString(info) = &reply {
                    self.note_run_id(info);
                }
                Ok(None)
            }
            // A Redis that answers INFO with an error (renamed away) is
            // served all the same.
            (Purpose::Info, Some(_)) => Ok(None),
            (Purpose::Ping, None) => {
                let round_trip = now.saturating_duration_since(since);
                counters
                    .round_trip_us
                    .store(round_trip.as_micros() as u64, Ordering::Relaxed);
                let role = self.role();
                if let State::Up { ready, server, .. } = &mut self.state
                    && !*ready
                {
                    *ready = true;
                    self.backoff = FIRST_BACKOFF;
                    if !self.subscriber {
                        counters.connected.store(true, Ordering::Relaxed);
                    }
                    counters.connects.fetch_add(1, Ordering::Relaxed);
                    let db = config.db;
                    log::info!(
                        "{role}: connected to {server} (db {db}), round trip {round_trip:?}"
                    );
                    self.outage_logged = false;
                }
                Ok(None)
            }
            _ => Ok(Some((purpose, reply))),
        }
    }

    /// `INFO server`'s `run_id`: another than the last connection's is
    /// said, and counted.
    fn note_run_id(&mut self, info: &[u8]) {
        let Some(run_id) = info
            .split(|&byte| byte == b'\n')
            .find_map(|line| line.strip_prefix(b"run_id:"))
            .map(|id| id.trim_ascii().to_vec())
        else {
            return;
        };
        if let Some(before) = self.run_id.replace(run_id.clone())
            && before != run_id
        {
            stats().restarts.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "redis: this is not the Redis of the last connection (restarted, or another server): \
                 what it held may be gone (shared limits count afresh, shared maps are read again)"
            );
        }
    }

    /// The connection failed (`why`): the next server is tried after the
    /// back-off. Returns what it awaited, which will not come.
    pub fn fail(&mut self, registry: &Registry, why: &str, now: Instant) -> Vec<Purpose> {
        let server = match &mut self.state {
            State::Connecting { stream, server, .. } | State::Up { stream, server, .. } => {
                let _ = registry.deregister(stream);
                Some(*server)
            }
            State::Down { .. } => None,
        };
        let counters = stats();
        if !self.subscriber {
            counters.connected.store(false, Ordering::Relaxed);
        }
        counters.failures.fetch_add(1, Ordering::Relaxed);
        let lost = self.pipeline.reset();
        self.next = self.next.wrapping_add(1);
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.state = State::Down {
            retry_at: now + wait,
        };
        let server = server.map_or_else(|| "redis".into(), |server| server.to_string());
        let role = self.role();
        if self.outage_logged {
            log::debug!("{role}: {server}: {why}; trying again in {wait:?}");
        } else {
            self.outage_logged = true;
            log::warn!(
                "{role}: {server}: {why}; trying again in {wait:?} (shared state is local until then)"
            );
        }
        lost
    }
}
