//! Chat Completions JSON responses: a provider's parsed, a client's written.

use super::request::{parse_tool_calls, tool_call_json};
use crate::wire::citation;
use crate::wire::common::{content_text, str_field};
use crate::wire::neutral::{Finish, Reply, Usage};
use crate::wire::{usage, Api, ResponseMeta};
use serde_json::{json, Map, Value};
pub fn parse_response(body: &[u8]) -> Result<Reply, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("response has no choices")?;
    let message = choice.get("message").ok_or("choice has no message")?;
    let tool_calls = parse_tool_calls(message.get("tool_calls"));
    let usage = v
        .get("usage")
        .map_or(Usage::default(), |u| usage::read(Api::Chat, u));
    let finish = match str_field(choice, "finish_reason") {
        Some("length") => Finish::Length,
        _ if !tool_calls.is_empty() => Finish::ToolCalls,
        _ => Finish::Stop,
    };
    Ok(Reply {
        model: str_field(&v, "model").unwrap_or_default().to_string(),
        text: message.get("content").map(content_text).unwrap_or_default(),
        tool_calls,
        usage,
        finish,
        refusal: str_field(message, "refusal").map(str::to_string),
        citations: message
            .get("annotations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(citation::from_chat)
            .collect(),
    })
}

pub fn write_response(reply: &Reply, meta: &ResponseMeta) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    if reply.refusal.is_some() && reply.text.is_empty() {
        message.insert("content".into(), Value::Null);
    } else if reply.tool_calls.is_empty() {
        message.insert("content".into(), json!(reply.text));
    } else {
        let content = if reply.text.is_empty() {
            Value::Null
        } else {
            json!(reply.text)
        };
        message.insert("content".into(), content);
        let calls: Vec<Value> = reply.tool_calls.iter().map(tool_call_json).collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    message.insert("refusal".into(), json!(reply.refusal));
    message.insert(
        "annotations".into(),
        Value::Array(citation::write_all(
            Api::Chat,
            &reply.citations,
            &reply.text,
        )),
    );
    let mut choice = json!({
        "index": 0,
        "logprobs": null,
        "finish_reason": finish_reason(reply, meta.truncated),
    });
    let mut response = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created_s,
        "model": reply.model,
    });
    // The message and usage trees go in as built (`json!` copies a tree through serde).
    if let (Some(c), Some(r)) = (choice.as_object_mut(), response.as_object_mut()) {
        c.insert("message".into(), Value::Object(message));
        r.insert("choices".into(), Value::Array(vec![choice]));
        r.insert("usage".into(), usage::write(Api::Chat, &meta.usage));
        r.insert("fusion".into(), meta.fusion.clone());
    }
    response
}

pub(crate) fn finish_reason(reply: &Reply, truncated: bool) -> &'static str {
    if truncated {
        return "length";
    }
    match reply.finish {
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
        Finish::Stop if !reply.tool_calls.is_empty() => "tool_calls",
        Finish::Stop => "stop",
    }
}
