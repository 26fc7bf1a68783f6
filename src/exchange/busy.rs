//! What only a connection with a request in progress holds, boxed from
//! the worker's spare list while the request lasts.

use std::time::Instant;

use crate::buffer::Buffer;
use crate::router::{RequestView, ResponseView};

use super::forward::Queue;
use super::{Exchange, State};
use crate::client::Client;

/// What only a connection with a request in progress needs: boxed from the
/// worker's spare list when a request begins, given back when it is done,
/// so an idle connection holds its client buffer and what it waits for.
pub struct Busy {
    pub exchange: Exchange,
    /// Backend → client bytes: response heads and bodies.
    pub outbound: Buffer,
    /// Heads and answers for the client, sent before `outbound`'s bytes.
    pub to_client: Queue,
    /// Bytes moved with the client, both ways, during this request.
    pub moved: u64,
    /// Since when, and at what `moved`, the exchange has waited on its
    /// client without moving `MIN_PROGRESS` (looked at only while rsp
    /// needs what exchanges hold: `Http1::stalled`).
    pub stall: Option<(Instant, u64)>,
}

/// Busy parts kept for reuse, per worker thread.
const MAX_SPARE: usize = 256;

thread_local! {
    // Boxes, not values: a busy part moves between a connection and this
    // list as a pointer, never copied. With the fewest the list held since
    // it was last trimmed.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<(Vec<Box<Busy>>, usize)> =
        const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// Frees the busy parts that were not taken since the last trim (with the
/// heads' storage they kept); returns the bytes freed. Called once a
/// second by the worker.
pub fn trim_spare() -> usize {
    SPARE.with_borrow_mut(|(spare, low)| {
        let unused = (*low).min(spare.len());
        let freed = spare
            .drain(..unused)
            .map(|busy| size_of::<Busy>() + busy.exchange.request.head.held())
            .sum();
        *low = spare.len();
        freed
    })
}

impl Busy {
    /// A request of `client` begins: a spare one made ready, or a new one.
    pub fn take(client: &Client, buffer_bytes: usize) -> Box<Busy> {
        let spare = SPARE.with_borrow_mut(|(spare, low)| {
            let busy = spare.pop();
            *low = (*low).min(spare.len());
            busy
        });
        let mut busy = spare.unwrap_or_else(|| {
            Box::new(Busy {
                exchange: Exchange {
                    request: RequestView::new(client.address, false),
                    response: ResponseView::new(),
                    transaction: None,
                    to_backend: Queue::default(),
                    state: State::Idle,
                    lookup: None,
                    encoder: None,
                },
                outbound: Buffer::streaming(buffer_bytes),
                to_client: Queue::default(),
                moved: 0,
                stall: None,
            })
        });
        busy.moved = 0;
        busy.stall = None;
        let request = &mut busy.exchange.request;
        request.client = client.address;
        request.tls = client.transport.is_tls();
        request.head.http2 = client.http2;
        match client.transport.server_name() {
            Some(name) => {
                let sni = request.sni.get_or_insert_with(String::new);
                sni.clear();
                sni.push_str(name);
            }
            None => request.sni = None,
        }
        busy.outbound.set_limit(buffer_bytes);
        busy.to_client.wire = match client.http2 {
            true => crate::message::Wire::Http2,
            false => crate::message::Wire::Http1,
        };
        busy
    }

    /// The request is done: what it held goes back to the spare list
    /// (its head's storage with it, for the next request).
    pub fn give_back(mut self: Box<Busy>) {
        self.exchange.transaction = None;
        self.exchange.request.reset();
        self.exchange.request.head.shed();
        self.exchange.to_backend.clear();
        self.exchange.state = State::Idle;
        self.exchange.lookup = None;
        self.exchange.encoder = None;
        self.exchange.response.ttl = None;
        self.outbound.consume(self.outbound.len());
        self.to_client.clear();
        SPARE.with_borrow_mut(|(spare, _)| {
            if spare.len() < MAX_SPARE {
                spare.push(self);
            }
        });
    }
}
