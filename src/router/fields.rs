//! The header methods `req` and `res` share: `header` (the first value),
//! `header_values` (all of them, in order), `set_header`, `add_header`,
//! `del_header`, each change checked by the head it edits.

use mlua::{LuaString, UserDataMethods, Value};

use crate::http::EditError;

use super::lent::Handle;

/// One change to a head's fields.
pub enum Change<'a> {
    Set(&'a [u8]),
    Add(&'a [u8]),
    Delete,
}

/// A view whose head's fields a script reads and edits.
pub trait Fields: Sized + 'static {
    /// `req` or `res`, for errors.
    const NAME: &'static str;

    /// The first value of the fields called `name`.
    fn field(&self, name: &[u8]) -> Option<&[u8]>;

    /// Every value of the fields called `name`, in order, to `each`.
    fn field_values(
        &self,
        name: &[u8],
        each: &mut dyn FnMut(&[u8]) -> mlua::Result<()>,
    ) -> mlua::Result<()>;

    /// Why the view takes no changes now, if it does not.
    fn closed(&self) -> Option<&'static str> {
        None
    }

    fn change(&mut self, name: &[u8], change: Change) -> Result<(), EditError>;
}

/// Adds the four methods to `Handle<T>`'s.
pub fn add_field_methods<T: Fields, M: UserDataMethods<Handle<T>>>(methods: &mut M) {
    methods.add_method("header", |lua, this, name: LuaString| {
        let name = name.as_bytes();
        this.with(|view| {
            view.field(&name)
                .map(|value| lua.create_string(value))
                .transpose()
        })
    });
    methods.add_method("header_values", |lua, this, name: LuaString| {
        let name = name.as_bytes();
        this.with(|view| {
            let values = lua.create_table()?;
            let mut index = 0;
            view.field_values(&name, &mut |value| {
                index += 1;
                values.raw_set(index, lua.create_string(value)?)
            })?;
            Ok(values)
        })
    });
    methods.add_method(
        "set_header",
        |lua, this, (name, value): (LuaString, Value)| {
            with_value_bytes(lua, value, |value| {
                edit(this, "set_header", &name.as_bytes(), Change::Set(value))
            })
        },
    );
    methods.add_method(
        "add_header",
        |lua, this, (name, value): (LuaString, Value)| {
            with_value_bytes(lua, value, |value| {
                edit(this, "add_header", &name.as_bytes(), Change::Add(value))
            })
        },
    );
    methods.add_method("del_header", |_, this, name: LuaString| {
        edit(this, "del_header", &name.as_bytes(), Change::Delete)
    });
}

/// Applies one change, as a Lua error naming the method and the field when
/// rsp refuses it.
fn edit<T: Fields>(
    this: &Handle<T>,
    method: &str,
    name: &[u8],
    change: Change,
) -> mlua::Result<()> {
    this.with(|view| {
        let refused = match view.closed() {
            Some(why) => Err(why.to_owned()),
            None => view.change(name, change).map_err(|error| error.to_string()),
        };
        refused.map_err(|why| {
            mlua::Error::runtime(format!(
                "{}:{method}({:?}): {why}",
                T::NAME,
                String::from_utf8_lossy(name)
            ))
        })
    })
}

/// A header value from Lua, a string or a number written as Lua's
/// `tostring` writes it, lent to `use_value` (a string's bytes without a
/// copy).
fn with_value_bytes<R>(
    lua: &mlua::Lua,
    value: Value,
    use_value: impl FnOnce(&[u8]) -> mlua::Result<R>,
) -> mlua::Result<R> {
    match value {
        Value::String(text) => use_value(&text.as_bytes()),
        number @ (Value::Integer(_) | Value::Number(_)) => match lua.coerce_string(number)? {
            Some(text) => use_value(&text.as_bytes()),
            None => Err(mlua::Error::runtime(
                "a number Lua cannot write as a string",
            )),
        },
        other => Err(mlua::Error::runtime(format!(
            "a header value must be a string or a number, got a {}",
            other.type_name()
        ))),
    }
}
