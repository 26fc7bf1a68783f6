//! The event loop: poll, then hand each token to its owner: a listener
//! accepts, a session drives its client and backend sockets, a health check
//! advances, SIGHUP reloads the config.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::access_log::AccessLog;
use crate::balancer::Pool;
use crate::config::ListenMode;
use crate::config::{self, AccessLogConfig, AdminConfig, Config, Loaded, Timeouts};
use crate::connection::{self, Context, Counters, Role, Session};
use crate::forwarding::Forwarding;
use crate::health::{HealthChecks, Verdict};
use crate::http::RequestPolicy;
use crate::idle::{IdleConnections, Owner};
use crate::request_id::RequestIds;
use crate::router::Router;
use crate::stats::Totals;
use crate::timer::{self, Deadline, Throttle, Timers};
use crate::workers::{Command, Snapshot, Worker};

/// Tokens from here up are listeners; sessions use two tokens per slab key
/// below it.
const LISTENER_BASE: usize = usize::MAX / 2;
/// Health check sockets use tokens from here to `connection::BACKEND_TOKENS`;
/// backend sockets from there to `LISTENER_BASE`.
const HEALTH_BASE: usize = usize::MAX / 4;
const SIGNAL_TOKEN: Token = Token(usize::MAX);
/// Another worker left commands in this one's mailbox.
const WAKER_TOKEN: Token = Token(usize::MAX - 1);
/// How often workers other than 0 publish their counters for the admin port.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How long accepting pauses after accept() fails (EMFILE and the like).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A listening socket, and what the connections it accepts are for.
struct Listener {
    address: SocketAddr,
    role: Role,
    socket: TcpListener,
    /// Set for `tls` listeners; made anew on every reload, so renewed
    /// certificates are taken up.
    tls: Option<Arc<rustls::ServerConfig>>,
}

pub struct EventLoop {
    poll: Poll,
    config_path: PathBuf,
    signals: Signals,
    /// Counts reloads; health deadlines of an older config are ignored.
    generation: u64,
    /// Indexed by token; a closed listener leaves its slot empty.
    listeners: Vec<Option<Listener>>,
    sessions: Slab<Session>,
    router: Router,
    pools: Vec<Pool>,
    buffer_bytes: usize,
    max_header_bytes: usize,
    timeouts: Timeouts,
    /// Set by SIGTERM/SIGINT: the moment after which rsp exits even if
    /// requests are still in flight.
    shutdown_deadline: Option<Instant>,
    shutdown_timeout: Duration,
    max_connections: usize,
    max_body_bytes: Option<u64>,
    counters: Counters,
    /// False while the listeners are out of the poll set.
    accepting: bool,
    accept_paused_until: Option<Instant>,
    accept_warnings: Throttle,
    timers: Timers,
    wakeups: Vec<usize>,
    health_checks: HealthChecks,
    forwarding: Forwarding,
    policy: RequestPolicy,
    admin: Option<AdminConfig>,
    request_ids: Option<RequestIds>,
    totals: Totals,
    access_log: Option<AccessLog>,
    idle: IdleConnections,
    worker: Worker,
}

impl EventLoop {
    /// Binds every listen address; nothing is served until `run`.
    pub fn new(loaded: Loaded, config_path: PathBuf, worker: Worker) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        // Every worker has its own handler: each reloads, drains and
        // reopens its own log.
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])?;
        poll.registry()
            .register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        if let Some(shared) = &worker.shared {
            shared.set_waker(worker.index, Waker::new(poll.registry(), WAKER_TOKEN)?);
        }
        let pools: Vec<Pool> = loaded.config.pools.iter().map(Pool::new).collect();
        log_pools(&pools);
        let access_log = loaded
            .config
            .access_log
            .as_ref()
            .map(AccessLog::open)
            .transpose()?;
        let Config {
            buffer_bytes,
            max_header_bytes,
            timeouts,
            ..
        } = loaded.config;
        let mut event_loop = EventLoop {
            router: Router::new(&loaded, &pools),
            poll,
            config_path,
            signals,
            generation: 0,
            listeners: Vec::new(),
            sessions: Slab::with_capacity(1024),
            pools,
            buffer_bytes,
            max_header_bytes,
            timeouts,
            shutdown_deadline: None,
            shutdown_timeout: loaded.config.shutdown_timeout,
            max_connections: loaded.config.max_connections,
            max_body_bytes: loaded.config.max_body_bytes,
            counters: Counters::default(),
            accepting: true,
            accept_paused_until: None,
            accept_warnings: Throttle::default(),
            timers: Timers::default(),
            wakeups: Vec::new(),
            health_checks: HealthChecks::new(HEALTH_BASE),
            forwarding: loaded.config.forwarding.clone(),
            policy: loaded.config.policy.clone(),
            admin: loaded.config.admin.clone(),
            request_ids: loaded.config.request_id.then(RequestIds::new),
            totals: Totals::default(),
            access_log,
            idle: IdleConnections::new(loaded.config.backend_keepalive, timeouts.backend_keepalive),
            worker,
        };
        let opened = event_loop.bind_all(&event_loop.listen_addresses(&loaded.config))?;
        event_loop.open_listeners(opened)?;
        event_loop.apply_listener_options(&loaded.config);
        event_loop.schedule_health_checks();
        if event_loop.worker.index > 0 {
            event_loop
                .timers
                .schedule(Instant::now() + PUBLISH_EVERY, Deadline::Publish);
        }
        Ok(event_loop)
    }

    fn open_listeners(&mut self, opened: Vec<Listener>) -> io::Result<()> {
        for mut listener in opened {
            let index = self
                .listeners
                .iter()
                .position(Option::is_none)
                .unwrap_or(self.listeners.len());
            self.poll.registry().register(
                &mut listener.socket,
                Token(LISTENER_BASE + index),
                Interest::READABLE,
            )?;
            let address = listener.socket.local_addr().unwrap_or(listener.address);
            match &listener.role {
                Role::Admin => log::info!("admin API on http://{address}/stats"),
                Role::Http { .. } => log::info!("listening on {address}"),
                Role::Tcp { pool, .. } => log::info!(
                    "listening on {address} (tcp, to {})",
                    pool.as_deref().unwrap_or("the pool route(conn) names")
                ),
            }
            if index == self.listeners.len() {
                self.listeners.push(Some(listener));
            } else {
                self.listeners[index] = Some(listener);
            }
        }
        Ok(())
    }

    fn schedule_health_checks(&mut self) {
        let now = Instant::now();
        for (pool_index, pool) in self.pools.iter().enumerate() {
            if pool.health.is_some() {
                for server in 0..pool.servers().len() {
                    let deadline = Deadline::HealthDue {
                        generation: self.generation,
                        pool: pool_index,
                        server,
                    };
                    self.timers.schedule(now, deadline);
                }
            }
        }
    }

    /// SIGHUP: read the config again. A valid one replaces listeners, pools
    /// and `route`; servers that stay keep their state, and requests in
    /// flight finish where they started. An invalid one changes nothing.
    fn reload(&mut self) {
        log::info!("SIGHUP: reloading {}", self.config_path.display());
        let loaded = match config::load(&self.config_path) {
            Ok(loaded) => loaded,
            Err(error) => {
                log::error!("reload failed, the running config stays: {error}");
                return;
            }
        };
        let wanted = self.listen_addresses(&loaded.config);
        let new_addresses: Vec<(SocketAddr, Role)> = wanted
            .iter()
            .filter(|(address, role)| {
                !self
                    .listeners
                    .iter()
                    .flatten()
                    .any(|open| open.address == *address && open.role == *role)
            })
            .cloned()
            .collect();
        let opened = match self.bind_all(&new_addresses) {
            Ok(opened) => opened,
            Err(error) => {
                log::error!("reload failed, the running config stays: {error}");
                return;
            }
        };
        for slot in &mut self.listeners {
            if slot
                .as_ref()
                .is_some_and(|open| !wanted.contains(&(open.address, open.role.clone())))
                && let Some(mut listener) = slot.take()
            {
                let _ = self.poll.registry().deregister(&mut listener.socket);
                log::info!("stopped listening on {}", listener.address);
            }
        }
        if let Err(error) = self.open_listeners(opened) {
            log::error!("reload: cannot register a new listener: {error}");
        }
        self.apply_listener_options(&loaded.config);

        let mut pools: Vec<Pool> = loaded.config.pools.iter().map(Pool::new).collect();
        // Where each old (pool, server) lives now, if it still does.
        let mut moved: Vec<Vec<Option<(usize, usize)>>> = Vec::new();
        let mut pool_moved: Vec<Option<usize>> = Vec::new();
        for old in &self.pools {
            let new_index = pools.iter().position(|pool| pool.name == old.name);
            pool_moved.push(new_index);
            moved.push(
                old.servers()
                    .iter()
                    .map(|server| {
                        let pool = new_index?;
                        let position = pools[pool]
                            .servers()
                            .iter()
                            .position(|new| new.address == server.address)?;
                        Some((pool, position))
                    })
                    .collect(),
            );
            if let Some(new_index) = new_index {
                pools[new_index].inherit(old);
            }
        }
        let mut to_drive = Vec::new();
        for (key, session) in self.sessions.iter_mut() {
            if session.follow_reload(&moved, &pool_moved) {
                to_drive.push(key);
            }
        }
        log_pools(&pools);
        self.pools = pools;
        self.router = Router::new(&loaded, &self.pools);
        self.buffer_bytes = loaded.config.buffer_bytes;
        self.max_header_bytes = loaded.config.max_header_bytes;
        self.timeouts = loaded.config.timeouts;
        self.shutdown_timeout = loaded.config.shutdown_timeout;
        self.max_connections = loaded.config.max_connections;
        self.max_body_bytes = loaded.config.max_body_bytes;
        self.forwarding = loaded.config.forwarding.clone();
        self.policy = loaded.config.policy.clone();
        self.admin = loaded.config.admin.clone();
        if loaded.config.request_id != self.request_ids.is_some() {
            self.request_ids = loaded.config.request_id.then(RequestIds::new);
        }
        self.reconfigure_access_log(loaded.config.access_log.as_ref());
        self.idle.configure(
            loaded.config.backend_keepalive,
            loaded.config.timeouts.backend_keepalive,
        );
        self.generation += 1;
        self.schedule_health_checks();
        for key in to_drive {
            self.drive(key, None);
        }
        log::info!("reload done");
    }

    /// A reload that changes `access_log` or its format opens the new log;
    /// if it cannot, the old one stays.
    fn reconfigure_access_log(&mut self, wanted: Option<&AccessLogConfig>) {
        if self.access_log.as_ref().map(AccessLog::config) == wanted {
            return;
        }
        if let Some(old) = &mut self.access_log {
            old.flush();
        }
        match wanted.map(AccessLog::open).transpose() {
            Ok(access_log) => self.access_log = access_log,
            Err(error) => log::error!("reload: {error}; the access log stays as it was"),
        }
    }

    /// SIGUSR1: logrotate moved the file away; start a new one.
    fn reopen_access_log(&mut self) {
        if let Some(access_log) = &mut self.access_log {
            match access_log.reopen() {
                Ok(()) => log::info!("SIGUSR1: access log reopened"),
                Err(error) => log::error!("SIGUSR1: {error}; still writing to the old file"),
            }
        }
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Some(access_log) = &mut self.access_log {
                access_log.flush();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.sessions.is_empty() {
                    log::info!(
                        "shutdown: every request finished, exiting ({} requests read, {} connections closed unanswered)",
                        self.counters.requests,
                        self.counters.unanswered
                    );
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    log::warn!(
                        "shutdown: {} connections still open after {:?}, exiting",
                        self.sessions.len(),
                        self.shutdown_timeout
                    );
                    return Ok(());
                }
            }
            let now = Instant::now();
            let mut timeout = self.timers.timeout(now);
            if let Some(deadline) = self.shutdown_deadline {
                let until = deadline.saturating_duration_since(now);
                timeout = Some(timeout.map_or(until, |timeout| timeout.min(until)));
            }
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            timer::tick();
            for event in events.iter() {
                let token = event.token();
                if token == SIGNAL_TOKEN {
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
                    continue;
                }
                if token == WAKER_TOKEN {
                    self.obey_other_workers();
                    continue;
                }
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
                if let Some(fd) = connection::backend_fd(token) {
                    match self.idle.owner(fd) {
                        Owner::Session(key) => {
                            if self
                                .sessions
                                .get_mut(key)
                                .is_some_and(|session| session.mark_backend_ready(fd, event))
                            {
                                self.drive(key, None);
                            }
                        }
                        Owner::Idle(key) => self.idle.on_event(key),
                        Owner::Nobody => {}
                    }
                    continue;
                }
                // A session closed earlier in this batch may have left events.
                let key = token.0;
                if let Some(session) = self.sessions.get_mut(key) {
                    session.mark_client_ready(event);
                    self.drive(key, None);
                }
            }
            if self.timers.len() > 2 * (self.sessions.len() + self.idle.len()) + 1024 {
                let (sessions, idle) = (&self.sessions, &self.idle);
                self.timers.retain(|at, deadline| match deadline {
                    Deadline::Session(key) => sessions
                        .get(key)
                        .is_some_and(|session| session.timer_at() == Some(at)),
                    Deadline::IdleBackend { key, serial } => idle.is_current(key, serial),
                    _ => true,
                });
            }
            let now = timer::tick();
            while let Some(deadline) = self.timers.pop_expired(now) {
                match deadline {
                    Deadline::Session(key) => self.drive(key, Some(now)),
                    Deadline::HealthDue {
                        generation,
                        pool,
                        server,
                    } if generation == self.generation => self.check(pool, server),
                    Deadline::HealthDue { .. } => {}
                    Deadline::ResumeAccept => {}
                    Deadline::IdleBackend { key, serial } => self.idle.expire(key, serial, now),
                    Deadline::Publish => self.publish(now),
                    Deadline::HealthTimeout(key) => {
                        if let Some(verdict) = self.health_checks.expire(key, now) {
                            self.record(verdict);
                        }
                    }
                }
            }
            self.resume_accepting(now);
        }
    }

    /// Gives every listener the TLS config and accept mode its entry has:
    /// certificates were read with the config, so a reload renews them (and
    /// a config with a bad certificate never gets here).
    fn apply_listener_options(&mut self, config: &Config) {
        for listener in self.listeners.iter_mut().flatten() {
            let wanted = config
                .listen
                .iter()
                .find(|wanted| wanted.address == listener.address);
            listener.tls = wanted.and_then(|wanted| wanted.tls.clone());
            let defer = wanted.is_none_or(|wanted| wanted.defer_accept);
            if let Err(error) = defer_accept(&listener.socket, defer) {
                log::warn!("{}: cannot set TCP_DEFER_ACCEPT: {error}", listener.address);
            }
        }
    }

    /// Worker 0 drained or enabled a server: do the same here.
    fn obey_other_workers(&mut self) {
        let Some(shared) = &self.worker.shared else {
            return;
        };
        for command in shared.take_commands(self.worker.index) {
            match command {
                Command::SetDrained {
                    pool,
                    server,
                    drained,
                } => {
                    if let Some(pool) = self.pools.iter_mut().find(|mine| mine.name == pool) {
                        pool.set_drained(server, drained);
                    }
                }
            }
        }
    }

    /// Hands a copy of this worker's counters to worker 0's admin port.
    fn publish(&mut self, now: Instant) {
        if let Some(shared) = &self.worker.shared {
            let snapshot = Snapshot {
                totals: self.totals.clone(),
                pools: self.pools.clone(),
            };
            shared.publish(self.worker.index, snapshot);
        }
        self.timers.schedule(now + PUBLISH_EVERY, Deadline::Publish);
    }

    /// Every address to listen on, and what its connections are for (the
    /// admin port only in worker 0).
    fn listen_addresses(&self, config: &Config) -> Vec<(SocketAddr, Role)> {
        let proxied = config.listen.iter().map(|listener| {
            let role = match &listener.mode {
                ListenMode::Http => Role::Http {
                    accept_proxy: listener.accept_proxy,
                },
                ListenMode::Tcp { pool } => Role::Tcp {
                    pool: pool.clone(),
                    listen: listener.address,
                    accept_proxy: listener.accept_proxy,
                },
            };
            (listener.address, role)
        });
        let admin = config.admin.as_ref().filter(|_| self.worker.index == 0);
        proxied
            .chain(admin.map(|admin| (admin.address, Role::Admin)))
            .collect()
    }

    /// Binds listeners; with several workers each binds the same addresses
    /// with `SO_REUSEPORT` and the kernel spreads new connections.
    fn bind_all(&self, addresses: &[(SocketAddr, Role)]) -> io::Result<Vec<Listener>> {
        let reuse_port = self.worker.count > 1;
        addresses
            .iter()
            .map(|(address, role)| {
                let address = *address;
                bind(address, reuse_port && *role != Role::Admin)
                    .map(|socket| Listener {
                        address,
                        role: role.clone(),
                        socket,
                        tls: None,
                    })
                    .map_err(|error| {
                        io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
                    })
            })
            .collect()
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
        for slot in &mut self.listeners {
            if let Some(mut listener) = slot.take() {
                let _ = self.poll.registry().deregister(&mut listener.socket);
            }
        }
        self.shutdown_deadline = Some(Instant::now() + self.shutdown_timeout);
        let keys: Vec<usize> = self.sessions.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.drive(key, None);
        }
    }

    /// Starts the active check of one server, and its timeout.
    fn check(&mut self, pool: usize, server: usize) {
        let Some(config) = self.pools[pool].health.clone() else {
            return;
        };
        let address = self.pools[pool].address(server);
        let generation = self.generation;
        match self.health_checks.start(
            self.poll.registry(),
            generation,
            pool,
            server,
            address,
            &config,
        ) {
            Ok((key, deadline)) => self.timers.schedule(deadline, Deadline::HealthTimeout(key)),
            Err(verdict) => self.record(verdict),
        }
    }

    /// Counts a finished check and schedules the next one.
    fn record(&mut self, verdict: Verdict) {
        if verdict.generation != self.generation {
            return; // a check of a config that was since replaced
        }
        let pool = &mut self.pools[verdict.pool];
        pool.record_check(verdict.server, verdict.healthy, &verdict.why);
        if let Some(config) = &pool.health {
            let deadline = Deadline::HealthDue {
                generation: verdict.generation,
                pool: verdict.pool,
                server: verdict.server,
            };
            self.timers
                .schedule(Instant::now() + config.interval, deadline);
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
                    policy: &self.policy,
                    admin: self.admin.as_ref(),
                    max_header_bytes: self.max_header_bytes,
                    timeouts: &self.timeouts,
                    draining: self.shutdown_deadline.is_some(),
                    max_body_bytes: self.max_body_bytes,
                    counters: &mut self.counters,
                    timers: &mut self.timers,
                    wakeups: &mut self.wakeups,
                    forwarding: &self.forwarding,
                    request_ids: self.request_ids.as_mut(),
                    totals: &mut self.totals,
                    access_log: self.access_log.as_mut(),
                    idle: &mut self.idle,
                    worker: &self.worker,
                };
                let expired_and_closed = expired
                    .take()
                    .is_some_and(|now| !session.expire(&mut context, now));
                if expired_and_closed || !session.drive(&mut context) {
                    self.sessions.remove(key);
                    self.totals.connections -= 1;
                }
            }
            next = self.wakeups.pop();
            if let Some(woken) = next.and_then(|woken| self.sessions.get_mut(woken)) {
                woken.wake();
            }
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            if self.sessions.len() >= self.max_connections {
                if self.accept_warnings.ready(Instant::now()) {
                    log::warn!(
                        "{} connections: at max_connections, accepting paused",
                        self.sessions.len()
                    );
                }
                self.pause_accepting(None);
                return;
            }
            let (accepted, role, tls) = match self.listeners.get(index) {
                Some(Some(listener)) => (
                    listener.socket.accept(),
                    listener.role.clone(),
                    listener.tls.clone(),
                ),
                _ => return,
            };
            let (stream, address) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of descriptors or memory: the backlog keeps the
                    // rest; try again shortly instead of spinning.
                    let now = Instant::now();
                    if self.accept_warnings.ready(now) {
                        log::warn!("accept failed: {error}; pausing accepts for {ACCEPT_PAUSE:?}");
                    }
                    self.pause_accepting(Some(now + ACCEPT_PAUSE));
                    return;
                }
            };
            // Linux gives accepted sockets the listener's TCP_NODELAY.
            #[cfg(not(target_os = "linux"))]
            let _ = stream.set_nodelay(true);
            let entry = self.sessions.vacant_entry();
            let key = entry.key();
            let tls = match tls.map(rustls::ServerConnection::new).transpose() {
                Ok(tls) => tls.map(Box::new),
                Err(error) => {
                    log::warn!("{address}: cannot start TLS: {error}");
                    continue;
                }
            };
            entry.insert(Session::new(
                key,
                stream,
                address,
                self.buffer_bytes,
                role,
                tls,
            ));
            self.totals.connections += 1;
            self.totals.connections_total += 1;
            // Reads what already came and registers the socket.
            self.drive(key, None);
        }
    }

    /// Takes the listeners out of the poll set, so a full or failing accept
    /// never turns into a busy loop; `until` is when to try again.
    fn pause_accepting(&mut self, until: Option<Instant>) {
        if let Some(until) = until {
            self.accept_paused_until = Some(until);
            self.timers.schedule(until, Deadline::ResumeAccept);
        }
        if !self.accepting {
            return;
        }
        self.accepting = false;
        for listener in self.listeners.iter_mut().flatten() {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
    }

    /// Puts the listeners back once there is room and any pause is over.
    fn resume_accepting(&mut self, now: Instant) {
        let ready = !self.accepting
            && self.shutdown_deadline.is_none()
            && self.sessions.len() < self.max_connections
            && self.accept_paused_until.is_none_or(|until| now >= until);
        if !ready {
            return;
        }
        self.accepting = true;
        self.accept_paused_until = None;
        for (index, slot) in self.listeners.iter_mut().enumerate() {
            if let Some(listener) = slot {
                let _ = self.poll.registry().register(
                    &mut listener.socket,
                    Token(LISTENER_BASE + index),
                    Interest::READABLE,
                );
            }
        }
        log::info!("accepting connections again");
    }
}

fn bind(address: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    // Answers go out as soon as they are written; accepted sockets inherit this.
    socket.set_tcp_nodelay(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(libc::SOMAXCONN)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// With `on`, the kernel queues a connection for accept only once its first
/// bytes arrived, so accepting never wakes the loop for a socket with
/// nothing to read. A client that stays silent is handed over after about a
/// second anyway, and the request-head timeout runs from then.
fn defer_accept(listener: &TcpListener, on: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let seconds: libc::c_int = on.into();
        // SAFETY: a valid descriptor and an int option of the size given.
        let result = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&seconds as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, on);
    Ok(())
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
