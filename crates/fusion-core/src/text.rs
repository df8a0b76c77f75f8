//! Text written without `core::fmt`'s generic paths, which cost Wasm code for
//! little: JSON values as compact text, costs as decimals.
//!
//! `Value`'s `Display` (`to_string()`, `{}`) writes through a `fmt::Write`
//! adapter and instantiates serde_json's serializer a second and a third time
//! (compact and `{:#}` pretty) beside the `Vec<u8>` one every body is written
//! with; [`json`] uses that one.

use serde_json::Value;

/// `value` as compact JSON text: what `value.to_string()` writes.
pub fn json(value: &Value) -> String {
    // A `Value` always serializes (its keys are strings): the empty text is unreachable.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    #[test]
    fn json_text_is_what_display_writes() {
        let v = json!({"b": [1, 2.5, null, "x\"y\u{1}"], "a": {"c": true}, "d": -0.0, "e": 1e300});
        assert_eq!(super::json(&v), v.to_string());
    }
}
