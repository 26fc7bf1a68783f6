//! The tunnel stage: bytes pass both ways as they come, through the same
//! bounded buffers, after a 101 or for a tcp listener. Each side's end is
//! passed on once the other side has everything it sent; the tunnel closes
//! when both have ended.

use std::io;

use mio::{Registry, Token};

use crate::balancer::Outcome;
use crate::buffer::Buffer;
use crate::router::RequestView;
use crate::services::Services;
use crate::transaction::Transaction;

use super::attempt::{Attempt, Backend, ReadEnd};
use super::forward::{self, ForwardError, Passage, Queue};
use super::transport::Endpoint;
use super::{Client, End, Step};
use crate::exchange::{client_left, finish_transaction};

/// One direction of the tunnel: open, or its end passed on to the other
/// side (a shut write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Open,
    Shut,
}

pub struct Tunnel {
    backend: Backend,
    /// Holds the server's lease until the tunnel closes.
    attempt: Option<Attempt>,
    /// Client → backend.
    inbound: Buffer,
    /// Backend → client.
    outbound: Buffer,
    /// What rsp still has to say to the client first (the rest of a 101 head).
    to_client: Queue,
    /// What rsp still has to say to the backend first (a PROXY header).
    to_backend: Queue,
    /// Client → backend: shut once the client ended and all it sent went.
    upstream: Flow,
    /// Backend → client: shut once the backend ended and all it sent went.
    downstream: Flow,
    request: RequestView,
    transaction: Option<Transaction>,
}

impl Tunnel {
    pub fn new(
        backend: Backend,
        attempt: Option<Attempt>,
        [inbound, outbound]: [Buffer; 2],
        [to_client, to_backend]: [Queue; 2],
        request: RequestView,
        transaction: Option<Transaction>,
    ) -> Tunnel {
        Tunnel {
            backend,
            attempt,
            inbound,
            outbound,
            to_client,
            to_backend,
            upstream: Flow::Open,
            downstream: Flow::Open,
            request,
            transaction,
        }
    }

    pub fn drive(&mut self, client: &mut Client, services: &mut Services) -> Step {
        super::drive_rounds(services.settings.buffer_bytes, || self.run_once(client))
    }

    fn run_once(&mut self, client: &mut Client) -> Result<bool, Step> {
        let mut progress = false;
        let fill = client.read_into(&mut self.inbound).map_err(Step::Close)?;
        progress |= fill.read > 0 || fill.eof;
        if !self.backend.write_failed {
            let written = forward::forward(
                &mut self.inbound,
                Passage::Raw,
                &mut self.to_backend,
                &mut self.backend.endpoint,
                false,
                None,
            );
            match written {
                Ok(moved) => {
                    self.count(moved.passed as u64, 0, 0);
                    progress |= moved.any();
                }
                Err(error) => {
                    log::debug!(
                        "{}: backend {} stopped reading the tunnel: {error}",
                        client.address,
                        self.backend.server
                    );
                    self.backend.write_failed = true;
                    progress = true;
                }
            }
        }
        progress |= self.backend.read_into(&mut self.outbound, client.address);
        if client.transport.wants_write() && client.transport.endpoint().writable {
            client
                .transport
                .flush()
                .map_err(|error| Step::Close(End::ClientGone(Some(error))))?;
            progress = true;
        }
        let written = forward::forward(
            &mut self.outbound,
            Passage::Raw,
            &mut self.to_client,
            &mut client.transport,
            false,
            None,
        );
        match written {
            Ok(moved) => {
                self.count(0, (moved.queued + moved.passed) as u64, moved.passed as u64);
                progress |= moved.any();
            }
            Err(ForwardError::Sink(error)) => {
                return Err(Step::Close(End::ClientGone(Some(error))));
            }
            Err(error) => return Err(Step::Close(End::Aborted(error.to_string()))),
        }
        progress |= self.pass_ends(client)?;
        Ok(progress)
    }

    fn count(&mut self, received: u64, sent: u64, body_sent: u64) {
        if let Some(transaction) = &mut self.transaction {
            transaction.bytes_received += received;
            transaction.bytes_sent += sent;
            transaction.body_bytes_sent += body_sent;
        }
    }

    /// One side finished sending: its end is passed on once the other
    /// side has everything it sent.
    fn pass_ends(&mut self, client: &mut Client) -> Result<bool, Step> {
        if self.backend.read == ReadEnd::Reset {
            return Err(Step::Close(End::Aborted(format!(
                "backend {} reset the tunnel",
                self.backend.server
            ))));
        }
        let mut progress = false;
        if self.backend.write_failed && !self.inbound.is_empty() {
            // The backend stopped reading: what the client sends has nowhere to go.
            self.inbound.consume(self.inbound.len());
            progress = true;
        }
        if client.eof
            && self.inbound.is_empty()
            && self.to_backend.is_empty()
            && self.upstream == Flow::Open
        {
            self.backend.endpoint.shutdown_write();
            self.upstream = Flow::Shut;
            progress = true;
        }
        if self.backend.read == ReadEnd::Ended
            && self.outbound.is_empty()
            && self.to_client.is_empty()
            && self.downstream == Flow::Open
        {
            client.transport.shutdown_write();
            self.downstream = Flow::Shut;
            progress = true;
        }
        if self.downstream == Flow::Shut
            && (self.upstream == Flow::Shut || self.backend.write_failed)
        {
            return Err(Step::Close(End::Done { linger: false }));
        }
        Ok(progress)
    }

    pub fn update_interest(
        &mut self,
        client: &mut Client,
        registry: &Registry,
        token: Token,
    ) -> io::Result<()> {
        let client_wants_write = !self.to_client.is_empty()
            || !self.outbound.is_empty()
            || client.transport.wants_write();
        let backend_wants_write =
            !self.backend.write_failed && (!self.to_backend.is_empty() || !self.inbound.is_empty());
        let backend_token = self.backend.token();
        self.backend
            .endpoint
            .update_interest(registry, backend_token, backend_wants_write)?;
        client
            .transport
            .endpoint_mut()
            .update_interest(registry, token, client_wants_write)
    }

    pub fn backend_mut(&mut self) -> &mut Endpoint {
        &mut self.backend.endpoint
    }

    pub fn follow_reload(
        &mut self,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
    ) {
        if let Some(attempt) = &mut self.attempt {
            attempt.follow_reload(moved, pool_moved);
        }
    }

    pub fn close(mut self, services: &mut Services, end: &End) {
        client_left(&mut self.transaction, end);
        let outcome = match end {
            End::Aborted(_) => Outcome::Failed,
            _ => Outcome::Ok,
        };
        if let Some(attempt) = &mut self.attempt {
            attempt.release(services, outcome);
        }
        let completed = matches!(end, End::Done { .. });
        finish_transaction(
            &mut self.transaction,
            &mut self.request,
            services,
            completed,
            true,
        );
    }
}
