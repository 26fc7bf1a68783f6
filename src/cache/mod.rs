//! The response cache (`cache = { ... }`, pools with `cache = true`):
//! RFC 9111 for a shared cache (`policy`), stored responses within a byte
//! budget (`store`), and a response being stored as it streams to its
//! client (`Fill`). One cache per worker: a lookup takes no lock, and the
//! budget is `memory` shared out among the workers. The exchange asks it
//! (`exchange/cached.rs`): a hit is served as an upstream of its own.

pub mod policy;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framing::{Chunked, Framing};
use crate::http::ResponseHead;

use policy::{Directives, Freshness, RequestFacts, ResponseFacts, StoreSettings};
pub use store::{Entry, Store, StoreStats};

/// `cache = { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes the cache holds at most, every worker's together.
    pub memory: usize,
    /// A response larger than this passes through unstored.
    pub max_object: usize,
    /// Heuristic freshness, seconds (0: only explicit freshness).
    pub default_ttl: u64,
    /// `Cache-Status` on responses (RFC 9211).
    pub status_header: bool,
    /// Stores explicitly fresh responses with `Set-Cookie`.
    pub store_set_cookie: bool,
    /// Serves a stale entry when the pool's servers are down or answer
    /// 5xx (unless the entry forbids it).
    pub serve_stale_on_error: bool,
    /// Targeted cache-control fields (RFC 9213), first present wins over
    /// `Cache-Control`.
    pub targeted: Vec<String>,
    /// Targeted fields are passed on to clients (default: removed).
    pub forward_targeted: bool,
    /// How long a request waits for another's fetch of the same key.
    pub lock_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            memory: 256 << 20,
            max_object: 4 << 20,
            default_ttl: 0,
            status_header: true,
            store_set_cookie: false,
            serve_stale_on_error: false,
            targeted: vec!["CDN-Cache-Control".into()],
            forward_targeted: false,
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// What a worker's cache counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub revalidations: u64,
    pub collapsed: u64,
    pub stored: u64,
    pub invalidations: u64,
}

/// A cache's counters and its store's size, for the stats (every
/// worker's added up).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheTotals {
    pub counters: CacheCounters,
    pub store: StoreStats,
}

impl CacheTotals {
    pub fn add(&mut self, other: &CacheTotals) {
        let (mine, theirs) = (&mut self.counters, &other.counters);
        mine.hits += theirs.hits;
        mine.misses += theirs.misses;
        mine.stale += theirs.stale;
        mine.revalidations += theirs.revalidations;
        mine.collapsed += theirs.collapsed;
        mine.stored += theirs.stored;
        mine.invalidations += theirs.invalidations;
        self.store.entries += other.store.entries;
        self.store.bytes += other.store.bytes;
        self.store.evictions += other.store.evictions;
    }
}

/// One worker's cache.
pub struct Cache {
    pub config: CacheConfig,
    pub store: Store,
    pub counters: CacheCounters,
    /// What responses being stored hold, together (`Fill`).
    pub filling: Arc<Filling>,
    /// Keys a request is fetching from the backend, and the requests
    /// (`token::waiter`s) waiting for it instead of fetching too.
    pub pending: std::collections::HashMap<String, Vec<usize>>,
}

/// Requests that wait for one fetch at most; more go to the backend.
pub const MAX_WAITERS: usize = 1024;

/// The bytes every fill of a worker holds, and their bound: half the
/// worker's budget (a fill past it is given up, its response passed on
/// unstored), so many large misses at once cannot hold more.
#[derive(Debug, Default)]
pub struct Filling {
    held: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl Filling {
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Cache {
    /// The cache of one of `workers` workers.
    pub fn new(config: CacheConfig, workers: usize) -> Cache {
        let budget = config.memory / workers.max(1);
        Cache {
            store: Store::new(budget),
            config,
            counters: CacheCounters::default(),
            filling: Arc::new(Filling {
                held: Default::default(),
                limit: budget / 2,
            }),
            pending: std::collections::HashMap::new(),
        }
    }

    pub fn totals(&self) -> CacheTotals {
        CacheTotals {
            counters: self.counters,
            store: self.store.stats(),
        }
    }

    pub fn settings(&self) -> StoreSettings {
        StoreSettings {
            default_ttl: self.config.default_ttl,
            store_set_cookie: self.config.store_set_cookie,
        }
    }

    /// A field of the targeted ones (RFC 9213): neither stored for the
    /// client nor passed on, unless `forward_targeted`.
    pub fn is_targeted(&self, name: &[u8]) -> bool {
        self.config
            .targeted
            .iter()
            .any(|targeted| targeted.as_bytes().eq_ignore_ascii_case(name))
    }

    /// What `head`'s fields say of its freshness, received at `received`
    /// (seconds since the epoch).
    pub fn freshness(&self, head: &ResponseHead, received: u64) -> Freshness {
        let values = |name: &'static [u8]| {
            head.fields()
                .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        };
        // The first targeted field present, in the config's order.
        let targeted = self.config.targeted.iter().find_map(|name| {
            let found: Vec<&[u8]> = head
                .fields()
                .filter(|(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, value)| value)
                .collect();
            (!found.is_empty()).then_some(found)
        });
        Freshness::read(
            values(b"cache-control"),
            targeted,
            head.header(b"date"),
            head.header(b"expires"),
            head.header(b"age"),
            received,
        )
    }
}

/// Whether a response head's fields forbid storing it beyond its
/// freshness: `Set-Cookie`, `Vary: *`.
pub fn response_facts(head: &ResponseHead) -> ResponseFacts {
    ResponseFacts {
        set_cookie: head.header(b"set-cookie").is_some(),
        vary_star: vary_names(head).iter().any(|name| name == b"*"),
    }
}

/// The request fields a response's `Vary` names, lower-cased.
pub fn vary_names(head: &ResponseHead) -> Vec<Vec<u8>> {
    head.fields()
        .filter(|(field, _)| field.eq_ignore_ascii_case(b"vary"))
        .flat_map(|(_, value)| value.split(|&byte| byte == b','))
        .map(|name| name.trim_ascii().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// A request field's value as `Vary` compares it: every line of it, one
/// list (RFC 9111 §4.1); `None` when the request has none.
pub fn combined(head: &crate::http::RequestHead, name: &[u8]) -> Option<Vec<u8>> {
    let name = std::str::from_utf8(name).ok()?;
    let mut values = head.header_values(name);
    let mut out = values.next()?.to_vec();
    for value in values {
        out.extend_from_slice(b", ");
        out.extend_from_slice(value);
    }
    Some(out)
}

/// What of a request the cache looks at.
pub fn request_facts(head: &crate::http::RequestHead) -> RequestFacts {
    let mut directives = Directives::parse(head.header_values("cache-control"));
    // `Pragma: no-cache` without `Cache-Control` is `no-cache` (§5.4).
    if head.header("cache-control").is_none()
        && head
            .header_values("pragma")
            .any(|value| value.trim_ascii().eq_ignore_ascii_case(b"no-cache"))
    {
        directives.no_cache = true;
    }
    RequestFacts {
        get: head.method() == "GET" || head.method() == "HEAD",
        authorization: head.header("authorization").is_some(),
        directives,
    }
}

/// The key a response of `pool` is stored under: a purge's key (host
/// and target, or what route() chose) within its pool.
pub fn scoped(pool: &str, key: &str) -> String {
    format!("{pool}\n{key}")
}

/// Fields a stored response never keeps (RFC 9111 §3.1): hop-by-hop and
/// framing fields, which rsp writes for each client itself.
pub fn never_stored(name: &[u8]) -> bool {
    const FIELDS: [&[u8]; 10] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authentication-info",
        b"content-length",
        b"trailer",
    ];
    FIELDS.iter().any(|field| field.eq_ignore_ascii_case(name))
}

/// A response on its way into the store as it streams to its client:
/// its head as stored, and its body as it passes (the chunked coding
/// taken off). Given up past `max_object`.
pub struct Fill {
    pub key: String,
    pub entry: Entry,
    body: Vec<u8>,
    chunked: Option<Chunked>,
    max_object: usize,
    /// The body outgrew `max_object` or the fills' bound, or broke: not
    /// stored.
    pub abandoned: bool,
    filling: Arc<Filling>,
    /// What this fill counts in `filling`.
    counted: usize,
}

impl Fill {
    /// A fill of `entry` (its body empty yet), the response's body framed
    /// by `framing`.
    pub fn new(key: String, entry: Entry, framing: &Framing, cache: &Cache) -> Fill {
        Fill {
            key,
            entry,
            body: Vec::new(),
            chunked: matches!(framing, Framing::Chunked).then(Chunked::default),
            max_object: cache.config.max_object,
            abandoned: false,
            filling: Arc::clone(&cache.filling),
            counted: 0,
        }
    }

    /// Bytes of the body as they passed to the client, framing included.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.abandoned {
            return;
        }
        let body = &mut self.body;
        match &mut self.chunked {
            Some(chunked) => {
                if chunked
                    .walk(bytes, usize::MAX, |data| body.extend_from_slice(data))
                    .is_err()
                {
                    self.abandoned = true;
                }
            }
            None => body.extend_from_slice(bytes),
        }
        let grown = self.body.capacity() - self.counted;
        let held = self
            .filling
            .held
            .fetch_add(grown, std::sync::atomic::Ordering::Relaxed);
        self.counted += grown;
        if self.body.len() > self.max_object || held + grown > self.filling.limit {
            self.abandoned = true;
            self.body = Vec::new();
            self.release();
        }
    }

    /// Its bytes no longer count in `filling`.
    fn release(&mut self) {
        let counted = std::mem::take(&mut self.counted);
        self.filling
            .held
            .fetch_sub(counted, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes it holds.
    pub fn held(&self) -> usize {
        self.body.capacity()
    }

    /// The entry, its body complete.
    pub fn finish(mut self) -> Option<(String, Entry)> {
        self.release();
        if self.abandoned {
            return None;
        }
        let body = std::mem::take(&mut self.body);
        self.entry.body = Arc::from(body);
        let key = std::mem::take(&mut self.key);
        let entry = std::mem::replace(&mut self.entry, Entry::empty());
        Some((key, entry))
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.release();
    }
}

/// The loop's clock and the wall clock, read once for a decision.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub wall: u64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            instant: crate::timer::now(),
            wall: policy::wall_clock(),
        }
    }
}
