use serde_json::{json, Value};

use super::*;

fn run(api: Api, body: Value, model_script: &str, headers: &[(&str, &str)]) -> Result<(), Invalid> {
    let script = Script::parse(model_script);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let issued = |id: &str| id == "resp_mock_1" || id == "msg_mock_1";
    let ctx = Ctx {
        headers: &headers,
        script: &script,
        issued: &issued,
    };
    check(api, &body, &ctx)
}

fn ok(api: Api, body: Value) {
    if let Err(e) = run(api, body.clone(), "m", &[]) {
        panic!("refused {body}: {e:?}");
    }
}

/// The refusal message (and checks the OpenAI param when given).
fn refused(api: Api, body: Value) -> String {
    run(api, body, "m", &[]).unwrap_err().message
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

#[test]
fn error_shapes_are_the_providers() {
    let e = Invalid::new("bad").param("messages").code("invalid_value");
    assert_eq!(
        e.body(Api::Chat),
        json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": "invalid_value"}})
    );
    assert_eq!(
        e.body(Api::Messages),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}})
    );
}

#[test]
fn chat_required_fields_roles_and_parts() {
    ok(Api::Chat, json!({"model": "m", "messages": [user("hi")]}));
    assert_eq!(
        run(Api::Chat, json!({"model": "m"}), "m", &[])
            .unwrap_err()
            .param
            .as_deref(),
        Some("messages")
    );
    let e = run(
        Api::Chat,
        json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
        "m",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    assert!(
        e.message.starts_with("Invalid value: 'robot'."),
        "{}",
        e.message
    );
    let img = |part: Value| json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, part]}]});
    ok(
        Api::Chat,
        img(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}})),
    );
    ok(
        Api::Chat,
        img(
            json!({"type": "file", "file": {"file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"}}),
        ),
    );
    assert!(refused(
        Api::Chat,
        img(json!({"type": "image_url", "image_url": {}}))
    )
    .contains("image_url.url"));
    assert!(refused(
        Api::Chat,
        img(json!({"type": "input_image", "image_url": "x"}))
    )
    .contains("'input_image'"));
    assert!(refused(
        Api::Chat,
        img(json!({"type": "image_url", "image_url": {"url": "not a url"}}))
    )
    .contains("Expected a valid URL"));
    // Assistant content takes text and refusal parts only.
    let e = refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("a"), {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]}),
    );
    assert!(e.contains("'image_url'"), "{e}");
}

#[test]
fn chat_tool_messages_pair_with_tool_calls() {
    let call = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
    ok(
        Api::Chat,
        json!({"model": "m", "messages": [user("q"), call, {"role": "tool", "tool_call_id": "call_1", "content": "r"}]}),
    );
    let e = refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q"), call, user("again")]}),
    );
    assert!(e.contains("did not have response messages: call_1"), "{e}");
    let e = refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q"), {"role": "tool", "tool_call_id": "x", "content": "r"}]}),
    );
    assert!(
        e.contains("must be a response to a preceeding message with 'tool_calls'"),
        "{e}"
    );
}

#[test]
fn chat_tools_metadata_and_stream_options() {
    let f = |n: &str| json!({"type": "function", "function": {"name": n, "parameters": {}}});
    ok(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "tools": [f("a"), f("b")]}),
    );
    assert!(refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "tools": [f("a"), f("a")]})
    )
    .contains("duplicate function name 'a'"));
    assert!(refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "tools": [{"type": "fusion"}]})
    )
    .contains("Invalid value: 'fusion'"));
    let e = run(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "metadata": {"a": "b"}}),
        "m",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("metadata"));
    ok(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "metadata": {"a": "b"}, "store": true}),
    );
    assert!(refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "stream_options": {"include_usage": true}})
    )
    .contains("only allowed when 'stream' is enabled"));
    assert!(refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "thinking": {}})
    )
    .contains("Unrecognized request argument supplied: thinking"));
    assert!(refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "tool_choice": "auto"})
    )
    .contains("'tool_choice' is only allowed when 'tools' are specified"));
    assert!(refused(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "parallel_tool_calls": false})
    )
    .contains("'parallel_tool_calls' is only allowed"));
    // An unknown (future) field passes: it must reach the provider.
    ok(
        Api::Chat,
        json!({"model": "m", "messages": [user("q")], "some_future_field": 1}),
    );
}

#[test]
fn reasoning_models_refuse_sampling_parameters() {
    let body = json!({"model": "m", "messages": [user("q")], "temperature": 0});
    let e = run(Api::Chat, body.clone(), "m:reasoning_model", &[]).unwrap_err();
    assert_eq!(
        e.message,
        "Unsupported parameter: 'temperature' is not supported with this model."
    );
    assert_eq!(
        (e.param.as_deref(), e.code),
        (Some("temperature"), Some("unsupported_parameter"))
    );
    assert!(run(Api::Chat, body.clone(), "o3-reasoning", &[]).is_err());
    assert!(run(Api::Chat, body, "m", &[]).is_ok());
    let e = run(
        Api::Messages,
        json!({"model": "m", "max_tokens": 10, "messages": [user("q")], "temperature": 0}),
        "m:reasoning_model",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.message, "`temperature` is deprecated for this model.");
    let e = run(
        Api::Responses,
        json!({"model": "m", "input": "q", "seed": 1}),
        "m:unsupported=seed",
        &[],
    )
    .unwrap_err();
    assert!(e.message.contains("'seed'"), "{}", e.message);
}

#[test]
fn responses_input_items_and_parts() {
    ok(Api::Responses, json!({"model": "m", "input": "hi"}));
    assert_eq!(
        run(Api::Responses, json!({"model": "m"}), "m", &[])
            .unwrap_err()
            .message,
        "Missing required parameter: 'input'."
    );
    ok(
        Api::Responses,
        json!({"model": "m", "previous_response_id": "resp_mock_1"}),
    );
    assert!(refused(
        Api::Responses,
        json!({"model": "m", "previous_response_id": "resp_gone", "input": "x"})
    )
    .contains("Previous response with id 'resp_gone' not found."));
    let item =
        |content: Value| json!({"model": "m", "input": [{"role": "user", "content": content}]});
    ok(
        Api::Responses,
        item(
            json!([{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": "https://x/a.png"}, {"type": "input_file", "file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"}]),
        ),
    );
    assert!(
        refused(Api::Responses, item(json!([{"type": "input_image"}])))
            .contains("one of 'image_url' or 'file_id'")
    );
    assert!(refused(
        Api::Responses,
        item(json!([{"type": "input_file", "file_data": "data:application/pdf;base64,AA"}]))
    )
    .contains("filename"));
    assert!(refused(
        Api::Responses,
        item(json!([{"type": "image_url", "image_url": {"url": "https://x"}}]))
    )
    .contains("Invalid value: 'image_url'"));
    let e = refused(
        Api::Responses,
        json!({"model": "m", "input": [user("a"), {"role": "assistant", "content": [{"type": "input_text", "text": "b"}]}]}),
    );
    assert!(
        e.contains("Supported values are: 'output_text' and 'refusal'."),
        "{e}"
    );
    let e = refused(
        Api::Responses,
        json!({"model": "m", "input": [user("a"), {"type": "fusion_call", "id": "x"}]}),
    );
    assert!(e.starts_with("Invalid value: 'fusion_call'."), "{e}");
    assert!(refused(
        Api::Responses,
        json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_other"}]})
    )
    .contains("Item with id 'msg_other' not found."));
    ok(
        Api::Responses,
        json!({"model": "m", "input": [user("a"), {"type": "item_reference", "id": "msg_mock_1"}]}),
    );
}

#[test]
fn responses_function_calls_pair_with_outputs() {
    let call = json!({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"});
    let out = json!({"type": "function_call_output", "call_id": "c1", "output": "r"});
    ok(
        Api::Responses,
        json!({"model": "m", "input": [user("q"), call, out]}),
    );
    assert!(refused(
        Api::Responses,
        json!({"model": "m", "input": [user("q"), out]})
    )
    .contains("No tool call found for function call output with call_id c1."));
    assert!(refused(
        Api::Responses,
        json!({"model": "m", "input": [user("q"), call]})
    )
    .contains("No tool output found for function call c1."));
    assert!(refused(
        Api::Responses,
        json!({"model": "m", "input": "q", "tools": [{"type": "fusion"}]})
    )
    .contains("'fusion'"));
    ok(
        Api::Responses,
        json!({"model": "m", "input": "q", "tools": [{"type": "web_search_preview_2025_03_11"}]}),
    );
    assert!(refused(
        Api::Responses,
        json!({"model": "m", "input": "q", "messages": []})
    )
    .contains("Unknown parameter: 'messages'."));
    assert!(refused(
        Api::Responses,
        json!({"model": "m", "input": "q", "max_output_tokens": 5})
    )
    .contains("Expected a value >= 16"));
}

fn msgs(messages: Value) -> Value {
    json!({"model": "m", "max_tokens": 2048, "messages": messages})
}

#[test]
fn messages_required_fields_and_roles() {
    ok(Api::Messages, msgs(json!([user("hi")])));
    assert_eq!(
        refused(
            Api::Messages,
            json!({"model": "m", "messages": [user("hi")]})
        ),
        "max_tokens: Field required"
    );
    assert_eq!(
        refused(Api::Messages, json!({"max_tokens": 1, "messages": []})),
        "model: Field required"
    );
    assert_eq!(
        refused(
            Api::Messages,
            msgs(json!([{"role": "assistant", "content": "a"}]))
        ),
        "messages: first message must use the \"user\" role"
    );
    // Consecutive same-role messages are merged, not refused.
    ok(Api::Messages, msgs(json!([user("a"), user("b")])));
    let sys = msgs(json!([user("a"), {"role": "system", "content": "be brief"}, user("b")]));
    assert_eq!(
        run(Api::Messages, sys.clone(), "m", &[])
            .unwrap_err()
            .message,
        "messages.1.role: Input should be 'user' or 'assistant'"
    );
    assert!(run(
        Api::Messages,
        sys,
        "m",
        &[(
            "anthropic-beta",
            "other-beta,mid-conversation-system-2026-04-07"
        )]
    )
    .is_ok());
    assert!(refused(
        Api::Messages,
        json!({"model": "m", "max_tokens": 5, "messages": [user("a")], "stream_options": {}})
    )
    .contains("stream_options: Extra inputs are not permitted"));
    assert!(refused(
        Api::Messages,
        json!({"model": "m", "max_tokens": 5, "messages": [user("a")], "metadata": {"x": "y"}})
    )
    .contains("metadata.x"));
}

#[test]
fn messages_blocks_images_and_documents() {
    let with =
        |b: Value| msgs(json!([{"role": "user", "content": [{"type": "text", "text": "q"}, b]}]));
    ok(
        Api::Messages,
        with(
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}),
        ),
    );
    ok(
        Api::Messages,
        with(json!({"type": "image", "source": {"type": "url", "url": "https://x/a.png"}})),
    );
    ok(
        Api::Messages,
        with(
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AAAA"}}),
        ),
    );
    assert!(refused(
        Api::Messages,
        with(json!({"type": "image", "source": {"type": "base64", "data": "AAAA"}}))
    )
    .contains("media_type"));
    assert!(refused(
        Api::Messages,
        with(json!({"type": "image_url", "image_url": {"url": "https://x"}}))
    )
    .contains("Input tag 'image_url'"));
    assert!(refused(Api::Messages, msgs(json!([user("q"), {"role": "assistant", "content": [{"type": "fusion_tool_result", "content": []}]}]))).contains("Input tag 'fusion_tool_result'"));
    assert!(refused(
        Api::Messages,
        with(json!({"type": "text", "text": "x", "cache_control": {"type": "forever"}}))
    )
    .contains("ephemeral"));
    let cc = json!({"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}});
    let five = msgs(json!([{"role": "user", "content": [cc, cc, cc, cc, cc]}]));
    assert_eq!(
        refused(Api::Messages, five),
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    );
}

#[test]
fn messages_tool_use_pairing_and_thinking() {
    let tool_use = json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]});
    let result = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}]});
    let mut declared = msgs(json!([user("q"), tool_use, result]));
    declared["tools"] = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    ok(Api::Messages, declared.clone());
    assert!(
        refused(Api::Messages, msgs(json!([user("q"), tool_use, result]))).contains(
            "Requests which include `tool_use` or `tool_result` blocks must define tools."
        )
    );
    assert!(refused(
        Api::Messages,
        msgs(json!([user("q"), tool_use, user("no result")]))
    )
    .contains("`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1"));
    assert!(refused(Api::Messages, msgs(json!([user("q"), result])))
        .contains("unexpected `tool_use_id` found in `tool_result` blocks: toolu_1"));
    let mut thinking = declared;
    thinking["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    assert!(refused(Api::Messages, thinking.clone())
        .contains("a final `assistant` message must start with a thinking block"));
    let with_block = json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]});
    thinking["messages"] = json!([user("q"), with_block, result]);
    ok(Api::Messages, thinking.clone());
    thinking["max_tokens"] = json!(1024);
    assert!(refused(Api::Messages, thinking.clone())
        .contains("`max_tokens` must be greater than `thinking.budget_tokens`"));
    thinking["max_tokens"] = json!(4096);
    thinking["temperature"] = json!(0);
    assert!(refused(Api::Messages, thinking.clone()).contains("`temperature` may only be set to 1"));
    thinking["temperature"] = json!(1);
    thinking["tool_choice"] = json!({"type": "tool", "name": "f"});
    assert!(refused(Api::Messages, thinking).contains("tool_choice forces tool use"));
    let unsigned =
        json!({"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}]});
    assert!(refused(Api::Messages, msgs(json!([user("q"), unsigned])))
        .contains("signature: Field required"));
}

#[test]
fn messages_tools() {
    let t = |n: &str| json!({"name": n, "input_schema": {"type": "object"}});
    ok(
        Api::Messages,
        json!({"model": "m", "max_tokens": 5, "messages": [user("a")], "tools": [t("a"), {"type": "web_search_20250305", "name": "web_search"}]}),
    );
    assert_eq!(
        refused(
            Api::Messages,
            json!({"model": "m", "max_tokens": 5, "messages": [user("a")], "tools": [t("a"), t("a")]})
        ),
        "tools: Tool names must be unique."
    );
    assert!(refused(Api::Messages, json!({"model": "m", "max_tokens": 5, "messages": [user("a")], "tools": [{"type": "fusion"}]})).contains("Input tag 'fusion'"));
    assert!(refused(Api::Messages, json!({"model": "m", "max_tokens": 5, "messages": [user("a")], "tool_choice": {"type": "any"}})).contains("while providing tools"));
    ok(
        Api::Messages,
        json!({"model": "m", "max_tokens": 5, "messages": [user("a")], "tool_choice": {"type": "none"}}),
    );
}
