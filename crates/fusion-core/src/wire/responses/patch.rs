//! Responses patches: the per-role rules of docs/wire-roles.md.

use crate::wire::patch::{set_stream, CallRole, PatchSpec};
use serde_json::{json, Map, Value};

pub fn patch(body: &mut Map<String, Value>, spec: &PatchSpec<'_>) {
    set_stream(body, spec.stream);
    if !spec.stream {
        body.remove("stream_options");
    }
    if spec.role != CallRole::Final {
        // An inner call answers now and is not kept at the provider.
        body.insert("store".into(), json!(false));
        body.remove("background");
    }
    if let Some(ex) = spec.exchange {
        let input = match body.remove("input") {
            Some(Value::Array(items)) => items,
            Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
            _ => Vec::new(),
        };
        let mut input = input;
        if !ex.text.is_empty() {
            input.push(json!({"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": ex.text, "annotations": []}]}));
        }
        input.push(json!({"type": "function_call", "call_id": ex.call.id,
            "name": ex.call.name, "arguments": ex.call.arguments}));
        input.push(
            json!({"type": "function_call_output", "call_id": ex.call.id,
            "output": ex.result}),
        );
        body.insert("input".into(), Value::Array(input));
    }
}
