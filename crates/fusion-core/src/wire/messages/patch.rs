//! Messages patches: the per-role rules of docs/wire-roles.md.

use super::request::input_object;
use crate::wire::patch::{set_stream, PatchSpec};
use crate::wire::sse::with;
use serde_json::{json, Map, Value};

pub fn patch(body: &mut Map<String, Value>, spec: &PatchSpec<'_>) {
    set_stream(body, spec.stream);
    if let Some(ex) = spec.exchange {
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return;
        };
        let mut blocks = ex.thinking.clone();
        if !ex.text.is_empty() {
            blocks.push(json!({"type": "text", "text": ex.text}));
        }
        // Trees go in as built: `json!` would copy each through serde.
        let call = json!({"type": "tool_use", "id": ex.call.id, "name": ex.call.name});
        blocks.push(with(call, "input", input_object(&ex.call.arguments)));
        messages.push(with(
            json!({"role": "assistant"}),
            "content",
            Value::Array(blocks),
        ));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": ex.call.id, "content": ex.result}]}));
    }
}

/// Whether the history holds `tool_use` or `tool_result` blocks.
pub fn history_has_tool_use(body: &Map<String, Value>) -> bool {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .any(|b| {
            matches!(
                b.get("type").and_then(Value::as_str),
                Some("tool_use" | "tool_result")
            )
        })
}

/// `tool_choice` that turns tool calls off.
pub fn tool_choice_none() -> Value {
    json!({"type": "none"})
}
