//! The script's hooks (`hook.rs` lists them): `route(req)` (which pool,
//! server or local answer serves a request, and what the request says when
//! it gets there), `respond(req, res)` and `log(req, res)`, each called
//! through `Router::call` within its budget of Lua instructions.

mod fields;
mod lent;
mod reply;
mod request;
mod response;
mod state;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use mlua::{FromLuaMulti, HookTriggers, Lua, UserData, UserDataFields, Value, VmState};

use crate::balancer::Pool;
use crate::config::{DEFAULT_POOL, Hooks, Loaded};
use crate::hook::Hook;
use crate::reply::LocalReply;

use lent::Lender;
pub use reply::local_reply;
pub use request::RequestView;
pub use response::{LogView, ResponseView, Source};

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Index into the pools, and the key `route` gave for hashing.
    Pool(usize, Option<Vec<u8>>),
    Address(SocketAddr),
    Reply(LocalReply),
}

/// What `respond()` decided for a response.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// On to the client, as `respond()` left it.
    Continue,
    /// "retry": the request goes to another server of its pool.
    Retry,
    /// A reply table: rsp's own answer instead.
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

/// What the script's Lua state may hold at least: past its bound (the
/// worker's memory ceiling, `memory.rs`), an allocation fails that hook's
/// call (`string.rep("x", 2^30)` is one instruction). What requests keep
/// in it (`req.ctx`) is bounded per request and counted in the worker's
/// memory, so their sum meets the worker's bounds long before this one.
const LUA_MEMORY_FLOOR: usize = 64 * 1024 * 1024;

/// What a `req.ctx` table holds, roughly as Lua's allocator counts it:
/// strings' bytes, a slot per entry, nested tables (each once), a fixed
/// amount for functions and userdata. Counting stops past `limit`.
pub fn table_bytes(table: &mlua::Table, limit: usize) -> usize {
    let mut seen = Vec::new();
    let mut total = 0;
    count_table(table, limit, &mut seen, &mut total, 0);
    total
}

fn count_table(
    table: &mlua::Table,
    limit: usize,
    seen: &mut Vec<*const std::ffi::c_void>,
    total: &mut usize,
    depth: usize,
) {
    const TABLE: usize = 56;
    const SLOT: usize = 32;
    const OTHER: usize = 64;
    let pointer = table.to_pointer();
    if seen.contains(&pointer) {
        return;
    }
    seen.push(pointer);
    *total += TABLE;
    for pair in table.pairs::<Value, Value>() {
        if *total > limit {
            return;
        }
        let Ok((key, value)) = pair else {
            *total += OTHER;
            continue;
        };
        *total += SLOT;
        for part in [key, value] {
            match part {
                Value::String(text) => *total += 24 + text.as_bytes().len(),
                Value::Table(inner) if depth < 32 => {
                    count_table(&inner, limit, seen, total, depth + 1)
                }
                Value::Table(_)
                | Value::Function(_)
                | Value::UserData(_)
                | Value::Thread(_)
                | Value::LightUserData(_) => *total += OTHER,
                _ => {}
            }
        }
    }
}

/// How often (in Lua instructions) the budget of a hook's call is checked.
const BUDGET_CHECK_EVERY: u32 = 1000;

/// The budget of the call in progress: a script stuck in a loop fails its
/// call instead of stalling the event loop.
#[derive(Default)]
struct Budget {
    /// Checks passed in the current call.
    checks: Cell<u64>,
    /// The hook being called, for the error.
    hook: Cell<&'static str>,
    /// A call ran over its budget, and the thread it ran in was set to be
    /// checked at every instruction (so a `pcall` in a loop cannot catch
    /// the error and go on): `start` sets the main thread back, and any
    /// other thread (a coroutine kept in a global) is set back when its
    /// hook next fires within a budget.
    strict: Cell<bool>,
}

impl Budget {
    fn start(&self, hook: &'static str) {
        self.checks.set(0);
        self.hook.set(hook);
    }

    /// Checks the current call against `limit`.
    fn check(self: &Rc<Self>, lua: &Lua, limit: u64) -> mlua::Result<VmState> {
        let checks = self.checks.get() + 1;
        self.checks.set(checks);
        if checks * u64::from(BUDGET_CHECK_EVERY) > limit {
            // From now on every instruction of this thread fails, the
            // first one after a `pcall` that caught this error too. (Set
            // each time: the callback is every thread's, but the count is
            // the thread's own, and a new coroutine takes its creator's.)
            self.strict.set(true);
            install_budget(lua, self.clone(), limit, 1)?;
            return Err(mlua::Error::runtime(format!(
                "{}() ran over its budget of {limit} Lua instructions",
                self.hook.get()
            )));
        }
        if self.strict.get() {
            install_budget(lua, self.clone(), limit, BUDGET_CHECK_EVERY)?;
        }
        Ok(VmState::Continue)
    }
}

/// The budget's hook, for every thread (a coroutine's too: a hook set for
/// one thread removes itself from the coroutines it creates), firing every
/// `every` instructions of the thread it is set in.
fn install_budget(lua: &Lua, budget: Rc<Budget>, limit: u64, every: u32) -> mlua::Result<()> {
    let triggers = HookTriggers::default().every_nth_instruction(every);
    lua.set_global_hook(triggers, move |lua, _| budget.check(lua, limit))
}

/// The handles Lua holds for `req`, `res` (of `respond`) and `res` (of
/// `log`), made once.
struct Handles {
    request: Lender<RequestView>,
    response: Lender<ResponseView>,
    ended: Lender<LogView>,
}

/// How often a script state that holds more than its slack is collected
/// in full, at most, when it did not grow (`Router::may_hold_garbage`).
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What a hook is called with: the views lent to Lua for the call.
enum Call<'a> {
    /// `route(req)`
    Request(&'a mut RequestView),
    /// `respond(req, res)`
    Response(&'a mut RequestView, &'a mut ResponseView),
    /// `log(req, res)`
    Ended(&'a mut RequestView, &'a mut LogView),
    /// `route(conn)`, for a tcp listener
    Connection(&'a ConnectionView),
}

pub struct Router {
    lua: Lua,
    hooks: Hooks,
    default_pool: Option<usize>,
    budget: Rc<Budget>,
    /// The budget of each call, in Lua instructions.
    limit: u64,
    /// `None` only if Lua could not make them (out of memory): every hook
    /// call then fails.
    handles: Option<Handles>,
    /// The limiters and dictionaries the script uses (process-wide).
    pub scripted: crate::state::Scripted,
    /// What one request's `req.ctx` may hold.
    ctx_limit: usize,
    /// What the script's state held after its last full collection, and
    /// when that was.
    collected: std::cell::Cell<(usize, std::time::Instant)>,
}

impl Router {
    pub fn new(loaded: &Loaded, pools: &[Pool]) -> Router {
        let budget = Rc::new(Budget::default());
        let limit = loaded.config.route_instruction_limit;
        let memory = loaded.config.memory;
        let share = memory.worker_share(loaded.config.workers);
        let lua_limit = (share + share / 4).max(LUA_MEMORY_FLOOR);
        if let Err(error) = install_budget(&loaded.lua, budget.clone(), limit, BUDGET_CHECK_EVERY) {
            log::warn!("cannot set the Lua instruction budget: {error}");
        }
        if let Err(error) = loaded.lua.set_memory_limit(lua_limit) {
            log::warn!("cannot bound the Lua state's memory: {error}");
        }
        let scripted = crate::state::configure(
            &loaded.config.limits,
            &loaded.config.dicts,
            &loaded.config.maps,
        );
        if let Err(error) = state::install(&loaded.lua, &scripted) {
            log::error!("cannot give the script rsp.limit, rsp.dict and rsp.log: {error}");
        }
        let handles = (|| {
            Ok::<_, mlua::Error>(Handles {
                request: Lender::new(&loaded.lua)?,
                response: Lender::new(&loaded.lua)?,
                ended: Lender::new(&loaded.lua)?,
            })
        })();
        let handles = handles
            .inspect_err(|error| log::error!("cannot make the hooks' handles: {error}"))
            .ok();
        Router {
            scripted,
            handles,
            lua: loaded.lua.clone(),
            hooks: loaded.hooks.clone(),
            default_pool: pools.iter().position(|pool| pool.name == DEFAULT_POOL),
            budget,
            limit,
            ctx_limit: memory.script_per_request,
            collected: std::cell::Cell::new((0, crate::timer::now())),
        }
    }

    /// What the script's Lua state holds now (its allocator's count).
    pub fn script_memory(&self) -> usize {
        self.lua.used_memory()
    }

    /// A full garbage collection: what exchanges that ended kept in the
    /// script's state (their `req.ctx`) is freed now, not when Lua next
    /// allocates enough to get to it.
    pub fn collect_garbage(&self) {
        if let Err(error) = self.lua.gc_collect() {
            log::debug!("Lua garbage collection failed: {error}");
        }
        self.collected
            .set((self.lua.used_memory(), crate::timer::now()));
    }

    /// Whether the script's state may hold much garbage: it grew by more
    /// than `slack` since its last full collection, or holds more than
    /// `slack` and was last collected `COLLECT_EVERY` ago (that collection
    /// may have been in a burst, whose exchanges' `req.ctx` it then still
    /// counted live). After a burst, what ended exchanges left is freed
    /// within seconds, not only when memory is short or Lua next allocates
    /// enough to step its collector that far.
    pub fn may_hold_garbage(&self, slack: usize) -> bool {
        let used = self.lua.used_memory();
        let (collected, at) = self.collected.get();
        used > collected.saturating_add(slack)
            || (used > slack && crate::timer::now().saturating_duration_since(at) >= COLLECT_EVERY)
    }

    /// Measures what `req.ctx` holds after a hook; an error when it holds
    /// more than one request may (`memory.script_per_request`).
    fn check_ctx(&self, request: &mut RequestView, hook: &str) -> Result<(), String> {
        let Some((_, ctx)) = &request.ctx else {
            request.ctx_bytes = 0;
            return Ok(());
        };
        request.ctx_bytes = table_bytes(ctx, self.ctx_limit);
        if request.ctx_bytes > self.ctx_limit {
            // What it holds is let go now, not when the exchange ends.
            request.ctx = None;
            return Err(format!(
                "{hook}() left more than {} bytes in req.ctx (memory.script_per_request)",
                self.ctx_limit
            ));
        }
        Ok(())
    }

    /// Calls `hook` with `call`'s views lent to Lua, within the call's
    /// budget: the one way into the script. `None` when the script does
    /// not define `hook`.
    fn call<R: FromLuaMulti>(&self, hook: Hook, call: Call<'_>) -> Option<mlua::Result<R>> {
        let function = self.hooks.get(hook)?;
        self.budget.start(hook.name());
        if self.budget.strict.get() {
            // The main thread, where a call that ran over left it.
            let every = BUDGET_CHECK_EVERY;
            if let Err(error) = install_budget(&self.lua, self.budget.clone(), self.limit, every) {
                log::warn!("cannot reset the Lua instruction budget: {error}");
            }
        }
        let result = match (&self.handles, call) {
            // Once per tcp connection: a scoped userdata is cheap enough.
            (_, Call::Connection(view)) => self
                .lua
                .scope(|scope| function.call(scope.create_userdata_ref(view)?)),
            (None, _) => Err(no_handles()),
            (Some(handles), Call::Request(request)) => handles
                .request
                .lend(request, || function.call(&handles.request.handle)),
            (Some(handles), Call::Response(request, response)) => {
                handles.request.lend(request, || {
                    handles.response.lend(response, || {
                        function.call((&handles.request.handle, &handles.response.handle))
                    })
                })
            }
            (Some(handles), Call::Ended(request, ended)) => handles.request.lend(request, || {
                handles.ended.lend(ended, || {
                    function.call((&handles.request.handle, &handles.ended.handle))
                })
            }),
        };
        // What the script's state holds now counts in what the worker holds.
        crate::memory::set_script(self.lua.used_memory());
        Some(result)
    }

    /// Whether the script defines `hook`.
    pub fn has(&self, hook: Hook) -> bool {
        self.hooks.get(hook).is_some()
    }

    /// `route(req)`: where the request goes. What it changed in the
    /// request is what the backend gets; after it, the request is sealed.
    pub fn route(&self, request: &mut RequestView, pools: &[Pool]) -> Result<Route, RouteError> {
        let answer = self.call::<(Value, Value)>(Hook::Route, Call::Request(request));
        request.sealed = true;
        let Some(answer) = answer else {
            return self
                .default_pool
                .map(|pool| Route::Pool(pool, None))
                .ok_or(RouteError::NoRoute);
        };
        request.head.account();
        let (answer, key) = answer.map_err(|error| RouteError::Script(error.to_string()))?;
        self.check_ctx(request, "route")
            .map_err(RouteError::Script)?;
        read_answer(answer, key, pools)
    }

    /// Whether the script has a `respond` hook: without one, a response
    /// head is never copied for it.
    pub fn responds(&self) -> bool {
        self.has(Hook::Respond)
    }

    pub fn logs(&self) -> bool {
        self.has(Hook::Log)
    }

    /// `respond(req, res)`: what the script makes of a response head. A
    /// script that fails or runs over its budget leaves the response as it
    /// was (with what it changed before it failed) and is logged.
    pub fn respond(&self, request: &mut RequestView, response: &mut ResponseView) -> Decision {
        let Some(answer) = self.call::<Value>(Hook::Respond, Call::Response(request, response))
        else {
            return Decision::Continue;
        };
        let client = request.client;
        if let Err(why) = self.check_ctx(request, "respond") {
            crate::client_log!(log::Level::Warn, "{client}: 500, {why}");
            return Decision::Reply(crate::reply::ErrorReply::ScriptFailed.local());
        }
        match answer {
            Ok(Value::Nil) => Decision::Continue,
            Ok(Value::String(word)) if &*word.as_bytes() == b"retry" => Decision::Retry,
            Ok(Value::Table(table)) => match local_reply(&table, "respond") {
                Ok(reply) => Decision::Reply(reply),
                Err(error) => {
                    crate::client_log!(
                        log::Level::Warn,
                        "{client}: respond(): {error}; the response goes on unchanged"
                    );
                    Decision::Continue
                }
            },
            Ok(other) => {
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: respond() returned a {}; expected nil, \"retry\" or a reply table; the response goes on unchanged",
                    other.type_name()
                );
                Decision::Continue
            }
            Err(error) => {
                crate::client_log!(
                    log::Level::Warn,
                    "{client}: respond() failed: {}; the response goes on unchanged",
                    first_line(&error)
                );
                Decision::Continue
            }
        }
    }

    /// `log(req, res)` after an exchange ended; a failure is only logged.
    pub fn log(&self, request: &mut RequestView, ended: &mut LogView) {
        if let Some(Err(error)) = self.call::<()>(Hook::Log, Call::Ended(request, ended)) {
            crate::client_log!(
                log::Level::Warn,
                "{}: log() failed: {}",
                request.client,
                first_line(&error)
            );
        }
    }

    /// `route(conn)` for a connection accepted by a `mode = "tcp"` listener
    /// without a pool of its own.
    pub fn route_connection(
        &self,
        connection: &ConnectionView,
        pools: &[Pool],
    ) -> Result<Route, RouteError> {
        let (answer, key) = self
            .call::<(Value, Value)>(Hook::Route, Call::Connection(connection))
            .ok_or(RouteError::NoRoute)?
            .map_err(|error| RouteError::Script(error.to_string()))?;
        read_answer(answer, key, pools)
    }
}

fn no_handles() -> mlua::Error {
    mlua::Error::runtime("the hooks' handles could not be made")
}

/// An error's message without Lua's traceback.
fn first_line(error: &mlua::Error) -> String {
    let text = match error {
        mlua::Error::CallbackError { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_owned()
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
        Value::Table(table) => local_reply(&table, "route")
            .map(Route::Reply)
            .map_err(RouteError::Script),
        other => Err(RouteError::Script(format!(
            "route() returned a {}; expected a pool name, \"host:port\" or a reply table",
            other.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"GET /static/site.css?v=3 HTTP/1.1\r\nHost: www.example.com\r\n\
User-Agent: Mozilla/5.0\r\nAccept: text/css,*/*;q=0.1\r\nCookie: session=abc123\r\n\r\n";
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n\
Content-Length: 612\r\n\r\n";

    /// Nanoseconds per call of `call`: the best of 5 runs of 200,000.
    fn nanoseconds_per(mut call: impl FnMut()) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = std::time::Instant::now();
            for _ in 0..200_000 {
                call();
            }
            best = best.min(start.elapsed().as_nanos() as f64 / 200_000.0);
        }
        best
    }

    /// Why `lent.rs` keeps its `unsafe`: the same hooks, called through the
    /// handles lent per call and through a userdata made per call in
    /// mlua's scope (the safe way). A timing, so run by hand, in release:
    /// `cargo test --release --lib lent_handles -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing: run by hand in a release build"]
    fn lent_handles_against_scoped_userdata() {
        let path = std::env::temp_dir().join(format!("rsp-lent-{}.lua", std::process::id()));
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\n\
             pools = { web = { servers = { \"127.0.0.1:8081\" } } }\n\
             function route(req) return \"web\" end\n\
             function respond(req, res) end\n",
        )
        .unwrap();
        let loaded = crate::config::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let pools: Vec<Pool> = loaded.config.pools.iter().map(Pool::new).collect();
        let router = Router::new(&loaded, &pools);
        let mut request = RequestView::new("192.0.2.1:5000".parse().unwrap(), false);
        let policy = crate::http::RequestPolicy::default();
        request
            .head
            .parse(REQUEST, &policy, false)
            .unwrap()
            .unwrap();
        let mut response = ResponseView::new();
        response.head.read(RESPONSE).unwrap();
        let route = router.hooks.get(Hook::Route).unwrap().clone();
        let respond = router.hooks.get(Hook::Respond).unwrap().clone();
        let lua = &router.lua;

        let lent_route = nanoseconds_per(|| {
            request.sealed = false;
            std::hint::black_box(router.route(&mut request, &pools).unwrap());
        });
        let scoped_route = nanoseconds_per(|| {
            request.sealed = false;
            router.budget.start("route");
            let answer = lent::scoped(lua, &mut request, |req| route.call::<(Value, Value)>(req));
            std::hint::black_box(read_answer(answer.unwrap().0, Value::Nil, &pools).unwrap());
            crate::memory::set_script(lua.used_memory());
        });
        let lent_respond = nanoseconds_per(|| {
            std::hint::black_box(router.respond(&mut request, &mut response));
        });
        let scoped_respond = nanoseconds_per(|| {
            router.budget.start("respond");
            let answer = lent::scoped(lua, &mut request, |req| {
                lent::scoped(lua, &mut response, |res| respond.call::<Value>((req, res)))
            });
            std::hint::black_box(answer.unwrap());
            crate::memory::set_script(lua.used_memory());
        });
        println!("route(req):        lent {lent_route:>6.0} ns, scoped {scoped_route:>6.0} ns");
        println!("respond(req, res): lent {lent_respond:>6.0} ns, scoped {scoped_respond:>6.0} ns");
    }
}
