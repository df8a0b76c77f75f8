//! Chat Completions streams: reading a provider's stream whole, writing a client's.

use crate::wire::citation;
use crate::wire::common::{pieces, str_field};
use crate::wire::neutral::{Finish, Reply, ToolCall};
use crate::wire::sse::{data_line, error_message, with, EARLY};
use crate::wire::{usage, Api, ResponseMeta};
use serde_json::{json, Value};

/// About how many characters each streamed text piece carries.
const PIECE: usize = 20;

pub fn read_stream(events: &[(String, Value)]) -> Result<Reply, String> {
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
            if let Some(r) = str_field(delta, "refusal") {
                reply.refusal.get_or_insert_with(String::new).push_str(r);
            }
            let notes = delta.get("annotations").and_then(Value::as_array);
            reply
                .citations
                .extend(notes.into_iter().flatten().map(citation::from_chat));
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

pub fn write_stream(reply: &Reply, meta: &ResponseMeta, include_usage: bool) -> String {
    // The delta goes in as built (`json!` would copy it through serde).
    let chunk = |delta: Value, finish: Option<&str>| {
        let choice = json!({"index": 0, "logprobs": null, "finish_reason": finish});
        let v = json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created_s,
            "model": reply.model,
        });
        with(
            v,
            "choices",
            Value::Array(vec![with(choice, "delta", delta)]),
        )
    };
    let mut out = String::new();
    data_line(
        &mut out,
        &chunk(json!({"role": "assistant", "content": ""}), None),
    );
    for piece in pieces(&reply.text, PIECE) {
        data_line(&mut out, &chunk(json!({"content": piece}), None));
    }
    for piece in pieces(reply.refusal.as_deref().unwrap_or_default(), PIECE) {
        data_line(&mut out, &chunk(json!({"refusal": piece}), None));
    }
    let notes = citation::write_all(Api::Chat, &reply.citations, &reply.text);
    if !notes.is_empty() {
        let delta = with(json!({}), "annotations", Value::Array(notes));
        data_line(&mut out, &chunk(delta, None));
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
    let finish = super::finish_reason(reply, meta.truncated);
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
        });
        let usage = with(usage, "usage", usage::write(Api::Chat, &meta.usage));
        data_line(&mut out, &usage);
    }
    out.push_str("data: [DONE]\n\n");
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::neutral::{Finish, Usage};

    use crate::wire::fixtures::{call, meta, payloads, text_reply, tool_reply};
    use crate::wire::Api;
    use crate::wire::{parse_stream, write_stream};
    use serde_json::json;

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
}
