//! rsp's own answers (the catalogue's errors, Lua's reply tables, the
//! admin pages): the exchange's `Local` state, its head written for the
//! client and its body streamed from where it is (`LocalBody`).

use crate::reply::{ErrorReply, LocalReply, Shape};
use crate::services::Services;

use super::forward::{Body, LocalBody, Queue};
use super::{After, Exchange, Local, State, Upstream};

/// An answer rsp writes itself.
pub enum Answer<'a> {
    /// One of the catalogue's error answers.
    Error(ErrorReply),
    /// What `route()` returned.
    Reply(&'a LocalReply),
    /// What `respond()` made of a response: not shown to it again.
    Replaced(&'a LocalReply),
    /// An admin page: not in the stats, not shown to `respond()`.
    Admin(&'a LocalReply),
}

impl Exchange {
    /// The one writer of rsp's own answers: the catalogue's errors, Lua's
    /// replies and the admin pages, each shown to `respond()` first (but
    /// the admin's, and answers to heads that did not parse). A client
    /// waiting for `100 Continue` may never send the body that would have
    /// to be skipped, and an upgrade request expected another protocol:
    /// those connections close.
    pub fn answer(
        &mut self,
        services: &Services,
        answer: Answer,
        discard: Option<Body>,
        to_client: &mut Queue,
    ) {
        let exchange = self;
        let parsed = exchange
            .transaction
            .as_ref()
            .is_none_or(|transaction| transaction.parsed);
        let must_close = matches!(answer, Answer::Error(error) if error.must_close());
        let styled = match &answer {
            _ if !parsed || !services.router.responds() => None,
            Answer::Error(error) => Some(exchange.restyle(services, error.local())),
            Answer::Reply(reply) => Some(exchange.restyle(services, (*reply).clone())),
            Answer::Replaced(_) | Answer::Admin(_) => None,
        };
        let answer = match &styled {
            Some(reply) => Answer::Replaced(reply),
            None => answer,
        };
        let head = &exchange.request.head;
        let waits_for_continue = discard.is_some() && head.expect_continue;
        let keep_alive = !must_close && head.keep_alive && !head.upgrade && !waits_for_continue;
        // A head that did not parse may not be this request's at all.
        let shape = Shape {
            keep_alive,
            head_only: parsed && head.is_head(),
            request_id: match answer {
                Answer::Admin(_) => None,
                _ => exchange.request.request_id(),
            },
        };
        let out = to_client.out();
        let (status, body_length, body) = match answer {
            Answer::Error(error) => {
                let body = error
                    .write_head(out, shape)
                    .then(|| error.body().as_bytes());
                let body = LocalBody::new(body.unwrap_or_default());
                (error.status(), error.body_length(), body)
            }
            Answer::Reply(reply) | Answer::Replaced(reply) | Answer::Admin(reply) => {
                let body = match reply.write_head(out, shape) {
                    true => LocalBody::new(reply.body.clone()),
                    false => LocalBody::default(),
                };
                (reply.status, reply.body.len(), body)
            }
        };
        if let Some(transaction) = &mut exchange.transaction {
            transaction.answered_locally(status, body_length);
        }
        // Unless the client asked to close and its request will be read
        // whole, it may still be sending.
        let linger = must_close || !parsed || head.keep_alive;
        exchange.state = State::Answering(Upstream::Local(Local {
            body,
            discard: if must_close { None } else { discard },
            after: if keep_alive {
                After::Next
            } else {
                After::Close
            },
            linger,
            waiting: None,
        }));
    }

    /// The answer waits for work elsewhere (`Local::waiting`); `answered`
    /// makes it once that is done.
    pub fn await_answer(&mut self, ticket: u64) {
        self.state = State::Answering(Upstream::Local(Local {
            body: LocalBody::default(),
            discard: None,
            after: After::Next,
            linger: false,
            waiting: Some(ticket),
        }));
    }

    /// Whether the answer waits for `ticket`'s work.
    pub fn awaits(&self, ticket: u64) -> bool {
        matches!(
            self.state,
            State::Answering(Upstream::Local(Local {
                waiting: Some(waiting),
                ..
            })) if waiting == ticket
        )
    }
}
