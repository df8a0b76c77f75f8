//! Responses streams: reading a provider's stream whole, writing a client's.

use crate::wire::common::{pieces, set, str_field};
use crate::wire::neutral::{Finish, Reply, ToolCall};
use crate::wire::sse::{error_message, event_lines, with, EARLY};
use crate::wire::ResponseMeta;
use serde_json::{json, Value};

/// About how many characters each streamed text piece carries.
const PIECE: usize = 20;

pub fn read_stream(events: &[(String, Value)]) -> Result<Reply, String> {
    let mut text = String::new();
    let mut refusal: Option<String> = None;
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
            "response.refusal.delta" => refusal
                .get_or_insert_with(String::new)
                .push_str(str_field(v, "delta").unwrap_or_default()),
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
                last = Some(super::reply_from_response(response)?);
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
    if reply.text.is_empty() && reply.tool_calls.is_empty() && reply.refusal.is_none() {
        reply.text = text;
        reply.refusal = refusal;
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

pub fn write_stream(reply: &Reply, meta: &ResponseMeta) -> String {
    let done = super::write_response(reply, meta);
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
    // Trees go in with `with`, as built: `json!` would copy each through serde.
    w.push(
        "response.created",
        with(json!({}), "response", start.clone()),
    );
    w.push("response.in_progress", with(json!({}), "response", start));
    for (k, item) in super::output_items(reply, meta).into_iter().enumerate() {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        let at = |extra: Value| {
            let mut v = with(json!({"output_index": k}), "item_id", id.clone());
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            v
        };
        let in_progress = with(item.clone(), "status", json!("in_progress"));
        match str_field(&item, "type") {
            Some("message") => {
                let added = with(in_progress, "content", json!([]));
                w.push(
                    "response.output_item.added",
                    with(json!({"output_index": k}), "item", added),
                );
                let parts = item.get("content").and_then(Value::as_array);
                for (j, part) in parts.into_iter().flatten().enumerate() {
                    write_part(&mut w, &at, j, part);
                }
            }
            Some("function_call") => {
                let arguments = str_field(&item, "arguments").unwrap_or_default();
                let added = with(in_progress, "arguments", json!(""));
                w.push(
                    "response.output_item.added",
                    with(json!({"output_index": k}), "item", added),
                );
                for piece in pieces(arguments, PIECE) {
                    w.push(
                        "response.function_call_arguments.delta",
                        at(json!({"delta": piece})),
                    );
                }
                w.push(
                    "response.function_call_arguments.done",
                    at(with(
                        json!({"arguments": arguments}),
                        "name",
                        item.get("name").cloned().unwrap_or(Value::Null),
                    )),
                );
            }
            _ => {
                let added = with(in_progress, "output", Value::Null);
                w.push(
                    "response.output_item.added",
                    with(json!({"output_index": k}), "item", added),
                );
            }
        }
        w.push(
            "response.output_item.done",
            with(json!({"output_index": k}), "item", item),
        );
    }
    let last = if super::is_incomplete(reply, meta) {
        "response.incomplete"
    } else {
        "response.completed"
    };
    w.push(last, with(json!({}), "response", done));
    w.out
}

/// One content part of a message: `output_text` (its deltas, then its
/// annotations) or `refusal` (its deltas).
fn write_part(w: &mut ResponsesWriter, at: &dyn Fn(Value) -> Value, j: usize, part: &Value) {
    let refusal = str_field(part, "type") == Some("refusal");
    let (key, delta_ty, done_ty) = if refusal {
        ("refusal", "response.refusal.delta", "response.refusal.done")
    } else {
        (
            "text",
            "response.output_text.delta",
            "response.output_text.done",
        )
    };
    let full = str_field(part, key).unwrap_or_default();
    let empty = if refusal {
        json!({"type": "refusal", "refusal": ""})
    } else {
        json!({"type": "output_text", "text": "", "annotations": []})
    };
    w.push(
        "response.content_part.added",
        at(with(json!({"content_index": j}), "part", empty)),
    );
    for piece in pieces(full, PIECE) {
        let mut v = json!({"content_index": j, "delta": piece});
        if !refusal {
            set(&mut v, "logprobs", json!([]));
        }
        w.push(delta_ty, at(v));
    }
    let notes = part.get("annotations").and_then(Value::as_array);
    for (n, note) in notes.into_iter().flatten().enumerate() {
        w.push(
            "response.output_text.annotation.added",
            at(with(
                json!({"content_index": j, "annotation_index": n}),
                "annotation",
                note.clone(),
            )),
        );
    }
    let mut done = json!({"content_index": j});
    set(&mut done, key, json!(full));
    if !refusal {
        set(&mut done, "logprobs", json!([]));
    }
    w.push(done_ty, at(done));
    w.push(
        "response.content_part.done",
        at(with(json!({"content_index": j}), "part", part.clone())),
    );
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
    fn writes_a_responses_stream() {
        let reply = tool_reply();
        let m = meta();
        let s = write_stream(Api::Responses, &reply, &m, false);
        let evs = events(s.as_bytes());
        let names: Vec<&str> = evs.iter().map(|e| e.name.as_deref().unwrap()).collect();
        let mut expected = vec![
            "response.created",
            "response.in_progress",
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
        assert_eq!(data[2]["item"]["content"], json!([]));
        assert_eq!(data[2]["output_index"], 0);
        let last = data.last().unwrap();
        assert_eq!(
            last["response"],
            crate::wire::responses::write_response(&reply, &m)
        );
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
}
