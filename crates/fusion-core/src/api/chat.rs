//! OpenAI Chat Completions (`/v1/chat/completions`).

use super::text::{
    content_text, insert_provider_tools, insert_sampling, reasoning, request_head, str_field,
};
use super::{usage, Api, ApiError, ClientRequest, ResponseMeta};
use crate::conversation::{
    Finish, GenParams, Message, ModelRequest, Reply, ToolCall, ToolChoice, ToolDef, Usage,
};
use serde_json::{json, Map, Value};

pub fn parse_request(body: &Value) -> Result<ClientRequest, ApiError> {
    let (obj, model) = request_head(body)?;
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("`messages` must be an array", Some("messages")))?;
    let mut req = ClientRequest {
        model: model.to_string(),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ..ClientRequest::default()
    };
    let mut system: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = str_field(m, "role").ok_or_else(|| {
            ApiError::invalid(
                format!("`messages[{i}].role` must be a string"),
                Some("messages"),
            )
        })?;
        let text = m.get("content").map(content_text).unwrap_or_default();
        let msg = match role {
            "system" | "developer" => {
                system.push(text);
                continue;
            }
            "user" => Message::User(text),
            "assistant" => Message::Assistant {
                text,
                tool_calls: parse_tool_calls(m.get("tool_calls")),
            },
            "tool" => Message::ToolResult {
                call_id: str_field(m, "tool_call_id").unwrap_or_default().to_string(),
                content: text,
            },
            other => {
                return Err(ApiError::invalid(
                    format!("`messages[{i}].role` `{other}` is not a Chat Completions role"),
                    Some("messages"),
                ))
            }
        };
        req.conversation.messages.push(msg);
    }
    if !system.is_empty() {
        req.conversation.system = Some(system.join("\n\n"));
    }
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| ApiError::invalid("`tools` must be an array", Some("tools")))?;
        for t in tools {
            if super::is_fusion_tool(t) {
                req.fusion_tools.push(t.clone());
            } else if let Some(def) = parse_function_tool(t) {
                req.tools.push(def);
            }
        }
    }
    req.fusion_block = obj.get("fusion").filter(|v| v.is_object()).cloned();
    req.tool_choice = parse_tool_choice(obj.get("tool_choice"));
    req.params = GenParams {
        max_tokens: obj
            .get("max_completion_tokens")
            .or_else(|| obj.get("max_tokens"))
            .and_then(Value::as_u64),
        temperature: obj.get("temperature").and_then(Value::as_f64),
        top_p: obj.get("top_p").and_then(Value::as_f64),
        stop: obj.get("stop").filter(|v| !v.is_null()).cloned(),
        reasoning: obj.get("reasoning_effort").and_then(reasoning),
        metadata: obj.get("metadata").filter(|v| v.is_object()).cloned(),
        ..GenParams::default()
    };
    Ok(req)
}

fn parse_function_tool(t: &Value) -> Option<ToolDef> {
    if str_field(t, "type") != Some("function") {
        return None;
    }
    let f = t.get("function")?;
    Some(ToolDef {
        name: str_field(f, "name")?.to_string(),
        description: str_field(f, "description").unwrap_or_default().to_string(),
        parameters: f
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    })
}

fn parse_tool_choice(v: Option<&Value>) -> ToolChoice {
    match v {
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => ToolChoice::Auto,
        },
        Some(v) if super::is_fusion_tool(v) => ToolChoice::Named(super::FUSION_TOOL.to_string()),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or_default(),
        _ => ToolChoice::Auto,
    }
}

fn parse_tool_calls(v: Option<&Value>) -> Vec<ToolCall> {
    let Some(calls) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    calls
        .iter()
        .filter_map(|c| {
            let f = c.get("function")?;
            Some(ToolCall {
                id: str_field(c, "id").unwrap_or_default().to_string(),
                name: str_field(f, "name")?.to_string(),
                arguments: match f.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "{}".to_string(),
                },
            })
        })
        .collect()
}

pub fn build_request(req: &ModelRequest<'_>) -> Value {
    let mut messages = Vec::with_capacity(req.conversation.messages.len() + 1);
    if let Some(system) = &req.conversation.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &req.conversation.messages {
        messages.push(match m {
            Message::User(text) => json!({"role": "user", "content": text}),
            Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                json!({"role": "assistant", "content": text})
            }
            Message::Assistant { text, tool_calls } => json!({
                "role": "assistant",
                "content": if text.is_empty() { Value::Null } else { json!(text) },
                "tool_calls": tool_calls.iter().map(tool_call_json).collect::<Vec<_>>(),
            }),
            Message::ToolResult { call_id, content } => {
                json!({"role": "tool", "tool_call_id": call_id, "content": content})
            }
        });
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters,
                }})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        let choice = match req.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), choice);
    }
    let p = req.params;
    if let Some(v) = p.max_tokens {
        body.insert("max_completion_tokens".into(), json!(v));
    }
    insert_sampling(&mut body, p);
    if let Some(v) = &p.stop {
        body.insert("stop".into(), v.clone());
    }
    if let Some(effort) = p.reasoning.as_ref().and_then(|r| r.get("effort")) {
        body.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(v) = &p.metadata {
        body.insert("metadata".into(), v.clone());
    }
    insert_provider_tools(&mut body, p);
    Value::Object(body)
}

fn tool_call_json(c: &ToolCall) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}

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
    })
}

pub fn write_response(reply: &Reply, meta: &ResponseMeta) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    if reply.tool_calls.is_empty() {
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
    message.insert("refusal".into(), Value::Null);
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created_s,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(reply, meta.truncated),
        }],
        "usage": usage::write(Api::Chat, &meta.usage),
        "fusion": meta.fusion,
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use crate::conversation::Conversation;

    fn parse(body: Value) -> ClientRequest {
        parse_request(&body).unwrap()
    }

    #[test]
    fn request_roles_system_tools_and_params_are_read() {
        let req = parse(json!({
            "model": "gpt-x", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use metric."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "fusion", "panel": ["m"]}],
            "tool_choice": "required", "max_tokens": 50, "temperature": 0.5
        }));
        assert_eq!(req.model, "gpt-x");
        assert!(req.stream && req.include_usage);
        assert_eq!(
            req.conversation.system.as_deref(),
            Some("Be brief.\n\nUse metric.")
        );
        assert_eq!(req.conversation.messages[0], Message::User("Hi".into()));
        let Message::Assistant { tool_calls, .. } = &req.conversation.messages[1] else {
            panic!("{:?}", req.conversation.messages[1])
        };
        assert_eq!(tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(
            req.conversation.messages[2],
            Message::ToolResult {
                call_id: "c1".into(),
                content: "42".into()
            }
        );
        assert_eq!(
            req.tools.len(),
            1,
            "the fusion entry is not a function tool"
        );
        assert_eq!(req.tools[0].parameters["type"], "object");
        assert_eq!(req.fusion_tools.len(), 1);
        assert_eq!(req.tool_choice, ToolChoice::Required);
        assert_eq!(
            (req.params.max_tokens, req.params.temperature),
            (Some(50), Some(0.5))
        );
    }

    #[test]
    fn unknown_roles_and_non_array_messages_are_named_errors() {
        let err =
            parse_request(&json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}))
                .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("`wizard`"), "{}", err.message);
        let err = parse_request(&json!({"model": "m", "messages": "hi"})).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
    }

    #[test]
    fn tool_choice_naming_fusion_in_either_spelling_forces_it() {
        for choice in [
            json!({"type": "fusion"}),
            json!({"type": "function", "function": {"name": "get_weather"}}),
            json!("none"),
        ] {
            let req = parse(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
            );
            let want = match choice.as_str() {
                Some("none") => ToolChoice::None,
                _ if choice["type"] == "fusion" => ToolChoice::Named("fusion".into()),
                _ => ToolChoice::Named("get_weather".into()),
            };
            assert_eq!(req.tool_choice, want, "{choice}");
        }
    }

    #[test]
    fn built_request_carries_history_tools_and_params() {
        let conversation = Conversation {
            system: Some("sys".into()),
            messages: vec![
                Message::User("q".into()),
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "fusion".into(),
                        arguments: "{}".into(),
                    }],
                },
                Message::ToolResult {
                    call_id: "c1".into(),
                    content: "r".into(),
                },
            ],
        };
        let tools = vec![ToolDef {
            name: "fusion".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
        }];
        let params = GenParams {
            max_tokens: Some(7),
            ..GenParams::default()
        };
        let body = build_request(&ModelRequest {
            model: "gpt-x",
            conversation: &conversation,
            tools: &tools,
            tool_choice: &ToolChoice::Named("fusion".into()),
            params: &params,
        });
        assert_eq!(body["model"], "gpt-x");
        let m = body["messages"].as_array().unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m[0], json!({"role": "system", "content": "sys"}));
        assert_eq!(m[2]["content"], Value::Null);
        assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "fusion");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "r"})
        );
        assert_eq!(body["tools"][0]["function"]["name"], "fusion");
        assert_eq!(body["tool_choice"]["function"]["name"], "fusion");
        assert_eq!(body["max_completion_tokens"], 7);
    }

    #[test]
    fn responses_parse_text_tool_calls_usage_and_finish() {
        let reply = parse_response(
            json!({"model": "gpt-x", "choices": [{"message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"k": 1}}}]},
                "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(reply.model, "gpt-x");
        assert_eq!(reply.text, "");
        assert_eq!(reply.tool_calls[0].arguments, "{\"k\":1}");
        assert_eq!(reply.finish, Finish::ToolCalls);
        assert_eq!(
            (reply.usage.input_tokens, reply.usage.output_tokens),
            (3, 4)
        );
        let cut = parse_response(
            br#"{"choices": [{"message": {"content": "abc"}, "finish_reason": "length"}]}"#,
        )
        .unwrap();
        assert_eq!((cut.text.as_str(), cut.finish), ("abc", Finish::Length));
        assert!(parse_response(b"{\"choices\": []}").is_err());
        assert!(parse_response(b"not json").is_err());
    }

    #[test]
    fn written_response_has_the_chat_shape_and_truncation_signal() {
        let meta = ResponseMeta {
            id: "fusion-1".into(),
            created_s: 9,
            usage: Usage {
                input_tokens: 2,
                output_tokens: 3,
                ..Usage::default()
            },
            fusion: json!({"run_id": "r"}),
            truncated: false,
            fusion_call: None,
        };
        let reply = Reply {
            model: "gpt-x".into(),
            text: "hello".into(),
            ..Reply::default()
        };
        let v = write_response(&reply, &meta);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "hello");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 2);
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["fusion"]["run_id"], "r");
        let truncated = ResponseMeta {
            truncated: true,
            ..meta
        };
        assert_eq!(
            write_response(&reply, &truncated)["choices"][0]["finish_reason"],
            "length"
        );
        let calls = Reply {
            text: String::new(),
            tool_calls: vec![ToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            ..reply
        };
        assert_eq!(finish_reason(&calls, false), "tool_calls");
    }
}
