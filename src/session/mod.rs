//! A session: one client connection, through the stages of its life.
//!
//! ```text
//! accept ──> ProxyHeader? ──> Handshake? ──> Http1 ──(101)──> Tunnel
//!                                 │            └──(h2c preface)──> Http2
//!                                 ├──(ALPN h2)──> Http2 (an exchange per stream)
//!                                 └──(mode = "tcp")──> TcpConnect ──> Tunnel
//! ```
//!
//! Each stage drives what its sockets allow and answers with a `Step`:
//! go on, upgrade, or close. `Session::upgrade` is the one place a stage
//! becomes the next, moving the sockets, buffers and server lease along.

mod handshake;
mod http1;
mod http2;
mod proxy_header;
mod tcp;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod tunnel;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use mio::event::Event;
use mio::net::TcpStream;

use crate::buffer::Buffer;
use crate::memory::Pressure;
use crate::services::Services;
use crate::timer::{self, Deadline};
use crate::token::TokenKind;

pub use crate::client::{App, Client, End, Key, ListenerSpec};
use crate::client::{client_end, shut_and_drain};
use crate::exchange::{self, attempt, forward};
pub use crate::timer::Timeout;
use crate::transport;
use handshake::Handshake;
use http1::Http1;
use http2::Http2;
use proxy_header::ProxyHeader;
use tcp::TcpConnect;
use transport::{Endpoint, Transport};
use tunnel::Tunnel;

/// About how many bytes a stage moves each way in one drive before it
/// yields, so transfers share the loop (HAProxy bounds a task's turn the
/// same way).
const TURN_BYTES: usize = 1024 * 1024;

/// How many rounds of reading and writing a stage makes in one drive before
/// it yields: a round moves up to a buffer's worth each way.
pub fn turn_rounds(buffer_bytes: usize) -> usize {
    (TURN_BYTES / buffer_bytes.max(1)).clamp(2, 64)
}

/// Runs a stage's `run_once` (true: something moved) until nothing moves,
/// or its turn's rounds are used up: the one driving loop of the stages.
pub fn drive_rounds(buffer_bytes: usize, mut run_once: impl FnMut() -> Result<bool, Step>) -> Step {
    for round in 0..turn_rounds(buffer_bytes) {
        match run_once() {
            Ok(true) => {}
            Ok(false) => {
                return Step::Continue {
                    progress: round > 0,
                };
            }
            Err(step) => return step,
        }
    }
    Step::Yield
}

/// Turns a client socket error into the step it means: a TLS error is the
/// client's fault, anything else a vanished peer.
fn client_error(error: std::io::Error) -> Step {
    Step::Close(client_end(error))
}

/// What a stage says after it ran.
#[derive(Debug)]
pub enum Step {
    /// The stage used its turn's budget with work left: it is driven
    /// again after the other ready sessions had theirs (HAProxy-style
    /// fairness: ten transfers share the core).
    Yield,
    /// The stage goes on; `progress` when any byte moved.
    Continue {
        progress: bool,
    },
    /// The stage is done and the next begins.
    Upgrade,
    Close(End),
}

enum Stage {
    ProxyHeader(ProxyHeader),
    Handshake(Handshake),
    Http1(Http1),
    /// Boxed, as the tunnel is: only their connections pay for them.
    Http2(Box<Http2>),
    TcpConnect(Box<TcpConnect>),
    Tunnel(Box<Tunnel>),
    /// The stage was moved out, by `upgrade` (for the moment it builds the
    /// next) or `close`: a session is never driven in it.
    Taken,
}

pub struct Session {
    key: usize,
    client: Client,
    stage: Stage,
    /// When bytes last moved either way.
    last_activity: Instant,
    /// The earliest timer this session has in the loop's heap.
    timer_at: Option<Instant>,
}

impl Session {
    /// A session for a connection `listener` accepted from `address`.
    pub fn new(
        key: usize,
        stream: TcpStream,
        address: SocketAddr,
        listener: &ListenerSpec,
        buffer_bytes: usize,
    ) -> io::Result<Session> {
        // A request usually follows the handshake at once: the first drive
        // reads it before the socket is registered, saving a poll round,
        // and registers the socket at its end.
        let endpoint = Endpoint::new(stream, None, true);
        let transport = Transport::new(endpoint, listener.tls.as_ref())?;
        let client = Client {
            transport,
            address,
            destination: None,
            eof: false,
            h2c: listener.h2c,
            http2: false,
            continued: false,
            app: listener.app.clone(),
        };
        let now = timer::now();
        let stage = if listener.proxy_header {
            Stage::ProxyHeader(ProxyHeader::new(buffer_bytes, now))
        } else if client.transport.is_tls() {
            Stage::Handshake(Handshake::new(Buffer::new(buffer_bytes), now))
        } else {
            http_or_tcp(&client, Buffer::new(buffer_bytes), buffer_bytes)
        };
        Ok(Session {
            key,
            client,
            stage,
            last_activity: now,
            timer_at: None,
        })
    }

    /// Makes all the progress the sockets allow. Returns false when the
    /// session is over and has been closed.
    pub fn drive(&mut self, services: &mut Services) -> bool {
        loop {
            let key = self.key;
            let step = match &mut self.stage {
                Stage::ProxyHeader(stage) => stage.drive(&mut self.client),
                Stage::Handshake(stage) => stage.drive(&mut self.client),
                Stage::Http1(stage) => stage.drive(Key::session(key), &mut self.client, services),
                Stage::Http2(stage) => stage.drive(key, &mut self.client, services),
                Stage::TcpConnect(stage) => stage.drive(key, &mut self.client, services),
                Stage::Tunnel(stage) => stage.drive(&mut self.client, services),
                Stage::Taken => Step::Close(End::Done { linger: false }),
            };
            match step {
                Step::Yield => {
                    self.last_activity = timer::now();
                    services.yielded.push(self.key);
                    break;
                }
                Step::Continue { progress } => {
                    if progress {
                        self.last_activity = timer::now();
                    }
                    break;
                }
                Step::Upgrade => {
                    self.last_activity = timer::now();
                    if let Err(end) = self.upgrade(services) {
                        self.close(services, end);
                        return false;
                    }
                }
                Step::Close(end) => {
                    self.close(services, end);
                    return false;
                }
            }
        }
        self.schedule_timer(services);
        if let Err(error) = self.update_interest(services) {
            self.close(services, End::Aborted(error.to_string()));
            return false;
        }
        true
    }

    /// The one place a stage becomes the next: it takes the old stage by
    /// value and moves its socket state, buffers and lease into the new one;
    /// when there is no next one, the session ends as this says.
    fn upgrade(&mut self, services: &mut Services) -> Result<(), End> {
        let buffer_bytes = services.settings.buffer_bytes;
        // An upgrade that finds nothing to switch to (no switched exchange)
        // ends the connection as a finished one would.
        let nothing = || End::Done { linger: false };
        let next = match std::mem::replace(&mut self.stage, Stage::Taken) {
            Stage::ProxyHeader(stage) => {
                let since = stage.since;
                let rest = stage.into_rest();
                if self.client.transport.is_tls() {
                    // The bytes after the header begin the TLS handshake.
                    self.client
                        .transport
                        .feed(rest.data())
                        .map_err(|error| End::Aborted(error.to_string()))?;
                    Stage::Handshake(Handshake::new(Buffer::new(buffer_bytes), since))
                } else {
                    application(&mut self.client, rest, services)
                }
            }
            Stage::Handshake(stage) => {
                application(&mut self.client, stage.into_inbound(), services)
            }
            Stage::Http1(stage) if self.client.h2c && stage.starts_http2() => {
                http2(&mut self.client, stage.into_inbound(), services)
            }
            Stage::Http1(stage) => {
                Stage::Tunnel(Box::new(stage.into_tunnel().ok_or_else(nothing)?))
            }
            Stage::TcpConnect(stage) => {
                Stage::Tunnel(Box::new(stage.into_tunnel().ok_or_else(nothing)?))
            }
            other @ (Stage::Tunnel(_) | Stage::Http2(_) | Stage::Taken) => other,
        };
        self.stage = next;
        Ok(())
    }

    /// The session's next deadline, from its stage.
    fn deadline(&self, services: &Services) -> (Instant, Timeout) {
        let timeouts = &services.settings.timeouts;
        let last = self.last_activity;
        match &self.stage {
            Stage::ProxyHeader(stage) => (stage.since + timeouts.client_header, Timeout::Silent),
            Stage::Handshake(stage) => (stage.since + timeouts.client_header, Timeout::Silent),
            Stage::Taken => (last, Timeout::Silent),
            Stage::Http1(stage) => stage.deadline(timeouts, last),
            Stage::Http2(stage) => stage.deadline(timeouts, last),
            Stage::TcpConnect(stage) => stage.deadline(last, timeouts.client_header),
            Stage::Tunnel(_) => (last + timeouts.tunnel, Timeout::Tunnel),
        }
    }

    /// Makes sure a timer fires no later than the session's deadline. Timers
    /// that fire early (the deadline moved on) just schedule the next one.
    fn schedule_timer(&mut self, services: &mut Services) {
        let (at, _) = self.deadline(services);
        if self.timer_at.is_none_or(|scheduled| at < scheduled) {
            services.timers.schedule(at, Deadline::Session(self.key));
            self.timer_at = Some(at);
        }
    }

    /// The timer of this session that still counts; others in the heap are stale.
    pub fn timer_at(&self) -> Option<Instant> {
        self.timer_at
    }

    /// A timer of this session fired: act on whatever deadline has passed.
    /// Returns false when that closed the session.
    pub fn expire(&mut self, services: &mut Services, now: Instant) -> bool {
        if self.timer_at.is_some_and(|scheduled| scheduled <= now) {
            self.timer_at = None;
        }
        let (at, timeout) = self.deadline(services);
        if at > now {
            return true;
        }
        let key = self.key;
        let address = self.client.address;
        let timeouts = services.settings.timeouts;
        let step = match &mut self.stage {
            Stage::Http1(stage) => stage.expire(Key::session(key), &self.client, services, timeout),
            Stage::Http2(stage) => stage.expire(key, &mut self.client, services, now),
            Stage::TcpConnect(stage) => stage.expire(key, &self.client, services, timeout),
            Stage::Tunnel(_) => {
                crate::client_log!(
                    log::Level::Info,
                    "{address}: tunnel idle for {:?}, closed",
                    timeouts.tunnel
                );
                Step::Close(End::Done { linger: false })
            }
            Stage::ProxyHeader(_) | Stage::Handshake(_) | Stage::Taken => {
                // Like nginx, and HAProxy's http-ignore-probes: no answer
                // for a connection that never asked anything.
                crate::client_log!(
                    log::Level::Info,
                    "{address}: closed, no request within {:?}",
                    timeouts.client_header
                );
                Step::Close(End::Done { linger: false })
            }
        };
        match step {
            Step::Close(end) => {
                self.close(services, end);
                false
            }
            Step::Upgrade => match self.upgrade(services) {
                Ok(()) => true,
                Err(end) => {
                    self.close(services, end);
                    false
                }
            },
            Step::Continue { .. } | Step::Yield => true,
        }
    }

    fn update_interest(&mut self, services: &Services) -> std::io::Result<()> {
        let registry = &services.registry;
        let token = TokenKind::Client(self.key).token();
        match &mut self.stage {
            Stage::Http1(stage) => stage.update_interest(&mut self.client, registry, token),
            Stage::Http2(stage) => stage.update_interest(&mut self.client, registry, token),
            Stage::Tunnel(stage) => stage.update_interest(&mut self.client, registry, token),
            Stage::TcpConnect(stage) => stage.update_interest(&mut self.client, registry, token),
            Stage::ProxyHeader(_) | Stage::Handshake(_) | Stage::Taken => {
                let wants_write = self.client.transport.wants_write();
                self.client
                    .transport
                    .endpoint_mut()
                    .update_interest(registry, token, wants_write)
            }
        }
    }

    pub fn mark_client_ready(&mut self, event: &Event) {
        self.client.transport.endpoint_mut().mark(event);
    }

    /// An event for backend socket `fd`, if this session (its HTTP/2
    /// stream in `stream`) still holds it (a late event of a socket it let
    /// go is dropped).
    pub fn mark_backend_ready(&mut self, stream: Option<usize>, fd: RawFd, event: &Event) -> bool {
        let backend = match &mut self.stage {
            Stage::Http2(stage) => return stage.mark_backend_ready(stream, fd, event),
            Stage::Http1(stage) => stage.backend_mut(),
            Stage::TcpConnect(stage) => stage.backend_mut(),
            Stage::Tunnel(stage) => Some(stage.backend_mut()),
            _ => None,
        };
        match backend {
            Some(backend) if backend.stream.as_raw_fd() == fd => {
                backend.mark(event);
                true
            }
            _ => false,
        }
    }

    /// The admin answer waiting for `ticket`'s work (a shared map's
    /// change) is `reply`; whether the session waited for it.
    pub fn answered(
        &mut self,
        services: &Services,
        ticket: u64,
        reply: &crate::reply::LocalReply,
    ) -> bool {
        match &mut self.stage {
            Stage::Http1(stage) => stage.answered(services, ticket, reply),
            _ => false,
        }
    }

    /// A slot freed in the pool this session (or its stream in `slot`)
    /// waits on.
    pub fn wake(&mut self, slot: Option<usize>) {
        match &mut self.stage {
            Stage::Http2(stage) => stage.wake(slot),
            Stage::Http1(stage) => stage.wake(),
            Stage::TcpConnect(stage) => stage.wake(),
            _ => {}
        }
    }

    /// A reload renumbered the pools: `moved[pool][server]` is where each old
    /// server is now. Returns whether the session has something new to do.
    pub fn follow_reload(
        &mut self,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
        services: &mut Services,
    ) -> bool {
        let key = self.key;
        match &mut self.stage {
            Stage::Http1(stage) => {
                stage.follow_reload(Key::session(key), &self.client, moved, pool_moved, services)
            }
            Stage::Http2(stage) => {
                stage.follow_reload(key, &self.client, moved, pool_moved, services)
            }
            Stage::TcpConnect(stage) => stage.follow_reload(moved, pool_moved),
            Stage::Tunnel(stage) => {
                stage.follow_reload(moved, pool_moved);
                false
            }
            _ => false,
        }
    }

    /// rsp needs what exchanges hold (memory near its bound, or a pool's
    /// slots all taken with requests waiting): an exchange of this session
    /// that has stalled on its client past the grace is cut.
    pub fn reclaim(
        &mut self,
        services: &mut Services,
        now: Instant,
        pressure: Pressure,
    ) -> Reclaimed {
        let needed = |services: &Services, pool: Option<usize>| {
            pressure >= Pressure::High
                || pool.is_some_and(|pool| {
                    services
                        .pools
                        .get(pool)
                        .is_some_and(|pool| pool.queued() > 0)
                })
        };
        match &mut self.stage {
            Stage::Http1(stage) => {
                let Some(stalled) = stage.stalled(now) else {
                    return Reclaimed::Nothing;
                };
                if stalled < crate::memory::stall_grace(pressure)
                    || !needed(services, stage.leased_pool())
                {
                    return Reclaimed::Nothing;
                }
                services.totals.stalled_cut += 1;
                crate::client_log!(
                    log::Level::Warn,
                    "{}: connection cut: its client took nothing for {:.1} s while {} ({} bytes held)",
                    self.client.address,
                    stalled.as_secs_f64(),
                    if pressure >= Pressure::High {
                        "memory was needed"
                    } else {
                        "its pool had requests waiting"
                    },
                    stage.held()
                );
                // The client's doing, not the backend's: its lease ends well.
                self.close(services, End::ClientGone(None));
                Reclaimed::Closed
            }
            Stage::Http2(stage) => {
                if stage.reclaim(self.key, services, now, pressure, needed) {
                    Reclaimed::Changed
                } else {
                    Reclaimed::Nothing
                }
            }
            _ => Reclaimed::Nothing,
        }
    }

    /// Ends the session at once (shutdown ran out of time): what it holds
    /// of pools goes back, its request is logged as cut.
    pub fn cut(&mut self, services: &mut Services, why: &str) {
        self.close(services, End::Aborted(why.to_owned()));
    }

    fn close(&mut self, services: &mut Services, end: End) {
        let client = &mut self.client;
        match &end {
            End::Done { linger } => {
                if !client.eof && *linger {
                    shut_and_drain(client);
                } else {
                    client.transport.close_notify();
                }
            }
            End::ClientGone(error) => log::debug!("{}: client closed: {error:?}", client.address),
            End::Aborted(why) => crate::client_log!(
                log::Level::Warn,
                "{}: connection cut: {why}",
                client.address
            ),
        }
        match std::mem::replace(&mut self.stage, Stage::Taken) {
            Stage::Http1(stage) => stage.close(Key::session(self.key), services, &end),
            Stage::Http2(stage) => stage.close(self.key, services, &end),
            Stage::TcpConnect(stage) => stage.close(self.key, services, &end),
            Stage::Tunnel(stage) => stage.close(services, &end),
            Stage::ProxyHeader(_) | Stage::Handshake(_) | Stage::Taken => {}
        }
        // Dropping the streams closes them, which also removes them from epoll.
    }
}

/// What `Session::reclaim` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaimed {
    Nothing,
    /// Streams were cut: the session has frames to write.
    Changed,
    /// The session is closed.
    Closed,
}

/// The stage that serves the listener's application, with the bytes that
/// came before it: HTTP/2 when TLS agreed on it (ALPN), else HTTP/1.
fn application(client: &mut Client, inbound: Buffer, services: &Services) -> Stage {
    if *client.app == App::Http && client.transport.alpn() == Some(b"h2") {
        return http2(client, inbound, services);
    }
    http_or_tcp(client, inbound, services.settings.buffer_bytes)
}

/// The stage of a connection that negotiated nothing: HTTP/1 (which sees
/// an h2c preface and switches), or tcp.
fn http_or_tcp(client: &Client, inbound: Buffer, buffer_bytes: usize) -> Stage {
    match &*client.app {
        App::Tcp { .. } => {
            Stage::TcpConnect(Box::new(TcpConnect::new(client, inbound, buffer_bytes)))
        }
        App::Http | App::Admin => Stage::Http1(Http1::new(inbound)),
    }
}

/// The HTTP/2 stage for `client`, whose first bytes are in `inbound`.
fn http2(client: &mut Client, mut inbound: Buffer, services: &Services) -> Stage {
    client.http2 = true;
    let settings = services.settings.http2;
    // Frames are read whole: the buffer holds the largest rsp announced,
    // whatever `buffer_bytes` is.
    inbound.raise_limit(settings.max_frame_size as usize + crate::h2::frame::HEADER_LENGTH);
    Stage::Http2(Box::new(Http2::new(inbound, settings, services.generation)))
}
