//! Issue 13, engine side: same-API calls are patches of the client's body,
//! cross-API calls are checked, stored state is forwarded or refused, failure
//! classes follow the provider's words, refused parameters are retried without.

// The whole file is test code: panicking on a broken expectation is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::{body_of, dispatches};

use fusion_core::config::Config;
use fusion_core::engine::{self, CallResult, Callout, Command, RequestInfo, Start, Turn};
use fusion_core::wire::Api;
use serde_json::{json, Value};
use std::rc::Rc;

/// The default mock config, with a Messages and a Responses upstream for
/// `messages/...` and `responses/...` models.
fn config_with(edit: impl FnOnce(&mut Value)) -> Rc<Config> {
    let mut v: Value = serde_json::from_str(fusion_core::config::DEFAULT_CONFIG).unwrap();
    v["upstreams"]["messages"] = json!({"cluster": "mock", "api": "messages"});
    v["upstreams"]["responses"] = json!({"cluster": "mock", "api": "responses"});
    let routes = v["routes"].as_array_mut().unwrap();
    routes.insert(
        0,
        json!({"prefix": "messages/", "strip_prefix": true, "upstream": "messages"}),
    );
    routes.insert(
        0,
        json!({"prefix": "responses/", "strip_prefix": true, "upstream": "responses"}),
    );
    edit(&mut v);
    Rc::new(Config::parse(v.to_string().as_bytes(), &|_| None).unwrap())
}

fn info() -> RequestInfo {
    RequestInfo {
        request_id: "req-1".into(),
        ..RequestInfo::default()
    }
}

fn start(config: &Rc<Config>, api: Api, body: &Value) -> Start {
    engine::start(
        config,
        api,
        info(),
        body.to_string().as_bytes(),
        1_000,
        false,
    )
}

fn run(config: &Rc<Config>, api: Api, body: &Value) -> (Box<Turn>, Vec<Callout>) {
    match start(config, api, body) {
        Start::Run(turn, cmds) => (turn, dispatches(cmds)),
        other => panic!("expected a run, got {other:?}"),
    }
}

fn answer(v: Value) -> CallResult {
    CallResult {
        status: Some(200),
        body: v.to_string().into_bytes(),
        ..CallResult::default()
    }
}

fn ok(text: &str) -> CallResult {
    answer(
        json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": text},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
    )
}

fn error(status: u16, body: Value) -> CallResult {
    CallResult {
        status: Some(status),
        body: body.to_string().into_bytes(),
        ..CallResult::default()
    }
}

fn analysis() -> String {
    json!({"consensus": ["blue"], "contradictions": [], "partial_coverage": [],
           "unique_insights": [], "blind_spots": []})
    .to_string()
}

fn reply_json(cmds: Vec<Command>) -> (u16, Value) {
    match cmds.as_slice() {
        [Command::Reply(r)] => (r.status, serde_json::from_slice(&r.body).unwrap()),
        other => panic!("expected one reply, got {other:?}"),
    }
}

fn image_request() -> Value {
    json!({"model": "fusion", "seed": 7, "some_future_field": {"x": 1},
           "response_format": {"type": "json_object"}, "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
}

#[test]
fn same_api_members_and_outer_round_get_the_clients_body_patched() {
    let config = config_with(|_| {});
    let body = image_request();
    let (mut turn, panel) = run(&config, Api::Chat, &body);
    assert_eq!(panel.len(), 3);
    for c in &panel {
        let b = body_of(c);
        assert_eq!(
            b["messages"], body["messages"],
            "the user turn byte for byte"
        );
        assert_eq!(b["seed"], 7);
        assert_eq!(b["some_future_field"], json!({"x": 1}));
        assert_ne!(b["model"], "fusion");
    }
    let mut cmds = Vec::new();
    for c in &panel {
        cmds = turn.on_call_result(c.id, ok("a cat"), 1_100);
    }
    let judge = dispatches(cmds);
    let jb = body_of(&judge[0]);
    assert!(jb["messages"].to_string().contains("image omitted"), "{jb}");
    let outer = dispatches(turn.on_call_result(judge[0].id, ok(&analysis()), 1_200));
    let ob = body_of(&outer[0]);
    assert_eq!(ob["model"], "mock-outer");
    assert_eq!(ob["messages"][0], body["messages"][0]);
    assert_eq!(ob["response_format"], json!({"type": "json_object"}));
    let msgs = ob["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["tool_calls"][0]["function"]["name"], "fusion");
    assert_eq!(msgs[2]["role"], "tool");
    let (status, v) = reply_json(turn.on_call_result(outer[0].id, ok("A cat."), 1_300));
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "A cat.");
    assert_eq!(v["fusion"]["tool_result"]["status"], "ok");
    assert_eq!(
        v["fusion"]["tool_result"]["responses"][0]["content"],
        "a cat"
    );
}

#[test]
fn a_part_another_api_cannot_take_is_a_400_before_any_call() {
    let config = config_with(|_| {});
    let body = json!({"model": "mock-outer", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Transcribe."},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}],
        "tools": [{"type": "fusion", "panel": [{"model": "messages/p1"}]}]});
    let Start::Reply(reply) = start(&config, Api::Chat, &body) else {
        panic!("expected a 400")
    };
    assert_eq!(reply.status, 400);
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("input_audio") && msg.contains("messages/p1"),
        "{msg}"
    );
}

#[test]
fn stored_state_is_forwarded_on_patches_and_refused_elsewhere() {
    let same = config_with(|v| {
        v["outer_model"] = json!("responses/outer");
        v["panel"] = json!([{"model": "responses/a"}]);
    });
    let body = json!({"model": "fusion", "previous_response_id": "resp_1", "input": "And then?"});
    let (_, panel) = run(&same, Api::Responses, &body);
    let b = body_of(&panel[0]);
    assert_eq!(b["previous_response_id"], "resp_1");
    assert_eq!(b["store"], false);

    // The default panel is on a Chat upstream: it cannot read the stored response.
    let Start::Reply(reply) = start(&config_with(|_| {}), Api::Responses, &body) else {
        panic!("expected a 400")
    };
    assert_eq!(reply.status, 400);
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("previous_response_id") && msg.contains("store: false"),
        "{msg}"
    );
    assert_eq!(v["error"]["param"], "previous_response_id");
}

#[test]
fn fusion_items_of_an_earlier_answer_are_removed_also_without_fusion() {
    let config = config_with(|_| {});
    let body = json!({"model": "gpt-x", "input": [
        {"role": "user", "content": "Why?"},
        {"type": "fusion_call", "id": "fc_1", "status": "completed", "arguments": "{}", "output": {}},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Because."}]},
        {"role": "user", "content": "And?"}]});
    let Start::Clean(cleaned) = start(&config, Api::Responses, &body) else {
        panic!("expected a cleaned pass-through")
    };
    let v: Value = serde_json::from_slice(&cleaned).unwrap();
    let input = v["input"].as_array().unwrap();
    assert_eq!(input.len(), 3);
    assert!(!v.to_string().contains("fusion_call"));
    assert!(v.to_string().contains("Because."));

    let messages = json!({"model": "claude-x", "max_tokens": 10, "messages": [
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "fusion", "input": {}},
            {"type": "fusion_tool_result", "tool_use_id": "srvtoolu_1", "content": {}},
            {"type": "text", "text": "Because."}]},
        {"role": "user", "content": "And?"}]});
    let Start::Clean(cleaned) = start(&config, Api::Messages, &messages) else {
        panic!("expected a cleaned pass-through")
    };
    let v: Value = serde_json::from_slice(&cleaned).unwrap();
    assert_eq!(
        v["messages"][1]["content"],
        json!([{"type": "text", "text": "Because."}])
    );
    // Nothing to clean: untouched.
    let plain = json!({"model": "gpt-x", "input": "a fusion of ideas"});
    assert!(matches!(
        start(&config, Api::Responses, &plain),
        Start::PassThrough
    ));
}

#[test]
fn the_judge_is_sent_again_without_a_parameter_it_refuses() {
    let config = config_with(|_| {});
    let (mut turn, panel) = run(&config, Api::Chat, &image_request());
    let mut cmds = Vec::new();
    for c in &panel {
        cmds = turn.on_call_result(c.id, ok("a cat"), 1_100);
    }
    let judge = dispatches(cmds);
    assert_eq!(body_of(&judge[0])["temperature"], 0.0);
    let refused = error(
        400,
        json!({"error": {"message": "Unsupported parameter: 'temperature' is not supported with this model.",
        "type": "invalid_request_error", "param": "temperature", "code": "unsupported_parameter"}}),
    );
    let retry = dispatches(turn.on_call_result(judge[0].id, refused.clone(), 1_150));
    assert_eq!(retry.len(), 1);
    let rb = body_of(&retry[0]);
    assert!(rb.get("temperature").is_none());
    assert_eq!(rb["messages"], body_of(&judge[0])["messages"]);
    let outer = dispatches(turn.on_call_result(retry[0].id, ok(&analysis()), 1_200));
    let (_, v) = reply_json(turn.on_call_result(outer[0].id, ok("A cat."), 1_300));
    assert_eq!(v["fusion"]["analysis"], true);
    assert_eq!(
        v["fusion"]["judge"]["retried_without"],
        json!(["temperature"])
    );
    assert_eq!(turn.stats(true).param_retries, 1);
}

#[test]
fn a_declared_unsupported_parameter_is_never_sent() {
    let config = config_with(|v| {
        v["models"] = json!({"mock-judge": {"unsupported_params": ["temperature"]}})
    });
    let (mut turn, panel) = run(&config, Api::Chat, &image_request());
    let mut cmds = Vec::new();
    for c in &panel {
        cmds = turn.on_call_result(c.id, ok("a cat"), 1_100);
    }
    let judge = dispatches(cmds);
    assert!(body_of(&judge[0]).get("temperature").is_none());
}

#[test]
fn failure_classes_follow_the_providers_words() {
    let config = config_with(|_| {});
    let (mut turn, panel) = run(&config, Api::Chat, &image_request());
    let quota = error(
        429,
        json!({"error": {"message": "You exceeded your current quota.",
        "type": "insufficient_quota", "code": "insufficient_quota"}}),
    );
    let credit = error(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API."}}),
    );
    turn.on_call_result(panel[0].id, quota, 1_100);
    turn.on_call_result(panel[1].id, credit, 1_100);
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("a cat"), 1_100));
    let outer = dispatches(turn.on_call_result(judge[0].id, ok(&analysis()), 1_200));
    let (_, v) = reply_json(turn.on_call_result(outer[0].id, ok("A cat."), 1_300));
    assert_eq!(
        v["fusion"]["panel"][0]["failure_reason"],
        "insufficient_credits"
    );
    assert_eq!(
        v["fusion"]["panel"][1]["failure_reason"],
        "insufficient_credits"
    );
    let failed = &v["fusion"]["tool_result"]["failed_models"];
    assert_eq!(failed[0]["reason"], "insufficient_credits");
}

#[test]
fn a_members_refusal_reaches_the_judge_marked() {
    let config = config_with(|_| {});
    let (mut turn, panel) = run(&config, Api::Chat, &image_request());
    let refusal = answer(
        json!({"model": "m", "choices": [{"message": {"role": "assistant",
        "content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]}),
    );
    turn.on_call_result(panel[0].id, refusal, 1_100);
    turn.on_call_result(panel[1].id, ok("a cat"), 1_100);
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("a cat"), 1_100));
    let prompt = body_of(&judge[0]).to_string();
    assert!(
        prompt.contains("[refused] I can't help with that."),
        "{prompt}"
    );
}
