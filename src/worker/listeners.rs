//! A worker's listening sockets: binding (`SO_REUSEPORT` when there are
//! several workers), deferred accept, and taking them out of the poll set
//! while accepting must pause.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Certificates, Config, ListenMode};
use crate::session::{App, ListenerSpec};
use crate::timer::{Deadline, Throttle, Timers};

use crate::token::TokenKind;

/// How long accepting pauses after accept() fails (EMFILE and the like).
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What tells listeners apart across a reload: a listener whose address
/// and purpose stay keeps its socket (and its backlog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenKey {
    pub address: SocketAddr,
    pub app: App,
    pub proxy_header: bool,
    /// HTTP/2 with prior knowledge is taken besides HTTP/1 (cleartext).
    pub h2c: bool,
}

/// A listening socket, and what the connections it accepts are for.
pub struct Listener {
    pub key: ListenKey,
    pub spec: ListenerSpec,
    pub socket: TcpListener,
}

#[derive(Default)]
pub struct Listeners {
    /// Indexed by token slot; a closed listener leaves its slot empty.
    slots: Vec<Option<Listener>>,
    /// False while the listeners are out of the poll set.
    paused: bool,
    paused_until: Option<Instant>,
    pub warnings: Throttle,
}

/// Every listener `config` asks for (the admin port only in worker 0).
pub fn wanted(config: &Config, worker: usize) -> Vec<ListenKey> {
    let proxied = config.listen.iter().map(|listener| ListenKey {
        address: listener.address,
        app: match &listener.mode {
            ListenMode::Http => App::Http,
            ListenMode::Tcp { pool } => App::Tcp {
                pool: pool.clone(),
                listen: listener.address,
            },
        },
        proxy_header: listener.accept_proxy,
        h2c: listener.http2,
    });
    let admin = config
        .admin
        .as_ref()
        .filter(|_| worker == 0)
        .map(|admin| ListenKey {
            address: admin.address,
            app: App::Admin,
            proxy_header: false,
            h2c: false,
        });
    proxied.chain(admin).collect()
}

impl Listeners {
    pub fn get(&self, slot: usize) -> Option<&Listener> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    pub fn keys(&self) -> impl Iterator<Item = &ListenKey> {
        self.slots.iter().flatten().map(|listener| &listener.key)
    }

    /// Binds each of `keys`; all or none.
    pub fn bind_all(keys: &[ListenKey], reuse_port: bool) -> io::Result<Vec<Listener>> {
        keys.iter()
            .map(|key| {
                let address = key.address;
                bind(address, reuse_port && key.app != App::Admin)
                    .map(|socket| Listener {
                        key: key.clone(),
                        spec: ListenerSpec {
                            proxy_header: key.proxy_header,
                            tls: None,
                            h2c: key.h2c,
                            app: std::rc::Rc::new(key.app.clone()),
                        },
                        socket,
                    })
                    .map_err(|error| {
                        io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
                    })
            })
            .collect()
    }

    /// Puts bound listeners in free slots and in the poll set.
    pub fn open(&mut self, registry: &Registry, opened: Vec<Listener>) -> io::Result<()> {
        for mut listener in opened {
            let slot = self
                .slots
                .iter()
                .position(Option::is_none)
                .unwrap_or(self.slots.len());
            registry.register(
                &mut listener.socket,
                TokenKind::Listener(slot).token(),
                Interest::READABLE,
            )?;
            let address = listener.socket.local_addr().unwrap_or(listener.key.address);
            match &listener.key.app {
                App::Admin => log::info!("admin API on http://{address}/stats"),
                App::Http => log::info!("listening on {address}"),
                App::Tcp { pool, .. } => log::info!(
                    "listening on {address} (tcp, to {})",
                    pool.as_deref().unwrap_or("the pool route(conn) names")
                ),
            }
            if slot == self.slots.len() {
                self.slots.push(Some(listener));
            } else {
                self.slots[slot] = Some(listener);
            }
        }
        Ok(())
    }

    /// Closes the listeners `keep` rejects.
    pub fn close_unless(&mut self, registry: &Registry, keep: impl Fn(&ListenKey) -> bool) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|open| !keep(&open.key))
                && let Some(mut listener) = slot.take()
            {
                let _ = registry.deregister(&mut listener.socket);
                log::info!("stopped listening on {}", listener.key.address);
            }
        }
    }

    /// Gives every listener the TLS config and accept mode its entry has:
    /// certificates were read with the config, so a reload renews them.
    pub fn configure(&mut self, config: &Config, certificates: &Certificates) {
        for listener in self.slots.iter_mut().flatten() {
            let wanted = config
                .listen
                .iter()
                .find(|wanted| wanted.address == listener.key.address);
            listener.spec.tls = certificates.of(listener.key.address);
            let defer = wanted.is_none_or(|wanted| wanted.defer_accept);
            if let Err(error) = defer_accept(&listener.socket, defer) {
                log::warn!(
                    "{}: cannot set TCP_DEFER_ACCEPT: {error}",
                    listener.key.address
                );
            }
        }
    }

    /// Takes the listeners out of the poll set, so a full or failing accept
    /// never turns into a busy loop; `until` is when to try again.
    pub fn pause(&mut self, registry: &Registry, timers: &mut Timers, until: Option<Instant>) {
        if let Some(until) = until {
            self.paused_until = Some(until);
            timers.schedule(until, Deadline::ResumeAccept);
        }
        if self.paused {
            return;
        }
        self.paused = true;
        for listener in self.slots.iter_mut().flatten() {
            let _ = registry.deregister(&mut listener.socket);
        }
    }

    /// Puts the listeners back once `room` allows and any pause is over.
    pub fn resume(&mut self, registry: &Registry, now: Instant, room: bool) {
        if !self.paused || !room || self.paused_until.is_some_and(|until| now < until) {
            return;
        }
        self.paused = false;
        self.paused_until = None;
        for (slot, listener) in self.slots.iter_mut().enumerate() {
            if let Some(listener) = listener {
                let _ = registry.register(
                    &mut listener.socket,
                    TokenKind::Listener(slot).token(),
                    Interest::READABLE,
                );
            }
        }
        log::info!("accepting connections again");
    }

    /// Shutdown: every listener closes.
    pub fn close_all(&mut self, registry: &Registry) {
        for slot in &mut self.slots {
            if let Some(mut listener) = slot.take() {
                let _ = registry.deregister(&mut listener.socket);
            }
        }
    }
}

fn bind(address: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    // Answers go out as soon as they are written; accepted sockets inherit this.
    socket.set_tcp_nodelay(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(libc::SOMAXCONN)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// With `on`, the kernel queues a connection for accept only once its first
/// bytes arrived, so accepting never wakes the loop for a socket with
/// nothing to read. A client that stays silent is handed over after about a
/// second anyway, and the request-head timeout runs from then.
fn defer_accept(listener: &TcpListener, on: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let seconds: libc::c_int = on.into();
        // SAFETY: a valid descriptor and an int option of the size given.
        let result = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&seconds as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, on);
    Ok(())
}
