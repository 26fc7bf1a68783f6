//! What the `rsp` table gives scripts beyond `rsp.now()`: `rsp.limit`,
//! `rsp.dict` over the process-wide state, and `rsp.log`.

use std::collections::HashMap;
use std::sync::Arc;

use mlua::{Lua, LuaString, Table, UserData, UserDataMethods, Value};

use crate::state::{self, Dict, DictError, LiveMap, Scripted, Stored, Verdict};

/// Longest key a limiter or dictionary takes, and longest text value.
const MAX_KEY_BYTES: usize = 4096;
const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest message `rsp.log` writes; the rest is cut.
const MAX_LOG_BYTES: usize = 8 * 1024;

/// Adds `rsp.limit`, `rsp.dict` and `rsp.log` to the script's `rsp` table.
pub fn install(lua: &Lua, scripted: &Scripted) -> mlua::Result<()> {
    let rsp: Table = lua.globals().raw_get("rsp")?;
    let limits = scripted.limits.clone();
    rsp.raw_set(
        "limit",
        lua.create_function(move |lua, (name, key): (LuaString, Value)| {
            let name = name.to_str()?;
            let Some(limiter) = limits.get(&*name) else {
                return Err(mlua::Error::runtime(format!(
                    "rsp.limit({name:?}): no such limiter (declare it in limits = {{ ... }})"
                )));
            };
            let key = key_bytes(lua, "rsp.limit", key)?;
            match limiter.check(&key.as_bytes(), state::now_nanos()) {
                Verdict::Allowed => Ok((true, Value::Nil)),
                Verdict::Refused { retry_after } => {
                    // Whole seconds, as Retry-After wants them, never 0.
                    let seconds = retry_after.div_ceil(1_000_000_000).max(1);
                    Ok((false, Value::Integer(seconds as i64)))
                }
            }
        })?,
    )?;
    install_lookup(
        lua,
        &rsp,
        "dict",
        "dictionary",
        "dicts",
        &scripted.dicts,
        DictHandle,
    )?;
    install_lookup(lua, &rsp, "map", "map", "maps", &scripted.maps, MapHandle)?;
    rsp.raw_set(
        "log",
        lua.create_function(|_, (level, message): (LuaString, LuaString)| {
            let level = match &*level.to_str()? {
                "error" => log::Level::Error,
                "warn" => log::Level::Warn,
                "info" => log::Level::Info,
                "debug" => log::Level::Debug,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "rsp.log({other:?}): the level is \"error\", \"warn\", \"info\" or \"debug\""
                    )));
                }
            };
            // One line per call, of bounded length: a message cannot forge
            // others or hold the loop; control characters are escaped.
            let bytes = message.as_bytes();
            let cut = bytes.len() > MAX_LOG_BYTES;
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LOG_BYTES)]);
            let mut line = String::with_capacity(text.len());
            for c in text.chars() {
                if c.is_control() {
                    line.extend(c.escape_default());
                } else {
                    line.push(c);
                }
            }
            if cut {
                line.push_str(" [cut]");
            }
            log::log!(target: "rsp::script", level, "{line}");
            Ok(())
        })?,
    )?;
    Ok(())
}

/// `rsp.FUNCTION(name)`: the handle of the `noun` declared as `name` in
/// the `setting` table, made once here for each.
fn install_lookup<T, H: UserData + 'static>(
    lua: &Lua,
    rsp: &Table,
    function: &'static str,
    noun: &'static str,
    setting: &'static str,
    declared: &HashMap<String, Arc<T>>,
    handle: fn(Arc<T>) -> H,
) -> mlua::Result<()> {
    let mut handles = HashMap::new();
    for (name, item) in declared {
        handles.insert(name.clone(), lua.create_userdata(handle(item.clone()))?);
    }
    rsp.raw_set(
        function,
        lua.create_function(move |_, name: LuaString| {
            let name = name.to_str()?;
            handles.get(&*name).cloned().ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "rsp.{function}({name:?}): no such {noun} (declare it in {setting} = {{ ... }})"
                ))
            })
        })?,
    )
}

/// A key: a string, or a number as Lua writes it.
fn key_bytes(lua: &Lua, method: &str, key: Value) -> mlua::Result<LuaString> {
    let key = match key {
        Value::String(key) => key,
        number @ (Value::Integer(_) | Value::Number(_)) => lua
            .coerce_string(number)?
            .ok_or_else(|| mlua::Error::runtime(format!("{method}: the key is not a string")))?,
        other => {
            return Err(mlua::Error::runtime(format!(
                "{method}: a key is a string or a number, got a {}",
                other.type_name()
            )));
        }
    };
    if key.as_bytes().len() > MAX_KEY_BYTES {
        return Err(mlua::Error::runtime(format!(
            "{method}: a key is at most {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(key)
}

fn stored(method: &str, value: Value) -> mlua::Result<Stored> {
    match value {
        Value::String(text) => {
            let bytes = text.as_bytes();
            if bytes.len() > MAX_VALUE_BYTES {
                return Err(mlua::Error::runtime(format!(
                    "{method}: a value is at most {MAX_VALUE_BYTES} bytes"
                )));
            }
            Ok(Stored::Text(bytes.to_vec().into()))
        }
        Value::Integer(number) => Ok(Stored::Integer(number)),
        Value::Number(number) => Ok(Stored::Number(number)),
        Value::Boolean(flag) => Ok(Stored::Boolean(flag)),
        other => Err(mlua::Error::runtime(format!(
            "{method}: a value is a string, a number or a boolean, got a {}",
            other.type_name()
        ))),
    }
}

fn to_lua(lua: &Lua, value: Stored) -> mlua::Result<Value> {
    Ok(match value {
        Stored::Text(text) => Value::String(lua.create_string(&*text)?),
        Stored::Integer(number) => Value::Integer(number),
        Stored::Number(number) => Value::Number(number),
        Stored::Boolean(flag) => Value::Boolean(flag),
    })
}

/// A time to live in milliseconds: nil or 0 for none.
fn ttl(method: &str, ttl: Option<i64>) -> mlua::Result<Option<u64>> {
    match ttl {
        None => Ok(None),
        Some(ttl) if ttl >= 0 => Ok(Some(ttl as u64)),
        Some(ttl) => Err(mlua::Error::runtime(format!(
            "{method}: a ttl is milliseconds, 0 or more, got {ttl}"
        ))),
    }
}

struct DictHandle(Arc<Dict>);

impl UserData for DictHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method(
            "set",
            |lua, this, (key, value, ttl_ms): (Value, Value, Option<i64>)| {
                let key = key_bytes(lua, "dict:set", key)?;
                if value.is_nil() {
                    this.0.delete(&key.as_bytes());
                    return Ok(());
                }
                let value = stored("dict:set", value)?;
                let ttl = ttl("dict:set", ttl_ms)?;
                this.0.set(&key.as_bytes(), value, ttl, state::now_nanos());
                Ok(())
            },
        );
        methods.add_method("get", |lua, this, key: Value| {
            let key = key_bytes(lua, "dict:get", key)?;
            match this.0.get(&key.as_bytes(), state::now_nanos()) {
                Some(value) => to_lua(lua, value),
                None => Ok(Value::Nil),
            }
        });
        methods.add_method(
            "incr",
            |lua, this, (key, by, ttl_ms): (Value, Option<Value>, Option<i64>)| {
                let key = key_bytes(lua, "dict:incr", key)?;
                let by = match by {
                    None | Some(Value::Nil) => Stored::Integer(1),
                    Some(Value::Integer(by)) => Stored::Integer(by),
                    Some(Value::Number(by)) => Stored::Number(by),
                    Some(other) => {
                        return Err(mlua::Error::runtime(format!(
                            "dict:incr: the step is a number, got a {}",
                            other.type_name()
                        )));
                    }
                };
                let ttl = ttl("dict:incr", ttl_ms)?;
                match this.0.incr(&key.as_bytes(), by, ttl, state::now_nanos()) {
                    Ok(sum) => to_lua(lua, sum),
                    Err(DictError::NotANumber) => Err(mlua::Error::runtime(
                        "dict:incr: the value there is not a number",
                    )),
                    Err(DictError::Overflow) => Err(mlua::Error::runtime(
                        "dict:incr: the sum is past a 64-bit integer",
                    )),
                }
            },
        );
        methods.add_method("delete", |lua, this, key: Value| {
            let key = key_bytes(lua, "dict:delete", key)?;
            Ok(this.0.delete(&key.as_bytes()))
        });
    }
}

struct MapHandle(Arc<LiveMap>);

impl UserData for MapHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, key: Value| {
            let key = key_bytes(lua, "map:get", key)?;
            // A map's keys are UTF-8: other bytes match none of them.
            let Ok(key) = key.to_str() else {
                return Ok(None);
            };
            this.0
                .with(&key, |value| value.map(|value| lua.create_string(value)))
                .transpose()
        });
    }
}
