//! A session: one client connection, and the backend connection serving its
//! current request. The request/response cycle is the `Exchange` enum; each
//! direction's bytes sit in one bounded `Buffer`.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use std::time::Instant;

use crate::access_log::AccessLog;
use crate::admin;
use crate::balancer::{Outcome, Pick, Pool};
use crate::buffer::Buffer;
use crate::config::{AdminConfig, Timeouts};
use crate::forwarding::Forwarding;
use crate::framing::{BodyFramer, Framing, FramingError};
use crate::http::{self, ClientSide, HeadError, RequestHead, RequestPolicy};
use crate::idle::IdleConnections;
use crate::proxy_protocol;
use crate::reply::{ErrorReply, Shape};
use crate::request_id::RequestIds;
use crate::router::{ConnectionView, RequestView, Route, RouteError, Router};
use crate::stats::Totals;
use crate::target::TargetError;
use crate::timer::{self, Deadline, Timers};
use crate::transaction::{Request, Transaction};
use crate::workers::Worker;

/// What a session needs from the loop that owns it.
pub struct Context<'a> {
    pub registry: &'a Registry,
    pub router: &'a Router,
    pub pools: &'a mut [Pool],
    /// How request heads are read: normalization, underscores, upgrades.
    pub policy: &'a RequestPolicy,
    /// The admin port's settings, for its sessions.
    pub admin: Option<&'a AdminConfig>,
    pub max_header_bytes: usize,
    pub timeouts: &'a Timeouts,
    pub max_body_bytes: Option<u64>,
    pub counters: &'a mut Counters,
    /// rsp is shutting down: finish exchanges, keep no connection open.
    pub draining: bool,
    pub timers: &'a mut Timers,
    /// Queued sessions a freed server slot lets go, for the loop to drive.
    pub wakeups: &'a mut Vec<usize>,
    pub forwarding: &'a Forwarding,
    /// `None` when request ids are switched off.
    pub request_ids: Option<&'a mut RequestIds>,
    pub totals: &'a mut Totals,
    pub access_log: Option<&'a mut AccessLog>,
    /// Backend connections kept open between requests.
    pub idle: &'a mut IdleConnections,
    /// Which worker this is, for the admin port.
    pub worker: &'a Worker,
}

/// Ends a pool server's part in an exchange; a freed slot wakes the
/// oldest request waiting in that pool's queue.
fn release(context: &mut Context, upstream: Option<&Upstream>, outcome: Outcome) {
    if let Some(upstream) = upstream {
        let pool = &mut context.pools[upstream.pool];
        pool.release(upstream.server, outcome);
        if let Some(waiting) = pool.next_waiting() {
            context.wakeups.push(waiting);
        }
    }
}

/// A request moves from this upstream's server to another.
fn count_retry(context: &mut Context, upstream: &Upstream) {
    if let Some(server) = context.pools[upstream.pool].server_mut(upstream.server) {
        server.stats.retries += 1;
    }
}

/// Methods whose repetition has the effect of one (RFC 9110 §9.2.2).
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Requests seen by the loop, so shutdown can say whether any was lost.
#[derive(Debug, Default)]
pub struct Counters {
    /// Request heads read (answered or not).
    pub requests: u64,
    /// Connections closed while a request on them was still unanswered.
    pub unanswered: u64,
}

/// What a client connection is for, from the listener that accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// HTTP requests, each routed by `route(req)`.
    Http { accept_proxy: bool },
    /// The admin API: answered by `admin`, never routed.
    Admin,
    /// Raw bytes to a server of `pool`, or of the pool `route(conn)` names.
    Tcp {
        pool: Option<String>,
        listen: SocketAddr,
        accept_proxy: bool,
    },
}

/// A client socket's token is its session's slab key.
pub fn client_token(key: usize) -> Token {
    Token(key)
}

/// Backend sockets' tokens start here: the base plus the descriptor, the
/// same for the socket's whole life (see `idle`).
pub const BACKEND_TOKENS: usize = usize::MAX / 8 * 3;

fn backend_token(stream: &TcpStream) -> Token {
    Token(BACKEND_TOKENS + stream.as_raw_fd() as usize)
}

/// The descriptor of the backend socket a token stands for.
pub fn backend_fd(token: Token) -> Option<RawFd> {
    token
        .0
        .checked_sub(BACKEND_TOKENS)
        .and_then(|fd| RawFd::try_from(fd).ok())
}

/// A socket with the readiness mio last reported. With edge-triggered
/// events a flag stays set until an operation would block.
struct Endpoint {
    stream: TcpStream,
    readable: bool,
    writable: bool,
    /// The poller reported the peer's end (or an error): reported once, so
    /// reads go on past short ones until it is seen.
    end_reported: bool,
    /// `None` until the socket is in the poll set.
    interest: Option<Interest>,
}

impl Endpoint {
    fn mark(&mut self, event: &Event) {
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        self.end_reported |= event.is_read_closed() || event.is_error();
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
    }

    fn update_interest(
        &mut self,
        registry: &Registry,
        token: Token,
        wants_write: bool,
    ) -> io::Result<()> {
        let interest = if wants_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match self.interest {
            Some(registered) if registered == interest => return Ok(()),
            Some(_) => registry.reregister(&mut self.stream, token, interest)?,
            None => registry.register(&mut self.stream, token, interest)?,
        }
        self.interest = Some(interest);
        Ok(())
    }

    /// Writes `head` then `body` in one call; returns how many bytes went,
    /// or `None` when the socket would block. `closing`: the socket closes
    /// once these bytes are out, so the kernel may hold the last partial
    /// segment back and send the end of stream in it.
    fn write_two(&mut self, head: &[u8], body: &[u8], closing: bool) -> io::Result<Option<usize>> {
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        loop {
            let written = if closing {
                send_last(&self.stream, &slices)
            } else {
                self.stream.write_vectored(&slices)
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => return Ok(Some(count)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(None);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }
}

/// `writev` with `MSG_MORE`: a response that ends its connection would
/// otherwise go out as its data segment and then a FIN segment of its own;
/// held back, the close puts the FIN on the data (`tcp_send_fin` marks an
/// unsent tail), one segment and one wakeup of the client fewer per
/// connection. The caller must shut or close the socket once all is sent,
/// which pushes out anything held.
#[cfg(target_os = "linux")]
fn send_last(stream: &TcpStream, slices: &[IoSlice]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; IoSlice is ABI-compatible with iovec
    // and the slices outlive the call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = slices.as_ptr() as *mut libc::iovec;
    message.msg_iovlen = slices.len() as _;
    let flags = libc::MSG_MORE | libc::MSG_NOSIGNAL;
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &message, flags) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_last(mut stream: &TcpStream, slices: &[IoSlice]) -> io::Result<usize> {
    stream.write_vectored(slices)
}

/// Writes to a client, through TLS when the connection has it; `None` when
/// the socket would block. `closing`: see `Endpoint::write_two`.
fn write_to_client(
    tls: &mut Option<Box<rustls::ServerConnection>>,
    client: &mut Endpoint,
    head: &[u8],
    body: &[u8],
    closing: bool,
) -> io::Result<Option<usize>> {
    let Some(tls) = tls else {
        return client.write_two(head, body, closing);
    };
    // rustls holds what the socket did not take; send that first, so its
    // buffer stays bounded.
    if !flush_tls(tls, client)? {
        return Ok(None);
    }
    let count = tls
        .writer()
        .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])?;
    flush_tls(tls, client)?;
    Ok((count > 0).then_some(count))
}

/// Sends the ciphertext rustls has ready; false when the socket blocked.
fn flush_tls(tls: &mut rustls::ServerConnection, client: &mut Endpoint) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut client.stream) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                client.writable = false;
                return Ok(false);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// Bytes rsp itself produced (heads, local replies), sent ahead of any
/// body bytes still in a buffer.
#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    sent: usize,
}

impl Queue {
    fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    fn is_empty(&self) -> bool {
        self.sent == self.bytes.len()
    }

    fn advance(&mut self, count: usize) {
        self.sent += count;
        if self.is_empty() {
            self.bytes.clear();
            self.sent = 0;
        }
    }
}

/// A body being passed through: `claimed` bytes at the front of its buffer
/// belong to it and are not yet written.
#[derive(Debug)]
struct Body {
    framer: BodyFramer,
    claimed: usize,
}

impl Body {
    fn new(framing: &Framing) -> Option<Body> {
        BodyFramer::new(framing).map(|framer| Body { framer, claimed: 0 })
    }

    /// Claims what it can of `data` and returns how many leading bytes of it
    /// belong to this body. At a chunked body's trailer section, once every
    /// claimed byte was written, the section is taken whole: what may be
    /// forwarded of it is appended to `out`, and `trailers` says how many
    /// bytes of `data` to consume for it. `full`: `data` can grow no more,
    /// so a trailer section not complete in it never will be.
    fn claim(
        &mut self,
        data: &[u8],
        full: bool,
        out: &mut Vec<u8>,
    ) -> Result<Claimed, FramingError> {
        if self.claimed == 0 && self.framer.awaits_trailers() {
            return match self.framer.take_trailers(data, out)? {
                Some(trailers) => Ok(Claimed { body: 0, trailers }),
                None if full => Err(FramingError::Trailers),
                None => Ok(Claimed::default()),
            };
        }
        if !self.framer.is_complete() && self.claimed < data.len() {
            self.claimed += self.framer.claim(&data[self.claimed..])?;
        }
        Ok(Claimed {
            body: self.claimed,
            trailers: 0,
        })
    }

    fn is_complete(&self) -> bool {
        self.claimed == 0 && self.framer.is_complete()
    }
}

/// What `Body::claim` found: body bytes to pass on as they are, and the
/// length of a trailer section it took (already queued, to be consumed).
#[derive(Debug, Default, Clone, Copy)]
struct Claimed {
    body: usize,
    trailers: usize,
}

enum ResponseState {
    /// Waiting for the (next) response head; interim 1xx heads loop here.
    Head,
    /// Passing the body on; `None` once it is complete.
    Body {
        body: Option<Body>,
        keep_alive: bool,
        until_close: bool,
        /// The backend will keep the connection open after this response.
        backend_keep_alive: bool,
    },
    /// The backend switched protocols (101): bytes pass both ways as they
    /// come, until both sides have ended. Each flag: that side's writing
    /// end was shut after the other side finished.
    Tunnel {
        client_shut: bool,
        backend_shut: bool,
    },
}

/// The pool server serving an exchange, and those already tried for it.
struct Upstream {
    pool: usize,
    server: usize,
    tried: Vec<usize>,
    /// The hash key `route` returned; without one the Host is the key.
    key: Option<Vec<u8>>,
}

impl Upstream {
    /// Nothing picked or tried yet.
    fn new(pool: usize, key: Option<Vec<u8>>) -> Upstream {
        Upstream {
            pool,
            server: 0,
            tried: Vec::new(),
            key,
        }
    }
}

/// A request being answered by a backend.
struct Proxied {
    backend: Endpoint,
    server: SocketAddr,
    /// `None` when `route` named an address rather than a pool.
    upstream: Option<Upstream>,
    connected: bool,
    /// A kept connection from an earlier request: the backend may have
    /// closed it just as rsp took it.
    reused: bool,
    /// The connection began with this client's PROXY header: never kept.
    private: bool,
    /// The connect fails if it has not completed by then.
    connect_deadline: Instant,
    /// When the whole request had gone to the backend.
    request_sent_at: Option<Instant>,
    backend_eof: bool,
    /// The backend stopped taking the request (it may still answer).
    backend_write_failed: bool,
    backend_reset: bool,
    /// Some bytes of a response arrived: the request may not be sent again.
    response_seen: bool,
    /// Interim (1xx) heads passed on so far.
    interim: u8,
    client_side: ClientSide,
    /// `None` once the whole request body went to the backend.
    request_body: Option<Body>,
    response: ResponseState,
}

enum Exchange {
    /// Waiting for the next request head.
    Idle,
    Proxy(Box<Proxied>),
    /// Every server of the pool is at `max_conns`: wait for a slot.
    Queued {
        upstream: Upstream,
        body: Option<Body>,
        deadline: Instant,
        woken: bool,
    },
    /// rsp answers itself; the request body, if any, is read and dropped.
    Local {
        discard: Option<Body>,
        keep_alive: bool,
    },
    /// Send what is queued for the client, then close.
    Closing,
}

/// Why a session ends.
#[derive(Debug)]
enum End {
    /// Everything was said; close gracefully.
    Done,
    /// The client went away or broke the connection.
    ClientGone(Option<io::Error>),
    /// A response could not be completed; the client sees the connection close.
    Aborted(String),
}

pub struct Session {
    key: usize,
    role: Role,
    /// The connection must start with a PROXY protocol header.
    proxy_header_pending: bool,
    /// The address the client connected to, when a PROXY header said.
    destination: Option<SocketAddr>,
    /// TLS state of a client of a `tls` listener.
    tls: Option<Box<rustls::ServerConnection>>,
    client: Endpoint,
    client_address: SocketAddr,
    client_eof: bool,
    /// Client → backend bytes: request heads and bodies.
    inbound: Buffer,
    /// Backend → client bytes: response heads and bodies.
    outbound: Buffer,
    to_client: Queue,
    to_backend: Queue,
    request: RequestView,
    exchange: Exchange,
    /// When bytes last moved either way.
    last_activity: Instant,
    /// When the first byte of the pending request head arrived.
    head_since: Option<Instant>,
    /// The client has sent something: until then the connection may wait
    /// only `client_header`, not a keep-alive connection's `client_idle`.
    spoke: bool,
    /// The earliest timer this session has in the loop's heap.
    timer_at: Option<Instant>,
    /// The request being answered, for the stats and the access log.
    transaction: Option<Transaction>,
    /// The client's last request asked to close the connection after it,
    /// and was read to its end: closing cannot meet unread bytes.
    client_asked_close: bool,
}

/// Which timeout a session's next deadline enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timeout {
    /// A new connection that never sent a byte.
    Silent,
    ClientIdle,
    ClientHeader,
    Queue,
    Connect,
    BackendResponse,
    Idle,
    Tunnel,
}

impl Session {
    pub fn new(
        key: usize,
        stream: TcpStream,
        client_address: SocketAddr,
        buffer_bytes: usize,
        role: Role,
        tls: Option<Box<rustls::ServerConnection>>,
    ) -> Session {
        let proxy_header_pending = matches!(
            role,
            Role::Http { accept_proxy: true }
                | Role::Tcp {
                    accept_proxy: true,
                    ..
                }
        );
        Session {
            key,
            role,
            proxy_header_pending,
            destination: None,
            tls,
            // A request usually follows the handshake at once: the first
            // drive reads it before the socket is registered, saving a poll
            // round, and registers the socket at its end.
            client: Endpoint {
                stream,
                readable: true,
                writable: true,
                end_reported: false,
                interest: None,
            },
            client_address,
            client_eof: false,
            inbound: Buffer::new(buffer_bytes),
            outbound: Buffer::new(buffer_bytes),
            to_client: Queue::default(),
            to_backend: Queue::default(),
            request: RequestView {
                head: RequestHead::default(),
                client: client_address,
                request_id: String::new(),
                tls: false,
                sni: None,
            },
            exchange: Exchange::Idle,
            last_activity: timer::now(),
            head_since: None,
            spoke: false,
            timer_at: None,
            transaction: None,
            client_asked_close: false,
        }
    }

    /// A request head arrived, or failed to: its record starts and its id
    /// is settled (the client's if valid, else a new one).
    fn begin_transaction(&mut self, context: &mut Context, parsed: bool, bytes: usize) {
        self.client_asked_close = parsed && !self.request.head.keep_alive;
        if let Some(tls) = &self.tls
            && !self.request.tls
        {
            self.request.tls = true;
            self.request.sni = tls.server_name().map(str::to_owned);
        }
        self.request.request_id.clear();
        if self.role == Role::Admin {
            return;
        }
        let started = self.head_since.unwrap_or_else(timer::now);
        let mut transaction = Transaction::new(started, parsed);
        transaction.bytes_received = bytes as u64;
        self.transaction = Some(transaction);
        if let Some(ids) = context.request_ids.as_deref_mut() {
            match self.request.head.request_id().filter(|_| parsed) {
                Some(id) => self.request.request_id.push_str(id),
                None => ids.generate(&mut self.request.request_id),
            }
        }
    }

    /// The current request is over: count it and log it.
    fn finish_transaction(&mut self, context: &mut Context, completed: bool) {
        if let Some(transaction) = self.transaction.take() {
            transaction.finish(
                context.totals,
                context.pools,
                context.access_log.as_deref_mut(),
                Request {
                    client: self.client_address,
                    head: &self.request.head,
                    id: self.request.request_id(),
                    completed,
                },
            );
        }
    }

    pub fn mark_client_ready(&mut self, event: &Event) {
        self.client.mark(event);
    }

    /// An event for backend socket `fd`, if this session still holds it (a
    /// late event of a socket it let go is dropped).
    pub fn mark_backend_ready(&mut self, fd: RawFd, event: &Event) -> bool {
        match &mut self.exchange {
            Exchange::Proxy(proxied) if proxied.backend.stream.as_raw_fd() == fd => {
                proxied.backend.mark(event);
                true
            }
            _ => false,
        }
    }

    /// Makes all the progress the sockets allow. Returns false when the
    /// session is over and has been closed.
    pub fn drive(&mut self, context: &mut Context) -> bool {
        let outcome = self.run(context).and_then(|progress| {
            if progress {
                self.last_activity = timer::now();
            }
            self.schedule_timer(context);
            self.update_interest(context.registry)
                .map_err(|error| End::Aborted(error.to_string()))
        });
        match outcome {
            Ok(()) => true,
            Err(end) => {
                self.close(context, end);
                false
            }
        }
    }

    /// Returns whether anything moved.
    fn run(&mut self, context: &mut Context) -> Result<bool, End> {
        let mut any = false;
        loop {
            let mut progress = self.read_client()?;
            progress |= self.advance(context)?;
            progress |= self.write_backend(context)?;
            progress |= self.read_backend();
            progress |= self.write_client()?;
            if !progress {
                return Ok(any);
            }
            any = true;
        }
    }

    /// Bytes came from the client: a request head (or TLS handshake) that
    /// is not in yet has `client_header` to complete from now.
    fn head_began(&mut self) {
        self.spoke = true;
        if self.head_since.is_none() && matches!(self.exchange, Exchange::Idle) {
            self.head_since = Some(timer::now());
        }
    }

    /// The session's next deadline, from its state.
    fn deadline(&mut self, timeouts: &Timeouts) -> (Instant, Timeout) {
        let idle = (self.last_activity + timeouts.idle, Timeout::Idle);
        match &mut self.exchange {
            Exchange::Idle => match self.head_since {
                None if !self.spoke => {
                    (self.last_activity + timeouts.client_header, Timeout::Silent)
                }
                None if self.inbound.is_empty() => (
                    self.last_activity + timeouts.client_idle,
                    Timeout::ClientIdle,
                ),
                since => (
                    since.unwrap_or(self.last_activity) + timeouts.client_header,
                    Timeout::ClientHeader,
                ),
            },
            Exchange::Queued { deadline, .. } => (*deadline, Timeout::Queue),
            Exchange::Proxy(proxied) if !proxied.connected => {
                (proxied.connect_deadline, Timeout::Connect)
            }
            Exchange::Proxy(proxied) => {
                let sent = proxied.request_body.is_none() && self.to_backend.is_empty();
                if sent && proxied.request_sent_at.is_none() {
                    proxied.request_sent_at = Some(self.last_activity);
                }
                match (&proxied.response, proxied.request_sent_at) {
                    (ResponseState::Head, Some(at)) => {
                        (at + timeouts.backend_response, Timeout::BackendResponse)
                    }
                    (ResponseState::Tunnel { .. }, _) => {
                        (self.last_activity + timeouts.tunnel, Timeout::Tunnel)
                    }
                    _ => idle,
                }
            }
            Exchange::Local { .. } | Exchange::Closing => idle,
        }
    }

    /// Makes sure a timer fires no later than the session's deadline. Timers
    /// that fire early (the deadline moved on) just schedule the next one.
    fn schedule_timer(&mut self, context: &mut Context) {
        let (at, _) = self.deadline(context.timeouts);
        if self.timer_at.is_none_or(|scheduled| at < scheduled) {
            context.timers.schedule(at, Deadline::Session(self.key));
            self.timer_at = Some(at);
        }
    }

    fn read_client(&mut self) -> Result<bool, End> {
        if self.client_eof || self.inbound.is_full() || matches!(self.exchange, Exchange::Closing) {
            return Ok(false);
        }
        // The PROXY header comes before TLS, on the raw socket.
        if self.tls.is_some() && !self.proxy_header_pending {
            return self.read_client_tls();
        }
        if !self.client.readable {
            return Ok(false);
        }
        let fill = self
            .inbound
            .fill_from(&mut self.client.stream, self.client.end_reported)
            .map_err(|error| End::ClientGone(Some(error)))?;
        self.client.readable = !fill.drained;
        self.client_eof |= fill.eof;
        if fill.read > 0 {
            self.head_began();
        }
        Ok(fill.read > 0 || fill.eof)
    }

    /// A TLS client: plaintext rustls already decrypted goes to `inbound`
    /// first, then more ciphertext is read, while `inbound` has room.
    fn read_client_tls(&mut self) -> Result<bool, End> {
        let progress = self.read_tls_records()?;
        if progress {
            // A handshake, like a request head, must finish within
            // client_header: a trickled one is a Slowloris too.
            self.head_began();
        }
        Ok(progress)
    }

    fn read_tls_records(&mut self) -> Result<bool, End> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(false);
        };
        let mut progress = false;
        loop {
            let fill = self
                .inbound
                .fill_from(&mut tls.reader(), true)
                .map_err(|error| End::ClientGone(Some(error)))?;
            progress |= fill.read > 0;
            if fill.eof {
                // close_notify: the client has said all it will.
                self.client_eof = true;
                return Ok(true);
            }
            if self.inbound.is_full() || !self.client.readable {
                return Ok(progress);
            }
            match tls.read_tls(&mut self.client.stream) {
                Ok(0) => {
                    self.client_eof = true;
                    return Ok(true);
                }
                Ok(_) => progress = true,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.client.readable = false;
                    return Ok(progress);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(End::ClientGone(Some(error))),
            }
            if let Err(error) = tls.process_new_packets() {
                // An alert tells the client why; then the connection closes.
                let _ = tls.write_tls(&mut self.client.stream);
                return Err(End::Aborted(format!("TLS: {error}")));
            }
        }
    }

    fn advance(&mut self, context: &mut Context) -> Result<bool, End> {
        match &mut self.exchange {
            Exchange::Idle if self.proxy_header_pending => self.read_proxy_header(),
            Exchange::Idle if matches!(self.role, Role::Tcp { .. }) => self.start_tcp(context),
            Exchange::Idle => self.next_request(context),
            Exchange::Proxy(_) => self.advance_proxy(context),
            Exchange::Queued { woken: false, .. } => Ok(false),
            Exchange::Queued { .. } => {
                if let Exchange::Queued { upstream, body, .. } =
                    std::mem::replace(&mut self.exchange, Exchange::Closing)
                {
                    self.connect_pool(context, upstream, body, true);
                }
                Ok(true)
            }
            Exchange::Local {
                discard,
                keep_alive,
            } => {
                let mut progress = false;
                if let Some(body) = discard {
                    let claimed = body
                        .claim(self.inbound.data(), self.inbound.is_full(), &mut Vec::new())
                        .map_err(|error| End::Aborted(format!("request body: {error}")))?;
                    let count = claimed.body + claimed.trailers;
                    self.inbound.consume(count);
                    if let Some(transaction) = &mut self.transaction {
                        transaction.bytes_received += count as u64;
                    }
                    body.claimed = 0;
                    progress = count > 0;
                    if body.is_complete() {
                        *discard = None;
                    }
                }
                if discard.is_none() && self.to_client.is_empty() {
                    self.exchange = if *keep_alive {
                        Exchange::Idle
                    } else {
                        Exchange::Closing
                    };
                    self.finish_transaction(context, true);
                    progress = true;
                }
                Ok(progress)
            }
            Exchange::Closing if self.to_client.is_empty() => Err(End::Done),
            Exchange::Closing => Ok(false),
        }
    }

    /// `accept_proxy`: the load balancer in front says who the client is.
    /// A connection without a valid header is closed unanswered.
    fn read_proxy_header(&mut self) -> Result<bool, End> {
        if self.inbound.is_empty() {
            return if self.client_eof {
                Err(End::Done)
            } else {
                Ok(false)
            };
        }
        match proxy_protocol::parse(self.inbound.data()) {
            Ok(None) if self.client_eof => Err(End::Done),
            Ok(None) => Ok(false),
            Ok(Some(header)) => {
                self.inbound.consume(header.length);
                if let Some((client, destination)) = header.addresses {
                    self.client_address = client;
                    self.request.client = client;
                    self.destination = Some(destination);
                }
                self.proxy_header_pending = false;
                self.start_tls_after_proxy_header()?;
                Ok(true)
            }
            Err(why) => {
                log::warn!("{}: refused: {why}", self.client_address);
                self.proxy_header_pending = false;
                self.exchange = Exchange::Closing;
                Ok(true)
            }
        }
    }

    /// On a TLS listener, the bytes read past the PROXY header are the
    /// start of the TLS handshake: they go to rustls, not to HTTP.
    fn start_tls_after_proxy_header(&mut self) -> Result<(), End> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        let mut handshake = self.inbound.data();
        while !handshake.is_empty() {
            match tls.read_tls(&mut handshake) {
                Ok(_) => {}
                Err(error) => return Err(End::Aborted(format!("TLS: {error}"))),
            }
            if let Err(error) = tls.process_new_packets() {
                let _ = tls.write_tls(&mut self.client.stream);
                return Err(End::Aborted(format!("TLS: {error}")));
            }
        }
        self.inbound.consume(self.inbound.len());
        Ok(())
    }

    /// A `mode = "tcp"` connection: pick a server of its pool (or of the
    /// pool `route(conn)` names) and pass bytes both ways.
    fn start_tcp(&mut self, context: &mut Context) -> Result<bool, End> {
        self.begin_transaction(context, false, 0);
        let Role::Tcp { pool, listen, .. } = &self.role else {
            return Ok(false);
        };
        let listen = *listen;
        let pool = match pool {
            Some(name) => context.pools.iter().position(|pool| &pool.name == name),
            None => {
                let connection = ConnectionView {
                    client: self.client_address,
                    listen,
                };
                match context.router.route_connection(&connection, context.pools) {
                    Ok(Route::Pool(pool, _)) => Some(pool),
                    Ok(Route::Address(server)) => {
                        self.connect(context, server, None, None, false);
                        return Ok(true);
                    }
                    Ok(Route::Reply(_)) => {
                        log::warn!(
                            "{}: route(conn) returned a reply; a tcp connection needs a pool",
                            self.client_address
                        );
                        None
                    }
                    Err(error) => {
                        log::warn!(
                            "{}: tcp on {listen}: route(conn) chose no pool: {error:?}",
                            self.client_address
                        );
                        None
                    }
                }
            }
        };
        let Some(pool) = pool else {
            self.exchange = Exchange::Closing;
            return Ok(true);
        };
        if let Some(transaction) = &mut self.transaction {
            transaction.pool = Some(pool);
        }
        // Hash balancing keeps a client address on one server.
        let key = Some(self.client_address.ip().to_string().into_bytes());
        self.connect_pool(context, Upstream::new(pool, key), None, false);
        Ok(true)
    }

    /// Parses the next request head, if it is all here, and routes it.
    fn next_request(&mut self, context: &mut Context) -> Result<bool, End> {
        if self.inbound.is_empty() {
            return if self.client_eof || context.draining {
                Err(End::Done)
            } else {
                Ok(false)
            };
        }
        let limit = context.max_header_bytes;
        let parsed = self.request.head.parse(self.inbound.data(), context.policy);
        if !matches!(parsed, Ok(None)) || self.inbound.len() >= limit {
            context.counters.requests += 1;
            let head_length = match parsed {
                Ok(Some(length)) if length <= limit => Some(length),
                _ => None,
            };
            let bytes = head_length.unwrap_or(self.inbound.len());
            self.begin_transaction(context, head_length.is_some(), bytes);
        }
        match parsed {
            Ok(Some(length)) if length <= limit => {
                self.inbound.consume(length);
                self.head_since = None;
                self.dispatch(context);
            }
            Ok(None) if self.inbound.len() < limit => {
                // An unfinished head from a client that left needs no answer.
                return if self.client_eof {
                    Err(End::Done)
                } else {
                    Ok(false)
                };
            }
            Ok(_) | Err(HeadError::TooManyHeaders) => {
                log::info!(
                    "{}: 431, request head over {limit} bytes or {} fields",
                    self.client_address,
                    http::MAX_HEADERS
                );
                self.reply_error(ErrorReply::HeadTooLarge, None);
            }
            Err(HeadError::Target(TargetError::Connect)) => {
                log::info!(
                    "{}: 501, CONNECT: rsp does not tunnel to other hosts",
                    self.client_address
                );
                self.reply_error(ErrorReply::NotImplemented, None);
            }
            Err(error) => {
                log::info!("{}: 400, {error}", self.client_address);
                self.reply_error(ErrorReply::BadRequest, None);
            }
        }
        Ok(true)
    }

    /// Asks the router where the request goes and starts that.
    fn dispatch(&mut self, context: &mut Context) {
        let head = &self.request.head;
        log::debug!(
            "{}: {} {} host={:?}",
            self.client_address,
            head.method(),
            head.target(),
            head.host()
        );
        if let (Framing::Length(length), Some(limit)) = (&head.framing, context.max_body_bytes)
            && *length > limit
        {
            log::info!(
                "{}: 413, request body of {length} bytes, over {limit}",
                self.client_address
            );
            return self.reply_error(ErrorReply::BodyTooLarge, None);
        }
        let body = Body::new(&head.framing);
        if self.role == Role::Admin {
            let local = self
                .client
                .stream
                .local_addr()
                .unwrap_or(self.client_address);
            let reply = admin::answer(&self.request, local, context);
            let shape = Shape {
                keep_alive: self.local_keep_alive(body.is_some()),
                head_only: self.request.head.is_head(),
                request_id: None,
            };
            let keep_alive = shape.keep_alive;
            reply.write(&mut self.to_client.bytes, shape);
            self.exchange = Exchange::Local {
                discard: body,
                keep_alive,
            };
            return;
        }
        let route = context.router.route(&self.request, context.pools);
        if let Some(transaction) = &mut self.transaction {
            transaction.routed_at = timer::now();
            if let Ok(Route::Pool(pool, _)) = &route {
                transaction.pool = Some(*pool);
            }
        }
        let head = &self.request.head;
        match route {
            Ok(Route::Reply(reply)) => {
                let shape = Shape {
                    keep_alive: self.local_keep_alive(body.is_some()),
                    head_only: head.is_head(),
                    request_id: self.request.request_id(),
                };
                let keep_alive = shape.keep_alive;
                reply.write(&mut self.to_client.bytes, shape);
                if let Some(transaction) = &mut self.transaction {
                    transaction.answered_locally(reply.status, reply.body.len());
                }
                self.exchange = Exchange::Local {
                    discard: body,
                    keep_alive,
                };
            }
            Ok(Route::Pool(pool, key)) => {
                self.connect_pool(context, Upstream::new(pool, key), body, false);
            }
            Ok(Route::Address(server)) => self.connect(context, server, None, body, true),
            Err(RouteError::NoRoute) => {
                log::info!(
                    "{}: 503, route() chose no backend for {} {}",
                    self.client_address,
                    head.method(),
                    head.target()
                );
                self.reply_error(ErrorReply::NoRoute, body);
            }
            Err(RouteError::UnknownPool(name)) => {
                log::warn!(
                    "{}: 503, route() returned {name:?}, which is neither a pool nor \"ip:port\"",
                    self.client_address
                );
                self.reply_error(ErrorReply::NoRoute, body);
            }
            Err(RouteError::Script(error)) => {
                log::error!("{}: 500, route() failed: {error}", self.client_address);
                self.reply_error(ErrorReply::ScriptFailed, body);
            }
        }
    }

    /// Whether the connection can stay open after rsp answers itself. A
    /// client waiting for `100 Continue` may never send the body we would
    /// have to skip, so that connection closes.
    /// An upgrade request answered by rsp itself closes too: the client
    /// was ready to switch protocols, not to send another request.
    fn local_keep_alive(&self, has_body: bool) -> bool {
        let head = &self.request.head;
        head.keep_alive && !head.upgrade && !(has_body && head.expect_continue)
    }

    fn reply_error(&mut self, reply: ErrorReply, discard: Option<Body>) {
        if matches!(self.role, Role::Tcp { .. }) {
            // No HTTP on a tcp connection: it just closes.
            if let Some(transaction) = &mut self.transaction {
                transaction.status = reply.status();
            }
            self.exchange = Exchange::Closing;
            return;
        }
        let keep_alive = !reply.must_close() && self.local_keep_alive(discard.is_some());
        // A head that did not parse may not be this request's at all.
        let parsed = self
            .transaction
            .as_ref()
            .is_some_and(|transaction| transaction.parsed);
        let shape = Shape {
            keep_alive,
            head_only: parsed && self.request.head.is_head(),
            request_id: self.request.request_id(),
        };
        reply.write(&mut self.to_client.bytes, shape);
        if let Some(transaction) = &mut self.transaction {
            transaction.answered_locally(reply.status(), reply.body_length());
        }
        if reply.must_close() {
            // The rest of the request was never read.
            self.client_asked_close = false;
        }
        self.exchange = if reply.must_close() {
            Exchange::Closing
        } else {
            Exchange::Local {
                discard,
                keep_alive,
            }
        };
    }

    /// Picks a server of the upstream's pool that was not tried yet and
    /// connects to it.
    fn connect_pool(
        &mut self,
        context: &mut Context,
        mut upstream: Upstream,
        request_body: Option<Body>,
        waited: bool,
    ) {
        let key = upstream
            .key
            .as_deref()
            .unwrap_or(self.request.head.host().as_bytes());
        let pool = &mut context.pools[upstream.pool];
        match pool.pick(Some(key), &upstream.tried, waited) {
            Pick::Server(server) => {
                upstream.server = server;
                let address = pool.address(server);
                self.connect(context, address, Some(upstream), request_body, true);
            }
            Pick::Full => {
                pool.enqueue(self.key, waited);
                let deadline = timer::now() + pool.queue_timeout;
                self.exchange = Exchange::Queued {
                    upstream,
                    body: request_body,
                    deadline,
                    woken: false,
                };
            }
            Pick::NoneUp if upstream.tried.is_empty() => {
                // Drained servers take no new requests even when they are
                // all that is left (backups stand in first): draining is
                // how an operator says "not this server".
                let drained = pool
                    .servers()
                    .iter()
                    .filter(|server| server.drained)
                    .count();
                log::warn!(
                    "{}: 503, no server of pool {} is up ({drained} of {} drained)",
                    self.client_address,
                    pool.name,
                    pool.servers().len()
                );
                self.reply_error(ErrorReply::NoRoute, request_body);
            }
            Pick::NoneUp => {
                log::warn!(
                    "{}: 502, every server of pool {} failed",
                    self.client_address,
                    pool.name
                );
                self.reply_error(ErrorReply::BadGateway, request_body);
            }
        }
    }

    /// A reload renumbered the pools: `moved[pool][server]` is where each old
    /// server is now. A request in flight on a removed server finishes
    /// there uncounted; one queued for a removed pool gets 503. Returns
    /// whether the session has something new to send.
    pub fn follow_reload(
        &mut self,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
    ) -> bool {
        if let Some(transaction) = &mut self.transaction
            && let Some(pool) = transaction.pool
        {
            let server = transaction
                .server
                .and_then(|server| moved[pool].get(server).copied().flatten());
            transaction.pool = server.map(|(pool, _)| pool).or(pool_moved[pool]);
            transaction.server = server.map(|(_, server)| server);
        }
        match &mut self.exchange {
            Exchange::Proxy(proxied) => {
                if let Some(upstream) = &mut proxied.upstream {
                    match moved[upstream.pool][upstream.server] {
                        Some((pool, server)) => {
                            upstream.pool = pool;
                            upstream.server = server;
                            upstream.tried.clear();
                        }
                        None => proxied.upstream = None,
                    }
                }
                false
            }
            Exchange::Queued { upstream, .. } => match pool_moved[upstream.pool] {
                Some(pool) => {
                    upstream.pool = pool;
                    upstream.tried.clear();
                    false
                }
                None => {
                    if let Exchange::Queued { body, .. } =
                        std::mem::replace(&mut self.exchange, Exchange::Closing)
                    {
                        log::warn!(
                            "{}: 503, its pool was removed by a reload",
                            self.client_address
                        );
                        self.reply_error(ErrorReply::NoRoute, body);
                    }
                    true
                }
            },
            _ => false,
        }
    }

    /// The timer of this session that still counts; others in the heap are stale.
    pub fn timer_at(&self) -> Option<Instant> {
        self.timer_at
    }

    /// A slot freed in the pool this session waits on.
    pub fn wake(&mut self) {
        if let Exchange::Queued { woken, .. } = &mut self.exchange {
            *woken = true;
        }
    }

    /// A timer of this session fired: act on whatever deadline has passed.
    /// Returns false when that closed the session.
    pub fn expire(&mut self, context: &mut Context, now: Instant) -> bool {
        if self.timer_at.is_some_and(|scheduled| scheduled <= now) {
            self.timer_at = None;
        }
        let (at, timeout) = self.deadline(context.timeouts);
        if at > now {
            return true;
        }
        let client = self.client_address;
        match timeout {
            // Like nginx, and HAProxy's http-ignore-probes: no 408 for a
            // connection that never asked anything (browsers open spare
            // ones, and would show a 408 arriving as they use it).
            Timeout::Silent => {
                log::info!(
                    "{client}: closed, no request within {:?}",
                    context.timeouts.client_header
                );
                self.close(context, End::Done);
                return false;
            }
            Timeout::ClientIdle => {
                log::debug!("{client}: idle keep-alive connection closed");
                self.close(context, End::Done);
                return false;
            }
            Timeout::ClientHeader => {
                self.begin_transaction(context, false, self.inbound.len());
                log::info!(
                    "{client}: 408, request head not complete within {:?}",
                    context.timeouts.client_header
                );
                self.reply_error(ErrorReply::RequestTimeout, None);
            }
            Timeout::Queue => {
                if let Exchange::Queued { upstream, body, .. } =
                    std::mem::replace(&mut self.exchange, Exchange::Closing)
                {
                    let pool = &mut context.pools[upstream.pool];
                    pool.dequeue(self.key);
                    log::warn!(
                        "{client}: 503, no server of pool {} was free within the queue timeout",
                        pool.name
                    );
                    self.reply_error(ErrorReply::NoRoute, body);
                }
            }
            Timeout::Connect => {
                let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                self.abandon_connect(context, error);
            }
            Timeout::BackendResponse => {
                if let Exchange::Proxy(proxied) =
                    std::mem::replace(&mut self.exchange, Exchange::Closing)
                {
                    release(context, proxied.upstream.as_ref(), Outcome::Failed);
                    log::warn!(
                        "{client}: 504, backend {} sent no response within {:?}",
                        proxied.server,
                        context.timeouts.backend_response
                    );
                    self.reply_error(ErrorReply::GatewayTimeout, None);
                }
            }
            Timeout::Idle => {
                let why = format!("no bytes moved for {:?}", context.timeouts.idle);
                self.close(context, End::Aborted(why));
                return false;
            }
            Timeout::Tunnel => {
                log::info!(
                    "{client}: tunnel idle for {:?}, closed",
                    context.timeouts.tunnel
                );
                self.close(context, End::Done);
                return false;
            }
        }
        true
    }

    /// Sends the request to `server`: on a kept connection when `may_reuse`
    /// and the request is safe to send again, else on a new one.
    fn connect(
        &mut self,
        context: &mut Context,
        server: SocketAddr,
        upstream: Option<Upstream>,
        request_body: Option<Body>,
        may_reuse: bool,
    ) {
        let head = &self.request.head;
        let replayable = head.framing == Framing::Empty && is_idempotent(head.method());
        let tcp = matches!(self.role, Role::Tcp { .. });
        let send_proxy = upstream
            .as_ref()
            .and_then(|upstream| context.pools[upstream.pool].send_proxy);
        // A connection that told a backend who its client is serves only
        // that client: it is never kept for another.
        let kept = if may_reuse && replayable && !tcp && send_proxy.is_none() {
            context.idle.take(server, self.key)
        } else {
            None
        };
        let reused = kept.is_some();
        let connected = match kept {
            Some(kept) => Ok(kept),
            None => TcpStream::connect(server).and_then(|mut stream| {
                // Until the connect completes, WRITABLE is what reports it.
                let interest = Interest::READABLE | Interest::WRITABLE;
                let token = backend_token(&stream);
                context.registry.register(&mut stream, token, interest)?;
                context.idle.claim(stream.as_raw_fd(), self.key);
                Ok((stream, interest))
            }),
        };
        let (stream, interest) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                return self.connect_failed(context, server, upstream, request_body, error);
            }
        };
        if !reused
            && let Some(upstream) = &upstream
            && let Some(pool_server) = context.pools[upstream.pool].server_mut(upstream.server)
        {
            pool_server.stats.connections += 1;
        }
        let connect_deadline = timer::now() + context.timeouts.connect;
        if let Some(transaction) = &mut self.transaction {
            transaction.backend = Some(server);
            transaction.server = upstream.as_ref().map(|upstream| upstream.server);
        }
        let head = &self.request.head;
        self.to_backend.bytes.clear();
        self.to_backend.sent = 0;
        if let Some(version) = send_proxy {
            let destination = self
                .destination
                .or_else(|| self.client.stream.local_addr().ok())
                .unwrap_or(self.client_address);
            proxy_protocol::write(
                &mut self.to_backend.bytes,
                version,
                self.client_address,
                destination,
            );
        }
        if !tcp {
            head.write_forwarded(
                &mut self.to_backend.bytes,
                self.client_address.ip(),
                context.forwarding,
                self.request.request_id(),
                context.idle.enabled(),
                self.tls.is_some(),
            );
        }
        self.exchange = Exchange::Proxy(Box::new(Proxied {
            backend: Endpoint {
                stream,
                readable: false,
                writable: reused,
                end_reported: false,
                interest: Some(interest),
            },
            server,
            upstream,
            connected: reused,
            reused,
            private: send_proxy.is_some(),
            connect_deadline,
            request_sent_at: None,
            backend_eof: false,
            backend_write_failed: false,
            backend_reset: false,
            response_seen: false,
            interim: 0,
            client_side: ClientSide {
                head_request: head.is_head(),
                minor_version: head.minor_version,
                keep_alive: head.keep_alive,
                upgrade: head.upgrade,
            },
            request_body,
            // A tcp connection is a tunnel from the start.
            response: if tcp {
                ResponseState::Tunnel {
                    client_shut: false,
                    backend_shut: false,
                }
            } else {
                ResponseState::Head
            },
        }));
    }

    /// The pending connect of the current exchange failed (or timed out).
    fn abandon_connect(&mut self, context: &mut Context, error: io::Error) {
        if let Exchange::Proxy(proxied) = std::mem::replace(&mut self.exchange, Exchange::Closing) {
            let Proxied {
                server,
                upstream,
                request_body,
                ..
            } = *proxied;
            self.connect_failed(context, server, upstream, request_body, error);
        }
    }

    /// Nothing was sent to a server that could not be reached, so the
    /// request is safe to try on another server of its pool.
    fn connect_failed(
        &mut self,
        context: &mut Context,
        server: SocketAddr,
        upstream: Option<Upstream>,
        request_body: Option<Body>,
        error: io::Error,
    ) {
        match upstream {
            Some(mut upstream) => {
                log::warn!(
                    "{}: cannot connect to {server}: {error}; trying another server",
                    self.client_address
                );
                release(context, Some(&upstream), Outcome::ConnectFailed);
                count_retry(context, &upstream);
                upstream.tried.push(upstream.server);
                self.connect_pool(context, upstream, request_body, true);
            }
            None => {
                log::warn!(
                    "{}: 502, cannot connect to {server}: {error}",
                    self.client_address
                );
                self.reply_error(ErrorReply::BadGateway, request_body);
            }
        }
    }

    /// The backend failed. Before any of the response reached the client
    /// that is a 502; after, the client's connection is cut.
    fn backend_failed(&mut self, context: &mut Context, why: String) -> Result<bool, End> {
        self.backend_failed_with(context, why, ErrorReply::BadGateway)
    }

    /// `backend_failed`, answering `reply` when no other server can.
    fn backend_failed_with(
        &mut self,
        context: &mut Context,
        why: String,
        reply: ErrorReply,
    ) -> Result<bool, End> {
        let Exchange::Proxy(proxied) = std::mem::replace(&mut self.exchange, Exchange::Closing)
        else {
            return Ok(false);
        };
        if proxied.reused && !proxied.response_seen {
            // The backend closed a kept connection as rsp reused it. Only
            // idempotent requests without a body take kept connections, so
            // this one is sent again, on a new connection to the same
            // server, which is not to blame.
            log::debug!(
                "{}: kept connection to {} was closed ({why}); retrying on a new one",
                self.client_address,
                proxied.server
            );
            let Proxied {
                server, upstream, ..
            } = *proxied;
            self.connect(context, server, upstream, None, false);
            return Ok(true);
        }
        release(context, proxied.upstream.as_ref(), Outcome::Failed);
        if !matches!(proxied.response, ResponseState::Head) {
            return Err(End::Aborted(format!("backend {}: {why}", proxied.server)));
        }
        // An idempotent request without a body can be sent again as long as
        // no byte of an answer came back.
        let head = &self.request.head;
        let replayable = !proxied.response_seen
            && head.framing == Framing::Empty
            && is_idempotent(head.method());
        if let Some(mut upstream) = proxied.upstream.filter(|_| replayable) {
            log::warn!(
                "{}: backend {}: {why}; retrying on another server",
                self.client_address,
                proxied.server
            );
            count_retry(context, &upstream);
            upstream.tried.push(upstream.server);
            self.connect_pool(context, upstream, None, true);
            return Ok(true);
        }
        log::warn!(
            "{}: 502, backend {}: {why}",
            self.client_address,
            proxied.server
        );
        self.reply_error(reply, proxied.request_body);
        Ok(true)
    }

    fn advance_proxy(&mut self, context: &mut Context) -> Result<bool, End> {
        let Exchange::Proxy(proxied) = &mut self.exchange else {
            return Ok(false);
        };
        if !proxied.connected {
            if !proxied.backend.writable {
                return Ok(false);
            }
            let stream = &proxied.backend.stream;
            let status = match stream.take_error() {
                Ok(Some(error)) | Err(error) => Err(error),
                Ok(None) => stream.peer_addr().map(|_| ()),
            };
            return match status {
                Ok(()) => {
                    proxied.connected = true;
                    let _ = stream.set_nodelay(true);
                    Ok(true)
                }
                Err(error) if error.kind() == io::ErrorKind::NotConnected => {
                    proxied.backend.writable = false;
                    Ok(false)
                }
                Err(error) => {
                    self.abandon_connect(context, error);
                    Ok(true)
                }
            };
        }
        match &mut proxied.response {
            ResponseState::Head => {
                if self.outbound.is_empty() {
                    if proxied.backend_eof {
                        return self.backend_failed(
                            context,
                            "closed the connection without a response".into(),
                        );
                    }
                    return Ok(false);
                }
                if !self.to_client.is_empty() {
                    // An interim head is still on its way to the client:
                    // the next waits in `outbound`, whose bound stops
                    // reading the backend.
                    return Ok(false);
                }
                match http::forward_response_head(
                    self.outbound.data(),
                    proxied.client_side,
                    self.request.head.upgrade_offer(),
                    self.request.request_id(),
                    &mut self.to_client.bytes,
                ) {
                    Ok(Some(info))
                        if info.is_interim() && proxied.interim >= http::MAX_INTERIM_RESPONSES =>
                    {
                        self.to_client.bytes.clear();
                        self.to_client.sent = 0;
                        self.backend_failed(
                            context,
                            format!(
                                "more than {} interim responses",
                                http::MAX_INTERIM_RESPONSES
                            ),
                        )
                    }
                    Ok(Some(info)) => {
                        self.outbound.consume(info.head_length);
                        proxied.interim += u8::from(info.is_interim());
                        if !info.is_interim()
                            && let Some(transaction) = &mut self.transaction
                        {
                            transaction.status = info.status;
                            transaction.backend_status = Some(info.status);
                            transaction.response_time =
                                Some(timer::now().saturating_duration_since(transaction.routed_at));
                        }
                        if info.is_switch() {
                            log::debug!(
                                "{}: backend {} switched protocols; tunnelling",
                                self.client_address,
                                proxied.server
                            );
                            proxied.response = ResponseState::Tunnel {
                                client_shut: false,
                                backend_shut: false,
                            };
                        } else if !info.is_interim() {
                            proxied.response = ResponseState::Body {
                                until_close: info.framing == Framing::UntilClose,
                                body: Body::new(&info.framing),
                                keep_alive: info.keep_alive,
                                backend_keep_alive: info.backend_keep_alive,
                            };
                        }
                        Ok(true)
                    }
                    Ok(None) if self.outbound.is_full() => {
                        self.backend_failed(context, "response head too large".into())
                    }
                    Ok(None) if proxied.backend_eof => self.backend_failed(
                        context,
                        "closed the connection in the response head".into(),
                    ),
                    Ok(None) => Ok(false),
                    Err(error) => {
                        // After a bad 101 the client may already speak the
                        // other protocol: its connection closes.
                        let reply = match error {
                            HeadError::Switch(_) => ErrorReply::BadSwitch,
                            _ => ErrorReply::BadGateway,
                        };
                        self.backend_failed_with(
                            context,
                            format!("invalid response: {error}"),
                            reply,
                        )
                    }
                }
            }
            ResponseState::Tunnel {
                client_shut,
                backend_shut,
            } => {
                if proxied.backend_reset {
                    return Err(End::Aborted(format!(
                        "backend {} reset the tunnel",
                        proxied.server
                    )));
                }
                let mut progress = false;
                if proxied.backend_write_failed && !self.inbound.is_empty() {
                    // The backend stopped reading: what the client sends has nowhere to go.
                    self.inbound.consume(self.inbound.len());
                    progress = true;
                }
                // One side finished sending: pass its end on once the other
                // side has everything it sent.
                if self.client_eof && self.inbound.is_empty() && !*backend_shut {
                    let _ = proxied.backend.stream.shutdown(Shutdown::Write);
                    *backend_shut = true;
                    progress = true;
                }
                if proxied.backend_eof
                    && self.outbound.is_empty()
                    && self.to_client.is_empty()
                    && !*client_shut
                {
                    let _ = self.client.stream.shutdown(Shutdown::Write);
                    *client_shut = true;
                    progress = true;
                }
                if *client_shut && (*backend_shut || proxied.backend_write_failed) {
                    return Err(End::Done);
                }
                Ok(progress)
            }
            ResponseState::Body {
                body,
                keep_alive,
                until_close,
                backend_keep_alive,
            } => {
                let drained = self.outbound.is_empty();
                let ended_by_close = *until_close && proxied.backend_eof && drained;
                if ended_by_close && proxied.backend_reset {
                    return Err(End::Aborted(format!(
                        "backend {} reset the connection mid-response",
                        proxied.server
                    )));
                }
                if body
                    .as_ref()
                    .is_some_and(|body| body.is_complete() || (ended_by_close && body.claimed == 0))
                {
                    *body = None;
                }
                if body.is_some() && proxied.backend_eof && drained {
                    return Err(End::Aborted(format!(
                        "backend {} closed the connection mid-response",
                        proxied.server
                    )));
                }
                if body.is_some() || !self.to_client.is_empty() {
                    return Ok(false);
                }
                let keep_alive = *keep_alive
                    && proxied.request_body.is_none()
                    && !proxied.backend_write_failed
                    && !context.draining;
                if proxied.request_body.is_some() {
                    // Answered before its body was all read.
                    self.client_asked_close = false;
                }
                // Bytes past the response would be read as the next one's.
                let reusable = *backend_keep_alive
                    && !proxied.private
                    && proxied.request_body.is_none()
                    && !proxied.backend_write_failed
                    && !proxied.backend_eof
                    && !proxied.backend.readable
                    && !proxied.backend.end_reported
                    && self.outbound.is_empty()
                    && self.to_backend.is_empty()
                    && !context.draining;
                release(context, proxied.upstream.as_ref(), Outcome::Ok);
                // Anything the backend sent past its response is not ours to pass on.
                self.outbound.consume(self.outbound.len());
                let next = if keep_alive {
                    Exchange::Idle
                } else {
                    Exchange::Closing
                };
                if let Exchange::Proxy(proxied) = std::mem::replace(&mut self.exchange, next)
                    && reusable
                    && let Some(interest) = proxied.backend.interest
                    && let Some(timer) =
                        context
                            .idle
                            .put(proxied.server, proxied.backend.stream, interest)
                {
                    let deadline = Deadline::IdleBackend {
                        key: timer.key,
                        serial: timer.serial,
                    };
                    context.timers.schedule(timer.at, deadline);
                }
                self.finish_transaction(context, true);
                Ok(true)
            }
        }
    }

    fn write_backend(&mut self, context: &mut Context) -> Result<bool, End> {
        let Exchange::Proxy(proxied) = &mut self.exchange else {
            return Ok(false);
        };
        if !proxied.connected || proxied.backend_write_failed {
            return Ok(false);
        }
        let mut progress = false;
        while proxied.backend.writable {
            let tunnel = matches!(proxied.response, ResponseState::Tunnel { .. });
            let body_length = match &mut proxied.request_body {
                Some(body) => match body.claim(
                    self.inbound.data(),
                    self.inbound.is_full(),
                    &mut self.to_backend.bytes,
                ) {
                    Ok(claimed) => {
                        self.inbound.consume(claimed.trailers);
                        if let Some(transaction) = &mut self.transaction {
                            transaction.bytes_received += claimed.trailers as u64;
                        }
                        claimed.body
                    }
                    Err(error) => {
                        log::info!("{}: 400, request body: {error}", self.client_address);
                        return self.bad_request_body(context, ErrorReply::BadRequest);
                    }
                },
                None if tunnel => self.inbound.len(),
                None => 0,
            };
            let decoded = proxied
                .request_body
                .as_ref()
                .and_then(|body| body.framer.chunked_data());
            if let (Some(decoded), Some(limit)) = (decoded, context.max_body_bytes)
                && decoded > limit
            {
                log::info!(
                    "{}: 413, chunked request body over {limit} bytes",
                    self.client_address
                );
                return self.bad_request_body(context, ErrorReply::BodyTooLarge);
            }
            let head = self.to_backend.pending();
            if head.is_empty() && body_length == 0 {
                break;
            }
            match proxied
                .backend
                .write_two(head, &self.inbound.data()[..body_length], false)
            {
                Ok(Some(count)) => {
                    let from_head = count.min(head.len());
                    self.to_backend.advance(from_head);
                    if let Some(transaction) = &mut self.transaction {
                        transaction.bytes_received += (count - from_head) as u64;
                    }
                    if let Some(body) = &mut proxied.request_body {
                        body.claimed -= count - from_head;
                        self.inbound.consume(count - from_head);
                        if body.is_complete() {
                            proxied.request_body = None;
                        }
                    } else if tunnel {
                        self.inbound.consume(count - from_head);
                    }
                    progress = true;
                }
                Ok(None) => break,
                Err(error) => {
                    // The backend may have answered early and closed; read on.
                    log::debug!(
                        "{}: backend {} stopped reading the request: {error}",
                        self.client_address,
                        proxied.server
                    );
                    proxied.backend_write_failed = true;
                    return Ok(true);
                }
            }
        }
        Ok(progress)
    }

    /// The client's body broke its framing or its size limit mid-request:
    /// the backend has a partial request and the client stream cannot be
    /// trusted.
    fn bad_request_body(&mut self, context: &mut Context, reply: ErrorReply) -> Result<bool, End> {
        if let Exchange::Proxy(proxied) = std::mem::replace(&mut self.exchange, Exchange::Closing) {
            release(context, proxied.upstream.as_ref(), Outcome::Ok);
            if !matches!(proxied.response, ResponseState::Head) {
                return Err(End::Aborted(
                    "invalid request body after the response began".into(),
                ));
            }
        }
        self.reply_error(reply, None);
        Ok(true)
    }

    fn read_backend(&mut self) -> bool {
        let Exchange::Proxy(proxied) = &mut self.exchange else {
            return false;
        };
        if !proxied.backend.readable || proxied.backend_eof || self.outbound.is_full() {
            return false;
        }
        match self
            .outbound
            .fill_from(&mut proxied.backend.stream, proxied.backend.end_reported)
        {
            Ok(fill) => {
                proxied.backend.readable = !fill.drained;
                proxied.backend_eof |= fill.eof;
                proxied.response_seen |= fill.read > 0;
                fill.read > 0 || fill.eof
            }
            Err(error) => {
                log::debug!(
                    "{}: backend {} read error: {error}",
                    self.client_address,
                    proxied.server
                );
                proxied.backend_eof = true;
                proxied.backend_reset = true;
                true
            }
        }
    }

    fn write_client(&mut self) -> Result<bool, End> {
        let mut progress = false;
        // Handshake messages and ciphertext that did not fit the socket.
        if let Some(tls) = &mut self.tls
            && tls.wants_write()
            && self.client.writable
        {
            flush_tls(tls, &mut self.client).map_err(|error| End::ClientGone(Some(error)))?;
            progress = true;
        }
        while self.client.writable {
            let mut tunnel = false;
            // Set when these bytes end a response after which the
            // connection closes.
            let mut closing = false;
            let body = match &mut self.exchange {
                Exchange::Proxy(proxied) => match &mut proxied.response {
                    ResponseState::Body {
                        body,
                        keep_alive: false,
                        ..
                    } => {
                        closing = true;
                        body.as_mut()
                    }
                    ResponseState::Body {
                        body: Some(body), ..
                    } => Some(body),
                    ResponseState::Tunnel { .. } => {
                        tunnel = true;
                        None
                    }
                    _ => None,
                },
                Exchange::Local {
                    discard: None,
                    keep_alive: false,
                }
                | Exchange::Closing => {
                    closing = true;
                    None
                }
                _ => None,
            };
            let body_length = match body {
                Some(body) => {
                    let claimed = body
                        .claim(
                            self.outbound.data(),
                            self.outbound.is_full(),
                            &mut self.to_client.bytes,
                        )
                        .map_err(|error| End::Aborted(format!("response body: {error}")))?;
                    self.outbound.consume(claimed.trailers);
                    closing &= body.framer.is_complete();
                    claimed.body
                }
                None if tunnel => self.outbound.len(),
                None => 0,
            };
            let head = self.to_client.pending();
            if head.is_empty() && body_length == 0 {
                break;
            }
            let written = write_to_client(
                &mut self.tls,
                &mut self.client,
                head,
                &self.outbound.data()[..body_length],
                closing,
            );
            match written.map_err(|error| End::ClientGone(Some(error)))? {
                Some(count) => {
                    let from_head = count.min(head.len());
                    self.to_client.advance(from_head);
                    if let Some(transaction) = &mut self.transaction {
                        transaction.bytes_sent += count as u64;
                        if !transaction.local {
                            transaction.body_bytes_sent += (count - from_head) as u64;
                        }
                    }
                    if let Exchange::Proxy(proxied) = &mut self.exchange
                        && let ResponseState::Body {
                            body: Some(body), ..
                        } = &mut proxied.response
                    {
                        body.claimed -= count - from_head;
                        self.outbound.consume(count - from_head);
                    } else if tunnel {
                        self.outbound.consume(count - from_head);
                    }
                    progress = true;
                }
                None => break,
            }
        }
        Ok(progress)
    }

    fn update_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let mut client_wants_write =
            !self.to_client.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write());
        let mut tunnel = false;
        if let Exchange::Proxy(proxied) = &mut self.exchange {
            tunnel = matches!(proxied.response, ResponseState::Tunnel { .. });
            if tunnel || matches!(proxied.response, ResponseState::Body { body: Some(_), .. }) {
                client_wants_write |= !self.outbound.is_empty();
            }
            let carries_inbound = proxied.request_body.is_some() || tunnel;
            let backend_wants_write = !proxied.connected
                || (!proxied.backend_write_failed
                    && (!self.to_backend.is_empty()
                        || (carries_inbound && !self.inbound.is_empty())));
            let token = backend_token(&proxied.backend.stream);
            proxied
                .backend
                .update_interest(registry, token, backend_wants_write)?;
        }
        // A client whose request is all read, waiting for its answer, needs
        // no events: writes are tried as the answer arrives. One not yet in
        // the poll set stays out, so a client that asked to close may be
        // answered and closed without ever entering it.
        let waiting_for_answer = matches!(&self.exchange, Exchange::Proxy(proxied) if proxied.request_body.is_none())
            && !tunnel
            && self.inbound.is_empty()
            && !client_wants_write;
        if waiting_for_answer && self.client.interest.is_none() {
            return Ok(());
        }
        self.client
            .update_interest(registry, client_token(self.key), client_wants_write)
    }

    fn close(&mut self, context: &mut Context, end: End) {
        let answering = match &self.exchange {
            Exchange::Idle => false,
            Exchange::Proxy(proxied)
                if matches!(proxied.response, ResponseState::Tunnel { .. }) =>
            {
                false
            }
            Exchange::Closing => !self.to_client.is_empty(),
            _ => true,
        };
        if answering {
            context.counters.unanswered += 1;
        }
        if let Some(transaction) = &mut self.transaction
            && transaction.status == 0
            && matches!(end, End::ClientGone(_))
        {
            // nginx's code for a client that left before its answer.
            transaction.status = 499;
        }
        let completed = matches!(end, End::Done) && self.to_client.is_empty();
        match &end {
            // A client that asked to close, and all of whose bytes were
            // read, sends nothing more: the socket simply closes.
            End::Done
                if self.client_eof || (self.client_asked_close && self.inbound.is_empty()) => {}
            End::Done => {
                if let Some(tls) = &mut self.tls {
                    tls.send_close_notify();
                    let _ = flush_tls(tls, &mut self.client);
                }
                // Closing with unread input makes the kernel send a reset that
                // can destroy the answer just written: finish writing, then
                // read off what the client still sent.
                let _ = self.client.stream.shutdown(Shutdown::Write);
                let mut sink = [0u8; 4096];
                for _ in 0..64 {
                    match self.client.stream.read(&mut sink) {
                        Ok(count) if count > 0 => continue,
                        _ => break,
                    }
                }
            }
            End::ClientGone(error) => {
                log::debug!("{}: client closed: {error:?}", self.client_address)
            }
            End::Aborted(why) => log::warn!("{}: connection cut: {why}", self.client_address),
        }
        if let Exchange::Proxy(proxied) = &self.exchange {
            let outcome = match end {
                End::Aborted(_) => Outcome::Failed,
                _ => Outcome::Ok,
            };
            release(context, proxied.upstream.as_ref(), outcome);
        }
        if let Exchange::Queued { upstream, .. } = &self.exchange {
            context.pools[upstream.pool].dequeue(self.key);
        }
        self.finish_transaction(context, completed);
        // Dropping the streams closes them, which also removes them from epoll.
    }
}
