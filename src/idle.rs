//! Idle backend connections kept for the next request to the same server.
//!
//! A connection whose response ended cleanly and that the backend agreed to
//! keep open goes here instead of being closed; the next request for that
//! server takes the most recently used one (the one least likely to have
//! been timed out by the backend). Each idle connection stays registered
//! with the loop under a token of its own, so a backend closing it is
//! noticed, and it is closed after `timeout` unused.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

struct Idle {
    stream: TcpStream,
    server: SocketAddr,
    /// Tells this connection's timer from an older one of the same slot.
    serial: u64,
    since: Instant,
}

pub struct IdleConnections {
    base: usize,
    connections: Slab<Idle>,
    /// Slab keys of each server's idle connections, most recent last.
    by_server: HashMap<SocketAddr, Vec<usize>>,
    max_per_server: usize,
    timeout: Duration,
    serial: u64,
}

/// When an idle connection must be looked at again.
pub struct IdleTimer {
    pub at: Instant,
    pub key: usize,
    pub serial: u64,
}

impl IdleConnections {
    pub fn new(base: usize, max_per_server: usize, timeout: Duration) -> IdleConnections {
        IdleConnections {
            base,
            connections: Slab::new(),
            by_server: HashMap::new(),
            max_per_server,
            timeout,
            serial: 0,
        }
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && token.0 - self.base < usize::MAX / 8
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

    /// Keeps `stream` for `server`, or closes it when the server already has
    /// as many idle connections as allowed.
    pub fn put(
        &mut self,
        registry: &Registry,
        server: SocketAddr,
        mut stream: TcpStream,
    ) -> Option<IdleTimer> {
        let keys = self.by_server.entry(server).or_default();
        if keys.len() >= self.max_per_server {
            return None;
        }
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let token = Token(self.base + key);
        if registry
            .reregister(&mut stream, token, Interest::READABLE)
            .is_err()
        {
            return None;
        }
        self.serial += 1;
        let since = Instant::now();
        entry.insert(Idle {
            stream,
            server,
            serial: self.serial,
            since,
        });
        keys.push(key);
        Some(IdleTimer {
            at: since + self.timeout,
            key,
            serial: self.serial,
        })
    }

    /// The most recently used idle connection to `server`, if one is fresh.
    pub fn take(&mut self, server: SocketAddr) -> Option<TcpStream> {
        let keys = self.by_server.get_mut(&server)?;
        while let Some(key) = keys.pop() {
            let idle = self.connections.remove(key);
            if idle.since.elapsed() < self.timeout {
                return Some(idle.stream);
            }
        }
        None
    }

    /// An idle connection became readable: the backend closed it, or sent
    /// bytes nobody asked for. Either way it cannot carry a request.
    pub fn on_event(&mut self, token: Token) {
        let key = token.0 - self.base;
        let Some(idle) = self.connections.get_mut(key) else {
            return;
        };
        let mut probe = [0u8; 1];
        match idle.stream.read(&mut probe) {
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
