//! An exchange: one request and its response, from the routing decision
//! to the last byte of the answer. It owns the request's record, the
//! attempt (the server lease and the servers tried), and the state of
//! both directions; the connection that carries it lends its buffers
//! (`Link`), so a protocol that carries many exchanges at once (HTTP/2)
//! can drive each with its own.

use std::time::Instant;

pub mod attempt;
mod busy;
mod cached;
mod carry;
mod encode;
pub mod forward;
mod h1;
mod hit;
mod local;
mod response;
mod routing;
mod upstream;

pub use busy::{Busy, trim_spare};
pub use carry::Flow;
pub use local::Answer;
pub use routing::Routed;

use crate::balancer::Outcome;
use crate::buffer::Buffer;
use crate::framing::Framing;

use crate::reply::ErrorReply;
use crate::reply::LocalReply;
use crate::router::{RequestView, ResponseView};
use crate::services::Services;
use crate::timer;
use crate::transaction::{Request, Transaction};

use crate::client::{Client, End};
use crate::timer::Timeout;
use attempt::{Attempt, Backend, Dial, DialRequest, Failure, Next, Origin};
use forward::{Body, ForwardError, Passage, Queue};
pub use upstream::{Event, H1, Local, Upstream};

/// What follows an answer on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The next request.
    Next,
    /// The connection closes.
    Close,
}

/// The request's way to the backend.
pub struct RequestSide {
    /// `None` once the whole body went to the backend (or there is none).
    pub body: Option<Body>,
    /// When the whole request had gone: the response timeout runs from here.
    pub sent_at: Option<Instant>,
}

/// The response's way back.
pub enum ResponseSide {
    /// Waiting for the (next) response head; interim 1xx heads count here.
    Head { interim: u8 },
    /// Passing the body on; `None` once it is complete.
    Body {
        /// The response's status.
        status: u16,
        body: Option<Body>,
        after: After,
        /// The body ends when the backend closes.
        until_close: bool,
        /// The backend keeps its connection open after this response.
        backend_keeps: bool,
        /// The response on its way into the cache as it passes.
        fill: Option<Box<crate::cache::Fill>>,
        /// The response is compressed for the client on its way.
        encoder: Option<Box<crate::compress::Encoder>>,
    },
    /// The backend switched protocols (101): the connection becomes a tunnel.
    Switched,
}

pub enum State {
    /// No request in progress (or, for a moment, a state taken by value).
    Idle,
    /// Finding a server: queued for a slot, or connecting.
    Dialing {
        attempt: Attempt,
        dial: Dial,
        body: Option<Body>,
    },
    /// The request is with what answers it.
    Answering(Upstream),
}

impl State {
    /// The deadline of what the exchange waits for upstream: a slot in
    /// its pool's queue, a connect, the response head once the request
    /// went (`None`: only the connection's idle timeout).
    pub fn deadline(&self, timeouts: &crate::config::Timeouts) -> Option<(Instant, Timeout)> {
        match self {
            State::Dialing {
                dial: Dial::Queued { deadline, .. },
                ..
            } => Some((*deadline, Timeout::Queue)),
            State::Dialing {
                dial: Dial::Connecting { deadline, .. },
                ..
            } => Some((*deadline, Timeout::Connect)),
            State::Answering(upstream) => upstream.deadline(timeouts),
            State::Idle => None,
        }
    }

    /// What the upstream holds beyond the buffers: a compressed
    /// response's encoder.
    pub fn upstream_held(&self) -> usize {
        match self {
            State::Answering(Upstream::H1(H1 {
                response:
                    ResponseSide::Body {
                        encoder: Some(encoder),
                        ..
                    },
                ..
            })) => encoder.held(),
            _ => 0,
        }
    }

    /// The request's exchange with a backend over HTTP/1.1, if it is there.
    pub fn h1(&self) -> Option<&H1> {
        match self {
            State::Answering(Upstream::H1(h1)) => Some(h1),
            _ => None,
        }
    }

    pub fn h1_mut(&mut self) -> Option<&mut H1> {
        match self {
            State::Answering(Upstream::H1(h1)) => Some(h1),
            _ => None,
        }
    }

    /// rsp's own answer (or a stored one) has bytes of its body still to
    /// write.
    pub fn local_body_pending(&self) -> bool {
        matches!(self, State::Answering(Upstream::Local(Local { body, .. }) | Upstream::Cache(Local { body, .. })) if !body.is_done())
    }
}

/// What an exchange asks of the connection that carries it.
pub enum Turn {
    Wait,
    Moved,
    /// rsp must answer the client itself, dropping what is left of the
    /// request body.
    Answer(ErrorReply, Option<Body>),
    /// `respond()` replaced the backend's response with this one.
    Replaced(LocalReply, Option<Body>),
    /// The response is complete.
    Done {
        keep_alive: bool,
        linger: bool,
    },
    /// The backend switched protocols: on to a tunnel.
    Switched,
    /// Part of the answer went out: the client's connection is cut.
    Abort(String),
}

/// The connection's side of an exchange: its buffers, and who the client is.
pub struct Link<'a> {
    /// The exchange's place in a pool's queue (`token::waiter`).
    pub waiter: usize,
    pub client: &'a Client,
    /// Client → backend bytes.
    pub inbound: &'a mut Buffer,
    /// Backend → client bytes.
    pub outbound: &'a mut Buffer,
    /// Heads and answers rsp writes for the client.
    pub to_client: &'a mut Queue,
}

pub struct Exchange {
    pub request: RequestView,
    /// The response head as `respond()` sees it (kept for reuse; only a
    /// config with `respond` fills it).
    pub response: ResponseView,
    /// The request being answered, for the stats and the access log.
    pub transaction: Option<Transaction>,
    /// Bytes rsp writes for the backend: a PROXY header, the request head.
    pub to_backend: Queue,
    pub state: State,
    /// What the cache made of the request, when its pool caches and it
    /// went on to the backend.
    pub lookup: Option<Box<cached::Lookup>>,
    /// The encoder of a response being compressed, from its head's
    /// rewrite to its body's start (`took_final_head`).
    pub encoder: Option<Box<crate::compress::Encoder>>,
}

impl Exchange {
    /// A request head arrived (or failed to, `parsed`) at `started`, in
    /// `bytes`: its record starts (not for the admin port's, which are no
    /// traffic) and its id is settled (the client's if valid, else a new
    /// one).
    pub fn begin(
        &mut self,
        client: std::net::SocketAddr,
        services: &mut Services,
        (started, parsed, bytes): (Instant, bool, usize),
        admin: bool,
    ) {
        let request = &mut self.request;
        request.client = client;
        request.request_id.clear();
        if admin {
            return;
        }
        let mut transaction = Transaction::new(started, parsed);
        transaction.bytes_received = bytes as u64;
        self.transaction = Some(transaction);
        if let Some(ids) = services.request_ids.as_mut() {
            match request.head.request_id().filter(|_| parsed) {
                Some(id) => request.request_id.push_str(id),
                None => ids.generate(&mut request.request_id),
            }
        }
    }

    /// The exchange ended (`completed`: its answer all went): `log()`
    /// sees it, and its record goes to the stats and the access log.
    pub fn finish(&mut self, services: &mut Services, completed: bool) {
        self.release_collapsed(services);
        finish_transaction(
            &mut self.transaction,
            &mut self.request,
            services,
            completed,
            true,
        );
    }

    /// The state by value, to move what it holds (a backend, a lease) into
    /// the next one; the only way a state is left, and the caller always
    /// sets (or has the connection set) what follows.
    fn take_state(&mut self) -> State {
        std::mem::replace(&mut self.state, State::Idle)
    }

    /// `take_state`, for a state that must be with an HTTP/1.1 backend
    /// (`None` otherwise; the state is `Idle` after it either way).
    fn take_h1(&mut self) -> Option<H1> {
        match self.take_state() {
            State::Answering(Upstream::H1(h1)) => Some(h1),
            _ => None,
        }
    }

    /// The request may be sent again: nothing in it changes a thing twice.
    fn replayable(&self) -> bool {
        let head = &self.request.head;
        head.framing == Framing::Empty && attempt::is_idempotent(head.method())
    }

    fn dial_request(&self, link: &Link, waited: bool) -> DialRequest<'_> {
        DialRequest {
            waiter: link.waiter,
            client: link.client.address,
            host: self.request.head.host().as_bytes(),
            reuse: self.replayable(),
            waited,
        }
    }

    /// Finds a server for the request and starts sending it there.
    pub fn dial(
        &mut self,
        link: &Link,
        services: &mut Services,
        mut attempt: Attempt,
        body: Option<Body>,
        waited: bool,
    ) -> Turn {
        let dialed = attempt.dial(services, &self.dial_request(link, waited));
        self.start(link, services, attempt, body, dialed)
    }

    /// A new connection to the same server, for the same lease: a kept
    /// connection it took was closed under it.
    fn redial(
        &mut self,
        link: &Link,
        services: &mut Services,
        mut attempt: Attempt,
        server: std::net::SocketAddr,
    ) -> Turn {
        let mut request = self.dial_request(link, true);
        request.reuse = false;
        let dialed = attempt.dial_to(services, &request, server);
        self.start(link, services, attempt, None, dialed)
    }

    /// Where a dial got to: connecting (a kept connection is connected
    /// already), queued, or refused.
    fn start(
        &mut self,
        link: &Link,
        services: &mut Services,
        attempt: Attempt,
        body: Option<Body>,
        dialed: Result<Dial, ErrorReply>,
    ) -> Turn {
        match dialed {
            Ok(Dial::Connecting { backend, deadline }) => {
                self.prepare_request(link, services, &attempt, &backend);
                let kept = backend.origin == Origin::Kept;
                self.state = State::Dialing {
                    attempt,
                    dial: Dial::Connecting { backend, deadline },
                    body,
                };
                if kept {
                    // A kept connection is connected already.
                    return self.connected();
                }
                Turn::Moved
            }
            Ok(queued) => {
                self.state = State::Dialing {
                    attempt,
                    dial: queued,
                    body,
                };
                Turn::Moved
            }
            Err(reply) => Turn::Answer(reply, body),
        }
    }

    /// What the backend is sent first: a PROXY header when its pool wants
    /// one, then the request head.
    fn prepare_request(
        &mut self,
        link: &Link,
        services: &Services,
        attempt: &Attempt,
        backend: &Backend,
    ) {
        self.to_backend.clear();
        let out = self.to_backend.tail();
        attempt.begin_on(
            backend,
            services,
            link.client,
            self.transaction.as_mut(),
            out,
        );
        self.request.head.write_forwarded(
            out,
            link.client.address.ip(),
            &services.settings.forwarding,
            self.request.request_id(),
            services.idle.enabled(),
            link.client.transport.is_tls(),
        );
    }

    /// The connect finished: the request may go.
    fn connected(&mut self) -> Turn {
        let State::Dialing {
            attempt,
            dial: Dial::Connecting { backend, .. },
            body,
        } = self.take_state()
        else {
            return Turn::Wait;
        };
        self.state = State::Answering(Upstream::H1(H1 {
            backend,
            attempt,
            request: RequestSide {
                body,
                sent_at: None,
            },
            response: ResponseSide::Head { interim: 0 },
        }));
        Turn::Moved
    }

    /// Moves the upstream part on: a woken queue entry dials again, a
    /// connect completes or fails, a response head or body arrives.
    pub fn advance(&mut self, link: &mut Link, services: &mut Services) -> Turn {
        match &mut self.state {
            State::Dialing {
                dial: Dial::Queued { woken: false, .. },
                ..
            } => Turn::Wait,
            State::Dialing {
                dial: Dial::Queued {
                    collapsed: true, ..
                },
                ..
            } => self.look_again(link, services),
            State::Dialing {
                dial: Dial::Queued { .. },
                ..
            } => {
                let State::Dialing { attempt, body, .. } = self.take_state() else {
                    return Turn::Wait;
                };
                self.dial(link, services, attempt, body, true)
            }
            State::Dialing {
                dial: Dial::Connecting { backend, .. },
                ..
            } => match attempt::connect_result(backend) {
                Ok(true) => self.connected(),
                Ok(false) => Turn::Wait,
                Err(error) => self.connect_failed(link, services, error),
            },
            State::Answering(Upstream::H1(H1 { response, .. })) => match response {
                ResponseSide::Head { .. } => self.response_head(link, services),
                ResponseSide::Body { .. } => self.response_end(link, services),
                ResponseSide::Switched => Turn::Switched,
            },
            State::Idle | State::Answering(Upstream::Local(_) | Upstream::Cache(_)) => Turn::Wait,
        }
    }

    /// The pending connect failed (or timed out): nothing was sent, so the
    /// request may go to another server of its pool.
    pub fn connect_failed(
        &mut self,
        link: &Link,
        services: &mut Services,
        error: std::io::Error,
    ) -> Turn {
        let State::Dialing {
            mut attempt,
            dial: Dial::Connecting { backend, .. },
            body,
        } = self.take_state()
        else {
            return Turn::Wait;
        };
        let (client, server) = (link.client.address, backend.server);
        match attempt.connect_failed(services, client, server, &error) {
            Ok(()) => self.dial(link, services, attempt, body, true),
            Err(reply) => Turn::Answer(reply, body),
        }
    }

    /// Sends what it can of the request (head, then body) to the backend.
    pub fn write_backend(&mut self, link: &mut Link, services: &mut Services) -> Turn {
        let Some(H1 {
            backend, request, ..
        }) = self.state.h1_mut()
        else {
            return Turn::Wait;
        };
        if backend.write_failed {
            return Turn::Wait;
        }
        let passage = match &mut request.body {
            Some(body) => Passage::Body(body, None),
            None => Passage::Queued,
        };
        let limit = services.settings.max_body_bytes;
        let moved = forward::forward(
            link.inbound,
            passage,
            &mut self.to_backend,
            &mut backend.endpoint,
            false,
            limit,
        );
        match moved {
            Ok(moved) => {
                if let Some(transaction) = &mut self.transaction {
                    transaction.bytes_received += (moved.passed + moved.trailers) as u64;
                }
                if request.body.as_ref().is_some_and(Body::is_complete) {
                    request.body = None;
                }
                if request.body.is_none() && self.to_backend.is_empty() && request.sent_at.is_none()
                {
                    request.sent_at = Some(timer::now());
                }
                if moved.any() { Turn::Moved } else { Turn::Wait }
            }
            Err(ForwardError::Sink(error)) => {
                // The backend may have answered early and closed; read on.
                log::debug!(
                    "{}: backend {} stopped reading the request: {error}",
                    link.client.address,
                    backend.server
                );
                backend.write_failed = true;
                Turn::Moved
            }
            Err(ForwardError::TooLarge(limit)) => {
                crate::client_log!(
                    log::Level::Info,
                    "{}: 413, chunked request body over {limit} bytes",
                    link.client.address
                );
                self.bad_request_body(services, ErrorReply::BodyTooLarge)
            }
            Err(ForwardError::Framing(error)) => {
                crate::client_log!(
                    log::Level::Info,
                    "{}: 400, request body: {error}",
                    link.client.address
                );
                self.bad_request_body(services, ErrorReply::BadRequest)
            }
            // Requests are not encoded.
            Err(ForwardError::Encoding(error)) => Turn::Abort(error.to_string()),
        }
    }

    /// The client's body broke its framing or its size limit mid-request:
    /// the backend has a partial request and the client stream cannot be
    /// trusted.
    fn bad_request_body(&mut self, services: &mut Services, reply: ErrorReply) -> Turn {
        let Some(H1 {
            mut attempt,
            response,
            ..
        }) = self.take_h1()
        else {
            return Turn::Wait;
        };
        attempt.release(services, Outcome::Ok);
        if !matches!(response, ResponseSide::Head { .. }) {
            return Turn::Abort("invalid request body after the response began".into());
        }
        Turn::Answer(reply, None)
    }

    /// Reads what the backend sent into `outbound`, while it has room.
    pub fn read_backend(&mut self, link: &mut Link) -> bool {
        self.state
            .h1_mut()
            .is_some_and(|h1| h1.backend.read_into(link.outbound, link.client.address))
    }

    /// `timeouts.backend_response` passed with no response head: 504, or
    /// another server when the pool's `retry_on` has "timeout".
    pub fn response_timed_out(&mut self, link: &Link, services: &mut Services) -> Turn {
        let replayable = self.replayable();
        let Some(H1 {
            backend,
            mut attempt,
            ..
        }) = self.take_h1()
        else {
            return Turn::Wait;
        };
        let resends = attempt.resends(&services.pools);
        let next = attempt.on_failure(Failure::Timeout, replayable, resends);
        let waited = services.settings.timeouts.backend_response;
        let (client, server) = (link.client.address, backend.server);
        drop(backend);
        match next {
            Next::OtherServer => {
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: backend {server} sent no response within {waited:?}; retrying on another server"
                );
                attempt.move_on(services, Failure::Timeout);
                self.dial(link, services, attempt, None, true)
            }
            next => {
                attempt.release(services, Failure::Timeout.outcome());
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: 504, backend {server} sent no response within {waited:?}"
                );
                match next {
                    Next::Answer(reply) => Turn::Answer(reply, None),
                    _ => Turn::Answer(ErrorReply::GatewayTimeout, None),
                }
            }
        }
    }

    /// An upstream deadline passed (`State::deadline`): the queue's, the
    /// connect's, the response's.
    pub fn expire(&mut self, link: &Link, services: &mut Services, timeout: Timeout) -> Turn {
        match timeout {
            Timeout::Queue => self.queue_timed_out(link, services),
            Timeout::Connect => {
                let error = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                self.connect_failed(link, services, error)
            }
            _ => self.response_timed_out(link, services),
        }
    }

    /// The queue's timeout passed with no server free: 503. (A request
    /// waiting for another's fetch of its response looks again, and goes
    /// on.)
    pub fn queue_timed_out(&mut self, link: &Link, services: &mut Services) -> Turn {
        if let State::Dialing {
            dial:
                Dial::Queued {
                    collapsed: true,
                    woken,
                    ..
                },
            ..
        } = &mut self.state
        {
            // Its next turn looks again.
            *woken = true;
            return Turn::Moved;
        }
        let State::Dialing { attempt, body, .. } = self.take_state() else {
            return Turn::Wait;
        };
        if let attempt::Target::Pool { pool, .. } = attempt.target {
            let pool = &mut services.pools[pool];
            pool.dequeue(link.waiter);
            crate::client_log!(
                log::Level::Warn,
                "{}: 503, no server of pool {} was free within the queue timeout",
                link.client.address,
                pool.name
            );
        }
        Turn::Answer(ErrorReply::NoRoute, body)
    }

    /// A reload renumbered the pools. A request in flight on a removed
    /// server finishes there uncounted; one queued for a removed pool gets
    /// 503 (`Some` answer to give).
    pub fn follow_reload(
        &mut self,
        link: &Link,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
    ) -> Option<Turn> {
        if let Some(transaction) = &mut self.transaction
            && let Some(pool) = transaction.pool
        {
            let server = transaction
                .server
                .and_then(|server| moved[pool].get(server).copied().flatten());
            transaction.pool = server.map(|(pool, _)| pool).or(pool_moved[pool]);
            transaction.server = server.map(|(_, server)| server);
        }
        match &mut self.state {
            State::Answering(Upstream::H1(H1 { attempt, .. }))
            | State::Dialing {
                attempt,
                dial: Dial::Connecting { .. },
                ..
            } => {
                attempt.follow_reload(moved, pool_moved);
                None
            }
            State::Dialing { attempt, .. } => {
                if attempt.follow_reload(moved, pool_moved) {
                    return None;
                }
                let State::Dialing { body, .. } = self.take_state() else {
                    return None;
                };
                crate::client_log!(
                    log::Level::Warn,
                    "{}: 503, its pool was removed by a reload",
                    link.client.address
                );
                Some(Turn::Answer(ErrorReply::NoRoute, body))
            }
            State::Idle | State::Answering(Upstream::Local(_) | Upstream::Cache(_)) => None,
        }
    }

    /// Gives back whatever the exchange holds of a pool: its lease (the
    /// exchange was cut with `outcome`) or its place in a queue (`waiter`).
    pub fn release(&mut self, waiter: usize, services: &mut Services, outcome: Outcome) {
        match &mut self.state {
            State::Answering(upstream) => upstream.release(services, outcome),
            State::Dialing {
                attempt,
                dial: Dial::Queued { .. },
                ..
            } => {
                if let attempt::Target::Pool { pool, .. } = attempt.target {
                    services.pools[pool].dequeue(waiter);
                }
            }
            State::Dialing { attempt, .. } => attempt.release(services, outcome),
            State::Idle => {}
        }
    }
}

/// Counts and logs a finished request (or tunnel): into the pool, server
/// and global counters, and the access log. An HTTP request (`hooked`)
/// is shown to the script's `log(req, res)` first.
pub fn finish_transaction(
    transaction: &mut Option<Transaction>,
    request: &mut RequestView,
    services: &mut Services,
    completed: bool,
    hooked: bool,
) {
    let Some(transaction) = transaction.take() else {
        return;
    };
    if hooked && transaction.parsed && services.router.logs() {
        let mut ended = crate::router::LogView {
            status: transaction.status,
            bytes_sent: transaction.bytes_sent,
            duration_ms: timer::now()
                .saturating_duration_since(transaction.started)
                .as_secs_f64()
                * 1000.0,
            server: transaction.backend,
            completed,
        };
        services.router.log(request, &mut ended);
    }
    transaction.finish(
        &mut services.totals,
        &mut services.pools,
        services.access_log.as_mut(),
        Request {
            client: request.client,
            head: &request.head,
            id: request.request_id(),
            completed,
        },
    );
}

/// The transaction of a client that left before its answer: nginx's 499.
pub fn client_left(transaction: &mut Option<Transaction>, end: &End) {
    if let Some(transaction) = transaction
        && transaction.status == 0
        && matches!(end, End::ClientGone(_))
    {
        transaction.status = 499;
    }
}
