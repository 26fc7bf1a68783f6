//! The Lua config file: run it once, then read and check its settings.
//!
//! Every error names the file, and the line of the setting where Lua can
//! tell it, so a typo costs one glance.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mlua::{Function, Lua, Table, Value};

use crate::forwarding::{Forwarding, Network};
use crate::health::HealthConfig;
use crate::http::{self, RequestPolicy, Underscores};
use crate::proxy_protocol;
use crate::target::{Backslash, EscapedSlash};
use crate::tls::{self, TlsFiles};

pub const DEFAULT_POOL: &str = "default";
const DEFAULT_BUFFER_BYTES: usize = 64 * 1024;
const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
const MIN_BUFFER_BYTES: usize = 1024;

/// Every top-level name the config may set.
const SETTINGS: &[&str] = &[
    "listen",
    "backends",
    "pools",
    "route",
    "buffer_bytes",
    "max_header_bytes",
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
    // The original C rsp's names.
    "listenPort",
    "backendAddress",
    "backendPort",
];

const POOL_SETTINGS: &[&str] = &[
    "servers",
    "balance",
    "max_conns",
    "queue_timeout_ms",
    "health",
    "send_proxy",
];
const HEALTH_SETTINGS: &[&str] = &[
    "path",
    "interval_ms",
    "timeout_ms",
    "rise",
    "fall",
    "expect_status",
];
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT_SETTINGS: &[&str] = &[
    "connect",
    "client_header",
    "client_idle",
    "backend_response",
    "idle",
    "backend_keepalive",
    "tunnel",
];
const SERVER_SETTINGS: &[&str] = &["addr", "weight", "backup"];
const ADMIN_SETTINGS: &[&str] = &["addr", "public", "token", "token_file", "hosts"];
const PATH_SETTINGS: &[&str] = &["merge_slashes", "escaped_slash", "backslash", "escaped_nul"];
const FORWARDED_SETTINGS: &[&str] = &[
    "x_forwarded_for",
    "x_forwarded_proto",
    "x_forwarded_host",
    "forwarded",
    "trusted_proxies",
];

/// One entry of `listen`: a string, or a table with options.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub address: SocketAddr,
    pub mode: ListenMode,
    /// Each connection starts with a PROXY protocol header (v1 or v2).
    pub accept_proxy: bool,
    /// The kernel hands over a connection only once its first bytes came
    /// (`TCP_DEFER_ACCEPT`): on for HTTP, off for tcp listeners, whose
    /// protocol may have the server speak first.
    pub defer_accept: bool,
    /// Terminate TLS with these certificates, read when the config is.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenMode {
    Http,
    /// Raw bytes to a server of `pool`, or of the pool `route(conn)` names.
    Tcp {
        pool: Option<String>,
    },
}

#[derive(Debug)]
pub struct Config {
    pub listen: Vec<ListenConfig>,
    pub pools: Vec<PoolConfig>,
    pub buffer_bytes: usize,
    pub max_header_bytes: usize,
    pub timeouts: Timeouts,
    /// After SIGTERM, how long requests in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// Client connections at once; at the limit rsp stops accepting.
    pub max_connections: usize,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: Option<u64>,
    /// Lua instructions one `route()` call may run before it fails with 500.
    pub route_instruction_limit: u64,
    /// Where the stats page, metrics and drain API are served.
    pub admin: Option<AdminConfig>,
    /// Path normalization, underscores in field names, allowed upgrades.
    pub policy: RequestPolicy,
    pub access_log: Option<AccessLogConfig>,
    pub forwarding: Forwarding,
    /// Keep or make an `X-Request-Id` for every request.
    pub request_id: bool,
    /// Idle connections kept open per backend server for later requests;
    /// 0 closes each after its response.
    pub backend_keepalive: usize,
    /// Event loops, one per thread.
    pub workers: usize,
}

/// The `admin` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// Host names, besides the listener's own address, that admin requests
    /// may name (anything else is DNS rebinding: 421).
    pub hosts: Vec<String>,
    /// Every admin request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: LogTarget,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Apache/nginx combined, plus backend, backend status, microseconds, request id.
    Combined,
    /// One JSON object per line.
    Json,
}

/// The `timeouts` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A backend connect still pending fails (next server, or 502).
    pub connect: Duration,
    /// A request head not complete this long after it began: 408.
    pub client_header: Duration,
    /// A keep-alive connection idle this long between requests is closed.
    pub client_idle: Duration,
    /// No response head this long after the request was sent: 504.
    pub backend_response: Duration,
    /// No byte either way this long in the middle of an exchange: closed.
    pub idle: Duration,
    /// An idle backend connection unused this long is closed.
    pub backend_keepalive: Duration,
    /// A protocol-switched (WebSocket) tunnel with no byte either way this
    /// long is closed.
    pub tunnel: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            client_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(60),
            backend_response: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            backend_keepalive: Duration::from_secs(10),
            tunnel: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    pub servers: Vec<ServerConfig>,
    pub algorithm: Algorithm,
    /// Per server; requests beyond it wait in the pool's queue.
    pub max_conns: Option<u32>,
    /// A request still queued after this gets 503.
    pub queue_timeout: Duration,
    pub health: Option<HealthConfig>,
    /// Start each connection to a server with a PROXY protocol header.
    pub send_proxy: Option<proxy_protocol::Version>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub address: SocketAddr,
    pub weight: u32,
    /// Serves only when no normal server of its pool can.
    pub backup: bool,
}

impl ServerConfig {
    fn plain(address: SocketAddr) -> ServerConfig {
        ServerConfig {
            address,
            weight: 1,
            backup: false,
        }
    }
}

/// How a pool picks a server (`balance = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Smooth weighted round robin.
    RoundRobin,
    LeastConn,
    /// Power of two random choices.
    Random,
    /// Consistent (rendezvous) hashing of the key `route` returns, or the Host.
    Hash,
}

impl Algorithm {
    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "roundrobin",
            Algorithm::LeastConn => "leastconn",
            Algorithm::Random => "random",
            Algorithm::Hash => "hash",
        }
    }
}

/// One line for the operator: `file:line: problem`.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A loaded config: its settings, and the Lua state that holds `route`.
pub struct Loaded {
    pub config: Config,
    pub lua: Lua,
    pub route: Option<Function>,
}

/// Runs the config file and checks every setting.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let file = path.display().to_string();
    let source =
        fs::read(path).map_err(|error| ConfigError(format!("{file}: cannot read: {error}")))?;
    let lua = Lua::new();
    let lines = track_assignment_lines(&lua).map_err(|error| lua_error(&file, error))?;
    let builtins: HashSet<String> = global_names(&lua);
    lua.load(&source[..])
        .set_name(format!("@{file}"))
        .exec()
        .map_err(|error| lua_error(&file, error))?;
    lua.globals()
        .set_metatable(None)
        .map_err(|error| lua_error(&file, error))?;

    let reader = Reader {
        file: &file,
        globals: lua.globals(),
        lines,
    };
    for name in global_names(&lua) {
        if builtins.contains(&name) || SETTINGS.contains(&name.as_str()) {
            continue;
        }
        match reader.globals.raw_get::<Value>(name.as_str()) {
            Ok(Value::Function(_)) => log::warn!(
                "{}: global function '{name}' is not a setting rsp uses",
                reader.at(&name)
            ),
            _ => return Err(reader.error(&name, format!("unknown setting '{name}'"))),
        }
    }
    let config = reader.config()?;
    let route = match reader.get("route") {
        Value::Nil => None,
        Value::Function(route) => Some(route),
        other => {
            return Err(reader.error(
                "route",
                format!("route: expected a function, got {}", other.type_name()),
            ));
        }
    };
    if route.is_none()
        && let Some(listener) = config
            .listen
            .iter()
            .find(|listener| listener.mode == ListenMode::Tcp { pool: None })
    {
        return Err(ConfigError(format!(
            "{file}: the tcp listener {} names no pool, and there is no route function to choose one",
            listener.address
        )));
    }
    if route.is_none() && !config.pools.iter().any(|pool| pool.name == DEFAULT_POOL) {
        return Err(ConfigError(format!(
            "{file}: no backends: set `backends`, a pool named \"default\", or a `route` function"
        )));
    }
    Ok(Loaded { config, lua, route })
}

/// Records the line of each global's first assignment, so that errors
/// about a setting can point at it.
fn track_assignment_lines(lua: &Lua) -> mlua::Result<Table> {
    let lines = lua.create_table()?;
    let recorded = lines.clone();
    let assign =
        lua.create_function(move |lua, (globals, name, value): (Table, Value, Value)| {
            if let Some(line) = lua.inspect_stack(1, |frame| frame.current_line()).flatten() {
                recorded.raw_set(name.clone(), line)?;
            }
            globals.raw_set(name, value)
        })?;
    let metatable = lua.create_table()?;
    metatable.raw_set("__newindex", assign)?;
    lua.globals().set_metatable(Some(metatable))?;
    Ok(lines)
}

fn global_names(lua: &Lua) -> HashSet<String> {
    lua.globals()
        .pairs::<Value, Value>()
        .filter_map(|pair| match pair {
            Ok((Value::String(name), _)) => name.to_str().ok().map(|name| name.to_owned()),
            _ => None,
        })
        .collect()
}

/// Lua's own message already starts with `file:line:`; keep its first line.
fn lua_error(file: &str, error: mlua::Error) -> ConfigError {
    let text = match &error {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(message) => message.clone(),
        other => other.to_string(),
    };
    let first = text.lines().next().unwrap_or("").trim();
    if first.starts_with(file) {
        ConfigError(first.to_owned())
    } else {
        ConfigError(format!("{file}: {first}"))
    }
}

struct Reader<'a> {
    file: &'a str,
    globals: Table,
    lines: Table,
}

impl Reader<'_> {
    fn get(&self, name: &str) -> Value {
        self.globals.raw_get(name).unwrap_or(Value::Nil)
    }

    /// `file:line` of a setting, or just `file` when Lua gave no line.
    fn at(&self, name: &str) -> String {
        match self.lines.raw_get::<Option<u32>>(name) {
            Ok(Some(line)) => format!("{}:{line}", self.file),
            _ => self.file.to_owned(),
        }
    }

    fn error(&self, name: &str, message: String) -> ConfigError {
        ConfigError(format!("{}: {message}", self.at(name)))
    }

    fn config(&self) -> Result<Config, ConfigError> {
        let listen = self.listen()?;
        let pools = self.pools()?;
        for listener in &listen {
            if let ListenMode::Tcp { pool: Some(name) } = &listener.mode
                && !pools.iter().any(|pool| &pool.name == name)
            {
                return Err(self.error(
                    "listen",
                    format!("listen: {}: no pool named \"{name}\"", listener.address),
                ));
            }
        }
        let buffer_bytes = self.size("buffer_bytes", DEFAULT_BUFFER_BYTES)?;
        let max_header_bytes = self.size("max_header_bytes", DEFAULT_MAX_HEADER_BYTES)?;
        if max_header_bytes > buffer_bytes {
            return Err(self.error(
                "max_header_bytes",
                format!("max_header_bytes ({max_header_bytes}) must not exceed buffer_bytes ({buffer_bytes})"),
            ));
        }
        Ok(Config {
            listen,
            pools,
            buffer_bytes,
            max_header_bytes,
            timeouts: self.timeouts()?,
            max_body_bytes: match self.get("max_body_bytes") {
                Value::Nil => None,
                _ => Some(self.whole_number("max_body_bytes", 0, 0..=i64::MAX)? as u64),
            },
            max_connections: self.whole_number("max_connections", 10_000, 1..=10_000_000)? as usize,
            shutdown_timeout: Duration::from_millis(self.whole_number(
                "shutdown_timeout_ms",
                30_000,
                0..=3_600_000,
            )? as u64),
            route_instruction_limit: self.whole_number(
                "route_instruction_limit",
                1_000_000,
                1_000..=1_000_000_000,
            )? as u64,
            admin: self.admin()?,
            policy: self.request_policy()?,
            access_log: self.access_log()?,
            forwarding: self.forwarding()?,
            request_id: self.boolean("request_id", true)?,
            backend_keepalive: self.whole_number("backend_keepalive", 1024, 0..=100_000)? as usize,
            workers: self.workers()?,
        })
    }

    /// Fails on any key of `table` (the setting `name`) not in `known`.
    fn check_keys(&self, name: &str, table: &Table, known: &[&str]) -> Result<(), ConfigError> {
        for key in table
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(key, _)| key)
        {
            if !matches!(&key, Value::String(text) if known.contains(&&*text.to_string_lossy())) {
                return Err(self.error(
                    name,
                    format!(
                        "{name}: unknown setting {} (expected {})",
                        describe(&key),
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `admin = "127.0.0.1:9901"`, or `{ addr = "0.0.0.0:9901", public =
    /// true, token_file = "admin.token", hosts = { "rsp.internal" } }`.
    fn admin(&self) -> Result<Option<AdminConfig>, ConfigError> {
        let fail = |message: String| self.error("admin", format!("admin{message}"));
        let (text, table) = match self.get("admin") {
            Value::Nil => return Ok(None),
            Value::String(text) => (text.to_string_lossy(), None),
            Value::Table(table) => {
                self.check_keys("admin", &table, ADMIN_SETTINGS)?;
                let text = match table.raw_get::<Value>("addr") {
                    Ok(Value::String(text)) => text.to_string_lossy(),
                    _ => return Err(fail(".addr: expected \"ip:port\"".into())),
                };
                (text, Some(table))
            }
            other => {
                return Err(fail(format!(
                    ": expected \"ip:port\" or a table, got {}",
                    other.type_name()
                )));
            }
        };
        let get = |key: &str| {
            table
                .as_ref()
                .and_then(|table| table.raw_get::<Value>(key).ok())
                .unwrap_or(Value::Nil)
        };
        let public = match get("public") {
            Value::Nil => false,
            Value::Boolean(public) => public,
            _ => return Err(fail(".public: expected true or false".into())),
        };
        let token = match (get("token"), get("token_file")) {
            (Value::Nil, Value::Nil) => None,
            (Value::String(token), Value::Nil) => Some(token.to_string_lossy()),
            (Value::Nil, Value::String(path)) => {
                let base = Path::new(self.file).parent().unwrap_or(Path::new("."));
                let path = base.join(&*path.to_string_lossy());
                let text = fs::read_to_string(&path)
                    .map_err(|error| fail(format!(".token_file: {}: {error}", path.display())))?;
                Some(text.trim().to_owned())
            }
            (Value::String(_), Value::String(_)) => {
                return Err(fail(": set token or token_file, not both".into()));
            }
            _ => return Err(fail(".token: expected a string".into())),
        };
        if let Some(token) = &token {
            let printable = token.bytes().all(|byte| byte.is_ascii_graphic());
            if token.len() < 16 || !printable {
                return Err(fail(
                    ".token: expected at least 16 printable characters, without spaces".into(),
                ));
            }
        }
        let hosts = match get("hosts") {
            Value::Nil => Vec::new(),
            Value::Table(list) => list
                .sequence_values::<String>()
                .map(|host| host.map(|host| host.to_ascii_lowercase()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| fail(".hosts: expected a list of names".into()))?,
            _ => return Err(fail(".hosts: expected a list of names".into())),
        };
        let address = resolve(&text).map_err(|error| fail(format!(": {error}")))?;
        if self
            .listen()?
            .iter()
            .any(|listener| listener.address == address)
        {
            return Err(fail(format!(
                ": {address} is also in listen; give the admin port its own address"
            )));
        }
        if !address.ip().is_loopback() && !public {
            return Err(fail(format!(
                ": {address} is reachable from other machines and the admin port can drain servers; \
                 write admin = {{ addr = \"{text}\", public = true, token_file = \"...\" }} if that is meant"
            )));
        }
        if public && token.is_none() {
            return Err(fail(format!(
                ": a public admin port ({address}) needs a token: token = \"...\" or token_file = \"...\", \
                 sent by callers as Authorization: Bearer"
            )));
        }
        Ok(Some(AdminConfig {
            address,
            hosts,
            token,
        }))
    }

    /// `path_normalization`, `underscore_headers` and `upgrades`: how
    /// request heads are read.
    fn request_policy(&self) -> Result<RequestPolicy, ConfigError> {
        let mut policy = RequestPolicy::default();
        match self.get("path_normalization") {
            Value::Nil | Value::Boolean(true) => {}
            Value::Boolean(false) => policy.path.enabled = false,
            Value::Table(table) => {
                self.check_keys("path_normalization", &table, PATH_SETTINGS)?;
                let path = &mut policy.path;
                let option = |key: &str| table.raw_get::<Value>(key).unwrap_or(Value::Nil);
                if let Some(merge) =
                    self.flag("path_normalization.merge_slashes", option("merge_slashes"))?
                {
                    path.merge_slashes = merge;
                }
                if let Some(choice) = self.choice(
                    "path_normalization.escaped_slash",
                    option("escaped_slash"),
                    &["keep", "reject", "decode"],
                )? {
                    path.escaped_slash = match choice {
                        "keep" => EscapedSlash::Keep,
                        "decode" => EscapedSlash::Decode,
                        _ => EscapedSlash::Reject,
                    };
                }
                if let Some(choice) = self.choice(
                    "path_normalization.backslash",
                    option("backslash"),
                    &["keep", "reject", "slash"],
                )? {
                    path.backslash = match choice {
                        "keep" => Backslash::Keep,
                        "slash" => Backslash::Slash,
                        _ => Backslash::Reject,
                    };
                }
                if let Some(choice) = self.choice(
                    "path_normalization.escaped_nul",
                    option("escaped_nul"),
                    &["keep", "reject"],
                )? {
                    path.allow_escaped_nul = choice == "keep";
                }
            }
            other => {
                return Err(self.error(
                    "path_normalization",
                    format!(
                        "path_normalization: expected false or a table, got {}",
                        describe(&other)
                    ),
                ));
            }
        }
        if let Some(choice) = self.choice(
            "underscore_headers",
            self.get("underscore_headers"),
            &["drop", "reject", "allow"],
        )? {
            policy.underscores = match choice {
                "reject" => Underscores::Reject,
                "allow" => Underscores::Allow,
                _ => Underscores::Drop,
            };
        }
        match self.get("upgrades") {
            Value::Nil => {}
            Value::Table(list) => {
                let fail = || {
                    self.error(
                        "upgrades",
                        "upgrades: expected a list of protocol names, like { \"websocket\" }"
                            .into(),
                    )
                };
                policy.upgrades = list
                    .sequence_values::<String>()
                    .map(|name| name.map(|name| name.to_ascii_lowercase()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| fail())?;
                if let Some(name) = policy.upgrades.iter().find(|name| {
                    name.is_empty()
                        || !name
                            .bytes()
                            .all(|byte| byte.is_ascii_graphic() && byte != b',')
                }) {
                    return Err(self.error(
                        "upgrades",
                        format!("upgrades: {name:?} is not a protocol name"),
                    ));
                }
                if policy
                    .upgrades
                    .iter()
                    .any(|name| name.split('/').next() == Some(http::NEVER_UPGRADED))
                {
                    return Err(self.error(
                        "upgrades",
                        "upgrades: h2c is never forwarded: a backend that switched to it would take \
                         every later request on the connection past route()"
                            .into(),
                    ));
                }
            }
            other => {
                return Err(self.error(
                    "upgrades",
                    format!(
                        "upgrades: expected a list of protocol names, got {}",
                        describe(&other)
                    ),
                ));
            }
        }
        Ok(policy)
    }

    /// `true`/`false`, or nil (`None`), for the setting `name`.
    fn flag(&self, name: &str, value: Value) -> Result<Option<bool>, ConfigError> {
        let setting = name.split('.').next().unwrap_or(name);
        match value {
            Value::Nil => Ok(None),
            Value::Boolean(on) => Ok(Some(on)),
            other => Err(self.error(
                setting,
                format!("{name}: expected true or false, got {}", describe(&other)),
            )),
        }
    }

    /// One of the strings `choices`, or nil (`None`), for the setting `name`.
    fn choice(
        &self,
        name: &str,
        value: Value,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, ConfigError> {
        let setting = name.split('.').next().unwrap_or(name);
        let expected = || {
            choices
                .iter()
                .map(|choice| format!("\"{choice}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &value {
            Value::Nil => Ok(None),
            Value::String(text) => {
                let text = text.to_string_lossy();
                choices
                    .iter()
                    .find(|choice| **choice == text)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| {
                        self.error(
                            setting,
                            format!(
                                "{name}: expected one of {}, got {}",
                                expected(),
                                describe(&value)
                            ),
                        )
                    })
            }
            _ => Err(self.error(
                setting,
                format!(
                    "{name}: expected one of {}, got {}",
                    expected(),
                    describe(&value)
                ),
            )),
        }
    }

    /// `access_log = "/var/log/rsp/access.log"` or `"-"` (stdout), and
    /// `access_log_format = "combined" | "json"`.
    fn access_log(&self) -> Result<Option<AccessLogConfig>, ConfigError> {
        let format = match self.get("access_log_format") {
            Value::Nil => LogFormat::Combined,
            Value::String(text) if &*text.to_string_lossy() == "combined" => LogFormat::Combined,
            Value::String(text) if &*text.to_string_lossy() == "json" => LogFormat::Json,
            other => {
                return Err(self.error(
                    "access_log_format",
                    format!(
                        "access_log_format: expected \"combined\" or \"json\", got {}",
                        describe(&other)
                    ),
                ));
            }
        };
        let target = match self.get("access_log") {
            Value::Nil => return Ok(None),
            Value::Boolean(false) => return Ok(None),
            Value::String(text) if &*text.to_string_lossy() == "-" => LogTarget::Stdout,
            Value::String(text) if !text.as_bytes().is_empty() => {
                LogTarget::File(PathBuf::from(&*text.to_string_lossy()))
            }
            other => {
                return Err(self.error(
                    "access_log",
                    format!(
                        "access_log: expected a file path or \"-\" for stdout, got {}",
                        describe(&other)
                    ),
                ));
            }
        };
        Ok(Some(AccessLogConfig { target, format }))
    }

    /// `forwarded_headers = { x_forwarded_for = true, ..., trusted_proxies = { "10.0.0.0/8" } }`
    fn forwarding(&self) -> Result<Forwarding, ConfigError> {
        let mut forwarding = Forwarding::default();
        let Some(table) = self.optional_table("forwarded_headers")? else {
            return Ok(forwarding);
        };
        let fail = |message: String| {
            self.error("forwarded_headers", format!("forwarded_headers.{message}"))
        };
        for pair in table.pairs::<Value, Value>() {
            let (key, value) = pair.map_err(|error| fail(error.to_string()))?;
            let name = match &key {
                Value::String(name) if FORWARDED_SETTINGS.contains(&&*name.to_string_lossy()) => {
                    name.to_string_lossy()
                }
                _ => {
                    return Err(self.error(
                        "forwarded_headers",
                        format!(
                            "forwarded_headers: unknown setting {} (expected one of {})",
                            describe(&key),
                            FORWARDED_SETTINGS.join(", ")
                        ),
                    ));
                }
            };
            if name == "trusted_proxies" {
                let Value::Table(list) = value else {
                    return Err(fail(format!(
                        "trusted_proxies: expected a list of addresses like \"10.0.0.0/8\", got {}",
                        describe(&value)
                    )));
                };
                for entry in list.sequence_values::<Value>() {
                    let entry = entry.map_err(|error| fail(error.to_string()))?;
                    let Value::String(text) = &entry else {
                        return Err(fail(format!(
                            "trusted_proxies: expected address strings, got {}",
                            describe(&entry)
                        )));
                    };
                    let network = Network::parse(&text.to_string_lossy())
                        .map_err(|error| fail(format!("trusted_proxies: {error}")))?;
                    forwarding.trusted.push(network);
                }
                continue;
            }
            let Value::Boolean(on) = value else {
                return Err(fail(format!(
                    "{name}: expected true or false, got {}",
                    describe(&value)
                )));
            };
            match name.as_str() {
                "x_forwarded_for" => forwarding.x_forwarded_for = on,
                "x_forwarded_proto" => forwarding.x_forwarded_proto = on,
                "x_forwarded_host" => forwarding.x_forwarded_host = on,
                _ => forwarding.forwarded = on,
            }
        }
        Ok(forwarding)
    }

    /// `workers = N` or `"auto"` (one per core).
    fn workers(&self) -> Result<usize, ConfigError> {
        match self.get("workers") {
            Value::String(text) if &*text.to_string_lossy() == "auto" => {
                Ok(std::thread::available_parallelism().map_or(1, |cores| cores.get()))
            }
            Value::Integer(_) | Value::Nil => {
                Ok(self.whole_number("workers", 1, 1..=256)? as usize)
            }
            other => Err(self.error(
                "workers",
                format!(
                    "workers: expected a number from 1 to 256 or \"auto\", got {}",
                    describe(&other)
                ),
            )),
        }
    }

    /// A setting that is a table when present.
    fn optional_table(&self, name: &str) -> Result<Option<Table>, ConfigError> {
        match self.get(name) {
            Value::Nil => Ok(None),
            Value::Table(table) => Ok(Some(table)),
            other => Err(self.error(
                name,
                format!("{name}: expected a table, got {}", other.type_name()),
            )),
        }
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            Value::Nil => Ok(default),
            Value::Boolean(value) => Ok(value),
            other => Err(self.error(
                name,
                format!("{name}: expected true or false, got {}", describe(&other)),
            )),
        }
    }

    /// `timeouts = { connect = 5000, ... }`, in milliseconds.
    fn timeouts(&self) -> Result<Timeouts, ConfigError> {
        let mut timeouts = Timeouts::default();
        let Some(table) = self.optional_table("timeouts")? else {
            return Ok(timeouts);
        };
        for pair in table.pairs::<Value, Value>() {
            let (key, value) =
                pair.map_err(|error| self.error("timeouts", format!("timeouts: {error}")))?;
            let name = match &key {
                Value::String(key) if TIMEOUT_SETTINGS.contains(&&*key.to_string_lossy()) => {
                    key.to_string_lossy()
                }
                _ => {
                    return Err(self.error(
                        "timeouts",
                        format!("timeouts: unknown timeout {}", describe(&key)),
                    ));
                }
            };
            let duration = match value {
                Value::Integer(milliseconds) if (1..=86_400_000).contains(&milliseconds) => {
                    Duration::from_millis(milliseconds as u64)
                }
                other => {
                    return Err(self.error(
                        "timeouts",
                        format!(
                            "timeouts.{name}: expected milliseconds from 1 to 86400000, got {}",
                            describe(&other)
                        ),
                    ));
                }
            };
            match name.as_str() {
                "connect" => timeouts.connect = duration,
                "client_header" => timeouts.client_header = duration,
                "client_idle" => timeouts.client_idle = duration,
                "backend_response" => timeouts.backend_response = duration,
                "backend_keepalive" => timeouts.backend_keepalive = duration,
                "tunnel" => timeouts.tunnel = duration,
                _ => timeouts.idle = duration,
            }
        }
        Ok(timeouts)
    }

    fn listen(&self) -> Result<Vec<ListenConfig>, ConfigError> {
        let http = |address| ListenConfig {
            address,
            mode: ListenMode::Http,
            accept_proxy: false,
            defer_accept: true,
            tls: None,
        };
        let listeners: Vec<ListenConfig> = match (self.get("listen"), self.get("listenPort")) {
            (Value::Nil, Value::Nil) => {
                return Err(ConfigError(format!(
                    "{}: missing required setting 'listen' (for example listen = \"127.0.0.1:8080\")",
                    self.file
                )));
            }
            (Value::Nil, port) => {
                let port = self.port("listenPort", port)?;
                vec![http(SocketAddr::from(([0, 0, 0, 0], port)))]
            }
            (Value::Table(list), Value::Nil) => {
                let entries: Vec<Value> = list
                    .sequence_values::<Value>()
                    .collect::<mlua::Result<_>>()
                    .map_err(|error| self.error("listen", format!("listen: {error}")))?;
                if entries.is_empty() {
                    return Err(
                        self.error("listen", "listen: needs at least one \"host:port\"".into())
                    );
                }
                entries
                    .into_iter()
                    .map(|entry| match entry {
                        Value::Table(options) => self.listener_table(&options),
                        other => self.listen_address(other).map(http),
                    })
                    .collect::<Result<_, _>>()?
            }
            (single, Value::Nil) => vec![http(self.listen_address(single)?)],
            _ => {
                return Err(self.error(
                    "listenPort",
                    "set either listen or listenPort, not both".into(),
                ));
            }
        };
        let mut seen = HashSet::new();
        if let Some(duplicate) = listeners
            .iter()
            .find(|listener| !seen.insert(listener.address))
        {
            return Err(self.error(
                "listen",
                format!("listen: {} is listed twice", duplicate.address),
            ));
        }
        Ok(listeners)
    }

    fn listen_address(&self, value: Value) -> Result<SocketAddr, ConfigError> {
        match value {
            Value::String(text) => resolve(&text.to_string_lossy())
                .map_err(|why| self.error("listen", format!("listen: {why}"))),
            other => Err(self.error(
                "listen",
                format!(
                    "listen: expected \"host:port\" or a table, got {}",
                    other.type_name()
                ),
            )),
        }
    }

    /// `{ addr = "127.0.0.1:3307", mode = "tcp", pool = "mysql" }`
    fn listener_table(&self, options: &Table) -> Result<ListenConfig, ConfigError> {
        let fail = |message: String| self.error("listen", format!("listen: {message}"));
        let mut address = None;
        let mut mode = None;
        let mut pool = None;
        let mut accept_proxy = false;
        let mut defer_accept = None;
        let mut tls = None;
        for pair in options.pairs::<Value, Value>() {
            let (key, value) = pair.map_err(|error| fail(error.to_string()))?;
            let key = match &key {
                Value::String(key) => key.to_string_lossy(),
                other => return Err(fail(format!("unknown listener option {}", describe(other)))),
            };
            let text = match &value {
                Value::String(text) => Some(text.to_string_lossy()),
                _ => None,
            };
            match (key.as_str(), text) {
                ("addr", Some(text)) => {
                    address = Some(resolve(&text).map_err(&fail)?);
                }
                ("mode", Some(text)) if text == "http" || text == "tcp" => mode = Some(text),
                ("pool", Some(text)) => pool = Some(text),
                ("accept_proxy", _) if matches!(value, Value::Boolean(_)) => {
                    accept_proxy = value.as_boolean().unwrap_or(false);
                }
                ("defer_accept", _) if matches!(value, Value::Boolean(_)) => {
                    defer_accept = value.as_boolean();
                }
                ("tls", _) => {
                    let Value::Table(table) = &value else {
                        return Err(fail(
                            "tls: expected { cert = \"chain.pem\", key = \"key.pem\" } or { certs = { ... } }".into(),
                        ));
                    };
                    let files = self
                        .tls_files(table)
                        .map_err(|why| fail(format!("tls: {why}")))?;
                    let config =
                        tls::server_config(&files).map_err(|why| fail(format!("tls: {why}")))?;
                    tls = Some(config);
                }
                ("addr" | "mode" | "pool" | "accept_proxy" | "defer_accept", _) => {
                    return Err(fail(format!(
                        "{key}: unexpected value {} (addr: \"host:port\", mode: \"http\" or \"tcp\", pool: a pool name, accept_proxy and defer_accept: true or false)",
                        describe(&value)
                    )));
                }
                (other, _) => {
                    return Err(fail(format!(
                        "unknown listener option \"{other}\" (expected addr, mode, pool, accept_proxy, defer_accept, tls)"
                    )));
                }
            }
        }
        let address =
            address.ok_or_else(|| fail("a listener table needs addr = \"host:port\"".into()))?;
        let mode = match (mode.as_deref(), pool) {
            (Some("tcp"), pool) => ListenMode::Tcp { pool },
            (_, Some(_)) => {
                return Err(fail(format!(
                    "{address}: pool is for mode = \"tcp\" listeners; HTTP requests are routed by route()"
                )));
            }
            _ => ListenMode::Http,
        };
        let defer_accept = defer_accept.unwrap_or(mode == ListenMode::Http);
        Ok(ListenConfig {
            address,
            mode,
            accept_proxy,
            defer_accept,
            tls,
        })
    }

    /// `{ cert = "chain.pem", key = "key.pem" }` or `{ certs = { { cert =, key = }, ... } }`;
    /// relative paths are relative to the config file.
    fn tls_files(&self, table: &Table) -> Result<TlsFiles, String> {
        let base = Path::new(self.file).parent().unwrap_or(Path::new("."));
        let path = |table: &Table, name: &str| -> Result<PathBuf, String> {
            match table.raw_get::<Value>(name) {
                Ok(Value::String(text)) => Ok(base.join(&*text.to_string_lossy())),
                _ => Err(format!("{name}: expected a file path")),
            }
        };
        let pair = |table: &Table| -> Result<(PathBuf, PathBuf), String> {
            for entry in table.pairs::<Value, Value>() {
                let (key, _) = entry.map_err(|error| error.to_string())?;
                if !matches!(&key, Value::String(name) if ["cert", "key", "certs"].contains(&&*name.to_string_lossy()))
                {
                    return Err(format!(
                        "unknown setting {} (expected cert, key, certs)",
                        describe(&key)
                    ));
                }
            }
            Ok((path(table, "cert")?, path(table, "key")?))
        };
        let pairs = match table.raw_get::<Value>("certs") {
            Ok(Value::Table(list)) => {
                list.sequence_values::<Table>()
                    .map(|entry| {
                        pair(&entry.map_err(|_| {
                            "certs: expected a list of { cert =, key = }".to_owned()
                        })?)
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Ok(Value::Nil) => vec![pair(table)?],
            _ => return Err("certs: expected a list of { cert =, key = }".into()),
        };
        if pairs.is_empty() {
            return Err("certs: needs at least one { cert =, key = }".into());
        }
        Ok(TlsFiles { pairs })
    }

    fn pools(&self) -> Result<Vec<PoolConfig>, ConfigError> {
        let mut pools = Vec::new();
        match self.get("pools") {
            Value::Nil => {}
            Value::Table(table) => {
                for pair in table.pairs::<Value, Value>() {
                    let (name, pool) =
                        pair.map_err(|error| self.error("pools", format!("pools: {error}")))?;
                    let name = match name {
                        Value::String(name) => name.to_string_lossy(),
                        other => {
                            return Err(self.error(
                                "pools",
                                format!(
                                    "pools: pool names must be strings, got {}",
                                    other.type_name()
                                ),
                            ));
                        }
                    };
                    pools.push(self.pool(&name, pool)?);
                }
            }
            other => {
                return Err(self.error(
                    "pools",
                    format!("pools: expected a table, got {}", other.type_name()),
                ));
            }
        }
        let shorthand = match (
            self.get("backends"),
            self.get("backendAddress"),
            self.get("backendPort"),
        ) {
            (Value::Nil, Value::Nil, Value::Nil) => None,
            (Value::Nil, Value::Nil, _) => {
                return Err(self.error("backendPort", "backendPort needs backendAddress".into()));
            }
            (Value::Nil, host, port) => {
                let host = self.string("backendAddress", host)?;
                let port = match port {
                    Value::Nil => 80,
                    port => self.port("backendPort", port)?,
                };
                let address = resolve(&format!("{host}:{port}"))
                    .or_else(|_| resolve(&format!("[{host}]:{port}")))
                    .map_err(|why| {
                        self.error("backendAddress", format!("backendAddress: {why}"))
                    })?;
                Some(("backendAddress", vec![address]))
            }
            (_, Value::Nil, Value::Nil) => Some(("backends", self.address_list("backends")?)),
            _ => {
                return Err(self.error(
                    "backends",
                    "set either backends or backendAddress, not both".into(),
                ));
            }
        };
        if let Some((setting, servers)) = shorthand {
            if pools.iter().any(|pool| pool.name == DEFAULT_POOL) {
                return Err(self.error(
                    setting,
                    format!("{setting}: pools.default is set too; keep one of them"),
                ));
            }
            if servers.is_empty() {
                return Err(self.error(
                    setting,
                    format!("{setting}: needs at least one \"host:port\""),
                ));
            }
            pools.push(PoolConfig {
                name: DEFAULT_POOL.to_owned(),
                servers: servers.into_iter().map(ServerConfig::plain).collect(),
                algorithm: Algorithm::RoundRobin,
                max_conns: None,
                queue_timeout: DEFAULT_QUEUE_TIMEOUT,
                health: None,
                send_proxy: None,
            });
        }
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pools)
    }

    fn pool(&self, name: &str, pool: Value) -> Result<PoolConfig, ConfigError> {
        let here = |message: String| self.error("pools", format!("pools.{name}: {message}"));
        let table = match pool {
            Value::Table(table) => table,
            other => {
                return Err(here(format!(
                    "expected a table such as {{ servers = {{ \"127.0.0.1:8081\" }} }}, got {}",
                    other.type_name()
                )));
            }
        };
        for pair in table.pairs::<Value, Value>() {
            let (key, _) = pair.map_err(|error| here(error.to_string()))?;
            let known = matches!(&key, Value::String(key) if POOL_SETTINGS.contains(&&*key.to_string_lossy()));
            if !known {
                return Err(here(format!("unknown pool setting {}", describe(&key))));
            }
        }
        let servers = match table.raw_get::<Value>("servers").unwrap_or(Value::Nil) {
            Value::Table(servers) => servers,
            Value::Nil => return Err(here("missing servers".into())),
            other => {
                return Err(here(format!(
                    "servers: expected a list, got {}",
                    other.type_name()
                )));
            }
        };
        let mut configs = Vec::new();
        for server in servers.sequence_values::<Value>() {
            let server = server.map_err(|error| here(error.to_string()))?;
            configs.push(server_config(server).map_err(|why| here(format!("servers: {why}")))?);
        }
        if configs.is_empty() {
            return Err(here("servers is empty".into()));
        }
        if configs.iter().all(|server| server.backup) {
            return Err(here(
                "every server is a backup; at least one must not be".into(),
            ));
        }
        let algorithm = match table.raw_get::<Value>("balance").unwrap_or(Value::Nil) {
            Value::Nil => Algorithm::RoundRobin,
            Value::String(name) => match &*name.to_string_lossy() {
                "roundrobin" => Algorithm::RoundRobin,
                "leastconn" => Algorithm::LeastConn,
                "random" => Algorithm::Random,
                "hash" => Algorithm::Hash,
                other => {
                    return Err(here(format!(
                        "balance: unknown algorithm \"{other}\" (roundrobin, leastconn, random or hash)"
                    )));
                }
            },
            other => {
                return Err(here(format!(
                    "balance: expected a string, got {}",
                    other.type_name()
                )));
            }
        };
        let max_conns = match table.raw_get::<Value>("max_conns").unwrap_or(Value::Nil) {
            Value::Nil => None,
            Value::Integer(limit) if (1..=1_000_000).contains(&limit) => Some(limit as u32),
            other => {
                return Err(here(format!(
                    "max_conns: expected a whole number from 1 to 1000000, got {}",
                    describe(&other)
                )));
            }
        };
        let queue_timeout = match table
            .raw_get::<Value>("queue_timeout_ms")
            .unwrap_or(Value::Nil)
        {
            Value::Nil => DEFAULT_QUEUE_TIMEOUT,
            Value::Integer(milliseconds) if (1..=3_600_000).contains(&milliseconds) => {
                Duration::from_millis(milliseconds as u64)
            }
            other => {
                return Err(here(format!(
                    "queue_timeout_ms: expected milliseconds from 1 to 3600000, got {}",
                    describe(&other)
                )));
            }
        };
        let health = match table.raw_get::<Value>("health").unwrap_or(Value::Nil) {
            Value::Nil => None,
            Value::Table(health) => {
                Some(health_config(&health).map_err(|why| here(format!("health: {why}")))?)
            }
            other => {
                return Err(here(format!(
                    "health: expected a table, got {}",
                    other.type_name()
                )));
            }
        };
        let send_proxy = match table.raw_get::<Value>("send_proxy").unwrap_or(Value::Nil) {
            Value::Nil => None,
            Value::String(text) if &*text.to_string_lossy() == "v1" => {
                Some(proxy_protocol::Version::V1)
            }
            Value::String(text) if &*text.to_string_lossy() == "v2" => {
                Some(proxy_protocol::Version::V2)
            }
            other => {
                return Err(here(format!(
                    "send_proxy: expected \"v1\" or \"v2\", got {}",
                    describe(&other)
                )));
            }
        };
        Ok(PoolConfig {
            name: name.to_owned(),
            servers: configs,
            algorithm,
            max_conns,
            queue_timeout,
            health,
            send_proxy,
        })
    }

    fn address_list(&self, name: &str) -> Result<Vec<SocketAddr>, ConfigError> {
        let texts: Vec<Value> = match self.get(name) {
            Value::Table(list) => list
                .sequence_values::<Value>()
                .collect::<mlua::Result<_>>()
                .map_err(|error| self.error(name, format!("{name}: {error}")))?,
            single => vec![single],
        };
        if texts.is_empty() {
            return Err(self.error(name, format!("{name}: needs at least one \"host:port\"")));
        }
        texts
            .into_iter()
            .map(|value| match value {
                Value::String(text) => resolve(&text.to_string_lossy())
                    .map_err(|why| self.error(name, format!("{name}: {why}"))),
                other => Err(self.error(
                    name,
                    format!("{name}: expected \"host:port\", got {}", other.type_name()),
                )),
            })
            .collect()
    }

    fn size(&self, name: &str, default: usize) -> Result<usize, ConfigError> {
        match self.get(name) {
            Value::Nil => Ok(default),
            Value::Integer(bytes) if bytes >= MIN_BUFFER_BYTES as i64 && bytes <= (1 << 30) => Ok(bytes as usize),
            other => Err(self.error(
                name,
                format!("{name}: expected a whole number of bytes from {MIN_BUFFER_BYTES} to 1073741824, got {}", describe(&other)),
            )),
        }
    }

    /// An optional whole-number setting within `range`.
    fn whole_number(
        &self,
        name: &str,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        match self.get(name) {
            Value::Nil => Ok(default),
            Value::Integer(value) if range.contains(&value) => Ok(value),
            other => Err(self.error(
                name,
                format!(
                    "{name}: expected a whole number from {} to {}, got {}",
                    range.start(),
                    range.end(),
                    describe(&other)
                ),
            )),
        }
    }

    fn port(&self, name: &str, value: Value) -> Result<u16, ConfigError> {
        let port = match &value {
            Value::Integer(port) => u16::try_from(*port).ok(),
            Value::String(text) => text.to_str().ok().and_then(|text| text.trim().parse().ok()),
            _ => None,
        };
        port.filter(|&port| port != 0).ok_or_else(|| {
            self.error(
                name,
                format!("{name}: expected a port number, got {}", describe(&value)),
            )
        })
    }

    fn string(&self, name: &str, value: Value) -> Result<String, ConfigError> {
        match value {
            Value::String(text) => Ok(text.to_string_lossy()),
            other => Err(self.error(
                name,
                format!("{name}: expected a string, got {}", other.type_name()),
            )),
        }
    }
}

/// `{ path = "/healthz", interval_ms = 2000, timeout_ms = 1000, rise = 2, fall = 3, expect_status = 200 }`
fn health_config(table: &Table) -> Result<HealthConfig, String> {
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair.map_err(|error| error.to_string())?;
        let known = matches!(&key, Value::String(key) if HEALTH_SETTINGS.contains(&&*key.to_string_lossy()));
        if !known {
            return Err(format!("unknown health setting {}", describe(&key)));
        }
    }
    let number = |name: &str, default: i64, range: std::ops::RangeInclusive<i64>| match table
        .raw_get::<Value>(name)
        .unwrap_or(Value::Nil)
    {
        Value::Nil => Ok(default),
        Value::Integer(value) if range.contains(&value) => Ok(value),
        other => Err(format!(
            "{name}: expected a whole number from {} to {}, got {}",
            range.start(),
            range.end(),
            describe(&other)
        )),
    };
    let path = match table.raw_get::<Value>("path").unwrap_or(Value::Nil) {
        Value::Nil => None,
        Value::String(path)
            if path.as_bytes().starts_with(b"/")
                && path.as_bytes().iter().all(|b| b.is_ascii_graphic()) =>
        {
            Some(path.to_string_lossy())
        }
        other => {
            return Err(format!(
                "path: expected a path such as \"/healthz\", got {}",
                describe(&other)
            ));
        }
    };
    let interval = number("interval_ms", 2000, 10..=3_600_000)?;
    let timeout = number("timeout_ms", 1000, 1..=3_600_000)?;
    Ok(HealthConfig {
        send_proxy: None,
        path,
        interval: Duration::from_millis(interval as u64),
        timeout: Duration::from_millis(timeout as u64),
        rise: number("rise", 2, 1..=100)? as u32,
        fall: number("fall", 3, 1..=100)? as u32,
        expect_status: number("expect_status", 200, 100..=599)? as u16,
    })
}

/// `"host:port"` or `{ addr = "host:port", weight = 3, backup = true }`.
fn server_config(server: Value) -> Result<ServerConfig, String> {
    let table = match server {
        Value::String(text) => return resolve(&text.to_string_lossy()).map(ServerConfig::plain),
        Value::Table(table) => table,
        other => {
            return Err(format!(
                "expected \"host:port\" or {{ addr = \"host:port\", ... }}, got {}",
                other.type_name()
            ));
        }
    };
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair.map_err(|error| error.to_string())?;
        let known = matches!(&key, Value::String(key) if SERVER_SETTINGS.contains(&&*key.to_string_lossy()));
        if !known {
            return Err(format!("unknown server setting {}", describe(&key)));
        }
    }
    let address = match table.raw_get::<Value>("addr").unwrap_or(Value::Nil) {
        Value::String(text) => resolve(&text.to_string_lossy())?,
        other => {
            return Err(format!(
                "addr: expected \"host:port\", got {}",
                describe(&other)
            ));
        }
    };
    let weight = match table.raw_get::<Value>("weight").unwrap_or(Value::Nil) {
        Value::Nil => 1,
        Value::Integer(weight) if (1..=1000).contains(&weight) => weight as u32,
        other => {
            return Err(format!(
                "weight: expected a whole number from 1 to 1000, got {}",
                describe(&other)
            ));
        }
    };
    let backup = match table.raw_get::<Value>("backup").unwrap_or(Value::Nil) {
        Value::Nil => false,
        Value::Boolean(backup) => backup,
        other => {
            return Err(format!(
                "backup: expected true or false, got {}",
                describe(&other)
            ));
        }
    };
    Ok(ServerConfig {
        address,
        weight,
        backup,
    })
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("\"{}\"", text.to_string_lossy()),
        Value::Integer(number) => number.to_string(),
        Value::Number(number) => number.to_string(),
        other => other.type_name().to_owned(),
    }
}

/// `"host:port"` or `"[v6]:port"`; a host name is resolved once, here.
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let has_port = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(format!("expected \"host:port\", got \"{text}\""));
    }
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve \"{text}\": {error}"))?
        .collect();
    // Prefer IPv4 for names like localhost, as most backends listen there.
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| format!("cannot resolve \"{text}\""))
}
