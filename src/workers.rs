//! `workers = N`: N threads, each with its own event loop, Lua state,
//! buffers, kept connections and `SO_REUSEPORT` listeners, so the kernel
//! spreads clients across them and the request path shares nothing.
//!
//! What they do share is for the admin port, which worker 0 serves: every
//! other worker publishes a copy of its counters once a second (one lock a
//! second, off the request path), and drain/enable commands go from worker
//! 0 to the others through a mailbox and a `mio::Waker`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use mio::Waker;

use crate::balancer::Pool;
use crate::stats::Totals;

/// Which worker an event loop is, and how to reach the others.
pub struct Worker {
    pub index: usize,
    pub count: usize,
    pub shared: Option<Arc<Shared>>,
}

impl Worker {
    /// The one event loop of a single-worker rsp.
    pub fn single() -> Worker {
        Worker {
            index: 0,
            count: 1,
            shared: None,
        }
    }
}

/// A worker's counters, as of its last publication.
#[derive(Clone)]
pub struct Snapshot {
    pub totals: Totals,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    SetDrained {
        pool: String,
        server: SocketAddr,
        drained: bool,
    },
    /// Removes stored responses: the one key, or every key it starts.
    PurgeCache { key: String, prefix: bool },
}

#[derive(Default)]
struct Mailbox {
    commands: Mutex<Vec<Command>>,
    waker: OnceLock<Waker>,
}

pub struct Shared {
    snapshots: Mutex<Vec<Option<Snapshot>>>,
    mailboxes: Vec<Mailbox>,
}

impl Shared {
    pub fn new(count: usize) -> Arc<Shared> {
        Arc::new(Shared {
            snapshots: Mutex::new(vec![None; count]),
            mailboxes: (0..count).map(|_| Mailbox::default()).collect(),
        })
    }

    pub fn set_waker(&self, index: usize, waker: Waker) {
        let _ = self.mailboxes[index].waker.set(waker);
    }

    pub fn publish(&self, index: usize, snapshot: Snapshot) {
        if let Ok(mut snapshots) = self.snapshots.lock() {
            snapshots[index] = Some(snapshot);
        }
    }

    /// The latest counters of every worker but `index`, with their index.
    pub fn others(&self, index: usize) -> Vec<(usize, Snapshot)> {
        let Ok(snapshots) = self.snapshots.lock() else {
            return Vec::new();
        };
        snapshots
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .filter_map(|(other, snapshot)| Some((other, snapshot.clone()?)))
            .collect()
    }

    /// Gives `command` to every worker but `from`, and wakes them.
    pub fn send(&self, from: usize, command: &Command) {
        for (index, mailbox) in self.mailboxes.iter().enumerate() {
            if index == from {
                continue;
            }
            if let Ok(mut commands) = mailbox.commands.lock() {
                commands.push(command.clone());
            }
            if let Some(waker) = mailbox.waker.get()
                && let Err(error) = waker.wake()
            {
                log::warn!("cannot wake worker {index}: {error}");
            }
        }
    }

    pub fn take_commands(&self, index: usize) -> Vec<Command> {
        self.mailboxes[index]
            .commands
            .lock()
            .map(|mut commands| std::mem::take(&mut *commands))
            .unwrap_or_default()
    }
}

/// Every worker's counters added up, on the layout of this worker's pools
/// (servers matched by pool name and address).
pub fn merged(
    pools: &[Pool],
    totals: &Totals,
    others: &[(usize, Snapshot)],
) -> (Vec<Pool>, Totals) {
    let mut pools = pools.to_vec();
    let mut totals = totals.clone();
    for (_, other) in others {
        totals.add(&other.totals);
        for pool in &mut pools {
            if let Some(theirs) = other.pools.iter().find(|theirs| theirs.name == pool.name) {
                pool.absorb(theirs);
            }
        }
    }
    (pools, totals)
}
