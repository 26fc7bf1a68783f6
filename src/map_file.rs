//! The file of a live map (`state/map.rs`): "key value" lines, blank
//! lines and `#` comments ignored, keys compared in lower case. Read when
//! the config is loaded (its errors are config errors) and by the map at
//! run time; written whole by the map. A leaf: the config and the state
//! both read it, and it reads neither.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

/// Longest key and value a map takes.
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 4096;

/// Why a map line, key or value is refused.
pub fn check_entry(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("a key is 1 to {MAX_KEY_BYTES} bytes"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a key holds no spaces or control characters".into());
    }
    // Written as a line, it would be read back as a comment.
    if key.starts_with('#') {
        return Err("a key does not start with '#'".into());
    }
    if value.is_empty() || value.len() > MAX_VALUE_BYTES {
        return Err(format!("a value is 1 to {MAX_VALUE_BYTES} bytes"));
    }
    if value.chars().any(|c| c.is_control()) || value.trim() != value {
        return Err("a value holds no control characters or surrounding spaces".into());
    }
    Ok(())
}

/// Reads a map file: `key value` lines, blank lines and `#` comments
/// ignored; the first bad line is an error with its number. A missing
/// file is an empty map.
pub fn read_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(format!("{}: cannot read: {error}", path.display())),
    };
    let text = String::from_utf8(text).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    let mut entries = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(char::is_whitespace)
            .map(|(key, value)| (key, value.trim()))
            .unwrap_or((line, ""));
        check_entry(key, value)
            .map_err(|why| format!("{}:{}: {why}", path.display(), number + 1))?;
        entries.insert(key.to_ascii_lowercase(), value.to_owned());
    }
    Ok(entries)
}

/// Writes `entries` to `path` safely: a temporary file beside it, fsynced,
/// renamed over it, and the directory fsynced.
pub fn write_file(path: &Path, entries: &BTreeMap<String, String>) -> Result<(), String> {
    // A symbolic link stays one: the file it names is the one replaced.
    let resolved = fs::canonicalize(path);
    let path = resolved.as_deref().unwrap_or(path);
    let mut text = String::new();
    for (key, value) in entries {
        text.push_str(key);
        text.push(' ');
        text.push_str(value);
        text.push('\n');
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        if let Some(directory) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            fs::File::open(directory)?.sync_all()?;
        }
        Ok::<_, std::io::Error>(())
    })();
    written.map_err(|error| {
        let _ = fs::remove_file(&temporary);
        format!("{}: cannot write: {error}", path.display())
    })
}
