//! Chat Completions requests: a client's parsed, a provider's built.

use crate::wire::common::{
    content_text, insert_provider_tools, insert_sampling, reasoning, request_head, str_field,
};
use crate::wire::neutral::{GenParams, Message, ModelRequest, ToolCall, ToolChoice, ToolDef};
use crate::wire::patch::tool_entry;
use crate::wire::sse::with;
use crate::wire::{ApiError, ClientRequest};
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
            "user" => Message::User(super::content::read_user(
                &format!("messages[{i}]"),
                m.get("content").unwrap_or(&Value::Null),
            )?),
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
        req.conversation.system = Some(crate::text::join(&system, "\n\n"));
    }
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| ApiError::invalid("`tools` must be an array", Some("tools")))?;
        for t in tools {
            if crate::wire::is_fusion_tool(t) {
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
        Some(v) if crate::wire::is_fusion_tool(v) => {
            ToolChoice::Named(crate::wire::FUSION_TOOL.to_string())
        }
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or_default(),
        _ => ToolChoice::Auto,
    }
}

pub(super) fn parse_tool_calls(v: Option<&Value>) -> Vec<ToolCall> {
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
                    Some(other) => crate::text::json(other),
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
            // Trees go in as built: `json!` would copy each through serde.
            Message::User(parts) => with(
                json!({"role": "user"}),
                "content",
                super::content::write_user(parts),
            ),
            Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
                json!({"role": "assistant", "content": text})
            }
            Message::Assistant { text, tool_calls } => {
                let content = if text.is_empty() {
                    Value::Null
                } else {
                    json!(text)
                };
                let calls = tool_calls.iter().map(tool_call_json).collect();
                let m = with(json!({"role": "assistant"}), "content", content);
                with(m, "tool_calls", Value::Array(calls))
            }
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
            .map(|t| tool_entry(crate::wire::Api::Chat, t))
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
    // OpenAI refuses `metadata` without `store: true`, and a rebuilt call is
    // never stored: the client's metadata stays out (docs/wire-roles.md).
    insert_provider_tools(&mut body, p);
    Value::Object(body)
}

pub(super) fn tool_call_json(c: &ToolCall) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}
