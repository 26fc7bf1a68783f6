//! The `/stats` page: per pool, each server's state and counters, with
//! drain and enable buttons.

use std::fmt::Write as _;
use std::time::Instant;

use crate::balancer::{Pool, Server, ServerState};
use crate::stats::{CLASS_NAMES, StatusClasses, Totals};

/// Seconds between refreshes of the HTML page.
const REFRESH_SECONDS: u32 = 5;

/// The drain and enable buttons post with `X-Rsp-Admin`, which a form
/// could not send (see `is_deliberate_change`).
const BUTTON_SCRIPT: &str = "<script>\
document.addEventListener('click', async (event) => {\
  const button = event.target.closest('button[data-action]');\
  if (!button) return;\
  button.disabled = true;\
  const answer = await fetch(button.dataset.action, { method: 'POST', headers: { 'X-Rsp-Admin': '1' } });\
  if (!answer.ok) alert(await answer.text());\
  location.reload();\
});\
</script>\n";

pub(super) fn response_time_ms(server: &Server) -> Option<f64> {
    server
        .stats
        .response_time_us
        .mean()
        .map(|micros| micros as f64 / 1000.0)
}

pub(super) fn html(pools: &[Pool], totals: &Totals) -> String {
    let now = Instant::now();
    let mut page = String::with_capacity(8192);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>rsp stats</title><style>\
         body{{font:13px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}}\
         h1{{font-size:20px;margin:0 0 .3em}}h2{{font-size:15px;margin:1.4em 0 .3em}}\
         table{{border-collapse:collapse}}th,td{{border:1px solid #bbb;padding:3px 8px;text-align:right}}\
         th{{background:#36495e;color:#fff;font-weight:600}}td.name{{text-align:left;font-family:monospace}}\
         tr.up td{{background:#d9f2d9}}tr.down td{{background:#f6d0d0}}tr.draining td{{background:#fbe3b8}}tr.ejected td{{background:#f3c6e0}}\
         tr.backup td.name{{font-style:italic}}.state{{font-weight:600;text-transform:uppercase}}\
         .summary td{{text-align:left}}.muted{{color:#666}}button{{font-size:11px}}\
         </style></head><body>\n<h1>rsp {}</h1>\n",
        env!("CARGO_PKG_VERSION")
    );
    let uptime = totals.started.elapsed().as_secs();
    let _ = writeln!(
        page,
        "<table class=\"summary\"><tr><td>pid {}</td><td>up {}</td><td>{} connections open, {} in all</td>\
         <td>{} requests, {} answered by rsp itself</td><td>{}</td><td>{} in, {} out</td>\
         <td>{}</td></tr></table>",
        std::process::id(),
        duration_text(uptime),
        totals.connections,
        totals.connections_total,
        totals.responses.total(),
        totals.local_responses,
        protocols_text(&totals.protocols),
        bytes_text(totals.bytes_in),
        bytes_text(totals.bytes_out),
        classes_text(&totals.responses),
    );
    if let Some(cache) = &totals.cache {
        let counters = &cache.counters;
        let _ = writeln!(
            page,
            "<table class=\"summary\"><tr><td>cache: {} hits, {} misses, {} stale served, \
             {} revalidated, {} collapsed</td><td>{} stored, {} held in {}, {} evicted, {} invalidated</td></tr></table>",
            counters.hits,
            counters.misses,
            counters.stale,
            counters.revalidations,
            counters.collapsed,
            counters.stored,
            cache.store.entries,
            bytes_text(cache.store.bytes),
            cache.store.evictions,
            counters.invalidations,
        );
    }
    for pool in pools {
        pool_table(&mut page, pool, now);
    }
    if !totals.unlisted.is_empty() {
        page.push_str(
            "<h2>unlisted <span class=\"muted\">servers of no pool, named by route() or a map</span></h2>\n\
             <table><tr><th>server</th><th>requests</th><th>errors</th><th>responses</th></tr>\n",
        );
        for (server, stats) in &totals.unlisted {
            let _ = writeln!(
                page,
                "<tr><td class=\"name\">{server}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                stats.responses.total(),
                stats.errors,
                classes_text(&stats.responses),
            );
        }
        page.push_str("</table>\n");
    }
    let _ = write!(
        page,
        "<p class=\"muted\">Refreshes every {REFRESH_SECONDS} s. Also: <a href=\"/stats.json\">/stats.json</a>, \
         <a href=\"/metrics\">/metrics</a>.</p>\n{BUTTON_SCRIPT}</body></html>\n"
    );
    page
}

/// One pool: its title and a row per server.
fn pool_table(page: &mut String, pool: &Pool, now: Instant) {
    let limit = pool
        .max_conns()
        .map_or(String::new(), |limit| format!(", max_conns {limit}"));
    let _ = write!(
        page,
        "<h2>pool {} <span class=\"muted\">{}{limit}, {} queued, {} requests ({})</span></h2>\n\
         <table><tr><th>server</th><th>state</th><th>weight</th><th>active</th><th>total</th>\
         <th>requests</th><th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>errors</th>\
         <th>retries</th><th>resp. time</th><th>bytes in</th><th>bytes out</th><th>health check</th><th></th></tr>\n",
        escape_html(&pool.name),
        pool.algorithm().name(),
        pool.queued(),
        pool.stats.responses.total(),
        classes_text(&pool.stats.responses),
    );
    for server in pool.servers() {
        server_row(page, pool, server, now);
    }
    page.push_str("</table>\n");
}

/// A server's row, with its drain or enable button.
fn server_row(page: &mut String, pool: &Pool, server: &Server, now: Instant) {
    let state = server.state(now);
    let stats = &server.stats;
    let backup = if server.backup { " backup" } else { "" };
    let check = match (pool.health.as_ref(), state) {
        (None, _) => "none",
        (Some(_), ServerState::DownByCheck) => "failing",
        (Some(_), _) => "passing",
    };
    let action = if server.drained { "enable" } else { "drain" };
    let _ = write!(
        page,
        "<tr class=\"{}{backup}\"><td class=\"name\">{}{}</td><td class=\"state\">{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td>",
        state.name(),
        server.address,
        if server.backup { " (backup)" } else { "" },
        state.name(),
        server.weight,
        server.active,
        stats.selected,
        stats.responses.total(),
    );
    for count in &stats.responses.0[..5] {
        let _ = write!(page, "<td>{count}</td>");
    }
    let _ = writeln!(
        page,
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{check}</td>\
         <td><button data-action=\"/pools/{}/servers/{}/{action}\">{action}</button></td></tr>",
        stats.errors,
        stats.retries,
        response_time_ms(server).map_or("-".into(), |ms| format!("{ms:.2} ms")),
        bytes_text(stats.bytes_in),
        bytes_text(stats.bytes_out),
        escape_html(&percent_encode(&pool.name)),
        server.address,
    );
}

fn classes_text(classes: &StatusClasses) -> String {
    CLASS_NAMES
        .iter()
        .zip(classes.0)
        .filter(|(_, count)| *count > 0)
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn duration_text(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h {minutes}m")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m {}s", seconds % 60)
    }
}

fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// "HTTP/1.1 90, HTTP/2.0 10": the protocols requests came in.
fn protocols_text(protocols: &[u64; 3]) -> String {
    let parts: Vec<String> = crate::stats::PROTOCOLS
        .iter()
        .zip(protocols)
        .filter(|(_, count)| **count > 0)
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    if parts.is_empty() {
        "no requests yet".to_owned()
    } else {
        parts.join(", ")
    }
}
