#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::wire::neutral::ToolDef;
use serde_json::json;

fn spec<'a>(role: CallRole, stream: bool) -> PatchSpec<'a> {
    PatchSpec {
        role,
        model: "provider-model",
        stream,
        extra_tools: &[],
        set: &[],
        exchange: None,
    }
}

fn exchange() -> FusionExchange {
    FusionExchange {
        text: "Asking the panel.".into(),
        call: ToolCall {
            id: "call_f1".into(),
            name: "fusion".into(),
            arguments: "{\"question\":\"q\"}".into(),
        },
        result: "{\"answers\":[]}".into(),
        thinking: vec![json!({"type": "thinking", "thinking": "hm", "signature": "sig=="})],
    }
}

fn chat_body() -> Value {
    json!({
        "model": "fusion",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
            ]}
        ],
        "tools": [{"type": "fusion"}, {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "seed": 7,
        "n": 2,
        "metadata": {"k": "v"},
        "stream": true,
        "stream_options": {"include_usage": false, "include_obfuscation": false},
        "x_future_field": {"a": [1, 2]},
        "fusion": {"preset": "fast"}
    })
}

#[test]
fn a_chat_panel_call_keeps_content_and_drops_what_a_member_cannot_use() {
    let client = chat_body();
    let out = patch_request(Api::Chat, &client, &spec(CallRole::Panel, false)).unwrap();
    assert_eq!(out["model"], "provider-model");
    assert_eq!(
        out["messages"], client["messages"],
        "content parts byte for byte"
    );
    for kept in ["response_format", "seed", "x_future_field"] {
        assert_eq!(out[kept], client[kept], "{kept}");
    }
    for dropped in [
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "n",
        "metadata",
        "stream",
        "stream_options",
        "fusion",
    ] {
        assert!(out.get(dropped).is_none(), "{dropped} in {out}");
    }
}

#[test]
fn a_chat_final_call_keeps_the_client_request_and_appends_the_fusion_exchange() {
    let client = chat_body();
    let ex = exchange();
    let fusion_tool = tool_entry(
        Api::Chat,
        &ToolDef {
            name: "fusion".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
        },
    );
    let s = PatchSpec {
        extra_tools: std::slice::from_ref(&fusion_tool),
        set: &[("tool_choice", json!("none"))],
        exchange: Some(&ex),
        ..spec(CallRole::Final, true)
    };
    let out = patch_request(Api::Chat, &client, &s).unwrap();
    assert_eq!(out["stream"], true);
    assert_eq!(
        out["stream_options"],
        json!({"include_usage": true, "include_obfuscation": false})
    );
    assert_eq!(out["n"], 2);
    assert_eq!(out["metadata"], client["metadata"]);
    assert_eq!(out["parallel_tool_calls"], false);
    assert_eq!(out["tool_choice"], "none");
    let tools = out["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["function"]["name"], "weather");
    assert_eq!(tools[1]["function"]["name"], "fusion");
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[..2], client["messages"].as_array().unwrap()[..]);
    assert_eq!(messages[2]["tool_calls"][0]["id"], "call_f1");
    assert_eq!(messages[2]["content"], "Asking the panel.");
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "call_f1", "content": "{\"answers\":[]}"})
    );
}

fn messages_body() -> Value {
    json!({
        "model": "fusion",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 512},
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Summarise"}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "abc"},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]},
            {"role": "system", "content": "mid-conversation system message"}
        ],
        "tools": [{"type": "fusion"}, {"name": "lookup", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": "u"},
        "stream": true
    })
}

#[test]
fn a_messages_panel_call_keeps_blocks_and_declares_tools_its_history_uses() {
    let client = messages_body();
    let out = patch_request(Api::Messages, &client, &spec(CallRole::Panel, false)).unwrap();
    assert_eq!(out["messages"], client["messages"]);
    assert_eq!(out["system"], client["system"]);
    assert_eq!(out["thinking"], client["thinking"]);
    assert_eq!(out["metadata"], client["metadata"]);
    assert_eq!(
        out["tools"],
        json!([{"name": "lookup", "input_schema": {"type": "object"}}])
    );
    assert_eq!(out["tool_choice"], json!({"type": "none"}));
    assert!(out.get("stream").is_none());
}

#[test]
fn a_messages_outer_round_appends_thinking_before_the_fusion_tool_use() {
    let client = messages_body();
    let ex = exchange();
    let s = PatchSpec {
        exchange: Some(&ex),
        ..spec(CallRole::OuterRound, false)
    };
    let out = patch_request(Api::Messages, &client, &s).unwrap();
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6);
    let blocks = messages[4]["content"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "thinking");
    assert_eq!(blocks[0]["signature"], "sig==");
    assert_eq!(blocks[1]["text"], "Asking the panel.");
    assert_eq!(blocks[2]["type"], "tool_use");
    assert_eq!(blocks[2]["input"], json!({"question": "q"}));
    assert_eq!(messages[5]["content"][0]["tool_use_id"], "call_f1");
    // Outer rounds keep the client's tools.
    assert_eq!(out["tools"][0]["name"], "lookup");
}

#[test]
fn a_responses_panel_call_is_not_stored_and_keeps_item_references() {
    let client = json!({
        "model": "fusion",
        "input": [
            {"type": "item_reference", "id": "msg_1"},
            {"role": "user", "content": [
                {"type": "input_text", "text": "what is this"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
                {"type": "input_file", "file_id": "file-1"}
            ]}
        ],
        "previous_response_id": "resp_1",
        "text": {"format": {"type": "json_object"}},
        "store": true,
        "background": true,
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "openrouter:fusion"}],
        "stream": false
    });
    let out = patch_request(Api::Responses, &client, &spec(CallRole::Panel, false)).unwrap();
    assert_eq!(out["input"], client["input"]);
    assert_eq!(out["previous_response_id"], "resp_1");
    assert_eq!(out["text"], client["text"]);
    assert_eq!(out["include"], client["include"]);
    assert_eq!(out["store"], false);
    assert!(out.get("background").is_none());
    assert!(out.get("tools").is_none());
    let fin = patch_request(Api::Responses, &client, &spec(CallRole::Final, false)).unwrap();
    assert_eq!(fin["store"], true);
    assert_eq!(fin["background"], true);
}

#[test]
fn a_responses_string_input_becomes_items_when_the_exchange_is_appended() {
    let client = json!({"model": "fusion", "input": "hi", "instructions": "be kind"});
    let ex = exchange();
    let s = PatchSpec {
        exchange: Some(&ex),
        ..spec(CallRole::OuterRound, true)
    };
    let out = patch_request(Api::Responses, &client, &s).unwrap();
    assert_eq!(out["instructions"], "be kind");
    assert_eq!(out["stream"], true);
    let input = out["input"].as_array().unwrap();
    assert_eq!(input[0], json!({"role": "user", "content": "hi"}));
    assert_eq!(input[1]["role"], "assistant");
    assert_eq!(input[2]["type"], "function_call");
    assert_eq!(input[2]["call_id"], "call_f1");
    assert_eq!(input[3]["type"], "function_call_output");
    assert_eq!(input[3]["output"], "{\"answers\":[]}");
}

#[test]
fn set_fields_override_and_null_removes() {
    let client = json!({"model": "fusion", "messages": [], "temperature": 0.2, "top_p": 0.9});
    let s = PatchSpec {
        set: &[("temperature", json!(0)), ("top_p", Value::Null)],
        ..spec(CallRole::OuterRound, false)
    };
    let out = patch_request(Api::Chat, &client, &s).unwrap();
    assert_eq!(out["temperature"], 0);
    assert!(out.get("top_p").is_none());
    assert_eq!(
        patch_request(Api::Chat, &json!([1]), &s)
            .unwrap_err()
            .status,
        400
    );
}
