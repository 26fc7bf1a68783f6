//! The HTTP/1 stage: reads request heads off the client connection, routes
//! each, and carries one exchange at a time (pipelined requests wait in the
//! buffer, answered in order); writes the answers back, rsp's own included.

use std::io;
use std::time::Instant;

use mio::{Registry, Token};

use crate::buffer::Buffer;
use crate::services::Services;
use crate::timer;

use super::exchange::{
    After, Busy, Exchange, Flow, H1, Local, ResponseSide, State, Turn, Upstream,
};
use super::forward::ForwardError;
use super::tunnel::Tunnel;
use super::{Client, End, Key, Step, client_error};

mod deadlines;
mod request;

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
                    + busy.exchange.state.upstream_held()
            })
    }

    /// How long the exchange has waited on its client without moving, as
    /// of this look (`Busy::stalled`).
    pub fn stalled(&mut self, now: Instant) -> Option<std::time::Duration> {
        let inbound_empty = self.inbound.is_empty();
        let busy = self.busy.as_deref_mut()?;
        let waits = busy.waits_on_client(inbound_empty);
        busy.stalled(now, waits)
    }

    /// The pool whose server the exchange holds, if any.
    pub fn leased_pool(&self) -> Option<usize> {
        self.busy.as_deref()?.leased_pool()
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
    pub fn drive(&mut self, key: Key, client: &mut Client, services: &mut Services) -> Step {
        let buffer_bytes = services.settings.buffer_bytes;
        super::drive_rounds(buffer_bytes, || self.run_once(key, client, services))
    }

    fn run_once(
        &mut self,
        key: Key,
        client: &mut Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let mut progress = self.read_client(client)?;
        let eof = client.eof;
        progress |= self.advance(key, client, eof, services)?;
        if let Some(busy) = self.busy.as_deref_mut() {
            let (flow, read) = busy.pass_upstream(key.waiter, client, &mut self.inbound, services);
            progress |= self.flow(flow)? | read;
        }
        progress |= self.write_client(client)?;
        Ok(progress)
    }

    fn read_client(&mut self, client: &mut Client) -> Result<bool, Step> {
        let closing = matches!(
            self.state(),
            Some(State::Answering(
                Upstream::Local(Local {
                    discard: None,
                    after: After::Close,
                    ..
                }) | Upstream::Cache(Local {
                    discard: None,
                    after: After::Close,
                    ..
                })
            ))
        );
        if closing {
            return Ok(false);
        }
        let fill = client.read_into(&mut self.inbound).map_err(Step::Close)?;
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
        client: &mut Client,
        eof: bool,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let Some(busy) = self.busy.as_deref_mut() else {
            return self.next_request(key, client, eof, services);
        };
        if matches!(busy.exchange.state, State::Idle) {
            self.next_wait();
            return Ok(true);
        }
        let flow = busy
            .advance(key.waiter, client, &mut self.inbound, services)
            .map_err(Step::Close)?;
        self.flow(flow)
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
        let Some(busy) = self.busy.as_deref_mut() else {
            return Ok(false);
        };
        let flow = busy.act(services, turn);
        self.flow(flow)
    }

    /// What the connection does after the exchange's move: waits, goes on
    /// to the next request, closes, or becomes a tunnel.
    fn flow(&mut self, flow: Flow) -> Result<bool, Step> {
        match flow {
            Flow::Wait => Ok(false),
            Flow::Moved => Ok(true),
            Flow::Done {
                keep_alive: true, ..
            } => {
                // The next pipelined request is read on this turn.
                self.next_wait();
                Ok(true)
            }
            Flow::Done { linger, .. } => Err(Step::Close(End::Done {
                linger: linger || !self.inbound.is_empty(),
            })),
            Flow::Switched => Err(Step::Upgrade),
            Flow::Abort(why) => Err(Step::Close(End::Aborted(why))),
        }
    }

    fn write_client(&mut self, client: &mut Client) -> Result<bool, Step> {
        // Handshake messages and ciphertext that did not fit the socket.
        let progress = client.flush().map_err(client_error)?;
        let Some(busy) = self.busy.as_deref_mut() else {
            return Ok(progress);
        };
        match busy.write_client(client) {
            Ok(moved) => Ok(progress || moved),
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

    /// Something waits to go to the client.
    pub fn wants_client_write(&self) -> bool {
        self.busy.as_deref().is_some_and(Busy::wants_client_write)
    }

    /// Registers the backend socket for what the exchange waits for of it;
    /// returns whether the whole request has been read.
    pub fn update_backend_interest(&mut self, registry: &Registry) -> io::Result<bool> {
        let inbound_empty = self.inbound.is_empty();
        match self.busy.as_deref_mut() {
            Some(busy) => busy.update_backend_interest(registry, inbound_empty),
            None => Ok(false),
        }
    }

    /// The backend socket this stage holds, if any.
    pub fn backend_mut(&mut self) -> Option<&mut super::transport::Endpoint> {
        self.busy.as_deref_mut()?.backend_mut()
    }

    /// The work the admin answer waited for is done: `reply` is written
    /// (whether the request still waited for it).
    pub fn answered(
        &mut self,
        services: &Services,
        ticket: u64,
        reply: &crate::reply::LocalReply,
    ) -> bool {
        self.busy
            .as_deref_mut()
            .is_some_and(|busy| busy.answered(services, ticket, reply))
    }

    /// A slot freed in the pool this request waits on.
    pub fn wake(&mut self) {
        if let Some(busy) = self.busy.as_deref_mut() {
            busy.wake();
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
        let Some(busy) = self.busy.as_deref_mut() else {
            return false;
        };
        let link = (key.waiter, client, &mut self.inbound);
        match busy.follow_reload(link, moved, pool_moved, services) {
            Some(flow) => {
                let _ = self.flow(flow);
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
            lookup: _,
            encoder: _,
        } = exchange;
        match state {
            State::Answering(Upstream::H1(H1 {
                backend,
                attempt,
                response: ResponseSide::Switched,
                ..
            })) => Some(Tunnel::new(
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
        if let Some(busy) = self.busy.take() {
            busy.close(key.waiter, services, end);
        }
    }
}
