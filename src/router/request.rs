//! The request as Lua sees it: `req.method`, `req:header(name)`, ... and,
//! in `route()`, the methods that rewrite it. Lua holds a handle to it,
//! lent for the length of a call (`lent`).

use std::net::SocketAddr;

use mlua::{LuaString, Table, UserData, UserDataFields, UserDataMethods};

use crate::http::{EditError, RequestHead};

use super::fields::{Change, Fields, add_field_methods};
use super::lent::Handle;

pub struct RequestView {
    pub head: RequestHead,
    pub client: SocketAddr,
    /// The request's `X-Request-Id`; empty when ids are switched off.
    pub request_id: String,
    /// The connection came over TLS, asking for this name (SNI).
    pub tls: bool,
    pub sni: Option<String>,
    /// `req.ctx`, made when a hook first asks for it: what `route()` keeps
    /// there, `respond()` and `log()` see; with the Lua state it is of
    /// (a request routed before a reload meets the new script's hooks with
    /// a new, empty table: a value may not pass between states).
    pub ctx: Option<(u64, Table)>,
    /// What `ctx` held after the last hook (`Router::check_ctx`).
    pub ctx_bytes: usize,
    /// `route()` is done: the request went on as it was then, and the
    /// methods that change it are refused.
    pub sealed: bool,
    /// `req:no_cache()`: the cache neither answers nor stores it.
    pub no_cache: bool,
    /// `req:cache_key(key)`: the key it is stored under, in place of the
    /// host and target.
    pub cache_key: Option<String>,
}

impl RequestView {
    /// The view of a request from `client`, before its head is read.
    pub fn new(client: SocketAddr, tls: bool) -> RequestView {
        RequestView {
            head: RequestHead::default(),
            client,
            request_id: String::new(),
            tls,
            sni: None,
            ctx: None,
            ctx_bytes: 0,
            sealed: false,
            no_cache: false,
            cache_key: None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        Some(self.request_id.as_str()).filter(|id| !id.is_empty())
    }

    /// Ready for the next request on the connection.
    pub fn reset(&mut self) {
        self.ctx = None;
        self.ctx_bytes = 0;
        self.sealed = false;
        self.no_cache = false;
        self.cache_key = None;
    }

    /// Applies one change `route()` asked for, as a Lua error naming the
    /// method and its argument when rsp refuses it.
    fn edit(
        &mut self,
        method: &str,
        argument: &[u8],
        change: impl FnOnce(&mut RequestHead) -> Result<(), EditError>,
    ) -> mlua::Result<()> {
        let argument = || String::from_utf8_lossy(argument);
        if let Some(why) = self.closed() {
            return Err(mlua::Error::runtime(format!(
                "req:{method}({:?}): {why}",
                argument()
            )));
        }
        change(&mut self.head).map_err(|error| {
            mlua::Error::runtime(format!("req:{method}({:?}): {error}", argument()))
        })
    }
}

impl Fields for RequestView {
    const NAME: &'static str = "req";

    fn field(&self, name: &[u8]) -> Option<&[u8]> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|name| self.head.header(name))
    }

    fn field_values(
        &self,
        name: &[u8],
        each: &mut dyn FnMut(&[u8]) -> mlua::Result<()>,
    ) -> mlua::Result<()> {
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(());
        };
        self.head.header_values(name).try_for_each(each)
    }

    fn closed(&self) -> Option<&'static str> {
        self.sealed
            .then_some("the request has gone on already; change it in route()")
    }

    fn change(&mut self, name: &[u8], change: Change) -> Result<(), EditError> {
        match change {
            Change::Set(value) => self.head.set_header(name, value),
            Change::Add(value) => self.head.add_header(name, value),
            Change::Delete => self.head.del_header(name),
        }
    }
}

impl UserData for Handle<RequestView> {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("method", |lua, this| {
            this.with(|view| lua.create_string(view.head.method()))
        });
        fields.add_field_method_get("target", |lua, this| {
            this.with(|view| lua.create_string(view.head.target()))
        });
        fields.add_field_method_get("raw_target", |lua, this| {
            this.with(|view| lua.create_string(view.head.raw_target()))
        });
        fields.add_field_method_get("path", |lua, this| {
            this.with(|view| lua.create_string(view.head.path()))
        });
        fields.add_field_method_get("query", |lua, this| {
            this.with(|view| {
                view.head
                    .query()
                    .map(|query| lua.create_string(query))
                    .transpose()
            })
        });
        fields.add_field_method_get("host", |lua, this| {
            this.with(|view| lua.create_string(view.head.host()))
        });
        fields.add_field_method_get("version", |_, this| {
            this.with(|view| Ok(view.head.version()))
        });
        fields.add_field_method_get("client_ip", |_, this| {
            this.with(|view| Ok(view.client.ip().to_string()))
        });
        fields.add_field_method_get("client_port", |_, this| {
            this.with(|view| Ok(view.client.port()))
        });
        fields.add_field_method_get("mode", |_, _| Ok("http"));
        fields.add_field_method_get("tls", |_, this| this.with(|view| Ok(view.tls)));
        fields.add_field_method_get("sni", |lua, this| {
            this.with(|view| {
                view.sni
                    .as_deref()
                    .map(|sni| lua.create_string(sni))
                    .transpose()
            })
        });
        fields.add_field_method_get("request_id", |lua, this| {
            this.with(|view| {
                view.request_id()
                    .map(|id| lua.create_string(id))
                    .transpose()
            })
        });
        fields.add_field_method_get("ctx", |lua, this| {
            this.with(|view| {
                let state = this.state();
                if let Some((of, ctx)) = &view.ctx
                    && *of == state
                {
                    return Ok(ctx.clone());
                }
                let table = lua.create_table()?;
                view.ctx = Some((state, table.clone()));
                Ok(table)
            })
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_field_methods(methods);
        methods.add_method("set_path", |_, this, path: LuaString| {
            let path = path.as_bytes();
            this.with(|view| view.edit("set_path", &path, |head| head.set_path(&path)))
        });
        methods.add_method("set_query", |_, this, query: Option<LuaString>| {
            let query = query.map(|query| query.as_bytes().to_vec());
            let shown = query.clone().unwrap_or_default();
            this.with(|view| {
                view.edit("set_query", &shown, |head| head.set_query(query.as_deref()))
            })
        });
        methods.add_method("set_host", |_, this, host: LuaString| {
            let host = host.as_bytes();
            this.with(|view| view.edit("set_host", &host, |head| head.set_host(&host)))
        });
        methods.add_method("no_cache", |_, this, ()| {
            this.with(|view| {
                view.edit("no_cache", b"", |_| Ok(()))?;
                view.no_cache = true;
                Ok(())
            })
        });
        methods.add_method("cache_key", |_, this, key: LuaString| {
            let key = key.to_string_lossy();
            this.with(|view| {
                view.edit("cache_key", key.as_bytes(), |_| Ok(()))?;
                if key.is_empty() || key.len() > 4096 {
                    return Err(mlua::Error::runtime(
                        "req:cache_key(key): a key is 1 to 4096 bytes",
                    ));
                }
                view.cache_key = Some(key);
                Ok(())
            })
        });
    }
}
