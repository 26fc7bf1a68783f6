//! The response side of an exchange: its head (interim ones, a switch,
//! the final one), its end, and what a backend's failure before a complete
//! head leads to.

use crate::balancer::Outcome;
use crate::framing::Framing;
use crate::http::{self, ClientSide, HeadError, ResponseInfo};
use crate::reply::{ErrorReply, LocalReply};
use crate::router::{Decision, Source};
use crate::services::Services;
use crate::timer::{self, Deadline};

use super::attempt::{self, Backend, Failure, Next, Origin};
use super::forward::Body;
use super::{After, Event, Exchange, H1, Link, ResponseSide, State, Turn, Upstream};

impl Exchange {
    /// `respond()` sees one of rsp's own answers (`res.source == "rsp"`):
    /// what it makes of it is the answer.
    pub fn restyle(&mut self, services: &Services, reply: LocalReply) -> LocalReply {
        self.request.sealed = true;
        let response = &mut self.response;
        response.head.local(reply.status, &reply.headers);
        response.source = Source::Rsp;
        response.server = None;
        match services.router.respond(&mut self.request, response) {
            Decision::Reply(replaced) => replaced,
            decision => {
                if decision == Decision::Retry {
                    crate::client_log!(
                        log::Level::Warn,
                        "{}: respond() returned \"retry\" for rsp's own {} answer: there is no backend answer to retry",
                        self.request.client,
                        reply.status
                    );
                }
                LocalReply {
                    status: response.head.status(),
                    headers: response.head.string_fields(),
                    body: reply.body,
                }
            }
        }
    }

    /// The upstream's next head, as its event says: an interim one passed
    /// on, a switch, the final one (after the pool's `retry_on` and
    /// `respond()`), or the failure that makes it no answer.
    pub(super) fn response_head(&mut self, link: &mut Link, services: &mut Services) -> Turn {
        if !link.to_client.is_empty() {
            // An interim head is still on its way to the client: the next
            // waits in `outbound`, whose bound stops reading the backend.
            return Turn::Wait;
        }
        let State::Answering(Upstream::H1(h1)) = &self.state else {
            return Turn::Wait;
        };
        let limit = services.settings.max_response_header_bytes;
        match h1.read_head(link.outbound, &mut self.response.head, limit) {
            Event::Nothing | Event::End { .. } => Turn::Wait,
            Event::Failed { why, reply } => self.backend_failed(link, services, &why, reply),
            Event::Head { length } if self.response.head.status() >= 200 => {
                self.final_head(link, services, length)
            }
            Event::Head { length } => self.early_head(link, services, length),
        }
    }

    /// A head before the final one: an interim head (passed on, up to
    /// `MAX_INTERIM_RESPONSES`) or a switch of protocols.
    fn early_head(&mut self, link: &mut Link, services: &mut Services, length: usize) -> Turn {
        let Some(H1 {
            response: ResponseSide::Head { interim },
            ..
        }) = self.state.h1()
        else {
            return Turn::Wait;
        };
        if self.response.head.is_interim() && *interim >= http::MAX_INTERIM_RESPONSES {
            let why = format!(
                "more than {} interim responses",
                http::MAX_INTERIM_RESPONSES
            );
            return self.backend_failed(link, services, &why, ErrorReply::BadGateway);
        }
        self.pass_on(link, services, length)
    }

    fn client_side(&self) -> ClientSide {
        client_side(&self.request.head)
    }

    /// The final head, read into `self.response`: after the pool's
    /// `retry_on`, `respond()` (when the config has one) may change it,
    /// have the request sent elsewhere, or answer in its place; the client
    /// gets what it says.
    fn final_head(&mut self, link: &mut Link, services: &mut Services, length: usize) -> Turn {
        if let Some(turn) = self
            .revalidated(link, services, length)
            .or_else(|| self.stale_for_5xx(link, services))
        {
            return turn;
        }
        let status = self.response.head.status();
        if let Some(turn) = self.retry_on_status(link, services, status) {
            return turn;
        }
        let Some(H1 { backend, .. }) = self.state.h1() else {
            return Turn::Wait;
        };
        let server = backend.server;
        if services.router.responds() {
            self.request.sealed = true;
            self.response.source = Source::Backend;
            self.response.server = Some(server);
            match services
                .router
                .respond(&mut self.request, &mut self.response)
            {
                Decision::Continue => {}
                Decision::Retry => match self.refuse_resend(services) {
                    None => return self.resend(link, services, status, "respond() said retry"),
                    Some(why) => crate::client_log!(
                        log::Level::Info,
                        "{}: respond() returned \"retry\" for {status} from {server}, not retried: {why}",
                        link.client.address
                    ),
                },
                Decision::Reply(reply) => return self.replace_response(link, services, reply),
            }
        }
        self.compress_response(services);
        self.cache_response_head(services);
        self.pass_on(link, services, length)
    }

    /// The head read into `self.response` (`length` bytes of `outbound`)
    /// is written for the client (`ResponseHead::forward`), and the
    /// response goes on: to the next head after an interim one, to its
    /// body or a tunnel after the final one; a head that cannot be passed
    /// on makes the backend's answer no answer.
    fn pass_on(&mut self, link: &mut Link, services: &mut Services, length: usize) -> Turn {
        let request = &self.request.head;
        let written = self.response.head.forward(
            client_side(request),
            request.upgrade_offer(),
            self.request.request_id(),
            link.to_client.out(),
        );
        match written {
            Ok(info) => {
                link.outbound.consume(length);
                if !info.is_interim() {
                    self.took_final_head(link, services, &info);
                } else if let Some(H1 {
                    response: ResponseSide::Head { interim },
                    ..
                }) = self.state.h1_mut()
                {
                    *interim += 1;
                }
                Turn::Moved
            }
            Err(error) => {
                link.to_client.clear();
                // After a bad 101 the client may already speak the other
                // protocol: its connection closes.
                let reply = match error {
                    HeadError::Switch(_) => ErrorReply::BadSwitch,
                    _ => ErrorReply::BadGateway,
                };
                self.backend_failed(link, services, &format!("invalid response: {error}"), reply)
            }
        }
    }

    /// Why the request may not go to another server after this answer.
    fn refuse_resend(&self, services: &Services) -> Option<String> {
        let Some(H1 { attempt, .. }) = self.state.h1() else {
            return Some("it is no longer forwarded".into());
        };
        attempt.refuse_resend(&services.pools, self.replayable())
    }

    /// A status the pool's `retry_on` names: the request goes to another
    /// server when it may (`None`: the answer goes on).
    fn retry_on_status(
        &mut self,
        link: &mut Link,
        services: &mut Services,
        status: u16,
    ) -> Option<Turn> {
        let H1 {
            attempt, backend, ..
        } = self.state.h1()?;
        let attempt::Target::Pool { pool, .. } = attempt.target else {
            return None;
        };
        if !services.pools[pool].retry_on.status(status) {
            return None;
        }
        match self.refuse_resend(services) {
            None => Some(self.resend(link, services, status, "retry_on")),
            Some(why) => {
                crate::client_log!(
                    log::Level::Info,
                    "{}: backend {} answered {status}, in retry_on, not retried: {why}",
                    link.client.address,
                    backend.server
                );
                None
            }
        }
    }

    /// Drops the backend's answer (and its connection) and sends the
    /// request to another server of its pool.
    fn resend(&mut self, link: &mut Link, services: &mut Services, status: u16, why: &str) -> Turn {
        link.to_client.clear();
        link.outbound.consume(link.outbound.len());
        let Some(H1 {
            backend,
            mut attempt,
            ..
        }) = self.take_h1()
        else {
            return Turn::Wait;
        };
        crate::client_log!(
            log::Level::Warn,
            "{}: backend {} answered {status}; retrying on another server ({why})",
            link.client.address,
            backend.server
        );
        drop(backend);
        attempt.resend(services, status_outcome(status, Outcome::Failed));
        self.dial(link, services, attempt, None, true)
    }

    /// `respond()` answered in the backend's place: the backend's body is
    /// dropped, its connection kept when that body is already all here.
    fn replace_response(
        &mut self,
        link: &mut Link,
        services: &mut Services,
        reply: LocalReply,
    ) -> Turn {
        let status = self.response.head.status();
        let client_side = ClientSide {
            keep_alive: true,
            ..self.client_side()
        };
        // The head as forwarded says how the backend frames its body.
        let framed = self
            .response
            .head
            .write_final(client_side, None, link.to_client.out());
        link.to_client.clear();
        if let Some(transaction) = &mut self.transaction {
            transaction.backend_status = Some(status);
            transaction.response_time =
                Some(timer::now().saturating_duration_since(transaction.routed_at));
        }
        let Some(H1 {
            mut backend,
            mut attempt,
            request,
            ..
        }) = self.take_h1()
        else {
            return Turn::Wait;
        };
        let whole = match &framed {
            Ok(info) => match info.framing {
                Framing::Empty => Some(info.head_length),
                Framing::Length(length) => usize::try_from(length)
                    .ok()
                    .map(|length| info.head_length + length),
                _ => None,
            },
            Err(_) => None,
        };
        let keeps = framed.as_ref().is_ok_and(|info| info.backend_keep_alive)
            && whole == Some(link.outbound.len())
            && request.body.is_none()
            && self.to_backend.is_empty()
            && !services.draining
            && backend.is_reusable();
        link.outbound.consume(link.outbound.len());
        attempt.release(
            services,
            status_outcome(self.response.head.status(), Outcome::Ok),
        );
        if keeps {
            keep(services, backend);
        }
        Turn::Replaced(reply, request.body)
    }

    /// The final head came: the transaction learns the status, and the
    /// response goes on to its body, or to a tunnel.
    fn took_final_head(&mut self, link: &Link, services: &Services, info: &ResponseInfo) {
        if let Some(transaction) = &mut self.transaction {
            transaction.status = info.status;
            transaction.backend_status = Some(info.status);
            transaction.response_time =
                Some(timer::now().saturating_duration_since(transaction.routed_at));
        }
        let fill = match info.is_switch() {
            true => None,
            false => self.start_fill(services, info),
        };
        // An encoded body is read as the backend frames it; the client
        // gets the encoder's chunks.
        let encoder = self.encoder.take();
        let framing = encoder.as_ref().map_or(info.framing.clone(), |encoder| {
            encoder.backend_framing.clone()
        });
        let Some(H1 {
            backend, response, ..
        }) = self.state.h1_mut()
        else {
            return;
        };
        *response = if info.is_switch() {
            log::debug!(
                "{}: backend {} switched protocols; tunnelling",
                link.client.address,
                backend.server
            );
            ResponseSide::Switched
        } else {
            ResponseSide::Body {
                status: info.status,
                until_close: framing == Framing::UntilClose,
                body: Body::new(&framing),
                after: if info.keep_alive {
                    After::Next
                } else {
                    After::Close
                },
                backend_keeps: info.backend_keep_alive,
                fill,
                encoder,
            }
        };
    }

    /// Sees whether the response body is complete, and ends the exchange
    /// when it is: the server's lease goes back, its connection is kept
    /// when it can serve another request.
    pub(super) fn response_end(&mut self, link: &mut Link, services: &mut Services) -> Turn {
        let State::Answering(Upstream::H1(h1)) = &mut self.state else {
            return Turn::Wait;
        };
        let drained = link.outbound.is_empty();
        let reusable = match h1.poll_end(drained, link.to_client.is_empty()) {
            Event::Failed { why, .. } => {
                let why = format!("backend {} {why}", h1.backend.server);
                return self.abort(services, why);
            }
            Event::End { reusable } => reusable,
            _ => return Turn::Wait,
        };
        let H1 {
            backend,
            request,
            response:
                ResponseSide::Body {
                    status,
                    after,
                    fill,
                    ..
                },
            ..
        } = h1
        else {
            return Turn::Wait;
        };
        if let Some(fill) = fill.take() {
            super::cached::finish_fill(services, fill);
        }
        let request_read = request.body.is_none();
        let keep_alive =
            *after == After::Next && request_read && !backend.write_failed && !services.draining;
        let reusable = reusable && self.to_backend.is_empty() && !services.draining;
        // Unless the client asked to close and all its bytes were read, it
        // may still be sending.
        let linger = !request_read || self.request.head.keep_alive;
        let outcome = status_outcome(*status, Outcome::Ok);
        let Some(H1 {
            backend,
            mut attempt,
            ..
        }) = self.take_h1()
        else {
            return Turn::Wait;
        };
        attempt.release(services, outcome);
        // Anything the backend sent past its response is not ours to pass on.
        link.outbound.consume(link.outbound.len());
        if reusable {
            keep(services, backend);
        }
        Turn::Done { keep_alive, linger }
    }

    /// Cuts the exchange short after part of the answer went out.
    fn abort(&mut self, services: &mut Services, why: String) -> Turn {
        if let Some(H1 { attempt, .. }) = self.state.h1_mut() {
            attempt.release(services, Outcome::Failed);
        }
        Turn::Abort(why)
    }

    /// The backend failed before a complete response head: the policy says
    /// whether the request goes again (kept connection closed under it,
    /// another server) or the client gets `reply`.
    pub fn backend_failed(
        &mut self,
        link: &mut Link,
        services: &mut Services,
        why: &str,
        reply: ErrorReply,
    ) -> Turn {
        // What the failed backend sent is nobody's answer: neither another
        // server's nor the next request's.
        link.outbound.consume(link.outbound.len());
        let replayable = self.replayable();
        let Some(H1 {
            backend,
            mut attempt,
            request,
            response,
        }) = self.take_h1()
        else {
            return Turn::Wait;
        };
        let client = link.client.address;
        let failure = match response {
            ResponseSide::Head { .. }
                if backend.origin == Origin::Kept && !backend.response_seen =>
            {
                Failure::KeptConnectionClosed
            }
            ResponseSide::Head { .. } => Failure::NoResponse,
            _ => Failure::MidResponse,
        };
        let resends = attempt.resends(&services.pools);
        match attempt.on_failure(failure, replayable && !backend.response_seen, resends) {
            Next::Reconnect => {
                // Only idempotent requests without a body take kept
                // connections: this one is sent again on a new connection
                // to the same server, which is not to blame.
                log::debug!(
                    "{client}: kept connection to {} was closed ({why}); retrying on a new one",
                    backend.server
                );
                let server = backend.server;
                drop(backend);
                self.redial(link, services, attempt, server)
            }
            Next::OtherServer => {
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: backend {}: {why}; retrying on another server",
                    backend.server
                );
                attempt.move_on(services, failure);
                self.dial(link, services, attempt, None, true)
            }
            Next::Answer(_) => {
                attempt.release(services, Outcome::Failed);
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: 502, backend {}: {why}",
                    backend.server
                );
                Turn::Answer(reply, request.body)
            }
            Next::Abort => {
                attempt.release(services, Outcome::Failed);
                Turn::Abort(format!("backend {}: {why}", backend.server))
            }
        }
    }
}

/// How a server's complete answer of `status` ends its lease: a 5xx
/// counts against the server, any other status as `otherwise`.
fn status_outcome(status: u16, otherwise: Outcome) -> Outcome {
    if status >= 500 {
        Outcome::ServerError
    } else {
        otherwise
    }
}

/// Keeps a backend connection that can serve another request.
pub(super) fn keep(services: &mut Services, backend: Backend) {
    if let Some(timer) = services.idle.put(backend.server, backend.endpoint) {
        let deadline = Deadline::IdleBackend {
            key: timer.key,
            serial: timer.serial,
        };
        services.timers.schedule(timer.at, deadline);
    }
}

/// What the request says of how its response is to be shaped.
fn client_side(head: &http::RequestHead) -> ClientSide {
    ClientSide {
        head_request: head.is_head(),
        minor_version: head.minor_version,
        keep_alive: head.keep_alive,
        upgrade: head.upgrade,
    }
}
