//! A reply table from a hook (`route()` or `respond()`): rsp's own answer
//! instead of a backend's.

use mlua::Value;

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
