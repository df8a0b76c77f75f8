//! A map kept as a `Vec` of (key, value) sorted by key, found by binary search.
//!
//! For the filter's small maps (settings by name, a turn's calls by id, a
//! worker's callout tokens and timers, metric ids): it reads like the
//! `BTreeMap` it replaces at a fraction of the Wasm code. Every `BTreeMap`
//! key/value pair instantiates its own B-tree code (about 5 KB each); this
//! one is a binary search and a `Vec` insert or remove (docs/benchmarks.md,
//! "Module size"). Keys that mostly arrive in order (callout tokens, timer
//! deadlines) insert at the end.
//!
//! The same goes for sorting: each `sort`/`sort_unstable` instantiation is
//! 1-4 KB of Wasm (driftsort, ipnsort). The filter's lists are a handful of
//! entries, so they are kept sorted as they are built ([`insert_sorted`],
//! [`insert_by_key`]): a binary search and a `Vec` insert each.

use std::borrow::Borrow;
use std::fmt;

#[derive(Clone, PartialEq)]
pub struct VecMap<K, V> {
    /// Sorted by key, keys unique.
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// Adds `value` under `key`; the value it replaces, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => self
                .entries
                .get_mut(i)
                .map(|entry| std::mem::replace(&mut entry.1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(key).ok()?;
        Some(self.entries.remove(i).1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Splits off the entries from `key` on (like `BTreeMap::split_off`).
    pub fn split_off(&mut self, key: &K) -> Self {
        let i = self.find(key).unwrap_or_else(|i| i);
        VecMap {
            entries: self.entries.split_off(i),
        }
    }
}

impl<K, V> VecMap<K, V> {
    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values, in the order of their keys.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Key and value, in the order of the keys.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Adds `item` to `set`, a sorted `Vec` without duplicates, where it belongs
/// (nothing when it is there already): `sort` then `dedup` without a sort.
pub fn insert_sorted<T: Ord>(set: &mut Vec<T>, item: T) {
    if let Err(i) = set.binary_search(&item) {
        set.insert(i, item);
    }
}

/// Adds `item` to `list`, sorted by `key`, after the items with the same key:
/// a stable `sort_by_key` done as the list is built.
pub fn insert_by_key<T, K: Ord>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> K) {
    let k = key(&item);
    let at = list.partition_point(|x| key(x) <= k);
    list.insert(at, item);
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut map = VecMap::new();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        map
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::{insert_by_key, insert_sorted, VecMap};

    #[test]
    fn sorted_unique_and_found_by_key() {
        let mut t = VecMap::new();
        for (k, v) in [(5u32, 'e'), (1, 'a'), (3, 'c'), (7, 'g')] {
            assert_eq!(t.insert(k, v), None);
        }
        assert_eq!(t.insert(3, 'C'), Some('c'));
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), [1, 3, 5, 7]);
        assert_eq!((t.get(&3), t.get(&4), t.len()), (Some(&'C'), None, 4));
        if let Some(v) = t.get_mut(&1) {
            *v = 'A';
        }
        assert_eq!(t.remove(&5), Some('e'));
        assert_eq!(t.remove(&5), None);
        assert!(t.contains_key(&7) && !t.contains_key(&5));
        assert_eq!(format!("{t:?}"), "{1: 'A', 3: 'C', 7: 'g'}");
        let later = t.split_off(&2);
        assert_eq!(format!("{t:?} {later:?}"), "{1: 'A'} {3: 'C', 7: 'g'}");
        let mut later = later;
        later.retain(|k, _| *k > 3);
        assert_eq!(later.into_iter().collect::<Vec<_>>(), [(7, 'g')]);
    }

    #[test]
    fn lists_kept_sorted_as_they_are_built() {
        let mut set = Vec::new();
        for x in [5u16, 1, 5, 3, 1, 9] {
            insert_sorted(&mut set, x);
        }
        assert_eq!(set, [1, 3, 5, 9]);
        let mut list = Vec::new();
        for item in [(2u64, 'a'), (0, 'b'), (2, 'c'), (1, 'd'), (0, 'e')] {
            insert_by_key(&mut list, item, |(i, _)| *i);
        }
        // Stable: equal keys keep the order they came in.
        assert_eq!(list, [(0, 'b'), (0, 'e'), (1, 'd'), (2, 'a'), (2, 'c')]);
    }
}
