//! The event loop: poll, then hand each token to its owner: a listener
//! accepts, a session drives its client and backend sockets.

use std::io;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::balancer::Pool;
use crate::config::{Config, Loaded};
use crate::connection::{self, Context, Session};
use crate::health::{HealthChecks, Verdict};
use crate::router::Router;
use crate::timer::{Deadline, Timers};

/// Tokens from here up are listeners; sessions use two tokens per slab key
/// below it.
const LISTENER_BASE: usize = usize::MAX / 2;
/// Health check sockets use tokens from here to `LISTENER_BASE`.
const HEALTH_BASE: usize = usize::MAX / 4;

pub struct EventLoop {
    poll: Poll,
    listeners: Vec<TcpListener>,
    sessions: Slab<Session>,
    router: Router,
    pools: Vec<Pool>,
    buffer_bytes: usize,
    max_header_bytes: usize,
    timers: Timers,
    wakeups: Vec<usize>,
    health_checks: HealthChecks,
}

impl EventLoop {
    /// Binds every listen address; nothing is served until `run`.
    pub fn new(loaded: Loaded) -> io::Result<EventLoop> {
        let Loaded { config, .. } = &loaded;
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (index, address) in config.listen.iter().enumerate() {
            let mut listener = TcpListener::bind(*address).map_err(|error| {
                io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
            })?;
            poll.registry().register(
                &mut listener,
                Token(LISTENER_BASE + index),
                Interest::READABLE,
            )?;
            log::info!("listening on {}", listener.local_addr().unwrap_or(*address));
            listeners.push(listener);
        }
        let pools: Vec<Pool> = config.pools.iter().map(Pool::new).collect();
        for pool in &pools {
            let servers: Vec<String> = pool
                .servers()
                .iter()
                .map(|server| {
                    let backup = if server.backup { " backup" } else { "" };
                    format!("{} weight {}{backup}", server.address, server.weight)
                })
                .collect();
            log::info!("pool {}: {}", pool.name, servers.join(", "));
        }
        let Config {
            buffer_bytes,
            max_header_bytes,
            ..
        } = *config;
        Ok(EventLoop {
            router: Router::new(&loaded, &pools),
            poll,
            listeners,
            sessions: Slab::with_capacity(1024),
            pools,
            buffer_bytes,
            max_header_bytes,
            timers: Timers::default(),
            wakeups: Vec::new(),
            health_checks: HealthChecks::new(HEALTH_BASE),
        })
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let now = Instant::now();
        for (pool_index, pool) in self.pools.iter().enumerate() {
            if pool.health.is_some() {
                for server in 0..pool.servers().len() {
                    self.timers.schedule(
                        now,
                        Deadline::HealthDue {
                            pool: pool_index,
                            server,
                        },
                    );
                }
            }
        }
        loop {
            let timeout = self.timers.timeout(Instant::now());
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            for event in events.iter() {
                let token = event.token();
                if token.0 >= LISTENER_BASE {
                    self.accept(token.0 - LISTENER_BASE);
                    continue;
                }
                if self.health_checks.owns(token) {
                    if let Some(verdict) = self.health_checks.on_event(token) {
                        self.record(verdict);
                    }
                    continue;
                }
                let (key, side) = connection::side_of(token);
                // A session closed earlier in this batch may have left events.
                if let Some(session) = self.sessions.get_mut(key) {
                    session.mark_ready(side, event);
                    self.drive(key, None);
                }
            }
            let now = Instant::now();
            while let Some(deadline) = self.timers.pop_expired(now) {
                match deadline {
                    Deadline::Session(key) => self.drive(key, Some(now)),
                    Deadline::HealthDue { pool, server } => self.check(pool, server),
                    Deadline::HealthTimeout(key) => {
                        if let Some(verdict) = self.health_checks.expire(key) {
                            self.record(verdict);
                        }
                    }
                }
            }
        }
    }

    /// Starts the active check of one server, and its timeout.
    fn check(&mut self, pool: usize, server: usize) {
        let Some(config) = self.pools[pool].health.clone() else {
            return;
        };
        let address = self.pools[pool].address(server);
        match self
            .health_checks
            .start(self.poll.registry(), pool, server, address, &config)
        {
            Ok(key) => self.timers.schedule(
                Instant::now() + config.timeout,
                Deadline::HealthTimeout(key),
            ),
            Err(verdict) => self.record(verdict),
        }
    }

    /// Counts a finished check and schedules the next one.
    fn record(&mut self, verdict: Verdict) {
        let pool = &mut self.pools[verdict.pool];
        pool.record_check(verdict.server, verdict.healthy, &verdict.why);
        if let Some(config) = &pool.health {
            let (pool, server) = (verdict.pool, verdict.server);
            self.timers.schedule(
                Instant::now() + config.interval,
                Deadline::HealthDue { pool, server },
            );
        }
    }

    /// Drives one session (after its timer fired, when `expired` is set),
    /// then any queued sessions its progress woke.
    fn drive(&mut self, key: usize, mut expired: Option<Instant>) {
        let mut next = Some(key);
        while let Some(key) = next {
            if let Some(session) = self.sessions.get_mut(key) {
                let mut context = Context {
                    registry: self.poll.registry(),
                    router: &self.router,
                    pools: &mut self.pools,
                    max_header_bytes: self.max_header_bytes,
                    timers: &mut self.timers,
                    wakeups: &mut self.wakeups,
                };
                if let Some(now) = expired.take() {
                    session.expire(&mut context, now);
                }
                if !session.drive(&mut context) {
                    self.sessions.remove(key);
                }
            }
            next = self.wakeups.pop();
            if let Some(woken) = next.and_then(|woken| self.sessions.get_mut(woken)) {
                woken.wake();
            }
        }
    }

    fn accept(&mut self, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        loop {
            let (stream, address) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of file descriptors and the like: the rest wait in
                    // the backlog until connections close.
                    log::warn!("accept failed: {error}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let entry = self.sessions.vacant_entry();
            let key = entry.key();
            let mut session = Session::new(key, stream, address, self.buffer_bytes);
            if let Err(error) = self.poll.registry().register(
                session.client_stream(),
                connection::client_token(key),
                Interest::READABLE,
            ) {
                log::warn!("cannot register client {address}: {error}");
                continue;
            }
            entry.insert(session);
        }
    }
}
