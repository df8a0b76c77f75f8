//! Chat Completions patches: the per-role rules of docs/wire-roles.md.

use crate::wire::patch::{set_stream, CallRole, PatchSpec};
use serde_json::{json, Map, Value};

pub fn patch(body: &mut Map<String, Value>, spec: &PatchSpec<'_>) {
    set_stream(body, spec.stream);
    if spec.stream {
        // The report needs the usage; the relay drops the chunk when the client
        // did not ask for it. Other stream options stay as the client set them.
        let mut options = match body.remove("stream_options") {
            Some(Value::Object(o)) if spec.role == CallRole::Final => o,
            _ => Map::new(),
        };
        options.insert("include_usage".into(), json!(true));
        body.insert("stream_options".into(), Value::Object(options));
    } else {
        body.remove("stream_options");
    }
    if spec.role != CallRole::Final {
        // One answer per call: the engine reads the first choice only.
        body.remove("n");
        // OpenAI refuses `metadata` without `store: true`; an inner call is not stored.
        body.remove("store");
        body.remove("metadata");
    }
    if let Some(ex) = spec.exchange {
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return;
        };
        let content = if ex.text.is_empty() {
            Value::Null
        } else {
            json!(ex.text)
        };
        let mut assistant = json!({
            "role": "assistant",
            "tool_calls": [{"id": ex.call.id, "type": "function",
                "function": {"name": ex.call.name, "arguments": ex.call.arguments}}],
        });
        // Inserted as built: `json!` would copy the value through serde.
        if let Some(obj) = assistant.as_object_mut() {
            obj.insert("content".into(), content);
        }
        messages.push(assistant);
        messages.push(json!({"role": "tool", "tool_call_id": ex.call.id, "content": ex.result}));
    }
}
