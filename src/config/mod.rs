//! The Lua config file: run it once (`lua`), read each section with the
//! generic readers (`read`), check the rules across sections (`validate`),
//! and read what the running config needs from files (`materialize`).
//!
//! Every error names the file, and the line of the setting where Lua can
//! tell it, so a typo costs one glance.

mod cache;
mod listen;
mod lua;
mod materialize;
mod pools;
mod read;
mod settings;
mod state;
mod types;
mod validate;

use std::path::Path;
use std::time::Duration;

use mlua::{Function, Lua};

use crate::hook::Hook;

pub use materialize::{Certificates, resolve};
pub use types::*;

use lua::Script;
use read::Setting;

/// Each direction's bound. Storage starts at 16 KiB and grows only while a
/// transfer keeps the buffer full, so small exchanges never reach it; large
/// bodies move in 256 KiB reads and writes (README, Performance: 1 MB
/// bodies +20% req/s and -12% CPU against 64 KiB). Envoy's per-connection
/// default is 1 MiB, HAProxy's 16 KiB.
const DEFAULT_BUFFER_BYTES: usize = 256 * 1024;
const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// A backend's response head (nginx: 4 or 8 KiB, `proxy_buffer_size`;
/// HAProxy: about 15 KiB): larger is a 502, however large the buffers.
const DEFAULT_MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;

/// Every top-level name the config may set.
const SETTINGS: &[&str] = &[
    "listen",
    "backends",
    "pools",
    "buffer_bytes",
    "max_header_bytes",
    "max_response_header_bytes",
    "timeouts",
    "route_instruction_limit",
    "shutdown_timeout_ms",
    "max_connections",
    "max_body_bytes",
    "admin",
    "access_log",
    "access_log_format",
    "forwarded_headers",
    "request_id",
    "backend_keepalive",
    "workers",
    "path_normalization",
    "underscore_headers",
    "upgrades",
    "http2",
    "limits",
    "dicts",
    "maps",
    "memory",
    "redis",
    "cache",
    "compress",
    // The original C rsp's names.
    "listenPort",
    "backendAddress",
    "backendPort",
];

/// A loaded config: its settings, the certificates its listeners use, and
/// the Lua state that holds its hooks.
pub struct Loaded {
    pub config: Config,
    pub certificates: Certificates,
    pub lua: Lua,
    pub hooks: Hooks,
    /// Global functions that are not hooks (`file:line: name`).
    pub other_functions: Vec<String>,
}

/// The functions of the hooks the script defines, one place per `Hook`.
#[derive(Clone, Default)]
pub struct Hooks([Option<Function>; Hook::ALL.len()]);

impl Hooks {
    pub fn get(&self, hook: Hook) -> Option<&Function> {
        self.0[hook.index()].as_ref()
    }

    /// The hooks the script defines, in the order they run.
    pub fn defined(&self) -> impl Iterator<Item = Hook> + '_ {
        Hook::ALL
            .into_iter()
            .filter(|hook| self.get(*hook).is_some())
    }

    /// Every hook the script defines, each by its name.
    fn read(script: &Script) -> Result<Hooks, ConfigError> {
        let mut hooks = Hooks::default();
        for hook in Hook::ALL {
            hooks.0[hook.index()] = script.hook(hook.name())?;
        }
        Ok(hooks)
    }
}

/// Runs the config file and checks every setting.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let script = Script::run(path)?;
    let other_functions = script.only_settings(SETTINGS)?;
    let config = read(&script)?;
    let hooks = Hooks::read(&script)?;
    validate::validate(&config, &script, hooks.get(Hook::Route))?;
    let certificates = Certificates::read(&config, &script)?;
    Ok(Loaded {
        config,
        certificates,
        lua: script.lua,
        hooks,
        other_functions,
    })
}

fn read(script: &Script) -> Result<Config, ConfigError> {
    let number =
        |name: &str, default: i64, range| Setting::top(script, name).integer(default, range);
    let max_body_bytes = Setting::top(script, "max_body_bytes");
    let buffer_bytes = settings::size(script, "buffer_bytes", DEFAULT_BUFFER_BYTES)?;
    // A head bound left unset follows smaller buffers down; one set above
    // them is an error (validate).
    let head_bound =
        |name: &str, default: usize| settings::size(script, name, default.min(buffer_bytes));
    Ok(Config {
        listen: listen::listen(script)?,
        pools: pools::pools(script)?,
        buffer_bytes,
        max_header_bytes: head_bound("max_header_bytes", DEFAULT_MAX_HEADER_BYTES)?,
        max_response_header_bytes: head_bound(
            "max_response_header_bytes",
            DEFAULT_MAX_RESPONSE_HEADER_BYTES,
        )?,
        timeouts: settings::timeouts(script)?,
        http2: settings::http2(script)?,
        max_body_bytes: (!max_body_bytes.is_nil())
            .then(|| {
                max_body_bytes
                    .integer(0, 0..=i64::MAX)
                    .map(|bytes| bytes as u64)
            })
            .transpose()?,
        max_connections: number("max_connections", 10_000, 1..=10_000_000)? as usize,
        shutdown_timeout: Duration::from_millis(number(
            "shutdown_timeout_ms",
            30_000,
            0..=3_600_000,
        )? as u64),
        route_instruction_limit: number(
            "route_instruction_limit",
            1_000_000,
            1_000..=1_000_000_000,
        )? as u64,
        admin: listen::admin(script)?,
        policy: settings::request_policy(script)?,
        access_log: settings::access_log(script)?,
        forwarding: settings::forwarding(script)?,
        request_id: Setting::top(script, "request_id").flag()?.unwrap_or(true),
        backend_keepalive: number("backend_keepalive", 1024, 0..=100_000)? as usize,
        workers: settings::workers(script)?,
        limits: state::limits(script)?,
        dicts: state::dicts(script)?,
        maps: state::maps(script)?,
        memory: settings::memory(script)?,
        redis: state::redis(script)?,
        cache: cache::cache(script)?,
        compress: cache::compress(script)?,
    })
}
