//! Carrying one exchange for a client codec: what the HTTP/1 stage does
//! for its one request at a time, and an HTTP/2 stream for its own, with
//! the same calls. The codec owns the request's inbound bytes (HTTP/1's
//! client buffer, a stream's DATA) and its client's output (the socket,
//! a stream's frames: a `Sink`); everything between is here.

use std::io;
use std::time::{Duration, Instant};

use mio::Registry;

use crate::balancer::Outcome;
use crate::buffer::Buffer;
use crate::framing::Framing;
use crate::http::HeadError;
use crate::memory::Pressure;
use crate::reply::{ErrorReply, LocalReply};
use crate::services::Services;
use crate::target::TargetError;
use crate::timer::Timeout;

use super::attempt::{Attempt, Dial};
use super::cached::Consulted;
use super::client_left;
use super::forward::{self, Body, ForwardError, Passage};
use super::{
    After, Answer, Busy, Exchange, H1, Link, Local, ResponseSide, Routed, State, Turn, Upstream,
};
use crate::client::{App, Client, End};
use crate::transport::{Endpoint, Sink};

/// Where driving an exchange got to, for the codec that carries it.
pub enum Flow {
    Wait,
    Moved,
    /// The answer is all out and the exchange finished (logged): the
    /// connection goes on to the next request when `keep_alive`.
    Done {
        keep_alive: bool,
        linger: bool,
    },
    /// The backend switched protocols: on to a tunnel.
    Switched,
    /// Part of the answer went out: the client's side is cut.
    Abort(String),
}

impl Busy {
    /// The exchange and the buffers it is lent.
    pub fn link<'a>(
        &'a mut self,
        waiter: usize,
        client: &'a Client,
        inbound: &'a mut Buffer,
    ) -> (Link<'a>, &'a mut Exchange) {
        (
            Link {
                waiter,
                client,
                inbound,
                outbound: &mut self.outbound,
                to_client: &mut self.to_client,
            },
            &mut self.exchange,
        )
    }

    /// A request head arrived (`parsed`), or failed to, at `started`: its
    /// record begins.
    pub fn begin(
        &mut self,
        client: &Client,
        services: &mut Services,
        started: Instant,
        (parsed, bytes): (bool, usize),
    ) {
        let admin = *client.app == App::Admin;
        self.exchange
            .begin(client.address, services, (started, parsed, bytes), admin);
    }

    /// rsp answers itself (`Exchange::answer`), into the client queue.
    pub fn answer(&mut self, services: &Services, answer: Answer, discard: Option<Body>) {
        self.exchange
            .answer(services, answer, discard, &mut self.to_client);
    }

    /// The work an answer waited for is done (`Exchange::await_answer`):
    /// `reply` is written, unless the exchange no longer waits for it.
    pub fn answered(&mut self, services: &Services, ticket: u64, reply: &LocalReply) -> bool {
        if !self.exchange.awaits(ticket) {
            return false;
        }
        self.answer(services, Answer::Admin(reply), None);
        true
    }

    /// Acts on what the exchange asked for.
    pub fn act(&mut self, services: &mut Services, turn: Turn) -> Flow {
        match turn {
            Turn::Wait => Flow::Wait,
            Turn::Moved => Flow::Moved,
            Turn::Answer(reply, discard) => {
                // A cache's stale entry may stand in for a failed backend.
                let failed = matches!(reply.status(), 502..=504);
                if !(failed && self.exchange.stale_on_error(services, &mut self.to_client)) {
                    self.answer(services, Answer::Error(reply), discard);
                }
                Flow::Moved
            }
            Turn::Replaced(reply, discard) => {
                self.answer(services, Answer::Replaced(&reply), discard);
                Flow::Moved
            }
            Turn::Done { keep_alive, linger } => {
                self.exchange.finish(services, true);
                Flow::Done { keep_alive, linger }
            }
            Turn::Switched => Flow::Switched,
            Turn::Abort(why) => Flow::Abort(why),
        }
    }

    /// The answer to a head that did not parse, or is over its bound
    /// (`limit` bytes): 431, 501 for CONNECT, else 400; and its log line.
    pub fn refuse_head(
        &mut self,
        services: &mut Services,
        address: std::net::SocketAddr,
        limit: usize,
        error: HeadError,
    ) {
        let reply = match error {
            HeadError::TooManyHeaders => {
                crate::client_log!(
                    log::Level::Info,
                    "{address}: 431, request head over {limit} bytes or {} fields",
                    crate::http::MAX_HEADERS
                );
                ErrorReply::HeadTooLarge
            }
            HeadError::Target(TargetError::Connect) => {
                crate::client_log!(
                    log::Level::Info,
                    "{address}: 501, CONNECT: rsp does not tunnel to other hosts"
                );
                ErrorReply::NotImplemented
            }
            error => {
                crate::client_log!(log::Level::Info, "{address}: 400, {error}");
                ErrorReply::BadRequest
            }
        };
        self.answer(services, Answer::Error(reply), None);
    }

    /// Past the memory ceiling what is held is being cut back: a new
    /// request gets 503 (true) rather than taking more.
    pub fn refused_for_memory(&mut self, client: &Client, services: &mut Services) -> bool {
        if *client.app == App::Admin || services.memory().1 != Pressure::Ceiling {
            return false;
        }
        services.totals.refused_for_memory += 1;
        crate::client_log!(
            log::Level::Warn,
            "{}: 503, rsp is at its memory ceiling (memory.limit)",
            client.address
        );
        let body = Body::of_request(&self.exchange.request.head);
        self.answer(services, Answer::Error(ErrorReply::Overloaded), body);
        true
    }

    /// Asks the router where the request goes and starts that (not for
    /// the admin port's requests, which the HTTP/1 stage answers).
    pub fn dispatch(
        &mut self,
        waiter: usize,
        client: &Client,
        inbound: &mut Buffer,
        services: &mut Services,
    ) -> Flow {
        let head = &self.exchange.request.head;
        let address = client.address;
        log::debug!(
            "{address}: {} {} host={:?}",
            head.method(),
            head.target(),
            head.host()
        );
        if let (Framing::Length(length), Some(limit)) =
            (&head.framing, services.settings.max_body_bytes)
            && *length > limit
        {
            crate::client_log!(
                log::Level::Info,
                "{address}: 413, request body of {length} bytes, over {limit}"
            );
            self.answer(services, Answer::Error(ErrorReply::BodyTooLarge), None);
            return Flow::Moved;
        }
        let body = Body::of_request(head);
        let target = match self.exchange.route(services, address) {
            Routed::Answer(reply) => {
                self.answer(services, Answer::Error(reply), body);
                return Flow::Moved;
            }
            Routed::Reply(reply) => {
                self.answer(services, Answer::Reply(&reply), body);
                return Flow::Moved;
            }
            Routed::To(target) => target,
        };
        let consulted = (&target, waiter, true);
        match self
            .exchange
            .consult_cache(services, consulted, &mut self.to_client)
        {
            Consulted::Answered => return Flow::Moved,
            Consulted::Refused(reply) => {
                self.answer(services, Answer::Error(reply), body);
                return Flow::Moved;
            }
            Consulted::Wait(deadline) => {
                self.exchange.state = State::Dialing {
                    attempt: Attempt::new(target),
                    dial: Dial::Queued {
                        deadline,
                        woken: false,
                        collapsed: true,
                    },
                    body,
                };
                return Flow::Moved;
            }
            Consulted::Forward => {}
        }
        let (link, exchange) = self.link(waiter, client, inbound);
        let turn = exchange.dial(&link, services, Attempt::new(target), body, false);
        self.act(services, turn)
    }

    /// Moves the exchange on: rsp's own answer reads off the request body
    /// it drops and ends once all written; the upstream part advances.
    pub fn advance(
        &mut self,
        waiter: usize,
        client: &Client,
        inbound: &mut Buffer,
        services: &mut Services,
    ) -> Result<Flow, End> {
        let exchange = &mut self.exchange;
        match &mut exchange.state {
            State::Idle => Ok(Flow::Wait),
            State::Answering(Upstream::Local(Local {
                waiting: Some(_), ..
            })) => Ok(Flow::Wait),
            State::Answering(
                Upstream::Local(Local {
                    discard,
                    after,
                    linger,
                    ..
                })
                | Upstream::Cache(Local {
                    discard,
                    after,
                    linger,
                    ..
                }),
            ) => {
                let (after, linger) = (*after, *linger);
                let mut flow = Flow::Wait;
                if let Some(body) = discard {
                    let count = body
                        .discard(inbound)
                        .map_err(|error| End::Aborted(format!("request body: {error}")))?;
                    if let Some(transaction) = &mut exchange.transaction {
                        transaction.bytes_received += count as u64;
                    }
                    if count > 0 {
                        flow = Flow::Moved;
                    }
                    if body.is_complete() {
                        *discard = None;
                    }
                }
                let answered = matches!(
                    exchange.state,
                    State::Answering(
                        Upstream::Local(Local { discard: None, .. })
                            | Upstream::Cache(Local { discard: None, .. })
                    )
                );
                if !answered || !self.to_client.is_empty() || exchange.state.local_body_pending() {
                    return Ok(flow);
                }
                exchange.finish(services, true);
                Ok(Flow::Done {
                    keep_alive: after == After::Next,
                    linger,
                })
            }
            State::Dialing { .. } | State::Answering(Upstream::H1(_)) => {
                let (mut link, exchange) = self.link(waiter, client, inbound);
                let turn = exchange.advance(&mut link, services);
                Ok(self.act(services, turn))
            }
        }
    }

    /// An upstream deadline passed (the queue's, the connect's, the
    /// response's: `State::deadline`).
    pub fn expire(
        &mut self,
        (waiter, client, inbound): (usize, &Client, &mut Buffer),
        services: &mut Services,
        timeout: Timeout,
    ) -> Flow {
        let (link, exchange) = self.link(waiter, client, inbound);
        let turn = exchange.expire(&link, services, timeout);
        self.act(services, turn)
    }

    /// Sends what it can of the request to the backend, and reads what it
    /// can of the answer.
    pub fn pass_upstream(
        &mut self,
        waiter: usize,
        client: &Client,
        inbound: &mut Buffer,
        services: &mut Services,
    ) -> (Flow, bool) {
        let (mut link, exchange) = self.link(waiter, client, inbound);
        let written = exchange.write_backend(&mut link, services);
        let flow = self.act(services, written);
        if matches!(flow, Flow::Done { .. } | Flow::Abort(_) | Flow::Switched) {
            return (flow, false);
        }
        let (mut link, exchange) = self.link(waiter, client, inbound);
        let read = exchange.read_backend(&mut link);
        (flow, read)
    }

    /// Writes what the client takes of the answer: rsp's queued bytes,
    /// then the body (a backend's, or rsp's own).
    pub fn write_client(&mut self, sink: &mut impl Sink) -> Result<bool, ForwardError> {
        let (passage, ends_connection) = match &mut self.exchange.state {
            State::Answering(upstream) => upstream.passage(),
            _ => (Passage::Queued, false),
        };
        let moved = forward::forward(
            &mut self.outbound,
            passage,
            &mut self.to_client,
            sink,
            ends_connection,
            None,
        )?;
        self.moved += (moved.queued + moved.passed) as u64;
        if let Some(transaction) = &mut self.exchange.transaction {
            transaction.bytes_sent += (moved.queued + moved.passed) as u64;
            if !transaction.local {
                transaction.body_bytes_sent += moved.passed as u64;
            }
        }
        Ok(moved.any())
    }

    /// Something waits to go to the client: rsp's own bytes, or body bytes
    /// of a response being passed on.
    pub fn wants_client_write(&self) -> bool {
        !self.to_client.is_empty()
            || self.exchange.state.local_body_pending()
            || (matches!(
                self.exchange.state,
                State::Answering(Upstream::H1(H1 {
                    response: ResponseSide::Body { body: Some(_), .. },
                    ..
                }))
            ) && !self.outbound.is_empty())
            || matches!(
                &self.exchange.state,
                State::Answering(Upstream::H1(H1 {
                    response: ResponseSide::Body { encoder: Some(encoder), .. },
                    ..
                })) if !encoder.is_done()
            )
    }

    /// The exchange waits on its client: an answer the client does not
    /// take (its socket or window shut), or a request body it does not
    /// send (`inbound_empty`). One waiting on its backend is not.
    pub fn waits_on_client(&self, inbound_empty: bool) -> bool {
        let answer_waits = !self.to_client.is_empty()
            || matches!(&self.exchange.state,
                State::Answering(upstream) if upstream.answer_waits(self.outbound.is_empty()));
        let body_waits = inbound_empty
            && match &self.exchange.state {
                // A client that asked for `100 Continue` sends its body
                // once the backend says so (RFC 9110 §10.1.1): until then
                // it waits on the backend.
                State::Answering(Upstream::H1(H1 {
                    response: ResponseSide::Head { interim: 0 },
                    ..
                })) if self.exchange.request.head.expect_continue => false,
                State::Answering(upstream) => upstream.wants_body(),
                _ => false,
            };
        answer_waits || body_waits
    }

    /// How long the exchange has waited on its client without moving
    /// (`memory::MIN_PROGRESS` bytes either way restart the count), as of
    /// this look; `None` while it does not wait on it (`waits`).
    pub fn stalled(&mut self, now: Instant, waits: bool) -> Option<Duration> {
        if !waits {
            self.stall = None;
            return None;
        }
        match self.stall {
            Some((since, moved)) if self.moved - moved < crate::memory::MIN_PROGRESS => {
                Some(now.saturating_duration_since(since))
            }
            _ => {
                self.stall = Some((now, self.moved));
                Some(Duration::ZERO)
            }
        }
    }

    /// The pool whose server the exchange holds, if any.
    pub fn leased_pool(&self) -> Option<usize> {
        match &self.exchange.state {
            State::Answering(upstream) => upstream.leased_pool(),
            _ => None,
        }
    }

    /// Registers the backend socket for what the exchange waits for of it;
    /// returns whether the whole request has been read.
    pub fn update_backend_interest(
        &mut self,
        registry: &Registry,
        inbound_empty: bool,
    ) -> io::Result<bool> {
        match &mut self.exchange.state {
            State::Answering(Upstream::H1(H1 {
                backend, request, ..
            })) => {
                let backend_wants_write = !backend.write_failed
                    && (!self.exchange.to_backend.is_empty()
                        || (request.body.is_some() && !inbound_empty));
                let backend_token = backend.token();
                backend
                    .endpoint
                    .update_interest(registry, backend_token, backend_wants_write)?;
                Ok(request.body.is_none())
            }
            State::Dialing {
                dial: Dial::Connecting { backend, .. },
                body,
                ..
            } => {
                // Until the connect completes, WRITABLE is what reports it.
                let backend_token = backend.token();
                backend
                    .endpoint
                    .update_interest(registry, backend_token, true)?;
                Ok(body.is_none())
            }
            _ => Ok(false),
        }
    }

    /// rsp's own answer is all written while the request's body is still
    /// to come (a Lua reply, an error): an HTTP/2 stream can end here and
    /// tell its client to stop sending (RFC 9113 §8.1), where an HTTP/1
    /// connection must read the body off to go on.
    pub fn answered_before_body(&self) -> bool {
        self.to_client.is_empty()
            && matches!(
                &self.exchange.state,
                State::Answering(Upstream::Local(Local {
                    discard: Some(_),
                    body,
                    ..
                }) | Upstream::Cache(Local {
                    discard: Some(_),
                    body,
                    ..
                })) if body.is_done()
            )
    }

    /// The request's body while it is still to be passed on or dropped.
    pub fn request_body_mut(&mut self) -> Option<&mut Body> {
        match &mut self.exchange.state {
            State::Dialing { body, .. } => body.as_mut(),
            State::Answering(Upstream::H1(h1)) => h1.request.body.as_mut(),
            State::Answering(Upstream::Local(local) | Upstream::Cache(local)) => {
                local.discard.as_mut()
            }
            State::Idle => None,
        }
    }

    /// The rest of the request's body will not be read (the stream ends).
    pub fn forgo_body(&mut self) {
        if let State::Answering(
            Upstream::Local(Local { discard, .. }) | Upstream::Cache(Local { discard, .. }),
        ) = &mut self.exchange.state
        {
            *discard = None;
        }
    }

    /// The backend socket the exchange holds, if any.
    pub fn backend_mut(&mut self) -> Option<&mut Endpoint> {
        match &mut self.exchange.state {
            State::Answering(upstream) => upstream.endpoint_mut(),
            State::Dialing { dial, .. } => dial.backend_mut(),
            _ => None,
        }
    }

    /// A slot freed in the pool this request waits on.
    pub fn wake(&mut self) {
        if let State::Dialing { dial, .. } = &mut self.exchange.state {
            dial.wake();
        }
    }

    /// A reload renumbered the pools (`Exchange::follow_reload`); `Some`
    /// when the exchange moved (a queued one answered).
    pub fn follow_reload(
        &mut self,
        (waiter, client, inbound): (usize, &Client, &mut Buffer),
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
        services: &mut Services,
    ) -> Option<Flow> {
        let (link, exchange) = self.link(waiter, client, inbound);
        let turn = exchange.follow_reload(&link, moved, pool_moved)?;
        Some(self.act(services, turn))
    }

    /// The connection (or stream) ended with the exchange in it: what it
    /// holds of a pool goes back, its record is finished (an answer cut
    /// short counts as unanswered), and its parts go to the spare list.
    pub fn close(mut self: Box<Busy>, waiter: usize, services: &mut Services, end: &End) {
        let answering = match &self.exchange.state {
            State::Idle
            | State::Answering(Upstream::H1(H1 {
                response: ResponseSide::Switched,
                ..
            })) => false,
            State::Answering(
                Upstream::Local(Local {
                    discard: None,
                    waiting,
                    ..
                })
                | Upstream::Cache(Local {
                    discard: None,
                    waiting,
                    ..
                }),
            ) => {
                waiting.is_some()
                    || !self.to_client.is_empty()
                    || self.exchange.state.local_body_pending()
            }
            _ => true,
        };
        if answering {
            services.counters.unanswered += 1;
        }
        let completed = matches!(end, End::Done { .. })
            && self.to_client.is_empty()
            && !self.exchange.state.local_body_pending();
        let exchange = &mut self.exchange;
        client_left(&mut exchange.transaction, end);
        let outcome = match end {
            End::Aborted(_) => Outcome::Failed,
            _ => Outcome::Ok,
        };
        exchange.release(waiter, services, outcome);
        exchange.finish(services, completed);
        self.give_back();
    }
}
