//! Test fixtures the translators' tests share.

use super::ResponseMeta;
use crate::wire::neutral::{ToolCall, Usage};
use serde_json::json;

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
        fusion_call: None,
    }
}

pub fn call(id: &str, name: &str, args: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: args.into(),
    }
}
