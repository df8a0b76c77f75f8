//! Decodes a binary `google.protobuf.Struct` into JSON.
//!
//! Envoy hands a Wasm plugin its `configuration` as the raw bytes of the `Any`:
//! a `StringValue` arrives as its text, but a `Struct` (native YAML in the Envoy
//! config) arrives protobuf-encoded. This is the few wire rules that message needs.

use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused instead of recursing further.
const MAX_DEPTH: usize = 64;

pub fn struct_to_json(bytes: &[u8]) -> Result<Value, String> {
    decode_struct(bytes, 0).map(Value::Object)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let slice = self.bytes.get(self.pos..end).ok_or("truncated field")?;
        self.pos = end;
        Ok(slice)
    }

    /// The next field number and value; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(self.take(8)?);
                Field::Fixed64(b)
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Varint(0)
            }
            t => return Err(format!("unsupported wire type {t}")),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn decode_struct(bytes: &[u8], depth: usize) -> Result<Map<String, Value>, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply".into());
    }
    let mut map = Map::new();
    let mut r = Reader::new(bytes);
    while let Some((number, field)) = r.field()? {
        // Struct.fields (1): map entries { key = 1; value = 2; }
        if let (1, Field::Bytes(entry)) = (number, field) {
            let (mut key, mut value) = (String::new(), Value::Null);
            let mut e = Reader::new(entry);
            while let Some((n, f)) = e.field()? {
                match (n, f) {
                    (1, Field::Bytes(k)) => {
                        key = String::from_utf8(k.to_vec()).map_err(|_| "key is not UTF-8")?
                    }
                    (2, Field::Bytes(v)) => value = decode_value(v, depth + 1)?,
                    _ => {}
                }
            }
            map.insert(key, value);
        }
    }
    Ok(map)
}

fn decode_value(bytes: &[u8], depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply".into());
    }
    let mut value = Value::Null;
    let mut r = Reader::new(bytes);
    while let Some((number, field)) = r.field()? {
        value = match (number, field) {
            (1, _) => Value::Null,
            (2, Field::Fixed64(b)) => json_number(f64::from_le_bytes(b)),
            (3, Field::Bytes(s)) => {
                Value::String(String::from_utf8(s.to_vec()).map_err(|_| "string is not UTF-8")?)
            }
            (4, Field::Varint(b)) => Value::Bool(b != 0),
            (5, Field::Bytes(s)) => Value::Object(decode_struct(s, depth + 1)?),
            (6, Field::Bytes(l)) => {
                let mut items = Vec::new();
                let mut lr = Reader::new(l);
                while let Some((n, f)) = lr.field()? {
                    if let (1, Field::Bytes(item)) = (n, f) {
                        items.push(decode_value(item, depth + 1)?);
                    }
                }
                Value::Array(items)
            }
            _ => value,
        };
    }
    Ok(value)
}

/// Struct numbers are doubles; whole ones become integers so `max_panel: 8` reads as 8.
fn json_number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        #[allow(clippy::cast_possible_truncation)]
        let i = n as i64;
        Value::Number(Number::from(i))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn len_delim(field: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2];
        let mut n = body.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(body);
        out
    }

    fn entry(key: &str, value: Vec<u8>) -> Vec<u8> {
        let mut e = len_delim(1, key.as_bytes());
        e.extend(len_delim(2, &value));
        len_delim(1, &e)
    }

    #[test]
    fn decodes_every_value_kind() {
        let mut list = len_delim(1, &len_delim(3, b"a"));
        list.extend(len_delim(1, &[(4 << 3), 1]));
        let mut num = vec![(2 << 3) | 1];
        num.extend(8f64.to_le_bytes());
        let mut half = vec![(2 << 3) | 1];
        half.extend(0.5f64.to_le_bytes());
        let inner = entry("n", half);
        let mut doc = entry("s", len_delim(3, b"x"));
        doc.extend(entry("n", num));
        doc.extend(entry("l", len_delim(6, &list)));
        doc.extend(entry("o", len_delim(5, &inner)));
        doc.extend(entry("z", vec![1 << 3, 0]));
        assert_eq!(
            struct_to_json(&doc).unwrap(),
            json!({"s": "x", "n": 8, "l": ["a", true], "o": {"n": 0.5}, "z": null})
        );
    }

    #[test]
    fn truncated_and_hostile_input_is_an_error() {
        assert!(struct_to_json(&[0x0a, 0x05, 0x0a]).is_err());
        assert!(struct_to_json(&[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .is_err());
        let mut deep = len_delim(3, b"x");
        for _ in 0..100 {
            deep = len_delim(6, &len_delim(1, &deep));
        }
        let err = struct_to_json(&entry("deep", deep)).unwrap_err();
        assert!(err.contains("nested too deeply"), "{err}");
        assert!(struct_to_json(&[]).unwrap().as_object().unwrap().is_empty());
    }
}
