//! The TLS stage of a `tls` listener: the handshake, within
//! `client_header` like a request head (a trickled handshake is a
//! Slowloris too). Plaintext that arrives with its end is kept for the
//! next stage.

use std::time::Instant;

use crate::buffer::Buffer;

use super::{Client, End, Step, client_error};

pub struct Handshake {
    inbound: Buffer,
    /// When the connection came: the handshake has `client_header` from then.
    pub since: Instant,
}

impl Handshake {
    pub fn new(inbound: Buffer, since: Instant) -> Handshake {
        Handshake { inbound, since }
    }

    pub fn drive(&mut self, client: &mut Client) -> Step {
        let mut progress = false;
        loop {
            let transport = &mut client.transport;
            if transport.wants_write()
                && transport.endpoint().writable
                && let Err(error) = transport.flush()
            {
                return client_error(error);
            }
            if !transport.is_handshaking() {
                return Step::Upgrade;
            }
            if client.eof || !transport.endpoint().readable {
                return Step::Continue { progress };
            }
            match transport.read_into(&mut self.inbound) {
                Ok(fill) => {
                    client.eof |= fill.eof;
                    progress |= fill.read > 0;
                    if fill.eof {
                        return Step::Close(End::Done { linger: false });
                    }
                    if !transport.endpoint().readable
                        && transport.is_handshaking()
                        && !transport.wants_write()
                    {
                        return Step::Continue { progress };
                    }
                }
                Err(error) => return client_error(error),
            }
        }
    }

    /// Plaintext that came with the end of the handshake.
    pub fn into_inbound(self) -> Buffer {
        self.inbound
    }
}
