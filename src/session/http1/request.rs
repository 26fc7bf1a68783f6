//! Requests on an HTTP/1 connection: reading the next head, routing it,
//! and rsp's own answers.

use crate::admin;
use crate::framing::Framing;
use crate::http::HeadError;
use crate::services::Services;
use crate::timer;

use super::super::exchange::Answer;
use super::super::forward::Body;
use super::super::{App, Client, End, Key, Step};
use super::{Busy, Http1, Wait};

impl Http1 {
    /// A request begins: its busy parts, from the spare list.
    pub(super) fn begin(&mut self, client: &Client, services: &Services) -> &mut Busy {
        let buffer_bytes = self.buffer_bytes(services);
        self.busy
            .get_or_insert_with(|| Busy::take(client, buffer_bytes))
    }

    /// Parses the next request head, if it is all here, and routes it.
    pub(super) fn next_request(
        &mut self,
        key: Key,
        client: &mut Client,
        eof: bool,
        services: &mut Services,
    ) -> Result<bool, Step> {
        if self.inbound.is_empty() {
            return if eof || services.draining {
                Err(Step::Close(End::Done { linger: true }))
            } else {
                Ok(false)
            };
        }
        if client.h2c && self.busy.is_none() {
            // HTTP/2 with prior knowledge: the preface's request line
            // switches the connection (the HTTP/2 stage checks the rest);
            // a part of it waits for more.
            use crate::h2::frame::{Opening, opening};
            match (opening(self.inbound.data()), eof) {
                (Opening::Http2, _) => return Err(Step::Upgrade),
                (Opening::Undecided, true) => return Err(Step::Close(End::Done { linger: false })),
                (Opening::Undecided, false) => return Ok(false),
                (Opening::Http1, _) => {}
            }
        }
        let limit = services.settings.max_header_bytes;
        let policy = &services.settings.policy;
        let buffer_bytes = self.buffer_bytes(services);
        let busy = self
            .busy
            .get_or_insert_with(|| Busy::take(client, buffer_bytes));
        let request = &mut busy.exchange.request;
        let parsed = request.head.parse(self.inbound.data(), policy, request.tls);
        // An admin request's body (a map's new value) is read whole before
        // the request is answered: the head stays until it is all here.
        let admin_body_pending = *client.app == App::Admin
            && matches!(parsed, Ok(Some(length)) if length <= limit
                && admin_body_length(&busy.exchange.request.head, self.inbound.capacity_left(limit))
                    .is_some_and(|body| self.inbound.len() < length + body));
        if (matches!(parsed, Ok(None)) && self.inbound.len() < limit) || admin_body_pending {
            // A client that waits for `100 Continue` before sending the
            // body an admin request is read whole with gets it, once.
            if admin_body_pending && busy.exchange.request.head.expect_continue && !client.continued
            {
                client.continued = send_continue(client)?;
            }
            // Not all here yet: nothing is in progress until it is.
            if let Some(busy) = self.busy.take() {
                busy.give_back();
            }
            // An unfinished head from a client that left needs no answer.
            return if eof {
                Err(Step::Close(End::Done { linger: false }))
            } else {
                Ok(false)
            };
        }
        services.counters.requests += 1;
        client.continued = false;
        let head_length = match parsed {
            Ok(Some(length)) if length <= limit => Some(length),
            _ => None,
        };
        let bytes = head_length.unwrap_or(self.inbound.len());
        self.begin_transaction(client, services, head_length.is_some(), bytes);
        let address = client.address;
        let Some(busy) = self.busy.as_deref_mut() else {
            return Ok(false);
        };
        match parsed {
            Ok(Some(length)) if length <= limit => {
                self.inbound.consume(length);
                if busy.refused_for_memory(client, services) {
                    return Ok(true);
                }
                return self.dispatch(key, client, services);
            }
            Ok(_) => busy.refuse_head(services, address, limit, HeadError::TooManyHeaders),
            Err(error) => busy.refuse_head(services, address, limit, error),
        }
        Ok(true)
    }

    /// The bound of a request's response buffer: the connection's, or the
    /// smaller one an HTTP/2 stream was given.
    fn buffer_bytes(&self, services: &Services) -> usize {
        self.inbound.limit().min(services.settings.buffer_bytes)
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
        let started = match self.wait {
            Wait::Head { since } => since,
            _ => timer::now(),
        };
        if let Some(busy) = self.busy.as_deref_mut() {
            busy.begin(client, services, started, (parsed, bytes));
        }
    }

    /// Asks the router where the request goes and starts that.
    fn dispatch(
        &mut self,
        key: Key,
        client: &Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        if *client.app == App::Admin {
            let body = self
                .busy
                .as_deref()
                .and_then(|busy| Body::new(&busy.exchange.request.head.framing));
            self.admin(key, client, services, body);
            return Ok(true);
        }
        let Some(busy) = self.busy.as_deref_mut() else {
            return Ok(false);
        };
        let flow = busy.dispatch(key.waiter, client, &mut self.inbound, services);
        self.flow(flow)
    }

    /// A request to the admin port: answered by `admin`, whose command
    /// (a drain, an enable) the worker applies; a shared map's change is
    /// answered once Redis has it (the worker's `redis::Client`).
    fn admin(&mut self, key: Key, client: &Client, services: &mut Services, body: Option<Body>) {
        let address = client.address;
        let local = client
            .transport
            .endpoint()
            .stream
            .local_addr()
            .unwrap_or(address);
        let Some(busy) = self.busy.as_deref() else {
            return;
        };
        let head = &busy.exchange.request.head;
        let room = self
            .inbound
            .capacity_left(services.settings.max_header_bytes);
        let (body_bytes, discard) = match admin_body_length(head, room) {
            Some(length) => (length, None),
            None => (0, body),
        };
        let body_read = discard.is_none();
        let read = &self.inbound.data()[..body_bytes.min(self.inbound.len())];
        services.count_cache();
        let answered = admin::answer(
            head,
            body_read.then_some(read),
            address,
            local,
            &services.stats_view(),
            services.settings.admin.as_ref(),
        );
        self.inbound.consume(body_bytes.min(self.inbound.len()));
        match answered {
            admin::Answered::Now(reply, command) => {
                services.commands.extend(command);
                self.answer(services, Answer::Admin(&reply), discard);
            }
            admin::Answered::Store(store) => {
                services.tickets += 1;
                let ticket = services.tickets;
                services.stores.push(crate::state::Waiting {
                    waiter: key.waiter,
                    ticket,
                    store,
                });
                if let Some(busy) = self.busy.as_deref_mut() {
                    busy.exchange.await_answer(ticket);
                }
            }
        }
    }

    /// rsp answers itself (`Exchange::answer`), into the client queue.
    pub(super) fn answer(
        &mut self,
        services: &mut Services,
        answer: Answer,
        discard: Option<Body>,
    ) {
        if let Some(busy) = self.busy.as_deref_mut() {
            busy.answer(services, answer, discard);
        }
    }
}

/// The length of an admin request's body that is read whole (a
/// Content-Length within `room`, what the client buffer can hold);
/// `None` for other bodies, which are read and dropped.
fn admin_body_length(head: &crate::http::RequestHead, room: usize) -> Option<usize> {
    match head.framing {
        Framing::Length(length) => usize::try_from(length)
            .ok()
            .filter(|&length| length <= room),
        _ => None,
    }
}

/// `100 Continue`, written at once (whether it went: a socket that takes
/// none now is asked again on the next turn); 25 bytes to a socket that
/// takes only some is one whose buffer is full of answers its client does
/// not read.
fn send_continue(client: &mut Client) -> Result<bool, Step> {
    use super::super::transport::Sink;
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    match client.write_two(CONTINUE, &[], false) {
        Ok(Some(count)) if count == CONTINUE.len() => Ok(true),
        Ok(None) => Ok(false),
        Ok(Some(_)) => Err(Step::Close(End::Aborted(
            "100 Continue did not fit the client's socket".into(),
        ))),
        Err(error) => Err(super::super::client_error(error)),
    }
}
