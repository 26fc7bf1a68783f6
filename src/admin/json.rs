//! `/stats.json`: the stats page's numbers, written by serde_json.

use std::time::{Instant, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::stats::{CLASS_NAMES, StatusClasses};

use super::StatsView;
use super::page::response_time_ms;

pub(super) fn json(view: &StatsView) -> String {
    let now = Instant::now();
    let totals = &view.totals;
    let started = totals
        .started_wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let pools: Vec<Value> = view
        .pools
        .iter()
        .map(|pool| {
            let servers: Vec<Value> = pool
                .servers()
                .iter()
                .map(|server| {
                    let stats = &server.stats;
                    json!({
                        "address": server.address.to_string(),
                        "state": server.state(now).name(),
                        "weight": server.weight,
                        "backup": server.backup,
                        "active": server.active,
                        "total": stats.selected,
                        "connections_opened": stats.connections,
                        "requests": stats.responses.total(),
                        "responses": classes(&stats.responses),
                        "errors": stats.errors,
                        "retries": stats.retries,
                        "ejections": stats.ejections,
                        "response_time_ms": response_time_ms(server),
                        "bytes_in": stats.bytes_in,
                        "bytes_out": stats.bytes_out,
                        "health_checked": pool.health.is_some(),
                    })
                })
                .collect();
            json!({
                "name": pool.name,
                "balance": pool.algorithm().name(),
                "max_conns": pool.max_conns(),
                "queued": pool.queued(),
                "requests": pool.stats.responses.total(),
                "responses": classes(&pool.stats.responses),
                "servers": servers,
            })
        })
        .collect();
    let stats = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "started_unix": started,
        "uptime_seconds": totals.started.elapsed().as_secs(),
        "connections": { "open": totals.connections, "total": totals.connections_total },
        "requests": {
            "total": totals.responses.total(),
            "local": totals.local_responses,
            "responses": classes(&totals.responses),
            "protocols": crate::stats::PROTOCOLS.iter().zip(totals.protocols)
                .map(|(name, count)| (name.to_string(), json!(count)))
                .collect::<serde_json::Map<_, _>>(),
        },
        "bytes_in": totals.bytes_in,
        "bytes_out": totals.bytes_out,
        "workers": view.worker_requests.len(),
        "worker_requests": view.worker_requests,
        "pools": pools,
        "unlisted": totals.unlisted.iter().map(|(server, stats)| json!({
            "address": server.to_string(),
            "requests": stats.responses.total(),
            "responses": classes(&stats.responses),
            "errors": stats.errors,
        })).collect::<Vec<Value>>(),
        "cache": totals.cache.as_ref().map(cache),
    });
    let mut text = stats.to_string();
    text.push('\n');
    text
}

/// The response cache's counters, every worker's.
fn cache(cache: &crate::cache::CacheTotals) -> Value {
    json!({
        "hits": cache.counters.hits,
        "misses": cache.counters.misses,
        "stale_served": cache.counters.stale,
        "revalidations": cache.counters.revalidations,
        "collapsed_waits": cache.counters.collapsed,
        "stored": cache.counters.stored,
        "invalidated": cache.counters.invalidations,
        "entries": cache.store.entries,
        "bytes": cache.store.bytes,
        "evictions": cache.store.evictions,
    })
}

/// Responses by status class: `{"1xx": 0, ..., "other": 0}`.
fn classes(classes: &StatusClasses) -> Value {
    let counts: Map<String, Value> = CLASS_NAMES
        .iter()
        .zip(classes.0)
        .map(|(name, count)| ((*name).to_owned(), Value::from(count)))
        .collect();
    Value::Object(counts)
}
