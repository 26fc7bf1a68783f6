//! One request's record, from its first byte to the end of its answer:
//! when it ends it is added to the pool, server and global counters and
//! written to the access log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::access_log::{AccessLog, Entry};
use crate::balancer::Pool;
use crate::http::RequestHead;
use crate::stats::Totals;
use crate::timer;

#[derive(Debug, Clone)]
pub struct Transaction {
    /// The first byte of the request head.
    pub started: Instant,
    /// False for a head that could not be parsed (400, 408, 431).
    pub parsed: bool,
    /// The status the client got, 0 until it got one.
    pub status: u16,
    /// rsp answered itself.
    pub local: bool,
    pub body_bytes_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub pool: Option<usize>,
    /// The last server of `pool` chosen for it.
    pub server: Option<usize>,
    pub backend: Option<SocketAddr>,
    pub backend_status: Option<u16>,
    /// From `route()` to the backend's response head.
    pub response_time: Option<Duration>,
    pub routed_at: Instant,
}

impl Transaction {
    pub fn new(started: Instant, parsed: bool) -> Transaction {
        Transaction {
            started,
            parsed,
            status: 0,
            local: false,
            body_bytes_sent: 0,
            bytes_received: 0,
            bytes_sent: 0,
            pool: None,
            server: None,
            backend: None,
            backend_status: None,
            response_time: None,
            routed_at: started,
        }
    }

    /// rsp wrote the whole answer itself.
    pub fn answered_locally(&mut self, status: u16, body_bytes: usize) {
        self.status = status;
        self.local = true;
        self.body_bytes_sent = body_bytes as u64;
    }

    /// Adds the finished request to the counters and the access log.
    pub fn finish(
        &self,
        totals: &mut Totals,
        pools: &mut [Pool],
        access_log: Option<&mut AccessLog>,
        request: Request,
    ) {
        let duration = timer::now().saturating_duration_since(self.started);
        totals.responses.count(self.status);
        totals.local_responses += u64::from(self.local);
        if self.parsed {
            totals.count_protocol(request.head.protocol());
        }
        totals.bytes_in += self.bytes_received;
        totals.bytes_out += self.bytes_sent;
        totals.duration.record(duration);
        let mut pool_name = None;
        if self.pool.is_none()
            && let Some(server) = self.backend
        {
            totals.count_unlisted(server, self.status, self.local);
        }
        if let Some(pool) = self.pool.and_then(|pool| pools.get_mut(pool)) {
            pool.stats.responses.count(self.status);
            pool.stats.duration.record(duration);
            if let Some(server) = self.server.and_then(|server| pool.server_mut(server)) {
                let stats = &mut server.stats;
                stats.responses.count(self.status);
                stats.bytes_in += self.bytes_received;
                stats.bytes_out += self.bytes_sent;
                if let Some(response_time) = self.response_time {
                    stats.response_time_us.add(response_time.as_micros() as u64);
                }
            }
            pool_name = Some(pool.name.as_str());
        }
        if let Some(access_log) = access_log {
            access_log.write(&Entry {
                client: request.client,
                request: Some(request.head).filter(|_| self.parsed),
                status: self.status,
                body_bytes_sent: self.body_bytes_sent,
                bytes_received: self.bytes_received,
                bytes_sent: self.bytes_sent,
                pool: pool_name,
                backend: self.backend,
                backend_status: self.backend_status,
                duration,
                request_id: request.id,
                completed: request.completed,
            });
        }
    }
}

/// The parts of the session a finished transaction reports.
pub struct Request<'a> {
    pub client: SocketAddr,
    pub head: &'a RequestHead,
    pub id: Option<&'a str>,
    pub completed: bool,
}
