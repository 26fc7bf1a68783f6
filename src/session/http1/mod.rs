//! The HTTP/1 stage: reads request heads off the client connection, routes
//! each, and carries one exchange at a time (pipelined requests wait in the
//! buffer, answered in order); writes the answers back, rsp's own included.

use std::io;
use std::time::Instant;

use mio::{Registry, Token};

use crate::balancer::Outcome;
use crate::buffer::Buffer;
use crate::config::Timeouts;
use crate::http::RequestHead;
use crate::reply::ErrorReply;
use crate::router::RequestView;
use crate::services::Services;
use crate::timer;

use super::exchange::{After, Exchange, Link, ResponseSide, State, Turn, Wait};
use super::forward::{self, ForwardError, Passage, Queue};
use super::transport::{Endpoint, is_tls_error};
use super::tunnel::Tunnel;
use super::upstream::Dial;
use super::{Client, End, Step, Timeout, client_left, finish_transaction};

mod request;

use request::Answer;

pub struct Http1 {
    /// Client → backend bytes: request heads and bodies.
    inbound: Buffer,
    /// Backend → client bytes: response heads and bodies.
    outbound: Buffer,
    /// Heads and answers for the client, sent before `outbound`'s bytes.
    to_client: Queue,
    exchange: Exchange,
}

/// Turns a client socket error into the end it means.
fn client_error(error: io::Error) -> Step {
    if is_tls_error(&error) {
        Step::Close(End::Aborted(error.to_string()))
    } else {
        Step::Close(End::ClientGone(Some(error)))
    }
}

impl Http1 {
    /// The stage for a connection whose first bytes (if any) are in `inbound`.
    pub fn new(client: &Client, inbound: Buffer, buffer_bytes: usize) -> Http1 {
        let wait = if inbound.is_empty() {
            Wait::Silent
        } else {
            Wait::Head {
                since: timer::now(),
            }
        };
        Http1 {
            inbound,
            outbound: Buffer::new(buffer_bytes),
            to_client: Queue::default(),
            exchange: Exchange {
                request: RequestView {
                    head: RequestHead::default(),
                    client: client.address,
                    request_id: String::new(),
                    tls: client.transport.is_tls(),
                    sni: client.transport.server_name().map(str::to_owned),
                },
                transaction: None,
                to_backend: Queue::default(),
                state: State::Idle(wait),
            },
        }
    }

    fn link<'a>(&'a mut self, key: usize, client: &'a Client) -> (Link<'a>, &'a mut Exchange) {
        (
            Link {
                key,
                client,
                inbound: &mut self.inbound,
                outbound: &mut self.outbound,
                to_client: &mut self.to_client,
            },
            &mut self.exchange,
        )
    }

    /// What waits in the client buffer (for the stage's tests).
    #[cfg(test)]
    pub fn inbound_data(&self) -> &[u8] {
        self.inbound.data()
    }

    /// Makes all the progress the sockets allow.
    pub fn drive(&mut self, key: usize, client: &mut Client, services: &mut Services) -> Step {
        let mut any = false;
        loop {
            let turn = (|| -> Result<bool, Step> {
                let mut progress = self.read_client(client)?;
                progress |= self.advance(key, client, services)?;
                let (mut link, exchange) = self.link(key, client);
                let written = exchange.write_backend(&mut link, services);
                progress |= self.take(key, client, services, written)?;
                let (mut link, exchange) = self.link(key, client);
                progress |= exchange.read_backend(&mut link);
                progress |= self.write_client(client)?;
                Ok(progress)
            })();
            match turn {
                Ok(true) => any = true,
                Ok(false) => return Step::Continue { progress: any },
                Err(step) => return step,
            }
        }
    }

    fn read_client(&mut self, client: &mut Client) -> Result<bool, Step> {
        let closing = matches!(
            self.exchange.state,
            State::Local {
                discard: None,
                after: After::Close,
                ..
            }
        );
        if closing {
            return Ok(false);
        }
        let fill = client.read_into(&mut self.inbound).map_err(Step::Close)?;
        if fill.read > 0
            && let State::Idle(wait @ (Wait::Silent | Wait::KeepAlive)) = &mut self.exchange.state
        {
            // A request head that is not in yet has `client_header` to
            // complete from now.
            *wait = Wait::Head {
                since: timer::now(),
            };
        }
        Ok(fill.read > 0 || fill.eof)
    }

    fn advance(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        match &mut self.exchange.state {
            State::Idle(_) => self.next_request(key, client, services),
            State::Local {
                discard,
                after,
                linger,
            } => {
                let (after, linger) = (*after, *linger);
                let mut progress = false;
                if let Some(body) = discard {
                    let count = body.discard(&mut self.inbound).map_err(|error| {
                        Step::Close(End::Aborted(format!("request body: {error}")))
                    })?;
                    if let Some(transaction) = &mut self.exchange.transaction {
                        transaction.bytes_received += count as u64;
                    }
                    progress = count > 0;
                    if body.is_complete() {
                        *discard = None;
                    }
                }
                let answered = matches!(self.exchange.state, State::Local { discard: None, .. });
                if !answered || !self.to_client.is_empty() {
                    return Ok(progress);
                }
                let exchange = &mut self.exchange;
                finish_transaction(&mut exchange.transaction, &exchange.request, services, true);
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
                let (mut link, exchange) = self.link(key, client);
                let turn = exchange.advance(&mut link, services);
                self.take(key, client, services, turn)
            }
        }
    }

    /// Between requests: a pipelined head may already be here.
    fn next_wait(&mut self) {
        self.exchange.state = State::Idle(if self.inbound.is_empty() {
            Wait::KeepAlive
        } else {
            Wait::Head {
                since: timer::now(),
            }
        });
    }

    /// Acts on what the exchange asked for.
    fn take(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
        turn: Turn,
    ) -> Result<bool, Step> {
        match turn {
            Turn::Wait => Ok(false),
            Turn::Moved => Ok(true),
            Turn::Answer(reply, discard) => {
                self.answer(Answer::Error(reply), discard);
                Ok(true)
            }
            Turn::Done { keep_alive, linger } => {
                let exchange = &mut self.exchange;
                finish_transaction(&mut exchange.transaction, &exchange.request, services, true);
                if keep_alive {
                    self.next_wait();
                    // The next pipelined request is read on this turn.
                    let _ = (key, client);
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

    fn write_client(&mut self, client: &mut Client) -> Result<bool, Step> {
        let mut progress = false;
        // Handshake messages and ciphertext that did not fit the socket.
        if client.transport.wants_write() && client.transport.endpoint().writable {
            client.transport.flush().map_err(client_error)?;
            progress = true;
        }
        let (passage, ends_connection) = match &mut self.exchange.state {
            State::Forwarding {
                response: ResponseSide::Body { body, after, .. },
                ..
            } => (
                body.as_mut().map_or(Passage::Queued, Passage::Body),
                *after == After::Close,
            ),
            State::Local {
                discard: None,
                after: After::Close,
                ..
            } => (Passage::Queued, true),
            _ => (Passage::Queued, false),
        };
        let moved = forward::forward(
            &mut self.outbound,
            passage,
            &mut self.to_client,
            &mut client.transport,
            ends_connection,
            None,
        );
        match moved {
            Ok(moved) => {
                if let Some(transaction) = &mut self.exchange.transaction {
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

    /// The stage's next deadline.
    pub fn deadline(&self, timeouts: &Timeouts, last: Instant) -> (Instant, Timeout) {
        let idle = (last + timeouts.idle, Timeout::Idle);
        match &self.exchange.state {
            State::Idle(Wait::Silent) => (last + timeouts.client_header, Timeout::Silent),
            State::Idle(Wait::KeepAlive) if self.inbound.is_empty() => {
                (last + timeouts.client_idle, Timeout::ClientIdle)
            }
            State::Idle(Wait::KeepAlive) => (last + timeouts.client_header, Timeout::ClientHeader),
            State::Idle(Wait::Head { since }) => {
                (*since + timeouts.client_header, Timeout::ClientHeader)
            }
            State::Upstream {
                dial: Dial::Queued { deadline, .. },
                ..
            } => (*deadline, Timeout::Queue),
            State::Upstream {
                dial: Dial::Connecting { deadline, .. },
                ..
            } => (*deadline, Timeout::Connect),
            State::Forwarding {
                request,
                response: ResponseSide::Head { .. },
                ..
            } => match request.sent_at {
                Some(at) => (at + timeouts.backend_response, Timeout::BackendResponse),
                None => idle,
            },
            State::Forwarding { .. } | State::Local { .. } => idle,
        }
    }

    /// A deadline passed: act on it.
    pub fn expire(
        &mut self,
        key: usize,
        client: &mut Client,
        services: &mut Services,
        timeout: Timeout,
    ) -> Step {
        let address = client.address;
        let timeouts = services.settings.timeouts;
        let turn = match timeout {
            // Like nginx, and HAProxy's http-ignore-probes: no 408 for a
            // connection that never asked anything (browsers open spare
            // ones, and would show a 408 arriving as they use it).
            Timeout::Silent => {
                log::info!(
                    "{address}: closed, no request within {:?}",
                    timeouts.client_header
                );
                return Step::Close(End::Done { linger: false });
            }
            Timeout::ClientIdle => {
                log::debug!("{address}: idle keep-alive connection closed");
                return Step::Close(End::Done { linger: false });
            }
            Timeout::ClientHeader => {
                self.begin_transaction(client, services, false, self.inbound.len());
                log::info!(
                    "{address}: 408, request head not complete within {:?}",
                    timeouts.client_header
                );
                Turn::Answer(ErrorReply::RequestTimeout, None)
            }
            Timeout::Queue => {
                let (link, exchange) = self.link(key, client);
                exchange.queue_timed_out(&link, services)
            }
            Timeout::Connect => {
                let (link, exchange) = self.link(key, client);
                let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                exchange.connect_failed(&link, services, error)
            }
            Timeout::BackendResponse => {
                let (link, exchange) = self.link(key, client);
                exchange.response_timed_out(&link, services)
            }
            Timeout::Idle | Timeout::Tunnel => {
                return Step::Close(End::Aborted(format!(
                    "no bytes moved for {:?}",
                    timeouts.idle
                )));
            }
        };
        match self.take(key, client, services, turn) {
            Ok(_) => Step::Continue { progress: true },
            Err(step) => step,
        }
    }

    pub fn update_interest(
        &mut self,
        client: &mut Client,
        registry: &Registry,
        token: Token,
    ) -> io::Result<()> {
        let mut client_wants_write = !self.to_client.is_empty() || client.transport.wants_write();
        let mut request_read = false;
        match &mut self.exchange.state {
            State::Forwarding {
                backend,
                request,
                response,
                ..
            } => {
                if matches!(response, ResponseSide::Body { body: Some(_), .. }) {
                    client_wants_write |= !self.outbound.is_empty();
                }
                let backend_wants_write = !backend.write_failed
                    && (!self.exchange.to_backend.is_empty()
                        || (request.body.is_some() && !self.inbound.is_empty()));
                let backend_token = backend.token();
                backend
                    .endpoint
                    .update_interest(registry, backend_token, backend_wants_write)?;
                request_read = request.body.is_none();
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
                request_read = body.is_none();
            }
            _ => {}
        }
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

    /// The backend socket this stage holds, if any.
    pub fn backend_mut(&mut self) -> Option<&mut Endpoint> {
        match &mut self.exchange.state {
            State::Forwarding { backend, .. } => Some(&mut backend.endpoint),
            State::Upstream { dial, .. } => dial.backend_mut(),
            _ => None,
        }
    }

    /// A slot freed in the pool this request waits on.
    pub fn wake(&mut self) {
        if let State::Upstream { dial, .. } = &mut self.exchange.state {
            dial.wake();
        }
    }

    pub fn follow_reload(
        &mut self,
        key: usize,
        client: &Client,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
        services: &mut Services,
    ) -> bool {
        let (link, exchange) = self.link(key, client);
        match exchange.follow_reload(&link, moved, pool_moved) {
            Some(turn) => {
                let _ = self.take(key, client, services, turn);
                true
            }
            None => false,
        }
    }

    /// The backend switched protocols: the same sockets, buffers and lease
    /// go on as a tunnel.
    pub fn into_tunnel(self) -> Option<Tunnel> {
        let Http1 {
            inbound,
            outbound,
            to_client,
            exchange,
        } = self;
        let Exchange {
            request,
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

    pub fn close(mut self, key: usize, services: &mut Services, end: &End) {
        let answering = match &self.exchange.state {
            State::Idle(_)
            | State::Forwarding {
                response: ResponseSide::Switched,
                ..
            } => false,
            State::Local { discard: None, .. } => !self.to_client.is_empty(),
            _ => true,
        };
        if answering {
            services.counters.unanswered += 1;
        }
        let completed = matches!(end, End::Done { .. }) && self.to_client.is_empty();
        client_left(&mut self.exchange.transaction, end);
        let outcome = match end {
            End::Aborted(_) => Outcome::Failed,
            _ => Outcome::Ok,
        };
        self.exchange.release(key, services, outcome);
        let exchange = &mut self.exchange;
        finish_transaction(
            &mut exchange.transaction,
            &exchange.request,
            services,
            completed,
        );
    }
}
