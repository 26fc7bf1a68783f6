//! An LRU map bounded twice: in keys and in bytes (keys, values and a
//! per-entry allowance), the least recently used going first past either.

use std::num::NonZeroUsize;

use lru::LruCache;

/// What one entry of a map costs beyond its key and value: the cache's
/// node, the key's box, the hash slot.
pub const ENTRY_OVERHEAD: usize = 64;

pub struct Bounded<V> {
    cache: LruCache<Box<[u8]>, V>,
    bytes: usize,
    max_bytes: usize,
    /// An entry's bytes beyond its key and `ENTRY_OVERHEAD`.
    value_bytes: fn(&V) -> usize,
}

impl<V> Bounded<V> {
    pub fn new(max_keys: usize, max_bytes: usize, value_bytes: fn(&V) -> usize) -> Bounded<V> {
        Bounded {
            cache: LruCache::new(NonZeroUsize::new(max_keys).unwrap_or(NonZeroUsize::MIN)),
            bytes: 0,
            max_bytes,
            value_bytes,
        }
    }

    fn size(&self, key: &[u8], value: &V) -> usize {
        key.len() + (self.value_bytes)(value) + ENTRY_OVERHEAD
    }

    pub fn get(&mut self, key: &[u8]) -> Option<&V> {
        self.cache.get(key)
    }

    /// For changes that keep the value's size (a limiter's timestamp).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        self.cache.get_mut(key)
    }

    pub fn put(&mut self, key: &[u8], value: V) {
        self.bytes += self.size(key, &value);
        // The entry replaced, or the least recently used one evicted.
        if let Some((old_key, old)) = self.cache.push(key.into(), value) {
            self.bytes -= self.size(&old_key, &old);
        }
        while self.bytes > self.max_bytes {
            let Some((old_key, old)) = self.cache.pop_lru() else {
                break;
            };
            self.bytes -= self.size(&old_key, &old);
        }
    }

    pub fn pop(&mut self, key: &[u8]) -> Option<V> {
        let value = self.cache.pop(key)?;
        self.bytes -= self.size(key, &value);
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Least recently used first.
    pub fn oldest(&self) -> impl Iterator<Item = (&Box<[u8]>, &V)> {
        self.cache.iter().rev()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_counted_and_bound() {
        let mut map: Bounded<Vec<u8>> = Bounded::new(100, 1000, Vec::len);
        map.put(b"a", vec![0; 100]);
        assert_eq!(map.bytes(), 1 + 100 + ENTRY_OVERHEAD);
        map.put(b"a", vec![0; 10]);
        assert_eq!(map.bytes(), 1 + 10 + ENTRY_OVERHEAD);
        for key in 0..20u8 {
            map.put(&[b'k', key], vec![0; 100]);
        }
        assert!(map.bytes() <= 1000, "{}", map.bytes());
        assert_eq!(map.len(), 1000 / (2 + 100 + ENTRY_OVERHEAD));
        // The newest stayed.
        assert!(map.get(&[b'k', 19]).is_some());
        let before = map.bytes();
        assert!(map.pop(&[b'k', 19]).is_some());
        assert_eq!(map.bytes(), before - (2 + 100 + ENTRY_OVERHEAD));
        // Evicted by the key bound: still counted right.
        let mut small: Bounded<Vec<u8>> = Bounded::new(2, usize::MAX, Vec::len);
        for key in 0..10u8 {
            small.put(&[key], vec![0; 5]);
        }
        assert_eq!(small.bytes(), 2 * (1 + 5 + ENTRY_OVERHEAD));
    }
}
