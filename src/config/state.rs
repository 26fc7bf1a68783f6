//! `limits = { ... }` and `dicts = { ... }`: the process-wide state the
//! script keeps (see `state/`).

use std::time::Duration;

use mlua::Value;

use super::lua::Script;
use super::read::Setting;
use super::types::{
    ConfigError, DictConfig, LimitConfig, MapConfig, OnError, RedisConfig, SharedLimit,
};

const LIMIT_SETTINGS: &[&str] = &[
    "rate",
    "per",
    "burst",
    "max_keys",
    "max_bytes",
    "shared",
    "sync_ms",
    "on_error",
    "instances",
];
const DICT_SETTINGS: &[&str] = &["max_keys", "max_bytes"];
/// Bytes a limiter or dictionary holds when `max_bytes` is not set.
pub const DEFAULT_MAX_BYTES: i64 = 64 * 1024 * 1024;
const MAX_BYTES_BOUND: i64 = 1 << 40;
const MAP_SETTINGS: &[&str] = &["file", "max_keys", "shared"];
/// Keys a limiter or dictionary holds when `max_keys` is not set.
pub const DEFAULT_MAX_KEYS: i64 = 100_000;
const MAX_KEYS_BOUND: i64 = 100_000_000;
/// The deepest bucket a limiter keeps: 100 years, well inside a u64 of
/// nanoseconds.
const MAX_DEPTH_NANOS: u128 = 100 * 365 * 86_400 * 1_000_000_000;

/// The named tables of a top-level setting, sorted by name.
fn named<'a>(script: &'a Script, name: &'a str) -> Result<Vec<(String, Setting<'a>)>, ConfigError> {
    let setting = Setting::top(script, name);
    let mut entries = Vec::new();
    if let Some(table) = setting.table()? {
        for pair in table.pairs::<Value, Value>() {
            let (key, value) = pair.map_err(|error| setting.error(error))?;
            let Value::String(key) = key else {
                return Err(setting.error(format!(
                    "{name}: names must be strings, got {}",
                    key.type_name()
                )));
            };
            let key = key.to_string_lossy();
            let entry = setting.entry(&key, value);
            if entry.table()?.is_none() {
                return Err(entry.error("expected a table"));
            }
            entries.push((key, entry));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// `limits = { per_ip = { rate = 100, per = "second", burst = 200, max_keys = 100000 } }`.
pub fn limits(script: &Script) -> Result<Vec<LimitConfig>, ConfigError> {
    named(script, "limits")?
        .into_iter()
        .map(|(name, limit)| {
            limit.known_keys(LIMIT_SETTINGS, "limit setting")?;
            let rate = limit.part("rate");
            if rate.is_nil() {
                return Err(limit.error("missing rate (requests per `per`)"));
            }
            let rate = rate.integer(1, 1..=1_000_000_000)? as u64;
            let per = match limit
                .part("per")
                .choice(&["second", "minute", "hour", "day"])?
            {
                None | Some("second") => Duration::from_secs(1),
                Some("minute") => Duration::from_secs(60),
                Some("hour") => Duration::from_secs(3600),
                Some(_) => Duration::from_secs(86_400),
            };
            let burst = limit
                .part("burst")
                .integer(rate as i64, 1..=1_000_000_000)? as u64;
            let max_keys = limit
                .part("max_keys")
                .integer(DEFAULT_MAX_KEYS, 1..=MAX_KEYS_BOUND)? as usize;
            // A bucket's depth, burst × per / rate, is kept in nanoseconds.
            let depth = u128::from(burst) * per.as_nanos() / u128::from(rate);
            if depth > MAX_DEPTH_NANOS {
                return Err(limit.error(format!(
                    "burst {burst} at {rate} per {:?} is a bucket over 100 years deep",
                    per
                )));
            }
            Ok(LimitConfig {
                name,
                rate,
                per,
                burst,
                max_keys,
                max_bytes: max_bytes(&limit)?,
                shared: shared(script, &limit)?,
            })
        })
        .collect()
}

/// A limit's `shared`, `sync_ms`, `on_error` and `instances`; the last
/// three only with `shared = true`, which needs `redis`.
fn shared(script: &Script, limit: &Setting) -> Result<Option<SharedLimit>, ConfigError> {
    if limit.part("shared").flag()? != Some(true) {
        for key in ["sync_ms", "on_error", "instances"] {
            if !limit.part(key).is_nil() {
                return Err(limit.part(key).error("only for a limit with shared = true"));
            }
        }
        return Ok(None);
    }
    if Setting::top(script, "redis").is_nil() {
        return Err(limit
            .part("shared")
            .error("a shared limit needs redis = { servers = { ... } }"));
    }
    let on_error = match limit.part("on_error").choice(&["local", "allow", "deny"])? {
        None | Some("local") => OnError::Local,
        Some("allow") => OnError::Allow,
        Some(_) => OnError::Deny,
    };
    Ok(Some(SharedLimit {
        sync: limit.part("sync_ms").millis(50, 10..=60_000)?,
        on_error,
        instances: limit.part("instances").integer(1, 1..=10_000)? as u64,
    }))
}

/// `dicts = { seen = { max_keys = 50000 } }`.
pub fn dicts(script: &Script) -> Result<Vec<DictConfig>, ConfigError> {
    named(script, "dicts")?
        .into_iter()
        .map(|(name, dict)| {
            dict.known_keys(DICT_SETTINGS, "dict setting")?;
            let max_keys = dict
                .part("max_keys")
                .integer(DEFAULT_MAX_KEYS, 1..=MAX_KEYS_BOUND)? as usize;
            Ok(DictConfig {
                name,
                max_keys,
                max_bytes: max_bytes(&dict)?,
            })
        })
        .collect()
}

/// `maps = { webapps = { file = "/var/lib/rsp/webapps.map" } }`: the file's
/// lines are checked now (the first bad one is the error, with its number).
pub fn maps(script: &Script) -> Result<Vec<MapConfig>, ConfigError> {
    // Two maps of one file would each write its entries over the other's.
    let mut files: Vec<(std::path::PathBuf, String)> = Vec::new();
    named(script, "maps")?
        .into_iter()
        .map(|(name, map)| {
            map.known_keys(MAP_SETTINGS, "map setting")?;
            let file = map.part("file");
            let Some(path) = file.text()? else {
                return Err(map.error("missing file (where the map is kept)"));
            };
            let path = script.relative(&path);
            let max_keys = map
                .part("max_keys")
                .integer(DEFAULT_MAX_KEYS, 1..=10_000_000)? as usize;
            let entries = crate::map_file::read_file(&path).map_err(|why| file.error(why))?;
            if entries.len() > max_keys {
                return Err(file.error(format!(
                    "{}: {} keys, over the map's max_keys of {max_keys}",
                    path.display(),
                    entries.len()
                )));
            }
            let same = same_file(&path);
            if let Some((_, other)) = files.iter().find(|(seen, _)| *seen == same) {
                return Err(file.error(format!(
                    "{}: the same file as map {other:?} (each map needs its own)",
                    path.display()
                )));
            }
            files.push((same, name.clone()));
            let shared = map.part("shared").flag()? == Some(true);
            if shared && Setting::top(script, "redis").is_nil() {
                return Err(map
                    .part("shared")
                    .error("a shared map needs redis = { servers = { ... } }"));
            }
            // Its changes are announced as "NAME KEY" (README).
            if shared
                && (name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()))
            {
                return Err(map.error(format!(
                    "a shared map's name holds no spaces or control characters: {name:?}"
                )));
            }
            Ok(MapConfig {
                name,
                file: path,
                max_keys,
                shared,
            })
        })
        .collect()
}

/// `path` with its directory resolved (symbolic links, `.`, `..`), so two
/// spellings of one file compare equal even before the file exists.
fn same_file(path: &std::path::Path) -> std::path::PathBuf {
    if let Ok(resolved) = std::fs::canonicalize(path) {
        return resolved;
    }
    match (path.parent(), path.file_name()) {
        (Some(directory), Some(name)) => {
            std::fs::canonicalize(if directory.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                directory
            })
            .map(|directory| directory.join(name))
            .unwrap_or_else(|_| path.to_owned())
        }
        _ => path.to_owned(),
    }
}

/// `max_bytes`: from 4 KiB to 1 TiB, 64 MiB when unset.
fn max_bytes(setting: &Setting) -> Result<usize, ConfigError> {
    Ok(setting
        .part("max_bytes")
        .integer(DEFAULT_MAX_BYTES, 4096..=MAX_BYTES_BOUND)? as usize)
}

const REDIS_SETTINGS: &[&str] = &["servers", "password_file", "db", "prefix", "timeout_ms"];

/// `redis = { servers = { "127.0.0.1:6379" }, password_file = ..., db = 0,
/// prefix = "rsp:", timeout_ms = 200 }`. Plain TCP to one server at a time
/// (the next in the list when one fails); Sentinel, Cluster and TLS are
/// not supported, and a key for them is an error.
pub fn redis(script: &Script) -> Result<Option<RedisConfig>, ConfigError> {
    let setting = Setting::top(script, "redis");
    if setting.table()?.is_none() {
        return Ok(None);
    }
    for unsupported in ["sentinel", "sentinels", "cluster", "tls"] {
        if !setting.part(unsupported).is_nil() {
            return Err(setting.part(unsupported).error(
                "not supported: rsp speaks plain TCP to one Redis (the first of `servers` that answers)",
            ));
        }
    }
    setting.known_keys(REDIS_SETTINGS, "redis setting")?;
    let servers = setting.part("servers");
    if servers.is_nil() {
        return Err(setting.error("missing servers (\"host:port\" of each Redis)"));
    }
    let password_file = setting.part("password_file");
    let password = match password_file.path()? {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| password_file.error(format!("{}: {error}", path.display())))?;
            let password = text.trim_end_matches(['\r', '\n']).to_owned();
            if password.is_empty() {
                return Err(password_file.error(format!("{}: empty", path.display())));
            }
            Some(password)
        }
    };
    Ok(Some(RedisConfig {
        servers: servers.addresses()?,
        password,
        db: setting.part("db").integer(0, 0..=1_000_000)? as u32,
        prefix: setting
            .part("prefix")
            .text()?
            .unwrap_or_else(|| "rsp:".into()),
        timeout: setting.part("timeout_ms").millis(200, 1..=60_000)?,
    }))
}
