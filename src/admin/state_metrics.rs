//! `/metrics` for the script's state and the Redis it is shared through.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::state::StateStats;

use super::metrics::{Label, family};

/// A Redis metric: name, type, help, and its value.
type RedisMetric = SingleValue<crate::redis::Stats, f64>;

/// A metric of one value: name, type, help, and how to read it off `T`.
type SingleValue<T, V> = (&'static str, &'static str, &'static str, fn(&T) -> V);

const REDIS_METRICS: [RedisMetric; 14] = [
    (
        "rsp_redis_up",
        "gauge",
        "1 while the connection to Redis is up and ready.",
        |stats| f64::from(u8::from(stats.connected.load(Relaxed))),
    ),
    (
        "rsp_redis_connects_total",
        "counter",
        "Connections to Redis made ready (the first, and each reconnect).",
        |stats| stats.connects.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_failures_total",
        "counter",
        "Connections to Redis that failed: refused, timed out, closed, or an unreadable reply.",
        |stats| stats.failures.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_errors_total",
        "counter",
        "Error replies from Redis.",
        |stats| stats.errors.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_commands_total",
        "counter",
        "Replies from Redis.",
        |stats| stats.commands.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_refused_total",
        "counter",
        "Commands not queued: the queue was full.",
        |stats| stats.refused.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_queue",
        "gauge",
        "Commands sent or queued, waiting for their replies.",
        |stats| stats.pending.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_round_trip_seconds",
        "gauge",
        "The last PING's round trip.",
        |stats| stats.round_trip_us.load(Relaxed) as f64 / 1e6,
    ),
    (
        "rsp_redis_restarts_total",
        "counter",
        "Reconnects that found another Redis than before (its run_id): restarted, or another server.",
        |stats| stats.restarts.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_maps_subscribed",
        "gauge",
        "1 while the shared maps' subscriber follows their channel.",
        |stats| f64::from(u8::from(stats.subscribed.load(Relaxed))),
    ),
    (
        "rsp_redis_map_messages_total",
        "counter",
        "Changes to shared maps announced on their channel.",
        |stats| stats.map_messages.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_map_reloads_total",
        "counter",
        "Whole reads of a shared map (at start, after a reconnect, when announced).",
        |stats| stats.map_reloads.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_map_missing_total",
        "counter",
        "Whole reads that found Redis holding none of a map this instance holds keys of (Redis restarted empty).",
        |stats| stats.map_missing.load(Relaxed) as f64,
    ),
    (
        "rsp_redis_map_restores_total",
        "counter",
        "Maps this instance stored back into a Redis that had lost them.",
        |stats| stats.map_restores.load(Relaxed) as f64,
    ),
];

/// The process's Redis connections, when the config has one.
pub(super) fn redis(out: &mut String) {
    if !crate::redis::configured() {
        return;
    }
    single_values(out, &REDIS_METRICS, crate::redis::stats());
}

/// Families of one value each, read off `of` by the table.
fn single_values<T, V: std::fmt::Display>(out: &mut String, table: &[SingleValue<T, V>], of: &T) {
    for (name, kind, help, value) in table {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", value(of));
    }
}

/// A limiter metric: name, type, help, and its value.
type StateMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StateStats) -> u64,
);

/// The script's limiters and dictionaries.
pub(super) fn write(out: &mut String, limits: &[StateStats], dicts: &[StateStats]) {
    if !limits.is_empty() {
        let families: [StateMetric; 5] = [
            (
                "rsp_limit_keys",
                "gauge",
                "Keys a limiter holds.",
                |limit| limit.keys as u64,
            ),
            (
                "rsp_limit_max_keys",
                "gauge",
                "Keys a limiter holds at most.",
                |limit| limit.max_keys as u64,
            ),
            (
                "rsp_limit_bytes",
                "gauge",
                "Bytes a limiter's keys take.",
                |limit| limit.bytes as u64,
            ),
            (
                "rsp_limit_allowed_total",
                "counter",
                "Requests a limiter allowed.",
                |limit| limit.allowed,
            ),
            (
                "rsp_limit_refused_total",
                "counter",
                "Requests a limiter refused.",
                |limit| limit.refused,
            ),
        ];
        for (name, kind, help, value) in families {
            family(out, name, kind, help);
            for limit in limits {
                let _ = writeln!(
                    out,
                    "{name}{{limit=\"{}\"}} {}",
                    Label(&limit.name),
                    value(limit)
                );
            }
        }
    }
    shared_limits(out, limits);
    if !dicts.is_empty() {
        family(out, "rsp_dict_keys", "gauge", "Keys a dictionary holds.");
        for dict in dicts {
            let _ = writeln!(
                out,
                "rsp_dict_keys{{dict=\"{}\"}} {}",
                Label(&dict.name),
                dict.keys
            );
        }
        family(
            out,
            "rsp_dict_bytes",
            "gauge",
            "Bytes a dictionary's keys and values take.",
        );
        for dict in dicts {
            let _ = writeln!(
                out,
                "rsp_dict_bytes{{dict=\"{}\"}} {}",
                Label(&dict.name),
                dict.bytes
            );
        }
    }
}

/// What shared limits add: their fallbacks and sync lag.
fn shared_limits(out: &mut String, limits: &[StateStats]) {
    let shared: Vec<_> = limits
        .iter()
        .filter_map(|limit| Some((&limit.name, limit.shared?)))
        .collect();
    if !shared.is_empty() {
        family(
            out,
            "rsp_limit_fallbacks_total",
            "counter",
            "Times a shared limit lost Redis and acted by its on_error.",
        );
        for (name, (fallbacks, _)) in &shared {
            let _ = writeln!(
                out,
                "rsp_limit_fallbacks_total{{limit=\"{}\"}} {fallbacks}",
                Label(name)
            );
        }
        family(
            out,
            "rsp_limit_sync_age_seconds",
            "gauge",
            "How long ago a shared limit last had the cluster's view (its sync lag).",
        );
        for (name, (_, age)) in &shared {
            if let Some(age) = age {
                let _ = writeln!(
                    out,
                    "rsp_limit_sync_age_seconds{{limit=\"{}\"}} {:.3}",
                    Label(name),
                    *age as f64 / 1000.0
                );
            }
        }
    }
}

/// A cache metric: name, type, help, and its value.
type CacheMetric = SingleValue<crate::cache::CacheTotals, u64>;

const CACHE_METRICS: [CacheMetric; 10] = [
    (
        "rsp_cache_hits_total",
        "counter",
        "Requests answered from the cache.",
        |cache| cache.counters.hits,
    ),
    (
        "rsp_cache_misses_total",
        "counter",
        "Requests to caching pools that went to the backend.",
        |cache| cache.counters.misses,
    ),
    (
        "rsp_cache_stale_total",
        "counter",
        "Stale responses served (max-stale, stale-while-revalidate, stale-if-error).",
        |cache| cache.counters.stale,
    ),
    (
        "rsp_cache_revalidations_total",
        "counter",
        "Stored responses revalidated with the backend.",
        |cache| cache.counters.revalidations,
    ),
    (
        "rsp_cache_collapsed_total",
        "counter",
        "Requests that waited for another's fetch of the same response.",
        |cache| cache.counters.collapsed,
    ),
    (
        "rsp_cache_stored_total",
        "counter",
        "Responses stored.",
        |cache| cache.counters.stored,
    ),
    (
        "rsp_cache_invalidated_total",
        "counter",
        "Keys removed by unsafe requests and purges.",
        |cache| cache.counters.invalidations,
    ),
    (
        "rsp_cache_evictions_total",
        "counter",
        "Stored responses evicted to stay within the cache's memory.",
        |cache| cache.store.evictions,
    ),
    ("rsp_cache_entries", "gauge", "Stored responses.", |cache| {
        cache.store.entries
    }),
    (
        "rsp_cache_bytes",
        "gauge",
        "Bytes the stored responses take (heads, bodies, index).",
        |cache| cache.store.bytes,
    ),
];

/// The response cache, when the config has one.
pub(super) fn cache(out: &mut String, cache: Option<&crate::cache::CacheTotals>) {
    let Some(cache) = cache else {
        return;
    };
    single_values(out, &CACHE_METRICS, cache);
}
