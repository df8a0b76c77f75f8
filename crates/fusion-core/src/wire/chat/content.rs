//! Chat Completions user content parts: `text`, `image_url`, `input_audio`, `file`.

use crate::wire::common::{set, str_field};
use crate::wire::neutral::{push_part, Part, Source};
use crate::wire::sse::with;
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
    let missing = |what: &str| ApiError::invalid(format!("`{at}` needs {what}"), Some("messages"));
    match str_field(p, "type") {
        Some("text") => Ok(Part::Text(
            str_field(p, "text")
                .ok_or_else(|| missing("`text`"))?
                .to_string(),
        )),
        Some("image_url") => {
            let img = p.get("image_url").ok_or_else(|| missing("`image_url`"))?;
            let url = str_field(img, "url").ok_or_else(|| missing("`image_url.url`"))?;
            Ok(Part::Image {
                source: Source::from_url(url),
                detail: str_field(img, "detail").map(str::to_string),
            })
        }
        Some("input_audio") => {
            let a = p
                .get("input_audio")
                .ok_or_else(|| missing("`input_audio`"))?;
            Ok(Part::Audio {
                data: str_field(a, "data").unwrap_or_default().to_string(),
                format: str_field(a, "format").unwrap_or_default().to_string(),
            })
        }
        Some("file") => {
            let f = p.get("file").ok_or_else(|| missing("`file`"))?;
            let source = match (str_field(f, "file_data"), str_field(f, "file_id")) {
                (Some(data), _) => Source::from_url(data),
                (None, Some(id)) => Source::FileId {
                    id: id.to_string(),
                    openai: true,
                },
                (None, None) => return Err(missing("`file.file_data` or `file.file_id`")),
            };
            Ok(Part::File {
                source,
                filename: str_field(f, "filename").map(str::to_string),
            })
        }
        other => Err(ApiError::invalid(
            format!(
                "`{at}` has a content part of type `{}` that fusion does not carry",
                other.unwrap_or("(none)")
            ),
            Some("messages"),
        )),
    }
}

/// Why Chat Completions cannot take a part, `None` when it can.
pub fn unsupported(part: &Part) -> Option<&'static str> {
    match part {
        Part::Text(_) | Part::Audio { .. } => None,
        Part::Image { source, .. } => match source {
            Source::FileId { .. } => Some("an image given as a file id"),
            _ => None,
        },
        Part::File { source, .. } => match source {
            Source::Url(_) => Some("a file given by URL"),
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
        return json!({"type": "text", "text": format!("[{} omitted: {why} cannot be sent here]", part.kind())});
    }
    match part {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image { source, detail } => {
            let mut img = json!({"url": source.as_url().unwrap_or_default()});
            if let Some(d) = detail {
                set(&mut img, "detail", json!(d));
            }
            // Trees go in as built: `json!` would copy each through serde.
            with(json!({"type": "image_url"}), "image_url", img)
        }
        Part::File { source, filename } => {
            let mut f = match source {
                Source::FileId { id, .. } => json!({"file_id": id}),
                other => json!({"file_data": other.as_url().unwrap_or_default()}),
            };
            // OpenAI requires a filename with `file_data`; a Messages document has none.
            if let Some(name) = filename
                .clone()
                .or_else(|| super::super::neutral::default_filename(source))
            {
                set(&mut f, "filename", json!(name));
            }
            with(json!({"type": "file"}), "file", f)
        }
        Part::Audio { data, format } => {
            json!({"type": "input_audio", "input_audio": {"data": data, "format": format}})
        }
    }
}
