//! The stored responses of one worker: each key's variants (`Vary`),
//! in least-recently-used order, within a byte budget (heads, bodies and
//! what the index takes for them). One per worker, so a lookup takes no
//! lock; a purge is every worker's (a broadcast command).

use std::sync::Arc;
use std::time::Instant;

use lru::LruCache;

use super::policy::{Directives, Freshness};

/// What the index and an entry's bookkeeping take, counted per entry on
/// top of its heads' and body's bytes.
const ENTRY_OVERHEAD: usize = 256;
/// Variants one key keeps at most (the oldest go): a field `Vary` names
/// may take as many values as clients send.
const MAX_VARIANTS: usize = 16;

/// A field as stored: name and value.
pub type StoredField = (Box<[u8]>, Box<[u8]>);
/// A field `Vary` names, and its value in the request (`None`: absent).
pub type Selected = (Box<[u8]>, Option<Box<[u8]>>);

/// A stored response.
#[derive(Debug)]
pub struct Entry {
    pub status: u16,
    /// The head's fields as stored (hop-by-hop and connection-named ones
    /// left out), in order.
    pub fields: Vec<StoredField>,
    pub body: Arc<[u8]>,
    pub freshness: Freshness,
    /// Seconds it is fresh for, from its age at arrival.
    pub lifetime: u64,
    /// Its age when it arrived (§4.2.3).
    pub initial_age: u64,
    /// When it arrived, on the loop's clock.
    pub stored_at: Instant,
    /// The request fields `Vary` names (lower-cased) and their values
    /// in the request it answered (`None`: absent).
    pub vary: Vec<Selected>,
    /// `res.ttl`, when `respond()` set it: the lifetime it keeps when it
    /// is refreshed by a 304.
    pub ttl: Option<u64>,
}

impl Entry {
    /// An entry of nothing (a place holder).
    pub fn empty() -> Entry {
        Entry {
            status: 200,
            fields: Vec::new(),
            body: Arc::from(&[][..]),
            freshness: Freshness::default(),
            lifetime: 0,
            initial_age: 0,
            stored_at: crate::timer::now(),
            vary: Vec::new(),
            ttl: None,
        }
    }

    /// Its current age in seconds.
    pub fn age(&self, now: Instant) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_duration_since(self.stored_at).as_secs())
            .min(super::policy::MAX_DELTA)
    }

    pub fn directives(&self) -> &Directives {
        &self.freshness.directives
    }

    pub fn field(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| &**value)
    }

    /// Bytes it takes in the budget.
    pub fn size(&self) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .map(|(name, value)| name.len() + value.len() + 32)
            .sum();
        let vary: usize = self
            .vary
            .iter()
            .map(|(name, value)| name.len() + value.as_ref().map_or(0, |value| value.len()) + 32)
            .sum();
        ENTRY_OVERHEAD + fields + vary + self.body.len()
    }

    /// It was stored for a request whose fields (by `field`) match the
    /// ones its `Vary` names (RFC 9111 §4.1: values compared after
    /// trimming, list members by their whitespace-normalized form).
    pub fn selects(&self, field: impl Fn(&[u8]) -> Option<Vec<u8>>) -> bool {
        self.vary.iter().all(|(name, stored)| {
            let value = field(name);
            match (stored, value) {
                (None, None) => true,
                (Some(stored), Some(value)) => normalized(stored) == normalized(&value),
                _ => false,
            }
        })
    }
}

/// A field value with the whitespace around its list members removed.
pub fn normalized(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for (index, member) in value.split(|&byte| byte == b',').enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(member.trim_ascii());
    }
    out
}

/// What the store counts, for `/stats` and `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: u64,
    pub bytes: u64,
    pub evictions: u64,
}

pub struct Store {
    limit: usize,
    used: usize,
    index: LruCache<String, Vec<Arc<Entry>>>,
    evictions: u64,
    entries: usize,
}

impl Store {
    /// A store of at most `limit` bytes.
    pub fn new(limit: usize) -> Store {
        Store {
            limit,
            used: 0,
            index: LruCache::unbounded(),
            evictions: 0,
            entries: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The variant of `key` stored for a request like this one, most
    /// recent first; marks the key used.
    pub fn get(
        &mut self,
        key: &str,
        field: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Option<Arc<Entry>> {
        let variants = self.index.get(key)?;
        variants
            .iter()
            .rev()
            .find(|entry| entry.selects(&field))
            .cloned()
    }

    /// Stores `entry` under `key`, in place of the variant it replaces
    /// (the same selected fields), evicting the least recently used
    /// until it fits. An entry larger than the whole budget is not kept.
    pub fn insert(&mut self, key: &str, entry: Entry) -> Option<Arc<Entry>> {
        let size = entry.size();
        if size > self.limit {
            return None;
        }
        let entry = Arc::new(entry);
        let variants = self.index.get_or_insert_mut(key.to_owned(), Vec::new);
        let mut freed = 0;
        let mut removed = 0;
        variants.retain(|old| {
            let same = old.vary.len() == entry.vary.len()
                && old.vary.iter().zip(&entry.vary).all(|(a, b)| {
                    a.0 == b.0 && a.1.as_deref().map(normalized) == b.1.as_deref().map(normalized)
                });
            if same {
                freed += old.size();
                removed += 1;
            }
            !same
        });
        while variants.len() >= MAX_VARIANTS {
            let oldest = variants.remove(0);
            freed += oldest.size();
            removed += 1;
            self.evictions += 1;
        }
        variants.push(Arc::clone(&entry));
        self.used = self.used - freed + size;
        self.entries = self.entries - removed + 1;
        while self.used > self.limit {
            match self.index.peek_lru() {
                Some((oldest, _)) if oldest != key => {
                    if let Some((_, variants)) = self.index.pop_lru() {
                        self.forget(&variants);
                        self.evictions += variants.len() as u64;
                    }
                }
                // Only this key is left: its older variants go.
                _ => {
                    let older = match self.index.peek_mut(key) {
                        Some(variants) if variants.len() > 1 => variants.remove(0),
                        _ => break,
                    };
                    self.forget(std::slice::from_ref(&older));
                    self.evictions += 1;
                }
            }
        }
        Some(entry)
    }

    fn forget(&mut self, variants: &[Arc<Entry>]) {
        for entry in variants {
            self.used -= entry.size();
            self.entries -= 1;
        }
    }

    /// Removes every variant of `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.index.pop(key) {
            Some(variants) => {
                self.forget(&variants);
                true
            }
            None => false,
        }
    }

    /// Removes every key that starts with `prefix`; how many.
    pub fn remove_prefix(&mut self, prefix: &str) -> usize {
        let keys: Vec<String> = self
            .index
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter().filter(|key| self.remove(key)).count()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            entries: self.entries as u64,
            bytes: self.used as u64,
            evictions: self.evictions,
        }
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: usize, vary: &[(&str, Option<&str>)]) -> Entry {
        Entry {
            status: 200,
            fields: vec![],
            body: vec![b'x'; body].into(),
            freshness: Freshness::default(),
            lifetime: 60,
            initial_age: 0,
            stored_at: Instant::now(),
            vary: vary
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_bytes().into(),
                        value.map(|value| value.as_bytes().into()),
                    )
                })
                .collect(),
            ttl: None,
        }
    }

    #[test]
    fn variants_are_selected_by_the_fields_vary_names() {
        let mut store = Store::new(1 << 20);
        store.insert("k", entry(10, &[("accept-encoding", Some("gzip, br"))]));
        store.insert("k", entry(20, &[("accept-encoding", None)]));
        let gzip = store.get("k", |name| {
            (name == b"accept-encoding").then(|| b"gzip,br".to_vec())
        });
        assert_eq!(
            gzip.map(|entry| entry.body.len()),
            Some(10),
            "whitespace in lists does not count"
        );
        let none = store.get("k", |_| None);
        assert_eq!(none.map(|entry| entry.body.len()), Some(20));
        assert!(store.get("k", |_| Some(b"identity".to_vec())).is_none());
        // The same variant again replaces it.
        store.insert("k", entry(30, &[("accept-encoding", None)]));
        assert_eq!(store.stats().entries, 2);
        assert_eq!(
            store.get("k", |_| None).map(|entry| entry.body.len()),
            Some(30)
        );
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_goes() {
        let one = entry(1000, &[]).size();
        let mut store = Store::new(one * 3);
        for key in ["a", "b", "c"] {
            store.insert(key, entry(1000, &[]));
        }
        assert!(
            store.get("a", |_| None).is_some(),
            "a used: b is the oldest now"
        );
        store.insert("d", entry(1000, &[]));
        assert!(store.get("b", |_| None).is_none());
        assert!(store.get("a", |_| None).is_some());
        assert!(store.used() <= store.limit());
        assert_eq!(store.stats().evictions, 1);
        assert!(store.insert("huge", entry(one * 4, &[])).is_none());
        assert_eq!(store.remove_prefix("a"), 1);
        assert!(store.remove("c"));
        assert_eq!(store.stats().entries, 1);
        assert_eq!(store.used(), one);
    }
}
