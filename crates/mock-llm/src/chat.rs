//! OpenAI Chat Completions.

use serde_json::{json, Value};

use crate::apis::{citation, split_chars, split_words, sse_data, Reply};
use crate::convo::{text_of, Answer, Convo, Role};

pub fn parse(body: &Value) -> Convo {
    let mut c = Convo::default();
    let messages = body.get("messages").and_then(Value::as_array);
    for m in messages.into_iter().flatten() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let text = m.get("content").map(text_of).unwrap_or_default();
        match role {
            "system" | "developer" => c.add_system(&text),
            "assistant" => c.add(Role::Assistant, text),
            "tool" | "function" => c.add(Role::Tool, text),
            _ => c.add(Role::User, text),
        }
    }
    let tools = body.get("tools").and_then(Value::as_array);
    for t in tools.into_iter().flatten() {
        let ty = t.get("type").and_then(Value::as_str).unwrap_or("function");
        if ty != "function" {
            continue;
        }
        if let Some(f) = t.get("function") {
            let name = f.get("name").and_then(Value::as_str).unwrap_or("");
            c.add_tool(name, f.get("parameters"));
        }
    }
    // Legacy `functions`.
    let functions = body.get("functions").and_then(Value::as_array);
    for f in functions.into_iter().flatten() {
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        c.add_tool(name, f.get("parameters"));
    }
    c
}

fn id(r: &Reply) -> String {
    format!("chatcmpl-mock-{}", r.seq)
}

fn usage(r: &Reply) -> Value {
    let (i, o) = (r.input_tokens, r.output_tokens());
    json!({
        "prompt_tokens": i,
        "completion_tokens": o,
        "total_tokens": i + o,
        "prompt_tokens_details": { "cached_tokens": r.cached_tokens, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": r.reasoning_tokens, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

fn finish_reason(a: &Answer) -> &'static str {
    match a {
        Answer::Text(_) => "stop",
        Answer::ToolCall { .. } => "tool_calls",
    }
}

/// `annotations` of a text answer: one URL citation over the whole text for `cite`.
fn annotations(r: &Reply) -> Value {
    if !r.cite {
        return json!([]);
    }
    let (url, title, text) = citation(r);
    json!([{ "type": "url_citation", "url_citation": {
        "start_index": 0, "end_index": text.chars().count(), "url": url, "title": title
    }}])
}

pub fn body(r: &Reply) -> Value {
    let message = match &r.answer {
        Answer::Text(t) if r.refusal => json!({
            "role": "assistant", "content": null, "refusal": t, "annotations": []
        }),
        Answer::Text(t) => json!({
            "role": "assistant", "content": t, "refusal": null, "annotations": annotations(r)
        }),
        Answer::ToolCall {
            hash,
            name,
            arguments,
        } => json!({
            "role": "assistant", "content": null, "refusal": null, "annotations": [],
            "tool_calls": [{
                "id": format!("call_{hash}"),
                "type": "function",
                "function": { "name": name, "arguments": arguments }
            }]
        }),
    };
    json!({
        "id": id(r),
        "object": "chat.completion",
        "created": r.created,
        "model": r.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(&r.answer)
        }],
        "usage": usage(r),
        "service_tier": "default",
        "system_fingerprint": null
    })
}

pub fn events(r: &Reply) -> Vec<String> {
    let include_usage = r
        .request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut v = json!({
            "id": id(r),
            "object": "chat.completion.chunk",
            "created": r.created,
            "model": r.model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]
        });
        if include_usage {
            if let Some(o) = v.as_object_mut() {
                o.insert("usage".into(), Value::Null);
            }
        }
        sse_data(&v)
    };
    let mut out = Vec::new();
    match &r.answer {
        Answer::Text(t) if r.refusal => {
            out.push(chunk(
                json!({ "role": "assistant", "content": null, "refusal": "" }),
                None,
            ));
            for piece in split_words(t) {
                out.push(chunk(json!({ "refusal": piece }), None));
            }
        }
        Answer::Text(t) => {
            out.push(chunk(
                json!({ "role": "assistant", "content": "", "refusal": null }),
                None,
            ));
            for piece in split_words(t) {
                out.push(chunk(json!({ "content": piece }), None));
            }
            if r.cite {
                out.push(chunk(json!({ "annotations": annotations(r) }), None));
            }
        }
        Answer::ToolCall {
            hash,
            name,
            arguments,
        } => {
            out.push(chunk(
                json!({
                    "role": "assistant", "content": null, "refusal": null,
                    "tool_calls": [{
                        "index": 0, "id": format!("call_{hash}"), "type": "function",
                        "function": { "name": name, "arguments": "" }
                    }]
                }),
                None,
            ));
            for piece in split_chars(arguments, 12) {
                out.push(chunk(
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
                    None,
                ));
            }
        }
    }
    out.push(chunk(json!({}), Some(finish_reason(&r.answer))));
    if include_usage {
        out.push(sse_data(&json!({
            "id": id(r),
            "object": "chat.completion.chunk",
            "created": r.created,
            "model": r.model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [],
            "usage": usage(r)
        })));
    }
    out.push("data: [DONE]\n\n".to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_and_tools() {
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                {"role": "user", "content": [{"type": "text", "text": "hello"}]},
                {"role": "assistant", "content": null, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c", "content": "result"}
            ],
            "tools": [{"type": "function", "function": {"name": "fusion", "parameters": {}}}]
        });
        let c = parse(&body);
        assert_eq!(c.system, "sys\ndev");
        assert_eq!(c.last_user_text(), "hello");
        assert_eq!(c.pending_tool_result(), Some("result"));
        assert_eq!(c.tools.len(), 1);
    }
}
