//! Typed values out of the configuration's JSON tree, read by hand.
//!
//! Each reader takes the value by move and the full path of the setting
//! (`limits.max_rounds`, `panel[2].model`), so every error names the setting it
//! is about. The wording follows serde's (`unknown field`, `missing field`,
//! `invalid type: string "x", expected u32`). The configuration is read once, at
//! start: serde's derived code for it was tens of KB of the Wasm module, this is
//! a few (docs/benchmarks.md, "Module size").

use super::{err, ConfigError};
use serde_json::{Map, Value};

/// `parent.key`, or `key` at the top level.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// How serde describes a value of the wrong type or range.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    }
}

pub(super) fn invalid_type(field: &str, v: &Value, expected: &str) -> ConfigError {
    err(
        field,
        format!("invalid type: {}, expected {expected}", describe(v)),
    )
}

/// serde's list of the names a field or variant may take.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "nothing".to_string(),
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", crate::text::join(&quoted, ", "))
        }
    }
}

/// An object's entry this reader does not know.
pub(super) fn unknown_field(parent: &str, key: &str, known: &[&str]) -> ConfigError {
    err(
        join(parent, key),
        format!("unknown field `{key}`, expected {}", one_of(known)),
    )
}

pub(super) fn missing_field(parent: &str, key: &str) -> ConfigError {
    err(join(parent, key), format!("missing field `{key}`"))
}

/// A required entry, read once the object's loop is over.
pub(super) fn required<T>(value: Option<T>, parent: &str, key: &str) -> Result<T, ConfigError> {
    value.ok_or_else(|| missing_field(parent, key))
}

/// The entries of an object.
pub(super) fn object(field: &str, v: Value) -> Result<Map<String, Value>, ConfigError> {
    match v {
        Value::Object(map) => Ok(map),
        other => Err(invalid_type(field, &other, "an object")),
    }
}

/// An optional setting: `null` reads as absent, like serde's `Option`.
pub(super) fn optional<T>(
    field: &str,
    v: Value,
    read: fn(&str, Value) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        other => read(field, other).map(Some),
    }
}

pub(super) fn string(field: &str, v: Value) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(invalid_type(field, &other, "a string")),
    }
}

pub(super) fn boolean(field: &str, v: Value) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(invalid_type(field, &other, "a boolean")),
    }
}

/// A whole number from 0 to `max`; `name` is the Rust type serde would name.
fn whole(field: &str, v: &Value, max: u64, name: &str) -> Result<u64, ConfigError> {
    if let Value::Number(n) = v {
        if let Some(u) = n.as_u64().filter(|u| *u <= max) {
            return Ok(u);
        }
        if !n.is_f64() {
            return Err(err(
                field,
                format!("invalid value: {}, expected {name}", describe(v)),
            ));
        }
    }
    Err(invalid_type(field, v, name))
}

pub(super) fn u64_(field: &str, v: Value) -> Result<u64, ConfigError> {
    whole(field, &v, u64::MAX, "u64")
}

pub(super) fn u32_(field: &str, v: Value) -> Result<u32, ConfigError> {
    let n = whole(field, &v, u64::from(u32::MAX), "u32")?;
    u32::try_from(n).map_err(|_| invalid_type(field, &v, "u32"))
}

pub(super) fn usize_(field: &str, v: Value) -> Result<usize, ConfigError> {
    let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    let n = whole(field, &v, max, "usize")?;
    usize::try_from(n).map_err(|_| invalid_type(field, &v, "usize"))
}

/// A number, or a string holding one: Envoy's YAML loader turns YAML floats
/// (`2.5`) into strings on their way into a `google.protobuf.Struct`.
pub(super) fn number(field: &str, v: Value) -> Result<f64, ConfigError> {
    match &v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| invalid_type(field, &v, "a number")),
        Value::String(t) => t
            .trim()
            .parse()
            .map_err(|_| err(field, format!("`{t}` is not a number"))),
        _ => Err(invalid_type(field, &v, "a number")),
    }
}

/// One of `names` (a unit enum variant, by its configuration spelling).
pub(super) fn variant<'n>(
    field: &str,
    v: Value,
    names: &[&'n str],
) -> Result<&'n str, ConfigError> {
    let s = string(field, v)?;
    names.iter().copied().find(|n| *n == s).ok_or_else(|| {
        err(
            field,
            format!("unknown variant `{s}`, expected {}", one_of(names)),
        )
    })
}

/// A list of any JSON values, kept as they are (provider tools).
pub(super) fn sequence(field: &str, v: Value) -> Result<Vec<Value>, ConfigError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(invalid_type(field, &other, "a sequence")),
    }
}

/// `field[i]`, the path of a list's element.
fn element(field: &str, i: usize) -> String {
    format!("{field}[{i}]")
}

/// A list; `item` reads each element under `field[i]`. (The type check and the
/// element's path are the non-generic helpers above: each `T` costs only the
/// loop, in the module and in the compiled code V8 keeps.)
pub(super) fn list<T>(
    field: &str,
    v: Value,
    item: fn(&str, Value) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    let items = sequence(field, v)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items.into_iter().enumerate() {
        out.push(item(&element(field, i), v)?);
    }
    Ok(out)
}

/// The entries of a map by name, in the document's order; `entry` reads each
/// value under `field.name`. (A `Vec`, not a `BTreeMap`: every map type costs
/// its own copy of the B-tree code in the module.)
pub(super) fn entries<T>(
    field: &str,
    v: Value,
    entry: fn(&str, Value) -> Result<T, ConfigError>,
) -> Result<Vec<(String, T)>, ConfigError> {
    let map = object(field, v)?;
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let value = entry(&join(field, &k), v)?;
        out.push((k, value));
    }
    Ok(out)
}
