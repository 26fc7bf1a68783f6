//! The settings of a config, as plain data: no Lua, no TLS library. The
//! reader fills them in; `materialize` turns what needs the world
//! (certificates) into what the worker runs with.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::forwarding::Forwarding;
use crate::health::HealthConfig;
use crate::http::RequestPolicy;
use crate::proxy_protocol;
use crate::tls::TlsFiles;

pub const DEFAULT_POOL: &str = "default";

/// One entry of `listen`: a string, or a table with options.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub address: SocketAddr,
    pub mode: ListenMode,
    /// Each connection starts with a PROXY protocol header (v1 or v2).
    pub accept_proxy: bool,
    /// The kernel hands over a connection only once its first bytes came
    /// (`TCP_DEFER_ACCEPT`): on for HTTP, off for tcp listeners, whose
    /// protocol may have the server speak first.
    pub defer_accept: bool,
    /// Terminate TLS with these certificates (read by `materialize`).
    pub tls: Option<TlsFiles>,
    /// A cleartext listener also takes HTTP/2 with prior knowledge (h2c).
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenMode {
    Http,
    /// Raw bytes to a server of `pool`, or of the pool `route(conn)` names.
    Tcp {
        pool: Option<String>,
    },
}

#[derive(Debug)]
pub struct Config {
    pub listen: Vec<ListenConfig>,
    pub pools: Vec<PoolConfig>,
    pub buffer_bytes: usize,
    /// The `http2` table: what HTTP/2 connections announce and enforce.
    pub http2: crate::h2::Settings,
    pub max_header_bytes: usize,
    pub max_response_header_bytes: usize,
    pub timeouts: Timeouts,
    /// After SIGTERM, how long requests in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// Client connections at once; at the limit rsp stops accepting.
    pub max_connections: usize,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: Option<u64>,
    /// Lua instructions one `route()` call may run before it fails with 500.
    pub route_instruction_limit: u64,
    /// Where the stats page, metrics and drain API are served.
    pub admin: Option<AdminConfig>,
    /// Path normalization, underscores in field names, allowed upgrades.
    pub policy: RequestPolicy,
    pub access_log: Option<AccessLogConfig>,
    pub forwarding: Forwarding,
    /// Keep or make an `X-Request-Id` for every request.
    pub request_id: bool,
    /// Idle connections kept open per backend server for later requests;
    /// 0 closes each after its response.
    pub backend_keepalive: usize,
    /// Event loops, one per thread.
    pub workers: usize,
    /// Rate limiters and dictionaries the script shares across workers.
    pub limits: Vec<LimitConfig>,
    pub dicts: Vec<DictConfig>,
    /// Live maps, each kept in a file and changed over the admin API.
    pub maps: Vec<MapConfig>,
    /// What rsp may hold for its clients (`memory.rs`).
    pub memory: crate::memory::MemoryLimits,
    /// The Redis that instances share state through, if any.
    pub redis: Option<RedisConfig>,
    /// The response cache, if any (`cache = { ... }`).
    pub cache: Option<crate::cache::CacheConfig>,
    /// Response compression, if any (`compress = { ... }`).
    pub compress: Option<crate::compress::CompressConfig>,
}

/// `redis = { ... }`: one Redis (or the first of several that answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub servers: Vec<SocketAddr>,
    /// Read from `password_file` when the config is read (never written
    /// in the config itself).
    pub password: Option<String>,
    pub db: u32,
    /// What every key rsp writes starts with.
    pub prefix: String,
    /// A connect, or a command's reply, taking longer fails the connection.
    pub timeout: Duration,
}

impl Config {
    /// Where rsp listens: every listener and the admin port.
    pub fn own_addresses(&self) -> Vec<SocketAddr> {
        self.listen
            .iter()
            .map(|listen| listen.address)
            .chain(self.admin.iter().map(|admin| admin.address))
            .collect()
    }
}

/// One of `maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapConfig {
    pub name: String,
    pub file: std::path::PathBuf,
    /// Keys the map holds at most: a change past it is refused.
    pub max_keys: usize,
    /// Kept in Redis and followed by every instance (`redis::maps`); the
    /// file is then this instance's copy.
    pub shared: bool,
}

/// One of `limits`: a token bucket (GCRA) per key, `rate` requests per
/// `per`, up to `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConfig {
    pub name: String,
    pub rate: u64,
    pub per: Duration,
    pub burst: u64,
    /// Keys held at most; the least recently used go first.
    pub max_keys: usize,
    /// Bytes the keys take at most (with a per-key allowance).
    pub max_bytes: usize,
    /// Shared with the other instances through Redis (`shared = true`).
    pub shared: Option<SharedLimit>,
}

/// How a `shared` limit keeps in step with the other instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedLimit {
    /// How often this instance sends its counts and reads the cluster's.
    pub sync: Duration,
    pub on_error: OnError,
    /// Instances sharing the limit, for `on_error = "local"`: each then
    /// enforces its share (`rate / instances`); 1 when unset.
    pub instances: u64,
}

/// What a `shared` limit does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Each instance enforces the limit (or its share) alone.
    Local,
    /// Every request is let through (fail open).
    Allow,
    /// Every request is refused, 429 (fail closed).
    Deny,
}

/// One of `dicts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictConfig {
    pub name: String,
    pub max_keys: usize,
    /// Bytes the keys and values take at most (with a per-entry allowance).
    pub max_bytes: usize,
}

/// The `admin` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// Served beyond this machine, on purpose (`public = true`).
    pub public: bool,
    /// Host names, besides the listener's own address, that admin requests
    /// may name (anything else is DNS rebinding: 421).
    pub hosts: Vec<String>,
    /// Every admin request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: LogTarget,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Apache/nginx combined, plus backend, backend status, microseconds, request id.
    Combined,
    /// One JSON object per line.
    Json,
}

/// The `timeouts` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A backend connect still pending fails (next server, or 502).
    pub connect: Duration,
    /// A request head not complete this long after it began: 408.
    pub client_header: Duration,
    /// A keep-alive connection idle this long between requests is closed.
    pub client_idle: Duration,
    /// No response head this long after the request was sent: 504.
    pub backend_response: Duration,
    /// No byte either way this long in the middle of an exchange: closed.
    pub idle: Duration,
    /// An idle backend connection unused this long is closed.
    pub backend_keepalive: Duration,
    /// A protocol-switched (WebSocket) tunnel with no byte either way this
    /// long is closed.
    pub tunnel: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            client_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(60),
            backend_response: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            backend_keepalive: Duration::from_secs(10),
            tunnel: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub servers: Vec<ServerConfig>,
    pub algorithm: Algorithm,
    /// Per server; requests beyond it wait in the pool's queue.
    pub max_conns: Option<u32>,
    /// A request still queued after this gets 503.
    pub queue_timeout: Duration,
    pub health: Option<HealthConfig>,
    /// Start each connection to a server with a PROXY protocol header.
    pub send_proxy: Option<proxy_protocol::Version>,
    /// How many times one request may be sent again to another server
    /// after an answer `retry_on` names, or a `respond()` that says
    /// "retry" (connect failures try each server once, apart from this).
    pub retries: u32,
    pub retry_on: RetryOn,
    /// Passive outlier ejection (`eject = true` or a table); `None`: off.
    pub eject: Option<EjectConfig>,
    /// Its responses may be cached (`cache = { ... }`).
    pub cache: bool,
}

impl PoolConfig {
    /// A round-robin pool of `servers` with every other setting at its
    /// default.
    pub fn new(name: &str, servers: Vec<ServerConfig>) -> PoolConfig {
        PoolConfig {
            name: name.to_owned(),
            servers,
            algorithm: Algorithm::RoundRobin,
            max_conns: None,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            health: None,
            send_proxy: None,
            retries: DEFAULT_RETRIES,
            retry_on: RetryOn::default(),
            eject: None,
            cache: false,
        }
    }
}

/// A request still queued after this long gets 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of one request after `retry_on` answers or `respond()`'s "retry".
pub const DEFAULT_RETRIES: u32 = 2;

/// The answers after which an idempotent request without a body goes to
/// another server (HAProxy's `retry-on`). Failed connects always go to
/// another server: nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// Final statuses from a backend, such as 502, 503, 504.
    pub statuses: Vec<u16>,
    /// The connection broke (closed or reset) before a complete response head.
    pub reset: bool,
    /// No response head within `timeouts.backend_response`.
    pub timeout: bool,
}

impl Default for RetryOn {
    /// What rsp did before `retry_on` existed: a connection that broke
    /// before its response head is retried elsewhere, nothing else.
    fn default() -> RetryOn {
        RetryOn {
            statuses: Vec::new(),
            reset: true,
            timeout: false,
        }
    }
}

impl RetryOn {
    /// Retries on nothing but failed connects: the start of a `retry_on`
    /// list, which replaces the default.
    pub fn none() -> RetryOn {
        RetryOn {
            statuses: Vec::new(),
            reset: false,
            timeout: false,
        }
    }

    pub fn status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }
}

/// A pool's `eject = { ... }` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectConfig {
    /// 5xx answers in a row that eject a server; 0: 5xx answers never do.
    pub consecutive_5xx: u32,
    /// Failed connects, resets, broken or late answers in a row that eject
    /// a server; 0: errors never do (failed connects still rest it).
    pub consecutive_errors: u32,
    /// The first ejection's length; each further one in a row doubles it.
    pub base: Duration,
    pub max: Duration,
    /// An ejection that would leave more than this percentage of the pool's
    /// servers ejected at once does not happen (Envoy's
    /// `max_ejection_percent`).
    pub max_percent: u32,
}

impl Default for EjectConfig {
    fn default() -> EjectConfig {
        EjectConfig {
            consecutive_5xx: 5,
            consecutive_errors: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            max_percent: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub address: SocketAddr,
    pub weight: u32,
    /// Serves only when no normal server of its pool can.
    pub backup: bool,
}

impl ServerConfig {
    pub(crate) fn plain(address: SocketAddr) -> ServerConfig {
        ServerConfig {
            address,
            weight: 1,
            backup: false,
        }
    }
}

/// How a pool picks a server (`balance = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Smooth weighted round robin.
    RoundRobin,
    LeastConn,
    /// Power of two random choices.
    Random,
    /// Consistent (rendezvous) hashing of the key `route` returns, or the Host.
    Hash,
}

impl Algorithm {
    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "roundrobin",
            Algorithm::LeastConn => "leastconn",
            Algorithm::Random => "random",
            Algorithm::Hash => "hash",
        }
    }
}

/// One line for the operator: `file:line: problem`.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
