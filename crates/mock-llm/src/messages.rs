//! Anthropic Messages.

use serde_json::{json, Value};

use crate::apis::{citation, split_chars, split_words, sse_event, Reply};
use crate::convo::{text_of, Answer, Convo, Role};

pub fn parse(body: &Value) -> Convo {
    let mut c = Convo::default();
    if let Some(system) = body.get("system") {
        c.add_system(&text_of(system));
    }
    let messages = body.get("messages").and_then(Value::as_array);
    for m in messages.into_iter().flatten() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("assistant") => Role::Assistant,
            _ => Role::User,
        };
        match m.get("content") {
            Some(Value::Array(blocks)) => {
                // Text blocks form the message; each tool_result becomes a
                // tool message, in block order.
                let mut text: Vec<&str> = Vec::new();
                for b in blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            text.extend(b.get("text").and_then(Value::as_str));
                        }
                        Some("tool_result") => {
                            if !text.is_empty() {
                                c.add(role, text.join("\n"));
                                text.clear();
                            }
                            let out = b.get("content").map(text_of).unwrap_or_default();
                            c.add(Role::Tool, out);
                        }
                        _ => {}
                    }
                }
                if !text.is_empty() {
                    c.add(role, text.join("\n"));
                }
            }
            Some(other) => c.add(role, text_of(other)),
            None => {}
        }
    }
    let tools = body.get("tools").and_then(Value::as_array);
    for t in tools.into_iter().flatten() {
        // Client tools have no type or type "custom"; server tools are skipped.
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(_) => continue,
        }
        let name = t.get("name").and_then(Value::as_str).unwrap_or("");
        c.add_tool(name, t.get("input_schema"));
    }
    c
}

fn stop_reason(r: &Reply) -> &'static str {
    match &r.answer {
        Answer::Text(_) if r.refusal => "refusal",
        Answer::Text(_) => "end_turn",
        Answer::ToolCall { .. } => "tool_use",
    }
}

/// The `cite` citation of a text answer.
fn citation_json(r: &Reply) -> Value {
    let (url, title, text) = citation(r);
    json!({
        "type": "web_search_result_location", "url": url, "title": title,
        "encrypted_index": "bW9jaw==", "cited_text": text
    })
}

fn block(r: &Reply, done: bool) -> Value {
    match &r.answer {
        Answer::Text(t) if r.cite && done => json!({
            "type": "text", "text": t, "citations": [citation_json(r)]
        }),
        Answer::Text(t) => json!({ "type": "text", "text": if done { t.as_str() } else { "" } }),
        Answer::ToolCall {
            hash,
            name,
            arguments,
        } => {
            let input = if done {
                serde_json::from_str(arguments).unwrap_or_else(|_| json!({}))
            } else {
                json!({})
            };
            json!({ "type": "tool_use", "id": format!("toolu_{hash}"), "name": name, "input": input })
        }
    }
}

fn message(r: &Reply, done: bool) -> Value {
    let (content, stop, out_tokens) = if done {
        (
            json!([block(r, true)]),
            json!(stop_reason(r)),
            r.output_tokens(),
        )
    } else {
        (json!([]), Value::Null, 1)
    };
    json!({
        "id": format!("msg_mock_{}", r.seq),
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage(r, out_tokens)
    })
}

/// Anthropic's `input_tokens` is the uncached part; thinking tokens are
/// counted in `output_tokens` and broken out in `output_tokens_details`.
fn usage(r: &Reply, output_tokens: u64) -> Value {
    with_thinking(
        r,
        json!({
            "input_tokens": r.input_tokens.saturating_sub(r.cached_tokens),
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": r.cached_tokens
        }),
    )
}

/// `usage` with `output_tokens_details` when the reply has reasoning tokens.
fn with_thinking(r: &Reply, mut usage: Value) -> Value {
    if r.reasoning_tokens > 0 {
        if let Some(o) = usage.as_object_mut() {
            o.insert(
                "output_tokens_details".into(),
                json!({ "thinking_tokens": r.reasoning_tokens }),
            );
        }
    }
    usage
}

pub fn body(r: &Reply) -> Value {
    message(r, true)
}

pub fn events(r: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |ty: &str, mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), json!(ty));
        }
        out.push(sse_event(ty, &v));
    };
    push("message_start", json!({ "message": message(r, false) }));
    push("ping", json!({}));
    push(
        "content_block_start",
        json!({ "index": 0, "content_block": block(r, false) }),
    );
    match &r.answer {
        Answer::Text(t) => {
            if r.cite {
                push(
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "citations_delta", "citation": citation_json(r) } }),
                );
            }
            for piece in split_words(t) {
                push(
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "text_delta", "text": piece } }),
                );
            }
        }
        Answer::ToolCall { arguments, .. } => {
            for piece in split_chars(arguments, 12) {
                push(
                    "content_block_delta",
                    json!({ "index": 0, "delta": { "type": "input_json_delta", "partial_json": piece } }),
                );
            }
        }
    }
    push("content_block_stop", json!({ "index": 0 }));
    push(
        "message_delta",
        json!({
            "delta": { "stop_reason": stop_reason(r), "stop_sequence": null },
            "usage": with_thinking(r, json!({ "output_tokens": r.output_tokens() }))
        }),
    );
    push("message_stop", json!({}));
    out
}

pub fn error(status: u16, message: &str) -> Value {
    let ty = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    };
    json!({ "type": "error", "error": { "type": ty, "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_and_tool_results() {
        let body = json!({
            "model": "m",
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "fusion", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "res"}]}]}
            ],
            "tools": [{"name": "fusion", "input_schema": {}}, {"type": "web_search_20250305", "name": "web_search"}]
        });
        let c = parse(&body);
        assert_eq!(c.system, "sys");
        assert_eq!(c.last_user_text(), "hello");
        assert_eq!(c.pending_tool_result(), Some("res"));
        assert_eq!(c.tools.len(), 1);
    }
}
