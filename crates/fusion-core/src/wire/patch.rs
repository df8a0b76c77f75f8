//! Same-API calls as patches: a provider request made from the client's own
//! JSON body with the minimum changed, so every content part, `cache_control`,
//! thinking block, `response_format`, `seed` and unknown field reaches the
//! provider as the client sent it. What each role changes is in docs/wire-roles.md.

use super::neutral::{Conversation, GenParams, ModelRequest, ToolCall, ToolChoice, ToolDef};
use super::{
    build_request, chat, is_fusion_tool, messages, names_fusion, responses, Api, ApiError,
};
use serde_json::{json, Map, Value};

/// Which call of a fusion turn a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRole {
    /// A panel member: answers the conversation in text, once, without the client's tools.
    Panel,
    /// An outer-model round that may call the fusion tool or the client's tools.
    OuterRound,
    /// The final answer, streamed or relayed to the client as its own response.
    Final,
}

/// The fusion call the outer model made and the result it got, appended to the
/// history in the API's native form (assistant tool call, then its result).
#[derive(Debug, Clone, PartialEq)]
pub struct FusionExchange {
    /// The outer model's text before the call (may be empty).
    pub text: String,
    pub call: ToolCall,
    /// The tool result, JSON text.
    pub result: String,
    /// Messages: the outer model's thinking blocks, raw with their signatures;
    /// with thinking on, Anthropic requires them before the `tool_use`.
    pub thinking: Vec<Value>,
}

/// What a patch changes besides the role's fixed rules.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchSpec<'a> {
    pub role: CallRole,
    pub model: &'a str,
    /// Whether the provider call streams.
    pub stream: bool,
    /// Tool entries appended after the client's, already in the API's spelling
    /// (a member's provider tools; the fusion tool for outer rounds, see [`tool_entry`]).
    pub extra_tools: &'a [Value],
    /// Top-level fields to set (`temperature`, `tool_choice`, ...); `Value::Null` removes one.
    pub set: &'a [(&'a str, Value)],
    pub exchange: Option<&'a FusionExchange>,
}

/// The provider request for a same-API call: the client's body, patched.
pub fn patch_request(api: Api, client: &Value, spec: &PatchSpec<'_>) -> Result<Value, ApiError> {
    let mut body = client
        .as_object()
        .cloned()
        .ok_or_else(|| ApiError::invalid("the request body must be a JSON object", None))?;
    drop_fusion_history(api, &mut body);
    let has_tool_use = api == Api::Messages && messages::history_has_tool_use(&body);
    Ok(patch_object(api, body, spec, has_tool_use))
}

/// [`patch_request`] on a copy of the client's object, its fusion history
/// already dropped. `history_has_tool_use`: the Messages history holds
/// `tool_use`/`tool_result` blocks (read by the caller: in a splice the
/// history is not in `body`, see [`super::splice`]).
pub(crate) fn patch_object(
    api: Api,
    mut body: Map<String, Value>,
    spec: &PatchSpec<'_>,
    history_has_tool_use: bool,
) -> Value {
    body.insert("model".into(), Value::String(spec.model.to_string()));
    // The fusion extension is the filter's, never a provider's.
    body.remove("fusion");
    let mut tools: Vec<Value> = match body.remove("tools") {
        Some(Value::Array(t)) => t,
        _ => Vec::new(),
    };
    tools.retain(|t| !is_fusion_tool(t));
    if body.get("tool_choice").is_some_and(names_fusion) {
        body.remove("tool_choice");
    }
    if spec.role == CallRole::Panel {
        // A member answers in text. Anthropic refuses `tool_use` history without
        // the tools declared: there they stay, with calls turned off.
        if api == Api::Messages && !tools.is_empty() && history_has_tool_use {
            body.insert("tool_choice".into(), messages::tool_choice_none());
        } else {
            tools.clear();
            body.remove("tool_choice");
        }
    }
    tools.extend(spec.extra_tools.iter().cloned());
    if tools.is_empty() {
        // Both refused by OpenAI without `tools`.
        body.remove("tool_choice");
        body.remove("parallel_tool_calls");
    } else {
        body.insert("tools".into(), Value::Array(tools));
    }
    for (key, value) in spec.set {
        if value.is_null() {
            body.remove(*key);
        } else {
            body.insert((*key).to_string(), value.clone());
        }
    }
    match api {
        Api::Chat => chat::patch(&mut body, spec),
        Api::Responses => responses::patch(&mut body, spec),
        Api::Messages => messages::patch(&mut body, spec),
    }
    Value::Object(body)
}

/// A function tool entry in the API's spelling (e.g. the fusion tool for outer rounds).
pub fn tool_entry(api: Api, tool: &super::neutral::ToolDef) -> Value {
    // The schema is cloned, not interpolated: `json!` would copy it through serde.
    let mut entry = serde_json::json!({"name": tool.name, "description": tool.description});
    let schema_key = if api == Api::Messages {
        "input_schema"
    } else {
        "parameters"
    };
    super::common::set(&mut entry, schema_key, tool.parameters.clone());
    match api {
        Api::Chat => super::sse::with(serde_json::json!({"type": "function"}), "function", entry),
        Api::Responses => super::sse::with(entry, "type", serde_json::json!("function")),
        Api::Messages => entry,
    }
}

/// The top-level fields `params` (and `tool_choice`, when given) take in `api`'s
/// spelling (`temperature`, `max_tokens`, `thinking`, `reasoning_effort`,
/// `tool_choice`, ...): what a patch sets where the engine's parameters differ
/// from the client's. Written by the API's own builder, so the spelling is one.
pub fn settings(
    api: Api,
    params: &GenParams,
    tool_choice: Option<&ToolChoice>,
) -> Map<String, Value> {
    let conversation = Conversation::default();
    // A tool makes the builder write `tool_choice`; it is removed below.
    let placeholder = [ToolDef {
        name: "_".into(),
        description: String::new(),
        parameters: json!({"type": "object"}),
    }];
    let params = GenParams {
        provider_tools: Vec::new(),
        ..params.clone()
    };
    let req = ModelRequest {
        model: "",
        conversation: &conversation,
        tools: if tool_choice.is_some() {
            &placeholder
        } else {
            &[]
        },
        tool_choice: tool_choice.unwrap_or(&ToolChoice::Auto),
        params: &params,
    };
    let mut body = match build_request(api, &req) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for key in [
        "model", "messages", "input", "system", "tools", "stream", "store",
    ] {
        body.remove(key);
    }
    body
}

/// Removes the filter's own fusion items a client replays from an earlier
/// fusion answer (older answers carried them: Responses `fusion_call` output
/// items; Messages `server_tool_use` named fusion and `fusion_tool_result`
/// blocks). No provider knows them; the answer's text stays. Returns whether
/// anything was removed.
pub fn drop_fusion_history(api: Api, body: &mut Map<String, Value>) -> bool {
    let mut removed = false;
    match api {
        Api::Responses => {
            if let Some(Value::Array(items)) = body.get_mut("input") {
                let before = items.len();
                items.retain(|i| !is_fusion_item(i));
                removed = items.len() != before;
            }
        }
        Api::Messages => {
            if let Some(Value::Array(msgs)) = body.get_mut("messages") {
                for m in msgs.iter_mut() {
                    if let Some(Value::Array(blocks)) = m.get_mut("content") {
                        let before = blocks.len();
                        blocks.retain(|b| !is_fusion_item(b));
                        removed |= blocks.len() != before;
                    }
                }
                // A message left without content is not a message.
                msgs.retain(|m| !matches!(m.get("content"), Some(Value::Array(b)) if b.is_empty()));
            }
        }
        Api::Chat => {}
    }
    removed
}

/// One of the filter's own fusion items (see [`drop_fusion_history`]).
fn is_fusion_item(v: &Value) -> bool {
    let ty = v.get("type").and_then(Value::as_str);
    matches!(ty, Some("fusion_call" | "fusion_tool_result"))
        || (ty == Some("server_tool_use")
            && v.get("name").and_then(Value::as_str) == Some(super::FUSION_TOOL))
}

/// Whether [`drop_fusion_history`] would remove anything, read without a copy.
pub fn has_fusion_history(api: Api, body: &Map<String, Value>) -> bool {
    match api {
        Api::Responses => body
            .get("input")
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(is_fusion_item)),
        // A message with an empty content array is dropped there too.
        Api::Messages => body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .any(|blocks| blocks.is_empty() || blocks.iter().any(is_fusion_item)),
        Api::Chat => false,
    }
}

/// `stream` set as the call needs it.
pub(crate) fn set_stream(body: &mut Map<String, Value>, stream: bool) {
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    } else {
        body.remove("stream");
    }
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
