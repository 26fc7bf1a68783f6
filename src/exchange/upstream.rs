//! What answers a request once it is routed: an `Upstream`. Today a
//! backend's HTTP/1.1 connection (`H1`), rsp itself (`Local`: errors,
//! Lua replies, admin pages) or a stored response (`Cache`). Each is driven through the same few
//! operations: the socket it waits on (`endpoint_mut`, for interest and
//! events), its deadline, what of its answer the client is written
//! (`passage`), whether that answer waits on the client, and how it ends
//! (`release`: the lease and the connection, kept or closed). The next
//! ones take their place beside these: a TLS transport under `H1`, `H2`
//! (a stream of a shared backend connection), `FastCgi`.

use std::time::Instant;

use crate::balancer::Outcome;
use crate::config::Timeouts;
use crate::reply::ErrorReply;
use crate::services::Services;
use crate::timer::Timeout;
use crate::transport::Endpoint;

use super::After;
use super::attempt::{Attempt, Backend};
use super::forward::{Body, LocalBody, Passage};
use super::{RequestSide, ResponseSide};

// The exchange, and its upstream with it, lives in the request's boxed
// parts, recycled from a spare list: boxing `H1` would allocate per
// request for no saving.
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    /// A backend's HTTP/1.1 connection, with the attempt that leased
    /// its server.
    H1(H1),
    /// rsp answers itself; the request body, if any, is read and dropped.
    Local(Local),
    /// A stored response answers (`cache`), its body streamed from the
    /// store as rsp's own are.
    Cache(Local),
}

/// What an upstream said since the exchange last asked.
pub enum Event {
    Nothing,
    /// A response head, read into the exchange's `ResponseHead`, in
    /// `length` bytes of what the upstream sent.
    Head {
        length: usize,
    },
    /// The answer is complete; `reusable`: the upstream's connection may
    /// serve another request.
    End {
        reusable: bool,
    },
    /// The upstream failed (`why`, for the log); before a complete head
    /// the client gets `reply`, unless the request may go again.
    Failed {
        why: String,
        reply: ErrorReply,
    },
}

/// An exchange with a backend over HTTP/1.1.
pub struct H1 {
    pub backend: Backend,
    pub attempt: Attempt,
    pub request: RequestSide,
    pub response: ResponseSide,
}

/// One of rsp's own answers: its head is in the client queue.
pub struct Local {
    /// The answer's body, written after its head as the client takes it.
    pub body: LocalBody,
    /// The request's body still to read and drop.
    pub discard: Option<Body>,
    pub after: After,
    /// When the connection closes after it, the client may still be
    /// sending.
    pub linger: bool,
    /// The answer is not made yet: it waits for work elsewhere (a shared
    /// map's change, in Redis) and comes back with this ticket.
    pub waiting: Option<u64>,
}

impl Upstream {
    /// The socket the upstream waits on, if it has one.
    pub fn endpoint_mut(&mut self) -> Option<&mut Endpoint> {
        match self {
            Upstream::H1(h1) => Some(&mut h1.backend.endpoint),
            Upstream::Local(_) | Upstream::Cache(_) => None,
        }
    }

    /// When the upstream has taken too long: a backend's response head,
    /// from when the whole request had gone.
    pub fn deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Timeout)> {
        match self {
            Upstream::H1(H1 {
                request,
                response: ResponseSide::Head { .. },
                ..
            }) => request
                .sent_at
                .map(|at| (at + timeouts.backend_response, Timeout::BackendResponse)),
            Upstream::H1(_) | Upstream::Local(_) | Upstream::Cache(_) => None,
        }
    }

    /// What of the answer goes to the client after what is queued, and
    /// whether the client's connection closes once it has.
    pub fn passage(&mut self) -> (Passage<'_>, bool) {
        match self {
            Upstream::H1(H1 {
                response:
                    ResponseSide::Body {
                        body,
                        after,
                        fill,
                        encoder: Some(encoder),
                        ..
                    },
                ..
            }) => (
                Passage::Encode(body.as_mut(), encoder, fill.as_deref_mut()),
                *after == After::Close,
            ),
            Upstream::H1(H1 {
                response:
                    ResponseSide::Body {
                        body, after, fill, ..
                    },
                ..
            }) => (
                body.as_mut().map_or(Passage::Queued, |body| {
                    Passage::Body(body, fill.as_deref_mut())
                }),
                *after == After::Close,
            ),
            Upstream::H1(_) => (Passage::Queued, false),
            Upstream::Local(local) | Upstream::Cache(local) => (
                Passage::Local(&mut local.body),
                local.discard.is_none() && local.after == After::Close,
            ),
        }
    }

    /// Body bytes of the answer wait for the client in `outbound` (a
    /// backend's) or where they are (rsp's own).
    pub fn answer_waits(&self, outbound_empty: bool) -> bool {
        match self {
            Upstream::H1(H1 {
                response: ResponseSide::Body { encoder, .. },
                ..
            }) => !outbound_empty || encoder.as_ref().is_some_and(|encoder| !encoder.is_done()),
            Upstream::H1(_) => false,
            Upstream::Local(local) | Upstream::Cache(local) => !local.body.is_done(),
        }
    }

    /// The request's body is still to come from the client.
    pub fn wants_body(&self) -> bool {
        match self {
            Upstream::H1(h1) => h1.request.body.is_some(),
            Upstream::Local(local) | Upstream::Cache(local) => local.discard.is_some(),
        }
    }

    /// The pool whose server the upstream holds, if any.
    pub fn leased_pool(&self) -> Option<usize> {
        match self {
            Upstream::H1(h1) => h1.attempt.lease.as_ref().map(|lease| lease.pool()),
            Upstream::Local(_) | Upstream::Cache(_) => None,
        }
    }

    /// The exchange ends here (`outcome`): what the upstream holds of a
    /// pool goes back.
    pub fn release(&mut self, services: &mut Services, outcome: Outcome) {
        match self {
            Upstream::H1(h1) => h1.attempt.release(services, outcome),
            Upstream::Local(_) | Upstream::Cache(_) => {}
        }
    }
}
