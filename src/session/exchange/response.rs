//! The response side of an exchange: its head (interim ones, a switch,
//! the final one), its end, and what a backend's failure before a complete
//! head leads to.

use crate::balancer::Outcome;
use crate::framing::Framing;
use crate::http::{self, ClientSide, HeadError, ResponseInfo};
use crate::reply::ErrorReply;
use crate::services::Services;
use crate::timer::{self, Deadline};

use super::super::forward::Body;
use super::super::upstream::{Attempt, Dial, Failure, Next, Origin, ReadEnd};
use super::{After, Exchange, Link, ResponseSide, State, Turn};

impl Exchange {
    pub(super) fn response_head(&mut self, link: &mut Link, services: &mut Services) -> Turn {
        let State::Forwarding {
            backend, response, ..
        } = &mut self.state
        else {
            return Turn::Wait;
        };
        let ResponseSide::Head { interim } = response else {
            return Turn::Wait;
        };
        if !link.to_client.is_empty() {
            // An interim head is still on its way to the client: the next
            // waits in `outbound`, whose bound stops reading the backend.
            return Turn::Wait;
        }
        if link.outbound.is_empty() {
            if backend.read != ReadEnd::Open {
                return self.backend_failed(
                    link,
                    services,
                    "closed the connection without a response",
                    ErrorReply::BadGateway,
                );
            }
            return Turn::Wait;
        }
        let head = &self.request.head;
        let client_side = ClientSide {
            head_request: head.is_head(),
            minor_version: head.minor_version,
            keep_alive: head.keep_alive,
            upgrade: head.upgrade,
        };
        let parsed = http::forward_response_head(
            link.outbound.data(),
            client_side,
            head.upgrade_offer(),
            self.request.request_id(),
            link.to_client.tail(),
        );
        let limit = services.settings.max_response_header_bytes;
        match parsed {
            Ok(Some(info)) if info.head_length > limit => {
                link.to_client.clear();
                self.backend_failed(
                    link,
                    services,
                    "response head too large",
                    ErrorReply::BadGateway,
                )
            }
            Ok(Some(info)) if info.is_interim() && *interim >= http::MAX_INTERIM_RESPONSES => {
                link.to_client.clear();
                let why = format!(
                    "more than {} interim responses",
                    http::MAX_INTERIM_RESPONSES
                );
                self.backend_failed(link, services, &why, ErrorReply::BadGateway)
            }
            Ok(Some(info)) => {
                link.outbound.consume(info.head_length);
                if info.is_interim() {
                    *interim += 1;
                } else {
                    self.took_final_head(link, &info);
                }
                Turn::Moved
            }
            Ok(None) if link.outbound.len() >= limit || link.outbound.is_full() => self
                .backend_failed(
                    link,
                    services,
                    "response head too large",
                    ErrorReply::BadGateway,
                ),
            Ok(None) if backend.read != ReadEnd::Open => self.backend_failed(
                link,
                services,
                "closed the connection in the response head",
                ErrorReply::BadGateway,
            ),
            Ok(None) => Turn::Wait,
            Err(error) => {
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

    /// The final head came: the transaction learns the status, and the
    /// response goes on to its body, or to a tunnel.
    fn took_final_head(&mut self, link: &Link, info: &ResponseInfo) {
        if let Some(transaction) = &mut self.transaction {
            transaction.status = info.status;
            transaction.backend_status = Some(info.status);
            transaction.response_time =
                Some(timer::now().saturating_duration_since(transaction.routed_at));
        }
        let State::Forwarding {
            backend, response, ..
        } = &mut self.state
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
                until_close: info.framing == Framing::UntilClose,
                body: Body::new(&info.framing),
                after: if info.keep_alive {
                    After::Next
                } else {
                    After::Close
                },
                backend_keeps: info.backend_keep_alive,
            }
        };
    }

    /// Sees whether the response body is complete, and ends the exchange
    /// when it is: the server's lease goes back, its connection is kept
    /// when it can serve another request.
    pub(super) fn response_end(&mut self, link: &mut Link, services: &mut Services) -> Turn {
        let State::Forwarding {
            backend,
            request,
            response:
                ResponseSide::Body {
                    status,
                    body,
                    after,
                    until_close,
                    backend_keeps,
                },
            ..
        } = &mut self.state
        else {
            return Turn::Wait;
        };
        let drained = link.outbound.is_empty();
        let ended_by_close = *until_close && backend.read != ReadEnd::Open && drained;
        if ended_by_close && backend.read == ReadEnd::Reset {
            let why = format!(
                "backend {} reset the connection mid-response",
                backend.server
            );
            return self.abort(services, why);
        }
        if body
            .as_ref()
            .is_some_and(|body| body.is_complete() || (ended_by_close && body.is_flushed()))
        {
            *body = None;
        }
        if body.is_some() && backend.read != ReadEnd::Open && drained {
            let why = format!(
                "backend {} closed the connection mid-response",
                backend.server
            );
            return self.abort(services, why);
        }
        if body.is_some() || !link.to_client.is_empty() {
            return Turn::Wait;
        }
        let request_read = request.body.is_none();
        let keep_alive =
            *after == After::Next && request_read && !backend.write_failed && !services.draining;
        let reusable = *backend_keeps
            && backend.is_reusable()
            && request_read
            && drained
            && self.to_backend.is_empty()
            && !services.draining;
        // Unless the client asked to close and all its bytes were read, it
        // may still be sending.
        let linger = !request_read || self.request.head.keep_alive;
        let outcome = if *status >= 500 {
            Outcome::ServerError
        } else {
            Outcome::Ok
        };
        let State::Forwarding {
            backend,
            mut attempt,
            ..
        } = self.take_state()
        else {
            return Turn::Wait;
        };
        attempt.release(services, outcome);
        // Anything the backend sent past its response is not ours to pass on.
        link.outbound.consume(link.outbound.len());
        if reusable
            && let Some(interest) = backend.endpoint.interest
            && let Some(timer) =
                services
                    .idle
                    .put(backend.server, backend.endpoint.stream, interest)
        {
            let deadline = Deadline::IdleBackend {
                key: timer.key,
                serial: timer.serial,
            };
            services.timers.schedule(timer.at, deadline);
        }
        Turn::Done { keep_alive, linger }
    }

    /// Cuts the exchange short after part of the answer went out.
    fn abort(&mut self, services: &mut Services, why: String) -> Turn {
        if let State::Forwarding { attempt, .. } = &mut self.state {
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
        let State::Forwarding {
            backend,
            mut attempt,
            request,
            response,
        } = self.take_state()
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
        match attempt.on_failure(failure, replayable && !backend.response_seen) {
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
                log::warn!(
                    "{client}: backend {}: {why}; retrying on another server",
                    backend.server
                );
                attempt.move_on(services, failure);
                self.dial(link, services, attempt, None, true)
            }
            Next::Answer(_) => {
                attempt.release(services, Outcome::Failed);
                log::warn!("{client}: 502, backend {}: {why}", backend.server);
                Turn::Answer(reply, request.body)
            }
            Next::Abort => {
                attempt.release(services, Outcome::Failed);
                Turn::Abort(format!("backend {}: {why}", backend.server))
            }
        }
    }

    /// A new connection to the same server, for the same lease.
    fn redial(
        &mut self,
        link: &Link,
        services: &mut Services,
        attempt: Attempt,
        server: std::net::SocketAddr,
    ) -> Turn {
        let mut pinned = attempt;
        let dialed = {
            let mut request = self.dial_request(link, true);
            request.reuse = false;
            pinned.dial_to(services, &request, server)
        };
        match dialed {
            Ok(Dial::Connecting { backend, deadline }) => {
                self.prepare_request(link, services, &pinned, &backend);
                self.state = State::Upstream {
                    attempt: pinned,
                    dial: Dial::Connecting { backend, deadline },
                    body: None,
                };
                Turn::Moved
            }
            Ok(queued) => {
                self.state = State::Upstream {
                    attempt: pinned,
                    dial: queued,
                    body: None,
                };
                Turn::Moved
            }
            Err(reply) => Turn::Answer(reply, None),
        }
    }
}
