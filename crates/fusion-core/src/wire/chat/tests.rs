//! Chat Completions unit tests: request parse, provider build, response parse and write.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::wire::neutral::*;
use crate::wire::{ClientRequest, ResponseMeta};
use serde_json::{json, Value};

fn parse(body: Value) -> ClientRequest {
    parse_request(&body).unwrap()
}

#[test]
fn request_roles_system_tools_and_params_are_read() {
    let req = parse(json!({
        "model": "gpt-x", "stream": true, "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "fusion", "panel": ["m"]}],
        "tool_choice": "required", "max_tokens": 50, "temperature": 0.5
    }));
    assert_eq!(req.model, "gpt-x");
    assert!(req.stream && req.include_usage);
    assert_eq!(
        req.conversation.system.as_deref(),
        Some("Be brief.\n\nUse metric.")
    );
    assert_eq!(req.conversation.messages[0], Message::user_text("Hi"));
    let Message::Assistant { tool_calls, .. } = &req.conversation.messages[1] else {
        panic!("{:?}", req.conversation.messages[1])
    };
    assert_eq!(tool_calls[0].arguments, "{\"a\":1}");
    assert_eq!(
        req.conversation.messages[2],
        Message::ToolResult {
            call_id: "c1".into(),
            content: "42".into()
        }
    );
    assert_eq!(
        req.tools.len(),
        1,
        "the fusion entry is not a function tool"
    );
    assert_eq!(req.tools[0].parameters["type"], "object");
    assert_eq!(req.fusion_tools.len(), 1);
    assert_eq!(req.tool_choice, ToolChoice::Required);
    assert_eq!(
        (req.params.max_tokens, req.params.temperature),
        (Some(50), Some(0.5))
    );
}

#[test]
fn unknown_roles_and_non_array_messages_are_named_errors() {
    let err =
        parse_request(&json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}))
            .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("`wizard`"), "{}", err.message);
    let err = parse_request(&json!({"model": "m", "messages": "hi"})).unwrap_err();
    assert_eq!(err.param.as_deref(), Some("messages"));
}

#[test]
fn tool_choice_naming_fusion_in_either_spelling_forces_it() {
    for choice in [
        json!({"type": "fusion"}),
        json!({"type": "function", "function": {"name": "get_weather"}}),
        json!("none"),
    ] {
        let req = parse(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
        );
        let want = match choice.as_str() {
            Some("none") => ToolChoice::None,
            _ if choice["type"] == "fusion" => ToolChoice::Named("fusion".into()),
            _ => ToolChoice::Named("get_weather".into()),
        };
        assert_eq!(req.tool_choice, want, "{choice}");
    }
}

#[test]
fn built_request_carries_history_tools_and_params() {
    let conversation = Conversation {
        system: Some("sys".into()),
        messages: vec![
            Message::user_text("q"),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "fusion".into(),
                    arguments: "{}".into(),
                }],
            },
            Message::ToolResult {
                call_id: "c1".into(),
                content: "r".into(),
            },
        ],
    };
    let tools = vec![ToolDef {
        name: "fusion".into(),
        description: "d".into(),
        parameters: json!({"type": "object"}),
    }];
    let params = GenParams {
        max_tokens: Some(7),
        ..GenParams::default()
    };
    let body = build_request(&ModelRequest {
        model: "gpt-x",
        conversation: &conversation,
        tools: &tools,
        tool_choice: &ToolChoice::Named("fusion".into()),
        params: &params,
    });
    assert_eq!(body["model"], "gpt-x");
    let m = body["messages"].as_array().unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m[0], json!({"role": "system", "content": "sys"}));
    assert_eq!(m[2]["content"], Value::Null);
    assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "fusion");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "r"})
    );
    assert_eq!(body["tools"][0]["function"]["name"], "fusion");
    assert_eq!(body["tool_choice"]["function"]["name"], "fusion");
    assert_eq!(body["max_completion_tokens"], 7);
}

#[test]
fn responses_parse_text_tool_calls_usage_and_finish() {
    let reply = parse_response(
        json!({"model": "gpt-x", "choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"k": 1}}}]},
            "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(reply.model, "gpt-x");
    assert_eq!(reply.text, "");
    assert_eq!(reply.tool_calls[0].arguments, "{\"k\":1}");
    assert_eq!(reply.finish, Finish::ToolCalls);
    assert_eq!(
        (reply.usage.input_tokens, reply.usage.output_tokens),
        (3, 4)
    );
    let cut = parse_response(
        br#"{"choices": [{"message": {"content": "abc"}, "finish_reason": "length"}]}"#,
    )
    .unwrap();
    assert_eq!((cut.text.as_str(), cut.finish), ("abc", Finish::Length));
    assert!(parse_response(b"{\"choices\": []}").is_err());
    assert!(parse_response(b"not json").is_err());
}

#[test]
fn written_response_has_the_chat_shape_and_truncation_signal() {
    let meta = ResponseMeta {
        id: "fusion-1".into(),
        created_s: 9,
        usage: Usage {
            input_tokens: 2,
            output_tokens: 3,
            ..Usage::default()
        },
        fusion: json!({"run_id": "r"}),
        truncated: false,
    };
    let reply = Reply {
        model: "gpt-x".into(),
        text: "hello".into(),
        ..Reply::default()
    };
    let v = write_response(&reply, &meta);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "hello");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["fusion"]["run_id"], "r");
    let truncated = ResponseMeta {
        truncated: true,
        ..meta
    };
    assert_eq!(
        write_response(&reply, &truncated)["choices"][0]["finish_reason"],
        "length"
    );
    let calls = Reply {
        text: String::new(),
        tool_calls: vec![ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: "{}".into(),
        }],
        ..reply
    };
    assert_eq!(finish_reason(&calls, false), "tool_calls");
}
