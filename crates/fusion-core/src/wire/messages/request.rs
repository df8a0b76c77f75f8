//! Messages requests: a client's parsed, a provider's built.

use crate::wire::common::{
    content_text, insert_provider_tools, insert_sampling, request_head, str_field,
};
use crate::wire::neutral::{
    push_part, GenParams, Message, ModelRequest, Part, ToolCall, ToolChoice, ToolDef,
};
use crate::wire::patch::tool_entry;
use crate::wire::sse::with;
use crate::wire::{is_fusion_tool, ApiError, ClientRequest, FUSION_TOOL};
use serde_json::{json, Map, Value};

/// `max_tokens` is required by the Messages API: the default when the client set none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

pub fn parse_request(body: &Value) -> Result<ClientRequest, ApiError> {
    let (obj, model) = request_head(body)?;
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("`messages` must be an array", Some("messages")))?;
    let mut req = ClientRequest {
        model: model.to_string(),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        // A Messages stream always carries the usage.
        include_usage: true,
        ..ClientRequest::default()
    };
    let system = obj.get("system").map(content_text).unwrap_or_default();
    if !system.is_empty() {
        req.conversation.system = Some(system);
    }
    for (i, m) in messages.iter().enumerate() {
        let role = str_field(m, "role").ok_or_else(|| {
            ApiError::invalid(
                format!("`messages[{i}].role` must be a string"),
                Some("messages"),
            )
        })?;
        let content = m.get("content").unwrap_or(&Value::Null);
        let out = &mut req.conversation.messages;
        match (role, content) {
            ("user" | "assistant", Value::Array(blocks)) => {
                parse_blocks(&format!("messages[{i}]"), role, blocks, out)?
            }
            ("user", other) => out.push(Message::user_text(content_text(other))),
            // Mid-conversation system messages (Claude Code sends them): their
            // text joins the system prompt.
            ("system", other) => {
                let text = content_text(other);
                match &mut req.conversation.system {
                    Some(s) => {
                        s.push_str("\n\n");
                        s.push_str(&text);
                    }
                    None => req.conversation.system = Some(text),
                }
            }
            ("assistant", other) => out.push(Message::Assistant {
                text: content_text(other),
                tool_calls: Vec::new(),
            }),
            (other, _) => {
                return Err(ApiError::invalid(
                    format!("`messages[{i}].role` `{other}` is not a Messages role"),
                    Some("messages"),
                ))
            }
        }
    }
    if let Some(tools) = obj.get("tools").filter(|v| !v.is_null()) {
        let tools = tools
            .as_array()
            .ok_or_else(|| ApiError::invalid("`tools` must be an array", Some("tools")))?;
        for t in tools {
            if is_fusion_tool(t) {
                req.fusion_tools.push(t.clone());
            } else if let Some(def) = parse_custom_tool(t) {
                req.tools.push(def);
            }
        }
    }
    req.tool_choice = parse_tool_choice(obj.get("tool_choice"));
    req.params = GenParams {
        max_tokens: obj.get("max_tokens").and_then(Value::as_u64),
        temperature: obj.get("temperature").and_then(Value::as_f64),
        top_p: obj.get("top_p").and_then(Value::as_f64),
        stop: obj.get("stop_sequences").filter(|v| !v.is_null()).cloned(),
        metadata: obj.get("metadata").filter(|v| v.is_object()).cloned(),
        ..GenParams::default()
    };
    req.fusion_block = obj.get("fusion").filter(|v| v.is_object()).cloned();
    Ok(req)
}

/// A message's content blocks. Text blocks join into the message text, an
/// assistant's `tool_use` blocks become its tool calls and a user's
/// `tool_result` blocks become tool results, emitted before the user's text.
/// A user's images and documents are parts of its turn; any other user block is
/// refused by name. An assistant's thinking and server tool blocks are the
/// provider's own state: a same-API patch carries them, a rebuild leaves them out.
fn parse_blocks(
    at: &str,
    role: &str,
    blocks: &[Value],
    out: &mut Vec<Message>,
) -> Result<(), ApiError> {
    let mut text: Vec<&str> = Vec::new();
    let mut parts: Vec<Part> = Vec::new();
    let mut tool_calls = Vec::new();
    let mut results = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match (role, str_field(b, "type")) {
            ("assistant", Some("text")) => text.extend(str_field(b, "text")),
            ("user", Some("text")) => push_part(
                &mut parts,
                Part::Text(str_field(b, "text").unwrap_or_default().to_string()),
            ),
            ("user", Some("image" | "document")) => push_part(
                &mut parts,
                super::content::read_block(&format!("{at}.content[{j}]"), b)?,
            ),
            ("assistant", Some("tool_use")) => {
                if let Some(name) = str_field(b, "name") {
                    tool_calls.push(ToolCall {
                        id: str_field(b, "id").unwrap_or_default().to_string(),
                        name: name.to_string(),
                        arguments: input_text(b.get("input")),
                    });
                }
            }
            ("user", Some("tool_result")) => {
                if let Some(Value::Array(inner)) = b.get("content") {
                    crate::wire::responses::only_text(
                        &format!("{at}.content[{j}].content"),
                        inner,
                        "messages",
                    )?;
                }
                results.push(Message::ToolResult {
                    call_id: str_field(b, "tool_use_id").unwrap_or_default().to_string(),
                    content: b.get("content").map(content_text).unwrap_or_default(),
                })
            }
            ("assistant", _) => {}
            (_, other) => {
                return Err(ApiError::invalid(
                    format!(
                        "`{at}.content[{j}]` is a `{}` block, which fusion does not carry",
                        other.unwrap_or("(none)")
                    ),
                    Some("messages"),
                ))
            }
        }
    }
    if role == "assistant" {
        out.push(Message::Assistant {
            text: crate::text::join(&text, "\n"),
            tool_calls,
        });
        return Ok(());
    }
    let had_results = !results.is_empty();
    out.extend(results);
    if !had_results || !parts.is_empty() {
        if parts.is_empty() {
            parts.push(Part::Text(String::new()));
        }
        out.push(Message::User(parts));
    }
    Ok(())
}

/// A `tool_use` input as the JSON text of the arguments.
pub(super) fn input_text(input: Option<&Value>) -> String {
    match input {
        Some(Value::Null) | None => "{}".to_string(),
        Some(v) => crate::text::json(v),
    }
}

fn parse_custom_tool(t: &Value) -> Option<ToolDef> {
    match str_field(t, "type") {
        None | Some("custom") => {}
        Some(_) => return None,
    }
    Some(ToolDef {
        name: str_field(t, "name")?.to_string(),
        description: str_field(t, "description").unwrap_or_default().to_string(),
        parameters: t
            .get("input_schema")
            .filter(|p| !p.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    })
}

fn parse_tool_choice(v: Option<&Value>) -> ToolChoice {
    let Some(o) = v.filter(|v| v.is_object()) else {
        return ToolChoice::Auto;
    };
    if is_fusion_tool(o) {
        return ToolChoice::Named(FUSION_TOOL.into());
    }
    match str_field(o, "type") {
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => str_field(o, "name")
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or_default(),
        _ => ToolChoice::Auto,
    }
}

pub fn build_request(req: &ModelRequest<'_>) -> Value {
    // (role, blocks), adjacent same-role messages merged: the API wants them alternating.
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in &req.conversation.messages {
        let (role, blocks) = match m {
            Message::User(parts) => (
                "user",
                parts
                    .iter()
                    .filter_map(super::content::write_part)
                    .collect(),
            ),
            Message::Assistant { text, tool_calls } => {
                let mut blocks: Vec<Value> = text_block(text).into_iter().collect();
                blocks.extend(tool_calls.iter().map(|c| {
                    let call = json!({"type": "tool_use", "id": c.id, "name": c.name});
                    with(call, "input", input_object(&c.arguments))
                }));
                ("assistant", blocks)
            }
            Message::ToolResult { call_id, content } => (
                "user",
                vec![json!({"type": "tool_result", "tool_use_id": call_id, "content": content})],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| with(json!({"role": role}), "content", Value::Array(content)))
        .collect();
    let p = req.params;
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert(
        "max_tokens".into(),
        json!(p.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(system) = &req.conversation.system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| tool_entry(crate::wire::Api::Messages, t))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        let choice = match req.tool_choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Named(name) => json!({"type": "tool", "name": name}),
        };
        body.insert("tool_choice".into(), choice);
    }
    match p.reasoning.as_ref().and_then(thinking_budget) {
        // Extended thinking accepts no sampling parameters and needs room beyond its budget.
        Some(budget) => {
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
            let max = p
                .max_tokens
                .unwrap_or(DEFAULT_MAX_TOKENS)
                .max(budget + 1024);
            body.insert("max_tokens".into(), json!(max));
        }
        None => insert_sampling(&mut body, p),
    }
    if let Some(user) = p.metadata.as_ref().and_then(|m| m.get("user_id")) {
        body.insert("metadata".into(), with(json!({}), "user_id", user.clone()));
    }
    insert_provider_tools(&mut body, p);
    // `stop` may come from a Chat client as a single string.
    let stop: Vec<&str> = match &p.stop {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !stop.is_empty() {
        body.insert("stop_sequences".into(), json!(stop));
    }
    Value::Object(body)
}

/// The thinking budget for a reasoning effort (Messages has budgets, not efforts).
fn thinking_budget(reasoning: &Value) -> Option<u64> {
    match reasoning.get("effort").and_then(Value::as_str)? {
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        _ => None,
    }
}

/// A text block, or none for empty text (the API rejects empty text blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// Tool-call arguments as a `tool_use` input: the parsed object, or `{}`.
pub(crate) fn input_object(arguments: &str) -> Value {
    serde_json::from_slice::<Value>(arguments.as_bytes())
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::wire::neutral::{
        Conversation, GenParams, Message, ModelRequest, ToolChoice, ToolDef,
    };

    use crate::wire::fixtures::call;
    use serde_json::{json, Value};

    fn result(id: &str, content: &str) -> Message {
        Message::ToolResult {
            call_id: id.into(),
            content: content.into(),
        }
    }

    #[test]
    fn parses_a_simple_request() {
        let req = parse_request(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": true,
        }))
        .unwrap();
        assert_eq!(req.model, "claude-sonnet-4-5");
        assert!(req.stream);
        assert_eq!(req.conversation.system.as_deref(), Some("be brief"));
        assert_eq!(req.conversation.messages, vec![Message::user_text("hi")]);
        assert_eq!(req.params.max_tokens, Some(1024));
        assert_eq!(req.tool_choice, ToolChoice::Auto);
        assert_eq!(req.fusion_block, None);
    }

    #[test]
    fn parses_blocks_tool_uses_and_tool_results() {
        let req = parse_request(&json!({
            "model": "m",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "sys1"}, {"type": "text", "text": "sys2", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "..."}},
                    {"type": "text", "text": "weather and time?"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "noon"}], "is_error": false},
                    {"type": "text", "text": "thanks"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "fusion", "input": {}},
                    {"type": "fusion_tool_result", "tool_use_id": "srvtoolu_1", "content": {}},
                    {"type": "text", "text": "Sunny at noon."}
                ]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]},
            ],
        }))
        .unwrap();
        assert_eq!(req.conversation.system.as_deref(), Some("sys1\nsys2"));
        assert_eq!(
            req.conversation.messages,
            vec![
                Message::User(vec![
                    Part::Image {
                        source: crate::wire::neutral::Source::Base64 {
                            media_type: "image/png".into(),
                            data: "...".into()
                        },
                        detail: None
                    },
                    Part::Text("weather and time?".into())
                ]),
                Message::Assistant {
                    text: "Checking.".into(),
                    tool_calls: vec![
                        call("toolu_1", "weather", "{\"city\":\"Paris\"}"),
                        call("toolu_2", "time", "{}"),
                    ],
                },
                result("toolu_1", "sunny"),
                result("toolu_2", "noon"),
                Message::user_text("thanks"),
                Message::Assistant {
                    text: "Sunny at noon.".into(),
                    tool_calls: vec![],
                },
                result("toolu_3", ""),
            ]
        );
    }

    #[test]
    fn parses_tools_choice_params_and_fusion() {
        let req = parse_request(&json!({
            "model": "m",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "q"}],
            "tools": [
                {"name": "weather", "description": "Weather", "input_schema": {"type": "object"}},
                {"type": "custom", "name": "time", "input_schema": {"type": "object", "properties": {}}},
                {"type": "web_search_20250305", "name": "web_search"},
                {"description": "nameless"},
                {"type": "fusion", "models": ["a"]},
                {"type": "openrouter:fusion"},
            ],
            "tool_choice": {"type": "tool", "name": "weather"},
            "temperature": 0.3,
            "top_p": 0.8,
            "stop_sequences": ["END"],
            "fusion": {"models": ["x"]},
        }))
        .unwrap();
        let names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["weather", "time"]);
        assert_eq!(req.tools[0].description, "Weather");
        assert_eq!(req.tools[0].parameters, json!({"type": "object"}));
        assert_eq!(req.fusion_tools.len(), 2);
        assert_eq!(req.tool_choice, ToolChoice::Named("weather".into()));
        assert_eq!(req.params.temperature, Some(0.3));
        assert_eq!(req.params.top_p, Some(0.8));
        assert_eq!(req.params.stop, Some(json!(["END"])));
        assert_eq!(req.fusion_block, Some(json!({"models": ["x"]})));
    }

    #[test]
    fn parses_tool_choices() {
        let choice = |c: Value| {
            parse_request(&json!({"model": "m", "messages": [], "tool_choice": c}))
                .unwrap()
                .tool_choice
        };
        assert_eq!(choice(json!({"type": "auto"})), ToolChoice::Auto);
        assert_eq!(choice(json!({"type": "any"})), ToolChoice::Required);
        assert_eq!(choice(json!({"type": "none"})), ToolChoice::None);
        assert_eq!(
            choice(json!({"type": "tool", "name": "t"})),
            ToolChoice::Named("t".into())
        );
        assert_eq!(choice(json!({"type": "tool"})), ToolChoice::Auto);
        assert_eq!(
            choice(json!({"type": "fusion"})),
            ToolChoice::Named("fusion".into())
        );
        assert_eq!(choice(json!("any")), ToolChoice::Auto);
    }

    #[test]
    fn mid_conversation_system_messages_join_the_system_prompt() {
        let req = parse_request(&json!({"model": "m", "max_tokens": 5, "system": "base",
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "system", "content": [{"type": "text", "text": "now be terse"}]},
                         {"role": "user", "content": "go"}]}))
        .unwrap();
        assert_eq!(
            req.conversation.system.as_deref(),
            Some("base\n\nnow be terse")
        );
        assert_eq!(req.conversation.messages.len(), 2);
    }

    #[test]
    fn images_and_documents_are_parts_of_the_user_turn_and_built_back() {
        let req = parse_request(&json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "title": "a.pdf"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "foo"}},
            {"type": "text", "text": "compare"}]}]}))
        .unwrap();
        let Message::User(parts) = &req.conversation.messages[0] else {
            panic!()
        };
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[2],
            Part::File {
                source: crate::wire::neutral::Source::Base64 {
                    media_type: "text/plain".into(),
                    data: "Zm9v".into()
                },
                filename: None
            }
        );
        let tools = [];
        let body = build_request(&ModelRequest {
            model: "claude",
            conversation: &req.conversation,
            tools: &tools,
            tool_choice: &ToolChoice::Auto,
            params: &GenParams::default(),
        });
        let blocks = &body["messages"][0]["content"];
        assert_eq!(
            blocks[0],
            json!({"type": "image", "source": {"type": "url", "url": "https://x/y.png"}})
        );
        assert_eq!(blocks[1]["source"]["media_type"], "application/pdf");
        assert_eq!(blocks[1]["title"], "a.pdf");
        assert_eq!(blocks[3], json!({"type": "text", "text": "compare"}));
    }

    #[test]
    fn rejects_bad_requests_naming_the_field() {
        let param = |body: Value| parse_request(&body).unwrap_err().param;
        assert_eq!(parse_request(&json!("x")).unwrap_err().status, 400);
        assert_eq!(param(json!({"messages": []})), Some("model".into()));
        assert_eq!(param(json!({"model": "m"})), Some("messages".into()));
        assert_eq!(
            param(json!({"model": "m", "messages": "hi"})),
            Some("messages".into())
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"content": "hi"}]})),
            Some("messages".into())
        );
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "tool", "content": "hi"}]})),
            Some("messages".into())
        );
        // A user block fusion cannot carry is refused by name, never dropped.
        let err = parse_request(
            &json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "q"}, {"type": "container_upload", "file_id": "f"}]}]}),
        )
        .unwrap_err();
        assert!(err
            .message
            .contains("`messages[0].content[1]` is a `container_upload` block"));
        let err = parse_request(&json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "u"}}]}]}]}))
        .unwrap_err();
        assert!(err.message.contains("`image` part"), "{}", err.message);
        assert_eq!(
            param(json!({"model": "m", "messages": [], "tools": "weather"})),
            Some("tools".into())
        );
    }

    #[test]
    fn builds_a_request_merging_turns() {
        let conversation = Conversation {
            system: Some("sys".into()),
            messages: vec![
                Message::user_text("q"),
                Message::user_text("more"),
                Message::Assistant {
                    text: "Checking.".into(),
                    tool_calls: vec![
                        call("toolu_1", "weather", "{\"city\":\"Paris\"}"),
                        call("toolu_2", "time", "not json"),
                    ],
                },
                result("toolu_1", "sunny"),
                result("toolu_2", "noon"),
                Message::user_text("thanks"),
                Message::Assistant {
                    text: String::new(),
                    tool_calls: vec![],
                },
                Message::Assistant {
                    text: "Done.".into(),
                    tool_calls: vec![],
                },
            ],
        };
        let tools = [ToolDef {
            name: "weather".into(),
            description: "Weather".into(),
            parameters: json!({"type": "object"}),
        }];
        let params = GenParams {
            max_tokens: None,
            temperature: Some(0.5),
            top_p: None,
            stop: Some(json!("END")),
            ..GenParams::default()
        };
        let body = build_request(&ModelRequest {
            model: "claude",
            conversation: &conversation,
            tools: &tools,
            tool_choice: &ToolChoice::Required,
            params: &params,
        });
        assert_eq!(
            body,
            json!({
                "model": "claude",
                "max_tokens": 4096,
                "system": "sys",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "q"}, {"type": "text", "text": "more"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
                        {"type": "text", "text": "thanks"},
                    ]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
                ],
                "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "any"},
                "temperature": 0.5,
                "stop_sequences": ["END"],
            })
        );
    }

    #[test]
    fn builds_tool_choices_and_params() {
        let conversation = Conversation {
            system: None,
            messages: vec![Message::user_text("q")],
        };
        let tools = [ToolDef {
            name: "t".into(),
            description: String::new(),
            parameters: json!({}),
        }];
        let build = |choice: ToolChoice, tools: &[ToolDef]| {
            let params = GenParams {
                max_tokens: Some(50),
                top_p: Some(0.9),
                stop: Some(json!(["a", "b"])),
                ..GenParams::default()
            };
            build_request(&ModelRequest {
                model: "m",
                conversation: &conversation,
                tools,
                tool_choice: &choice,
                params: &params,
            })
        };
        assert_eq!(
            build(ToolChoice::Auto, &tools)["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            build(ToolChoice::None, &tools)["tool_choice"],
            json!({"type": "none"})
        );
        assert_eq!(
            build(ToolChoice::Named("t".into()), &tools)["tool_choice"],
            json!({"type": "tool", "name": "t"})
        );
        let body = build(ToolChoice::Required, &[]);
        assert_eq!(
            body,
            json!({
                "model": "m", "max_tokens": 50,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}],
                "top_p": 0.9, "stop_sequences": ["a", "b"],
            })
        );
    }
}
