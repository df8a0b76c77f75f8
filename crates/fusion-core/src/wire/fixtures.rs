//! Test fixtures the translators' tests share.

use super::sse::events;
use super::ResponseMeta;
use crate::wire::neutral::{Finish, Reply, ToolCall, Usage};
use serde_json::{json, Value};

pub fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "fusion-r1".into(),
        created_s: 1_700_000_000,
        // Of the input 20 cache reads and 4 cache writes, 5 of the output reasoning.
        usage: Usage {
            input_tokens: 30,
            output_tokens: 12,
            cached_input_tokens: 20,
            cache_write_tokens: 4,
            reasoning_tokens: 5,
        },
        fusion: json!({"panel": ["a", "b"]}),
        truncated: false,
    }
}

pub fn call(id: &str, name: &str, args: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
    }
}

pub fn text_reply(text: &str) -> Reply {
    Reply {
        model: "outer".into(),
        text: text.into(),
        ..Reply::default()
    }
}

pub fn tool_reply() -> Reply {
    Reply {
        model: "outer".into(),
        text: "Let me check the weather for you.".into(),
        tool_calls: vec![
            call(
                "call_1",
                "weather",
                "{\"city\":\"Paris\",\"unit\":\"celsius\"}",
            ),
            call("call_2", "time", "{}"),
        ],
        usage: Usage::default(),
        finish: Finish::ToolCalls,
        ..Reply::default()
    }
}

/// The JSON payloads of a stream, `[DONE]` as a string.
pub fn payloads(s: &str) -> Vec<Value> {
    events(s.as_bytes())
        .into_iter()
        .map(|e| serde_json::from_str(&e.data).unwrap_or(Value::String(e.data)))
        .collect()
}
