//! Idle backend connections kept for the next request to the same server.
//! The store keeps the upstream connection itself (its `Endpoint`: the
//! socket, its registration, what was known of its readiness), as an
//! exchange hands it back; a connection with more state of its own (TLS
//! to a backend) is kept whole the same way.
//!
//! A connection whose response ended cleanly and that the backend agreed to
//! keep open goes here instead of being closed; the next request for that
//! server takes the most recently used one (the one least likely to have
//! been timed out by the backend). Each idle connection stays registered
//! with the loop under a token of its own, so a backend closing it is
//! noticed, and it is closed after `timeout` unused.
//!
//! A backend socket's poll token comes from its descriptor and stays the
//! same for the socket's life, whoever holds it; `owners` says who does.
//! Handing a connection from a session to this store and back is then a
//! table update, not an `epoll_ctl`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::timer;
use crate::transport::Endpoint;

/// Who holds the backend socket with a given descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owner {
    #[default]
    Nobody,
    /// The session, and its HTTP/2 stream, of this queue-entry key
    /// (`token::waiter`): an event finds its exchange without a search.
    Session(usize),
    /// This store, under this key.
    Idle(usize),
}

struct Idle {
    /// The upstream connection: its socket, registered as it was (it
    /// keeps its registration), and what was known of its readiness.
    connection: Endpoint,
    server: SocketAddr,
    /// Tells this connection's timer from an older one of the same slot.
    serial: u64,
    since: Instant,
}

pub struct IdleConnections {
    /// Indexed by descriptor. Entries of closed sockets go stale harmlessly:
    /// a closed socket reports nothing, and a new one claims its entry when
    /// it is registered.
    owners: Vec<Owner>,
    connections: Slab<Idle>,
    /// Slab keys of each server's idle connections, most recent last.
    by_server: HashMap<SocketAddr, Vec<usize>, BuildHasherDefault<AddressHasher>>,
    max_per_server: usize,
    timeout: Duration,
    serial: u64,
}

/// FxHash's multiply-and-rotate: the keys are configured server addresses,
/// not client input, so nothing can aim collisions at it, and SipHash was
/// a visible share of rsp's time per request (a lookup on each take and put).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

/// When an idle connection must be looked at again.
pub struct IdleTimer {
    pub at: Instant,
    pub key: usize,
    pub serial: u64,
}

impl IdleConnections {
    pub fn new(max_per_server: usize, timeout: Duration) -> IdleConnections {
        IdleConnections {
            owners: Vec::new(),
            connections: Slab::new(),
            by_server: HashMap::default(),
            max_per_server,
            timeout,
            serial: 0,
        }
    }

    pub fn owner(&self, fd: RawFd) -> Owner {
        usize::try_from(fd)
            .ok()
            .and_then(|fd| self.owners.get(fd).copied())
            .unwrap_or_default()
    }

    fn set_owner(&mut self, fd: RawFd, owner: Owner) {
        let Ok(fd) = usize::try_from(fd) else {
            return;
        };
        if fd >= self.owners.len() {
            self.owners.resize(fd + 1, Owner::Nobody);
        }
        self.owners[fd] = owner;
    }

    /// The exchange of `waiter` (`token::waiter`) registered or took the
    /// backend socket `fd`.
    pub fn claim(&mut self, fd: RawFd, waiter: usize) {
        self.set_owner(fd, Owner::Session(waiter));
    }

    pub fn enabled(&self) -> bool {
        self.max_per_server > 0
    }

    /// New limits from a reload; connections beyond them go as they are used.
    pub fn configure(&mut self, max_per_server: usize, timeout: Duration) {
        self.max_per_server = max_per_server;
        self.timeout = timeout;
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Keeps `connection` for `server`, or closes it when the server
    /// already has as many idle connections as allowed (or it is not in
    /// the poll set, where a close by the backend would go unnoticed).
    pub fn put(&mut self, server: SocketAddr, connection: Endpoint) -> Option<IdleTimer> {
        let keys = self.by_server.entry(server).or_default();
        if keys.len() >= self.max_per_server || connection.interest.is_none() {
            return None;
        }
        let fd = connection.stream.as_raw_fd();
        self.serial += 1;
        let since = timer::now();
        let key = self.connections.insert(Idle {
            connection,
            server,
            serial: self.serial,
            since,
        });
        keys.push(key);
        self.set_owner(fd, Owner::Idle(key));
        Some(IdleTimer {
            at: since + self.timeout,
            key,
            serial: self.serial,
        })
    }

    /// The most recently used idle connection to `server`, if one is
    /// fresh, for the exchange of `waiter`: writable, nothing waiting to
    /// be read (an event would have closed it).
    pub fn take(&mut self, server: SocketAddr, waiter: usize) -> Option<Endpoint> {
        let keys = self.by_server.get_mut(&server)?;
        while let Some(key) = keys.pop() {
            let idle = self.connections.remove(key);
            if idle.since.elapsed() < self.timeout {
                let mut connection = idle.connection;
                self.set_owner(connection.stream.as_raw_fd(), Owner::Session(waiter));
                connection.readable = false;
                connection.writable = true;
                connection.end_reported = false;
                return Some(connection);
            }
        }
        None
    }

    /// An idle connection became readable: the backend closed it, or sent
    /// bytes nobody asked for. Either way it cannot carry a request.
    pub fn on_event(&mut self, key: usize) {
        let Some(idle) = self.connections.get_mut(key) else {
            return;
        };
        let mut probe = [0u8; 1];
        match idle.connection.stream.read(&mut probe) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            _ => self.close(key),
        }
    }

    /// The timer of an idle connection fired: close it if it is still the
    /// one the timer was for and has been unused all this time.
    pub fn expire(&mut self, key: usize, serial: u64, now: Instant) {
        if self
            .connections
            .get(key)
            .is_some_and(|idle| idle.serial == serial && now >= idle.since + self.timeout)
        {
            self.close(key);
        }
    }

    /// Whether a timer for (`key`, `serial`) still has a connection to watch.
    pub fn is_current(&self, key: usize, serial: u64) -> bool {
        self.connections
            .get(key)
            .is_some_and(|idle| idle.serial == serial)
    }

    fn close(&mut self, key: usize) {
        let idle = self.connections.remove(key);
        if let Some(keys) = self.by_server.get_mut(&idle.server) {
            keys.retain(|&kept| kept != key);
        }
        // Dropping the stream closes it and takes it out of the poll set.
    }
}
