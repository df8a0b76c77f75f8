//! Messages JSON responses: a provider's parsed, a client's written.

use super::request::{input_object, input_text};
use crate::wire::citation;
use crate::wire::common::{set, str_field, with_prefix};
use crate::wire::neutral::{Finish, Reply, ToolCall, Usage};
use crate::wire::{usage, Api, ResponseMeta};
use serde_json::{json, Value};

pub fn parse_response(body: &[u8]) -> Result<Reply, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    if str_field(&v, "type") == Some("error") {
        let message = v
            .get("error")
            .and_then(|e| str_field(e, "message"))
            .unwrap_or("unknown error");
        return Err(format!("response is an error: {message}"));
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("response has no content")?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut citations = Vec::new();
    for b in content {
        match str_field(b, "type") {
            Some("text") => {
                let start = text.chars().count() as u64;
                text.push_str(str_field(b, "text").unwrap_or_default());
                let end = text.chars().count() as u64;
                let cites = b.get("citations").and_then(Value::as_array);
                citations.extend(
                    cites
                        .into_iter()
                        .flatten()
                        .map(|c| citation::from_messages(c, start, end)),
                );
            }
            Some("tool_use") => {
                if let Some(name) = str_field(b, "name") {
                    tool_calls.push(ToolCall {
                        id: str_field(b, "id").unwrap_or_default().to_string(),
                        name: name.to_string(),
                        arguments: input_text(b.get("input")),
                    });
                }
            }
            _ => {}
        }
    }
    let stop = str_field(&v, "stop_reason");
    // A refusal's text is the refusal.
    let refusal = (stop == Some("refusal")).then(|| std::mem::take(&mut text));
    Ok(Reply {
        model: str_field(&v, "model").unwrap_or_default().to_string(),
        text,
        refusal,
        citations,
        finish: finish_of(stop, !tool_calls.is_empty()),
        tool_calls,
        usage: v
            .get("usage")
            .map_or(Usage::default(), |u| usage::read(Api::Messages, u)),
    })
}

/// A `stop_reason` as a finish.
pub(crate) fn finish_of(stop_reason: Option<&str>, has_tool_calls: bool) -> Finish {
    match stop_reason {
        Some("max_tokens") => Finish::Length,
        _ if has_tool_calls => Finish::ToolCalls,
        _ => Finish::Stop,
    }
}

pub fn write_response(reply: &Reply, meta: &ResponseMeta) -> Value {
    let mut response = json!({
        "id": message_id(meta),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "stop_reason": stop_reason(reply, meta),
        "stop_sequence": null,
    });
    // The trees go in as built (`json!` copies a tree through serde).
    set(
        &mut response,
        "content",
        Value::Array(content_blocks(reply, meta)),
    );
    set(
        &mut response,
        "usage",
        usage::write(Api::Messages, &meta.usage),
    );
    set(&mut response, "fusion", meta.fusion.clone());
    response
}

pub(crate) fn message_id(meta: &ResponseMeta) -> String {
    with_prefix("msg_", &meta.id)
}

pub(crate) fn stop_reason(reply: &Reply, meta: &ResponseMeta) -> &'static str {
    if meta.truncated {
        "pause_turn"
    } else if reply.refusal.is_some() {
        "refusal"
    } else if reply.finish == Finish::Length {
        "max_tokens"
    } else if !reply.tool_calls.is_empty() || reply.finish == Finish::ToolCalls {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// The response's content blocks, complete: the fusion call and its result,
/// the text, the tool calls. Streams send the same blocks.
pub(crate) fn content_blocks(reply: &Reply, meta: &ResponseMeta) -> Vec<Value> {
    let base = meta.id.strip_prefix("msg_").unwrap_or(&meta.id);
    let mut blocks = Vec::with_capacity(reply.tool_calls.len() + 3);
    // A refusal is written as the text it is (`stop_reason: "refusal"`).
    let text = match (&reply.refusal, reply.text.is_empty()) {
        (Some(r), true) => r.clone(),
        (Some(r), false) => format!("{}\n{r}", reply.text),
        (None, _) => reply.text.clone(),
    };
    if !text.is_empty() || reply.tool_calls.is_empty() {
        let mut block = json!({"type": "text", "text": text});
        let cites = citation::write_all(Api::Messages, &reply.citations, &reply.text);
        if !cites.is_empty() {
            set(&mut block, "citations", Value::Array(cites));
        }
        blocks.push(block);
    }
    for (i, c) in reply.tool_calls.iter().enumerate() {
        let id = if c.id.is_empty() {
            format!("toolu_{base}_{i}")
        } else {
            c.id.clone()
        };
        let mut block = json!({"type": "tool_use", "id": id, "name": c.name});
        set(&mut block, "input", input_object(&c.arguments));
        blocks.push(block);
    }
    blocks
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::neutral::{Finish, Reply, Usage};

    use crate::wire::fixtures::{call, meta};
    use serde_json::json;

    #[test]
    fn parses_a_tool_use_response() {
        let body = br#"{"content":[{"type":"text","text":"Let me check."},{"id":"toolu_49f9","input":{"question":"hello there"},"name":"fusion","type":"tool_use"}],"id":"msg_mock_11","model":"m1","role":"assistant","stop_reason":"tool_use","stop_sequence":null,"type":"message","usage":{"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"input_tokens":2,"output_tokens":10}}"#;
        let reply = parse_response(body).unwrap();
        assert_eq!(reply.model, "m1");
        assert_eq!(reply.text, "Let me check.");
        assert_eq!(
            reply.tool_calls,
            vec![call(
                "toolu_49f9",
                "fusion",
                "{\"question\":\"hello there\"}"
            )]
        );
        assert_eq!(reply.finish, Finish::ToolCalls);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 107,
                output_tokens: 10,
                cached_input_tokens: 100,
                cache_write_tokens: 5,
                reasoning_tokens: 0,
            }
        );
    }

    #[test]
    fn parses_text_responses_and_stop_reasons() {
        let body = br#"{"type":"message","model":"claude","content":[{"type":"thinking","thinking":"x"},{"type":"text","text":"Hello"},{"type":"text","text":" world"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#;
        let reply = parse_response(body).unwrap();
        assert_eq!(reply.text, "Hello world");
        assert_eq!(reply.finish, Finish::Stop);
        let body = br#"{"type":"message","content":[{"type":"text","text":"cut"}],"stop_reason":"max_tokens"}"#;
        let reply = parse_response(body).unwrap();
        assert_eq!(reply.finish, Finish::Length);
        assert_eq!(reply.usage, Usage::default());
    }

    #[test]
    fn rejects_error_responses() {
        let err = parse_response(br#"{"error":{"message":"mock-llm: status 429 requested","type":"rate_limit_error"},"type":"error"}"#).unwrap_err();
        assert!(err.contains("status 429"), "{err}");
        assert!(parse_response(br#"{"type":"message"}"#).is_err());
        assert!(parse_response(b"<html>").is_err());
    }

    #[test]
    fn writes_a_text_response() {
        let reply = Reply {
            model: "outer".into(),
            text: "The answer.".into(),
            ..Reply::default()
        };
        assert_eq!(
            write_response(&reply, &meta()),
            json!({
                "id": "msg_fusion-r1",
                "type": "message",
                "role": "assistant",
                "model": "outer",
                "content": [{"type": "text", "text": "The answer."}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                // Anthropic's input_tokens is the rest after cache reads and writes.
                "usage": {
                    "input_tokens": 6, "cache_read_input_tokens": 20,
                    "cache_creation_input_tokens": 4, "output_tokens": 12,
                    "output_tokens_details": {"thinking_tokens": 5},
                },
                "fusion": {"panel": ["a", "b"]},
            })
        );
    }

    #[test]
    fn writes_tool_uses() {
        let reply = Reply {
            model: "outer".into(),
            text: String::new(),
            tool_calls: vec![
                call("toolu_1", "weather", "{\"city\":\"Oslo\"}"),
                call("", "t", "[]"),
            ],
            finish: Finish::ToolCalls,
            ..Reply::default()
        };
        let mut m = meta();
        m.id = "msg_abc".into();
        let v = write_response(&reply, &m);
        assert_eq!(v["id"], "msg_abc");
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(
            v["content"],
            json!([
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_abc_1", "name": "t", "input": {}},
            ])
        );
    }

    #[test]
    fn writes_stop_reasons() {
        let reply = Reply {
            text: "x".into(),
            ..Reply::default()
        };
        let mut m = meta();
        m.truncated = true;
        assert_eq!(write_response(&reply, &m)["stop_reason"], "pause_turn");
        let cut = Reply {
            finish: Finish::Length,
            ..reply.clone()
        };
        assert_eq!(write_response(&cut, &meta())["stop_reason"], "max_tokens");
    }

    #[test]
    fn written_responses_parse_back() {
        let reply = Reply {
            model: "outer".into(),
            text: "Hi.".into(),
            tool_calls: vec![call("toolu_1", "weather", "{\"city\":\"Oslo\"}")],
            usage: Usage::default(),
            finish: Finish::ToolCalls,
            ..Reply::default()
        };
        let v = write_response(&reply, &meta());
        let back = parse_response(v.to_string().as_bytes()).unwrap();
        assert_eq!(back.text, reply.text);
        assert_eq!(back.tool_calls, reply.tool_calls);
        assert_eq!(back.finish, Finish::ToolCalls);
        assert_eq!(back.usage, meta().usage);
    }
}
