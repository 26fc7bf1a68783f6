//! What scripts remember between requests, process-wide: rate limiters
//! (`rsp.limit`) and dictionaries (`rsp.dict`). Every worker's script sees
//! the same ones, so a limit is one limit however the kernel spreads a
//! client's connections. This is the one place rsp takes a lock on the
//! request path, and only when a script calls in: each limiter and
//! dictionary has its own, held for one hash-map operation.
//!
//! Limiters and dictionaries live in a registry that outlives reloads: a
//! reload keeps those whose settings did not change (with their keys) and
//! makes new ones for the rest.

mod bounded;
mod dict;
mod limit;
pub mod map;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::config::{DictConfig, LimitConfig, MapConfig};

pub use dict::{Dict, DictError, Stored};
pub use limit::{Limiter, Verdict};
pub use map::{LiveMap, MapChange, Settled, Store, Waiting};

/// The limiters and dictionaries one config uses.
#[derive(Default, Clone)]
pub struct Scripted {
    pub limits: HashMap<String, Arc<Limiter>>,
    pub dicts: HashMap<String, Arc<Dict>>,
    pub maps: HashMap<String, Arc<LiveMap>>,
}

/// The registry: the latest of each name, kept across reloads.
#[derive(Default)]
struct Registry {
    limits: HashMap<String, Arc<Limiter>>,
    dicts: HashMap<String, Arc<Dict>>,
    maps: HashMap<String, Arc<LiveMap>>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// Nanoseconds of the loop's clock since the process's first use of it:
/// one time line for every worker's limiters.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    crate::timer::now()
        .saturating_duration_since(epoch)
        .as_nanos() as u64
}

/// The limiters and dictionaries of a config: those of the same name and
/// settings as before are the same objects (their keys kept); the others
/// are made now.
pub fn configure(limits: &[LimitConfig], dicts: &[DictConfig], maps: &[MapConfig]) -> Scripted {
    let mut registry = registry()
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let mut scripted = Scripted::default();
    for config in limits {
        let limiter = match registry.limits.get(&config.name) {
            Some(kept) if kept.config == *config => kept.clone(),
            _ => Arc::new(Limiter::new(config.clone())),
        };
        registry.limits.insert(config.name.clone(), limiter.clone());
        scripted.limits.insert(config.name.clone(), limiter);
    }
    for config in dicts {
        let dict = match registry.dicts.get(&config.name) {
            Some(kept) if kept.config == *config => kept.clone(),
            _ => Arc::new(Dict::new(config.clone())),
        };
        registry.dicts.insert(config.name.clone(), dict.clone());
        scripted.dicts.insert(config.name.clone(), dict);
    }
    for config in maps {
        // A map of the same file is the same map, read again (the file
        // may have been edited by hand); another file is read (its lines
        // were checked with the config).
        let map = match registry.maps.get(&config.name) {
            Some(kept)
                if kept.file == config.file
                    && kept.max_keys == config.max_keys
                    && kept.shared == config.shared =>
            {
                // A shared map's content is Redis's: its file is a copy.
                if !kept.shared
                    && let Err(why) = kept.reread()
                {
                    log::error!("map {}: {why}; kept as it was", config.name);
                }
                Some(kept.clone())
            }
            _ => match LiveMap::open(&config.name, &config.file, config.max_keys, config.shared) {
                Ok(map) => Some(Arc::new(map)),
                Err(why) => {
                    log::error!("map {}: {why}", config.name);
                    None
                }
            },
        };
        if let Some(map) = map {
            registry.maps.insert(config.name.clone(), map.clone());
            scripted.maps.insert(config.name.clone(), map);
        }
    }
    scripted
}

/// What `/metrics` and `/stats.json` show of one limiter or dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStats {
    pub name: String,
    pub keys: usize,
    pub max_keys: usize,
    /// What the keys and values take, by `bounded`'s count.
    pub bytes: usize,
    /// Limiters: requests allowed and refused; dictionaries: 0.
    pub allowed: u64,
    pub refused: u64,
    /// A shared limit's: times it fell back to `on_error`, and how long
    /// ago (milliseconds) it last heard the cluster's view (`None`: never).
    pub shared: Option<(u64, Option<u64>)>,
}

impl Scripted {
    /// The counters of each limiter, then each dictionary, by name.
    pub fn stats(&self) -> (Vec<StateStats>, Vec<StateStats>) {
        let mut limits: Vec<StateStats> = self
            .limits
            .values()
            .map(|limiter| limiter.stats())
            .collect();
        let mut dicts: Vec<StateStats> = self.dicts.values().map(|dict| dict.stats()).collect();
        limits.sort_by(|a, b| a.name.cmp(&b.name));
        dicts.sort_by(|a, b| a.name.cmp(&b.name));
        (limits, dicts)
    }

    /// Drops expired dictionary entries, a bounded number per dictionary.
    pub fn sweep(&self) {
        let now = now_nanos();
        for dict in self.dicts.values() {
            dict.sweep(now);
        }
    }
}

/// A poisoned lock still holds consistent data here (every operation is a
/// single map update): take it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
