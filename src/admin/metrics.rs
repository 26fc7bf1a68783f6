//! `/metrics`: the Prometheus text exposition format, version 0.0.4.

use std::fmt::Write as _;
use std::time::Instant;

use crate::balancer::{Pool, Server, ServerState};
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
    super::state_metrics::write(&mut out, &view.limits, &view.dicts);
    super::state_metrics::redis(&mut out);
    super::state_metrics::cache(&mut out, view.totals.cache.as_ref());
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
                "rsp_unlisted_requests_total{{server=\"{}\",class=\"{name}\"}} {count}",
                Label(server)
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
            "rsp_unlisted_errors_total{{server=\"{}\"}} {}",
            Label(server),
            stats.errors
        );
    }
}

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// A metric of the whole worker set: name, type, help, and its value.
type TotalMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Totals) -> String,
);

/// The worker-wide counters and gauges of one value each.
const SCALARS: [TotalMetric; 12] = [
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

fn totals_metrics(out: &mut String, totals: &Totals) {
    for (name, kind, help, value) in SCALARS {
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
        let pool_label = Label(&pool.name);
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
            Label(&pool.name),
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
        let labels = format!("pool=\"{}\",", Label(&pool.name));
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
                    Label(&pool.name),
                    Label(server.address)
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

/// A label value as the exposition format wants it: backslash, quote and
/// newline escaped. Every label value goes through it, whether or not the
/// config chose it: pool, limit and dictionary names are any string a
/// config gives (`pools["a\"b"]`), and one unescaped quote would make the
/// scraper drop the whole page.
pub(super) struct Label<T>(pub(super) T);

impl<T: std::fmt::Display> std::fmt::Display for Label<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Escaping<'a, 'b>(&'a mut std::fmt::Formatter<'b>);
        impl std::fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, text: &str) -> std::fmt::Result {
                for part in text.split_inclusive(['\\', '"', '\n']) {
                    let (plain, special) = match part.chars().last() {
                        Some(last @ ('\\' | '"' | '\n')) => (&part[..part.len() - 1], Some(last)),
                        _ => (part, None),
                    };
                    self.0.write_str(plain)?;
                    match special {
                        Some('\n') => self.0.write_str("\\n")?,
                        Some(other) => {
                            self.0.write_char('\\')?;
                            self.0.write_char(other)?;
                        }
                        None => {}
                    }
                }
                Ok(())
            }
        }
        write!(Escaping(f), "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name with every character the format escapes, as Lua writes it.
    const HOSTILE_LUA: &str = r#""we\"b\\x\ny""#;
    const HOSTILE: &str = "we\"b\\x\ny";
    const ESCAPED: &str = r#"we\"b\\x\ny"#;

    /// Whether `line` is a sample of the text format: a metric name, label
    /// pairs whose values are quoted and escaped, a value.
    fn is_sample(line: &str) -> bool {
        let Some((series, value)) = line.rsplit_once(' ') else {
            return false;
        };
        if value.parse::<f64>().is_err() {
            return false;
        }
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => match rest.strip_suffix('}') {
                Some(labels) => (name, labels),
                None => return false,
            },
            None => (series, ""),
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let mut rest = labels;
        while !rest.is_empty() {
            let Some((label, after)) = rest.split_once("=\"") else {
                return false;
            };
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return false;
            }
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\' | '"' | 'n')) => {}
                        _ => return false,
                    },
                    Some((at, '"')) => break at,
                    Some(_) => {}
                    None => return false,
                }
            };
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        name_ok
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(Label(HOSTILE).to_string(), ESCAPED);
        assert_eq!(Label("plain").to_string(), "plain");
        assert_eq!(Label("\"\"\n\\").to_string(), r#"\"\"\n\\"#);
        assert!(is_sample(r#"a{b="c\"d",e="\\"} 1"#));
        assert!(!is_sample("a{b=\"c\"d\"} 1"), "the check can fail");
    }

    /// Every name a config chooses that /metrics shows (pools, limits,
    /// dictionaries), made as hostile as Lua allows: every line still
    /// reads as the format says, and each name is there, escaped.
    #[test]
    fn names_a_config_chooses_cannot_break_the_page() {
        let text = format!(
            "listen = \"127.0.0.1:1\"\n\
             pools = {{ [{HOSTILE_LUA}] = {{ servers = {{ \"127.0.0.1:8081\" }} }} }}\n\
             limits = {{ [{HOSTILE_LUA} .. \"limit\"] = {{ rate = 10 }} }}\n\
             dicts = {{ [{HOSTILE_LUA} .. \"dict\"] = {{ max_keys = 10 }} }}\n\
             function route(req) return {HOSTILE_LUA} end\n"
        );
        let path = std::env::temp_dir().join(format!("rsp-metrics-{}.lua", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let loaded = crate::config::load(&path);
        std::fs::remove_file(&path).unwrap();
        let config = loaded.unwrap().config;
        let pools: Vec<Pool> = config.pools.iter().map(Pool::new).collect();
        assert_eq!(pools[0].name, HOSTILE);
        let scripted = crate::state::configure(&config.limits, &config.dicts, &config.maps);
        let mut totals = Totals::default();
        totals.count_unlisted("[::1]:8080".parse().unwrap(), 200, false);
        let mut view = super::super::StatsView::borrowed(&pools, &totals, vec![Some(0)]);
        (view.limits, view.dicts) = scripted.stats();
        let page = metrics(&view);
        for line in page.lines().filter(|line| !line.starts_with('#')) {
            assert!(is_sample(line), "not a sample: {line:?}\n{page}");
        }
        for label in [
            format!("pool=\"{ESCAPED}\""),
            format!("limit=\"{ESCAPED}limit\""),
            format!("dict=\"{ESCAPED}dict\""),
            "server=\"[::1]:8080\"".to_owned(),
        ] {
            assert!(page.contains(&label), "{label} missing:\n{page}");
        }
    }

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
