//! Server-sent events, framing only: splitting a body into events and writing
//! `data:`/`event:` lines. Each API's event grammar lives in its own folder.

use super::common::str_field;
use serde_json::Value;

/// Whether a body is an SSE stream: its first non-blank line is an SSE field
/// (`data:`, `event:`, `id:`, `retry:`) or a comment (`: OPENROUTER PROCESSING`).
pub fn looks_like_sse(body: &[u8]) -> bool {
    let t = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| body.get(i..))
        .unwrap_or(&[]);
    [b":".as_slice(), b"data:", b"event:", b"id:", b"retry:"]
        .iter()
        .any(|field| t.starts_with(field))
}

/// One event of a stream: its `event:` name, if any, and its data lines joined.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Splits an SSE body into events. Lines end in `\n` or `\r\n`; a blank line
/// ends an event; `:` lines are comments; one space after a field's colon is
/// dropped. An event the body ends in without a blank line is kept.
pub(crate) fn events(body: &[u8]) -> Vec<Event> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !data.is_empty() {
                out.push(Event {
                    name: name.take(),
                    data: crate::text::join(&data, "\n"),
                });
            }
            name = None;
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if !data.is_empty() {
        out.push(Event {
            name,
            data: crate::text::join(&data, "\n"),
        });
    }
    out
}

/// The events' data as JSON with the event's type (`type` field, else the
/// `event:` name). A payload that is not JSON fails the stream; as the last
/// event it means the stream was cut.
pub fn json_events(body: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let events = events(body);
    let count = events.len();
    let mut out = Vec::with_capacity(count);
    for (i, e) in events.into_iter().enumerate() {
        if e.data.trim() == "[DONE]" {
            out.push(("[DONE]".to_string(), Value::Null));
            continue;
        }
        let v: Value = match serde_json::from_slice(e.data.as_bytes()) {
            Ok(v) => v,
            Err(_) if i + 1 == count => return Err(EARLY.to_string()),
            Err(err) => return Err(format!("stream event is not JSON: {err}")),
        };
        let ty = str_field(&v, "type")
            .map(str::to_string)
            .or(e.name)
            .unwrap_or_default();
        out.push((ty, v));
    }
    Ok(out)
}

pub const EARLY: &str = "stream ended early";

/// The message of an error event or object.
pub fn error_message(v: &Value) -> String {
    let err = v.get("error").filter(|e| e.is_object()).unwrap_or(v);
    str_field(err, "message")
        .unwrap_or("unknown error")
        .to_string()
}

pub fn data_line(out: &mut String, v: &Value) {
    out.push_str("data: ");
    out.push_str(&crate::text::json(v));
    out.push_str("\n\n");
}

pub fn event_lines(out: &mut String, name: &str, v: &Value) {
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    data_line(out, v);
}

/// `v` with `key` set (`v` is always an object here).
pub fn with(mut v: Value, key: &str, value: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
    v
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn recognises_sse_bodies() {
        assert!(looks_like_sse(b"data: {}\n\n"));
        assert!(looks_like_sse(b"\r\n  event: x\ndata: {}\n\n"));
        assert!(!looks_like_sse(b"{\"data\": 1}"));
        assert!(!looks_like_sse(b""));
        assert!(looks_like_sse(b": OPENROUTER PROCESSING\n\ndata: {}\n\n"));
        assert!(looks_like_sse(b"id: 1\ndata: {}\n\n"));
        assert!(looks_like_sse(b"retry: 3000\n\ndata: {}\n\n"));
    }

    #[test]
    fn comments_and_id_retry_fields_anywhere_are_skipped() {
        let body = b": OPENROUTER PROCESSING\n\nretry: 3000\nid: 7\n\n: OPENROUTER PROCESSING\r\n\r\nevent: e\nid: 8\n: note\ndata: {\"a\":1}\nretry: 10\n\ndata: [DONE]\n\n";
        let events = events(body);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name.as_deref(), Some("e"));
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].data, "[DONE]");
    }

    #[test]
    fn a_provider_stream_behind_comment_lines_is_read() {
        let body = b": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\ndata: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let reply = crate::wire::parse_response(crate::wire::Api::Chat, body).unwrap();
        assert_eq!(reply.text, "hi");
    }

    #[test]
    fn splits_events_of_any_line_ending() {
        let body = b": comment\r\nevent: a\r\ndata:{\"x\":1}\r\n\r\nid: 7\ndata: line1\ndata: line2\nretry: 5\n\n\n\ndata: tail";
        assert_eq!(
            events(body),
            vec![
                Event {
                    name: Some("a".into()),
                    data: "{\"x\":1}".into()
                },
                Event {
                    name: None,
                    data: "line1\nline2".into()
                },
                Event {
                    name: None,
                    data: "tail".into()
                },
            ]
        );
        assert!(events(b"").is_empty());
        assert!(events(b"event: lonely\n\n").is_empty());
        assert!(events(&[0xff, 0xfe, b'\n', b'\n']).is_empty());
    }
}
