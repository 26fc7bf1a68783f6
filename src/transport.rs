//! Sockets as the stages see them: an `Endpoint` is a non-blocking socket
//! with the readiness mio last reported; a `Transport` is the client's
//! endpoint, plain or under TLS. HTTP, tunnel and tcp code call these and
//! never name rustls.

use std::io::{self, IoSlice, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::buffer::{Buffer, Fill};

/// A socket with the readiness mio last reported. With edge-triggered
/// events a flag stays set until an operation would block.
pub struct Endpoint {
    pub stream: TcpStream,
    pub readable: bool,
    pub writable: bool,
    /// The poller reported the peer's end (or an error): reported once, so
    /// reads go on past short ones until it is seen.
    pub end_reported: bool,
    /// `None` until the socket is in the poll set.
    pub interest: Option<Interest>,
}

impl Endpoint {
    /// A socket in the poll set with `interest` (`None`: not yet), assumed
    /// `ready` both ways until an operation says otherwise.
    pub fn new(stream: TcpStream, interest: Option<Interest>, ready: bool) -> Endpoint {
        Endpoint {
            stream,
            readable: ready,
            writable: ready,
            end_reported: false,
            interest,
        }
    }

    pub fn mark(&mut self, event: &Event) {
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        self.end_reported |= event.is_read_closed() || event.is_error();
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
    }

    pub fn update_interest(
        &mut self,
        registry: &Registry,
        token: Token,
        wants_write: bool,
    ) -> io::Result<()> {
        let interest = if wants_write {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match self.interest {
            Some(registered) if registered == interest => return Ok(()),
            Some(_) => registry.reregister(&mut self.stream, token, interest)?,
            None => registry.register(&mut self.stream, token, interest)?,
        }
        self.interest = Some(interest);
        Ok(())
    }

    /// Reads into `buffer` while it has room and the socket has bytes.
    pub fn fill(&mut self, buffer: &mut Buffer) -> io::Result<Fill> {
        let fill = buffer.fill_from(&mut self.stream, self.end_reported)?;
        self.readable = !fill.drained;
        Ok(fill)
    }

    /// Writes `head` then `body` in one call; returns how many bytes went,
    /// or `None` when the socket would block. `closing`: the socket closes
    /// once these bytes are out, so the kernel may hold the last partial
    /// segment back and send the end of stream in it.
    pub fn write_two(
        &mut self,
        head: &[u8],
        body: &[u8],
        closing: bool,
    ) -> io::Result<Option<usize>> {
        let slices = [IoSlice::new(head), IoSlice::new(body)];
        loop {
            let written = if closing {
                send_last(&self.stream, &slices)
            } else {
                self.stream.write_vectored(&slices)
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => return Ok(Some(count)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(None);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// `writev` with `MSG_MORE`: a response that ends its connection would
/// otherwise go out as its data segment and then a FIN segment of its own;
/// held back, the close puts the FIN on the data (`tcp_send_fin` marks an
/// unsent tail), one segment and one wakeup of the client fewer per
/// connection. The caller must shut or close the socket once all is sent,
/// which pushes out anything held.
#[cfg(target_os = "linux")]
fn send_last(stream: &TcpStream, slices: &[IoSlice]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; IoSlice is ABI-compatible with iovec
    // and the slices outlive the call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = slices.as_ptr() as *mut libc::iovec;
    message.msg_iovlen = slices.len() as _;
    let flags = libc::MSG_MORE | libc::MSG_NOSIGNAL;
    // SAFETY: a valid descriptor and a message whose buffers live.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &message, flags) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_last(mut stream: &TcpStream, slices: &[IoSlice]) -> io::Result<usize> {
    stream.write_vectored(slices)
}

/// What a stage writes to: the client (plain or TLS) or a backend.
pub trait Sink {
    fn writable(&self) -> bool;
    /// `Endpoint::write_two`'s contract.
    fn write_two(&mut self, head: &[u8], body: &[u8], closing: bool) -> io::Result<Option<usize>>;
}

impl Sink for Endpoint {
    fn writable(&self) -> bool {
        self.writable
    }

    fn write_two(&mut self, head: &[u8], body: &[u8], closing: bool) -> io::Result<Option<usize>> {
        Endpoint::write_two(self, head, body, closing)
    }
}

/// The client's connection: its socket, under TLS on a `tls` listener.
pub enum Transport {
    Plain(Endpoint),
    Tls(Endpoint, Box<rustls::ServerConnection>),
}

/// An error of the TLS layer, told apart from a socket error by the caller
/// (it is logged as the client's fault, not as a vanished peer).
pub fn is_tls_error(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::InvalidData
}

impl Transport {
    /// The transport of a connection accepted on a listener with `tls`
    /// (or without).
    pub fn new(endpoint: Endpoint, tls: Option<&crate::tls::ServerTls>) -> io::Result<Transport> {
        Ok(match tls {
            Some(config) => {
                let connection =
                    rustls::ServerConnection::new(config.clone()).map_err(io::Error::other)?;
                Transport::Tls(endpoint, Box::new(connection))
            }
            None => Transport::Plain(endpoint),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        match self {
            Transport::Plain(endpoint) | Transport::Tls(endpoint, _) => endpoint,
        }
    }

    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        match self {
            Transport::Plain(endpoint) | Transport::Tls(endpoint, _) => endpoint,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(..))
    }

    /// The TLS handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        matches!(self, Transport::Tls(_, tls) if tls.is_handshaking())
    }

    /// The name the client asked for in its TLS handshake (SNI).
    /// The protocol ALPN agreed on, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Transport::Tls(_, tls) => tls.alpn_protocol(),
            Transport::Plain(_) => None,
        }
    }

    pub fn server_name(&self) -> Option<&str> {
        match self {
            Transport::Tls(_, tls) => tls.server_name(),
            Transport::Plain(_) => None,
        }
    }

    /// A read may find something: the socket was reported readable, or
    /// TLS may hold decrypted bytes not yet taken.
    pub fn may_read(&self) -> bool {
        match self {
            Transport::Plain(endpoint) => endpoint.readable,
            Transport::Tls(..) => true,
        }
    }

    /// Reads into `buffer` while it has room: plaintext rustls already
    /// decrypted first, then more from the socket. A TLS error (after its
    /// alert went out) is an `InvalidData` error.
    pub fn read_into(&mut self, buffer: &mut Buffer) -> io::Result<Fill> {
        match self {
            Transport::Plain(endpoint) => endpoint.fill(buffer),
            Transport::Tls(endpoint, tls) => read_tls(endpoint, tls, buffer),
        }
    }

    /// Bytes read off the raw socket before TLS began (after a PROXY
    /// header): the start of the handshake.
    pub fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let Transport::Tls(endpoint, tls) = self else {
            return Ok(());
        };
        while !bytes.is_empty() {
            tls.read_tls(&mut bytes)?;
            process(endpoint, tls)?;
        }
        Ok(())
    }

    /// TLS has ciphertext (a handshake message, or records the socket did
    /// not take) to send.
    pub fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(_, tls) if tls.wants_write())
    }

    /// Sends what TLS has ready; false when the socket blocked.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(endpoint, tls) => flush_tls(endpoint, tls),
        }
    }

    /// Tells a TLS client that nothing more follows (close_notify), as
    /// HAProxy and nginx do before closing: without it, OpenSSL 3 clients
    /// report the close as an unexpected EOF and fail the request.
    pub fn close_notify(&mut self) {
        if let Transport::Tls(endpoint, tls) = self {
            tls.send_close_notify();
            let _ = flush_tls(endpoint, tls);
        }
    }

    /// Ends the sending side: TLS says close_notify first.
    pub fn shutdown_write(&mut self) {
        if let Transport::Tls(endpoint, tls) = self {
            tls.send_close_notify();
            let _ = flush_tls(endpoint, tls);
        }
        self.endpoint().shutdown_write();
    }
}

impl Sink for Transport {
    fn writable(&self) -> bool {
        self.endpoint().writable
    }

    fn write_two(&mut self, head: &[u8], body: &[u8], closing: bool) -> io::Result<Option<usize>> {
        let (endpoint, tls) = match self {
            Transport::Plain(endpoint) => return endpoint.write_two(head, body, closing),
            Transport::Tls(endpoint, tls) => (endpoint, tls),
        };
        // rustls holds what the socket did not take; send that first, so its
        // buffer stays bounded.
        if !flush_tls(endpoint, tls)? {
            return Ok(None);
        }
        let count = tls
            .writer()
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])?;
        flush_tls(endpoint, tls)?;
        Ok((count > 0).then_some(count))
    }
}

fn read_tls(
    endpoint: &mut Endpoint,
    tls: &mut rustls::ServerConnection,
    buffer: &mut Buffer,
) -> io::Result<Fill> {
    let mut total = Fill::default();
    loop {
        let fill = buffer.fill_from(&mut tls.reader(), true)?;
        total.read += fill.read;
        if fill.eof {
            // close_notify: the client has said all it will.
            total.eof = true;
            return Ok(total);
        }
        if buffer.is_full() || !endpoint.readable {
            return Ok(total);
        }
        let mut socket = Watched {
            stream: &mut endpoint.stream,
            short: false,
        };
        match tls.read_tls(&mut socket) {
            Ok(0) => {
                total.eof = true;
                return Ok(total);
            }
            Ok(_) => {
                // Less than rustls asked for: the socket is empty now, and
                // edge-triggered polling reports its next bytes (as for a
                // plain socket, this saves an EAGAIN per request).
                if socket.short {
                    endpoint.readable = false;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                endpoint.readable = false;
                return Ok(total);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        process(endpoint, tls)?;
    }
}

/// The client socket as rustls reads it, noting whether a read returned
/// less than was asked for.
struct Watched<'a> {
    stream: &'a mut TcpStream,
    short: bool,
}

impl io::Read for Watched<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let count = io::Read::read(self.stream, buffer)?;
        self.short = count < buffer.len();
        Ok(count)
    }
}

/// Lets rustls work on what it read; an error sends its alert and comes
/// back as `InvalidData`.
fn process(endpoint: &mut Endpoint, tls: &mut rustls::ServerConnection) -> io::Result<()> {
    if let Err(error) = tls.process_new_packets() {
        let _ = tls.write_tls(&mut endpoint.stream);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TLS: {error}"),
        ));
    }
    Ok(())
}

fn flush_tls(endpoint: &mut Endpoint, tls: &mut rustls::ServerConnection) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut endpoint.stream) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                endpoint.writable = false;
                return Ok(false);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}
