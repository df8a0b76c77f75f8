//! Responses user content parts: `input_text`, `input_image`, `input_file`.

use crate::wire::common::{set, str_field};
use crate::wire::neutral::{push_part, Part, Source};
use crate::wire::ApiError;
use serde_json::{json, Value};

/// A user message's `content` (string or parts); `at` names it in errors.
pub fn read_user(at: &str, content: &Value) -> Result<Vec<Part>, ApiError> {
    let mut parts = Vec::new();
    match content {
        Value::String(s) => parts.push(Part::Text(s.clone())),
        Value::Array(items) => {
            for (j, p) in items.iter().enumerate() {
                push_part(&mut parts, read_part(&format!("{at}.content[{j}]"), p)?);
            }
        }
        _ => {}
    }
    Ok(parts)
}

fn read_part(at: &str, p: &Value) -> Result<Part, ApiError> {
    let missing = |what: &str| ApiError::invalid(format!("`{at}` needs {what}"), Some("input"));
    let file_id = |p: &Value| {
        str_field(p, "file_id").map(|id| Source::FileId {
            id: id.to_string(),
            openai: true,
        })
    };
    match str_field(p, "type") {
        // `output_text` appears in assistant history; `text` is accepted by the API too.
        Some("input_text" | "output_text" | "text") => Ok(Part::Text(
            str_field(p, "text")
                .ok_or_else(|| missing("`text`"))?
                .to_string(),
        )),
        Some("input_image") => {
            let source = str_field(p, "image_url")
                .map(Source::from_url)
                .or_else(|| file_id(p))
                .ok_or_else(|| missing("`image_url` or `file_id`"))?;
            Ok(Part::Image {
                source,
                detail: str_field(p, "detail").map(str::to_string),
            })
        }
        Some("input_file") => {
            let source = str_field(p, "file_data")
                .map(Source::from_url)
                .or_else(|| str_field(p, "file_url").map(|u| Source::Url(u.to_string())))
                .or_else(|| file_id(p))
                .ok_or_else(|| missing("`file_data`, `file_url` or `file_id`"))?;
            Ok(Part::File {
                source,
                filename: str_field(p, "filename").map(str::to_string),
            })
        }
        Some("input_audio") => {
            let a = p.get("input_audio").unwrap_or(p);
            Ok(Part::Audio {
                data: str_field(a, "data").unwrap_or_default().to_string(),
                format: str_field(a, "format").unwrap_or_default().to_string(),
            })
        }
        other => Err(ApiError::invalid(
            format!(
                "`{at}` has a content part of type `{}` that fusion does not carry",
                other.unwrap_or("(none)")
            ),
            Some("input"),
        )),
    }
}

/// Why Responses cannot take a part, `None` when it can.
pub fn unsupported(part: &Part) -> Option<&'static str> {
    match part {
        Part::Text(_) => None,
        Part::Audio { .. } => Some("audio input"),
        Part::Image { source, .. } | Part::File { source, .. } => match source {
            Source::FileId { openai: false, .. } => Some("an Anthropic file id"),
            _ => None,
        },
    }
}

/// A user message's content: a string when it is text only.
pub fn write_user(parts: &[Part]) -> Value {
    if let [Part::Text(t)] = parts {
        return json!(t);
    }
    Value::Array(parts.iter().map(write_part).collect())
}

fn write_part(part: &Part) -> Value {
    if let Some(why) = unsupported(part) {
        return json!({"type": "input_text", "text": format!("[{} omitted: {why} cannot be sent here]", part.kind())});
    }
    match part {
        Part::Text(t) => json!({"type": "input_text", "text": t}),
        Part::Image { source, detail } => {
            let mut v = match source {
                Source::FileId { id, .. } => json!({"type": "input_image", "file_id": id}),
                other => json!({"type": "input_image", "image_url": other.as_url()}),
            };
            set(&mut v, "detail", json!(detail.as_deref().unwrap_or("auto")));
            v
        }
        Part::File { source, filename } => {
            let mut v = match source {
                Source::FileId { id, .. } => json!({"type": "input_file", "file_id": id}),
                Source::Url(u) => json!({"type": "input_file", "file_url": u}),
                other => json!({"type": "input_file", "file_data": other.as_url()}),
            };
            // OpenAI requires a filename with `file_data`; a Messages document has none.
            if let Some(name) = filename
                .clone()
                .or_else(|| super::super::neutral::default_filename(source))
            {
                set(&mut v, "filename", json!(name));
            }
            v
        }
        Part::Audio { .. } => json!({"type": "input_text", "text": ""}),
    }
}
