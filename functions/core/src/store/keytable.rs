//! A table of 128-bit hashed keys for the embedded engine: the leads it knows and the
//! `messageId`s it has seen.
//!
//! The keys are already uniform hashes (xxh3), so the table places them by their low bits
//! and probes linearly: finding a key reads one slot of the key array (and one of the value
//! array). Because a key's slot is known before the table is read, a replay can ask the
//! processor to fetch it ahead of time ([`KeyTable::prefetch`]) while it works on earlier
//! calls. Removal shifts the following slots back, so no tombstones build up.

/// An open-addressing map from 128-bit hashed keys to small `Copy` values.
///
/// Key 0 marks an empty slot (a real key of 0 is stored as 1; keys are 128-bit hashes, so
/// that merges two keys with a probability of 2⁻¹²⁸, as any collision does). Keys and
/// values are kept in two arrays, both allocated zeroed: a fresh table costs no writes, and
/// a table of `()` values is its keys alone.
#[derive(Debug, Clone)]
pub(crate) struct KeyTable<V: Copy + Default> {
    keys: Vec<u128>,
    values: Vec<V>,
    len: usize,
}

impl<V: Copy + Default> Default for KeyTable<V> {
    fn default() -> Self {
        KeyTable::new()
    }
}

/// The stored form of a key: never 0, which marks an empty slot.
#[inline]
fn stored(key: u128) -> u128 {
    key.max(1)
}

/// The slots for `n` keys: at most three in four slots are used.
fn capacity_for(n: usize) -> usize {
    (n.saturating_mul(4) / 3 + 1).next_power_of_two().max(16)
}

impl<V: Copy + Default> KeyTable<V> {
    /// An empty table (it allocates on the first insert).
    pub(crate) fn new() -> Self {
        KeyTable {
            keys: Vec::new(),
            values: Vec::new(),
            len: 0,
        }
    }

    /// How many keys it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes room for `additional` more keys without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = capacity_for(self.len.saturating_add(additional));
        if needed > self.keys.len() {
            self.resize(needed);
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.keys.len().wrapping_sub(1)
    }

    #[inline]
    #[allow(clippy::cast_possible_truncation)]
    fn home(&self, key: u128) -> usize {
        (key as usize) & self.mask()
    }

    /// Where `key` is, or the empty slot where it would go.
    #[inline]
    fn probe(&self, key: u128) -> Result<usize, usize> {
        let key = stored(key);
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            match self.keys.get(i) {
                None => return Err(i),
                Some(&k) if k == key => return Ok(i),
                Some(0) => return Err(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The value of `key`.
    #[inline]
    pub(crate) fn get(&self, key: u128) -> Option<V> {
        if self.len == 0 {
            return None;
        }
        self.probe(key).ok().map(|i| self.values[i])
    }

    /// Whether `key` is there.
    #[inline]
    pub(crate) fn contains(&self, key: u128) -> bool {
        self.len > 0 && self.probe(key).is_ok()
    }

    /// Sets `key` to `value`; returns false (and changes nothing) when it is already there.
    pub(crate) fn insert(&mut self, key: u128, value: V) -> bool {
        let mut at = self.probe(key);
        if at.is_err() && capacity_for(self.len + 1) > self.keys.len() {
            self.resize((self.keys.len() * 2).max(16));
            at = self.probe(key);
        }
        let Err(i) = at else {
            return false;
        };
        self.keys[i] = stored(key);
        self.values[i] = value;
        self.len += 1;
        true
    }

    /// Changes the value of `key`, when it is there.
    pub(crate) fn set(&mut self, key: u128, value: V) {
        if self.len == 0 {
            return;
        }
        if let Ok(i) = self.probe(key) {
            self.values[i] = value;
        }
    }

    /// Takes `key` out; returns its value.
    pub(crate) fn remove(&mut self, key: u128) -> Option<V> {
        if self.len == 0 {
            return None;
        }
        let mut hole = self.probe(key).ok()?;
        let value = self.values[hole];
        self.len -= 1;
        // shift back every following key whose probe path crosses the hole
        let mask = self.mask();
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let k = self.keys[i];
            if k == 0 {
                break;
            }
            let home = self.home(k);
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.keys[hole] = k;
                self.values[hole] = self.values[i];
                hole = i;
            }
        }
        self.keys[hole] = 0;
        self.values[hole] = V::default();
        Some(value)
    }

    /// Asks the processor to fetch the slot of `key` into its caches; changes nothing.
    #[inline]
    pub(crate) fn prefetch(&self, key: u128) {
        let i = self.home(stored(key));
        if let Some(k) = self.keys.get(i) {
            safe_arch_prefetch(k);
        }
        if std::mem::size_of::<V>() > 0 {
            if let Some(v) = self.values.get(i) {
                safe_arch_prefetch(v);
            }
        }
    }

    fn resize(&mut self, capacity: usize) {
        let keys = std::mem::replace(&mut self.keys, vec![0; capacity]);
        let values = std::mem::replace(&mut self.values, vec![V::default(); capacity]);
        let mask = capacity - 1;
        for (k, v) in keys.into_iter().zip(values).filter(|(k, _)| *k != 0) {
            let mut i = self.home(k);
            while self.keys[i] != 0 {
                i = (i + 1) & mask;
            }
            self.keys[i] = k;
            self.values[i] = v;
        }
    }
}

/// Prefetches the cache line holding `value` (a hint: no effect on what the program does).
#[inline(always)]
pub(crate) fn safe_arch_prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = value;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Any mix of inserts, updates and removes leaves the table answering as a
        /// `HashMap`; keys are drawn from a few low bits so they collide and wrap around.
        #[test]
        fn answers_as_a_hash_map(ops in proptest::collection::vec((0u8..4, 1u128..64, any::<u32>()), 0..400)) {
            let mut table = KeyTable::<u32>::new();
            let mut map = HashMap::new();
            for (op, key, value) in ops {
                // some keys differ only in their high bits: they share a home slot
                let key = if key % 3 == 0 { key << 100 } else { key };
                match op {
                    0 | 1 => {
                        let new = !map.contains_key(&key);
                        prop_assert_eq!(table.insert(key, value), new);
                        map.entry(key).or_insert(value);
                    }
                    2 => prop_assert_eq!(table.remove(key), map.remove(&key)),
                    _ => {
                        table.set(key, value);
                        if let Some(v) = map.get_mut(&key) {
                            *v = value;
                        }
                    }
                }
                prop_assert_eq!(table.len(), map.len());
            }
            for key in 1u128..64 {
                for key in [key, key << 100] {
                    prop_assert_eq!(table.get(key), map.get(&key).copied());
                    prop_assert_eq!(table.contains(key), map.contains_key(&key));
                }
            }
        }
    }

    #[test]
    fn reserving_keeps_what_is_there() {
        let mut table = KeyTable::<u32>::new();
        for k in 0..1000u32 {
            assert!(table.insert(u128::from(k) * 0x9e37_79b9, k));
        }
        table.reserve(100_000);
        for k in 0..1000u32 {
            assert_eq!(table.get(u128::from(k) * 0x9e37_79b9), Some(k));
            table.prefetch(u128::from(k));
        }
        assert_eq!(table.len(), 1000);
        assert_eq!(table.get(7), None);
        // key 0 is stored as key 1
        let mut table = KeyTable::<u32>::new();
        assert!(table.insert(0, 5));
        assert!(!table.insert(1, 6));
        assert_eq!(table.get(1), Some(5));
    }
}
