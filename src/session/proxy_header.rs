//! The PROXY stage of an `accept_proxy` listener: the load balancer in
//! front says who the client is. Exactly the header is read from the raw
//! socket; the bytes after it go on to TLS or HTTP untouched. A connection
//! without a valid header is closed unanswered.

use std::time::Instant;

use crate::buffer::Buffer;
use crate::proxy_protocol;

use super::{Client, End, Step};

pub struct ProxyHeader {
    raw: Buffer,
    /// When the connection came: the header has `client_header` from then.
    pub since: Instant,
}

impl ProxyHeader {
    pub fn new(buffer_bytes: usize, since: Instant) -> ProxyHeader {
        ProxyHeader {
            raw: Buffer::new(buffer_bytes),
            since,
        }
    }

    pub fn drive(&mut self, client: &mut Client) -> Step {
        let mut progress = false;
        let endpoint = client.transport.endpoint_mut();
        if !client.eof && endpoint.readable && !self.raw.is_full() {
            match endpoint.fill(&mut self.raw) {
                Ok(fill) => {
                    client.eof |= fill.eof;
                    progress = fill.read > 0;
                }
                Err(error) => return Step::Close(End::ClientGone(Some(error))),
            }
        }
        match proxy_protocol::parse(self.raw.data()) {
            Ok(None) if client.eof || self.raw.is_full() => {
                Step::Close(End::Done { linger: false })
            }
            Ok(None) => Step::Continue { progress },
            Ok(Some(header)) => {
                self.raw.consume(header.length);
                if let Some((address, destination)) = header.addresses {
                    client.address = address;
                    client.destination = Some(destination);
                }
                Step::Upgrade
            }
            Err(why) => {
                crate::client_log!(log::Level::Warn, "{}: refused: {why}", client.address);
                Step::Close(End::Done { linger: false })
            }
        }
    }

    /// The bytes that came after the header.
    pub fn into_rest(self) -> Buffer {
        self.raw
    }
}
