//! The fields of a request body that decide whether it is fusion (`model`,
//! each `tools[].type`), read by the JSON parser without building a tree.
//!
//! Hand-written rather than `#[derive(Deserialize)]`: serde answers a field
//! of an unexpected type with a message that names the value it found, and
//! that message's code for a float is `core::fmt`'s float formatting (grisu
//! and dragon, ~8 KB of Wasm, reached from nothing else). These visitors
//! take every JSON type the parser hands them and refuse what they do not
//! want with a fixed message: nothing formats a number.

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess};
use serde::de::{SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// What a request body says about fusion, before anything else is read.
#[derive(Debug, Default, PartialEq)]
pub struct RequestHead<'a> {
    /// `model`, when it is a string.
    pub model: Option<Cow<'a, str>>,
    /// The `type` of each `tools` entry that has one.
    pub tool_types: Vec<Cow<'a, str>>,
}

/// The head of a JSON object body. `None` when the body is no JSON object, or
/// when `model` is neither a string nor null, `tools` neither a list nor null,
/// a tool no object, a `type` neither a string nor null, or one of these keys
/// comes twice: the caller then decides on the parsed tree.
pub fn read(body: &[u8]) -> Option<RequestHead<'_>> {
    serde_json::from_slice(body).ok()
}

/// The JSON types a visitor does not take, refused with a fixed message.
macro_rules! refuse {
    (scalars) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(E::custom(UNEXPECTED))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(E::custom(UNEXPECTED))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(E::custom(UNEXPECTED))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom(UNEXPECTED))
        }
    };
    (str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::custom(UNEXPECTED))
        }
    };
    (unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err(E::custom(UNEXPECTED))
        }
    };
    (seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(de::Error::custom(UNEXPECTED))
        }
    };
    (map) => {
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(de::Error::custom(UNEXPECTED))
        }
    };
}

const UNEXPECTED: &str = "not the JSON type the fusion decision reads";
const TWICE: &str = "a key the fusion decision reads comes twice";

/// The object keys the head reads; any other is skipped unread.
enum Key {
    Model,
    Tools,
    Type,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "model" => Key::Model,
            "tools" => Key::Tools,
            "type" => Key::Type,
            _ => Key::Other,
        })
    }
}

impl<'de> Deserialize<'de> for RequestHead<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HeadVisitor)
    }
}

/// The body: an object.
struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = RequestHead<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut head = RequestHead::default();
        let (mut model, mut tools) = (false, false);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Model if !model => {
                    model = true;
                    head.model = map.next_value_seed(OptionalStr)?;
                }
                Key::Tools if !tools => {
                    tools = true;
                    head.tool_types = map.next_value_seed(ToolTypes)?;
                }
                Key::Model | Key::Tools => return Err(de::Error::custom(TWICE)),
                Key::Type | Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }

    refuse!(scalars);
    refuse!(str);
    refuse!(unit);
    refuse!(seq);
}

/// A string (borrowed from the body when it has no escape) or null.
struct OptionalStr;

impl<'de> DeserializeSeed<'de> for OptionalStr {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OptionalStr {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(s.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    refuse!(scalars);
    refuse!(seq);
    refuse!(map);
}

/// `tools`: a list of objects (their `type`s), or null.
struct ToolTypes;

impl<'de> DeserializeSeed<'de> for ToolTypes {
    type Value = Vec<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ToolTypes {
    type Value = Vec<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of tools or null")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut types = Vec::new();
        while let Some(tool) = seq.next_element_seed(ToolType)? {
            types.extend(tool);
        }
        Ok(types)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    refuse!(scalars);
    refuse!(str);
    refuse!(map);
}

/// One `tools` entry: an object, of which only `type` is read.
struct ToolType;

impl<'de> DeserializeSeed<'de> for ToolType {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ToolType {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tool object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind = None;
        let mut seen = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type if seen => return Err(de::Error::custom(TWICE)),
                Key::Type => {
                    seen = true;
                    kind = map.next_value_seed(OptionalStr)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(kind)
    }

    refuse!(scalars);
    refuse!(str);
    refuse!(unit);
    refuse!(seq);
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::{read, RequestHead};
    use std::borrow::Cow;

    fn head(body: &str) -> Option<RequestHead<'_>> {
        read(body.as_bytes())
    }

    #[test]
    fn reads_the_model_and_the_tool_types() {
        let h = head(
            r#"{"messages": [{"role": "user", "content": "hi", "model": "x"}], "model": "fusion",
                "tools": [{"type": "function", "function": {"name": "f", "type": "x"}}, {"type": "fusion"}, {"name": "n"}],
                "temperature": 0.5, "n": null, "stream": true}"#,
        )
        .unwrap();
        assert_eq!(h.model.as_deref(), Some("fusion"));
        assert_eq!(h.tool_types, ["function", "fusion"]);
        // Unescaped strings are borrowed from the body, escaped ones decoded.
        assert!(matches!(h.model, Some(Cow::Borrowed(_))));
        let h =
            head(r#"{"model": "fu\u0073ion", "tools": [{"type": "openrouter:fusion"}]}"#).unwrap();
        assert_eq!(h.model.as_deref(), Some("fusion"));
        assert_eq!(h.tool_types, ["openrouter:fusion"]);
    }

    #[test]
    fn null_or_absent_fields_are_empty() {
        assert_eq!(head("{}"), Some(RequestHead::default()));
        assert_eq!(
            head(r#"{"model": null, "tools": null}"#),
            Some(RequestHead::default())
        );
        assert_eq!(
            head(r#"{"tools": [{"type": null}, {}]}"#),
            Some(RequestHead::default())
        );
    }

    #[test]
    fn other_shapes_leave_the_decision_to_the_tree() {
        for body in [
            r#"{"model": 5}"#,
            r#"{"model": 0.5}"#,
            r#"{"model": ["fusion"]}"#,
            r#"{"model": {"id": "fusion"}}"#,
            r#"{"model": true}"#,
            r#"{"tools": {"type": "fusion"}}"#,
            r#"{"tools": "fusion"}"#,
            r#"{"tools": [["fusion"]]}"#,
            r#"{"tools": [null]}"#,
            r#"{"tools": [{"type": 1.5}]}"#,
            r#"{"model": "a", "model": "b"}"#,
            r#"{"tools": [], "tools": []}"#,
            r#"{"tools": [{"type": "a", "type": "b"}]}"#,
            r#"["fusion"]"#,
            r#""fusion""#,
            "null",
            "2.5",
            r#"{"model": "fusion""#,
            r#"{"model": "fusion"} x"#,
            "",
        ] {
            assert_eq!(head(body), None, "{body}");
        }
    }
}
