//! Server-sent event streams: reading a provider's streamed answer whole, and
//! writing a client's response as a stream in its API's event grammar.

use super::common::{pieces, str_field, u64_field};
use super::{chat, messages, responses, usage, Api, ResponseMeta};
use crate::wire::neutral::{Finish, Reply, ToolCall, Usage};
use serde_json::{json, Map, Value};

/// About how many characters each streamed text piece carries.
const PIECE: usize = 20;

pub fn looks_like_sse(body: &[u8]) -> bool {
    let t = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| body.get(i..))
        .unwrap_or(&[]);
    t.starts_with(b"data:") || t.starts_with(b"event:")
}

/// One event of a stream: its `event:` name, if any, and its data lines joined.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    name: Option<String>,
    data: String,
}

/// Splits an SSE body into events. Lines end in `\n` or `\r\n`; a blank line
/// ends an event; `:` lines are comments; one space after a field's colon is
/// dropped. An event the body ends in without a blank line is kept.
fn events(body: &[u8]) -> Vec<Event> {
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
                    data: data.join("\n"),
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
            data: data.join("\n"),
        });
    }
    out
}

/// The events' data as JSON with the event's type (`type` field, else the
/// `event:` name). A payload that is not JSON fails the stream; as the last
/// event it means the stream was cut.
fn json_events(body: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let events = events(body);
    let count = events.len();
    let mut out = Vec::with_capacity(count);
    for (i, e) in events.into_iter().enumerate() {
        if e.data.trim() == "[DONE]" {
            out.push(("[DONE]".to_string(), Value::Null));
            continue;
        }
        let v: Value = match serde_json::from_str(&e.data) {
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

const EARLY: &str = "stream ended early";

/// The message of an error event or object.
fn error_message(v: &Value) -> String {
    let err = v.get("error").filter(|e| e.is_object()).unwrap_or(v);
    str_field(err, "message")
        .unwrap_or("unknown error")
        .to_string()
}

/// A provider's complete streamed answer, as one reply.
pub fn parse_stream(api: Api, body: &[u8]) -> Result<Reply, String> {
    let events = json_events(body)?;
    match api {
        Api::Chat => parse_chat(&events),
        Api::Responses => parse_responses(&events),
        Api::Messages => parse_messages(&events),
    }
}

fn parse_chat(events: &[(String, Value)]) -> Result<Reply, String> {
    let mut reply = Reply::default();
    // (index, call) in order of first appearance.
    let mut calls: Vec<(u64, ToolCall)> = Vec::new();
    let mut finish: Option<String> = None;
    let mut done = false;
    for (ty, v) in events {
        if ty == "[DONE]" {
            done = true;
            continue;
        }
        if v.get("error").is_some_and(Value::is_object) {
            return Err(format!("stream has an error: {}", error_message(v)));
        }
        if let Some(model) = str_field(v, "model").filter(|m| !m.is_empty()) {
            reply.model = model.to_string();
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            reply.usage = usage::read(Api::Chat, u);
        }
        let choices = v.get("choices").and_then(Value::as_array);
        let Some(choice) = choices.and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
                .or_else(|| c.first())
        }) else {
            continue;
        };
        if let Some(delta) = choice.get("delta") {
            reply
                .text
                .push_str(str_field(delta, "content").unwrap_or_default());
            let pieces = delta.get("tool_calls").and_then(Value::as_array);
            for (pos, piece) in pieces.into_iter().flatten().enumerate() {
                add_chat_call_piece(&mut calls, pos, piece);
            }
        }
        if let Some(reason) = str_field(choice, "finish_reason") {
            finish = Some(reason.to_string());
        }
    }
    if !done && finish.is_none() {
        return Err(EARLY.to_string());
    }
    reply.tool_calls = calls.into_iter().map(|(_, c)| c).collect();
    reply.finish = match finish.as_deref() {
        Some("length") => Finish::Length,
        _ if !reply.tool_calls.is_empty() => Finish::ToolCalls,
        _ => Finish::Stop,
    };
    Ok(reply)
}

/// One `delta.tool_calls` piece: the first for an index has its id and name,
/// the arguments come in pieces.
fn add_chat_call_piece(calls: &mut Vec<(u64, ToolCall)>, pos: usize, piece: &Value) {
    let index = piece
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(pos as u64);
    let f = piece.get("function");
    let name = f.and_then(|f| str_field(f, "name")).unwrap_or_default();
    let args = f
        .and_then(|f| str_field(f, "arguments"))
        .unwrap_or_default();
    let id = str_field(piece, "id").unwrap_or_default();
    match calls.iter_mut().find(|(i, _)| *i == index) {
        Some((_, call)) => {
            if call.id.is_empty() {
                call.id = id.to_string();
            }
            if call.name.is_empty() {
                call.name = name.to_string();
            }
            call.arguments.push_str(args);
        }
        None => calls.push((
            index,
            ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                arguments: args.to_string(),
            },
        )),
    }
}

fn parse_responses(events: &[(String, Value)]) -> Result<Reply, String> {
    let mut text = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut model = String::new();
    let mut last: Option<Reply> = None;
    for (ty, v) in events {
        match ty.as_str() {
            "response.created" | "response.in_progress" => {
                if let Some(m) = v.get("response").and_then(|r| str_field(r, "model")) {
                    model = m.to_string();
                }
            }
            "response.output_text.delta" => {
                text.push_str(str_field(v, "delta").unwrap_or_default());
            }
            "response.output_item.done" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                if str_field(item, "type") == Some("function_call") {
                    if let Some(name) = str_field(item, "name") {
                        calls.push(ToolCall {
                            id: str_field(item, "call_id")
                                .or_else(|| str_field(item, "id"))
                                .unwrap_or_default()
                                .to_string(),
                            name: name.to_string(),
                            arguments: str_field(item, "arguments").unwrap_or("{}").to_string(),
                        });
                    }
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = v
                    .get("response")
                    .ok_or("stream's final event has no response")?;
                last = Some(responses::reply_from_response(response)?);
            }
            "response.failed" => {
                let response = v.get("response").unwrap_or(&Value::Null);
                return Err(format!("response failed: {}", error_message(response)));
            }
            "error" => return Err(format!("stream has an error: {}", error_message(v))),
            _ => {}
        }
    }
    let mut reply = last.ok_or(EARLY)?;
    // A final response without its output: what the events carried.
    if reply.text.is_empty() && reply.tool_calls.is_empty() {
        reply.text = text;
        reply.tool_calls = calls;
        if !reply.tool_calls.is_empty() && reply.finish == Finish::Stop {
            reply.finish = Finish::ToolCalls;
        }
    }
    if reply.model.is_empty() {
        reply.model = model;
    }
    Ok(reply)
}

/// A Messages content block being streamed.
enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        input: Value,
        json: String,
    },
    Other,
}

fn parse_messages(events: &[(String, Value)]) -> Result<Reply, String> {
    let mut reply = Reply::default();
    let mut blocks: Vec<(u64, Block)> = Vec::new();
    // Each usage count the latest seen.
    let mut running = Map::new();
    let mut stop_reason: Option<String> = None;
    let mut done = false;
    for (ty, v) in events {
        match ty.as_str() {
            "message_start" => {
                let message = v.get("message").unwrap_or(&Value::Null);
                reply.model = str_field(message, "model").unwrap_or_default().to_string();
                if let Some(u) = message.get("usage") {
                    usage::fold_running(&mut running, u);
                }
            }
            "content_block_start" => {
                let index = u64_field(v, "index");
                let b = v.get("content_block").unwrap_or(&Value::Null);
                let block = match str_field(b, "type") {
                    Some("text") => Block::Text(str_field(b, "text").unwrap_or_default().into()),
                    Some("tool_use") => Block::ToolUse {
                        id: str_field(b, "id").unwrap_or_default().to_string(),
                        name: str_field(b, "name").unwrap_or_default().to_string(),
                        input: b.get("input").cloned().unwrap_or(Value::Null),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                blocks.push((index, block));
            }
            "content_block_delta" => {
                let index = u64_field(v, "index");
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let block = blocks.iter_mut().rev().find(|(i, _)| *i == index);
                match (block, str_field(delta, "type")) {
                    (Some((_, Block::Text(t))), Some("text_delta")) => {
                        t.push_str(str_field(delta, "text").unwrap_or_default());
                    }
                    (Some((_, Block::ToolUse { json, .. })), Some("input_json_delta")) => {
                        json.push_str(str_field(delta, "partial_json").unwrap_or_default());
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v.get("delta").and_then(|d| str_field(d, "stop_reason")) {
                    stop_reason = Some(r.to_string());
                }
                if let Some(u) = v.get("usage") {
                    usage::fold_running(&mut running, u);
                }
            }
            "message_stop" => done = true,
            "error" => return Err(format!("stream has an error: {}", error_message(v))),
            _ => {}
        }
    }
    if !done && stop_reason.is_none() {
        return Err(EARLY.to_string());
    }
    reply.usage = usage::read(Api::Messages, &Value::Object(running));
    blocks.sort_by_key(|(i, _)| *i);
    for (_, block) in blocks {
        match block {
            Block::Text(t) => reply.text.push_str(&t),
            Block::ToolUse {
                id,
                name,
                input,
                json,
            } => reply.tool_calls.push(ToolCall {
                id,
                name,
                arguments: if !json.is_empty() {
                    json
                } else if input.is_null() {
                    "{}".to_string()
                } else {
                    input.to_string()
                },
            }),
            Block::Other => {}
        }
    }
    reply.finish = messages::finish_of(stop_reason.as_deref(), !reply.tool_calls.is_empty());
    Ok(reply)
}

/// The client's response as a complete SSE stream, equivalent to its JSON response.
pub fn write_stream(api: Api, reply: &Reply, meta: &ResponseMeta, include_usage: bool) -> String {
    match api {
        Api::Chat => write_chat(reply, meta, include_usage),
        Api::Responses => write_responses(reply, meta),
        Api::Messages => write_messages(reply, meta),
    }
}

fn data_line(out: &mut String, v: &Value) {
    out.push_str("data: ");
    out.push_str(&v.to_string());
    out.push_str("\n\n");
}

fn event_lines(out: &mut String, name: &str, v: &Value) {
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    data_line(out, v);
}

/// `v` with `key` set (`v` is always an object here).
fn with(mut v: Value, key: &str, value: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
    v
}

fn write_chat(reply: &Reply, meta: &ResponseMeta, include_usage: bool) -> String {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created_s,
            "model": reply.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut out = String::new();
    data_line(
        &mut out,
        &chunk(json!({"role": "assistant", "content": ""}), None),
    );
    for piece in pieces(&reply.text, PIECE) {
        data_line(&mut out, &chunk(json!({"content": piece}), None));
    }
    for (i, c) in reply.tool_calls.iter().enumerate() {
        let first = json!({"tool_calls": [{
            "index": i, "id": c.id, "type": "function",
            "function": {"name": c.name, "arguments": ""},
        }]});
        data_line(&mut out, &chunk(first, None));
        for piece in pieces(&c.arguments, PIECE) {
            let delta = json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]});
            data_line(&mut out, &chunk(delta, None));
        }
    }
    let finish = chat::finish_reason(reply, meta.truncated);
    let last = with(
        chunk(json!({}), Some(finish)),
        "fusion",
        meta.fusion.clone(),
    );
    data_line(&mut out, &last);
    if include_usage {
        let usage = json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created_s,
            "model": reply.model,
            "choices": [],
            "usage": usage::write(Api::Chat, &meta.usage),
        });
        data_line(&mut out, &usage);
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// Responses events carry their type and a running sequence number.
struct ResponsesWriter {
    out: String,
    seq: u64,
}

impl ResponsesWriter {
    fn push(&mut self, ty: &str, v: Value) {
        let v = with(v, "type", json!(ty));
        let v = with(v, "sequence_number", json!(self.seq));
        self.seq += 1;
        event_lines(&mut self.out, ty, &v);
    }
}

fn write_responses(reply: &Reply, meta: &ResponseMeta) -> String {
    let done = responses::write_response(reply, meta);
    let mut start = done.clone();
    if let Some(o) = start.as_object_mut() {
        o.insert("status".into(), json!("in_progress"));
        o.insert("output".into(), json!([]));
        o.insert("usage".into(), Value::Null);
        o.insert("incomplete_details".into(), Value::Null);
        o.remove("fusion");
    }
    let mut w = ResponsesWriter {
        out: String::new(),
        seq: 0,
    };
    w.push("response.created", json!({"response": start}));
    w.push("response.in_progress", json!({"response": start}));
    for (k, item) in responses::output_items(reply, meta).into_iter().enumerate() {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        let at = |extra: Value| {
            let mut v = json!({"item_id": id, "output_index": k});
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        };
        let in_progress = with(item.clone(), "status", json!("in_progress"));
        match str_field(&item, "type") {
            Some("message") => {
                let text = item
                    .pointer("/content/0/text")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let added = with(in_progress, "content", json!([]));
                w.push(
                    "response.output_item.added",
                    json!({"output_index": k, "item": added}),
                );
                let part = |t: &str| json!({"type": "output_text", "text": t, "annotations": []});
                w.push(
                    "response.content_part.added",
                    at(json!({"content_index": 0, "part": part("")})),
                );
                for piece in pieces(text, PIECE) {
                    w.push(
                        "response.output_text.delta",
                        at(json!({"content_index": 0, "delta": piece, "logprobs": []})),
                    );
                }
                w.push(
                    "response.output_text.done",
                    at(json!({"content_index": 0, "text": text, "logprobs": []})),
                );
                w.push(
                    "response.content_part.done",
                    at(json!({"content_index": 0, "part": part(text)})),
                );
            }
            Some("function_call") => {
                let arguments = str_field(&item, "arguments").unwrap_or_default();
                let added = with(in_progress, "arguments", json!(""));
                w.push(
                    "response.output_item.added",
                    json!({"output_index": k, "item": added}),
                );
                for piece in pieces(arguments, PIECE) {
                    w.push(
                        "response.function_call_arguments.delta",
                        at(json!({"delta": piece})),
                    );
                }
                w.push(
                    "response.function_call_arguments.done",
                    at(json!({"name": item.get("name"), "arguments": arguments})),
                );
            }
            _ => {
                let added = with(in_progress, "output", Value::Null);
                w.push(
                    "response.output_item.added",
                    json!({"output_index": k, "item": added}),
                );
            }
        }
        w.push(
            "response.output_item.done",
            json!({"output_index": k, "item": item}),
        );
    }
    let last = if responses::is_incomplete(reply, meta) {
        "response.incomplete"
    } else {
        "response.completed"
    };
    w.push(last, json!({"response": done}));
    w.out
}

fn write_messages(reply: &Reply, meta: &ResponseMeta) -> String {
    let mut out = String::new();
    let mut push = |ty: &str, v: Value| event_lines(&mut out, ty, &with(v, "type", json!(ty)));
    push(
        "message_start",
        json!({"message": {
            "id": messages::message_id(meta),
            "type": "message",
            "role": "assistant",
            "model": reply.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            // The output is yet to come: the delta tells it.
            "usage": usage::write(Api::Messages, &Usage {
                output_tokens: 0,
                reasoning_tokens: 0,
                ..meta.usage
            }),
        }}),
    );
    for (i, block) in messages::content_blocks(reply, meta)
        .into_iter()
        .enumerate()
    {
        match str_field(&block, "type") {
            Some("text") => {
                let text = str_field(&block, "text").unwrap_or_default();
                push(
                    "content_block_start",
                    json!({"index": i, "content_block": {"type": "text", "text": ""}}),
                );
                for piece in pieces(text, PIECE) {
                    push(
                        "content_block_delta",
                        json!({"index": i, "delta": {"type": "text_delta", "text": piece}}),
                    );
                }
            }
            Some("tool_use") => {
                let input = block.get("input").map(Value::to_string).unwrap_or_default();
                let start = with(block, "input", json!({}));
                push(
                    "content_block_start",
                    json!({"index": i, "content_block": start}),
                );
                for piece in pieces(&input, PIECE) {
                    push(
                        "content_block_delta",
                        json!({"index": i, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    );
                }
            }
            // The server tool call and its result arrive whole.
            _ => push(
                "content_block_start",
                json!({"index": i, "content_block": block}),
            ),
        }
        push("content_block_stop", json!({"index": i}));
    }
    push(
        "message_delta",
        json!({
            "delta": {"stop_reason": messages::stop_reason(reply, meta), "stop_sequence": null},
            "usage": usage::write(Api::Messages, &meta.usage),
            "fusion": meta.fusion,
        }),
    );
    push("message_stop", json!({}));
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::fixtures::{call, meta};
    use crate::wire::FusionCallView;

    fn text_reply(text: &str) -> Reply {
        Reply {
            model: "outer".into(),
            text: text.into(),
            ..Reply::default()
        }
    }

    fn tool_reply() -> Reply {
        Reply {
            model: "outer".into(),
            text: "Let me check the weather for you.".into(),
            tool_calls: vec![
                call(
                    "call_1",
                    "weather",
                    "{\"city\":\"Paris\",\"unit\":\"celsius\"}",
                ),
                call("call_2", "time", "{}"),
            ],
            usage: Usage::default(),
            finish: Finish::ToolCalls,
        }
    }

    fn fusion_view() -> FusionCallView {
        FusionCallView {
            id: "fusion_1".into(),
            arguments: "{\"question\":\"q\"}".into(),
            result: json!({"answers": [{"model": "a", "text": "x"}]}),
        }
    }

    /// The JSON payloads of a stream, `[DONE]` as a string.
    fn payloads(s: &str) -> Vec<Value> {
        events(s.as_bytes())
            .into_iter()
            .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::String(e.data)))
            .collect()
    }

    // Streams recorded from the project's mock-llm.
    const CHAT_TEXT: &str = r#"data: {"choices":[{"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-1","model":"m1","object":"chat.completion.chunk","usage":null}

data: {"choices":[{"delta":{"content":"m1 "},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-1","model":"m1","object":"chat.completion.chunk","usage":null}

data: {"choices":[{"delta":{"content":"answers "},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-1","model":"m1","object":"chat.completion.chunk","usage":null}

data: {"choices":[{"delta":{"content":"there"},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-1","model":"m1","object":"chat.completion.chunk","usage":null}

data: {"choices":[{"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-1","model":"m1","object":"chat.completion.chunk","usage":null}

data: {"choices":[],"created":1795250735,"id":"chatcmpl-mock-1","model":"m1","object":"chat.completion.chunk","usage":{"completion_tokens":12,"prompt_tokens":2,"prompt_tokens_details":{"audio_tokens":0,"cached_tokens":0},"total_tokens":14}}

data: [DONE]

"#;

    const CHAT_TOOL: &str = r#"data: {"choices":[{"delta":{"content":null,"refusal":null,"role":"assistant","tool_calls":[{"function":{"arguments":"","name":"fusion"},"id":"call_49f9","index":0,"type":"function"}]},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-2","model":"m1","object":"chat.completion.chunk"}

data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"question\":"},"index":0}]},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-2","model":"m1","object":"chat.completion.chunk"}

data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"\"hello there"},"index":0}]},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-2","model":"m1","object":"chat.completion.chunk"}

data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"\"}"},"index":0}]},"finish_reason":null,"index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-2","model":"m1","object":"chat.completion.chunk"}

data: {"choices":[{"delta":{},"finish_reason":"tool_calls","index":0,"logprobs":null}],"created":1795250735,"id":"chatcmpl-mock-2","model":"m1","object":"chat.completion.chunk"}

data: [DONE]

"#;

    const RESPONSES_TOOL: &str = r#"event: response.created
data: {"response":{"created_at":1795250735,"error":null,"id":"resp_mock_4","incomplete_details":null,"model":"m1","object":"response","output":[],"parallel_tool_calls":true,"status":"in_progress","tool_choice":"auto","tools":[],"usage":null},"sequence_number":0,"type":"response.created"}

event: response.in_progress
data: {"response":{"created_at":1795250735,"error":null,"id":"resp_mock_4","incomplete_details":null,"model":"m1","object":"response","output":[],"parallel_tool_calls":true,"status":"in_progress","tool_choice":"auto","tools":[],"usage":null},"sequence_number":1,"type":"response.in_progress"}

event: response.output_item.added
data: {"item":{"arguments":"","call_id":"call_49f9","id":"fc_49f9","name":"fusion","status":"in_progress","type":"function_call"},"output_index":0,"sequence_number":2,"type":"response.output_item.added"}

event: response.function_call_arguments.delta
data: {"delta":"{\"question\":","item_id":"fc_49f9","output_index":0,"sequence_number":3,"type":"response.function_call_arguments.delta"}

event: response.function_call_arguments.delta
data: {"delta":"\"hello there\"}","item_id":"fc_49f9","output_index":0,"sequence_number":4,"type":"response.function_call_arguments.delta"}

event: response.function_call_arguments.done
data: {"arguments":"{\"question\":\"hello there\"}","item_id":"fc_49f9","name":"fusion","output_index":0,"sequence_number":5,"type":"response.function_call_arguments.done"}

event: response.output_item.done
data: {"item":{"arguments":"{\"question\":\"hello there\"}","call_id":"call_49f9","id":"fc_49f9","name":"fusion","status":"completed","type":"function_call"},"output_index":0,"sequence_number":6,"type":"response.output_item.done"}

event: response.completed
data: {"response":{"created_at":1795250735,"error":null,"id":"resp_mock_4","incomplete_details":null,"model":"m1","object":"response","output":[{"arguments":"{\"question\":\"hello there\"}","call_id":"call_49f9","id":"fc_49f9","name":"fusion","status":"completed","type":"function_call"}],"parallel_tool_calls":true,"status":"completed","tool_choice":"auto","tools":[],"usage":{"input_tokens":2,"input_tokens_details":{"cached_tokens":0},"output_tokens":10,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":12}},"sequence_number":7,"type":"response.completed"}

"#;

    const RESPONSES_TEXT: &str = r#"event: response.created
data: {"response":{"id":"resp_mock_3","model":"m1","object":"response","output":[],"status":"in_progress","usage":null},"sequence_number":0,"type":"response.created"}

event: response.output_item.added
data: {"item":{"content":[],"id":"msg_mock_3","role":"assistant","status":"in_progress","type":"message"},"output_index":0,"sequence_number":1,"type":"response.output_item.added"}

event: response.content_part.added
data: {"content_index":0,"item_id":"msg_mock_3","output_index":0,"part":{"annotations":[],"text":"","type":"output_text"},"sequence_number":2,"type":"response.content_part.added"}

event: response.output_text.delta
data: {"content_index":0,"delta":"m1 ","item_id":"msg_mock_3","logprobs":[],"output_index":0,"sequence_number":3,"type":"response.output_text.delta"}

event: response.output_text.delta
data: {"content_index":0,"delta":"answers","item_id":"msg_mock_3","logprobs":[],"output_index":0,"sequence_number":4,"type":"response.output_text.delta"}

event: response.output_text.done
data: {"content_index":0,"item_id":"msg_mock_3","logprobs":[],"output_index":0,"sequence_number":5,"text":"m1 answers","type":"response.output_text.done"}

event: response.completed
data: {"response":{"id":"resp_mock_3","model":"m1","object":"response","output":[{"content":[{"annotations":[],"logprobs":[],"text":"m1 answers","type":"output_text"}],"id":"msg_mock_3","role":"assistant","status":"completed","type":"message"}],"status":"completed","usage":{"input_tokens":2,"output_tokens":12,"total_tokens":14}},"sequence_number":6,"type":"response.completed"}

"#;

    const MESSAGES_TEXT: &str = r#"event: message_start
data: {"message":{"content":[],"id":"msg_mock_5","model":"m1","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":2,"output_tokens":1}},"type":"message_start"}

event: ping
data: {"type":"ping"}

event: content_block_start
data: {"content_block":{"text":"","type":"text"},"index":0,"type":"content_block_start"}

event: content_block_delta
data: {"delta":{"text":"m1 ","type":"text_delta"},"index":0,"type":"content_block_delta"}

event: content_block_delta
data: {"delta":{"text":"answers","type":"text_delta"},"index":0,"type":"content_block_delta"}

event: content_block_stop
data: {"index":0,"type":"content_block_stop"}

event: message_delta
data: {"delta":{"stop_reason":"end_turn","stop_sequence":null},"type":"message_delta","usage":{"output_tokens":12}}

event: message_stop
data: {"type":"message_stop"}

"#;

    const MESSAGES_TOOL: &str = r#"event: message_start
data: {"message":{"content":[],"id":"msg_mock_6","model":"m1","role":"assistant","stop_reason":null,"stop_sequence":null,"type":"message","usage":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":2,"output_tokens":1}},"type":"message_start"}

event: ping
data: {"type":"ping"}

event: content_block_start
data: {"content_block":{"id":"toolu_49f9","input":{},"name":"fusion","type":"tool_use"},"index":0,"type":"content_block_start"}

event: content_block_delta
data: {"delta":{"partial_json":"{\"question\":","type":"input_json_delta"},"index":0,"type":"content_block_delta"}

event: content_block_delta
data: {"delta":{"partial_json":"\"hello there\"}","type":"input_json_delta"},"index":0,"type":"content_block_delta"}

event: content_block_stop
data: {"index":0,"type":"content_block_stop"}

event: message_delta
data: {"delta":{"stop_reason":"tool_use","stop_sequence":null},"type":"message_delta","usage":{"output_tokens":10}}

event: message_stop
data: {"type":"message_stop"}

"#;

    #[test]
    fn recognises_sse_bodies() {
        assert!(looks_like_sse(b"data: {}\n\n"));
        assert!(looks_like_sse(b"\r\n  event: x\ndata: {}\n\n"));
        assert!(!looks_like_sse(b"{\"data\": 1}"));
        assert!(!looks_like_sse(b""));
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

    #[test]
    fn parses_mock_chat_streams() {
        let reply = parse_stream(Api::Chat, CHAT_TEXT.as_bytes()).unwrap();
        assert_eq!(reply.model, "m1");
        assert_eq!(reply.text, "m1 answers there");
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 2,
                output_tokens: 12,
                ..Usage::default()
            }
        );
        let reply = parse_stream(Api::Chat, CHAT_TOOL.as_bytes()).unwrap();
        assert_eq!(reply.text, "");
        assert_eq!(
            reply.tool_calls,
            vec![call(
                "call_49f9",
                "fusion",
                "{\"question\":\"hello there\"}"
            )]
        );
        assert_eq!(reply.finish, Finish::ToolCalls);
        // The same stream with CRLF line endings and no space after `data:`.
        let crlf = CHAT_TOOL.replace("data: ", "data:").replace('\n', "\r\n");
        assert_eq!(parse_stream(Api::Chat, crlf.as_bytes()).unwrap(), reply);
    }

    #[test]
    fn parses_parallel_chat_tool_calls_and_length() {
        let body = concat!(
            "data: {\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[",
            "{\"index\":0,\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\"\"}},",
            "{\"index\":1,\"id\":\"b\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        );
        let reply = parse_stream(Api::Chat, body.as_bytes()).unwrap();
        assert_eq!(
            reply.tool_calls,
            vec![call("a", "f", "{\"x\":1}"), call("b", "g", "{}")]
        );
        assert_eq!(reply.finish, Finish::Length);
        assert_eq!(reply.model, "gpt");
    }

    #[test]
    fn rejects_cut_and_failed_chat_streams() {
        let cut = CHAT_TEXT
            .split("data: {\"choices\":[{\"delta\":{},")
            .next()
            .unwrap();
        assert_eq!(parse_stream(Api::Chat, cut.as_bytes()).unwrap_err(), EARLY);
        let mid_json = &CHAT_TEXT[..CHAT_TEXT.len() / 2];
        assert_eq!(
            parse_stream(Api::Chat, mid_json.as_bytes()).unwrap_err(),
            EARLY
        );
        let err = parse_stream(
            Api::Chat,
            b"data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: [DONE]\n\n",
        )
        .unwrap_err();
        assert!(err.contains("overloaded"), "{err}");
        let bad = b"data: nope\n\ndata: [DONE]\n\n";
        assert!(parse_stream(Api::Chat, bad)
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn parses_mock_responses_streams() {
        let reply = parse_stream(Api::Responses, RESPONSES_TOOL.as_bytes()).unwrap();
        assert_eq!(reply.model, "m1");
        assert_eq!(
            reply.tool_calls,
            vec![call(
                "call_49f9",
                "fusion",
                "{\"question\":\"hello there\"}"
            )]
        );
        assert_eq!(reply.finish, Finish::ToolCalls);
        assert_eq!(reply.usage.output_tokens, 10);
        let reply = parse_stream(Api::Responses, RESPONSES_TEXT.as_bytes()).unwrap();
        assert_eq!(reply.text, "m1 answers");
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 2,
                output_tokens: 12,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn responses_streams_fall_back_on_their_events() {
        // A final response without output: the deltas and finished items tell.
        let body = RESPONSES_TOOL.replace(
            r#""output":[{"arguments":"{\"question\":\"hello there\"}","call_id":"call_49f9","id":"fc_49f9","name":"fusion","status":"completed","type":"function_call"}]"#,
            r#""output":[]"#,
        );
        let reply = parse_stream(Api::Responses, body.as_bytes()).unwrap();
        assert_eq!(
            reply.tool_calls,
            vec![call(
                "call_49f9",
                "fusion",
                "{\"question\":\"hello there\"}"
            )]
        );
        assert_eq!(reply.finish, Finish::ToolCalls);
        let body = r#"event: response.output_text.delta
data: {"delta":"Hel"}

event: response.output_text.delta
data: {"delta":"lo"}

event: response.incomplete
data: {"response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[]}}

"#;
        let reply = parse_stream(Api::Responses, body.as_bytes()).unwrap();
        assert_eq!(reply.text, "Hello");
        assert_eq!(reply.finish, Finish::Length);
    }

    #[test]
    fn rejects_cut_and_failed_responses_streams() {
        let cut = RESPONSES_TEXT
            .split("event: response.completed")
            .next()
            .unwrap();
        assert_eq!(
            parse_stream(Api::Responses, cut.as_bytes()).unwrap_err(),
            EARLY
        );
        let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\n";
        assert!(parse_stream(Api::Responses, failed.as_bytes())
            .unwrap_err()
            .contains("boom"));
        let error =
            "event: error\ndata: {\"type\":\"error\",\"code\":\"x\",\"message\":\"bad\"}\n\n";
        assert!(parse_stream(Api::Responses, error.as_bytes())
            .unwrap_err()
            .contains("bad"));
    }

    #[test]
    fn parses_mock_messages_streams() {
        let reply = parse_stream(Api::Messages, MESSAGES_TEXT.as_bytes()).unwrap();
        assert_eq!(reply.model, "m1");
        assert_eq!(reply.text, "m1 answers");
        assert_eq!(reply.finish, Finish::Stop);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 2,
                output_tokens: 12,
                ..Usage::default()
            }
        );
        let reply = parse_stream(Api::Messages, MESSAGES_TOOL.as_bytes()).unwrap();
        assert_eq!(
            reply.tool_calls,
            vec![call(
                "toolu_49f9",
                "fusion",
                "{\"question\":\"hello there\"}"
            )]
        );
        assert_eq!(reply.finish, Finish::ToolCalls);
        let crlf = MESSAGES_TOOL.replace('\n', "\r\n");
        assert_eq!(parse_stream(Api::Messages, crlf.as_bytes()).unwrap(), reply);
    }

    #[test]
    fn parses_messages_with_several_blocks_and_cache_usage() {
        let body = r#"event: message_start
data: {"type":"message_start","message":{"model":"claude","usage":{"input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":"Hi"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" there"}}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"t2","name":"g","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"2}"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":40,"cache_creation_input_tokens":7}}

event: message_stop
data: {"type":"message_stop"}
"#;
        let reply = parse_stream(Api::Messages, body.as_bytes()).unwrap();
        assert_eq!(reply.text, "Hi there");
        assert_eq!(
            reply.tool_calls,
            vec![call("t1", "f", "{}"), call("t2", "g", "{\"a\":2}")]
        );
        assert_eq!(reply.finish, Finish::Length);
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 112,
                output_tokens: 40,
                cached_input_tokens: 100,
                cache_write_tokens: 7,
                reasoning_tokens: 0,
            }
        );
    }

    #[test]
    fn rejects_cut_and_failed_messages_streams() {
        let cut = MESSAGES_TEXT.split("event: message_delta").next().unwrap();
        assert_eq!(
            parse_stream(Api::Messages, cut.as_bytes()).unwrap_err(),
            EARLY
        );
        let error = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert!(parse_stream(Api::Messages, error.as_bytes())
            .unwrap_err()
            .contains("Overloaded"));
        assert_eq!(parse_stream(Api::Messages, b"").unwrap_err(), EARLY);
    }

    #[test]
    fn writes_a_chat_stream() {
        let reply = tool_reply();
        let s = write_stream(Api::Chat, &reply, &meta(), true);
        assert!(s.ends_with("data: [DONE]\n\n"));
        let chunks = payloads(&s);
        for c in &chunks[..chunks.len() - 1] {
            assert_eq!(c["id"], "fusion-r1");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["created"], 1_700_000_000);
            assert_eq!(c["model"], "outer");
        }
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let n = chunks.len();
        let last = &chunks[n - 3];
        assert_eq!(last["choices"][0]["delta"], json!({}));
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(last["fusion"], json!({"panel": ["a", "b"]}));
        assert_eq!(chunks[n - 2]["choices"], json!([]));
        assert_eq!(
            chunks[n - 2]["usage"],
            json!({"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                   "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 4},
                   "completion_tokens_details": {"reasoning_tokens": 5}})
        );
        assert_eq!(chunks[n - 1], json!("[DONE]"));
        // Text arrives in several pieces, the tool call's id and name first.
        let text_pieces = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
            .count();
        assert!(text_pieces > 1);
        let first_call = chunks
            .iter()
            .find(|c| c["choices"][0]["delta"]["tool_calls"].is_array())
            .unwrap();
        assert_eq!(
            first_call["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}})
        );
        let mut back = parse_stream(Api::Chat, s.as_bytes()).unwrap();
        back.usage = Usage::default();
        assert_eq!(back, reply);
    }

    #[test]
    fn writes_chat_stream_finish_and_usage_rules() {
        let mut m = meta();
        m.truncated = true;
        let s = write_stream(Api::Chat, &text_reply("partial"), &m, false);
        let chunks = payloads(&s);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        let n = chunks.len();
        assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "length");
        let back = parse_stream(Api::Chat, s.as_bytes()).unwrap();
        assert_eq!(back.text, "partial");
        assert_eq!(back.finish, Finish::Length);
    }

    #[test]
    fn writes_a_responses_stream() {
        let reply = tool_reply();
        let mut m = meta();
        m.fusion_call = Some(fusion_view());
        let s = write_stream(Api::Responses, &reply, &m, false);
        let evs = events(s.as_bytes());
        let names: Vec<&str> = evs.iter().map(|e| e.name.as_deref().unwrap()).collect();
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
        ];
        let text_deltas = names
            .iter()
            .filter(|n| **n == "response.output_text.delta")
            .count();
        assert!(text_deltas > 1);
        expected.extend(std::iter::repeat("response.output_text.delta").take(text_deltas));
        expected.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
        ]);
        let pos = names
            .iter()
            .position(|n| *n == "response.function_call_arguments.done")
            .unwrap();
        assert_eq!(&names[..expected.len()], expected.as_slice());
        assert_eq!(names[pos - 1], "response.function_call_arguments.delta");
        assert_eq!(names.last(), Some(&"response.completed"));
        let data = payloads(&s);
        for (i, (d, name)) in data.iter().zip(&names).enumerate() {
            assert_eq!(d["type"], *name);
            assert_eq!(d["sequence_number"], i);
        }
        assert_eq!(data[0]["response"]["status"], "in_progress");
        assert_eq!(data[0]["response"]["output"], json!([]));
        assert_eq!(data[0]["response"]["id"], "resp_fusion-r1");
        assert_eq!(data[2]["output_index"], 0);
        assert_eq!(data[2]["item"]["type"], "fusion_call");
        assert_eq!(data[3]["item"]["output"], fusion_view().result);
        assert_eq!(data[4]["item"]["content"], json!([]));
        assert_eq!(data[4]["output_index"], 1);
        let last = data.last().unwrap();
        assert_eq!(last["response"], responses::write_response(&reply, &m));
        let back = parse_stream(Api::Responses, s.as_bytes()).unwrap();
        assert_eq!(back.text, reply.text);
        assert_eq!(back.tool_calls, reply.tool_calls);
        assert_eq!(back.finish, Finish::ToolCalls);
        assert_eq!(back.usage, m.usage);
    }

    #[test]
    fn writes_an_incomplete_responses_stream() {
        let mut m = meta();
        m.truncated = true;
        let s = write_stream(Api::Responses, &text_reply("cut short"), &m, true);
        let data = payloads(&s);
        let last = data.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        let back = parse_stream(Api::Responses, s.as_bytes()).unwrap();
        assert_eq!(back.text, "cut short");
        assert_eq!(back.finish, Finish::Length);
    }

    #[test]
    fn writes_a_messages_stream() {
        let reply = tool_reply();
        let mut m = meta();
        m.fusion_call = Some(fusion_view());
        let s = write_stream(Api::Messages, &reply, &m, false);
        let data = payloads(&s);
        let names: Vec<String> = events(s.as_bytes())
            .into_iter()
            .map(|e| e.name.unwrap())
            .collect();
        for (d, name) in data.iter().zip(&names) {
            assert_eq!(d["type"], name.as_str());
        }
        assert_eq!(names[0], "message_start");
        assert_eq!(data[0]["message"]["id"], "msg_fusion-r1");
        assert_eq!(data[0]["message"]["content"], json!([]));
        assert_eq!(
            data[0]["message"]["usage"],
            json!({"input_tokens": 6, "cache_read_input_tokens": 20,
                   "cache_creation_input_tokens": 4, "output_tokens": 0})
        );
        assert_eq!(
            data[1]["content_block"],
            json!({"type": "server_tool_use", "id": "srvtoolu_fusion_1", "name": "fusion", "input": {"question": "q"}})
        );
        assert_eq!(data[2], json!({"type": "content_block_stop", "index": 0}));
        assert_eq!(data[3]["content_block"]["type"], "fusion_tool_result");
        assert_eq!(data[3]["content_block"]["content"], fusion_view().result);
        assert_eq!(
            data[5]["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(data[5]["index"], 2);
        let tool_start = data
            .iter()
            .find(|d| d["content_block"]["type"] == "tool_use")
            .unwrap();
        assert_eq!(
            tool_start["content_block"],
            json!({"type": "tool_use", "id": "call_1", "name": "weather", "input": {}})
        );
        let n = data.len();
        assert_eq!(
            data[n - 2],
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {
                    "input_tokens": 6, "cache_read_input_tokens": 20,
                    "cache_creation_input_tokens": 4, "output_tokens": 12,
                    "output_tokens_details": {"thinking_tokens": 5},
                },
                "fusion": {"panel": ["a", "b"]},
            })
        );
        assert_eq!(data[n - 1], json!({"type": "message_stop"}));
        let back = parse_stream(Api::Messages, s.as_bytes()).unwrap();
        assert_eq!(back.text, reply.text);
        assert_eq!(back.tool_calls, reply.tool_calls);
        assert_eq!(back.finish, Finish::ToolCalls);
        assert_eq!(back.usage, m.usage);
    }

    #[test]
    fn writes_messages_stop_reasons() {
        let mut m = meta();
        m.truncated = true;
        let s = write_stream(Api::Messages, &text_reply(""), &m, false);
        let data = payloads(&s);
        assert_eq!(
            data[1]["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(data[2]["type"], "content_block_stop");
        assert_eq!(data[3]["delta"]["stop_reason"], "pause_turn");
    }

    #[test]
    fn text_pieces_join_back() {
        for text in [
            "",
            "a",
            "héllo wörld ",
            "no-spaces-at-all-in-this-long-string-of-text",
            "日本語のテキストです。とても長い文章になります。",
        ] {
            let p = pieces(text, 5);
            assert_eq!(p.concat(), text);
            assert!(p.iter().all(|s| !s.is_empty() && s.chars().count() <= 10));
        }
        assert_eq!(
            pieces("one two three four", 3),
            ["one ", "two ", "three ", "four"]
        );
    }
}
