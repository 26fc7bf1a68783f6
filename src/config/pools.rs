//! `pools` (servers, balancing, limits, health checks) and the shorthands
//! that make the default pool: `backends`, and the original rsp's
//! `backendAddress` / `backendPort`.

use std::time::Duration;

use mlua::Value;

use crate::health::HealthConfig;
use crate::proxy_protocol;

use super::lua::Script;
use super::materialize;
use super::read::Setting;
use super::types::{
    Algorithm, ConfigError, DEFAULT_POOL, DEFAULT_QUEUE_TIMEOUT, DEFAULT_RETRIES, EjectConfig,
    PoolConfig, RetryOn, ServerConfig,
};

const POOL_SETTINGS: &[&str] = &[
    "servers",
    "balance",
    "max_conns",
    "queue_timeout_ms",
    "health",
    "send_proxy",
    "retries",
    "retry_on",
    "eject",
    "cache",
];
const EJECT_SETTINGS: &[&str] = &[
    "consecutive_5xx",
    "consecutive_errors",
    "base_ms",
    "max_ms",
    "max_percent",
];
const HEALTH_SETTINGS: &[&str] = &[
    "path",
    "interval_ms",
    "timeout_ms",
    "rise",
    "fall",
    "expect_status",
];
const SERVER_SETTINGS: &[&str] = &["addr", "weight", "backup"];

pub fn pools(script: &Script) -> Result<Vec<PoolConfig>, ConfigError> {
    let setting = Setting::top(script, "pools");
    let mut pools = Vec::new();
    if let Some(table) = setting.table()? {
        for pair in table.pairs::<Value, Value>() {
            let (name, pool) = pair.map_err(|error| setting.error(error))?;
            let Value::String(name) = name else {
                return Err(setting.error(format!(
                    "pool names must be strings, got {}",
                    name.type_name()
                )));
            };
            let name = name.to_string_lossy();
            pools.push(self::pool(&setting.entry(&name, pool), &name)?);
        }
    }
    if let Some((shorthand, servers)) = shorthand(script)? {
        if pools.iter().any(|pool| pool.name == DEFAULT_POOL) {
            return Err(shorthand.error("pools.default is set too; keep one of them"));
        }
        pools.push(PoolConfig::new(
            DEFAULT_POOL,
            servers.into_iter().map(ServerConfig::plain).collect(),
        ));
    }
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pools)
}

/// `backends = { ... }`, or `backendAddress` (and `backendPort`): the
/// setting used and its servers.
fn shorthand(
    script: &Script,
) -> Result<Option<(Setting<'_>, Vec<std::net::SocketAddr>)>, ConfigError> {
    let backends = Setting::top(script, "backends");
    let host = Setting::top(script, "backendAddress");
    let port = Setting::top(script, "backendPort");
    match (backends.is_nil(), host.is_nil(), port.is_nil()) {
        (true, true, true) => Ok(None),
        (true, true, false) => Err(port.error_plain("backendPort needs backendAddress")),
        (true, false, _) => {
            let name = host.text()?.unwrap_or_default();
            let port = if port.is_nil() { 80 } else { port.port()? };
            let address = materialize::resolve(&format!("{name}:{port}"))
                .or_else(|_| materialize::resolve(&format!("[{name}]:{port}")))
                .map_err(|why| host.error(why))?;
            Ok(Some((host, vec![address])))
        }
        (false, true, true) => {
            let servers = backends.addresses()?;
            Ok(Some((backends, servers)))
        }
        _ => Err(backends.error_plain("set either backends or backendAddress, not both")),
    }
}

fn pool(pool: &Setting, name: &str) -> Result<PoolConfig, ConfigError> {
    if !matches!(pool.value, Value::Table(_)) {
        return Err(pool.error(format!(
            "expected a table such as {{ servers = {{ \"127.0.0.1:8081\" }} }}, got {}",
            pool.value.type_name()
        )));
    }
    pool.known_keys(POOL_SETTINGS, "pool setting")?;
    let servers = pool.part("servers");
    let servers = match &servers.value {
        Value::Table(_) => servers
            .sequence()?
            .iter()
            .map(server)
            .collect::<Result<Vec<_>, _>>()?,
        Value::Nil => return Err(pool.error("missing servers")),
        other => return Err(servers.error(format!("expected a list, got {}", other.type_name()))),
    };
    if servers.is_empty() {
        return Err(pool.error("servers is empty"));
    }
    if servers.iter().all(|server| server.backup) {
        return Err(pool.error("every server is a backup; at least one must not be"));
    }
    let algorithm = algorithm(&pool.part("balance"))?;
    let max_conns = pool.part("max_conns");
    let max_conns = (!max_conns.is_nil())
        .then(|| {
            max_conns
                .integer(0, 1..=1_000_000)
                .map(|limit| limit as u32)
        })
        .transpose()?;
    let health = pool.part("health");
    let health = health
        .table()?
        .map(|_| health_config(&health))
        .transpose()?;
    let send_proxy = match pool.part("send_proxy").choice(&["v1", "v2"]) {
        Ok(Some("v1")) => Some(proxy_protocol::Version::V1),
        Ok(Some(_)) => Some(proxy_protocol::Version::V2),
        Ok(None) => None,
        Err(_) => {
            let value = super::read::describe(&pool.part("send_proxy").value);
            return Err(pool
                .part("send_proxy")
                .error(format!("expected \"v1\" or \"v2\", got {value}")));
        }
    };
    Ok(PoolConfig {
        name: name.to_owned(),
        servers,
        algorithm,
        max_conns,
        queue_timeout: pool
            .part("queue_timeout_ms")
            .millis(DEFAULT_QUEUE_TIMEOUT.as_millis() as u64, 1..=3_600_000)?,
        health,
        send_proxy,
        retries: pool
            .part("retries")
            .integer(i64::from(DEFAULT_RETRIES), 0..=10)? as u32,
        retry_on: retry_on(&pool.part("retry_on"))?,
        eject: eject(&pool.part("eject"))?,
        cache: pool.part("cache").flag()? == Some(true),
    })
}

/// A pool's `balance`: roundrobin (the default), leastconn, random, hash.
fn algorithm(balance: &Setting) -> Result<Algorithm, ConfigError> {
    Ok(match &balance.value {
        Value::Nil => Algorithm::RoundRobin,
        Value::String(text) => match &*text.to_string_lossy() {
            "roundrobin" => Algorithm::RoundRobin,
            "leastconn" => Algorithm::LeastConn,
            "random" => Algorithm::Random,
            "hash" => Algorithm::Hash,
            other => {
                return Err(balance.error(format!(
                    "unknown algorithm \"{other}\" (roundrobin, leastconn, random or hash)"
                )));
            }
        },
        other => return Err(balance.error(format!("expected a string, got {}", other.type_name()))),
    })
}

/// `eject = true` (the defaults), `false` or unset (off), or a table
/// overriding some of `{ consecutive_5xx = 5, consecutive_errors = 3,
/// base_ms = 10000, max_ms = 300000, max_percent = 50 }`.
fn eject(setting: &Setting) -> Result<Option<EjectConfig>, ConfigError> {
    let defaults = EjectConfig::default();
    match &setting.value {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::Boolean(true) => return Ok(Some(defaults)),
        Value::Table(_) => {}
        other => {
            return Err(setting.error(format!(
                "expected true, false or {{ consecutive_5xx = 5, ... }}, got {}",
                super::read::describe(other)
            )));
        }
    }
    setting.known_keys(EJECT_SETTINGS, "eject setting")?;
    let count = |name: &str, default: u32| {
        setting
            .part(name)
            .integer(i64::from(default), 0..=1_000_000)
            .map(|count| count as u32)
    };
    let consecutive_5xx = count("consecutive_5xx", defaults.consecutive_5xx)?;
    let consecutive_errors = count("consecutive_errors", defaults.consecutive_errors)?;
    let base = setting
        .part("base_ms")
        .millis(defaults.base.as_millis() as u64, 1..=86_400_000)?;
    let max_ms = setting.part("max_ms");
    let max = max_ms.millis(defaults.max.max(base).as_millis() as u64, 1..=86_400_000)?;
    if max < base {
        return Err(max_ms.error(format!(
            "must be at least base_ms ({}), got {}",
            base.as_millis(),
            max.as_millis()
        )));
    }
    Ok(Some(EjectConfig {
        consecutive_5xx,
        consecutive_errors,
        base,
        max,
        max_percent: setting
            .part("max_percent")
            .integer(i64::from(defaults.max_percent), 0..=100)? as u32,
    }))
}

/// `{ 502, 503, 504, "reset", "timeout" }`.
fn retry_on(setting: &Setting) -> Result<RetryOn, ConfigError> {
    if setting.is_nil() {
        return Ok(RetryOn::default());
    }
    let mut retry_on = RetryOn::none();
    for entry in setting.sequence()? {
        match &entry.value {
            Value::Integer(status) if (400..=599).contains(status) => {
                retry_on.statuses.push(*status as u16);
            }
            Value::String(text) if &*text.to_string_lossy() == "reset" => retry_on.reset = true,
            Value::String(text) if &*text.to_string_lossy() == "timeout" => {
                retry_on.timeout = true;
            }
            other => {
                return Err(entry.error(format!(
                    "expected a status from 400 to 599, \"reset\" or \"timeout\", got {}",
                    super::read::describe(other)
                )));
            }
        }
    }
    Ok(retry_on)
}

/// `"host:port"` or `{ addr = "host:port", weight = 3, backup = true }`.
fn server(server: &Setting) -> Result<ServerConfig, ConfigError> {
    match &server.value {
        Value::String(_) => return server.address().map(ServerConfig::plain),
        Value::Table(_) => {}
        other => {
            return Err(server.error(format!(
                "expected \"host:port\" or {{ addr = \"host:port\", ... }}, got {}",
                other.type_name()
            )));
        }
    }
    server.known_keys(SERVER_SETTINGS, "server setting")?;
    let address = server.part("addr");
    let address = match &address.value {
        Value::String(_) => server.member("addr").address()?,
        other => {
            return Err(address.error(format!(
                "expected \"host:port\", got {}",
                super::read::describe(other)
            )));
        }
    };
    Ok(ServerConfig {
        address,
        weight: server.part("weight").integer(1, 1..=1000)? as u32,
        backup: server.part("backup").flag()?.unwrap_or(false),
    })
}

/// `{ path = "/healthz", interval_ms = 2000, timeout_ms = 1000, rise = 2, fall = 3, expect_status = 200 }`
fn health_config(health: &Setting) -> Result<HealthConfig, ConfigError> {
    health.known_keys(HEALTH_SETTINGS, "health setting")?;
    let path = health.part("path");
    let path = match &path.value {
        Value::Nil => None,
        Value::String(text)
            if text.as_bytes().starts_with(b"/")
                && text.as_bytes().iter().all(|b| b.is_ascii_graphic()) =>
        {
            Some(text.to_string_lossy())
        }
        other => {
            return Err(path.error(format!(
                "expected a path such as \"/healthz\", got {}",
                super::read::describe(other)
            )));
        }
    };
    let number = |name: &str, default, range| health.part(name).integer(default, range);
    Ok(HealthConfig {
        send_proxy: None,
        path,
        interval: Duration::from_millis(number("interval_ms", 2000, 10..=3_600_000)? as u64),
        timeout: Duration::from_millis(number("timeout_ms", 1000, 1..=3_600_000)? as u64),
        rise: number("rise", 2, 1..=100)? as u32,
        fall: number("fall", 3, 1..=100)? as u32,
        expect_status: number("expect_status", 200, 100..=599)? as u16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eject_of(setting: &str) -> Result<Option<EjectConfig>, String> {
        let source =
            format!("pools = {{ web = {{ servers = {{ \"127.0.0.1:1\" }}, {setting} }} }}\n");
        let path = std::env::temp_dir().join(format!(
            "rsp-pools-{}-{:x}.lua",
            std::process::id(),
            source
                .bytes()
                .fold(0u64, |hash, byte| hash.wrapping_mul(31) + u64::from(byte))
        ));
        std::fs::write(&path, &source).unwrap();
        let script = Script::run(&path).unwrap();
        let result = pools(&script)
            .map(|pools| pools[0].eject)
            .map_err(|error| error.to_string());
        let _ = std::fs::remove_file(&path);
        result
    }

    #[test]
    fn eject_is_off_on_or_a_table_over_the_defaults() {
        let defaults = EjectConfig::default();
        assert_eq!(eject_of("retries = 1"), Ok(None));
        assert_eq!(eject_of("eject = false"), Ok(None));
        assert_eq!(eject_of("eject = true"), Ok(Some(defaults)));
        assert_eq!(eject_of("eject = {}"), Ok(Some(defaults)));
        assert_eq!(
            eject_of("eject = { consecutive_5xx = 0, base_ms = 1000, max_percent = 100 }"),
            Ok(Some(EjectConfig {
                consecutive_5xx: 0,
                base: Duration::from_secs(1),
                max_percent: 100,
                ..defaults
            }))
        );
        // An unset max_ms is never below base_ms.
        assert_eq!(
            eject_of("eject = { base_ms = 600000 }").map(|eject| eject.map(|eject| eject.max)),
            Ok(Some(Duration::from_secs(600)))
        );
    }

    #[test]
    fn eject_errors_say_which_setting() {
        for (setting, expected) in [
            (
                "eject = 5",
                "pools.web: eject: expected true, false or { consecutive_5xx = 5, ... }, got 5",
            ),
            (
                "eject = { consecutive_500 = 5 }",
                "pools.web: eject: unknown eject setting \"consecutive_500\" (expected consecutive_5xx, consecutive_errors, base_ms, max_ms, max_percent)",
            ),
            (
                "eject = { consecutive_5xx = -1 }",
                "pools.web: eject: consecutive_5xx: expected a whole number from 0 to 1000000, got -1",
            ),
            (
                "eject = { base_ms = 0 }",
                "pools.web: eject: base_ms: expected milliseconds from 1 to 86400000, got 0",
            ),
            (
                "eject = { base_ms = 2000, max_ms = 1000 }",
                "pools.web: eject: max_ms: must be at least base_ms (2000), got 1000",
            ),
            (
                "eject = { max_percent = 101 }",
                "pools.web: eject: max_percent: expected a whole number from 0 to 100, got 101",
            ),
        ] {
            let error = eject_of(setting).unwrap_err();
            assert!(
                error.ends_with(&format!(":1: {expected}")),
                "{setting}: {error}"
            );
        }
    }
}
