//! The other sections: timeouts, the access log, forwarded headers, the
//! request policy (normalization, underscores, upgrades), workers, and the
//! plain numbers.

use std::path::PathBuf;

use mlua::Value;

use crate::forwarding::{Forwarding, Network};
use crate::http::{self, RequestPolicy, Underscores};
use crate::target::{Backslash, EscapedSlash};

use super::lua::Script;
use super::read::{Setting, describe};
use super::types::{AccessLogConfig, ConfigError, LogFormat, LogTarget, Timeouts};

const TIMEOUT_SETTINGS: &[&str] = &[
    "connect",
    "client_header",
    "client_idle",
    "backend_response",
    "idle",
    "backend_keepalive",
    "tunnel",
];
const FORWARDED_SETTINGS: &[&str] = &[
    "x_forwarded_for",
    "x_forwarded_proto",
    "x_forwarded_host",
    "forwarded",
    "trusted_proxies",
    "via",
];
const PATH_SETTINGS: &[&str] = &["merge_slashes", "escaped_slash", "backslash", "escaped_nul"];
const MIN_BUFFER_BYTES: i64 = 1024;

/// `timeouts = { connect = 5000, ... }`, in milliseconds.
pub fn timeouts(script: &Script) -> Result<Timeouts, ConfigError> {
    let setting = Setting::top(script, "timeouts");
    let mut timeouts = Timeouts::default();
    if setting.table()?.is_none() {
        return Ok(timeouts);
    }
    setting.known_keys(TIMEOUT_SETTINGS, "timeout")?;
    let fields = [
        ("connect", &mut timeouts.connect),
        ("client_header", &mut timeouts.client_header),
        ("client_idle", &mut timeouts.client_idle),
        ("backend_response", &mut timeouts.backend_response),
        ("idle", &mut timeouts.idle),
        ("backend_keepalive", &mut timeouts.backend_keepalive),
        ("tunnel", &mut timeouts.tunnel),
    ];
    for (name, duration) in fields {
        let default = duration.as_millis() as u64;
        *duration = setting.field(name).millis(default, 1..=86_400_000)?;
    }
    Ok(timeouts)
}

const HTTP2_SETTINGS: &[&str] = &[
    "max_concurrent_streams",
    "initial_window",
    "max_frame_size",
    "max_header_list_size",
    "idle_timeout",
];

/// `http2 = { max_concurrent_streams = 100, initial_window = 65535, ... }`.
pub fn http2(script: &Script) -> Result<crate::h2::Settings, ConfigError> {
    let setting = Setting::top(script, "http2");
    let mut http2 = crate::h2::Settings::default();
    if setting.table()?.is_none() {
        return Ok(http2);
    }
    setting.known_keys(HTTP2_SETTINGS, "http2 setting")?;
    let number = |name: &str, default: u32, range: std::ops::RangeInclusive<i64>| {
        setting
            .field(name)
            .integer(i64::from(default), range)
            .map(|value| value as u32)
    };
    http2.max_concurrent_streams = number(
        "max_concurrent_streams",
        http2.max_concurrent_streams,
        1..=1000,
    )?;
    // The window is what a stream may buffer in rsp: from one frame's
    // worth up to 16 MiB (the protocol allows 2^31 - 1).
    http2.initial_window = number("initial_window", http2.initial_window, 16_384..=16 << 20)?;
    http2.max_frame_size = number("max_frame_size", http2.max_frame_size, 16_384..=16_777_215)?;
    http2.max_header_list_size = number(
        "max_header_list_size",
        http2.max_header_list_size,
        1024..=1 << 20,
    )?;
    let idle = http2.idle_timeout.as_millis() as u64;
    http2.idle_timeout = setting.field("idle_timeout").millis(idle, 1..=86_400_000)?;
    Ok(http2)
}

/// `access_log = "/var/log/rsp/access.log"` or `"-"` (stdout), and
/// `access_log_format = "combined" | "json"`.
pub fn access_log(script: &Script) -> Result<Option<AccessLogConfig>, ConfigError> {
    let format = Setting::top(script, "access_log_format");
    let format = match format.choice(&["combined", "json"]) {
        Ok(Some("json")) => LogFormat::Json,
        Ok(_) => LogFormat::Combined,
        Err(_) => {
            return Err(format.error(format!(
                "expected \"combined\" or \"json\", got {}",
                describe(&format.value)
            )));
        }
    };
    let log = Setting::top(script, "access_log");
    let target = match &log.value {
        Value::Nil | Value::Boolean(false) => return Ok(None),
        Value::String(text) if &*text.to_string_lossy() == "-" => LogTarget::Stdout,
        Value::String(text) if !text.as_bytes().is_empty() => {
            LogTarget::File(PathBuf::from(&*text.to_string_lossy()))
        }
        other => {
            return Err(log.error(format!(
                "expected a file path or \"-\" for stdout, got {}",
                describe(other)
            )));
        }
    };
    Ok(Some(AccessLogConfig { target, format }))
}

/// `forwarded_headers = { x_forwarded_for = true, ..., trusted_proxies = { "10.0.0.0/8" } }`
pub fn forwarding(script: &Script) -> Result<Forwarding, ConfigError> {
    let setting = Setting::top(script, "forwarded_headers");
    let mut forwarding = Forwarding::default();
    if setting.table()?.is_none() {
        return Ok(forwarding);
    }
    setting.known_keys(FORWARDED_SETTINGS, "setting")?;
    let flags = [
        ("x_forwarded_for", &mut forwarding.x_forwarded_for),
        ("x_forwarded_proto", &mut forwarding.x_forwarded_proto),
        ("x_forwarded_host", &mut forwarding.x_forwarded_host),
        ("forwarded", &mut forwarding.forwarded),
    ];
    for (name, flag) in flags {
        if let Some(on) = setting.field(name).flag()? {
            *flag = on;
        }
    }
    let via = setting.field("via");
    match &via.value {
        Value::Nil | Value::Boolean(true) => {}
        Value::Boolean(false) => forwarding.via = None,
        Value::String(name) => {
            let name = name.to_string_lossy();
            if !is_valid_via_name(&name) {
                return Err(via.error(format!(
                    "\"{name}\" is not a name Via may carry (letters, digits and !#$%&'*+-.^_`|~:, 64 at most)"
                )));
            }
            forwarding.via = Some(name.to_string());
        }
        other => {
            return Err(via.error(format!(
                "expected a name, true or false, got {}",
                describe(other)
            )));
        }
    }
    let trusted = setting.field("trusted_proxies");
    match &trusted.value {
        Value::Nil => {}
        Value::Table(_) => {
            for entry in trusted.sequence()? {
                let Value::String(text) = &entry.value else {
                    return Err(trusted.error(format!(
                        "expected address strings, got {}",
                        describe(&entry.value)
                    )));
                };
                let network = Network::parse(&text.to_string_lossy())
                    .map_err(|error| trusted.error(error))?;
                forwarding.trusted.push(network);
            }
        }
        other => {
            return Err(trusted.error(format!(
                "expected a list of addresses like \"10.0.0.0/8\", got {}",
                describe(other)
            )));
        }
    }
    Ok(forwarding)
}

/// `path_normalization`, `underscore_headers` and `upgrades`: how request
/// heads are read.
pub fn request_policy(script: &Script) -> Result<RequestPolicy, ConfigError> {
    let mut policy = RequestPolicy::default();
    let normalization = Setting::top(script, "path_normalization");
    match &normalization.value {
        Value::Nil | Value::Boolean(true) => {}
        Value::Boolean(false) => policy.path.enabled = false,
        Value::Table(_) => {
            normalization.known_keys(PATH_SETTINGS, "setting")?;
            let path = &mut policy.path;
            if let Some(merge) = normalization.field("merge_slashes").flag()? {
                path.merge_slashes = merge;
            }
            path.escaped_slash = match normalization
                .field("escaped_slash")
                .choice(&["keep", "reject", "decode"])?
            {
                Some("keep") => EscapedSlash::Keep,
                Some("decode") => EscapedSlash::Decode,
                _ => EscapedSlash::Reject,
            };
            path.backslash = match normalization
                .field("backslash")
                .choice(&["keep", "reject", "slash"])?
            {
                Some("keep") => Backslash::Keep,
                Some("slash") => Backslash::Slash,
                _ => Backslash::Reject,
            };
            path.allow_escaped_nul = normalization
                .field("escaped_nul")
                .choice(&["keep", "reject"])?
                == Some("keep");
        }
        other => {
            return Err(normalization.error(format!(
                "expected false or a table, got {}",
                describe(other)
            )));
        }
    }
    policy.underscores =
        match Setting::top(script, "underscore_headers").choice(&["drop", "reject", "allow"])? {
            Some("reject") => Underscores::Reject,
            Some("allow") => Underscores::Allow,
            _ => Underscores::Drop,
        };
    if let Some(upgrades) = upgrades(script)? {
        policy.upgrades = upgrades;
    }
    Ok(policy)
}

/// `upgrades = { "websocket", ... }`: protocols a client may switch to.
fn upgrades(script: &Script) -> Result<Option<Vec<String>>, ConfigError> {
    let setting = Setting::top(script, "upgrades");
    let expected = "expected a list of protocol names, like { \"websocket\" }";
    match &setting.value {
        Value::Nil => return Ok(None),
        Value::Table(_) => {}
        other => {
            return Err(setting.error(format!(
                "expected a list of protocol names, got {}",
                describe(other)
            )));
        }
    }
    let names = setting
        .sequence()?
        .iter()
        .map(|entry| {
            entry
                .text()
                .ok()
                .flatten()
                .map(|name| name.to_ascii_lowercase())
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| setting.error(expected))?;
    if let Some(name) = names.iter().find(|name| {
        name.is_empty()
            || !name
                .bytes()
                .all(|byte| byte.is_ascii_graphic() && byte != b',')
    }) {
        return Err(setting.error(format!("{name:?} is not a protocol name")));
    }
    if names
        .iter()
        .any(|name| name.split('/').next() == Some(http::NEVER_UPGRADED))
    {
        return Err(setting.error(
            "h2c is never forwarded: a backend that switched to it would take every later request \
             on the connection past route()",
        ));
    }
    Ok(Some(names))
}

/// `workers = N` or `"auto"` (one per core).
pub fn workers(script: &Script) -> Result<usize, ConfigError> {
    let setting = Setting::top(script, "workers");
    match &setting.value {
        Value::String(text) if &*text.to_string_lossy() == "auto" => {
            Ok(std::thread::available_parallelism().map_or(1, |cores| cores.get()))
        }
        Value::Integer(_) | Value::Nil => Ok(setting.integer(1, 1..=256)? as usize),
        other => Err(setting.error(format!(
            "expected a number from 1 to 256 or \"auto\", got {}",
            describe(other)
        ))),
    }
}

/// A buffer size in bytes.
pub fn size(script: &Script, name: &str, default: usize) -> Result<usize, ConfigError> {
    let setting = Setting::top(script, name);
    match &setting.value {
        Value::Nil => Ok(default),
        Value::Integer(bytes) if (MIN_BUFFER_BYTES..=1 << 30).contains(bytes) => {
            Ok(*bytes as usize)
        }
        other => Err(setting.error(format!(
            "expected a whole number of bytes from {MIN_BUFFER_BYTES} to 1073741824, got {}",
            describe(other)
        ))),
    }
}

/// `memory = { limit = "512m", per_connection = "4m", script_per_request = "64k" }`.
pub fn memory(script: &Script) -> Result<crate::memory::MemoryLimits, ConfigError> {
    let setting = Setting::top(script, "memory");
    let mut memory = crate::memory::MemoryLimits::default();
    if setting.table()?.is_none() {
        return Ok(memory);
    }
    setting.known_keys(
        &["limit", "per_connection", "script_per_request"],
        "memory setting",
    )?;
    memory.limit = setting
        .field("limit")
        .bytes(memory.limit, 16 << 20..=1 << 40)?;
    memory.per_connection = setting
        .field("per_connection")
        .bytes(memory.per_connection, 64 << 10..=1 << 34)?;
    memory.script_per_request = setting
        .field("script_per_request")
        .bytes(memory.script_per_request, 1 << 10..=1 << 30)?;
    if memory.per_connection > memory.limit {
        return Err(setting.field("per_connection").error(format!(
            "per_connection ({}) is more than the limit ({})",
            memory.per_connection, memory.limit
        )));
    }
    Ok(memory)
}

/// A name `Via` may carry as its recipient: a token, or `host:port`.
fn is_valid_via_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte == b':' || http::is_token_char(byte))
}
