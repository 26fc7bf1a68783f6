//! A live map (`maps = { name = { file = ... } }`, `rsp.map(name):get`):
//! "key value" lines in a file, keys compared case-insensitively, changed
//! over the admin API. A change is answered only once it is in the file
//! (written to a temporary file, fsynced, renamed over the old one), so a
//! crash or restart keeps it; every worker reads the same map, so it is
//! seen everywhere as soon as it is answered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use super::lock;
use crate::map_file::{read_file, write_file};

/// A change to a map, as the admin API asked for it (keys lower-cased):
/// a shared map's goes to Redis first (`redis::maps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapChange {
    Put { key: String, value: String },
    Delete { key: String },
    Replace(BTreeMap<String, String>),
}

/// A change to a shared map on its way to Redis; `key` as the admin
/// request wrote it, for the answer.
pub struct Store {
    pub map: std::sync::Arc<LiveMap>,
    pub change: MapChange,
    pub key: String,
}

/// A `Store` for the admin request of `waiter` (a session), which waits
/// for its answer with `ticket`.
pub struct Waiting {
    pub waiter: usize,
    pub ticket: u64,
    pub store: Store,
}

/// What came of a `Store`: whether Redis made the change (false: the map
/// is full, or has no such key), or why it could not.
pub type Settled = (Waiting, Result<bool, String>);

pub struct LiveMap {
    pub name: String,
    pub file: PathBuf,
    /// Keys held at most: a change past it is refused.
    pub max_keys: usize,
    /// Kept in Redis (`redis::maps`): changes go there first, and the
    /// file is this instance's copy.
    pub shared: bool,
    /// Keys lower-cased (ASCII).
    entries: RwLock<BTreeMap<String, String>>,
    /// Held while a change is written, so changes reach the file in order.
    writing: Mutex<()>,
}

impl LiveMap {
    /// The map of `file`, which is made (empty) when missing.
    pub fn open(name: &str, file: &Path, max_keys: usize, shared: bool) -> Result<LiveMap, String> {
        let entries = read_file(file)?;
        if !file.exists() {
            write_file(file, &entries)?;
        }
        Ok(LiveMap {
            name: name.to_owned(),
            file: file.to_owned(),
            max_keys,
            shared,
            entries: RwLock::new(entries),
            writing: Mutex::new(()),
        })
    }

    /// Reads the file again (at a reload: an operator may have edited it).
    /// The file holds every change answered so far, so none is lost; a
    /// file that no longer reads keeps the map as it was.
    pub fn reread(&self) -> Result<(), String> {
        let _writing = lock(&self.writing);
        let entries = read_file(&self.file)?;
        *self
            .entries
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = entries;
        Ok(())
    }

    /// `use_value` with the value at `key` (any case), read in place.
    pub fn with<R>(&self, key: &str, use_value: impl FnOnce(Option<&str>) -> R) -> R {
        let lower: std::borrow::Cow<str> = if key.bytes().any(|byte| byte.is_ascii_uppercase()) {
            key.to_ascii_lowercase().into()
        } else {
            key.into()
        };
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poison| poison.into_inner());
        use_value(entries.get(&*lower).map(String::as_str))
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.with(key, |value| value.map(str::to_owned))
    }

    pub fn all(&self) -> BTreeMap<String, String> {
        self.entries
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes `changes` in one write of the file: for each, whether it
    /// changed anything (false: a key the full map could not add, or a
    /// delete of a key it does not hold).
    pub fn make(&self, changes: &[MapChange]) -> Result<Vec<bool>, String> {
        let max_keys = self.max_keys;
        self.change(|entries| {
            changes
                .iter()
                .map(|change| match change {
                    MapChange::Put { key, value } => {
                        if entries.len() >= max_keys && !entries.contains_key(key) {
                            return false;
                        }
                        entries.insert(key.clone(), value.clone());
                        true
                    }
                    MapChange::Delete { key } => entries.remove(key).is_some(),
                    MapChange::Replace(replacement) => {
                        entries.clone_from(replacement);
                        true
                    }
                })
                .collect()
        })
    }

    /// Applies `change` to a copy, writes it to the file, then makes it the
    /// map: the file and the map never disagree after an answer. Returns
    /// what `change` returned.
    pub fn change<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> R,
    ) -> Result<R, String> {
        let _writing = lock(&self.writing);
        let current = self.all();
        let mut next = current.clone();
        let result = change(&mut next);
        if next == current {
            // Nothing changed (a refused or empty change): nothing to write.
            return Ok(result);
        }
        write_file(&self.file, &next)?;
        *self
            .entries
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = next;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn map_files_are_read_checked_and_written_whole() {
        let dir = std::env::temp_dir().join(format!("rsp-map-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("apps.map");
        fs::write(
            &file,
            "# apps\nWWW.Example.com 127.0.0.1:8081\n\nother web\n",
        )
        .unwrap();
        let map = LiveMap::open("apps", &file, 100, false).unwrap();
        assert_eq!(
            map.get("www.EXAMPLE.com").as_deref(),
            Some("127.0.0.1:8081")
        );
        map.change(|entries| entries.insert("new".into(), "127.0.0.1:9".into()))
            .unwrap();
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "new 127.0.0.1:9\nother web\nwww.example.com 127.0.0.1:8081\n"
        );
        fs::write(&file, "good 1\nbad\n").unwrap();
        let error = read_file(&file).unwrap_err();
        assert!(
            error.ends_with("apps.map:2: a value is 1 to 4096 bytes"),
            "{error}"
        );
        assert!(read_file(&dir.join("missing.map")).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
