//! Generic readers of config values: each takes a `Setting` (a value, the
//! name to give in errors, and the top-level setting whose line the error
//! points at) and returns the typed value or one error line.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use mlua::{Table, Value};

use super::lua::Script;
use super::materialize;
use super::types::ConfigError;

/// One value of the config being read.
#[derive(Clone)]
pub struct Setting<'a> {
    script: &'a Script,
    /// The global the value hangs off: its line is the error's.
    top: &'a str,
    /// What errors call it: `pools.web`, `pools.web: servers: weight`.
    pub name: String,
    pub value: Value,
}

/// How a value is shown in an error: strings quoted, numbers as they are,
/// anything else by its type.
pub fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => format!("\"{}\"", text.to_string_lossy()),
        Value::Integer(number) => number.to_string(),
        Value::Number(number) => number.to_string(),
        other => other.type_name().to_owned(),
    }
}

impl<'a> Setting<'a> {
    pub fn top(script: &'a Script, name: &'a str) -> Setting<'a> {
        Setting {
            script,
            top: name,
            name: name.to_owned(),
            value: script.get(name),
        }
    }

    /// An error about this value: `file:line: name: message`.
    pub fn error(&self, message: impl std::fmt::Display) -> ConfigError {
        self.script
            .error(self.top, format!("{}: {message}", self.name))
    }

    /// An error with no name prefix: `file:line: message`.
    pub fn error_plain(&self, message: impl std::fmt::Display) -> ConfigError {
        self.script.error(self.top, message.to_string())
    }

    pub fn is_nil(&self) -> bool {
        matches!(self.value, Value::Nil)
    }

    fn child(&self, separator: &str, label: &str, value: Value) -> Setting<'a> {
        Setting {
            script: self.script,
            top: self.top,
            name: format!("{}{separator}{label}", self.name),
            value,
        }
    }

    /// An entry of this table found by iterating it, named `name.key`.
    pub fn entry(&self, key: &str, value: Value) -> Setting<'a> {
        self.child(".", key, value)
    }

    /// `table.key`, named `name.key`.
    pub fn field(&self, key: &str) -> Setting<'a> {
        self.child(".", key, self.raw(key))
    }

    /// `table.key`, named `name: key` (the style of nested lists).
    pub fn part(&self, key: &str) -> Setting<'a> {
        self.child(": ", key, self.raw(key))
    }

    /// `table.key`, named as the table is (errors about it read as being
    /// about the table).
    pub fn member(&self, key: &str) -> Setting<'a> {
        Setting {
            script: self.script,
            top: self.top,
            name: self.name.clone(),
            value: self.raw(key),
        }
    }

    fn raw(&self, key: &str) -> Value {
        match &self.value {
            Value::Table(table) => table.raw_get(key).unwrap_or(Value::Nil),
            _ => Value::Nil,
        }
    }

    /// The value as a table, `None` when unset.
    pub fn table(&self) -> Result<Option<Table>, ConfigError> {
        match &self.value {
            Value::Nil => Ok(None),
            Value::Table(table) => Ok(Some(table.clone())),
            other => Err(self.error(format!("expected a table, got {}", other.type_name()))),
        }
    }

    /// Fails on the first key of the table not in `known`, calling it an
    /// unknown `noun` ("setting", "pool setting", ...).
    pub fn known_keys(&self, known: &[&str], noun: &str) -> Result<(), ConfigError> {
        let Value::Table(table) = &self.value else {
            return Ok(());
        };
        for pair in table.pairs::<Value, Value>() {
            let (key, _) = pair.map_err(|error| self.error(error))?;
            let is_known =
                matches!(&key, Value::String(text) if known.contains(&&*text.to_string_lossy()));
            if !is_known {
                return Err(self.error(format!(
                    "unknown {noun} {} (expected {})",
                    describe(&key),
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The entries of a list, in order (named as the list is).
    pub fn sequence(&self) -> Result<Vec<Setting<'a>>, ConfigError> {
        let Value::Table(table) = &self.value else {
            return Err(self.error(format!("expected a list, got {}", self.value.type_name())));
        };
        table
            .sequence_values::<Value>()
            .map(|entry| {
                entry
                    .map(|value| Setting {
                        script: self.script,
                        top: self.top,
                        name: self.name.clone(),
                        value,
                    })
                    .map_err(|error| self.error(error))
            })
            .collect()
    }

    /// A whole number within `range`; `default` when unset.
    pub fn integer(&self, default: i64, range: RangeInclusive<i64>) -> Result<i64, ConfigError> {
        match &self.value {
            Value::Nil => Ok(default),
            Value::Integer(value) if range.contains(value) => Ok(*value),
            other => Err(self.error(format!(
                "expected a whole number from {} to {}, got {}",
                range.start(),
                range.end(),
                describe(other)
            ))),
        }
    }

    /// A size in bytes within `range`: a whole number, or a string with a
    /// unit (`"64k"`, `"512m"`, `"2g"`: powers of 1024); `default` when unset.
    pub fn bytes(
        &self,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        let bytes = match &self.value {
            Value::Nil => return Ok(default),
            Value::Integer(value) => usize::try_from(*value).ok(),
            Value::String(text) => parse_bytes(&text.to_string_lossy()),
            _ => None,
        };
        match bytes {
            Some(bytes) if range.contains(&bytes) => Ok(bytes),
            _ => Err(self.error(format!(
                "expected a size from {} to {} bytes (a number, or \"64k\", \"512m\", \"2g\"), got {}",
                range.start(),
                range.end(),
                describe(&self.value)
            ))),
        }
    }

    /// Milliseconds within `range`; `default` when unset.
    pub fn millis(
        &self,
        default: u64,
        range: RangeInclusive<i64>,
    ) -> Result<Duration, ConfigError> {
        match &self.value {
            Value::Nil => Ok(Duration::from_millis(default)),
            Value::Integer(value) if range.contains(value) => {
                Ok(Duration::from_millis(*value as u64))
            }
            other => Err(self.error(format!(
                "expected milliseconds from {} to {}, got {}",
                range.start(),
                range.end(),
                describe(other)
            ))),
        }
    }

    /// `true` or `false`; `None` when unset.
    pub fn flag(&self) -> Result<Option<bool>, ConfigError> {
        match &self.value {
            Value::Nil => Ok(None),
            Value::Boolean(on) => Ok(Some(*on)),
            other => Err(self.error(format!("expected true or false, got {}", describe(other)))),
        }
    }

    /// One of `choices`; `None` when unset.
    pub fn choice(&self, choices: &[&'static str]) -> Result<Option<&'static str>, ConfigError> {
        if self.is_nil() {
            return Ok(None);
        }
        let text = match &self.value {
            Value::String(text) => Some(text.to_string_lossy()),
            _ => None,
        };
        choices
            .iter()
            .find(|choice| text.as_deref() == Some(**choice))
            .map(|choice| Some(*choice))
            .ok_or_else(|| {
                let expected: Vec<String> = choices
                    .iter()
                    .map(|choice| format!("\"{choice}\""))
                    .collect();
                self.error(format!(
                    "expected one of {}, got {}",
                    expected.join(", "),
                    describe(&self.value)
                ))
            })
    }

    /// A string; `None` when unset.
    pub fn text(&self) -> Result<Option<String>, ConfigError> {
        match &self.value {
            Value::Nil => Ok(None),
            Value::String(text) => Ok(Some(text.to_string_lossy())),
            other => Err(self.error(format!("expected a string, got {}", other.type_name()))),
        }
    }

    /// `"host:port"`, resolved.
    pub fn address(&self) -> Result<SocketAddr, ConfigError> {
        match &self.value {
            Value::String(text) => {
                materialize::resolve(&text.to_string_lossy()).map_err(|why| self.error(why))
            }
            other => Err(self.error(format!("expected \"host:port\", got {}", other.type_name()))),
        }
    }

    /// A list of `"host:port"` (or just one), at least one.
    pub fn addresses(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        let entries = match &self.value {
            Value::Table(_) => self.sequence()?,
            _ => vec![self.clone()],
        };
        if entries.is_empty() {
            return Err(self.error("needs at least one \"host:port\""));
        }
        entries.iter().map(Setting::address).collect()
    }

    /// A TCP port, as a number or a numeric string.
    pub fn port(&self) -> Result<u16, ConfigError> {
        let port = match &self.value {
            Value::Integer(port) => u16::try_from(*port).ok(),
            Value::String(text) => text.to_str().ok().and_then(|text| text.trim().parse().ok()),
            _ => None,
        };
        port.filter(|&port| port != 0).ok_or_else(|| {
            self.error(format!(
                "expected a port number, got {}",
                describe(&self.value)
            ))
        })
    }

    /// A file path, relative to the config file's folder.
    pub fn path(&self) -> Result<Option<std::path::PathBuf>, ConfigError> {
        Ok(self.text()?.map(|text| self.script.relative(&text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(source: &str) -> Script {
        let path = std::env::temp_dir().join(format!(
            "rsp-read-{}-{}.lua",
            std::process::id(),
            source.len()
        ));
        std::fs::write(&path, source).unwrap();
        Script::run(&path).unwrap()
    }

    #[test]
    fn readers_take_their_type_and_say_where_it_went_wrong() {
        let script = script("a = 5\nb = { c = \"x\", d = true, list = { 1, 2 } }\nms = 0\n");
        let a = Setting::top(&script, "a");
        assert_eq!(a.integer(1, 1..=10).unwrap(), 5);
        let error = a.integer(1, 6..=10).unwrap_err().to_string();
        assert!(
            error.ends_with(":1: a: expected a whole number from 6 to 10, got 5"),
            "{error}"
        );
        let b = Setting::top(&script, "b");
        assert!(b.known_keys(&["c", "d", "list"], "setting").is_ok());
        let error = b.known_keys(&["c"], "thing").unwrap_err().to_string();
        assert!(error.contains(":2: b: unknown thing"), "{error}");
        assert_eq!(b.field("c").choice(&["x", "y"]).unwrap(), Some("x"));
        let error = b.field("c").choice(&["y"]).unwrap_err().to_string();
        assert!(
            error.ends_with(":2: b.c: expected one of \"y\", got \"x\""),
            "{error}"
        );
        assert_eq!(b.field("d").flag().unwrap(), Some(true));
        assert_eq!(b.field("missing").flag().unwrap(), None);
        assert_eq!(b.field("list").sequence().unwrap().len(), 2);
        let error = b.part("c").integer(0, 0..=1).unwrap_err().to_string();
        assert!(
            error.contains(":2: b: c: expected a whole number"),
            "{error}"
        );
        let error = Setting::top(&script, "ms")
            .millis(5, 1..=10)
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with(":3: ms: expected milliseconds from 1 to 10, got 0"),
            "{error}"
        );
        assert_eq!(
            Setting::top(&script, "nothing").millis(5, 1..=10).unwrap(),
            Duration::from_millis(5)
        );
    }
}

/// `"512"`, `"64k"`, `"512m"`, `"2g"` (upper case too): bytes, in powers of 1024.
pub fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (at, 'k' | 'K') => (&text[..at], 10),
        (at, 'm' | 'M') => (&text[..at], 20),
        (at, 'g' | 'G') => (&text[..at], 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(1 << shift)
}

#[cfg(test)]
mod size_tests {
    use super::parse_bytes;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("64k"), Some(65_536));
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes(" 2g "), Some(2 << 30));
        for bad in [
            "",
            "k",
            "1.5m",
            "-1k",
            "12x",
            "1 m",
            "99999999999999999999g",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }
}
