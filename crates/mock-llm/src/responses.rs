//! OpenAI Responses.

use serde_json::{json, Value};

use crate::apis::{citation, split_chars, split_words, sse_event, Reply};
use crate::convo::{text_of, Answer, Convo, Role};

pub fn parse(body: &Value) -> Convo {
    let mut c = Convo::default();
    if let Some(s) = body.get("instructions").and_then(Value::as_str) {
        c.add_system(s);
    }
    match body.get("input") {
        Some(Value::String(s)) => c.add(Role::User, s.clone()),
        Some(Value::Array(items)) => {
            for item in items {
                add_item(&mut c, item);
            }
        }
        _ => {}
    }
    let tools = body.get("tools").and_then(Value::as_array);
    for t in tools.into_iter().flatten() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            continue;
        }
        // Flat (Responses) shape, or the nested Chat shape for leniency.
        let f = t.get("function").unwrap_or(t);
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        c.add_tool(name, f.get("parameters"));
    }
    c
}

fn add_item(c: &mut Convo, item: &Value) {
    let ty = item.get("type").and_then(Value::as_str);
    let role = item.get("role").and_then(Value::as_str);
    match (ty, role) {
        (Some("function_call_output"), _) => {
            let out = item.get("output").map(text_of).unwrap_or_default();
            c.add(Role::Tool, out);
        }
        (Some("message") | None, Some(role)) => {
            let text = item.get("content").map(text_of).unwrap_or_default();
            match role {
                "system" | "developer" => c.add_system(&text),
                "assistant" => c.add(Role::Assistant, text),
                _ => c.add(Role::User, text),
            }
        }
        // function_call, reasoning, ...: nothing the rules look at.
        _ => {}
    }
}

fn usage(r: &Reply) -> Value {
    let (i, o) = (r.input_tokens, r.output_tokens());
    json!({
        "input_tokens": i,
        "input_tokens_details": { "cached_tokens": r.cached_tokens },
        "output_tokens": o,
        "output_tokens_details": { "reasoning_tokens": r.reasoning_tokens },
        "total_tokens": i + o
    })
}

/// `annotations` of a text answer: one URL citation over the whole text for `cite`.
fn annotations(r: &Reply) -> Value {
    if !r.cite {
        return json!([]);
    }
    let (url, title, text) = citation(r);
    json!([{
        "type": "url_citation", "start_index": 0, "end_index": text.chars().count(),
        "url": url, "title": title
    }])
}

fn msg_id(r: &Reply) -> String {
    format!("msg_mock_{}", r.seq)
}

/// The output item, `done` = complete, otherwise as first announced.
fn item(r: &Reply, done: bool) -> Value {
    let status = if done { "completed" } else { "in_progress" };
    match &r.answer {
        Answer::Text(t) => {
            let content = if done && r.refusal {
                json!([{ "type": "refusal", "refusal": t }])
            } else if done {
                json!([{ "type": "output_text", "text": t, "annotations": annotations(r), "logprobs": [] }])
            } else {
                json!([])
            };
            json!({
                "type": "message", "id": msg_id(r), "status": status,
                "role": "assistant", "content": content
            })
        }
        Answer::ToolCall {
            hash,
            name,
            arguments,
        } => json!({
            "type": "function_call",
            "id": format!("fc_{hash}"),
            "call_id": format!("call_{hash}"),
            "name": name,
            "arguments": if done { arguments.as_str() } else { "" },
            "status": status
        }),
    }
}

/// The response object; `done` = completed with output and usage.
fn response(r: &Reply, done: bool) -> Value {
    let (status, output, usage) = if done {
        ("completed", json!([item(r, true)]), usage(r))
    } else {
        ("in_progress", json!([]), Value::Null)
    };
    let req = |k: &str, default: Value| r.request.get(k).cloned().unwrap_or(default);
    json!({
        "id": format!("resp_mock_{}", r.seq),
        "object": "response",
        "created_at": r.created,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": req("instructions", Value::Null),
        "max_output_tokens": req("max_output_tokens", Value::Null),
        "metadata": req("metadata", json!({})),
        "model": r.model,
        "output": output,
        "parallel_tool_calls": req("parallel_tool_calls", json!(true)),
        "previous_response_id": req("previous_response_id", Value::Null),
        "reasoning": { "effort": null, "summary": null },
        "service_tier": "default",
        "store": req("store", json!(false)),
        "temperature": req("temperature", json!(1.0)),
        "text": { "format": { "type": "text" } },
        "tool_choice": req("tool_choice", json!("auto")),
        "tools": req("tools", json!([])),
        "top_p": req("top_p", json!(1.0)),
        "truncation": "disabled",
        "usage": usage,
        "user": null
    })
}

pub fn body(r: &Reply) -> Value {
    response(r, true)
}

pub fn events(r: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    let mut seq: u64 = 0;
    let mut push = |ty: &str, mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), json!(ty));
            o.insert("sequence_number".into(), json!(seq));
        }
        seq += 1;
        out.push(sse_event(ty, &v));
    };
    push(
        "response.created",
        json!({ "response": response(r, false) }),
    );
    push(
        "response.in_progress",
        json!({ "response": response(r, false) }),
    );
    push(
        "response.output_item.added",
        json!({ "output_index": 0, "item": item(r, false) }),
    );
    match &r.answer {
        Answer::Text(t) if r.refusal => {
            let at = json!({ "item_id": msg_id(r), "output_index": 0, "content_index": 0 });
            let with = |extra: Value| {
                let mut v = at.clone();
                if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                    o.extend(e);
                }
                v
            };
            push(
                "response.content_part.added",
                with(json!({ "part": { "type": "refusal", "refusal": "" } })),
            );
            for piece in split_words(t) {
                push("response.refusal.delta", with(json!({ "delta": piece })));
            }
            push("response.refusal.done", with(json!({ "refusal": t })));
            push(
                "response.content_part.done",
                with(json!({ "part": { "type": "refusal", "refusal": t } })),
            );
        }
        Answer::Text(t) => {
            let id = msg_id(r);
            let at = json!({ "item_id": id, "output_index": 0, "content_index": 0 });
            let with = |extra: Value| {
                let mut v = at.clone();
                if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                    o.extend(e);
                }
                v
            };
            push(
                "response.content_part.added",
                with(json!({ "part": { "type": "output_text", "text": "", "annotations": [] } })),
            );
            for piece in split_words(t) {
                push(
                    "response.output_text.delta",
                    with(json!({ "delta": piece, "logprobs": [] })),
                );
            }
            if let Some(annotation) = annotations(r).get(0) {
                push(
                    "response.output_text.annotation.added",
                    with(json!({ "annotation_index": 0, "annotation": annotation })),
                );
            }
            push(
                "response.output_text.done",
                with(json!({ "text": t, "logprobs": [] })),
            );
            push(
                "response.content_part.done",
                with(
                    json!({ "part": { "type": "output_text", "text": t, "annotations": annotations(r) } }),
                ),
            );
        }
        Answer::ToolCall {
            hash,
            name,
            arguments,
        } => {
            let id = format!("fc_{hash}");
            for piece in split_chars(arguments, 12) {
                push(
                    "response.function_call_arguments.delta",
                    json!({ "item_id": id, "output_index": 0, "delta": piece }),
                );
            }
            push(
                "response.function_call_arguments.done",
                json!({ "item_id": id, "output_index": 0, "name": name, "arguments": arguments }),
            );
        }
    }
    push(
        "response.output_item.done",
        json!({ "output_index": 0, "item": item(r, true) }),
    );
    push(
        "response.completed",
        json!({ "response": response(r, true) }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_input_items() {
        let body = json!({
            "model": "m",
            "instructions": "be brief",
            "input": [
                {"role": "developer", "content": "dev"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
                {"type": "function_call", "call_id": "c1", "name": "fusion", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "tool says hi"}
            ],
            "tools": [{"type": "function", "name": "fusion", "parameters": {}}, {"type": "web_search"}]
        });
        let c = parse(&body);
        assert_eq!(c.system, "be brief\ndev");
        assert_eq!(c.last_user_text(), "hello");
        assert_eq!(c.pending_tool_result(), Some("tool says hi"));
        assert_eq!(c.tools.len(), 1);
        let c = parse(&json!({"input": "just a string"}));
        assert_eq!(c.last_user_text(), "just a string");
    }
}
