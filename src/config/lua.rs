//! Running the config file: a fresh Lua state executes it once, with the
//! line of every global's first assignment recorded, so an error about a
//! setting can point at it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use mlua::{Function, Lua, Table, Value};

use super::types::ConfigError;
use crate::hook::Hook;

/// The config file after it ran: its globals, and where each was set.
pub struct Script {
    pub file: String,
    pub lua: Lua,
    globals: Table,
    lines: Table,
    /// Globals Lua itself defines (`print`, `string`, ...).
    builtins: HashSet<String>,
}

impl Script {
    pub fn run(path: &Path) -> Result<Script, ConfigError> {
        let file = path.display().to_string();
        let source =
            fs::read(path).map_err(|error| ConfigError(format!("{file}: cannot read: {error}")))?;
        let lua = Lua::new();
        install_rsp_table(&lua).map_err(|error| lua_error(&file, error))?;
        let lines = track_assignment_lines(&lua).map_err(|error| lua_error(&file, error))?;
        let builtins = global_names(&lua);
        lua.load(&source[..])
            .set_name(format!("@{file}"))
            .exec()
            .map_err(|error| lua_error(&file, error))?;
        lua.globals()
            .set_metatable(None)
            .map_err(|error| lua_error(&file, error))?;
        Ok(Script {
            globals: lua.globals(),
            file,
            lua,
            lines,
            builtins,
        })
    }

    pub fn get(&self, name: &str) -> Value {
        self.globals.raw_get(name).unwrap_or(Value::Nil)
    }

    /// `file:line` of a global, or just `file` when Lua gave no line.
    pub fn at(&self, name: &str) -> String {
        match self.lines.raw_get::<Option<u32>>(name) {
            Ok(Some(line)) => format!("{}:{line}", self.file),
            _ => self.file.clone(),
        }
    }

    /// The file assigns the global `name`.
    pub fn assigned(&self, name: &str) -> bool {
        matches!(self.lines.raw_get::<Option<u32>>(name), Ok(Some(_)))
    }

    pub fn error(&self, name: &str, message: String) -> ConfigError {
        ConfigError(format!("{}: {message}", self.at(name)))
    }

    /// An error about the file as a whole.
    pub fn file_error(&self, message: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {message}", self.file))
    }

    /// A path named in the config, relative to its folder.
    pub fn relative(&self, path: &str) -> PathBuf {
        Path::new(&self.file)
            .parent()
            .unwrap_or(Path::new("."))
            .join(path)
    }

    /// Fails on a global that is not among `settings` or the hooks (a
    /// typo); global functions other than those are returned
    /// (`file:line: name`), to be reported: a script may keep its helpers
    /// global.
    pub fn only_settings(&self, settings: &[&str]) -> Result<Vec<String>, ConfigError> {
        let mut functions = Vec::new();
        let mut names: Vec<String> = global_names(&self.lua).into_iter().collect();
        names.sort();
        for name in names {
            let hook = Hook::ALL.iter().any(|hook| hook.name() == name);
            if self.builtins.contains(&name) || settings.contains(&name.as_str()) || hook {
                continue;
            }
            match self.globals.raw_get::<Value>(name.as_str()) {
                Ok(Value::Function(_)) => functions.push(format!("{}: {name}", self.at(&name))),
                _ => return Err(self.error(&name, format!("unknown setting '{name}'"))),
            }
        }
        Ok(functions)
    }

    /// The hook function `name` (one of `Hook::ALL`), if the file defines
    /// one.
    pub fn hook(&self, name: &str) -> Result<Option<Function>, ConfigError> {
        match self.get(name) {
            Value::Nil => Ok(None),
            Value::Function(hook) => Ok(Some(hook)),
            other => Err(self.error(
                name,
                format!("{name}: expected a function, got {}", other.type_name()),
            )),
        }
    }
}

/// The `rsp` table scripts call into: `rsp.now()`, the loop's clock in
/// milliseconds since the epoch. And `setmetatable` without `__gc`: Lua
/// runs finalizers with hooks off, at whatever allocation collects their
/// object, so one could loop outside every instruction budget.
fn install_rsp_table(lua: &Lua) -> mlua::Result<()> {
    let setmetatable: Function = lua.globals().raw_get("setmetatable")?;
    let guarded = lua.create_function(move |_, (object, metatable): (Value, Value)| {
        if let Value::Table(metatable) = &metatable
            && !metatable.raw_get::<Value>("__gc")?.is_nil()
        {
            return Err(mlua::Error::runtime(
                "setmetatable: rsp does not run __gc finalizers (they would run outside the instruction budget)",
            ));
        }
        setmetatable.call::<Value>((object, metatable))
    })?;
    lua.globals().raw_set("setmetatable", guarded)?;
    let rsp = lua.create_table()?;
    rsp.raw_set(
        "now",
        lua.create_function(|_, ()| Ok(crate::timer::epoch_millis()))?,
    )?;
    lua.globals().raw_set("rsp", rsp)
}

/// Records the line of each global's first assignment.
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
