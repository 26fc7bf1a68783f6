//! `listen` (with listener tables and their `tls`) and `admin`.

use std::collections::HashSet;
use std::fs;

use mlua::Value;

use crate::tls::TlsFiles;

use super::lua::Script;
use super::read::{Setting, describe};
use super::types::{AdminConfig, ConfigError, ListenConfig, ListenMode};

const LISTENER_SETTINGS: &[&str] = &[
    "addr",
    "mode",
    "pool",
    "accept_proxy",
    "defer_accept",
    "tls",
    "http2",
    "alpn",
];
const TLS_SETTINGS: &[&str] = &["cert", "key", "certs"];
const ADMIN_SETTINGS: &[&str] = &["addr", "public", "token", "token_file", "hosts"];

fn http(address: std::net::SocketAddr) -> ListenConfig {
    ListenConfig {
        address,
        mode: ListenMode::Http,
        accept_proxy: false,
        defer_accept: true,
        tls: None,
        http2: false,
    }
}

/// `listen = "host:port"`, a list of them and of listener tables, or the
/// original rsp's `listenPort`.
pub fn listen(script: &Script) -> Result<Vec<ListenConfig>, ConfigError> {
    let listen = Setting::top(script, "listen");
    let port = Setting::top(script, "listenPort");
    let listeners: Vec<ListenConfig> = match (&listen.value, port.is_nil()) {
        (Value::Nil, true) => {
            return Err(script.file_error(
                "missing required setting 'listen' (for example listen = \"127.0.0.1:8080\")",
            ));
        }
        (Value::Nil, false) => vec![http(std::net::SocketAddr::from((
            [0, 0, 0, 0],
            port.port()?,
        )))],
        (Value::Table(_), true) => {
            let entries = listen.sequence()?;
            if entries.is_empty() {
                return Err(listen.error("needs at least one \"host:port\""));
            }
            entries
                .iter()
                .map(|entry| match &entry.value {
                    Value::Table(_) => listener_table(entry),
                    _ => listen_address(entry).map(http),
                })
                .collect::<Result<_, _>>()?
        }
        (_, true) => vec![http(listen_address(&listen)?)],
        (_, false) => return Err(port.error_plain("set either listen or listenPort, not both")),
    };
    let mut seen = HashSet::new();
    if let Some(duplicate) = listeners
        .iter()
        .find(|listener| !seen.insert(listener.address))
    {
        return Err(listen.error(format!("{} is listed twice", duplicate.address)));
    }
    Ok(listeners)
}

fn listen_address(entry: &Setting) -> Result<std::net::SocketAddr, ConfigError> {
    match &entry.value {
        Value::String(_) => entry.address(),
        other => Err(entry.error(format!(
            "expected \"host:port\" or a table, got {}",
            other.type_name()
        ))),
    }
}

/// `{ addr = "127.0.0.1:3307", mode = "tcp", pool = "mysql", accept_proxy = true, tls = { ... } }`
fn listener_table(entry: &Setting) -> Result<ListenConfig, ConfigError> {
    entry.known_keys(LISTENER_SETTINGS, "listener option")?;
    let unexpected = |key: &str| {
        let value = entry.field(key).value;
        entry.error(format!(
            "{key}: unexpected value {} (addr: \"host:port\", mode: \"http\" or \"tcp\", pool: a pool name, \
             accept_proxy and defer_accept: true or false)",
            describe(&value)
        ))
    };
    let address = match entry.field("addr").value {
        Value::Nil => return Err(entry.error("a listener table needs addr = \"host:port\"")),
        Value::String(_) => entry.member("addr").address()?,
        _ => return Err(unexpected("addr")),
    };
    let mode = entry
        .field("mode")
        .choice(&["http", "tcp"])
        .map_err(|_| unexpected("mode"))?;
    let pool = entry.field("pool").text().map_err(|_| unexpected("pool"))?;
    let accept_proxy = entry
        .field("accept_proxy")
        .flag()
        .map_err(|_| unexpected("accept_proxy"))?;
    let defer_accept = entry
        .field("defer_accept")
        .flag()
        .map_err(|_| unexpected("defer_accept"))?;
    let mut tls = match &entry.field("tls").value {
        Value::Nil => None,
        Value::Table(_) => Some(tls_files(&entry.part("tls"))?),
        _ => {
            return Err(entry.error(
                "tls: expected { cert = \"chain.pem\", key = \"key.pem\" } or { certs = { ... } }",
            ));
        }
    };
    let http2 = entry
        .field("http2")
        .flag()
        .map_err(|_| entry.error("http2: expected true or false"))?;
    if http2.is_some() && tls.is_some() {
        return Err(entry.error(
            "http2: a TLS listener offers HTTP/2 over ALPN; alpn = { \"http/1.1\" } turns it off",
        ));
    }
    let alpn = entry.field("alpn");
    if !alpn.is_nil() {
        let Some(files) = tls.as_mut() else {
            return Err(entry.error("alpn: only a TLS listener negotiates protocols"));
        };
        files.alpn = alpn_list(&entry.member("alpn"))?;
    }
    let mode = match (mode, pool) {
        (Some("tcp"), pool) => ListenMode::Tcp { pool },
        (_, Some(_)) => {
            return Err(entry.error(format!(
                "{address}: pool is for mode = \"tcp\" listeners; HTTP requests are routed by route()"
            )));
        }
        _ => ListenMode::Http,
    };
    let defer_accept = defer_accept.unwrap_or(mode == ListenMode::Http);
    if mode != ListenMode::Http
        && alpn.is_nil()
        && let Some(files) = tls.as_mut()
    {
        // A tcp listener passes bytes on: it offers what it offered before
        // HTTP/2, never a protocol its backend may not speak.
        files.alpn = vec![b"http/1.1".to_vec()];
    }
    Ok(ListenConfig {
        address,
        mode,
        accept_proxy: accept_proxy.unwrap_or(false),
        defer_accept,
        tls,
        http2: http2.unwrap_or(false),
    })
}

/// `alpn = { "h2", "http/1.1" }`: a non-empty list of the two.
fn alpn_list(alpn: &Setting) -> Result<Vec<Vec<u8>>, ConfigError> {
    let bad =
        || alpn.error("alpn: expected a list of \"h2\" and \"http/1.1\", such as { \"http/1.1\" }");
    let entries = alpn.sequence().map_err(|_| bad())?;
    let mut protocols = Vec::new();
    for entry in &entries {
        match entry.text() {
            Ok(Some(name)) if name == "h2" || name == "http/1.1" => {
                if !protocols.contains(&name.as_bytes().to_vec()) {
                    protocols.push(name.into_bytes());
                }
            }
            _ => return Err(bad()),
        }
    }
    if protocols.is_empty() {
        return Err(bad());
    }
    Ok(protocols)
}

/// `{ cert = "chain.pem", key = "key.pem" }` or `{ certs = { { cert =, key = }, ... } }`;
/// relative paths are relative to the config file.
fn tls_files(tls: &Setting) -> Result<TlsFiles, ConfigError> {
    let pair = |table: &Setting| -> Result<(std::path::PathBuf, std::path::PathBuf), ConfigError> {
        table.known_keys(TLS_SETTINGS, "setting")?;
        let path = |name: &str| {
            table
                .field(name)
                .path()
                .ok()
                .flatten()
                .ok_or_else(|| tls.error(format!("{name}: expected a file path")))
        };
        Ok((path("cert")?, path("key")?))
    };
    let certs = tls.field("certs");
    let pairs = match &certs.value {
        Value::Table(_) => certs
            .sequence()?
            .iter()
            .map(|entry| match entry.value {
                Value::Table(_) => pair(entry),
                _ => Err(tls.error("certs: expected a list of { cert =, key = }")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Nil => vec![pair(tls)?],
        _ => return Err(tls.error("certs: expected a list of { cert =, key = }")),
    };
    if pairs.is_empty() {
        return Err(tls.error("certs: needs at least one { cert =, key = }"));
    }
    Ok(TlsFiles {
        pairs,
        alpn: crate::tls::default_alpn(),
    })
}

/// `admin = "127.0.0.1:9901"`, or `{ addr = "0.0.0.0:9901", public = true,
/// token_file = "admin.token", hosts = { "rsp.internal" } }`.
pub fn admin(script: &Script) -> Result<Option<AdminConfig>, ConfigError> {
    let admin = Setting::top(script, "admin");
    let addr = match &admin.value {
        Value::Nil => return Ok(None),
        Value::String(_) => admin.clone(),
        Value::Table(_) => {
            admin.known_keys(ADMIN_SETTINGS, "setting")?;
            if !matches!(admin.field("addr").value, Value::String(_)) {
                return Err(admin.field("addr").error("expected \"ip:port\""));
            }
            admin.member("addr")
        }
        other => {
            return Err(admin.error(format!(
                "expected \"ip:port\" or a table, got {}",
                other.type_name()
            )));
        }
    };
    let token = match (
        admin.field("token").text()?,
        admin.field("token_file").path()?,
    ) {
        (None, None) => None,
        (Some(token), None) => Some(token),
        (None, Some(path)) => {
            let text = fs::read_to_string(&path).map_err(|error| {
                admin
                    .field("token_file")
                    .error(format!("{}: {error}", path.display()))
            })?;
            Some(text.trim().to_owned())
        }
        (Some(_), Some(_)) => return Err(admin.error("set token or token_file, not both")),
    };
    if let Some(token) = &token {
        let printable = token.bytes().all(|byte| byte.is_ascii_graphic());
        if token.len() < 16 || !printable {
            return Err(admin
                .field("token")
                .error("expected at least 16 printable characters, without spaces"));
        }
    }
    let hosts = match &admin.field("hosts").value {
        Value::Nil => Vec::new(),
        Value::Table(_) => admin
            .field("hosts")
            .sequence()?
            .iter()
            .map(|host| {
                host.text()
                    .ok()
                    .flatten()
                    .map(|host| host.to_ascii_lowercase())
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| admin.field("hosts").error("expected a list of names"))?,
        _ => return Err(admin.field("hosts").error("expected a list of names")),
    };
    let address = addr.address()?;
    Ok(Some(AdminConfig {
        address,
        public: admin.field("public").flag()?.unwrap_or(false),
        hosts,
        token,
    }))
}
