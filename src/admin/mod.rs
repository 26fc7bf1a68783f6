//! The admin port: `/stats` (HTML), `/stats.json`, `/metrics` (Prometheus
//! text format) and `POST /pools/NAME/servers/ADDR/drain|enable`.
//!
//! `answer` is a pure function of the request and a read-only view of the
//! counters: it returns the answer and, for a drain or enable, the command
//! the worker applies (the same way it applies the other workers'). It
//! knows nothing of sessions or sockets. Every request first passes
//! `guard`: a Host naming this listener (DNS rebinding), the token when one
//! is set, and for changes a header no cross-site form can send (CSRF).

mod json;
mod maps;
mod metrics;
mod page;
mod state_metrics;

use std::borrow::Cow;

use std::collections::HashMap;
use std::sync::Arc;

use crate::state::{LiveMap, StateStats, Store};
use maps::MapPage;
use std::net::SocketAddr;

use subtle::ConstantTimeEq;

use crate::balancer::Pool;
use crate::config::AdminConfig;
use crate::http::RequestHead;
use crate::reply::LocalReply;
use crate::stats::Totals;
use crate::workers::Command;

/// The header that state-changing requests must carry: a cross-site HTML
/// form cannot send it, and a cross-site script can only after a CORS
/// preflight that rsp never grants.
pub const CHANGE_HEADER: &str = "X-Rsp-Admin";

/// What the admin pages show: this worker's counters, or every worker's
/// added up.
pub struct StatsView<'a> {
    pub pools: Cow<'a, [Pool]>,
    pub totals: Cow<'a, Totals>,
    /// Requests each worker answered, by worker index; `None` for a worker
    /// that has not published yet.
    pub worker_requests: Vec<Option<u64>>,
    /// The script's limiters and dictionaries (process-wide already).
    pub limits: Vec<StateStats>,
    pub dicts: Vec<StateStats>,
    /// The script's live maps, for `/maps/...`.
    pub maps: HashMap<String, Arc<LiveMap>>,
}

impl<'a> StatsView<'a> {
    pub fn borrowed(
        pools: &'a [Pool],
        totals: &'a Totals,
        worker_requests: Vec<Option<u64>>,
    ) -> StatsView<'a> {
        StatsView {
            pools: Cow::Borrowed(pools),
            totals: Cow::Borrowed(totals),
            worker_requests,
            limits: Vec::new(),
            dicts: Vec::new(),
            maps: HashMap::new(),
        }
    }

    pub fn owned(
        pools: Vec<Pool>,
        totals: Totals,
        worker_requests: Vec<Option<u64>>,
    ) -> StatsView<'static> {
        StatsView {
            pools: Cow::Owned(pools),
            totals: Cow::Owned(totals),
            worker_requests,
            limits: Vec::new(),
            dicts: Vec::new(),
            maps: HashMap::new(),
        }
    }
}

pub use maps::settled;

/// What an admin request comes to.
pub enum Answered {
    /// The answer, and the command it asks the workers for, if any.
    Now(LocalReply, Option<Command>),
    /// A change to a shared map: answered once Redis has it (`settled`).
    Store(Store),
}

/// The answer to an admin request from `client`, which connected to
/// `local`.
pub fn answer(
    head: &RequestHead,
    body: Option<&[u8]>,
    client: SocketAddr,
    local: SocketAddr,
    view: &StatsView,
    admin: Option<&AdminConfig>,
) -> Answered {
    if let Some(refusal) = guard(head, local, admin) {
        crate::client_log!(
            log::Level::Warn,
            "admin ({client}): {} {} refused: {}",
            head.method(),
            head.target(),
            String::from_utf8_lossy(&refusal.body).trim_end()
        );
        return Answered::Now(refusal, None);
    }
    let method = head.method();
    let path = head.path();
    let read_only = method == "GET" || method == "HEAD";
    let page = match path {
        "/stats" | "/stats.json" | "/metrics" if !read_only => not_allowed("GET, HEAD", path),
        "/stats" => reply(
            200,
            "text/html; charset=utf-8",
            page::html(&view.pools, &view.totals),
        ),
        "/stats.json" => reply(200, "application/json", json::json(view)),
        "/metrics" => reply(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::metrics(view),
        ),
        "/cache/purge" => match cache_purge(head, body, client) {
            Ok((page, command)) => return Answered::Now(page, Some(command)),
            Err(page) => page,
        },
        _ if path.starts_with("/maps/") => match map_page(head, body, client, view) {
            MapPage::Now(page) => page,
            MapPage::Store(store) => return Answered::Store(store),
        },
        _ => match server_action(path) {
            Some(_) if method != "POST" => not_allowed("POST", path),
            Some(_) if !is_deliberate_change(head) => {
                crate::client_log!(
                    log::Level::Warn,
                    "admin ({client}): {method} {path} refused: not sent as a deliberate change (no {CHANGE_HEADER}, or from another site: Origin {:?}, Sec-Fetch-Site {:?})",
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
                let (page, command) = set_drained(&view.pools, pool, &server, drain, client);
                return Answered::Now(page, command);
            }
            None => text(
                404,
                format!(
                    "rsp admin: no such page: {path}\n\
                     GET /stats, /stats.json, /metrics; POST /pools/NAME/servers/ADDR/drain or /enable\n"
                ),
            ),
        },
    };
    Answered::Now(page, None)
}

/// `POST /cache/purge` with `{"key": ...}` or `{"prefix": ...}`: the
/// command that removes those stored responses from every worker.
fn cache_purge(
    head: &RequestHead,
    body: Option<&[u8]>,
    client: SocketAddr,
) -> Result<(LocalReply, Command), LocalReply> {
    if head.method() != "POST" {
        return Err(not_allowed("POST", "/cache/purge"));
    }
    if !is_deliberate_change(head) {
        crate::client_log!(
            log::Level::Warn,
            "admin ({client}): POST /cache/purge refused: not sent as a deliberate change"
        );
        return Err(text(
            403,
            format!("rsp admin: a change must come from this origin with {CHANGE_HEADER}: 1\n"),
        ));
    }
    let Some(body) = body else {
        return Err(text(413, "rsp admin: the body is too large\n".into()));
    };
    let request: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| text(400, format!("rsp admin: not JSON: {error}\n")))?;
    let (key, prefix) = match (
        request.get("key").and_then(|key| key.as_str()),
        request.get("prefix").and_then(|prefix| prefix.as_str()),
    ) {
        (Some(key), None) => (key, false),
        (None, Some(prefix)) => (prefix, true),
        _ => {
            return Err(text(
                400,
                "rsp admin: the body is {\"key\": \"...\"} or {\"prefix\": \"...\"}\n".into(),
            ));
        }
    };
    let what = if prefix { "prefix" } else { "key" };
    log::info!("admin ({client}): cache purge of {what} {key:?}");
    Ok((
        text(
            200,
            format!("rsp admin: purging {what} {key:?} on every worker\n"),
        ),
        Command::PurgeCache {
            key: key.to_owned(),
            prefix,
        },
    ))
}

/// A `/maps/...` request: read, or a deliberate change (its body read
/// whole).
fn map_page(
    head: &RequestHead,
    body: Option<&[u8]>,
    client: SocketAddr,
    view: &StatsView,
) -> MapPage {
    let method = head.method();
    let path = head.path();
    let read_only = method == "GET" || method == "HEAD";
    if !read_only && !is_deliberate_change(head) {
        crate::client_log!(
            log::Level::Warn,
            "admin ({client}): {method} {path} refused: not sent as a deliberate change"
        );
        return MapPage::Now(text(
            403,
            format!("rsp admin: a change must come from this origin with {CHANGE_HEADER}: 1\n"),
        ));
    }
    let page = match body {
        Some(body) => maps::answer(method, &path["/maps/".len()..], body, &view.maps),
        // A body rsp did not read whole: chunked, or longer than
        // the client buffer holds.
        None if head.framing == crate::framing::Framing::Chunked => MapPage::Now(text(
            411,
            "rsp admin: a map change needs a Content-Length\n".into(),
        )),
        None => MapPage::Now(text(413, "rsp admin: the body is too large\n".into())),
    };
    match &page {
        MapPage::Now(page) if !read_only && page.status == 200 => {
            log::info!("admin ({client}): {method} {path}: done");
        }
        MapPage::Store(_) => log::debug!("admin ({client}): {method} {path}: to Redis"),
        MapPage::Now(_) => {}
    }
    page
}

/// The refusal for a request the admin port must not serve, if it is one:
/// 400 without a Host (an HTTP/1.0 request may leave it out, and would
/// pass the next check unchecked), 421 for a Host that names neither this
/// listener nor a listed name (a page of another site, through DNS
/// rebinding), 401 without the token.
fn guard(head: &RequestHead, local: SocketAddr, admin: Option<&AdminConfig>) -> Option<LocalReply> {
    let Some(host) = head.host_value() else {
        return Some(text(400, "rsp admin: a request needs a Host\n".into()));
    };
    if !names_this_listener(host, local, admin.map_or(&[], |admin| &admin.hosts)) {
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

/// A drain (`drain`) or enable of `server` in `pool_name`: the answer,
/// and the command that does it.
fn set_drained(
    pools: &[Pool],
    pool_name: String,
    server: &str,
    drain: bool,
    client: SocketAddr,
) -> (LocalReply, Option<Command>) {
    let Some(pool) = pools.iter().find(|pool| pool.name == pool_name) else {
        return (
            text(404, format!("rsp admin: no pool named \"{pool_name}\"\n")),
            None,
        );
    };
    // "[::1]:80" and "::1:80" alike; a name that is no address matches nothing.
    let found = server.parse::<SocketAddr>().ok().and_then(|address| {
        pool.servers()
            .iter()
            .find(|candidate| candidate.address == address)
    });
    let Some(found) = found else {
        return (
            text(
                404,
                format!("rsp admin: pool \"{pool_name}\" has no server \"{server}\"\n"),
            ),
            None,
        );
    };
    let (address, active) = (found.address, found.active);
    let message = if drain {
        log::info!(
            "admin ({client}): pool {pool_name}: server {address} drained, {active} requests in flight finish there"
        );
        format!(
            "pool {pool_name}: server {address} is draining; {active} requests in flight will finish\n"
        )
    } else {
        log::info!("admin ({client}): pool {pool_name}: server {address} enabled");
        format!("pool {pool_name}: server {address} is back in rotation\n")
    };
    let command = Command::SetDrained {
        pool: pool_name,
        server: address,
        drained: drain,
    };
    (text(200, message), Some(command))
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

    fn head(raw: &str) -> RequestHead {
        let mut head = RequestHead::default();
        head.parse(
            raw.as_bytes(),
            &crate::http::RequestPolicy::default(),
            false,
        )
        .unwrap()
        .unwrap();
        head
    }

    #[test]
    fn hosts_that_name_the_listener() {
        let local: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let listed = ["rsp.internal".to_owned()];
        for host in [
            "127.0.0.1:9901",
            "localhost:9901",
            "rsp.internal",
            "RSP.internal:9901",
        ] {
            assert!(
                names_this_listener(host.as_bytes(), local, &listed),
                "{host}"
            );
        }
        for host in [
            "127.0.0.1",
            "127.0.0.1:9902",
            "evil.example:9901",
            "127.0.0.2:9901",
            "[::1]:9901",
        ] {
            assert!(
                !names_this_listener(host.as_bytes(), local, &listed),
                "{host}"
            );
        }
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert!(names_this_listener(b"[::1]", v6, &[]));
        assert!(names_this_listener(b"[::1]:80", v6, &[]));
    }

    #[test]
    fn changes_must_be_deliberate() {
        let base = "POST /pools/a/servers/1.2.3.4:5/drain HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n";
        let deliberate = |fields: &str| is_deliberate_change(&head(&format!("{base}{fields}\r\n")));
        assert!(deliberate("X-Rsp-Admin: 1\r\n"));
        assert!(deliberate("Content-Type: application/json\r\n"));
        assert!(deliberate(
            "X-Rsp-Admin: 1\r\nOrigin: http://127.0.0.1:9901\r\nSec-Fetch-Site: same-origin\r\n"
        ));
        assert!(!deliberate(""));
        assert!(!deliberate(
            "Content-Type: application/x-www-form-urlencoded\r\n"
        ));
        assert!(!deliberate(
            "X-Rsp-Admin: 1\r\nOrigin: http://evil.example\r\n"
        ));
        assert!(!deliberate(
            "X-Rsp-Admin: 1\r\nSec-Fetch-Site: cross-site\r\n"
        ));
    }

    #[test]
    fn a_drain_is_a_command_not_a_change() {
        let pools = vec![Pool::new(&crate::config::PoolConfig::new(
            "web",
            vec![crate::config::ServerConfig::plain(
                "127.0.0.1:8080".parse().unwrap(),
            )],
        ))];
        let totals = Totals::default();
        let view = StatsView::borrowed(&pools, &totals, vec![Some(0)]);
        let request = head(
            "POST /pools/web/servers/127.0.0.1:8080/drain HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nX-Rsp-Admin: 1\r\n\r\n",
        );
        let client = "127.0.0.1:5000".parse().unwrap();
        let local = "127.0.0.1:9901".parse().unwrap();
        let Answered::Now(reply, command) = answer(&request, Some(b""), client, local, &view, None)
        else {
            panic!("a drain is answered at once");
        };
        assert_eq!(reply.status, 200);
        assert_eq!(
            command,
            Some(Command::SetDrained {
                pool: "web".into(),
                server: "127.0.0.1:8080".parse().unwrap(),
                drained: true
            })
        );
        assert!(!pools[0].servers()[0].drained, "the view is not changed");
        let unknown = head(
            "POST /pools/web/servers/127.0.0.1:1/drain HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nX-Rsp-Admin: 1\r\n\r\n",
        );
        assert!(matches!(
            answer(&unknown, Some(b""), client, local, &view, None),
            Answered::Now(_, None)
        ));
    }
}
