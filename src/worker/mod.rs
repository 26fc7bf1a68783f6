//! A worker: one thread, one `mio::Poll`. It owns the sessions (a slab,
//! keyed by their client token), the listeners, the timers and the services
//! sessions use; `run` is the whole control flow: poll, then hand each
//! token to its owner, then apply commands and expired timers.

mod listeners;
mod reload;

use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Interest, Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::balancer::Pool;
use crate::config::Loaded;
use crate::health::{HealthChecks, Verdict};
use crate::idle::Owner;
use crate::memory::{self, Pressure};
use crate::session::{Reclaimed, Session};
use crate::timer::{self, Deadline};
use crate::workers::{Command, Snapshot, Worker};

use crate::services::Services;
use crate::token::TokenKind;
use listeners::{ACCEPT_PAUSE, Listeners};

/// How often workers other than 0 publish their counters for the admin port.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How often expired dictionary entries are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct EventLoop {
    poll: Poll,
    signals: Signals,
    config_path: PathBuf,
    listeners: Listeners,
    sessions: Slab<Session>,
    services: Services,
    health_checks: HealthChecks,
    /// The process's Redis connection, worker 0's (`redis = { ... }`).
    redis: Option<crate::redis::Client>,
    /// When its timer is set for (one at a time, however often it is driven).
    redis_due: Option<Instant>,
    /// Set by SIGTERM/SIGINT: the moment after which rsp exits even if
    /// requests are still in flight.
    shutdown_deadline: Option<Instant>,
}

impl EventLoop {
    /// Binds every listen address; nothing is served until `run`.
    pub fn new(loaded: Loaded, config_path: PathBuf, worker: Worker) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        // Every worker has its own handler: each reloads, drains and
        // reopens its own log.
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])?;
        poll.registry()
            .register(&mut signals, TokenKind::Signal.token(), Interest::READABLE)?;
        if let Some(shared) = &worker.shared {
            shared.set_waker(
                worker.index,
                Waker::new(poll.registry(), TokenKind::Waker.token())?,
            );
        }
        let services = Services::new(poll.registry().try_clone()?, &loaded, worker)?;
        log_pools(&services.pools);
        let mut event_loop = EventLoop {
            poll,
            signals,
            config_path,
            listeners: Listeners::default(),
            sessions: Slab::with_capacity(1024),
            services,
            health_checks: HealthChecks::default(),
            redis: None,
            redis_due: None,
            shutdown_deadline: None,
        };
        let wanted = listeners::wanted(&loaded.config, event_loop.services.worker.index);
        let opened = Listeners::bind_all(&wanted, event_loop.services.worker.count > 1)?;
        event_loop
            .listeners
            .open(event_loop.poll.registry(), opened)?;
        event_loop
            .listeners
            .configure(&loaded.config, &loaded.certificates);
        event_loop.schedule_health_checks();
        event_loop.follow_redis(loaded.config.redis.as_ref());
        event_loop
            .services
            .timers
            .schedule(Instant::now() + memory::RECLAIM_EVERY, Deadline::Reclaim);
        if event_loop.services.worker.index > 0 {
            event_loop
                .services
                .timers
                .schedule(Instant::now() + PUBLISH_EVERY, Deadline::Publish);
        } else {
            // The dictionaries are every worker's: one sweeps them.
            event_loop
                .services
                .timers
                .schedule(Instant::now() + SWEEP_EVERY, Deadline::Sweep);
        }
        Ok(event_loop)
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Some(access_log) = &mut self.services.access_log {
                access_log.flush();
            }
            if self.shutdown_finished() {
                return Ok(());
            }
            if let Err(error) = self.poll.poll(&mut events, self.poll_timeout()) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            timer::tick();
            self.services.round += 1;
            self.services.defer_writes = true;
            for event in events.iter() {
                match TokenKind::of(event.token()) {
                    TokenKind::Signal => self.on_signals(),
                    TokenKind::Waker => self.obey_other_workers(),
                    TokenKind::Listener(slot) => self.accept(slot),
                    TokenKind::Health(key) => {
                        if let Some(verdict) = self.health_checks.on_event(key) {
                            self.record(verdict);
                        }
                    }
                    TokenKind::Backend(fd) => self.on_backend_event(fd, event),
                    TokenKind::Redis | TokenKind::RedisSubscriber => self.drive_redis(timer::now()),
                    TokenKind::Client(key) => {
                        // A session closed earlier in this batch may have left events.
                        if let Some(session) = self.sessions.get_mut(key) {
                            session.mark_client_ready(event);
                            self.drive(key, None);
                        }
                    }
                }
            }
            self.services.defer_writes = false;
            for key in std::mem::take(&mut self.services.flushes) {
                self.drive(key, None);
            }
            self.run_yielded();
            self.run_timers(timer::tick());
            self.pass_stores();
            let room = self.shutdown_deadline.is_none()
                && self.sessions.len() < self.services.settings.max_connections;
            self.listeners
                .resume(self.poll.registry(), timer::now(), room);
        }
    }

    /// The sessions that yielded last turn get their next one, each one
    /// turn (a session driven more than once in a batch yields more than
    /// once: it must not take that many turns of the next round, nor keep
    /// them round after round).
    fn run_yielded(&mut self) {
        let mut yielded = std::mem::take(&mut self.services.yielded);
        yielded.sort_unstable();
        yielded.dedup();
        for key in yielded {
            self.drive(key, None);
        }
    }

    /// How long poll may sleep: until the next timer, or the shutdown
    /// deadline; not at all while sessions wait for their next turn.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.services.yielded.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let timeout = self.services.timers.timeout(now);
        match self.shutdown_deadline {
            Some(deadline) => {
                let until = deadline.saturating_duration_since(now);
                Some(timeout.map_or(until, |timeout| timeout.min(until)))
            }
            None => timeout,
        }
    }

    /// Shutting down and done (or out of time: then what is left is cut).
    fn shutdown_finished(&mut self) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        if self.sessions.is_empty() {
            let counters = &self.services.counters;
            log::info!(
                "shutdown: every request finished, exiting ({} requests read, {} connections closed unanswered)",
                counters.requests,
                counters.unanswered
            );
            return true;
        }
        if Instant::now() >= deadline {
            log::warn!(
                "shutdown: {} connections still open after {:?}, exiting",
                self.sessions.len(),
                self.services.settings.shutdown_timeout
            );
            for (_, mut session) in std::mem::take(&mut self.sessions) {
                session.cut(&mut self.services, "shutdown_timeout_ms passed");
            }
            return true;
        }
        false
    }

    fn on_signals(&mut self) {
        let signals: Vec<i32> = self.signals.pending().collect();
        if signals
            .iter()
            .any(|&signal| signal == SIGTERM || signal == SIGINT)
        {
            self.shut_down();
        } else if signals.contains(&SIGHUP) && self.shutdown_deadline.is_none() {
            self.reload();
        }
        if signals.contains(&SIGUSR1) {
            self.reopen_access_log();
        }
    }

    /// An event of backend socket `fd`: for the session that holds it, or
    /// for the idle store.
    fn on_backend_event(&mut self, fd: RawFd, event: &Event) {
        match self.services.idle.owner(fd) {
            Owner::Session(waiter) => {
                let (key, stream) = crate::token::waiter_parts(waiter);
                if self
                    .sessions
                    .get_mut(key)
                    .is_some_and(|session| session.mark_backend_ready(stream, fd, event))
                {
                    self.drive(key, None);
                }
            }
            Owner::Idle(key) => self.services.idle.on_event(key),
            Owner::Nobody => {}
        }
    }

    /// Drives one session (after its timer fired, when `expired` is set),
    /// then any queued sessions its progress woke.
    fn drive(&mut self, key: usize, mut expired: Option<Instant>) {
        let mut next = Some(key);
        while let Some(key) = next {
            if let Some(session) = self.sessions.get_mut(key) {
                let services = &mut self.services;
                let expired_and_closed = expired
                    .take()
                    .is_some_and(|now| !session.expire(services, now));
                if expired_and_closed || !session.drive(services) {
                    self.sessions.remove(key);
                    self.services.totals.connections -= 1;
                }
            }
            let woken = self.services.wakeups.pop().map(crate::token::waiter_parts);
            next = woken.map(|(session, _)| session);
            if let Some((session, slot)) = woken
                && let Some(woken) = self.sessions.get_mut(session)
            {
                woken.wake(slot);
            }
        }
        // A drain takes effect before the next request is read.
        if !self.services.commands.is_empty() {
            self.apply_commands();
        }
    }

    fn accept(&mut self, slot: usize) {
        loop {
            if self.sessions.len() >= self.services.settings.max_connections {
                if self.listeners.warnings.ready(Instant::now()) {
                    log::warn!(
                        "{} connections: at max_connections, accepting paused",
                        self.sessions.len()
                    );
                }
                self.listeners
                    .pause(self.poll.registry(), &mut self.services.timers, None);
                return;
            }
            let Some(listener) = self.listeners.get(slot) else {
                return;
            };
            let (stream, address) = match listener.socket.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of descriptors or memory: the backlog keeps the
                    // rest; try again shortly instead of spinning.
                    let now = Instant::now();
                    if self.listeners.warnings.ready(now) {
                        log::warn!("accept failed: {error}; pausing accepts for {ACCEPT_PAUSE:?}");
                    }
                    let until = Some(now + ACCEPT_PAUSE);
                    self.listeners
                        .pause(self.poll.registry(), &mut self.services.timers, until);
                    return;
                }
            };
            // Linux gives accepted sockets the listener's TCP_NODELAY.
            #[cfg(not(target_os = "linux"))]
            let _ = stream.set_nodelay(true);
            let entry = self.sessions.vacant_entry();
            let key = entry.key();
            let buffer_bytes = self.services.settings.buffer_bytes;
            match Session::new(key, stream, address, &listener.spec, buffer_bytes) {
                Ok(session) => {
                    entry.insert(session);
                }
                Err(error) => {
                    crate::client_log!(log::Level::Warn, "{address}: cannot start TLS: {error}");
                    continue;
                }
            }
            self.services.totals.connections += 1;
            self.services.totals.connections_total += 1;
            // Reads what already came and registers the socket.
            self.drive(key, None);
        }
    }

    /// Admin commands of this worker's sessions: applied here, and passed
    /// to the other workers, which apply them the same way.
    fn apply_commands(&mut self) {
        for command in std::mem::take(&mut self.services.commands) {
            if let Some(shared) = &self.services.worker.shared {
                shared.send(self.services.worker.index, &command);
            }
            self.obey(command);
        }
    }

    /// A drain or enable, from this worker's admin port or another's.
    fn obey(&mut self, command: Command) {
        match command {
            Command::SetDrained {
                pool,
                server,
                drained,
            } => {
                if let Some(pool) = self
                    .services
                    .pools
                    .iter_mut()
                    .find(|mine| mine.name == pool)
                {
                    pool.set_drained(server, drained);
                }
            }
            Command::PurgeCache { key, prefix } => {
                if let Some(cache) = &mut self.services.cache {
                    let mut removed = 0;
                    for pool in &self.services.pools {
                        let scoped = crate::cache::scoped(&pool.name, &key);
                        removed += match prefix {
                            true => cache.store.remove_prefix(&scoped),
                            false => usize::from(cache.store.remove(&scoped)),
                        };
                    }
                    cache.counters.invalidations += removed as u64;
                    log::debug!("cache: purge of {key:?} removed {removed} keys");
                }
            }
        }
    }

    /// Worker 0 drained or enabled a server: do the same here.
    fn obey_other_workers(&mut self) {
        let Some(shared) = self.services.worker.shared.clone() else {
            return;
        };
        for command in shared.take_commands(self.services.worker.index) {
            self.obey(command);
        }
    }

    fn run_timers(&mut self, now: Instant) {
        let services = &mut self.services;
        if services.timers.len() > 2 * (self.sessions.len() + services.idle.len()) + 1024 {
            let (sessions, idle) = (&self.sessions, &services.idle);
            services.timers.retain(|at, deadline| match deadline {
                Deadline::Session(key) => sessions
                    .get(key)
                    .is_some_and(|session| session.timer_at() == Some(at)),
                Deadline::IdleBackend { key, serial } => idle.is_current(key, serial),
                _ => true,
            });
        }
        while let Some(deadline) = self.services.timers.pop_expired(now) {
            match deadline {
                Deadline::Session(key) => self.drive(key, Some(now)),
                Deadline::HealthDue {
                    generation,
                    pool,
                    server,
                } if generation == self.services.generation => self.check(pool, server),
                Deadline::HealthDue { .. } | Deadline::ResumeAccept => {}
                Deadline::IdleBackend { key, serial } => {
                    self.services.idle.expire(key, serial, now)
                }
                Deadline::Publish => self.publish(now),
                Deadline::Redis => {
                    if self.redis_due.is_some_and(|due| due <= now) {
                        self.redis_due = None;
                    }
                    self.drive_redis(now);
                }
                Deadline::Reclaim => self.reclaim(now),
                Deadline::Sweep => {
                    self.services.router.scripted.sweep();
                    self.services
                        .timers
                        .schedule(now + SWEEP_EVERY, Deadline::Sweep);
                }
                Deadline::HealthTimeout(key) => {
                    if let Some(verdict) = self.health_checks.expire(key, now) {
                        self.record(verdict);
                    }
                }
            }
        }
    }

    /// The Redis connection (worker 0's) follows the config: made, kept
    /// when the same, or replaced.
    fn follow_redis(&mut self, config: Option<&crate::config::RedisConfig>) {
        if self.services.worker.index > 0 {
            return;
        }
        let now = timer::now();
        if self.redis.as_ref().map(crate::redis::Client::config) != config {
            if config.is_none() {
                crate::redis::unconfigured();
            }
            let new = config.map(|config| crate::redis::Client::new(config.clone(), now));
            if let Some(old) = std::mem::replace(&mut self.redis, new) {
                self.deliver(old.abandon());
            }
        }
        if let Some(redis) = &mut self.redis {
            let scripted = &self.services.router.scripted;
            let shared = scripted
                .limits
                .values()
                .filter(|limiter| limiter.config.shared.is_some())
                .cloned()
                .collect();
            redis.set_limits(shared, now);
            let mut maps: Vec<_> = scripted
                .maps
                .values()
                .filter(|map| map.shared)
                .cloned()
                .collect();
            maps.sort_by(|a, b| a.name.cmp(&b.name));
            redis.set_maps(maps, now);
        }
        self.drive_redis(now);
    }

    /// The admin's changes to shared maps go to Redis; their requests are
    /// answered as Redis replies (at once, when it cannot be reached).
    fn pass_stores(&mut self) {
        while !self.services.stores.is_empty() {
            let stores = std::mem::take(&mut self.services.stores);
            let now = timer::now();
            match &mut self.redis {
                Some(redis) => {
                    redis.store(stores, now);
                    self.drive_redis(now);
                }
                None => {
                    let settled = stores
                        .into_iter()
                        .map(|waiting| (waiting, Err("is not configured".into())))
                        .collect();
                    self.deliver(settled);
                }
            }
        }
    }

    /// Admin requests that waited for Redis get their answers.
    fn deliver(&mut self, settled: Vec<crate::state::Settled>) {
        for (waiting, outcome) in settled {
            let reply = crate::admin::settled(&waiting.store, outcome);
            let (key, ticket) = (waiting.waiter, waiting.ticket);
            if let Some(session) = self.sessions.get_mut(key)
                && session.answered(&self.services, ticket, &reply)
            {
                self.drive(key, None);
            }
        }
    }

    /// The Redis connection's turn: an event, or the time it asked for.
    fn drive_redis(&mut self, now: Instant) {
        if let Some(redis) = &mut self.redis {
            let next = redis.drive(self.poll.registry(), now);
            if self.redis_due.is_none_or(|due| next < due) {
                self.services.timers.schedule(next, Deadline::Redis);
                self.redis_due = Some(next);
            }
            let settled = redis.take_settled();
            self.deliver(settled);
        }
    }

    /// Every `RECLAIM_EVERY`: what the worker holds is counted, and when
    /// memory is near its bound, or a pool's requests wait for slots,
    /// exchanges stalled on their clients are cut (`Session::reclaim`).
    fn reclaim(&mut self, now: Instant) {
        let (_, pressure) = self.services.memory();
        let slack = (memory::share() / 8).max(memory::MIN_COLLECT);
        if pressure >= Pressure::High || self.services.router.may_hold_garbage(slack) {
            // Exchanges that ended since may have left garbage in Lua.
            self.services.router.collect_garbage();
        }
        memory::trimmed(crate::buffer::trim_spare() + crate::exchange::trim_spare());
        let (held, pressure) = self.services.memory();
        self.services.totals.memory_held = held as u64;
        let waiting = self.services.pools.iter().any(|pool| pool.queued() > 0);
        if pressure >= Pressure::High || waiting {
            let keys: Vec<usize> = self.sessions.iter().map(|(key, _)| key).collect();
            for key in keys {
                let Some(session) = self.sessions.get_mut(key) else {
                    continue;
                };
                match session.reclaim(&mut self.services, now, pressure) {
                    Reclaimed::Nothing => {}
                    Reclaimed::Changed => self.drive(key, None),
                    Reclaimed::Closed => {
                        self.sessions.remove(key);
                        self.services.totals.connections -= 1;
                    }
                }
            }
        }
        // Looked at four times a second while anything is needed, once a
        // second otherwise (an idle worker is woken no more than that).
        let next = if pressure >= Pressure::High || waiting {
            memory::RECLAIM_EVERY
        } else {
            Duration::from_secs(1)
        };
        self.services.timers.schedule(now + next, Deadline::Reclaim);
    }

    /// Hands a copy of this worker's counters to worker 0's admin port.
    fn publish(&mut self, now: Instant) {
        self.services.count_cache();
        if let Some(shared) = &self.services.worker.shared {
            let snapshot = Snapshot {
                totals: self.services.totals.clone(),
                pools: self.services.pools.clone(),
            };
            shared.publish(self.services.worker.index, snapshot);
        }
        self.services
            .timers
            .schedule(now + PUBLISH_EVERY, Deadline::Publish);
    }

    /// SIGTERM/SIGINT: stop accepting; requests in flight finish, and every
    /// connection closes after its current response.
    fn shut_down(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        log::info!(
            "shutdown: no longer accepting; {} connections to finish",
            self.sessions.len()
        );
        self.listeners.close_all(self.poll.registry());
        self.shutdown_deadline = Some(Instant::now() + self.services.settings.shutdown_timeout);
        self.services.draining = true;
        let keys: Vec<usize> = self.sessions.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.drive(key, None);
        }
    }

    fn schedule_health_checks(&mut self) {
        let now = Instant::now();
        for (pool_index, pool) in self.services.pools.iter().enumerate() {
            if pool.health.is_some() {
                for server in 0..pool.servers().len() {
                    let deadline = Deadline::HealthDue {
                        generation: self.services.generation,
                        pool: pool_index,
                        server,
                    };
                    self.services.timers.schedule(now, deadline);
                }
            }
        }
    }

    /// Starts the active check of one server, and its timeout.
    fn check(&mut self, pool: usize, server: usize) {
        let Some(config) = self.services.pools[pool].health.clone() else {
            return;
        };
        let address = self.services.pools[pool].address(server);
        let started = self.health_checks.start(
            self.poll.registry(),
            self.services.generation,
            pool,
            server,
            address,
            &config,
        );
        match started {
            Ok((key, deadline)) => self
                .services
                .timers
                .schedule(deadline, Deadline::HealthTimeout(key)),
            Err(verdict) => self.record(verdict),
        }
    }

    /// Counts a finished check and schedules the next one.
    fn record(&mut self, verdict: Verdict) {
        if verdict.generation != self.services.generation {
            return; // a check of a config that was since replaced
        }
        let pool = &mut self.services.pools[verdict.pool];
        pool.record_check(verdict.server, verdict.healthy, &verdict.why);
        if let Some(config) = &pool.health {
            let deadline = Deadline::HealthDue {
                generation: verdict.generation,
                pool: verdict.pool,
                server: verdict.server,
            };
            self.services
                .timers
                .schedule(Instant::now() + config.interval, deadline);
        }
    }
}

fn log_pools(pools: &[Pool]) {
    for pool in pools {
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
}
