//! The admin port: `/stats` (HTML), `/stats.json`, `/metrics` (Prometheus
//! text format) and `POST /pools/NAME/servers/ADDR/drain|enable`. Its
//! connections are ordinary sessions of the one event loop; only
//! `dispatch` differs, calling `answer` instead of `route()`.
//!
//! Every request first passes `guard`: a Host naming this listener (DNS
//! rebinding), the token when one is set, and for changes a header no
//! cross-site form can send (CSRF).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Instant, UNIX_EPOCH};

use subtle::ConstantTimeEq;

use crate::access_log::json_string;
use crate::balancer::{Pool, Server, ServerState};
use crate::config::AdminConfig;
use crate::connection::Context;
use crate::http::RequestHead;
use crate::reply::LocalReply;
use crate::router::RequestView;
use crate::stats::{BUCKETS_US, CLASS_NAMES, Histogram, StatusClasses, Totals};
use crate::workers::{self, Command};

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

/// The header that state-changing requests must carry: a cross-site HTML
/// form cannot send it, and a cross-site script can only after a CORS
/// preflight that rsp never grants.
pub const CHANGE_HEADER: &str = "X-Rsp-Admin";

/// `local`: the address the client connected to.
pub fn answer(request: &RequestView, local: SocketAddr, context: &mut Context) -> LocalReply {
    let head = &request.head;
    if let Some(refusal) = guard(head, local, context.admin) {
        log::warn!(
            "admin ({}): {} {} refused: {}",
            request.client,
            head.method(),
            head.target(),
            String::from_utf8_lossy(&refusal.body).trim_end()
        );
        return refusal;
    }
    let method = head.method();
    let path = head.path();
    let read_only = method == "GET" || method == "HEAD";
    match path {
        "/stats" | "/stats.json" | "/metrics" if !read_only => not_allowed("GET, HEAD", path),
        "/stats" | "/stats.json" | "/metrics" => {
            let view = View::of(context);
            let (pools, totals) = (view.pools(context), view.totals(context));
            match path {
                "/stats" => reply(200, "text/html; charset=utf-8", html(pools, totals)),
                "/stats.json" => {
                    let workers = view.worker_requests(context);
                    reply(200, "application/json", json(pools, totals, &workers))
                }
                _ => reply(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics(pools, totals),
                ),
            }
        }
        _ => match server_action(path) {
            Some(_) if method != "POST" => not_allowed("POST", path),
            Some(_) if !is_deliberate_change(head) => {
                log::warn!(
                    "admin ({}): {method} {path} refused: not sent as a deliberate change (no {CHANGE_HEADER}, or from another site: Origin {:?}, Sec-Fetch-Site {:?})",
                    request.client,
                    head.header("origin").map(String::from_utf8_lossy),
                    head.header("sec-fetch-site").map(String::from_utf8_lossy),
                );
                text(
                    403,
                    format!(
                        "rsp admin: a change must come from this origin with {CHANGE_HEADER}: 1 \
                         (or Content-Type: application/json)\n"
                    ),
                )
            }
            Some((pool, server, drain)) => {
                let reply = set_drained(context.pools, &pool, &server, drain, request.client);
                // The other workers do the same.
                if let (true, Some(shared), Ok(server)) = (
                    reply.status < 400,
                    &context.worker.shared,
                    server.parse::<SocketAddr>(),
                ) {
                    let command = Command::SetDrained {
                        pool,
                        server,
                        drained: drain,
                    };
                    shared.send(context.worker.index, &command);
                }
                reply
            }
            None => text(
                404,
                format!(
                    "rsp admin: no such page: {path}\n\
                     GET /stats, /stats.json, /metrics; POST /pools/NAME/servers/ADDR/drain or /enable\n"
                ),
            ),
        },
    }
}

/// The refusal for a request the admin port must not serve, if it is one:
/// 421 for a Host that names neither this listener nor a listed name (a
/// page of another site, through DNS rebinding), 401 without the token.
fn guard(head: &RequestHead, local: SocketAddr, admin: Option<&AdminConfig>) -> Option<LocalReply> {
    if let Some(host) = head.host_value()
        && !names_this_listener(host, local, admin.map_or(&[], |admin| &admin.hosts))
    {
        return Some(text(
            421,
            format!(
                "rsp admin: Host {:?} does not name this admin port\n",
                String::from_utf8_lossy(host)
            ),
        ));
    }
    let token = admin.and_then(|admin| admin.token.as_deref())?;
    let presented = head
        .header("authorization")
        .and_then(|value| value.strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    if presented.is_some_and(|presented| same_secret(presented, token.as_bytes())) {
        return None;
    }
    let mut refusal = text(
        401,
        "rsp admin: Authorization: Bearer TOKEN needed\n".into(),
    );
    refusal.headers.push((
        "WWW-Authenticate".into(),
        "Bearer realm=\"rsp admin\"".into(),
    ));
    Some(refusal)
}

/// Compares secrets in time that depends on neither, nor on their lengths:
/// the digests of both are compared in constant time.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let presented = ring::digest::digest(&ring::digest::SHA256, presented);
    let expected = ring::digest::digest(&ring::digest::SHA256, expected);
    presented.as_ref().ct_eq(expected.as_ref()).into()
}

/// `host` (a Host field: `name[:port]`) names the listener at `local`: its
/// IP address, `localhost` for a loopback one, or one of `hosts`; with the
/// listener's port, or none when that is 80.
fn names_this_listener(host: &[u8], local: SocketAddr, hosts: &[String]) -> bool {
    let text = String::from_utf8_lossy(host).to_ascii_lowercase();
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => (name, Some(port)),
        _ => (text.as_str(), None),
    };
    let port_matches = match port {
        Some(port) => port.parse::<u16>().ok() == Some(local.port()),
        None => local.port() == 80,
    };
    let ip = local.ip().to_canonical();
    let own_name = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let listed = hosts
        .iter()
        .any(|listed| *listed == text || *listed == name);
    listed || (port_matches && (name == own_name || (name == "localhost" && ip.is_loopback())))
}

/// A change is made only when the request shows it was meant (RFC 6454
/// and Fetch metadata): it carries `X-Rsp-Admin` or a JSON body type, which
/// no cross-site form can send, and no `Origin` or `Sec-Fetch-Site` says it
/// comes from another site.
fn is_deliberate_change(head: &RequestHead) -> bool {
    let marked = head
        .header(CHANGE_HEADER)
        .is_some_and(|value| !value.is_empty())
        || head
            .header("content-type")
            .is_some_and(|kind| kind.starts_with(b"application/json"));
    let same_origin = head.header("origin").is_none_or(|origin| {
        let authority = origin
            .strip_prefix(b"http://")
            .or_else(|| origin.strip_prefix(b"https://"));
        authority.is_some() && authority == head.host_value()
    });
    let same_site = head
        .header("sec-fetch-site")
        .is_none_or(|site| site == b"same-origin" || site == b"none");
    marked && same_origin && same_site
}

/// What the stats pages show: this worker's counters, plus the others'
/// latest when there are several workers.
struct View {
    others: Vec<(usize, workers::Snapshot)>,
    merged: Option<(Vec<Pool>, Totals)>,
}

impl View {
    fn of(context: &Context) -> View {
        let others = context
            .worker
            .shared
            .as_ref()
            .map(|shared| shared.others(context.worker.index))
            .unwrap_or_default();
        let merged =
            (!others.is_empty()).then(|| workers::merged(context.pools, context.totals, &others));
        View { others, merged }
    }

    fn pools<'a>(&'a self, context: &'a Context) -> &'a [Pool] {
        self.merged
            .as_ref()
            .map_or(&*context.pools, |(pools, _)| pools)
    }

    fn totals<'a>(&'a self, context: &'a Context) -> &'a Totals {
        self.merged
            .as_ref()
            .map_or(&*context.totals, |(_, totals)| totals)
    }

    /// Requests each worker answered, by worker index; `None` for a worker
    /// that has not published yet.
    fn worker_requests(&self, context: &Context) -> Vec<Option<u64>> {
        let mut requests = vec![None; context.worker.count];
        requests[context.worker.index] = Some(context.totals.responses.total());
        for (index, snapshot) in &self.others {
            requests[*index] = Some(snapshot.totals.responses.total());
        }
        requests
    }
}

/// `/pools/NAME/servers/ADDR/drain` or `/enable`, percent-decoded.
fn server_action(path: &str) -> Option<(String, String, bool)> {
    let rest = path.strip_prefix("/pools/")?;
    let (pool, rest) = rest.split_once("/servers/")?;
    let (server, action) = rest.rsplit_once('/')?;
    let drain = match action {
        "drain" => true,
        "enable" => false,
        _ => return None,
    };
    Some((percent_decode(pool), percent_decode(server), drain))
}

fn set_drained(
    pools: &mut [Pool],
    pool_name: &str,
    server: &str,
    drain: bool,
    client: SocketAddr,
) -> LocalReply {
    let Some(pool) = pools.iter_mut().find(|pool| pool.name == pool_name) else {
        return text(404, format!("rsp admin: no pool named \"{pool_name}\"\n"));
    };
    let name = pool.name.clone();
    // "[::1]:80" and "::1:80" alike; a name that is no address matches nothing.
    let address = server.parse::<SocketAddr>().ok();
    let Some(server) = address.and_then(|address| pool.set_drained(address, drain)) else {
        return text(
            404,
            format!("rsp admin: pool \"{name}\" has no server \"{server}\"\n"),
        );
    };
    let (address, active) = (server.address, server.active);
    let message = if drain {
        log::info!(
            "admin ({client}): pool {name}: server {address} drained, {active} requests in flight finish there"
        );
        format!(
            "pool {name}: server {address} is draining; {active} requests in flight will finish\n"
        )
    } else {
        log::info!("admin ({client}): pool {name}: server {address} enabled");
        format!("pool {name}: server {address} is back in rotation\n")
    };
    text(200, message)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply(status: u16, content_type: &str, body: String) -> LocalReply {
    LocalReply {
        status,
        headers: vec![
            ("Content-Type".into(), content_type.into()),
            ("Cache-Control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

fn text(status: u16, body: String) -> LocalReply {
    reply(status, "text/plain; charset=utf-8", body)
}

fn not_allowed(allow: &str, path: &str) -> LocalReply {
    let mut reply = text(405, format!("rsp admin: {path} takes {allow}\n"));
    reply.headers.push(("Allow".into(), allow.into()));
    reply
}

fn response_time_ms(server: &Server) -> Option<f64> {
    server
        .stats
        .response_time_us
        .mean()
        .map(|micros| micros as f64 / 1000.0)
}

fn html(pools: &[Pool], totals: &Totals) -> String {
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
         tr.up td{{background:#d9f2d9}}tr.down td{{background:#f6d0d0}}tr.draining td{{background:#fbe3b8}}\
         tr.backup td.name{{font-style:italic}}.state{{font-weight:600;text-transform:uppercase}}\
         .summary td{{text-align:left}}.muted{{color:#666}}button{{font-size:11px}}\
         </style></head><body>\n<h1>rsp {}</h1>\n",
        env!("CARGO_PKG_VERSION")
    );
    let uptime = totals.started.elapsed().as_secs();
    let _ = writeln!(
        page,
        "<table class=\"summary\"><tr><td>pid {}</td><td>up {}</td><td>{} connections open, {} in all</td>\
         <td>{} requests, {} answered by rsp itself</td><td>{} in, {} out</td>\
         <td>{}</td></tr></table>",
        std::process::id(),
        duration_text(uptime),
        totals.connections,
        totals.connections_total,
        totals.responses.total(),
        totals.local_responses,
        bytes_text(totals.bytes_in),
        bytes_text(totals.bytes_out),
        classes_text(&totals.responses),
    );
    for pool in pools {
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
            let state = server.state(now);
            let stats = &server.stats;
            let backup = if server.backup { " backup" } else { "" };
            let check = match (pool.health.as_ref(), state) {
                (None, _) => "none",
                (Some(_), ServerState::DownByCheck) => "failing",
                (Some(_), _) => "passing",
            };
            let (action, label) = if server.drained {
                ("enable", "enable")
            } else {
                ("drain", "drain")
            };
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
                 <td><button data-action=\"/pools/{}/servers/{}/{action}\">{label}</button></td></tr>",
                stats.errors,
                stats.retries,
                response_time_ms(server).map_or("-".into(), |ms| format!("{ms:.2} ms")),
                bytes_text(stats.bytes_in),
                bytes_text(stats.bytes_out),
                escape_html(&percent_encode(&pool.name)),
                server.address,
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

fn json(pools: &[Pool], totals: &Totals, workers: &[Option<u64>]) -> String {
    let now = Instant::now();
    let mut out = Vec::with_capacity(4096);
    let started = totals
        .started_wall
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let _ = write!(
        out_string(&mut out),
        "{{\"version\":\"{}\",\"pid\":{},\"started_unix\":{started},\"uptime_seconds\":{},\
         \"connections\":{{\"open\":{},\"total\":{}}},\"requests\":{{\"total\":{},\"local\":{},\"responses\":{}}},\
         \"bytes_in\":{},\"bytes_out\":{},\"workers\":{},\"worker_requests\":[{}],\"pools\":[",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        totals.started.elapsed().as_secs(),
        totals.connections,
        totals.connections_total,
        totals.responses.total(),
        totals.local_responses,
        classes_json(&totals.responses),
        totals.bytes_in,
        totals.bytes_out,
        workers.len(),
        workers
            .iter()
            .map(|requests| requests.map_or("null".to_owned(), |count| count.to_string()))
            .collect::<Vec<_>>()
            .join(","),
    );
    for (pool_index, pool) in pools.iter().enumerate() {
        if pool_index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        json_string(&mut out, &pool.name);
        let _ = write!(
            out_string(&mut out),
            ",\"balance\":\"{}\",\"max_conns\":{},\"queued\":{},\"requests\":{},\"responses\":{},\"servers\":[",
            pool.algorithm().name(),
            pool.max_conns()
                .map_or("null".into(), |limit| limit.to_string()),
            pool.queued(),
            pool.stats.responses.total(),
            classes_json(&pool.stats.responses),
        );
        for (index, server) in pool.servers().iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let stats = &server.stats;
            let _ = write!(
                out_string(&mut out),
                "{{\"address\":\"{}\",\"state\":\"{}\",\"weight\":{},\"backup\":{},\"active\":{},\
                 \"total\":{},\"connections_opened\":{},\"requests\":{},\"responses\":{},\"errors\":{},\"retries\":{},\
                 \"response_time_ms\":{},\"bytes_in\":{},\"bytes_out\":{},\"health_checked\":{}}}",
                server.address,
                server.state(now).name(),
                server.weight,
                server.backup,
                server.active,
                stats.selected,
                stats.connections,
                stats.responses.total(),
                classes_json(&stats.responses),
                stats.errors,
                stats.retries,
                response_time_ms(server).map_or("null".into(), |ms| format!("{ms:.3}")),
                stats.bytes_in,
                stats.bytes_out,
                pool.health.is_some(),
            );
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}\n");
    String::from_utf8(out).unwrap_or_default()
}

/// Lets `write!` append to a byte vector holding UTF-8.
fn out_string(out: &mut Vec<u8>) -> ByteWriter<'_> {
    ByteWriter(out)
}

struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

fn classes_json(classes: &StatusClasses) -> String {
    let mut out = String::from("{");
    for (index, (name, count)) in CLASS_NAMES.iter().zip(classes.0).enumerate() {
        if index > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{count}");
    }
    out.push('}');
    out
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

/// The Prometheus text exposition format, version 0.0.4.
fn metrics(pools: &[Pool], totals: &Totals) -> String {
    let now = Instant::now();
    let mut out = String::with_capacity(8192);
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    };
    family(
        &mut out,
        "rsp_uptime_seconds",
        "gauge",
        "Seconds since rsp started.",
    );
    let _ = writeln!(
        out,
        "rsp_uptime_seconds {:.3}",
        totals.started.elapsed().as_secs_f64()
    );
    family(
        &mut out,
        "rsp_connections",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(out, "rsp_connections {}", totals.connections);
    family(
        &mut out,
        "rsp_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(out, "rsp_connections_total {}", totals.connections_total);
    family(
        &mut out,
        "rsp_requests_total",
        "counter",
        "Requests answered, by the status class the client got.",
    );
    for (name, count) in CLASS_NAMES.iter().zip(totals.responses.0) {
        let _ = writeln!(out, "rsp_requests_total{{class=\"{name}\"}} {count}");
    }
    family(
        &mut out,
        "rsp_local_responses_total",
        "counter",
        "Answers rsp wrote itself (Lua replies and errors).",
    );
    let _ = writeln!(out, "rsp_local_responses_total {}", totals.local_responses);
    family(
        &mut out,
        "rsp_received_bytes_total",
        "counter",
        "Bytes of requests received from clients.",
    );
    let _ = writeln!(out, "rsp_received_bytes_total {}", totals.bytes_in);
    family(
        &mut out,
        "rsp_sent_bytes_total",
        "counter",
        "Bytes of answers sent to clients.",
    );
    let _ = writeln!(out, "rsp_sent_bytes_total {}", totals.bytes_out);
    family(
        &mut out,
        "rsp_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to the end of its answer.",
    );
    histogram(
        &mut out,
        "rsp_request_duration_seconds",
        "",
        &totals.duration,
    );

    family(
        &mut out,
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
        &mut out,
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
        &mut out,
        "rsp_pool_request_duration_seconds",
        "histogram",
        "Time from a request's first byte to the end of its answer, by pool.",
    );
    for pool in pools {
        let labels = format!("pool=\"{}\",", label(&pool.name));
        histogram(
            &mut out,
            "rsp_pool_request_duration_seconds",
            &labels,
            &pool.stats.duration,
        );
    }

    let servers = || {
        pools.iter().flat_map(|pool| {
            pool.servers().iter().map(move |server| {
                (
                    format!(
                        "pool=\"{}\",server=\"{}\"",
                        label(&pool.name),
                        server.address
                    ),
                    server,
                )
            })
        })
    };
    family(
        &mut out,
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
    let gauges: [ServerMetric; 10] = [
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
    for (name, kind, help, value) in gauges {
        family(&mut out, name, kind, help);
        for (labels, server) in servers() {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(server, now));
        }
    }
    family(
        &mut out,
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
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_actions_parse_and_decode() {
        assert_eq!(
            server_action("/pools/web/servers/127.0.0.1:8080/drain"),
            Some(("web".into(), "127.0.0.1:8080".into(), true))
        );
        assert_eq!(
            server_action("/pools/my%20pool/servers/%5B::1%5D:80/enable"),
            Some(("my pool".into(), "[::1]:80".into(), false))
        );
        assert_eq!(server_action("/pools/web/servers/1.2.3.4:80/reboot"), None);
        assert_eq!(server_action("/pools/web"), None);
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
