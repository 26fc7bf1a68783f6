//! Pools of servers and how a server is picked for a request.
//!
//! The interface follows nginx's upstream peers: `pick` a server, later
//! `release` it with the outcome, so that algorithms and failure tracking
//! can grow behind it without touching the event loop.

use std::net::SocketAddr;

use crate::config::PoolConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

pub struct Pool {
    pub name: String,
    servers: Vec<SocketAddr>,
    next: usize,
}

impl Pool {
    pub fn new(config: &PoolConfig) -> Pool {
        Pool {
            name: config.name.clone(),
            servers: config.servers.clone(),
            next: 0,
        }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Round robin over the pool's servers.
    pub fn pick(&mut self) -> Option<SocketAddr> {
        let server = *self.servers.get(self.next % self.servers.len().max(1))?;
        self.next = (self.next + 1) % self.servers.len();
        Some(server)
    }

    /// Reports how an exchange with `server` ended.
    pub fn release(&mut self, server: SocketAddr, outcome: Outcome) {
        if outcome == Outcome::Failed {
            log::debug!("pool {}: exchange with {server} failed", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_each_server_in_turn() {
        let servers: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
        ];
        let mut pool = Pool::new(&PoolConfig {
            name: "web".into(),
            servers: servers.clone(),
        });
        let picked: Vec<SocketAddr> = (0..6).map(|_| pool.pick().unwrap()).collect();
        assert_eq!(picked[..3], servers[..]);
        assert_eq!(picked[3..], servers[..]);
    }
}
