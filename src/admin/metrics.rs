//! `/metrics`: the Prometheus text exposition format, version 0.0.4.

use std::fmt::Write as _;
use std::time::Instant;

use crate::balancer::{Pool, Server, ServerState};
use crate::state::StateStats;
use crate::stats::{BUCKETS_US, CLASS_NAMES, Histogram, Totals};

/// The Prometheus text exposition format, version 0.0.4. (Written here
/// rather than by prometheus-client, whose encoder writes only the
/// OpenMetrics format: `# EOF`, `# UNIT`, other counter naming; scrapers
/// of the 0.0.4 text that rsp has always served would see another format.)
pub(super) fn metrics(view: &super::StatsView) -> String {
    let mut out = String::with_capacity(8192);
    totals_metrics(&mut out, &view.totals);
    pool_metrics(&mut out, &view.pools);
    server_metrics(&mut out, &view.pools, Instant::now());
    state_metrics(&mut out, &view.limits, &view.dicts);
    unlisted_metrics(&mut out, &view.totals);
    out
}

/// Servers outside every pool (addresses from `route()` or a map).
fn unlisted_metrics(out: &mut String, totals: &Totals) {
    if totals.unlisted.is_empty() {
        return;
    }
    family(
        out,
        "rsp_unlisted_requests_total",
        "counter",
        "Requests to a server of no pool, by the status class the client got.",
    );
    for (server, stats) in &totals.unlisted {
        for (name, count) in CLASS_NAMES.iter().zip(stats.responses.0) {
            let _ = writeln!(
                out,
                "rsp_unlisted_requests_total{{server=\"{server}\",class=\"{name}\"}} {count}"
            );
        }
    }
    family(
        out,
        "rsp_unlisted_errors_total",
        "counter",
        "Requests to a server of no pool that rsp answered with 502, 503 or 504.",
    );
    for (server, stats) in &totals.unlisted {
        let _ = writeln!(
            out,
            "rsp_unlisted_errors_total{{server=\"{server}\"}} {}",
            stats.errors
        );
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
fn state_metrics(out: &mut String, limits: &[StateStats], dicts: &[StateStats]) {
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
                let _ = writeln!(out, "{name}{{limit=\"{}\"}} {}", limit.name, value(limit));
            }
        }
    }
    if !dicts.is_empty() {
        family(out, "rsp_dict_keys", "gauge", "Keys a dictionary holds.");
        for dict in dicts {
            let _ = writeln!(out, "rsp_dict_keys{{dict=\"{}\"}} {}", dict.name, dict.keys);
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
                dict.name, dict.bytes
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// A metric of the whole worker set: name, type, help, and its value.
type TotalMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Totals) -> String,
);

fn totals_metrics(out: &mut String, totals: &Totals) {
    let scalars: [TotalMetric; 12] = [
        (
            "rsp_uptime_seconds",
            "gauge",
            "Seconds since rsp started.",
            |totals| format!("{:.3}", totals.started.elapsed().as_secs_f64()),
        ),
        (
            "rsp_connections",
            "gauge",
            "Client connections open now.",
            |totals| totals.connections.to_string(),
        ),
        (
            "rsp_connections_total",
            "counter",
            "Client connections accepted.",
            |totals| totals.connections_total.to_string(),
        ),
        (
            "rsp_local_responses_total",
            "counter",
            "Answers rsp wrote itself (Lua replies and errors).",
            |totals| totals.local_responses.to_string(),
        ),
        (
            "rsp_received_bytes_total",
            "counter",
            "Bytes of requests received from clients.",
            |totals| totals.bytes_in.to_string(),
        ),
        (
            "rsp_sent_bytes_total",
            "counter",
            "Bytes of answers sent to clients.",
            |totals| totals.bytes_out.to_string(),
        ),
        (
            "rsp_tls_ignored_sni_total",
            "counter",
            "TLS handshakes whose SNI was no host name (an IP address, as wrk sends it), ignored.",
            |_| crate::logging::ignored_sni().to_string(),
        ),
        (
            "rsp_memory_held_bytes",
            "gauge",
            "Bytes rsp holds for its clients: buffers, request heads, the script's Lua state (see memory).",
            |totals| totals.memory_held.to_string(),
        ),
        (
            "rsp_stalled_exchanges_cut_total",
            "counter",
            "Exchanges cut because they stalled on their client while memory or a pool's slots were needed.",
            |totals| totals.stalled_cut.to_string(),
        ),
        (
            "rsp_memory_refused_total",
            "counter",
            "Requests and HTTP/2 streams refused at a memory bound (the worker's, or their connection's).",
            |totals| totals.refused_for_memory.to_string(),
        ),
        (
            "rsp_http2_resets_unlogged_total",
            "counter",
            "HTTP/2 streams rsp reset past their connection's bound of logged resets (logged at debug).",
            |totals| totals.resets_unlogged.to_string(),
        ),
        (
            "rsp_log_lines_dropped_total",
            "counter",
            "Log lines a client could trigger at will, dropped by the rate limit (per worker, a second).",
            |_| crate::logging::client_lines_dropped().to_string(),
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", value(totals));
    }
    family(
        out,
        "rsp_requests_total",
        "counter",
        "Requests answered, by the status class the client got.",
    );
    for (name, count) in CLASS_NAMES.iter().zip(totals.responses.0) {
        let _ = writeln!(out, "rsp_requests_total{{class=\"{name}\"}} {count}");
    }
    family(
        out,
        "rsp_requests_by_protocol_total",
        "counter",
        "Requests answered, by the protocol the client spoke.",
    );
    for (name, count) in crate::stats::PROTOCOLS.iter().zip(totals.protocols) {
        let _ = writeln!(
            out,
            "rsp_requests_by_protocol_total{{protocol=\"{name}\"}} {count}"
        );
    }
    family(
        out,
        "rsp_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to the end of its answer.",
    );
    histogram(out, "rsp_request_duration_seconds", "", &totals.duration);
}

fn pool_metrics(out: &mut String, pools: &[Pool]) {
    family(
        out,
        "rsp_pool_requests_total",
        "counter",
        "Requests routed to a pool, by the status class the client got.",
    );
    for pool in pools {
        let pool_label = label(&pool.name);
        for (name, count) in CLASS_NAMES.iter().zip(pool.stats.responses.0) {
            let _ = writeln!(
                out,
                "rsp_pool_requests_total{{pool=\"{pool_label}\",class=\"{name}\"}} {count}"
            );
        }
    }
    family(
        out,
        "rsp_pool_queued_requests",
        "gauge",
        "Requests waiting for a server below max_conns.",
    );
    for pool in pools {
        let _ = writeln!(
            out,
            "rsp_pool_queued_requests{{pool=\"{}\"}} {}",
            label(&pool.name),
            pool.queued()
        );
    }
    family(
        out,
        "rsp_pool_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to the end of its answer, by pool.",
    );
    for pool in pools {
        let labels = format!("pool=\"{}\",", label(&pool.name));
        histogram(
            out,
            "rsp_pool_request_duration_seconds",
            &labels,
            &pool.stats.duration,
        );
    }
}

const SERVER_METRICS: [ServerMetric; 12] = [
    (
        "rsp_server_connections_opened_total",
        "counter",
        "TCP connections opened to the server (kept ones serve several requests).",
        |server, _| server.stats.connections.to_string(),
    ),
    (
        "rsp_server_up",
        "gauge",
        "1 when the server takes requests (not down, not draining).",
        |server, now| u8::from(server.state(now) == ServerState::Up).to_string(),
    ),
    (
        "rsp_server_ejected",
        "gauge",
        "1 while the pool's eject has the server out of rotation.",
        |server, now| u8::from(server.record.is_ejected(now)).to_string(),
    ),
    (
        "rsp_server_ejections_total",
        "counter",
        "Times the pool's eject took the server out of rotation.",
        |server, _| server.stats.ejections.to_string(),
    ),
    (
        "rsp_server_draining",
        "gauge",
        "1 when the admin API took the server out of rotation.",
        |server, _| u8::from(server.drained).to_string(),
    ),
    (
        "rsp_server_weight",
        "gauge",
        "The server's weight.",
        |server, _| server.weight.to_string(),
    ),
    (
        "rsp_server_active_requests",
        "gauge",
        "Requests the server is serving now.",
        |server, _| server.active.to_string(),
    ),
    (
        "rsp_server_selected_total",
        "counter",
        "Times the balancer chose the server.",
        |server, _| server.stats.selected.to_string(),
    ),
    (
        "rsp_server_errors_total",
        "counter",
        "Failed connects and broken or late responses.",
        |server, _| server.stats.errors.to_string(),
    ),
    (
        "rsp_server_retries_total",
        "counter",
        "Requests moved from the server to another.",
        |server, _| server.stats.retries.to_string(),
    ),
    (
        "rsp_server_received_bytes_total",
        "counter",
        "Request bytes received from clients for the server.",
        |server, _| server.stats.bytes_in.to_string(),
    ),
    (
        "rsp_server_sent_bytes_total",
        "counter",
        "Answer bytes sent to clients from the server.",
        |server, _| server.stats.bytes_out.to_string(),
    ),
];

fn server_metrics(out: &mut String, pools: &[Pool], now: Instant) {
    let servers = || {
        pools.iter().flat_map(|pool| {
            pool.servers().iter().map(move |server| {
                let labels = format!(
                    "pool=\"{}\",server=\"{}\"",
                    label(&pool.name),
                    server.address
                );
                (labels, server)
            })
        })
    };
    family(
        out,
        "rsp_server_requests_total",
        "counter",
        "Requests a server took part in, by the status class the client got.",
    );
    for (labels, server) in servers() {
        for (name, count) in CLASS_NAMES.iter().zip(server.stats.responses.0) {
            let _ = writeln!(
                out,
                "rsp_server_requests_total{{{labels},class=\"{name}\"}} {count}"
            );
        }
    }
    for (name, kind, help, value) in SERVER_METRICS {
        family(out, name, kind, help);
        for (labels, server) in servers() {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(server, now));
        }
    }
    family(
        out,
        "rsp_server_response_time_seconds",
        "gauge",
        "Mean time to the response head over the server's last 1024 responses.",
    );
    for (labels, server) in servers() {
        if let Some(micros) = server.stats.response_time_us.mean() {
            let _ = writeln!(
                out,
                "rsp_server_response_time_seconds{{{labels}}} {:.6}",
                micros as f64 / 1e6
            );
        }
    }
}

/// A per-server metric: name, type, help, and how to read it off a server.
type ServerMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Server, Instant) -> String,
);

fn histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    let mut cumulative = 0;
    for (bound, count) in BUCKETS_US.iter().zip(histogram.buckets) {
        cumulative += count;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}le=\"{}\"}} {cumulative}",
            *bound as f64 / 1e6
        );
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}le=\"+Inf\"}} {}",
        histogram.count
    );
    let labels = labels.trim_end_matches(',');
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(
        out,
        "{name}_sum{braces} {:.6}",
        histogram.sum_us as f64 / 1e6
    );
    let _ = writeln!(out, "{name}_count{braces} {}", histogram.count);
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_lines_are_cumulative() {
        let mut durations = Histogram::default();
        durations.record(std::time::Duration::from_micros(100));
        durations.record(std::time::Duration::from_millis(3));
        durations.record(std::time::Duration::from_secs(100));
        let mut out = String::new();
        histogram(&mut out, "h", "pool=\"a\",", &durations);
        assert!(
            out.contains("h_bucket{pool=\"a\",le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("h_bucket{pool=\"a\",le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("h_bucket{pool=\"a\",le=\"10\"} 2\n"), "{out}");
        assert!(
            out.contains("h_bucket{pool=\"a\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("h_count{pool=\"a\"} 3\n"), "{out}");
    }
}
