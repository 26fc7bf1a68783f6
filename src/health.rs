//! Active health checks, run by the event loop itself: every `interval_ms`
//! each server of a pool with `health` gets a non-blocking HTTP GET of
//! `path` (or a bare TCP connect when there is no path).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry};
use slab::Slab;

use crate::proxy_protocol;
use crate::token::TokenKind;

/// A pool's `health = { ... }` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub expect_status: u16,
    /// The pool's `send_proxy`: servers that want a PROXY header get one
    /// on checks too, saying the connection is rsp's own.
    pub send_proxy: Option<proxy_protocol::Version>,
}

/// One check in flight.
struct Check {
    generation: u64,
    pool: usize,
    server: usize,
    stream: TcpStream,
    connected: bool,
    request: Vec<u8>,
    sent: usize,
    response: Vec<u8>,
    expect_status: u16,
    /// Check keys are reused, so a timer only counts if it is this check's.
    deadline: Instant,
}

/// What a finished check says about its server.
pub struct Verdict {
    pub generation: u64,
    pub pool: usize,
    pub server: usize,
    pub healthy: bool,
    pub why: String,
}

/// The checks in flight; each is addressed by its slab key's
/// `TokenKind::Health` token.
#[derive(Default)]
pub struct HealthChecks {
    checks: Slab<Check>,
}

impl HealthChecks {
    /// Starts a check of `address`; returns its key and deadline for the timeout timer,
    /// or the verdict at once when the connect fails outright.
    pub fn start(
        &mut self,
        registry: &Registry,
        generation: u64,
        pool: usize,
        server: usize,
        address: SocketAddr,
        config: &HealthConfig,
    ) -> Result<(usize, Instant), Verdict> {
        let failed = |why: String| Verdict {
            generation,
            pool,
            server,
            healthy: false,
            why,
        };
        let mut stream =
            TcpStream::connect(address).map_err(|error| failed(format!("connect: {error}")))?;
        let entry = self.checks.vacant_entry();
        let key = entry.key();
        registry
            .register(
                &mut stream,
                TokenKind::Health(key).token(),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|error| failed(format!("register: {error}")))?;
        let request = match &config.path {
            Some(path) => {
                let mut request = Vec::new();
                if let Some(version) = config.send_proxy {
                    proxy_protocol::write_local(&mut request, version);
                }
                request.extend_from_slice(
                    format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: rsp-health\r\nConnection: close\r\n\r\n").as_bytes(),
                );
                request
            }
            None => Vec::new(),
        };
        entry.insert(Check {
            generation,
            pool,
            server,
            stream,
            connected: false,
            request,
            sent: 0,
            response: Vec::new(),
            expect_status: config.expect_status,
            deadline: Instant::now() + config.timeout,
        });
        Ok((key, Instant::now() + config.timeout))
    }

    /// Advances the check with `key`; a verdict when it is over.
    pub fn on_event(&mut self, key: usize) -> Option<Verdict> {
        let check = self.checks.get_mut(key)?;
        match check.advance() {
            Ok(None) => None,
            Ok(Some(healthy_or_why)) => Some(self.finish(key, healthy_or_why)),
            Err(error) => Some(self.finish(key, Err(error.to_string()))),
        }
    }

    /// The check's time is up: if it is still running, it failed.
    pub fn expire(&mut self, key: usize, now: Instant) -> Option<Verdict> {
        let due = self
            .checks
            .get(key)
            .is_some_and(|check| check.deadline <= now);
        due.then(|| self.finish(key, Err("timed out".into())))
    }

    fn finish(&mut self, key: usize, result: Result<(), String>) -> Verdict {
        let check = self.checks.remove(key);
        Verdict {
            generation: check.generation,
            pool: check.pool,
            server: check.server,
            healthy: result.is_ok(),
            why: result.err().unwrap_or_default(),
        }
    }
}

impl Check {
    /// `Ok(None)`: not done yet. `Ok(Some(Ok))`: healthy.
    fn advance(&mut self) -> io::Result<Option<Result<(), String>>> {
        if !self.connected {
            if let Some(error) = self.stream.take_error()? {
                return Ok(Some(Err(format!("connect: {error}"))));
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(error) if error.kind() == io::ErrorKind::NotConnected => return Ok(None),
                Err(error) => return Ok(Some(Err(format!("connect: {error}")))),
            }
            if self.request.is_empty() {
                return Ok(Some(Ok(())));
            }
        }
        while self.sent < self.request.len() {
            match self.stream.write(&self.request[self.sent..]) {
                Ok(count) => self.sent += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(count) => {
                    self.response.extend_from_slice(&chunk[..count]);
                    if self.response.windows(2).any(|pair| pair == b"\r\n")
                        || self.response.len() > 4096
                    {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        let status_line = String::from_utf8_lossy(&self.response);
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok());
        Ok(Some(match status {
            Some(status) if status == self.expect_status => Ok(()),
            Some(status) => Err(format!("status {status}, expected {}", self.expect_status)),
            None => Err("no HTTP status line".into()),
        }))
    }
}
