//! A reply table from a hook (`route()` or `respond()`): rsp's own answer
//! instead of a backend's.

use mlua::Value;

use crate::http::{self, EditError};
use crate::reply::LocalReply;

/// `{ status = 200, body = "...", headers = { ... } }`, returned by `hook`.
pub fn local_reply(table: &mlua::Table, hook: &str) -> Result<LocalReply, String> {
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
    let headers = reply_headers(table)?;
    if crate::reply::is_bodiless(status) && !body.is_empty() {
        crate::client_log!(
            log::Level::Error,
            "{hook}() returned a body with status {status}, which has none: sent without it"
        );
        body.clear();
    }
    Ok(LocalReply {
        status,
        headers,
        body,
    })
}

/// A reply table's `headers`: names and values (strings, or integers for
/// values) a response may carry; those rsp writes itself are left out.
fn reply_headers(table: &mlua::Table) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    match table
        .raw_get::<Value>("headers")
        .map_err(|error| error.to_string())?
    {
        Value::Nil => {}
        Value::Table(fields) => {
            for pair in fields.pairs::<Value, Value>() {
                let (name, value) = pair.map_err(|error| format!("reply headers: {error}"))?;
                let Value::String(name) = name else {
                    return Err(format!(
                        "reply headers: a field name must be a string, got a {}",
                        name.type_name()
                    ));
                };
                let name = name.to_string_lossy();
                let value = match value {
                    Value::String(value) => value.to_string_lossy(),
                    Value::Integer(number) => number.to_string(),
                    other => {
                        return Err(format!(
                            "reply header {name:?}: a value must be a string or an integer, got a {}",
                            other.type_name()
                        ));
                    }
                };
                match http::check_response_field(name.as_bytes(), value.as_bytes()) {
                    Ok(()) => headers.push((name, value)),
                    // rsp frames its answers, says what becomes of the
                    // connection, and writes the id it logged.
                    Err(EditError::Refused(_)) => continue,
                    Err(error) => return Err(format!("reply header {name:?}: {error}")),
                }
            }
        }
        other => {
            return Err(format!(
                "reply headers must be a table, got a {}",
                other.type_name()
            ));
        }
    }
    Ok(headers)
}
