//! Messages streams: reading a provider's stream whole, writing a client's.

use crate::wire::citation;
use crate::wire::common::{pieces, str_field, u64_field};
use crate::wire::neutral::{Reply, ToolCall, Usage};
use crate::wire::sse::{error_message, event_lines, with, EARLY};
use crate::wire::{usage, Api, ResponseMeta};
use serde_json::{json, Map, Value};

/// About how many characters each streamed text piece carries.
const PIECE: usize = 20;

/// A Messages content block being streamed.
enum Block {
    /// Text and the citations its deltas carried.
    Text(String, Vec<Value>),
    ToolUse {
        id: String,
        name: String,
        input: Value,
        json: String,
    },
    Other,
}

pub fn read_stream(events: &[(String, Value)]) -> Result<Reply, String> {
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
                    Some("text") => Block::Text(
                        str_field(b, "text").unwrap_or_default().into(),
                        b.get("citations")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default(),
                    ),
                    Some("tool_use") => Block::ToolUse {
                        id: str_field(b, "id").unwrap_or_default().to_string(),
                        name: str_field(b, "name").unwrap_or_default().to_string(),
                        input: b.get("input").cloned().unwrap_or(Value::Null),
                        json: String::new(),
                    },
                    _ => Block::Other,
                };
                crate::vec_map::insert_by_key(&mut blocks, (index, block), |(i, _)| *i);
            }
            "content_block_delta" => {
                let index = u64_field(v, "index");
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let block = blocks.iter_mut().rev().find(|(i, _)| *i == index);
                match (block, str_field(delta, "type")) {
                    (Some((_, Block::Text(t, _))), Some("text_delta")) => {
                        t.push_str(str_field(delta, "text").unwrap_or_default());
                    }
                    (Some((_, Block::Text(_, cites))), Some("citations_delta")) => {
                        cites.extend(delta.get("citation").cloned());
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
    for (_, block) in blocks {
        match block {
            Block::Text(t, cites) => {
                let start = reply.text.chars().count() as u64;
                reply.text.push_str(&t);
                let end = reply.text.chars().count() as u64;
                reply
                    .citations
                    .extend(cites.iter().map(|c| citation::from_messages(c, start, end)));
            }
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
                    crate::text::json(&input)
                },
            }),
            Block::Other => {}
        }
    }
    if stop_reason.as_deref() == Some("refusal") {
        reply.refusal = Some(std::mem::take(&mut reply.text));
    }
    reply.finish = super::finish_of(stop_reason.as_deref(), !reply.tool_calls.is_empty());
    Ok(reply)
}

pub fn write_stream(reply: &Reply, meta: &ResponseMeta) -> String {
    let mut out = String::new();
    let mut push = |ty: &str, v: Value| event_lines(&mut out, ty, &with(v, "type", json!(ty)));
    // Trees go in with `with`, as built: `json!` would copy each through serde.
    let message = json!({
        "id": super::message_id(meta),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
    });
    // The output is yet to come: the delta tells it.
    let start_usage = usage::write(
        Api::Messages,
        &Usage {
            output_tokens: 0,
            reasoning_tokens: 0,
            ..meta.usage
        },
    );
    push(
        "message_start",
        with(json!({}), "message", with(message, "usage", start_usage)),
    );
    for (i, block) in super::content_blocks(reply, meta).into_iter().enumerate() {
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
                let cites = block.get("citations").and_then(Value::as_array);
                for c in cites.into_iter().flatten() {
                    let delta = with(json!({"type": "citations_delta"}), "citation", c.clone());
                    push(
                        "content_block_delta",
                        with(json!({"index": i}), "delta", delta),
                    );
                }
            }
            Some("tool_use") => {
                let input = block
                    .get("input")
                    .map(crate::text::json)
                    .unwrap_or_default();
                let start = with(block, "input", json!({}));
                push(
                    "content_block_start",
                    with(json!({"index": i}), "content_block", start),
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
                with(json!({"index": i}), "content_block", block),
            ),
        }
        push("content_block_stop", json!({"index": i}));
    }
    let delta = json!({
        "delta": {"stop_reason": super::stop_reason(reply, meta), "stop_sequence": null},
    });
    let delta = with(delta, "usage", usage::write(Api::Messages, &meta.usage));
    push("message_delta", with(delta, "fusion", meta.fusion.clone()));
    push("message_stop", json!({}));
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::fixtures::{call, meta, payloads, text_reply, tool_reply};
    use crate::wire::neutral::{Finish, Usage};
    use crate::wire::sse::events;
    use crate::wire::Api;
    use crate::wire::{parse_stream, write_stream};
    use serde_json::json;

    // Streams recorded from the project's mock-llm.
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
    fn writes_a_messages_stream() {
        let reply = tool_reply();
        let m = meta();
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
            json!({"type": "text", "text": ""})
        );
        assert_eq!(data[1]["index"], 0);
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
}
