//! Requests on an HTTP/1 connection: reading the next head, routing it,
//! and rsp's own answers.

use crate::admin;
use crate::framing::Framing;
use crate::http::{self, HeadError};
use crate::reply::{ErrorReply, LocalReply, Shape};
use crate::router::{Route, RouteError};
use crate::services::Services;
use crate::target::TargetError;
use crate::timer;
use crate::transaction::Transaction;

use super::super::exchange::{After, State, Wait};
use super::super::forward::Body;
use super::super::upstream::{Attempt, Target};
use super::super::{App, Client, End, Step};
use super::Http1;

/// An answer rsp writes itself.
pub(super) enum Answer<'a> {
    /// One of the catalogue's error answers.
    Error(ErrorReply),
    /// What `route()` returned, or an admin page (`counted`: not for the
    /// admin port, whose requests are not in the stats).
    Reply(&'a LocalReply, bool),
}

impl Http1 {
    /// Parses the next request head, if it is all here, and routes it.
    pub(super) fn next_request(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        if self.inbound.is_empty() {
            return if client.eof || services.draining {
                Err(Step::Close(End::Done { linger: true }))
            } else {
                Ok(false)
            };
        }
        let limit = services.settings.max_header_bytes;
        let parsed = self
            .exchange
            .request
            .head
            .parse(self.inbound.data(), &services.settings.policy);
        if !matches!(parsed, Ok(None)) || self.inbound.len() >= limit {
            services.counters.requests += 1;
            let head_length = match parsed {
                Ok(Some(length)) if length <= limit => Some(length),
                _ => None,
            };
            let bytes = head_length.unwrap_or(self.inbound.len());
            self.begin_transaction(client, services, head_length.is_some(), bytes);
        }
        let address = client.address;
        match parsed {
            Ok(Some(length)) if length <= limit => {
                self.inbound.consume(length);
                return self.dispatch(key, client, services);
            }
            Ok(None) if self.inbound.len() < limit => {
                // An unfinished head from a client that left needs no answer.
                return if client.eof {
                    Err(Step::Close(End::Done { linger: false }))
                } else {
                    Ok(false)
                };
            }
            Ok(_) | Err(HeadError::TooManyHeaders) => {
                log::info!(
                    "{address}: 431, request head over {limit} bytes or {} fields",
                    http::MAX_HEADERS
                );
                self.answer(Answer::Error(ErrorReply::HeadTooLarge), None);
            }
            Err(HeadError::Target(TargetError::Connect)) => {
                log::info!("{address}: 501, CONNECT: rsp does not tunnel to other hosts");
                self.answer(Answer::Error(ErrorReply::NotImplemented), None);
            }
            Err(error) => {
                log::info!("{address}: 400, {error}");
                self.answer(Answer::Error(ErrorReply::BadRequest), None);
            }
        }
        Ok(true)
    }

    /// A request head arrived, or failed to: its record starts and its id
    /// is settled (the client's if valid, else a new one).
    pub(super) fn begin_transaction(
        &mut self,
        client: &Client,
        services: &mut Services,
        parsed: bool,
        bytes: usize,
    ) {
        let started = match self.exchange.state {
            State::Idle(Wait::Head { since }) => since,
            _ => timer::now(),
        };
        let request = &mut self.exchange.request;
        request.client = client.address;
        request.request_id.clear();
        if client.app == App::Admin {
            return;
        }
        let mut transaction = Transaction::new(started, parsed);
        transaction.bytes_received = bytes as u64;
        self.exchange.transaction = Some(transaction);
        if let Some(ids) = services.request_ids.as_mut() {
            match request.head.request_id().filter(|_| parsed) {
                Some(id) => request.request_id.push_str(id),
                None => ids.generate(&mut request.request_id),
            }
        }
    }

    /// Asks the router where the request goes and starts that.
    fn dispatch(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
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
            log::info!("{address}: 413, request body of {length} bytes, over {limit}");
            self.answer(Answer::Error(ErrorReply::BodyTooLarge), None);
            return Ok(true);
        }
        let body = Body::new(&head.framing);
        if client.app == App::Admin {
            self.admin(client, services, body);
            return Ok(true);
        }
        let route = services
            .router
            .route(&self.exchange.request, &services.pools);
        if let Some(transaction) = &mut self.exchange.transaction {
            transaction.routed_at = timer::now();
            if let Ok(Route::Pool(pool, _)) = &route {
                transaction.pool = Some(*pool);
            }
        }
        let head = &self.exchange.request.head;
        let target = match route {
            Ok(Route::Reply(reply)) => {
                self.answer(Answer::Reply(&reply, true), body);
                return Ok(true);
            }
            Ok(Route::Pool(pool, key)) => Target::Pool { pool, key },
            Ok(Route::Address(server)) => Target::Address(server),
            Err(error) => {
                let reply = route_failed(&error, address, head);
                self.answer(Answer::Error(reply), body);
                return Ok(true);
            }
        };
        let (link, exchange) = self.link(key, client);
        let turn = exchange.dial(&link, services, Attempt::new(target), body, false);
        self.take(key, client, services, turn)
    }

    /// A request to the admin port: answered by `admin`, whose command
    /// (a drain, an enable) the worker applies.
    fn admin(&mut self, client: &Client, services: &mut Services, body: Option<Body>) {
        let address = client.address;
        let local = client
            .transport
            .endpoint()
            .stream
            .local_addr()
            .unwrap_or(address);
        let (reply, command) = admin::answer(
            &self.exchange.request.head,
            address,
            local,
            &services.stats_view(),
            services.settings.admin.as_ref(),
        );
        services.commands.extend(command);
        self.answer(Answer::Reply(&reply, false), body);
    }

    /// The one writer of rsp's own answers: the catalogue's errors, Lua's
    /// replies and the admin pages. A client waiting for `100 Continue`
    /// may never send the body that would have to be skipped, and an
    /// upgrade request expected another protocol: those connections close.
    pub(super) fn answer(&mut self, answer: Answer, discard: Option<Body>) {
        let head = &self.exchange.request.head;
        let parsed = self
            .exchange
            .transaction
            .as_ref()
            .is_none_or(|transaction| transaction.parsed);
        let must_close = matches!(answer, Answer::Error(error) if error.must_close());
        let waits_for_continue = discard.is_some() && head.expect_continue;
        let keep_alive = !must_close && head.keep_alive && !head.upgrade && !waits_for_continue;
        // A head that did not parse may not be this request's at all.
        let shape = Shape {
            keep_alive,
            head_only: parsed && head.is_head(),
            request_id: match answer {
                Answer::Reply(_, false) => None,
                _ => self.exchange.request.request_id(),
            },
        };
        let out = self.to_client.tail();
        let (status, body_length) = match answer {
            Answer::Error(error) => {
                error.write(out, shape);
                (error.status(), error.body_length())
            }
            Answer::Reply(reply, _) => {
                reply.write(out, shape);
                (reply.status, reply.body.len())
            }
        };
        if let Some(transaction) = &mut self.exchange.transaction {
            transaction.answered_locally(status, body_length);
        }
        // Unless the client asked to close and its request will be read
        // whole, it may still be sending.
        let linger = must_close || !parsed || head.keep_alive;
        self.exchange.state = State::Local {
            discard: if must_close { None } else { discard },
            after: if keep_alive {
                After::Next
            } else {
                After::Close
            },
            linger,
        };
    }
}

/// The answer to a request `route()` sent nowhere, and its log line.
fn route_failed(
    error: &RouteError,
    address: std::net::SocketAddr,
    head: &crate::http::RequestHead,
) -> ErrorReply {
    match error {
        RouteError::NoRoute => {
            log::info!(
                "{address}: 503, route() chose no backend for {} {}",
                head.method(),
                head.target()
            );
            ErrorReply::NoRoute
        }
        RouteError::UnknownPool(name) => {
            log::warn!(
                "{address}: 503, route() returned {name:?}, which is neither a pool nor \"ip:port\""
            );
            ErrorReply::NoRoute
        }
        RouteError::Script(error) => {
            log::error!("{address}: 500, route() failed: {error}");
            ErrorReply::ScriptFailed
        }
    }
}
