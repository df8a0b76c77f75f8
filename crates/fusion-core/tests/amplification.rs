//! Issue 16, amplification: after the one fusion run, outer rounds cannot loop
//! on the fusion tool, the filter's own fusion call does not copy the question,
//! parameters reach each upstream within its API's range, and costs print
//! without float noise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::body_of;

use fusion_core::config::{Config, DEFAULT_CONFIG};
use fusion_core::engine::{self, CallResult, Callout, Command, RequestInfo, Start, Turn};
use fusion_core::wire::Api;
use serde_json::{json, Value};
use std::rc::Rc;

/// The default configuration, plus `extra` top-level fields (JSON without braces).
fn config_with(extra: &str) -> Rc<Config> {
    let text = if extra.is_empty() {
        DEFAULT_CONFIG.to_string()
    } else {
        DEFAULT_CONFIG.replacen('{', &format!("{{{extra},"), 1)
    };
    Rc::new(Config::parse(text.as_bytes(), &|_| None).unwrap())
}

/// `outer` and every `claude-*` model on a Messages upstream.
fn messages_config(extra: &str) -> Rc<Config> {
    let text = DEFAULT_CONFIG
        .replace(
            r#""upstreams": {"#,
            r#""upstreams": {"anthropic": {"cluster": "a", "authority": "a", "api": "messages"}, "#,
        )
        .replace(
            r#""routes": ["#,
            r#""routes": [{"prefix": "claude-", "upstream": "anthropic"}, "#,
        );
    let text = if extra.is_empty() {
        text
    } else {
        text.replacen('{', &format!("{{{extra},"), 1)
    };
    Rc::new(Config::parse(text.as_bytes(), &|_| None).unwrap())
}

fn run(config: &Rc<Config>, api: Api, body: &Value) -> (Box<Turn>, Vec<Callout>) {
    let info = RequestInfo {
        request_id: "r".into(),
        ..RequestInfo::default()
    };
    match engine::start(config, api, info, body.to_string().as_bytes(), 1_000, false) {
        Start::Run(turn, cmds) => (turn, dispatches(cmds)),
        other => panic!("expected a run, got {other:?}"),
    }
}

fn dispatches(cmds: Vec<Command>) -> Vec<Callout> {
    cmds.into_iter()
        .filter_map(|c| match c {
            Command::Dispatch(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn result(v: Value) -> CallResult {
    CallResult {
        status: Some(200),
        body: v.to_string().into_bytes(),
        ..CallResult::default()
    }
}

fn chat_text(text: &str, prompt: u64, completion: u64) -> CallResult {
    result(
        json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}),
    )
}

fn chat_fusion_call(id: &str) -> CallResult {
    result(
        json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": id, "type": "function", "function": {"name": "fusion", "arguments": "{}"}}]},
        "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 5, "completion_tokens": 5}}),
    )
}

fn messages_fusion_call(id: &str) -> CallResult {
    result(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "tool_use", "id": id, "name": "fusion", "input": {}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 5}}),
    )
}

fn analysis() -> String {
    json!({"consensus": ["x"], "contradictions": [], "partial_coverage": [], "unique_insights": [], "blind_spots": []})
        .to_string()
}

/// Answers the panel and the judge of a running fusion call; returns the next outer round.
fn answer_panel_and_judge(turn: &mut Turn, panel: &[Callout]) -> Callout {
    let mut next = Vec::new();
    for c in panel {
        next = dispatches(turn.on_call_result(c.id, chat_text("an answer", 10, 5), 2_000));
    }
    let judge = next.pop().expect("the judge");
    let outer = dispatches(turn.on_call_result(judge.id, chat_text(&analysis(), 10, 5), 3_000));
    assert_eq!(outer.len(), 1, "one outer round after the judge");
    outer.into_iter().next().unwrap()
}

fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    t["function"]["name"]
                        .as_str()
                        .or(t["name"].as_str())
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

const WEATHER: &str = "get_weather";

fn chat_auto_request() -> Value {
    json!({"model": "mock-outer", "messages": [{"role": "user", "content": "Is tea healthy?"}],
           "tools": [{"type": "fusion"},
                     {"type": "function", "function": {"name": WEATHER, "parameters": {"type": "object"}}}]})
}

#[test]
fn chat_rounds_after_fusion_no_longer_offer_it_and_a_looping_model_ends_the_turn() {
    let c = config_with("");
    let (mut turn, first) = run(&c, Api::Chat, &chat_auto_request());
    assert_eq!(tool_names(&body_of(&first[0])), [WEATHER, "fusion"]);
    let panel = dispatches(turn.on_call_result(first[0].id, chat_fusion_call("call_1"), 1_500));
    assert_eq!(panel.len(), 3);
    let second = answer_panel_and_judge(&mut turn, &panel);
    let body = body_of(&second);
    // The spent tool is not offered again; the client's own stays, with its choice.
    assert_eq!(tool_names(&body), [WEATHER]);
    assert_ne!(body["tool_choice"], json!("none"));
    // A model that calls fusion anyway gets the cap once...
    let third = dispatches(turn.on_call_result(second.id, chat_fusion_call("call_2"), 4_000));
    assert_eq!(third.len(), 1);
    let messages = body_of(&third[0])["messages"].clone();
    let last = messages.as_array().unwrap().last().unwrap().clone();
    assert!(last["content"]
        .as_str()
        .unwrap()
        .contains("fusion_invocation_capped"));
    // ...and calling it again ends the turn instead of another full resend.
    let end = turn.on_call_result(third[0].id, chat_fusion_call("call_3"), 5_000);
    assert!(dispatches(end.clone()).is_empty(), "{end:?}");
    assert!(turn.is_done());
    let report = turn.report();
    assert_eq!(report["rounds"], 3, "{report}");
    assert_eq!(report["truncated_by"], "rounds", "{report}");
    assert_eq!(report["invocations"], 1);
}

#[test]
fn chat_alias_after_fusion_asks_for_text() {
    let c = config_with("");
    let body = json!({"model": "fusion", "messages": [{"role": "user", "content": "Is tea healthy?"}],
                      "parallel_tool_calls": false});
    let (mut turn, panel) = run(&c, Api::Chat, &body);
    let outer = body_of(&answer_panel_and_judge(&mut turn, &panel));
    // Without client tools the spent tool stays declared and no tool may be
    // called: the client's tool-only fields stay valid.
    assert_eq!(tool_names(&outer), ["fusion"], "{outer}");
    assert_eq!(outer["tool_choice"], "none", "{outer}");
    assert_eq!(outer["parallel_tool_calls"], false, "{outer}");
    // The fusion exchange is still there for the model to read.
    let messages = outer["messages"].as_array().unwrap();
    assert_eq!(
        messages[messages.len() - 2]["tool_calls"][0]["function"]["name"],
        "fusion"
    );
}

#[test]
fn messages_rounds_after_fusion_keep_the_declaration_anthropic_requires() {
    let c = messages_config(r#""outer_model": "claude-outer""#);
    let body = json!({"model": "claude-outer", "max_tokens": 100,
        "messages": [{"role": "user", "content": "Is tea healthy?"}], "tools": [{"type": "fusion"}]});
    let (mut turn, first) = run(&c, Api::Messages, &body);
    let panel =
        dispatches(turn.on_call_result(first[0].id, messages_fusion_call("toolu_1"), 1_500));
    let second = body_of(&answer_panel_and_judge(&mut turn, &panel));
    assert_eq!(tool_names(&second), ["fusion"], "{second}");
    assert_eq!(second["tool_choice"]["type"], "none", "{second}");
}

#[test]
fn the_filters_own_fusion_call_does_not_copy_a_large_question() {
    let c = config_with(r#""limits": {"max_request_bytes": 4194304}"#);
    let question = "q".repeat(200_000);
    let body = json!({"model": "fusion", "messages": [{"role": "user", "content": question}]});
    let (mut turn, panel) = run(&c, Api::Chat, &body);
    let outer = answer_panel_and_judge(&mut turn, &panel);
    // The conversation once (it must be), not a second time inside the call's arguments.
    assert!(
        outer.body.len() < question.len() + 10_000,
        "outer round of {} bytes for a {}-byte question",
        outer.body.len(),
        question.len()
    );
    let v = body_of(&outer);
    let messages = v["messages"].as_array().unwrap();
    let args = messages[messages.len() - 2]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    assert!(args.len() < 1_000, "{}", args.len());
}

#[test]
fn temperature_is_clamped_to_each_apis_range_and_reported() {
    let text = DEFAULT_CONFIG
        .replace(
            r#"{"model": "mock-a"}, {"model": "mock-b"}, {"model": "mock-c"}"#,
            r#"{"model": "mock-a"}, {"model": "claude-b"}"#,
        )
        .replace(
            r#""upstreams": {"#,
            r#""upstreams": {"anthropic": {"cluster": "a", "authority": "a", "api": "messages"}, "#,
        )
        .replace(
            r#""routes": ["#,
            r#""routes": [{"prefix": "claude-", "upstream": "anthropic"}, "#,
        );
    let c = Rc::new(Config::parse(text.as_bytes(), &|_| None).unwrap());
    let body = json!({"model": "fusion", "messages": [{"role": "user", "content": "hi"}], "temperature": 1.5});
    let (turn, panel) = run(&c, Api::Chat, &body);
    let temps: Vec<Value> = panel
        .iter()
        .map(|c| body_of(c)["temperature"].clone())
        .collect();
    assert_eq!(
        temps,
        [json!(1.5), json!(1.0)],
        "Chat keeps 1.5, Messages gets its maximum"
    );
    let report = turn.report();
    assert!(report["panel"][0].get("clamped").is_none(), "{report}");
    assert_eq!(
        report["panel"][1]["clamped"],
        json!([{"param": "temperature", "asked": 1.5, "sent": 1.0}]),
        "{report}"
    );
}

#[test]
fn costs_print_without_float_noise() {
    let c = config_with(
        r#""prices": {"mock-a": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                      "mock-b": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                      "mock-c": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
                      "mock-judge": {"input_per_mtok": 2.5, "output_per_mtok": 10.0},
                      "mock-outer": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}}"#,
    );
    let body = json!({"model": "fusion", "messages": [{"role": "user", "content": "hi"}]});
    let (mut turn, panel) = run(&c, Api::Chat, &body);
    let mut next = Vec::new();
    for p in &panel {
        next = dispatches(turn.on_call_result(p.id, chat_text("an answer", 1012, 77), 2_000));
    }
    let judge = next.pop().unwrap();
    let outer = dispatches(turn.on_call_result(judge.id, chat_text(&analysis(), 8, 7), 3_000));
    turn.on_call_result(outer[0].id, chat_text("done", 8, 7), 4_000);
    let report = turn.report();
    // 3 x 0.001166 + 2 x 0.00009 = 0.003678 (summed as floats: 0.0036779999999999994).
    assert_eq!(report["cost"].to_string(), "0.003678", "{report}");
    assert_eq!(report["panel"][0]["cost"].to_string(), "0.001166");
}

/// A streamed Messages turn whose outer model thought before calling fusion:
/// its final request, up the client's own route, carries the signed thinking
/// blocks before the `tool_use` (Anthropic refuses the turn without them while
/// thinking is on), and keeps thinking on, as the callout's outer round does.
#[test]
fn messages_final_up_the_route_carries_the_outer_models_thinking_blocks() {
    let c = messages_config(r#""outer_model": "claude-outer""#);
    let body = json!({"model": "claude-outer", "max_tokens": 2048, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Is tea healthy?"}], "tools": [{"type": "fusion"}]});
    let info = RequestInfo {
        request_id: "r".into(),
        route_cluster: Some("a".into()),
        ..RequestInfo::default()
    };
    let Start::Run(mut turn, cmds) = engine::start(
        &c,
        Api::Messages,
        info,
        body.to_string().as_bytes(),
        1_000,
        false,
    ) else {
        panic!("expected a run")
    };
    let first = dispatches(cmds);
    let thinking =
        json!({"type": "thinking", "thinking": "Ask the panel.", "signature": "c2lnLTE="});
    let decided = result(
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [thinking, {"type": "tool_use", "id": "toolu_1", "name": "fusion", "input": {}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 5}}),
    );
    let panel = dispatches(turn.on_call_result(first[0].id, decided, 1_500));
    let mut next = Vec::new();
    for p in &panel {
        next = dispatches(turn.on_call_result(p.id, chat_text("an answer", 10, 5), 2_000));
    }
    let judge = next.pop().expect("the judge");
    let last = turn.on_call_result(judge.id, chat_text(&analysis(), 10, 5), 3_000);
    let [Command::Resume(resume)] = last.as_slice() else {
        panic!("expected the final answer up the route, got {last:?}")
    };
    let b: Value = serde_json::from_slice(&resume.body).unwrap();
    assert_eq!(b["stream"], true, "{b}");
    assert_eq!(b["thinking"]["type"], "enabled", "{b}");
    let messages = b["messages"].as_array().unwrap();
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["role"], "assistant", "{b}");
    assert_eq!(assistant["content"][0], thinking, "{b}");
    assert_eq!(assistant["content"][1]["type"], "tool_use", "{b}");
}
