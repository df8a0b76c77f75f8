//! Responses JSON responses: a provider's parsed, a client's written.

use super::request::arguments_text;
use crate::wire::citation;
use crate::wire::common::{set, str_field, with_prefix};
use crate::wire::neutral::{Finish, Reply, ToolCall, Usage};
use crate::wire::{usage, Api, ResponseMeta};
use serde_json::{json, Value};

pub fn parse_response(body: &[u8]) -> Result<Reply, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    reply_from_response(&v)
}

/// A Responses `response` object (a JSON body, or the one a stream ends with).
pub(crate) fn reply_from_response(v: &Value) -> Result<Reply, String> {
    if let Some(err) = v.get("error").filter(|e| e.is_object()) {
        let message = str_field(err, "message").unwrap_or("unknown error");
        return Err(format!("response has an error: {message}"));
    }
    let status = str_field(v, "status");
    if status == Some("failed") {
        return Err("response failed".to_string());
    }
    let output = v
        .get("output")
        .and_then(Value::as_array)
        .ok_or("response has no output")?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut refusal: Option<String> = None;
    let mut citations = Vec::new();
    for item in output {
        match str_field(item, "type") {
            Some("message") => {
                let parts = item.get("content").and_then(Value::as_array);
                for part in parts.into_iter().flatten() {
                    match str_field(part, "type") {
                        Some("output_text") => {
                            text.push_str(str_field(part, "text").unwrap_or_default());
                            let notes = part.get("annotations").and_then(Value::as_array);
                            citations
                                .extend(notes.into_iter().flatten().map(citation::from_responses));
                        }
                        Some("refusal") => refusal
                            .get_or_insert_with(String::new)
                            .push_str(str_field(part, "refusal").unwrap_or_default()),
                        _ => {}
                    }
                }
            }
            Some("function_call") => {
                if let Some(name) = str_field(item, "name") {
                    tool_calls.push(ToolCall {
                        id: str_field(item, "call_id")
                            .or_else(|| str_field(item, "id"))
                            .unwrap_or_default()
                            .to_string(),
                        name: name.to_string(),
                        arguments: arguments_text(item.get("arguments")),
                    });
                }
            }
            _ => {}
        }
    }
    let usage = v
        .get("usage")
        .map_or(Usage::default(), |u| usage::read(Api::Responses, u));
    let out_of_tokens = v
        .get("incomplete_details")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str)
        == Some("max_output_tokens");
    let finish = if status == Some("incomplete") && out_of_tokens {
        Finish::Length
    } else if !tool_calls.is_empty() {
        Finish::ToolCalls
    } else {
        Finish::Stop
    };
    Ok(Reply {
        model: str_field(v, "model").unwrap_or_default().to_string(),
        text,
        tool_calls,
        usage,
        finish,
        refusal,
        citations,
    })
}

pub fn write_response(reply: &Reply, meta: &ResponseMeta) -> Value {
    let incomplete = is_incomplete(reply, meta);
    let mut response = json!({
        "id": response_id(meta),
        "object": "response",
        "created_at": meta.created_s,
        "status": if incomplete { "incomplete" } else { "completed" },
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "metadata": {},
        "model": reply.model,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": false,
        "temperature": null,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": null,
        "truncation": "disabled",
        "user": null,
    });
    // The trees go in as built (`json!` copies a tree through serde).
    if incomplete {
        set(
            &mut response,
            "incomplete_details",
            json!({"reason": "max_output_tokens"}),
        );
    }
    set(
        &mut response,
        "output",
        Value::Array(output_items(reply, meta)),
    );
    set(
        &mut response,
        "usage",
        usage::write(Api::Responses, &meta.usage),
    );
    set(&mut response, "fusion", meta.fusion.clone());
    response
}

/// The budget ran out or the model hit its token limit.
pub(crate) fn is_incomplete(reply: &Reply, meta: &ResponseMeta) -> bool {
    meta.truncated || reply.finish == Finish::Length
}

pub(crate) fn response_id(meta: &ResponseMeta) -> String {
    with_prefix("resp_", &meta.id)
}

/// The response's output items, complete: the fusion call, the message, the
/// function calls. Streams announce the same items, with the same ids.
pub(crate) fn output_items(reply: &Reply, meta: &ResponseMeta) -> Vec<Value> {
    let base = meta.id.strip_prefix("resp_").unwrap_or(&meta.id);
    let mut items = Vec::with_capacity(reply.tool_calls.len() + 2);
    if !reply.text.is_empty() || reply.tool_calls.is_empty() {
        let mut content = Vec::with_capacity(2);
        if !reply.text.is_empty() || reply.refusal.is_none() {
            let notes = citation::write_all(Api::Responses, &reply.citations, &reply.text);
            let mut text = json!({"type": "output_text", "text": reply.text});
            set(&mut text, "annotations", Value::Array(notes));
            content.push(text);
        }
        if let Some(r) = &reply.refusal {
            content.push(json!({"type": "refusal", "refusal": r}));
        }
        let mut message = json!({
            "type": "message",
            "id": format!("msg_{base}"),
            "status": "completed",
            "role": "assistant",
        });
        set(&mut message, "content", Value::Array(content));
        items.push(message);
    }
    for (i, c) in reply.tool_calls.iter().enumerate() {
        let call_id = if c.id.is_empty() {
            format!("call_{base}_{i}")
        } else {
            c.id.clone()
        };
        items.push(json!({
            "type": "function_call",
            "id": format!("fc_{base}_{i}"),
            "call_id": call_id,
            "name": c.name,
            "arguments": c.arguments,
            "status": "completed",
        }));
    }
    items
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::neutral::{Finish, Reply, Usage};

    use crate::wire::fixtures::{call, meta};
    use serde_json::{json, Value};
    #[test]
    fn parses_a_text_response() {
        let body = br#"{"background":false,"created_at":1795250737,"error":null,"id":"resp_mock_14","incomplete_details":null,"model":"m1:words=5","object":"response","output":[{"id":"rs_1","type":"reasoning","summary":[]},{"content":[{"annotations":[],"logprobs":[],"text":"m1 answers","type":"output_text"},{"type":"refusal","refusal":"no"},{"annotations":[],"text":" here","type":"output_text"}],"id":"msg_mock_14","role":"assistant","status":"completed","type":"message"}],"parallel_tool_calls":true,"status":"completed","tool_choice":"auto","tools":[],"usage":{"input_tokens":2,"input_tokens_details":{"cached_tokens":0},"output_tokens":6,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":8}}"#;
        let reply = parse_response(body).unwrap();
        assert_eq!(reply.model, "m1:words=5");
        assert_eq!(reply.text, "m1 answers here");
        assert!(reply.tool_calls.is_empty());
        assert_eq!(
            reply.usage,
            Usage {
                input_tokens: 2,
                output_tokens: 6,
                ..Usage::default()
            }
        );
        assert_eq!(reply.finish, Finish::Stop);
    }

    #[test]
    fn parses_a_tool_call_response() {
        let body = br#"{"created_at":1795250737,"error":null,"id":"resp_mock_10","incomplete_details":null,"model":"m1","object":"response","output":[{"arguments":"{\"question\":\"hello there\"}","call_id":"call_49f9","id":"fc_49f9","name":"fusion","status":"completed","type":"function_call"}],"status":"completed","usage":{"input_tokens":2,"output_tokens":10,"total_tokens":12}}"#;
        let reply = parse_response(body).unwrap();
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
        assert_eq!(reply.usage.output_tokens, 10);
    }

    #[test]
    fn parses_an_incomplete_response() {
        let body = br#"{"id":"r","model":"m","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":"cut"}]}]}"#;
        let reply = parse_response(body).unwrap();
        assert_eq!(reply.text, "cut");
        assert_eq!(reply.finish, Finish::Length);
        assert_eq!(reply.usage, Usage::default());
        let body = br#"{"status":"incomplete","incomplete_details":{"reason":"content_filter"},"output":[]}"#;
        assert_eq!(parse_response(body).unwrap().finish, Finish::Stop);
    }

    #[test]
    fn rejects_error_responses() {
        let err = parse_response(br#"{"error":{"code":null,"message":"mock-llm: status 500","param":null,"type":"server_error"}}"#).unwrap_err();
        assert!(err.contains("mock-llm: status 500"), "{err}");
        assert!(parse_response(br#"{"status":"failed","error":null,"output":[]}"#).is_err());
        assert!(parse_response(br#"{"status":"completed"}"#).is_err());
        assert!(parse_response(b"not json").is_err());
        assert!(parse_response(b"[1,2]").is_err());
    }

    #[test]
    fn writes_a_text_response() {
        let reply = Reply {
            model: "outer".into(),
            text: "The answer.".into(),
            ..Reply::default()
        };
        let v = write_response(&reply, &meta());
        assert_eq!(v["id"], "resp_fusion-r1");
        assert_eq!(v["object"], "response");
        assert_eq!(v["created_at"], 1_700_000_000);
        assert_eq!(v["status"], "completed");
        assert_eq!(v["incomplete_details"], Value::Null);
        assert_eq!(v["model"], "outer");
        assert_eq!(
            v["output"],
            json!([{
                "type": "message", "id": "msg_fusion-r1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "The answer.", "annotations": []}],
            }])
        );
        assert_eq!(
            v["usage"],
            json!({
                "input_tokens": 30,
                "input_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 4},
                "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 5},
                "total_tokens": 42,
            })
        );
        assert_eq!(v["parallel_tool_calls"], true);
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["tools"], json!([]));
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["fusion"], json!({"panel": ["a", "b"]}));
    }

    #[test]
    fn writes_function_calls() {
        let reply = Reply {
            model: "outer".into(),
            text: String::new(),
            tool_calls: vec![
                call("call_1", "weather", "{\"city\":\"Oslo\"}"),
                call("", "time", "{}"),
            ],
            finish: Finish::ToolCalls,
            ..Reply::default()
        };
        let mut m = meta();
        m.id = "resp_abc".into();
        let v = write_response(&reply, &m);
        assert_eq!(v["id"], "resp_abc");
        assert_eq!(
            v["output"],
            json!([
                {"type": "function_call", "id": "fc_abc_0", "call_id": "call_1", "name": "weather",
                 "arguments": "{\"city\":\"Oslo\"}", "status": "completed"},
                {"type": "function_call", "id": "fc_abc_1", "call_id": "call_abc_1", "name": "time",
                 "arguments": "{}", "status": "completed"},
            ])
        );
        assert_eq!(v["status"], "completed");
    }

    #[test]
    fn writes_text_before_function_calls() {
        let reply = Reply {
            text: "Checking.".into(),
            tool_calls: vec![call("call_1", "weather", "{}")],
            ..Reply::default()
        };
        let v = write_response(&reply, &meta());
        let types: Vec<&str> = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["message", "function_call"]);
    }

    #[test]
    fn writes_incomplete_when_truncated_or_cut() {
        let reply = Reply {
            text: "partial".into(),
            ..Reply::default()
        };
        let mut m = meta();
        m.truncated = true;
        let v = write_response(&reply, &m);
        assert_eq!(v["status"], "incomplete");
        assert_eq!(
            v["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        let cut = Reply {
            finish: Finish::Length,
            ..reply
        };
        assert_eq!(write_response(&cut, &meta())["status"], "incomplete");
    }

    #[test]
    fn written_responses_parse_back() {
        let reply = Reply {
            model: "outer".into(),
            text: "Hi.".into(),
            tool_calls: vec![call("call_1", "weather", "{}")],
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
