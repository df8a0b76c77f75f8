//! Settings by name (`presets`, `prices`, `models`): a few entries, kept sorted
//! by name and found by binary search. It reads like the `BTreeMap` it replaces
//! (`get`, `keys`, `iter`) at a fraction of the Wasm code: every `BTreeMap`
//! key/value pair instantiates its own B-tree (about 5 KB each).

use std::fmt;

#[derive(Clone, PartialEq)]
pub struct Named<T> {
    /// Sorted by name, names unique.
    entries: Vec<(String, T)>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named {
            entries: Vec::new(),
        }
    }
}

impl<T> Named<T> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Adds `value` under `name`, replacing an entry of that name.
    pub fn insert(&mut self, name: String, value: T) {
        match self.find(&name) {
            Ok(i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1 = value;
                }
            }
            Err(i) => self.entries.insert(i, (name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&T> {
        let i = self.find(name).ok()?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(n, _)| n)
    }

    /// Name and value, in the order of the names.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.entries.iter().map(|(n, v)| (n, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a, T> IntoIterator for &'a Named<T> {
    type Item = (&'a String, &'a T);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, T)>,
        fn(&'a (String, T)) -> (&'a String, &'a T),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(n, v)| (n, v))
    }
}

impl<T: fmt::Debug> fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::Named;

    #[test]
    fn sorted_unique_and_found_by_name() {
        let mut t = Named::default();
        for (name, v) in [("b", 2), ("a", 1), ("c", 3), ("b", 20)] {
            t.insert(name.to_string(), v);
        }
        assert_eq!(
            t.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!((t.get("b"), t.get("d"), t.len()), (Some(&20), None, 3));
        assert!(t.contains_key("a") && !t.is_empty());
        assert_eq!(format!("{t:?}"), r#"{"a": 1, "b": 20, "c": 3}"#);
        let pairs: Vec<(&String, &i32)> = (&t).into_iter().collect();
        assert_eq!(pairs.len(), 3);
    }
}
