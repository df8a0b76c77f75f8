//! Messages user content blocks: `text`, `image`, `document`.

use crate::wire::common::{set, str_field};
use crate::wire::neutral::{Part, Source};
use crate::wire::sse::with;
use crate::wire::ApiError;
use serde_json::{json, Value};

/// An `image` or `document` block's `source`.
fn read_source(at: &str, b: &Value) -> Result<Source, ApiError> {
    let s = b.get("source").unwrap_or(&Value::Null);
    let field = |k: &str| str_field(s, k).unwrap_or_default().to_string();
    match str_field(s, "type") {
        Some("base64") => Ok(Source::Base64 {
            media_type: field("media_type"),
            data: field("data"),
        }),
        // A plain-text document: carried as base64-free text bytes would be
        // lossy across APIs, so it stays a data URL of its media type.
        Some("text") => Ok(Source::Base64 {
            media_type: field("media_type"),
            data: base64_of(&field("data")),
        }),
        Some("url") => Ok(Source::Url(field("url"))),
        Some("file") => Ok(Source::FileId {
            id: field("file_id"),
            openai: false,
        }),
        other => Err(ApiError::invalid(
            format!(
                "`{at}.source` of type `{}` is not one fusion carries",
                other.unwrap_or("(none)")
            ),
            Some("messages"),
        )),
    }
}

/// A user `image` or `document` block as a part.
pub fn read_block(at: &str, b: &Value) -> Result<Part, ApiError> {
    let source = read_source(at, b)?;
    Ok(match str_field(b, "type") {
        Some("image") => Part::Image {
            source,
            detail: None,
        },
        _ => Part::File {
            source,
            filename: str_field(b, "title").map(str::to_string),
        },
    })
}

/// Why Messages cannot take a part, `None` when it can.
pub fn unsupported(part: &Part) -> Option<&'static str> {
    match part {
        Part::Text(_) => None,
        Part::Audio { .. } => Some("audio input"),
        Part::Image { source, .. } | Part::File { source, .. } => match source {
            Source::FileId { openai: true, .. } => Some("an OpenAI file id"),
            _ => None,
        },
    }
}

/// A part as a content block; `None` for empty text (the API refuses it).
pub fn write_part(part: &Part) -> Option<Value> {
    if let Some(why) = unsupported(part) {
        return Some(
            json!({"type": "text", "text": format!("[{} omitted: {why} cannot be sent here]", part.kind())}),
        );
    }
    let source = |s: &Source| match s {
        Source::Url(u) => json!({"type": "url", "url": u}),
        Source::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        Source::FileId { id, .. } => json!({"type": "file", "file_id": id}),
    };
    match part {
        Part::Text(t) if t.is_empty() => None,
        Part::Text(t) => Some(json!({"type": "text", "text": t})),
        // The source goes in as built: `json!` would copy it through serde.
        Part::Image { source: s, .. } => Some(with(json!({"type": "image"}), "source", source(s))),
        Part::File {
            source: s,
            filename,
        } => {
            let mut block = with(json!({"type": "document"}), "source", source(s));
            if let Some(name) = filename {
                set(&mut block, "title", json!(name));
            }
            Some(block)
        }
        Part::Audio { .. } => None,
    }
}

/// Standard base64 of a text (plain-text documents travel as bytes).
fn base64_of(text: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if k <= chunk.len() {
                let idx = ((n >> shift) & 63) as usize;
                out.push(char::from(ABC.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn base64_of_text() {
        assert_eq!(base64_of(""), "");
        assert_eq!(base64_of("f"), "Zg==");
        assert_eq!(base64_of("fo"), "Zm8=");
        assert_eq!(base64_of("foo"), "Zm9v");
        assert_eq!(base64_of("hello world"), "aGVsbG8gd29ybGQ=");
    }
}
