//! The HTTP/1 stage: reads request heads off the client connection, routes
//! each, and carries one exchange at a time (pipelined requests wait in the
//! buffer, answered in order); writes the answers back, rsp's own included.

use std::io;
use std::time::Instant;

use mio::{Registry, Token};

use crate::balancer::Outcome;
use crate::buffer::Buffer;
use crate::services::Services;
use crate::timer;

use super::exchange::{After, Exchange, Link, ResponseSide, State, Turn};
use super::forward::{self, ForwardError, Passage};
use super::transport::Endpoint;
use super::tunnel::Tunnel;
use super::upstream::Dial;
use super::{Client, End, Key, Peer, Step, client_error, client_left};

mod busy;
mod deadlines;
mod request;

use super::exchange::Answer;
use busy::Busy;
pub use busy::trim_spare;

/// What an idle connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A new connection that has not sent a byte.
    Silent,
    /// A kept-alive connection between requests.
    KeepAlive,
    /// The rest of a request head whose first byte came at `since`.
    Head { since: Instant },
}

pub struct Http1 {
    /// Client → backend bytes: request heads and bodies.
    inbound: Buffer,
    /// What the connection waits for while no request is in progress.
    wait: Wait,
    /// The request in progress.
    busy: Option<Box<Busy>>,
}

impl Http1 {
    /// The stage for a connection whose first bytes (if any) are in `inbound`.
    pub fn new(inbound: Buffer) -> Http1 {
        let wait = if inbound.is_empty() {
            Wait::Silent
        } else {
            Wait::Head {
                since: timer::now(),
            }
        };
        Http1 {
            inbound,
            wait,
            busy: None,
        }
    }

    /// What the stage holds for its client: buffers, the request head and
    /// what the script keeps for it (`req.ctx`).
    pub fn held(&self) -> usize {
        self.inbound.held()
            + self.busy.as_deref().map_or(0, |busy| {
                busy.outbound.held()
                    + busy.exchange.request.head.held()
                    + busy.exchange.request.ctx_bytes
            })
    }

    /// The storage of the answer buffer (backend → client).
    pub fn answer_buffer_held(&self) -> usize {
        self.busy.as_deref().map_or(0, |busy| busy.outbound.held())
    }

    /// The exchange waits on its client: an answer the client does not
    /// take (its socket or window shut), or a request body it does not
    /// send. One waiting on its backend is not.
    fn waits_on_client(&self) -> bool {
        let Some(busy) = self.busy.as_deref() else {
            return false;
        };
        let answer_waits = !busy.to_client.is_empty()
            || busy.exchange.state.local_body_pending()
            || (!busy.outbound.is_empty()
                && matches!(
                    busy.exchange.state,
                    State::Forwarding {
                        response: ResponseSide::Body { .. },
                        ..
                    }
                ));
        let body_waits = self.inbound.is_empty()
            && match &busy.exchange.state {
                // A client that asked for `100 Continue` sends its body
                // once the backend says so (RFC 9110 §10.1.1): until then
                // it waits on the backend.
                State::Forwarding {
                    response: ResponseSide::Head { interim: 0 },
                    ..
                } if busy.exchange.request.head.expect_continue => false,
                State::Forwarding { request, .. } => request.body.is_some(),
                State::Local { discard, .. } => discard.is_some(),
                _ => false,
            };
        answer_waits || body_waits
    }

    /// How long the exchange has waited on its client without moving
    /// (`memory::MIN_PROGRESS` bytes either way restart the count), as of
    /// this look; `None` while it does not wait on it.
    pub fn stalled(&mut self, now: Instant) -> Option<std::time::Duration> {
        let waits = self.waits_on_client();
        let busy = self.busy.as_deref_mut()?;
        if !waits {
            busy.stall = None;
            return None;
        }
        match busy.stall {
            Some((since, moved)) if busy.moved - moved < crate::memory::MIN_PROGRESS => {
                Some(now.saturating_duration_since(since))
            }
            _ => {
                busy.stall = Some((now, busy.moved));
                Some(std::time::Duration::ZERO)
            }
        }
    }

    /// The pool whose server the exchange holds, if any.
    pub fn leased_pool(&self) -> Option<usize> {
        match &self.busy.as_deref()?.exchange.state {
            State::Forwarding { attempt, .. } => attempt.lease.as_ref().map(|lease| lease.pool()),
            _ => None,
        }
    }

    fn link<'a>(
        &'a mut self,
        key: Key,
        client: &'a Client,
    ) -> Option<(Link<'a>, &'a mut Exchange)> {
        let busy = self.busy.as_deref_mut()?;
        Some((
            Link {
                waiter: key.waiter,
                client,
                inbound: &mut self.inbound,
                outbound: &mut busy.outbound,
                to_client: &mut busy.to_client,
            },
            &mut busy.exchange,
        ))
    }

    /// The state of the request in progress, if there is one.
    fn state(&self) -> Option<&State> {
        self.busy.as_deref().map(|busy| &busy.exchange.state)
    }

    /// What waits in the client buffer (for the stage's tests).
    #[cfg(test)]
    pub fn inbound_data(&self) -> &[u8] {
        self.inbound.data()
    }

    /// Makes all the progress the sockets allow.
    pub fn drive(&mut self, key: Key, peer: &mut impl Peer, services: &mut Services) -> Step {
        let buffer_bytes = services.settings.buffer_bytes;
        super::drive_rounds(buffer_bytes, || self.run_once(key, peer, services))
    }

    fn run_once(
        &mut self,
        key: Key,
        peer: &mut impl Peer,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let mut progress = self.read_client(peer)?;
        let eof = peer.eof();
        let client = peer.client();
        progress |= self.advance(key, client, eof, services)?;
        if let Some((mut link, exchange)) = self.link(key, client) {
            let written = exchange.write_backend(&mut link, services);
            progress |= self.take(services, written)?;
        }
        if let Some((mut link, exchange)) = self.link(key, client) {
            progress |= exchange.read_backend(&mut link);
        }
        progress |= self.write_client(peer)?;
        Ok(progress)
    }

    fn read_client(&mut self, peer: &mut impl Peer) -> Result<bool, Step> {
        let closing = matches!(
            self.state(),
            Some(State::Local {
                discard: None,
                after: After::Close,
                ..
            })
        );
        if closing {
            return Ok(false);
        }
        let fill = peer.read_into(&mut self.inbound).map_err(Step::Close)?;
        if let Some(busy) = self.busy.as_deref_mut() {
            busy.moved += fill.read as u64;
        }
        if fill.read > 0
            && self.busy.is_none()
            && matches!(self.wait, Wait::Silent | Wait::KeepAlive)
        {
            // A request head that is not in yet has `client_header` to
            // complete from now.
            self.wait = Wait::Head {
                since: timer::now(),
            };
        }
        Ok(fill.read > 0 || fill.eof)
    }

    fn advance(
        &mut self,
        key: Key,
        client: &Client,
        eof: bool,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let Some(busy) = self.busy.as_deref_mut() else {
            return self.next_request(key, client, eof, services);
        };
        if busy.given.is_some() {
            return self.next_request(key, client, eof, services);
        }
        let exchange = &mut busy.exchange;
        match &mut exchange.state {
            State::Idle => {
                self.next_wait();
                Ok(true)
            }
            State::Local {
                discard,
                after,
                linger,
                ..
            } => {
                let (after, linger) = (*after, *linger);
                let mut progress = false;
                if let Some(body) = discard {
                    let count = body.discard(&mut self.inbound).map_err(|error| {
                        Step::Close(End::Aborted(format!("request body: {error}")))
                    })?;
                    if let Some(transaction) = &mut exchange.transaction {
                        transaction.bytes_received += count as u64;
                    }
                    progress = count > 0;
                    if body.is_complete() {
                        *discard = None;
                    }
                }
                let answered = matches!(exchange.state, State::Local { discard: None, .. });
                if !answered || !busy.to_client.is_empty() || exchange.state.local_body_pending() {
                    return Ok(progress);
                }
                exchange.finish(services, true);
                match after {
                    After::Next => {
                        self.next_wait();
                        Ok(true)
                    }
                    After::Close => Err(Step::Close(End::Done {
                        linger: linger || !self.inbound.is_empty(),
                    })),
                }
            }
            State::Upstream { .. } | State::Forwarding { .. } => {
                let Some((mut link, exchange)) = self.link(key, client) else {
                    return Ok(false);
                };
                let turn = exchange.advance(&mut link, services);
                self.take(services, turn)
            }
        }
    }

    /// Between requests: what the request held goes back, and the
    /// connection waits (a pipelined head may already be here).
    fn next_wait(&mut self) {
        if let Some(busy) = self.busy.take() {
            busy.give_back();
        }
        self.wait = if self.inbound.is_empty() {
            Wait::KeepAlive
        } else {
            Wait::Head {
                since: timer::now(),
            }
        };
    }

    /// Acts on what the exchange asked for.
    fn take(&mut self, services: &mut Services, turn: Turn) -> Result<bool, Step> {
        match turn {
            Turn::Wait => Ok(false),
            Turn::Moved => Ok(true),
            Turn::Answer(reply, discard) => {
                self.answer(services, Answer::Error(reply), discard);
                Ok(true)
            }
            Turn::Replaced(reply, discard) => {
                self.answer(services, Answer::Replaced(&reply), discard);
                Ok(true)
            }
            Turn::Done { keep_alive, linger } => {
                if let Some(busy) = self.busy.as_deref_mut() {
                    let exchange = &mut busy.exchange;
                    exchange.finish(services, true);
                }
                if keep_alive {
                    // The next pipelined request is read on this turn.
                    self.next_wait();
                    Ok(true)
                } else {
                    Err(Step::Close(End::Done {
                        linger: linger || !self.inbound.is_empty(),
                    }))
                }
            }
            Turn::Switched => Err(Step::Upgrade),
            Turn::Abort(why) => Err(Step::Close(End::Aborted(why))),
        }
    }

    fn write_client(&mut self, peer: &mut impl Peer) -> Result<bool, Step> {
        // Handshake messages and ciphertext that did not fit the socket.
        let progress = peer.flush().map_err(client_error)?;
        let Some(busy) = self.busy.as_deref_mut() else {
            return Ok(progress);
        };
        let (passage, ends_connection) = match &mut busy.exchange.state {
            State::Forwarding {
                response: ResponseSide::Body { body, after, .. },
                ..
            } => (
                body.as_mut().map_or(Passage::Queued, Passage::Body),
                *after == After::Close,
            ),
            State::Local {
                body,
                discard,
                after,
                ..
            } => (
                Passage::Local(body),
                discard.is_none() && *after == After::Close,
            ),
            _ => (Passage::Queued, false),
        };
        let moved = forward::forward(
            &mut busy.outbound,
            passage,
            &mut busy.to_client,
            peer,
            ends_connection,
            None,
        );
        match moved {
            Ok(moved) => {
                busy.moved += (moved.queued + moved.passed) as u64;
                if let Some(transaction) = &mut busy.exchange.transaction {
                    transaction.bytes_sent += (moved.queued + moved.passed) as u64;
                    if !transaction.local {
                        transaction.body_bytes_sent += moved.passed as u64;
                    }
                }
                Ok(progress || moved.any())
            }
            Err(ForwardError::Sink(error)) => Err(client_error(error)),
            Err(error) => Err(Step::Close(End::Aborted(format!("response body: {error}")))),
        }
    }

    pub fn update_interest(
        &mut self,
        client: &mut Client,
        registry: &Registry,
        token: Token,
    ) -> io::Result<()> {
        let request_read = self.update_backend_interest(registry)?;
        let client_wants_write = self.wants_client_write() || client.transport.wants_write();
        // A client whose request is all read, waiting for its answer, needs
        // no events: writes are tried as the answer arrives. One not yet in
        // the poll set stays out, so a client that asked to close may be
        // answered and closed without ever entering it.
        let waiting_for_answer = request_read && self.inbound.is_empty() && !client_wants_write;
        let endpoint = client.transport.endpoint_mut();
        if waiting_for_answer && endpoint.interest.is_none() {
            return Ok(());
        }
        endpoint.update_interest(registry, token, client_wants_write)
    }

    /// Something waits to go to the client: rsp's own bytes, or body bytes
    /// of a response being passed on.
    pub fn wants_client_write(&self) -> bool {
        let Some(busy) = self.busy.as_deref() else {
            return false;
        };
        !busy.to_client.is_empty()
            || busy.exchange.state.local_body_pending()
            || (matches!(
                busy.exchange.state,
                State::Forwarding {
                    response: ResponseSide::Body { body: Some(_), .. },
                    ..
                }
            ) && !busy.outbound.is_empty())
    }

    /// Registers the backend socket for what the exchange waits for of it;
    /// returns whether the whole request has been read.
    pub fn update_backend_interest(&mut self, registry: &Registry) -> io::Result<bool> {
        let Some(busy) = self.busy.as_deref_mut() else {
            return Ok(false);
        };
        match &mut busy.exchange.state {
            State::Forwarding {
                backend, request, ..
            } => {
                let backend_wants_write = !backend.write_failed
                    && (!busy.exchange.to_backend.is_empty()
                        || (request.body.is_some() && !self.inbound.is_empty()));
                let backend_token = backend.token();
                backend
                    .endpoint
                    .update_interest(registry, backend_token, backend_wants_write)?;
                Ok(request.body.is_none())
            }
            State::Upstream {
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
        self.busy.as_deref().is_some_and(|busy| {
            busy.to_client.is_empty()
                && matches!(
                    &busy.exchange.state,
                    State::Local {
                        discard: Some(_),
                        body,
                        ..
                    } if body.is_done()
                )
        })
    }

    /// The rest of the request's body will not be read (the stream ends).
    pub fn forgo_body(&mut self) {
        if let Some(busy) = self.busy.as_deref_mut()
            && let State::Local { discard, .. } = &mut busy.exchange.state
        {
            *discard = None;
        }
    }

    /// The backend socket this stage holds, if any.
    pub fn backend_mut(&mut self) -> Option<&mut Endpoint> {
        match &mut self.busy.as_deref_mut()?.exchange.state {
            State::Forwarding { backend, .. } => Some(&mut backend.endpoint),
            State::Upstream { dial, .. } => dial.backend_mut(),
            _ => None,
        }
    }

    /// A slot freed in the pool this request waits on.
    pub fn wake(&mut self) {
        if let Some(busy) = self.busy.as_deref_mut()
            && let State::Upstream { dial, .. } = &mut busy.exchange.state
        {
            dial.wake();
        }
    }

    pub fn follow_reload(
        &mut self,
        key: Key,
        client: &Client,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
        services: &mut Services,
    ) -> bool {
        let Some((link, exchange)) = self.link(key, client) else {
            return false;
        };
        match exchange.follow_reload(&link, moved, pool_moved) {
            Some(turn) => {
                let _ = self.take(services, turn);
                true
            }
            None => false,
        }
    }

    /// The client's first bytes are the HTTP/2 preface's request line
    /// (on a listener that takes h2c): what it sent goes on to the HTTP/2
    /// stage, which reads the rest of the preface.
    pub fn starts_http2(&self) -> bool {
        use crate::h2::frame::{Opening, opening};
        self.busy.is_none() && opening(self.inbound.data()) == Opening::Http2
    }

    pub fn into_inbound(self) -> Buffer {
        self.inbound
    }

    /// The backend switched protocols: the same sockets, buffers and lease
    /// go on as a tunnel.
    pub fn into_tunnel(self) -> Option<Tunnel> {
        let Http1 { inbound, busy, .. } = self;
        let Busy {
            exchange,
            outbound,
            to_client,
            ..
        } = *busy?;
        let Exchange {
            request,
            response: _,
            transaction,
            to_backend,
            state,
        } = exchange;
        match state {
            State::Forwarding {
                backend,
                attempt,
                response: ResponseSide::Switched,
                ..
            } => Some(Tunnel::new(
                backend,
                Some(attempt),
                [inbound, outbound],
                [to_client, to_backend],
                request,
                transaction,
            )),
            _ => None,
        }
    }

    pub fn close(mut self, key: Key, services: &mut Services, end: &End) {
        let Some(mut busy) = self.busy.take() else {
            return;
        };
        let answering = match &busy.exchange.state {
            State::Idle
            | State::Forwarding {
                response: ResponseSide::Switched,
                ..
            } => false,
            State::Local { discard: None, .. } => {
                !busy.to_client.is_empty() || busy.exchange.state.local_body_pending()
            }
            _ => true,
        };
        if answering {
            services.counters.unanswered += 1;
        }
        let completed = matches!(end, End::Done { .. })
            && busy.to_client.is_empty()
            && !busy.exchange.state.local_body_pending();
        let exchange = &mut busy.exchange;
        client_left(&mut exchange.transaction, end);
        let outcome = match end {
            End::Aborted(_) => Outcome::Failed,
            _ => Outcome::Ok,
        };
        let exchange = &mut busy.exchange;
        exchange.release(key.waiter, services, outcome);
        exchange.finish(services, completed);
        busy.give_back();
    }
}
