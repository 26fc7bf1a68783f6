//! The Lua `route(req)` call: which pool, server or local answer serves a
//! request.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use mlua::{
    Function, HookTriggers, Lua, UserData, UserDataFields, UserDataMethods, Value, VmState,
};

use crate::balancer::Pool;
use crate::config::{DEFAULT_POOL, Loaded};
use crate::http::RequestHead;
use crate::reply::LocalReply;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Index into the pools, and the key `route` gave for hashing.
    Pool(usize, Option<Vec<u8>>),
    Address(SocketAddr),
    Reply(LocalReply),
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// `route` returned nothing.
    NoRoute,
    UnknownPool(String),
    /// `route` raised an error or returned something unusable.
    Script(String),
}

/// The request as Lua sees it: `req.method`, `req:header(name)`, ...
/// Lua borrows it only for the duration of the call.
pub struct RequestView {
    pub head: RequestHead,
    pub client: SocketAddr,
    /// The request's `X-Request-Id`; empty when ids are switched off.
    pub request_id: String,
    /// The connection came over TLS, asking for this name (SNI).
    pub tls: bool,
    pub sni: Option<String>,
}

impl RequestView {
    pub fn request_id(&self) -> Option<&str> {
        Some(self.request_id.as_str()).filter(|id| !id.is_empty())
    }
}

impl UserData for RequestView {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("method", |lua, this| lua.create_string(this.head.method()));
        fields.add_field_method_get("target", |lua, this| lua.create_string(this.head.target()));
        fields.add_field_method_get("raw_target", |lua, this| {
            lua.create_string(this.head.raw_target())
        });
        fields.add_field_method_get("path", |lua, this| lua.create_string(this.head.path()));
        fields.add_field_method_get("query", |lua, this| {
            this.head
                .query()
                .map(|query| lua.create_string(query))
                .transpose()
        });
        fields.add_field_method_get("host", |lua, this| lua.create_string(this.head.host()));
        fields.add_field_method_get("version", |_, this| Ok(this.head.version()));
        fields.add_field_method_get("client_ip", |_, this| Ok(this.client.ip().to_string()));
        fields.add_field_method_get("client_port", |_, this| Ok(this.client.port()));
        fields.add_field_method_get("mode", |_, _| Ok("http"));
        fields.add_field_method_get("tls", |_, this| Ok(this.tls));
        fields.add_field_method_get("sni", |lua, this| {
            this.sni
                .as_deref()
                .map(|sni| lua.create_string(sni))
                .transpose()
        });
        fields.add_field_method_get("request_id", |lua, this| {
            this.request_id()
                .map(|id| lua.create_string(id))
                .transpose()
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("header", |lua, this, name: mlua::LuaString| {
            let name = name.to_str()?;
            this.head
                .header(&name)
                .map(|value| lua.create_string(value))
                .transpose()
        });
    }
}

/// A TCP connection as Lua sees it: `conn.client_ip`, `conn.client_port`,
/// `conn.listen` (the listener's "ip:port") and `conn.mode` ("tcp").
pub struct ConnectionView {
    pub client: SocketAddr,
    pub listen: SocketAddr,
}

impl UserData for ConnectionView {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("client_ip", |_, this| Ok(this.client.ip().to_string()));
        fields.add_field_method_get("client_port", |_, this| Ok(this.client.port()));
        fields.add_field_method_get("listen", |_, this| Ok(this.listen.to_string()));
        fields.add_field_method_get("mode", |_, _| Ok("tcp"));
    }
}

/// How often (in Lua instructions) the budget of a `route()` call is checked.
const BUDGET_CHECK_EVERY: u32 = 1000;

pub struct Router {
    lua: Lua,
    route: Option<Function>,
    default_pool: Option<usize>,
    /// Budget checks passed in the current call: a script stuck in a loop
    /// fails its request instead of stalling the event loop.
    checks: Rc<Cell<u64>>,
}

impl Router {
    pub fn new(loaded: &Loaded, pools: &[Pool]) -> Router {
        let checks = Rc::new(Cell::new(0u64));
        let counter = checks.clone();
        let limit = loaded.config.route_instruction_limit;
        let triggers = HookTriggers::default().every_nth_instruction(BUDGET_CHECK_EVERY);
        let hook = loaded.lua.set_hook(triggers, move |_, _| {
            counter.set(counter.get() + 1);
            if counter.get() * u64::from(BUDGET_CHECK_EVERY) > limit {
                return Err(mlua::Error::runtime(format!(
                    "route() ran over its budget of {limit} Lua instructions"
                )));
            }
            Ok(VmState::Continue)
        });
        if let Err(error) = hook {
            log::warn!("cannot set the Lua instruction budget: {error}");
        }
        Router {
            lua: loaded.lua.clone(),
            route: loaded.route.clone(),
            default_pool: pools.iter().position(|pool| pool.name == DEFAULT_POOL),
            checks,
        }
    }

    pub fn route(&self, request: &RequestView, pools: &[Pool]) -> Result<Route, RouteError> {
        let Some(route) = &self.route else {
            return self
                .default_pool
                .map(|pool| Route::Pool(pool, None))
                .ok_or(RouteError::NoRoute);
        };
        self.call(route, request, pools)
    }

    /// `route(conn)` for a connection accepted by a `mode = "tcp"` listener
    /// without a pool of its own.
    pub fn route_connection(
        &self,
        connection: &ConnectionView,
        pools: &[Pool],
    ) -> Result<Route, RouteError> {
        let Some(route) = &self.route else {
            return Err(RouteError::NoRoute);
        };
        self.call(route, connection, pools)
    }

    /// One `route` call within its instruction budget, `view` lent to Lua
    /// for the call only.
    fn call<T: UserData + 'static>(
        &self,
        route: &Function,
        view: &T,
        pools: &[Pool],
    ) -> Result<Route, RouteError> {
        self.checks.set(0);
        let (answer, key) = self
            .lua
            .scope(|scope| route.call::<(Value, Value)>(scope.create_userdata_ref(view)?))
            .map_err(|error| RouteError::Script(error.to_string()))?;
        read_answer(answer, key, pools)
    }
}

/// What `route` returned: a pool (and hash key), "ip:port", or a reply.
fn read_answer(answer: Value, key: Value, pools: &[Pool]) -> Result<Route, RouteError> {
    match answer {
        Value::Nil => Err(RouteError::NoRoute),
        Value::String(name) => {
            let name = name.as_bytes();
            if let Some(index) = pools
                .iter()
                .position(|pool| pool.name.as_bytes() == &name[..])
            {
                let key = match key {
                    Value::Nil => None,
                    Value::String(key) => Some(key.as_bytes().to_vec()),
                    Value::Integer(key) => Some(key.to_string().into_bytes()),
                    other => {
                        return Err(RouteError::Script(format!(
                            "route() returned a {} as the hash key",
                            other.type_name()
                        )));
                    }
                };
                return Ok(Route::Pool(index, key));
            }
            let name = String::from_utf8_lossy(&name).into_owned();
            match name.parse::<SocketAddr>() {
                Ok(address) => Ok(Route::Address(address)),
                Err(_) => Err(RouteError::UnknownPool(name)),
            }
        }
        Value::Table(table) => local_reply(&table)
            .map(Route::Reply)
            .map_err(RouteError::Script),
        other => Err(RouteError::Script(format!(
            "route() returned a {}; expected a pool name, \"host:port\" or a reply table",
            other.type_name()
        ))),
    }
}

/// `{ status = 200, body = "...", headers = { ... } }`
fn local_reply(table: &mlua::Table) -> Result<LocalReply, String> {
    let status = match table
        .raw_get::<Value>("status")
        .map_err(|error| error.to_string())?
    {
        Value::Nil => 200,
        Value::Integer(status) if (200..=599).contains(&status) => status as u16,
        other => {
            return Err(format!(
                "reply status must be a number from 200 to 599, got {other:?}"
            ));
        }
    };
    let mut body = match table
        .raw_get::<Value>("body")
        .map_err(|error| error.to_string())?
    {
        Value::Nil => Vec::new(),
        Value::String(body) => body.as_bytes().to_vec(),
        other => {
            return Err(format!(
                "reply body must be a string, got a {}",
                other.type_name()
            ));
        }
    };
    let mut headers = Vec::new();
    match table
        .raw_get::<Value>("headers")
        .map_err(|error| error.to_string())?
    {
        Value::Nil => {}
        Value::Table(fields) => {
            for pair in fields.pairs::<mlua::LuaString, mlua::LuaString>() {
                let (name, value) = pair.map_err(|error| format!("reply headers: {error}"))?;
                let (name, value) = (name.to_string_lossy(), value.to_string_lossy());
                let valid_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                let valid_value = value
                    .bytes()
                    .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f));
                if !valid_name || !valid_value {
                    return Err(format!("reply header {name:?} is not a valid field"));
                }
                if name.eq_ignore_ascii_case("content-length")
                    || name.eq_ignore_ascii_case("connection")
                    || name.eq_ignore_ascii_case("transfer-encoding")
                {
                    continue; // rsp frames the reply itself
                }
                headers.push((name, value));
            }
        }
        other => {
            return Err(format!(
                "reply headers must be a table, got a {}",
                other.type_name()
            ));
        }
    }
    if crate::reply::is_bodiless(status) && !body.is_empty() {
        log::error!(
            "route() returned a body with status {status}, which has none: sent without it"
        );
        body.clear();
    }
    Ok(LocalReply {
        status,
        headers,
        body,
    })
}
