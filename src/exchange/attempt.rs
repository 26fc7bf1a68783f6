//! Getting a request (or a tcp connection) to a server: the attempt, with
//! the servers it tried and the lease of the one it holds; dialing, from a
//! kept connection or a new non-blocking connect; and the one retry policy
//! that says what each kind of failure leads to.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use mio::Interest;
use mio::net::TcpStream;

use crate::balancer::{Lease, Outcome, Pick};
use crate::reply::ErrorReply;
use crate::services::Services;
use crate::timer;
use crate::token::TokenKind;

use crate::transport::Endpoint;

/// Methods whose repetition has the effect of one (RFC 9110 §9.2.2).
/// A safe method (RFC 9110 §9.2.1): its answer changes nothing stored.
pub fn is_safe(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Where a request goes.
#[derive(Debug)]
pub enum Target {
    /// A pool, and the hash key `route` gave (else the Host is the key).
    Pool { pool: usize, key: Option<Vec<u8>> },
    /// The one address `route` named.
    Address(SocketAddr),
    /// The pool was removed by a reload while the request was on its way.
    Removed,
}

/// One request's way to a server: the lease of the server it holds, and
/// the servers of its pool it already tried.
#[derive(Debug)]
pub struct Attempt {
    pub target: Target,
    pub lease: Option<Lease>,
    tried: Vec<usize>,
    /// Times the request was sent again after an answer or a broken
    /// connection (failed connects, which sent nothing, are not counted).
    resent: u32,
}

/// What a request's pool lets it be sent again after: its `retry_on`, and
/// whether its `retries` are not used up. Nothing for a direct address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resends {
    pub reset: bool,
    pub timeout: bool,
    /// Retries are left.
    pub left: bool,
}

/// How a kept or new connection came to carry this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// New, and may be kept for later requests.
    New,
    /// Kept from an earlier request: the backend may have closed it just as
    /// rsp took it.
    Kept,
    /// It began with this client's PROXY header: it serves only this
    /// client, and is never kept.
    Private,
}

/// What became of a backend connection's reading side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    Open,
    /// The backend closed its side (FIN).
    Ended,
    /// The connection broke (RST or another read error).
    Reset,
}

/// A backend connection serving a request.
pub struct Backend {
    pub endpoint: Endpoint,
    pub server: SocketAddr,
    pub origin: Origin,
    pub read: ReadEnd,
    /// The backend stopped taking what rsp writes (it may still answer).
    pub write_failed: bool,
    /// Some bytes of a response arrived: the request may not be sent again.
    pub response_seen: bool,
}

impl Backend {
    /// Nothing about the connection itself keeps it from serving the next
    /// request: it is not private, both sides are open, and no byte is
    /// waiting unread (bytes past a response would be read as the next one's).
    /// A socket still marked readable (its last read filled the buffer
    /// exactly, as a large body's often does) is asked with a peek whether
    /// anything really waits.
    pub fn is_reusable(&mut self) -> bool {
        if self.endpoint.readable && !self.endpoint.end_reported {
            let mut probe = [0u8; 1];
            match self.endpoint.stream.peek(&mut probe) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    self.endpoint.readable = false;
                }
                Ok(0) => self.read = ReadEnd::Ended,
                _ => {}
            }
        }
        self.origin != Origin::Private
            && self.read == ReadEnd::Open
            && !self.write_failed
            && !self.endpoint.readable
            && !self.endpoint.end_reported
    }

    /// Reads what the backend sent into `buffer`, while it has room: an
    /// end or an error is remembered in `read`. Returns whether anything
    /// happened.
    pub fn read_into(&mut self, buffer: &mut crate::buffer::Buffer, client: SocketAddr) -> bool {
        if !self.endpoint.readable || self.read != ReadEnd::Open || buffer.is_full() {
            return false;
        }
        match self.endpoint.fill(buffer) {
            Ok(fill) => {
                self.response_seen |= fill.read > 0;
                if fill.eof {
                    self.read = ReadEnd::Ended;
                }
                fill.read > 0 || fill.eof
            }
            Err(error) => {
                log::debug!("{client}: backend {} read error: {error}", self.server);
                self.read = ReadEnd::Reset;
                true
            }
        }
    }

    /// The backend's token: the same for the socket's whole life.
    pub fn token(&self) -> mio::Token {
        TokenKind::Backend(self.endpoint.stream.as_raw_fd()).token()
    }
}

/// Where dialing got to.
pub enum Dial {
    /// Every server of the pool is at `max_conns`: waiting for a slot;
    /// or (`collapsed`) another request is fetching the same response for
    /// the cache, and this one waits for it, then looks again.
    Queued {
        deadline: Instant,
        woken: bool,
        collapsed: bool,
    },
    /// A connect under way (or a kept connection, ready at once), failing
    /// at `deadline`.
    Connecting { backend: Backend, deadline: Instant },
}

impl Dial {
    /// The backend socket a connect is under way on.
    pub fn backend_mut(&mut self) -> Option<&mut Endpoint> {
        match self {
            Dial::Connecting { backend, .. } => Some(&mut backend.endpoint),
            Dial::Queued { .. } => None,
        }
    }

    /// A slot freed in the pool this dial waits on.
    pub fn wake(&mut self) {
        if let Dial::Queued { woken, .. } = self {
            *woken = true;
        }
    }
}

/// Why a try failed, as the retry policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused, unreachable or timed out connecting: nothing was sent.
    Connect,
    /// A kept connection closed before any byte of a response: the race
    /// every connection-reusing proxy has; the server is not to blame.
    KeptConnectionClosed,
    /// Closed or reset before a complete response head, or sent an invalid
    /// one.
    NoResponse,
    /// No response head within `backend_response`.
    Timeout,
    /// Broke after part of the response reached the client.
    MidResponse,
}

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The same server, on a new connection, still holding the lease.
    Reconnect,
    /// Another server of the pool.
    OtherServer,
    /// rsp answers the client itself.
    Answer(ErrorReply),
    /// Part of the answer went out: the client's connection is cut.
    Abort,
}

impl Failure {
    /// How the server's lease ends (when the attempt moves on).
    pub fn outcome(self) -> Outcome {
        match self {
            Failure::Connect => Outcome::ConnectFailed,
            Failure::KeptConnectionClosed => Outcome::Ok,
            _ => Outcome::Failed,
        }
    }
}

impl Attempt {
    /// A connection to `backend` is under way: the transaction learns
    /// which server, and what goes first is written to `out` (a PROXY
    /// header, when the pool asks for one).
    pub fn begin_on(
        &self,
        backend: &Backend,
        services: &Services,
        client: &super::Client,
        transaction: Option<&mut crate::transaction::Transaction>,
        out: &mut Vec<u8>,
    ) {
        if let Some(transaction) = transaction {
            transaction.backend = Some(backend.server);
            transaction.server = self.lease.as_ref().map(|lease| lease.server());
        }
        let send_proxy = self
            .lease
            .as_ref()
            .and_then(|lease| services.pools[lease.pool()].send_proxy);
        if let Some(version) = send_proxy {
            crate::proxy_protocol::write(out, version, client.address, client.destination());
        }
    }

    pub fn new(target: Target) -> Attempt {
        Attempt {
            target,
            lease: None,
            tried: Vec::new(),
            resent: 0,
        }
    }

    /// What the pool allows this attempt to be sent again after.
    pub fn resends(&self, pools: &[crate::balancer::Pool]) -> Resends {
        match &self.target {
            Target::Pool { pool, .. } => {
                let pool = &pools[*pool];
                Resends {
                    reset: pool.retry_on.reset,
                    timeout: pool.retry_on.timeout,
                    left: self.resent < pool.retries && self.untried(pool),
                }
            }
            _ => Resends::default(),
        }
    }

    /// Another server of `pool` than those tried could take the request.
    fn untried(&self, pool: &crate::balancer::Pool) -> bool {
        let current = self.lease.as_ref().map(Lease::server);
        (0..pool.servers().len()).any(|server| {
            Some(server) != current && !self.tried.contains(&server) && pool.may_serve(server)
        })
    }

    /// Why the request may not go to another server after a complete
    /// answer (a `retry_on` status, `respond()`'s "retry"), if it may not:
    /// `replayable` says it is idempotent and bodiless.
    pub fn refuse_resend(
        &self,
        pools: &[crate::balancer::Pool],
        replayable: bool,
    ) -> Option<String> {
        let Target::Pool { pool, .. } = &self.target else {
            return Some("it went to an address, not a pool".into());
        };
        let pool = &pools[*pool];
        if !replayable {
            return Some("it is not idempotent or has a body".into());
        }
        if self.resent >= pool.retries {
            return Some(format!("the pool's {} retries are used up", pool.retries));
        }
        if !self.untried(pool) {
            return Some("no other server of the pool can take it".into());
        }
        None
    }

    /// The retry policy. `replayable`: the request is idempotent, has no
    /// body, and no byte of an answer came back, so sending it again has
    /// the effect of sending it once.
    /// `resends`: what the pool's `retry_on` and `retries` allow.
    pub fn on_failure(&self, failure: Failure, replayable: bool, resends: Resends) -> Next {
        let pooled = matches!(self.target, Target::Pool { .. });
        let resend = pooled && replayable && resends.left;
        match failure {
            Failure::Connect if pooled => Next::OtherServer,
            Failure::Connect => Next::Answer(ErrorReply::BadGateway),
            Failure::KeptConnectionClosed => Next::Reconnect,
            Failure::NoResponse if resend && resends.reset => Next::OtherServer,
            Failure::NoResponse => Next::Answer(ErrorReply::BadGateway),
            Failure::Timeout if resend && resends.timeout => Next::OtherServer,
            Failure::Timeout => Next::Answer(ErrorReply::GatewayTimeout),
            Failure::MidResponse => Next::Abort,
        }
    }

    /// Gives the lease back (if any) with `outcome`, waking the session a
    /// freed slot lets go.
    pub fn release(&mut self, services: &mut Services, outcome: Outcome) {
        if let Some(lease) = self.lease.take()
            && let Some(waiting) = lease.release(&mut services.pools, outcome)
        {
            services.wakeups.push(waiting);
        }
    }

    /// The server failed this try: its lease ends with the failure's
    /// outcome, and another server of the pool is to be tried.
    pub fn move_on(&mut self, services: &mut Services, failure: Failure) {
        if failure != Failure::Connect {
            self.resent += 1;
        }
        self.leave(services, failure.outcome());
    }

    /// The server's complete answer is not the one the client gets: the
    /// request goes to another server, the lease ends with `outcome`.
    pub fn resend(&mut self, services: &mut Services, outcome: Outcome) {
        self.resent += 1;
        self.leave(services, outcome);
    }

    fn leave(&mut self, services: &mut Services, outcome: Outcome) {
        if let Some(lease) = &self.lease {
            let server = lease.server();
            if let Some(server) = services.pools[lease.pool()].server_mut(server) {
                server.stats.retries += 1;
            }
            self.tried.push(server);
        }
        self.release(services, outcome);
    }

    /// A reload renumbered the pools (`moved[pool][server]`, `None` when
    /// removed): the lease follows its server, or ends uncounted with it.
    pub fn follow_reload(
        &mut self,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
    ) -> bool {
        self.tried.clear();
        if let Some(lease) = &mut self.lease {
            match moved[lease.pool()][lease.server()] {
                Some((pool, server)) => lease.moved(pool, server),
                None => {
                    if let Some(lease) = self.lease.take() {
                        lease.forget();
                    }
                }
            }
        }
        match &mut self.target {
            Target::Pool { pool, .. } => match pool_moved[*pool] {
                Some(new) => {
                    *pool = new;
                    true
                }
                None => {
                    self.target = Target::Removed;
                    false
                }
            },
            Target::Address(_) => true,
            Target::Removed => false,
        }
    }

    /// Finds a server and starts connecting: a kept connection when
    /// `reuse` allows, else a new one. A server that cannot even be
    /// connected to is tried no more, and the next is picked. `Err` is the
    /// answer for the client when no server can be had.
    pub fn dial(
        &mut self,
        services: &mut Services,
        request: &DialRequest,
    ) -> Result<Dial, ErrorReply> {
        loop {
            let server = match &self.target {
                Target::Address(address) if services.settings.is_own(*address) => {
                    crate::client_log!(
                        log::Level::Warn,
                        "{}: 508, route() sent the request to {address}, rsp's own listener: a forwarding loop",
                        request.client
                    );
                    return Err(ErrorReply::LoopDetected);
                }
                Target::Address(address) => *address,
                Target::Removed => return Err(ErrorReply::NoRoute),
                Target::Pool { pool, key } => {
                    let index = *pool;
                    let key = key.as_deref().unwrap_or(request.host);
                    let pool = &mut services.pools[index];
                    match pool.pick(Some(key), &self.tried, request.waited) {
                        Pick::Server(server) => {
                            self.lease = Some(Lease::new(index, server));
                            pool.address(server)
                        }
                        Pick::Full => {
                            pool.enqueue(request.waiter, request.waited);
                            return Ok(Dial::Queued {
                                deadline: timer::now() + pool.queue_timeout,
                                woken: false,
                                collapsed: false,
                            });
                        }
                        Pick::NoneUp if self.tried.is_empty() => {
                            // Drained servers take no new requests even
                            // when they are all that is left (backups stand
                            // in first): draining says "not this server".
                            let drained = pool
                                .servers()
                                .iter()
                                .filter(|server| server.drained)
                                .count();
                            crate::client_log!(
                                log::Level::Warn,
                                "{}: 503, no server of pool {} is up ({drained} of {} drained)",
                                request.client,
                                pool.name,
                                pool.servers().len()
                            );
                            return Err(ErrorReply::NoRoute);
                        }
                        Pick::NoneUp => {
                            crate::client_log!(
                                log::Level::Warn,
                                "{}: 502, every server of pool {} failed",
                                request.client,
                                pool.name
                            );
                            return Err(ErrorReply::BadGateway);
                        }
                    }
                }
            };
            match self.connect(services, request, server) {
                Ok(backend) => {
                    return Ok(Dial::Connecting {
                        backend,
                        deadline: timer::now() + services.settings.timeouts.connect,
                    });
                }
                Err(error) => self.connect_failed(services, request.client, server, &error)?,
            }
        }
    }

    /// A new connection to `server` for the lease this attempt holds: a
    /// kept connection it took was closed under it. When even that fails,
    /// the next server of the pool is picked.
    pub fn dial_to(
        &mut self,
        services: &mut Services,
        request: &DialRequest,
        server: SocketAddr,
    ) -> Result<Dial, ErrorReply> {
        match self.connect(services, request, server) {
            Ok(backend) => Ok(Dial::Connecting {
                backend,
                deadline: timer::now() + services.settings.timeouts.connect,
            }),
            Err(error) => {
                self.connect_failed(services, request.client, server, &error)?;
                self.dial(services, request)
            }
        }
    }

    /// The one answer to a connect that failed (at once, later, or by its
    /// timeout): nothing was sent, so the request may go to another server
    /// of its pool (`Ok`: dial again); else the lease ends and the client
    /// gets 502.
    pub fn connect_failed(
        &mut self,
        services: &mut Services,
        client: SocketAddr,
        server: SocketAddr,
        error: &io::Error,
    ) -> Result<(), ErrorReply> {
        match self.on_failure(Failure::Connect, false, Resends::default()) {
            Next::OtherServer => {
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: cannot connect to {server}: {error}; trying another server"
                );
                self.move_on(services, Failure::Connect);
                Ok(())
            }
            _ => {
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: 502, cannot connect to {server}: {error}"
                );
                self.release(services, Outcome::ConnectFailed);
                Err(ErrorReply::BadGateway)
            }
        }
    }

    fn connect(
        &self,
        services: &mut Services,
        request: &DialRequest,
        server: SocketAddr,
    ) -> io::Result<Backend> {
        let private = self
            .lease
            .as_ref()
            .is_some_and(|lease| services.pools[lease.pool()].send_proxy.is_some());
        let kept = if request.reuse && !private {
            services.idle.take(server, request.waiter)
        } else {
            None
        };
        if let Some(endpoint) = kept {
            return Ok(Backend {
                endpoint,
                server,
                origin: Origin::Kept,
                read: ReadEnd::Open,
                write_failed: false,
                response_seen: false,
            });
        }
        let mut stream = TcpStream::connect(server)?;
        // Until the connect completes, WRITABLE is what reports it.
        let interest = Interest::READABLE | Interest::WRITABLE;
        let token = TokenKind::Backend(stream.as_raw_fd()).token();
        services.registry.register(&mut stream, token, interest)?;
        services.idle.claim(stream.as_raw_fd(), request.waiter);
        if let Some(lease) = &self.lease
            && let Some(pool_server) = services.pools[lease.pool()].server_mut(lease.server())
        {
            pool_server.stats.connections += 1;
        }
        Ok(Backend {
            endpoint: Endpoint::new(stream, Some(interest), false),
            server,
            origin: if private {
                Origin::Private
            } else {
                Origin::New
            },
            read: ReadEnd::Open,
            write_failed: false,
            response_seen: false,
        })
    }
}

/// What dialing needs to know of the request.
pub struct DialRequest<'a> {
    /// Its place in a pool's queue, and its backend socket's owner in
    /// the idle store's table: the session, or one of its HTTP/2 streams
    /// (`token::waiter`).
    pub waiter: usize,
    /// The client, for log lines.
    pub client: SocketAddr,
    /// The hash key when `route` gave none: the Host.
    pub host: &'a [u8],
    /// A kept connection may carry it (idempotent, no body, not tcp).
    pub reuse: bool,
    /// It already waited in the queue: it goes before newer requests.
    pub waited: bool,
}

/// A non-blocking connect finished, or is still going: `Ok(false)`.
pub fn connect_result(backend: &mut Backend) -> io::Result<bool> {
    if !backend.endpoint.writable {
        return Ok(false);
    }
    let stream = &backend.endpoint.stream;
    let status = match stream.take_error() {
        Ok(Some(error)) | Err(error) => Err(error),
        Ok(None) => stream.peer_addr().map(|_| ()),
    };
    match status {
        Ok(()) => {
            let _ = stream.set_nodelay(true);
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::NotConnected => {
            backend.endpoint.writable = false;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
#[path = "attempt_tests.rs"]
mod tests;
