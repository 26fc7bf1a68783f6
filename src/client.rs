//! The client side of a session: the listener's spec, the client's
//! connection (its transport, address, what it speaks), and what a client
//! socket's errors mean.

use std::io::Read;
use std::net::SocketAddr;
use std::rc::Rc;

use crate::buffer::Buffer;

use crate::transport::{self, Transport};

/// What a listener's connections are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    /// HTTP requests, each routed by `route(req)`.
    Http,
    /// The admin API: answered by `admin`, never routed.
    Admin,
    /// Raw bytes to a server of `pool`, or of the pool `route(conn)` names.
    Tcp {
        pool: Option<String>,
        listen: SocketAddr,
    },
}

/// A listener: the first stages of its connections, and what they are for.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Each connection starts with a PROXY protocol header.
    pub proxy_header: bool,
    /// Terminate TLS with this configuration.
    pub tls: Option<crate::tls::ServerTls>,
    /// Cleartext HTTP/2 with prior knowledge is served besides HTTP/1.
    pub h2c: bool,
    /// Shared with the listener's connections (a pointer each).
    pub app: Rc<App>,
}

/// The client side of a session, whatever the stage.
pub struct Client {
    pub transport: Transport,
    /// The client's address: the peer's, or the one a PROXY header gave.
    pub address: SocketAddr,
    /// The address the client connected to, when a PROXY header said.
    pub destination: Option<SocketAddr>,
    /// The client has sent all it will.
    pub eof: bool,
    /// The listener takes HTTP/2 with prior knowledge (h2c) besides HTTP/1.
    pub h2c: bool,
    /// The connection speaks HTTP/2 (its requests are its streams).
    pub http2: bool,
    /// The request being read was answered `100 Continue` (an admin
    /// request, whose body is read whole before it is answered).
    pub continued: bool,
    pub app: Rc<App>,
}

impl Client {
    /// The address the client connected to: from its PROXY header, else
    /// the socket's own.
    pub fn destination(&self) -> SocketAddr {
        self.destination
            .or_else(|| self.transport.endpoint().stream.local_addr().ok())
            .unwrap_or(self.address)
    }

    /// Reads what the client sent into `buffer`, while it has room and the
    /// client has not ended; a failed read comes back as the end it means
    /// (a TLS error is the client's fault, a socket error a vanished peer).
    pub fn read_into(&mut self, buffer: &mut Buffer) -> Result<crate::buffer::Fill, End> {
        if self.eof || buffer.is_full() || !self.transport.may_read() {
            return Ok(crate::buffer::Fill::default());
        }
        let fill = self.transport.read_into(buffer).map_err(client_end)?;
        self.eof |= fill.eof;
        Ok(fill)
    }
}

/// Who an exchange belongs to: its session's slab key (for the idle
/// store), and its place in a pool's queue (`token::waiter`: the session
/// itself, or one HTTP/2 stream of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub session: usize,
    pub waiter: usize,
}

impl Key {
    /// A session that carries one exchange at a time.
    pub fn session(session: usize) -> Key {
        Key {
            session,
            waiter: session,
        }
    }
}

impl Client {
    /// Sends what the transport itself holds (TLS records); true when
    /// anything went.
    pub fn flush(&mut self) -> std::io::Result<bool> {
        if self.transport.wants_write() && self.transport.endpoint().writable {
            self.transport.flush()?;
            return Ok(true);
        }
        Ok(false)
    }
}

impl transport::Sink for Client {
    fn writable(&self) -> bool {
        self.transport.writable()
    }

    fn write_two(
        &mut self,
        head: &[u8],
        body: &[u8],
        closing: bool,
    ) -> std::io::Result<Option<usize>> {
        self.transport.write_two(head, body, closing)
    }
}

/// What a failed read or write on the client's connection means: a TLS
/// error is the client's fault (logged as such), a socket error a peer
/// that vanished.
pub fn client_end(error: std::io::Error) -> End {
    if transport::is_tls_error(&error) {
        End::Aborted(error.to_string())
    } else {
        End::ClientGone(Some(error))
    }
}

/// Closing with unread input makes the kernel send a reset that can destroy
/// the answer just written: finish writing, then read off what the client
/// still sent.
pub fn shut_and_drain(client: &mut Client) {
    client.transport.shutdown_write();
    let mut sink = [0u8; 4096];
    for _ in 0..64 {
        match client.transport.endpoint_mut().stream.read(&mut sink) {
            Ok(count) if count > 0 => continue,
            _ => break,
        }
    }
}

/// Why a session ends.
#[derive(Debug)]
pub enum End {
    /// Everything was said. `linger`: the client may still send bytes
    /// (the rest of a request, a pipelined one) that must be read off
    /// after the end of the answer, or the kernel's reset could destroy it.
    Done { linger: bool },
    /// The client went away or broke the connection.
    ClientGone(Option<std::io::Error>),
    /// The session was cut short (a broken backend, a timeout, bad TLS).
    Aborted(String),
}
