//! What a worker lends its sessions: the router, the pools, kept backend
//! connections, timers, counters, the access log, and the settings of the
//! running config (swapped as one value on reload).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::Registry;

use crate::access_log::AccessLog;
use crate::admin::StatsView;
use crate::balancer::Pool;
use crate::config::{AdminConfig, Config, Loaded, Timeouts};
use crate::forwarding::Forwarding;
use crate::http::RequestPolicy;
use crate::idle::IdleConnections;
use crate::memory::{self, MemoryLimits, Pressure};
use crate::own::OwnListeners;
use crate::request_id::RequestIds;
use crate::router::Router;
use crate::stats::Totals;
use crate::timer::Timers;
use crate::workers::{self, Command, Worker};

/// The settings sessions read, from the running config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub buffer_bytes: usize,
    pub http2: crate::h2::Settings,
    pub max_header_bytes: usize,
    pub max_response_header_bytes: usize,
    pub max_body_bytes: Option<u64>,
    pub timeouts: Timeouts,
    pub forwarding: Forwarding,
    pub policy: RequestPolicy,
    pub admin: Option<AdminConfig>,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    /// rsp's own listeners (and the admin port): a request sent to one of
    /// them would come back to rsp, a forwarding loop.
    pub own: OwnListeners,
    pub memory: MemoryLimits,
    /// Response compression (`compress = { ... }`), if any.
    pub compress: Option<crate::compress::CompressConfig>,
}

impl Settings {
    /// Whether a connection to `address` would reach one of rsp's own
    /// listeners, whatever its spelling (`own.rs`).
    pub fn is_own(&self, address: SocketAddr) -> bool {
        self.own.reached_by(address)
    }

    /// The settings of `config`, for a worker of `workers` (its share of
    /// the memory limit is this thread's from now on).
    pub fn of(config: &Config) -> Settings {
        memory::set_share(config.memory.worker_share(config.workers));
        Settings {
            buffer_bytes: config.buffer_bytes,
            http2: config.http2,
            max_header_bytes: config.max_header_bytes,
            max_response_header_bytes: config.max_response_header_bytes,
            max_body_bytes: config.max_body_bytes,
            timeouts: config.timeouts,
            forwarding: config.forwarding.clone(),
            policy: config.policy.clone(),
            admin: config.admin.clone(),
            max_connections: config.max_connections,
            shutdown_timeout: config.shutdown_timeout,
            own: OwnListeners::new(config.own_addresses()),
            memory: config.memory,
            compress: config.compress.clone(),
        }
    }
}

/// Requests seen by the worker, so shutdown can say whether any was lost.
#[derive(Debug, Default)]
pub struct Counters {
    /// Request heads read (answered or not).
    pub requests: u64,
    /// Connections closed while a request on them was still unanswered.
    pub unanswered: u64,
}

pub struct Services {
    pub registry: Registry,
    pub router: Router,
    pub pools: Vec<Pool>,
    pub settings: Settings,
    pub timers: Timers,
    /// Backend connections kept open between requests.
    pub idle: IdleConnections,
    /// `None` when request ids are switched off.
    pub request_ids: Option<RequestIds>,
    pub totals: Totals,
    pub access_log: Option<AccessLog>,
    pub counters: Counters,
    /// Queued sessions a freed server slot lets go, for the worker to drive.
    pub wakeups: Vec<usize>,
    /// Sessions that used their turn's budget with work left, to be driven
    /// again once the others have had theirs.
    pub yielded: Vec<usize>,
    /// While the worker handles one batch of events: HTTP/2 connections
    /// hold their frames back, and are listed in `flushes` to write them
    /// all at once after the batch (many streams' answers come in one
    /// batch, each from its own backend: one write for them, not one
    /// each).
    pub defer_writes: bool,
    pub flushes: Vec<usize>,
    /// Admin commands for the worker to apply (and pass to the others).
    pub commands: Vec<Command>,
    /// Changes to shared maps for the worker's Redis client; each
    /// admin request waits for its answer (`Exchange::await_answer`).
    pub stores: Vec<crate::state::Waiting>,
    /// The last ticket a waiting answer was given.
    pub tickets: u64,
    /// The worker's response cache (`cache = { ... }`).
    pub cache: Option<crate::cache::Cache>,
    /// rsp is shutting down: finish exchanges, keep no connection open.
    pub draining: bool,
    /// Counts reloads (`next_generation`): HTTP/2 connections begun
    /// before the latest are sent GOAWAY, health checks of an older config
    /// are ignored.
    pub generation: u64,
    /// Counts the loop's rounds (a poll and what it reported): what a
    /// connection may do once a round is counted against it.
    pub round: u64,
    pub worker: Worker,
}

impl Services {
    /// A worker's services for `loaded`, registering with `registry`: the
    /// one place they are put together (a reload replaces what the new
    /// config changes, `worker/reload.rs`).
    pub fn new(registry: Registry, loaded: &Loaded, worker: Worker) -> io::Result<Services> {
        let config = &loaded.config;
        let pools: Vec<Pool> = config.pools.iter().map(Pool::new).collect();
        let access_log = config
            .access_log
            .as_ref()
            .map(AccessLog::open)
            .transpose()?;
        Ok(Services {
            registry,
            router: Router::new(loaded, &pools),
            pools,
            settings: Settings::of(config),
            timers: Timers::default(),
            idle: IdleConnections::new(config.backend_keepalive, config.timeouts.backend_keepalive),
            request_ids: config.request_id.then(RequestIds::new),
            totals: Totals::default(),
            access_log,
            counters: Counters::default(),
            wakeups: Vec::new(),
            yielded: Vec::new(),
            defer_writes: false,
            flushes: Vec::new(),
            commands: Vec::new(),
            stores: Vec::new(),
            tickets: 0,
            cache: config
                .cache
                .clone()
                .map(|cache| crate::cache::Cache::new(cache, worker.count)),
            draining: false,
            generation: 0,
            round: 0,
            worker,
        })
    }

    /// A reload's new config is in force: what began under an older one
    /// (HTTP/2 connections, health checks) can tell from now on.
    pub fn next_generation(&mut self) {
        self.generation += 1;
    }

    /// What this worker holds for its clients (buffers, heads, the
    /// script's state), and how near its share of `memory.limit` that is.
    pub fn memory(&self) -> (usize, Pressure) {
        crate::memory::set_script(self.router.script_memory());
        (crate::memory::total(), crate::memory::pressure())
    }

    /// The counters the admin port shows: this worker's, plus the others'
    /// latest when there are several workers.
    /// The cache's counters into this worker's totals, for the stats.
    pub fn count_cache(&mut self) {
        self.totals.cache = self.cache.as_ref().map(|cache| cache.totals());
    }

    pub fn stats_view(&self) -> StatsView<'_> {
        let others = self
            .worker
            .shared
            .as_ref()
            .map(|shared| shared.others(self.worker.index))
            .unwrap_or_default();
        let mut requests = vec![None; self.worker.count];
        requests[self.worker.index] = Some(self.totals.responses.total());
        for (index, snapshot) in &others {
            requests[*index] = Some(snapshot.totals.responses.total());
        }
        let mut view = if others.is_empty() {
            StatsView::borrowed(&self.pools, &self.totals, requests)
        } else {
            let (pools, totals) = workers::merged(&self.pools, &self.totals, &others);
            StatsView::owned(pools, totals, requests)
        };
        (view.limits, view.dicts) = self.router.scripted.stats();
        view.maps = self.router.scripted.maps.clone();
        view
    }
}
