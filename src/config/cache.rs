//! `cache = { memory = "256m", max_object = "4m", default_ttl = 0, ... }`:
//! the response cache's settings (`cache/`); pools opt in with
//! `cache = true`. And `compress = { ... }` (`compress.rs`).

use crate::cache::CacheConfig;

use super::lua::Script;
use super::read::Setting;
use super::types::ConfigError;

const CACHE_SETTINGS: &[&str] = &[
    "memory",
    "max_object",
    "default_ttl",
    "status_header",
    "store_set_cookie",
    "serve_stale_on_error",
    "targeted",
    "forward_targeted",
    "lock_timeout_ms",
];

pub fn cache(script: &Script) -> Result<Option<CacheConfig>, ConfigError> {
    let setting = Setting::top(script, "cache");
    if setting.table()?.is_none() {
        return Ok(None);
    }
    setting.known_keys(CACHE_SETTINGS, "cache setting")?;
    let defaults = CacheConfig::default();
    let memory = setting
        .part("memory")
        .bytes(defaults.memory, 1 << 20..=1 << 40)?;
    let max_object = setting
        .part("max_object")
        .bytes(defaults.max_object, 1..=1 << 32)?;
    if max_object > memory {
        return Err(setting.part("max_object").error(format!(
            "{max_object} bytes, more than the cache's memory ({memory})"
        )));
    }
    let flag = |name: &str, default: bool| {
        setting
            .part(name)
            .flag()
            .map(|value| value.unwrap_or(default))
    };
    Ok(Some(CacheConfig {
        memory,
        max_object,
        default_ttl: setting
            .part("default_ttl")
            .integer(0, 0..=crate::cache::policy::MAX_DELTA as i64)? as u64,
        status_header: flag("status_header", defaults.status_header)?,
        store_set_cookie: flag("store_set_cookie", defaults.store_set_cookie)?,
        serve_stale_on_error: flag("serve_stale_on_error", defaults.serve_stale_on_error)?,
        targeted: targeted(&setting.part("targeted"), defaults.targeted)?,
        forward_targeted: flag("forward_targeted", defaults.forward_targeted)?,
        lock_timeout: setting
            .part("lock_timeout_ms")
            .millis(defaults.lock_timeout.as_millis() as u64, 1..=600_000)?,
    }))
}

/// `compress = { types = { "text/*", ... }, min_bytes = 1024, gzip_level = 5, brotli_level = 4 }`.
pub fn compress(script: &Script) -> Result<Option<crate::compress::CompressConfig>, ConfigError> {
    let setting = Setting::top(script, "compress");
    if setting.table()?.is_none() {
        return Ok(None);
    }
    setting.known_keys(
        &["types", "min_bytes", "gzip_level", "brotli_level"],
        "compress setting",
    )?;
    let defaults = crate::compress::CompressConfig::default();
    let types = setting.part("types");
    let types = if types.is_nil() {
        defaults.types
    } else {
        types
            .sequence()?
            .iter()
            .map(|kind| {
                let text = kind.text()?.unwrap_or_default();
                let valid = text.split_once('/').is_some_and(|(family, rest)| {
                    !family.is_empty() && !rest.is_empty() && !text.contains(char::is_whitespace)
                });
                match valid {
                    true => Ok(text),
                    false => Err(kind.error(format!(
                        "{text:?} is not a media type (\"text/*\", \"application/json\")"
                    ))),
                }
            })
            .collect::<Result<_, _>>()?
    };
    Ok(Some(crate::compress::CompressConfig {
        types,
        min_bytes: setting.part("min_bytes").integer(1024, 0..=1 << 40)? as u64,
        gzip_level: setting.part("gzip_level").integer(5, 1..=9)? as u32,
        brotli_level: setting.part("brotli_level").integer(4, 0..=11)? as u32,
    }))
}

/// `targeted = "RSP-Cache-Control"` or a list, first present wins.
fn targeted(setting: &Setting, default: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if setting.is_nil() {
        return Ok(default);
    }
    let names = match setting.text() {
        Ok(Some(name)) => vec![name],
        _ => setting
            .sequence()?
            .iter()
            .map(|name| {
                name.text()?
                    .ok_or_else(|| name.error("expected a field name"))
            })
            .collect::<Result<_, _>>()?,
    };
    for name in &names {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
        if !valid {
            return Err(setting.error(format!("{name:?} is not a field name")));
        }
    }
    Ok(names)
}
