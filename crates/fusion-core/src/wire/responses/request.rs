//! Responses requests: a client's parsed, a provider's built.

use crate::wire::common::{
    content_text, insert_provider_tools, insert_sampling, reasoning, request_head, str_field,
};
use crate::wire::neutral::{GenParams, Message, ModelRequest, ToolCall, ToolChoice, ToolDef};
use crate::wire::patch::tool_entry;
use crate::wire::sse::with;
use crate::wire::{is_fusion_tool, ApiError, ClientRequest, FUSION_TOOL};
use serde_json::{json, Map, Value};

pub fn parse_request(body: &Value) -> Result<ClientRequest, ApiError> {
    let (obj, model) = request_head(body)?;
    let mut req = ClientRequest {
        model: model.to_string(),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        // A Responses stream always ends with the usage.
        include_usage: true,
        ..ClientRequest::default()
    };
    // Stored-state references (`previous_response_id`, `conversation`,
    // `item_reference` items) are the engine's to forward on a patched call or
    // refuse (`wire::state::check_stateful`); the neutral model leaves them out.
    let mut system: Vec<String> = Vec::new();
    if let Some(instructions) = str_field(body, "instructions") {
        system.push(instructions.to_string());
    }
    match obj.get("input") {
        Some(Value::String(s)) => req
            .conversation
            .messages
            .push(Message::user_text(s.clone())),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                parse_item(i, item, &mut req.conversation.messages, &mut system)?;
            }
        }
        _ => {
            return Err(ApiError::invalid(
                "`input` must be a string or an array of input items",
                Some("input"),
            ))
        }
    }
    if !system.is_empty() {
        req.conversation.system = Some(crate::text::join(&system, "\n\n"));
    }
    if let Some(tools) = obj.get("tools").filter(|v| !v.is_null()) {
        let tools = tools
            .as_array()
            .ok_or_else(|| ApiError::invalid("`tools` must be an array", Some("tools")))?;
        for t in tools {
            if is_fusion_tool(t) {
                req.fusion_tools.push(t.clone());
            } else if let Some(def) = parse_function_tool(t) {
                req.tools.push(def);
            }
        }
    }
    req.tool_choice = parse_tool_choice(obj.get("tool_choice"));
    req.params = GenParams {
        max_tokens: obj.get("max_output_tokens").and_then(Value::as_u64),
        temperature: obj.get("temperature").and_then(Value::as_f64),
        top_p: obj.get("top_p").and_then(Value::as_f64),
        stop: None,
        reasoning: obj.get("reasoning").and_then(reasoning),
        max_tool_calls: obj.get("max_tool_calls").and_then(Value::as_u64),
        metadata: obj.get("metadata").filter(|v| v.is_object()).cloned(),
        ..GenParams::default()
    };
    req.fusion_block = obj.get("fusion").filter(|v| v.is_object()).cloned();
    Ok(req)
}

/// One `input` item: a message, a function call or a function call's output.
/// Other item types (reasoning, references, server tool calls) carry nothing the
/// conversation keeps.
fn parse_item(
    i: usize,
    item: &Value,
    messages: &mut Vec<Message>,
    system: &mut Vec<String>,
) -> Result<(), ApiError> {
    if !item.is_object() {
        return Err(ApiError::invalid(
            format!("`input[{i}]` must be an object"),
            Some("input"),
        ));
    }
    match str_field(item, "type") {
        None | Some("message") => {
            let role = str_field(item, "role").ok_or_else(|| {
                ApiError::invalid(format!("`input[{i}].role` must be a string"), Some("input"))
            })?;
            let text = item.get("content").map(content_text).unwrap_or_default();
            match role {
                "system" | "developer" => system.push(text),
                "user" => messages.push(Message::User(super::content::read_user(
                    &format!("input[{i}]"),
                    item.get("content").unwrap_or(&Value::Null),
                )?)),
                "assistant" => messages.push(Message::Assistant {
                    text,
                    tool_calls: Vec::new(),
                }),
                other => {
                    return Err(ApiError::invalid(
                        format!("`input[{i}].role` `{other}` is not a Responses role"),
                        Some("input"),
                    ))
                }
            }
        }
        Some("function_call") => {
            let name = str_field(item, "name").ok_or_else(|| {
                ApiError::invalid(format!("`input[{i}].name` must be a string"), Some("input"))
            })?;
            let call = ToolCall {
                id: str_field(item, "call_id")
                    .or_else(|| str_field(item, "id"))
                    .unwrap_or_default()
                    .to_string(),
                name: name.to_string(),
                arguments: arguments_text(item.get("arguments")),
            };
            // Consecutive calls, and the assistant text just before them, are one turn.
            match messages.last_mut() {
                Some(Message::Assistant { tool_calls, .. }) => tool_calls.push(call),
                _ => messages.push(Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![call],
                }),
            }
        }
        Some("function_call_output") => messages.push(Message::ToolResult {
            call_id: str_field(item, "call_id").unwrap_or_default().to_string(),
            content: match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(parts)) => {
                    only_text(&format!("input[{i}].output"), parts, "input")?;
                    content_text(v)
                }
                Some(Value::Null) | None => String::new(),
                Some(other) => crate::text::json(other),
            },
        }),
        Some(_) => {}
    }
    Ok(())
}

/// Tool output that is not text (images, files) has no place in the neutral
/// tool result: refused, naming it, rather than dropped.
pub(crate) fn only_text(at: &str, parts: &[Value], param: &str) -> Result<(), ApiError> {
    for (j, p) in parts.iter().enumerate() {
        let ty = str_field(p, "type").unwrap_or("(none)");
        if !matches!(ty, "text" | "input_text" | "output_text") {
            return Err(ApiError::invalid(
                format!("`{at}[{j}]` is a `{ty}` part: fusion carries text tool results only"),
                Some(param),
            ));
        }
    }
    Ok(())
}

pub(super) fn arguments_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "{}".to_string(),
        Some(other) => crate::text::json(other),
    }
}

fn parse_function_tool(t: &Value) -> Option<ToolDef> {
    if str_field(t, "type") != Some("function") {
        return None;
    }
    // The flat Responses shape, or the nested Chat shape for leniency.
    let f = t.get("function").unwrap_or(t);
    Some(ToolDef {
        name: str_field(f, "name")?.to_string(),
        description: str_field(f, "description").unwrap_or_default().to_string(),
        parameters: f
            .get("parameters")
            .filter(|p| !p.is_null())
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
        Some(o @ Value::Object(_)) if is_fusion_tool(o) => ToolChoice::Named(FUSION_TOOL.into()),
        Some(o @ Value::Object(_)) if str_field(o, "type") == Some("function") => o
            .get("name")
            .or_else(|| o.get("function").and_then(|f| f.get("name")))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or_default(),
        _ => ToolChoice::Auto,
    }
}

pub fn build_request(req: &ModelRequest<'_>) -> Value {
    let mut input = Vec::with_capacity(req.conversation.messages.len());
    for m in &req.conversation.messages {
        match m {
            // The content goes in as built: `json!` would copy it through serde.
            Message::User(parts) => input.push(with(
                json!({"role": "user"}),
                "content",
                super::content::write_user(parts),
            )),
            Message::Assistant { text, tool_calls } => {
                if !text.is_empty() || tool_calls.is_empty() {
                    input.push(json!({"role": "assistant", "content": text}));
                }
                input.extend(tool_calls.iter().map(|c| {
                    json!({
                        "type": "function_call",
                        "call_id": c.id,
                        "name": c.name,
                        "arguments": c.arguments,
                    })
                }));
            }
            Message::ToolResult { call_id, content } => input.push(json!({
                "type": "function_call_output",
                "call_id": call_id,
                "output": content,
            })),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("input".into(), Value::Array(input));
    if let Some(system) = &req.conversation.system {
        body.insert("instructions".into(), json!(system));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| tool_entry(crate::wire::Api::Responses, t))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        let choice = match req.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(name) => json!({"type": "function", "name": name}),
        };
        body.insert("tool_choice".into(), choice);
    }
    // Responses has no stop sequences: `stop` is dropped.
    let p = req.params;
    if let Some(v) = p.max_tokens {
        body.insert("max_output_tokens".into(), json!(v));
    }
    insert_sampling(&mut body, p);
    if let Some(v) = &p.reasoning {
        body.insert("reasoning".into(), v.clone());
    }
    if let Some(v) = p.max_tool_calls {
        body.insert("max_tool_calls".into(), json!(v));
    }
    if let Some(v) = &p.metadata {
        body.insert("metadata".into(), v.clone());
    }
    insert_provider_tools(&mut body, p);
    body.insert("store".into(), json!(false));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::neutral::{
        Conversation, GenParams, Message, ModelRequest, ToolChoice, ToolDef,
    };
    use crate::wire::neutral::{Part, Source};

    use crate::wire::fixtures::call;
    use serde_json::{json, Value};

    #[test]
    fn parses_a_string_input() {
        let req = parse_request(&json!({
            "model": "gpt-5", "input": "hi", "instructions": "be brief", "stream": true,
        }))
        .unwrap();
        assert_eq!(req.model, "gpt-5");
        assert!(req.stream);
        assert_eq!(req.conversation.system.as_deref(), Some("be brief"));
        assert_eq!(req.conversation.messages, vec![Message::user_text("hi")]);
        assert_eq!(req.tool_choice, ToolChoice::Auto);
        assert!(req.tools.is_empty() && req.fusion_tools.is_empty());
        assert_eq!(req.fusion_block, None);
    }

    #[test]
    fn parses_input_items() {
        let req = parse_request(&json!({
            "model": "m",
            "instructions": "inst",
            "input": [
                {"role": "developer", "content": "dev"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "what is"},
                    {"type": "input_image", "image_url": "data:..."},
                    {"type": "input_text", "text": "the weather?"}
                ]},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Let me look.", "annotations": []}
                ]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "noon"}]},
                {"type": "fusion_call", "id": "fc1", "arguments": "{}", "output": {}},
                {"role": "system", "content": "sys"},
                {"type": "function_call", "call_id": "c3", "name": "time", "arguments": {"tz": "UTC"}},
            ],
        }))
        .unwrap();
        assert_eq!(
            req.conversation.system.as_deref(),
            Some("inst\n\ndev\n\nsys")
        );
        assert_eq!(
            req.conversation.messages,
            vec![
                Message::User(vec![
                    Part::Text("what is".into()),
                    Part::Image {
                        source: Source::Url("data:...".into()),
                        detail: None
                    },
                    Part::Text("the weather?".into())
                ]),
                Message::Assistant {
                    text: "Let me look.".into(),
                    tool_calls: vec![
                        call("c1", "weather", "{\"city\":\"Paris\"}"),
                        call("c2", "time", "{}"),
                    ],
                },
                Message::ToolResult {
                    call_id: "c1".into(),
                    content: "sunny".into()
                },
                Message::ToolResult {
                    call_id: "c2".into(),
                    content: "noon".into()
                },
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![call("c3", "time", "{\"tz\":\"UTC\"}")],
                },
            ]
        );
    }

    #[test]
    fn parses_tools_choice_params_and_fusion() {
        let req = parse_request(&json!({
            "model": "m",
            "input": "q",
            "tools": [
                {"type": "function", "name": "weather", "description": "Weather", "parameters": {"type": "object"}},
                {"type": "function", "name": "bare"},
                {"type": "function"},
                {"type": "web_search"},
                {"type": "fusion", "models": ["a", "b"]},
                {"type": "openrouter:fusion"},
            ],
            "tool_choice": {"type": "function", "name": "weather"},
            "max_output_tokens": 500,
            "temperature": 0.2,
            "top_p": 0.9,
            "fusion": {"models": ["x"]},
        }))
        .unwrap();
        let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["weather", "bare"]);
        assert_eq!(req.tools[0].description, "Weather");
        assert_eq!(req.tools[0].parameters, json!({"type": "object"}));
        assert_eq!(req.tools[1].parameters["type"], "object");
        assert_eq!(
            req.fusion_tools,
            vec![
                json!({"type": "fusion", "models": ["a", "b"]}),
                json!({"type": "openrouter:fusion"})
            ]
        );
        assert_eq!(req.tool_choice, ToolChoice::Named("weather".into()));
        assert_eq!(req.params.max_tokens, Some(500));
        assert_eq!(req.params.temperature, Some(0.2));
        assert_eq!(req.params.top_p, Some(0.9));
        assert_eq!(req.params.stop, None);
        assert_eq!(req.fusion_block, Some(json!({"models": ["x"]})));
    }

    #[test]
    fn parses_tool_choices() {
        let choice = |c: Value| {
            parse_request(&json!({"model": "m", "input": "q", "tool_choice": c}))
                .unwrap()
                .tool_choice
        };
        assert_eq!(choice(json!("auto")), ToolChoice::Auto);
        assert_eq!(choice(json!("none")), ToolChoice::None);
        assert_eq!(choice(json!("required")), ToolChoice::Required);
        assert_eq!(
            choice(json!({"type": "fusion"})),
            ToolChoice::Named("fusion".into())
        );
        assert_eq!(
            choice(json!({"type": "openrouter:fusion"})),
            ToolChoice::Named("fusion".into())
        );
        assert_eq!(choice(json!({"type": "web_search"})), ToolChoice::Auto);
        assert_eq!(choice(json!(7)), ToolChoice::Auto);
    }

    #[test]
    fn a_non_object_fusion_is_not_a_block() {
        let req = parse_request(&json!({"model": "m", "input": "q", "fusion": true})).unwrap();
        assert_eq!(req.fusion_block, None);
    }

    #[test]
    fn rejects_bad_requests_naming_the_field() {
        let param = |body: Value| parse_request(&body).unwrap_err().param;
        assert_eq!(parse_request(&json!([1])).unwrap_err().status, 400);
        assert_eq!(param(json!({"input": "q"})), Some("model".into()));
        assert_eq!(
            param(json!({"model": 3, "input": "q"})),
            Some("model".into())
        );
        assert_eq!(param(json!({"model": "m"})), Some("input".into()));
        // Stored-state references are the engine's to forward or refuse.
        assert!(parse_request(
            &json!({"model": "m", "input": "q", "previous_response_id": "resp_1"})
        )
        .is_ok());
        assert_eq!(
            param(json!({"model": "m", "input": 5})),
            Some("input".into())
        );
        assert_eq!(
            param(json!({"model": "m", "input": [3]})),
            Some("input".into())
        );
        assert_eq!(
            param(json!({"model": "m", "input": [{"role": "tool", "content": "x"}]})),
            Some("input".into())
        );
        assert_eq!(
            param(json!({"model": "m", "input": [{"type": "message", "content": "x"}]})),
            Some("input".into())
        );
        assert_eq!(
            param(json!({"model": "m", "input": [{"type": "function_call", "call_id": "c"}]})),
            Some("input".into())
        );
        assert_eq!(
            param(json!({"model": "m", "input": "q", "tools": {"type": "function"}})),
            Some("tools".into())
        );
    }

    #[test]
    fn builds_a_request() {
        let conversation = Conversation {
            system: Some("sys".into()),
            messages: vec![
                Message::user_text("q"),
                Message::Assistant {
                    text: "looking".into(),
                    tool_calls: vec![call("c1", "weather", "{\"city\":\"Paris\"}")],
                },
                Message::ToolResult {
                    call_id: "c1".into(),
                    content: "sunny".into(),
                },
                Message::Assistant {
                    text: "It is sunny.".into(),
                    tool_calls: vec![],
                },
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![call("c2", "time", "{}")],
                },
            ],
        };
        let tools = [ToolDef {
            name: "weather".into(),
            description: "Weather".into(),
            parameters: json!({"type": "object"}),
        }];
        let params = GenParams {
            max_tokens: Some(100),
            temperature: Some(0.5),
            top_p: Some(1.0),
            stop: Some(json!(["END"])),
            ..GenParams::default()
        };
        let body = build_request(&ModelRequest {
            model: "gpt-5",
            conversation: &conversation,
            tools: &tools,
            tool_choice: &ToolChoice::Named("weather".into()),
            params: &params,
        });
        assert_eq!(
            body,
            json!({
                "model": "gpt-5",
                "instructions": "sys",
                "input": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "looking"},
                    {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Paris\"}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                    {"role": "assistant", "content": "It is sunny."},
                    {"type": "function_call", "call_id": "c2", "name": "time", "arguments": "{}"},
                ],
                "tools": [{"type": "function", "name": "weather", "description": "Weather", "parameters": {"type": "object"}}],
                "tool_choice": {"type": "function", "name": "weather"},
                "max_output_tokens": 100,
                "temperature": 0.5,
                "top_p": 1.0,
                "store": false,
            })
        );
    }

    #[test]
    fn builds_a_minimal_request() {
        let conversation = Conversation {
            system: None,
            messages: vec![Message::user_text("q")],
        };
        let body = build_request(&ModelRequest {
            model: "m",
            conversation: &conversation,
            tools: &[],
            tool_choice: &ToolChoice::Required,
            params: &GenParams::default(),
        });
        assert_eq!(
            body,
            json!({"model": "m", "input": [{"role": "user", "content": "q"}], "store": false})
        );
    }
}
