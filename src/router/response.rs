//! The response as `respond(req, res)` and `log(req, res)` see it.

use std::net::SocketAddr;

use mlua::{UserData, UserDataFields, UserDataMethods, Value};

use crate::http::{EditError, ResponseHead};

use super::fields::{Change, Fields, add_field_methods};
use super::lent::Handle;

/// Who wrote a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Backend,
    /// rsp's own answer: an error (502, 503, 504, ...) or a reply table.
    Rsp,
}

/// A response head before the client sees it; kept by the exchange and
/// reused, so a `respond` call allocates nothing for the head.
pub struct ResponseView {
    pub head: ResponseHead,
    pub source: Source,
    /// The backend that answered; `None` for rsp's own answers.
    pub server: Option<SocketAddr>,
    /// `res.ttl = seconds`: how long the cache keeps it fresh, whatever
    /// its fields say (`no-store` and `private` still keep it out).
    pub ttl: Option<u64>,
}

impl ResponseView {
    pub fn new() -> ResponseView {
        ResponseView {
            head: ResponseHead::default(),
            source: Source::Backend,
            server: None,
            ttl: None,
        }
    }
}

impl Fields for ResponseView {
    const NAME: &'static str = "res";

    fn field(&self, name: &[u8]) -> Option<&[u8]> {
        self.head.header(name)
    }

    fn field_values(
        &self,
        name: &[u8],
        each: &mut dyn FnMut(&[u8]) -> mlua::Result<()>,
    ) -> mlua::Result<()> {
        self.head
            .fields()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .try_for_each(|(_, value)| each(value))
    }

    fn change(&mut self, name: &[u8], change: Change) -> Result<(), EditError> {
        match change {
            Change::Set(value) => self.head.set_header(name, value),
            Change::Add(value) => self.head.add_header(name, value),
            Change::Delete => self.head.del_header(name),
        }
    }
}

impl Default for ResponseView {
    fn default() -> ResponseView {
        ResponseView::new()
    }
}

impl UserData for Handle<ResponseView> {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("status", |_, this| this.with(|view| Ok(view.head.status())));
        fields.add_field_method_set("status", |_, this, status: Value| {
            let status = match status {
                Value::Integer(status) => u16::try_from(status).unwrap_or(0),
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "res.status = {}: a status is a number",
                        other.type_name()
                    )));
                }
            };
            this.with(|view| {
                view.head.set_status(status).map_err(|error| {
                    mlua::Error::runtime(format!("res.status = {status}: {error}"))
                })
            })
        });
        fields.add_field_method_get("ttl", |_, this| this.with(|view| Ok(view.ttl)));
        fields.add_field_method_set("ttl", |_, this, ttl: Value| {
            let seconds = match ttl {
                Value::Integer(seconds) if seconds >= 0 => Some(seconds as u64),
                Value::Nil => None,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "res.ttl = {other:?}: seconds, a whole number from 0"
                    )));
                }
            };
            this.with(|view| {
                view.ttl = seconds.map(|seconds| seconds.min(crate::cache::policy::MAX_DELTA));
                Ok(())
            })
        });
        fields.add_field_method_get("source", |_, this| {
            this.with(|view| {
                Ok(match view.source {
                    Source::Backend => "backend",
                    Source::Rsp => "rsp",
                })
            })
        });
        fields.add_field_method_get("server", |_, this| {
            this.with(|view| Ok(view.server.map(|server| server.to_string())))
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        add_field_methods(methods);
    }
}

/// How an exchange ended, for `log(req, res)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogView {
    /// The status the client was sent (0: none).
    pub status: u16,
    /// Bytes written to the client, heads included.
    pub bytes_sent: u64,
    pub duration_ms: f64,
    pub server: Option<SocketAddr>,
    /// The whole response reached the client.
    pub completed: bool,
}

impl UserData for Handle<LogView> {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("status", |_, this| this.with(|view| Ok(view.status)));
        fields.add_field_method_get("bytes_sent", |_, this| {
            this.with(|view| Ok(view.bytes_sent))
        });
        fields.add_field_method_get("duration_ms", |_, this| {
            this.with(|view| Ok(view.duration_ms))
        });
        fields.add_field_method_get("server", |_, this| {
            this.with(|view| Ok(view.server.map(|server| server.to_string())))
        });
        fields.add_field_method_get("completed", |_, this| this.with(|view| Ok(view.completed)));
    }
}
