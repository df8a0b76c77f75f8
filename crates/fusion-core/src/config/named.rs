//! Settings by name (`presets`, `prices`, `models`): a few entries, kept sorted
//! by name and found by binary search ([`VecMap`]: it reads like the
//! `BTreeMap` it replaces at a fraction of the Wasm code).

use crate::vec_map::VecMap;

pub type Named<T> = VecMap<String, T>;

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
