//! A shared dictionary (`rsp.dict(name)`): strings, numbers and booleans
//! by key, each with an optional time to live; at most `max_keys`, the
//! least recently used dropped first. Expired entries are dropped when
//! read, and by a periodic sweep.

use std::sync::Mutex;

use crate::config::DictConfig;

use super::bounded::Bounded;
use super::{StateStats, lock};

/// Entries the sweep looks at per dictionary and turn, from the least
/// recently used end.
const SWEEP_BATCH: usize = 1000;

/// A value a dictionary holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Text(Box<[u8]>),
    Integer(i64),
    Number(f64),
    Boolean(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DictError {
    /// `incr` of a value that is not a number.
    NotANumber,
    /// `incr` past the range of a 64-bit integer.
    Overflow,
}

struct Entry {
    value: Stored,
    /// `now_nanos` time after which the entry is gone; `None`: never.
    expires: Option<u64>,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.expires.is_none_or(|expires| now < expires)
    }
}

pub struct Dict {
    pub config: DictConfig,
    entries: Mutex<Bounded<Entry>>,
}

/// `now + ttl` for a ttl in milliseconds (0 or none: no expiry).
fn expiry(now: u64, ttl_ms: Option<u64>) -> Option<u64> {
    ttl_ms
        .filter(|&ttl| ttl > 0)
        .map(|ttl| now.saturating_add(ttl.saturating_mul(1_000_000)))
}

impl Dict {
    pub fn new(config: DictConfig) -> Dict {
        let entries = Bounded::new(
            config.max_keys,
            config.max_bytes,
            |entry: &Entry| match &entry.value {
                Stored::Text(text) => text.len(),
                _ => 8,
            },
        );
        Dict {
            config,
            entries: Mutex::new(entries),
        }
    }

    pub fn get(&self, key: &[u8], now: u64) -> Option<Stored> {
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some(entry) if entry.live(now) => Some(entry.value.clone()),
            Some(_) => {
                entries.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn set(&self, key: &[u8], value: Stored, ttl_ms: Option<u64>, now: u64) {
        let entry = Entry {
            value,
            expires: expiry(now, ttl_ms),
        };
        lock(&self.entries).put(key, entry);
    }

    /// Adds `by` to the number at `key` (made 0 first, with `ttl_ms`, when
    /// absent or expired) and returns the sum; an existing entry keeps its
    /// expiry.
    pub fn incr(
        &self,
        key: &[u8],
        by: Stored,
        ttl_ms: Option<u64>,
        now: u64,
    ) -> Result<Stored, DictError> {
        let mut entries = lock(&self.entries);
        let existing = entries.get_mut(key).filter(|entry| entry.live(now));
        let (current, expires) = match existing {
            Some(entry) => (entry.value.clone(), entry.expires),
            None => (Stored::Integer(0), expiry(now, ttl_ms)),
        };
        let sum = match (current, by) {
            (Stored::Integer(a), Stored::Integer(b)) => {
                Stored::Integer(a.checked_add(b).ok_or(DictError::Overflow)?)
            }
            (Stored::Integer(a), Stored::Number(b)) => Stored::Number(a as f64 + b),
            (Stored::Number(a), Stored::Integer(b)) => Stored::Number(a + b as f64),
            (Stored::Number(a), Stored::Number(b)) => Stored::Number(a + b),
            _ => return Err(DictError::NotANumber),
        };
        entries.put(
            key,
            Entry {
                value: sum.clone(),
                expires,
            },
        );
        Ok(sum)
    }

    pub fn delete(&self, key: &[u8]) -> bool {
        lock(&self.entries).pop(key).is_some()
    }

    /// Drops expired entries among the least recently used.
    pub fn sweep(&self, now: u64) {
        let mut entries = lock(&self.entries);
        let expired: Vec<Box<[u8]>> = entries
            .oldest()
            .take(SWEEP_BATCH)
            .filter(|(_, entry)| !entry.live(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            entries.pop(&key);
        }
    }

    pub fn stats(&self) -> StateStats {
        let entries = lock(&self.entries);
        StateStats {
            name: self.config.name.clone(),
            keys: entries.len(),
            max_keys: self.config.max_keys,
            bytes: entries.bytes(),
            allowed: 0,
            refused: 0,
            shared: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(max_keys: usize) -> Dict {
        Dict::new(DictConfig {
            name: "test".into(),
            max_keys,
            max_bytes: usize::MAX,
        })
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn values_expire_and_counters_count() {
        let dict = dict(10);
        dict.set(b"a", Stored::Text(b"x".to_vec().into()), Some(100), 0);
        dict.set(b"b", Stored::Boolean(true), None, 0);
        assert_eq!(
            dict.get(b"a", 99 * MS),
            Some(Stored::Text(b"x".to_vec().into()))
        );
        assert_eq!(dict.get(b"a", 100 * MS), None);
        assert_eq!(dict.get(b"b", u64::MAX / 2), Some(Stored::Boolean(true)));
        assert_eq!(
            dict.incr(b"n", Stored::Integer(2), Some(50), 0),
            Ok(Stored::Integer(2))
        );
        assert_eq!(
            dict.incr(b"n", Stored::Integer(3), None, 10 * MS),
            Ok(Stored::Integer(5))
        );
        // The counter keeps the expiry it was made with.
        assert_eq!(dict.get(b"n", 50 * MS), None);
        assert_eq!(
            dict.incr(b"n", Stored::Number(0.5), None, 60 * MS),
            Ok(Stored::Number(0.5))
        );
        assert_eq!(
            dict.incr(b"b", Stored::Integer(1), None, 0),
            Err(DictError::NotANumber)
        );
        dict.set(b"max", Stored::Integer(i64::MAX), None, 0);
        assert_eq!(
            dict.incr(b"max", Stored::Integer(1), None, 0),
            Err(DictError::Overflow)
        );
        assert!(dict.delete(b"b"));
        assert!(!dict.delete(b"b"));
    }

    #[test]
    fn keys_are_bounded_and_swept() {
        let dict = dict(100);
        for key in 0..1000u32 {
            dict.set(&key.to_be_bytes(), Stored::Integer(1), Some(10), 0);
        }
        assert_eq!(dict.stats().keys, 100);
        dict.sweep(11 * MS);
        assert_eq!(dict.stats().keys, 0);
    }
}
