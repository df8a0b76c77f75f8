//! Issue 16: limits that hold for every request form, fusion decided on the
//! parsed value, refusal paths that send what a callout would, unique run ids.

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
use fusion_core::engine::{self, Callout, Command, Refusal, RequestInfo, Start};
use fusion_core::wire::Api;
use serde_json::{json, Value};
use std::rc::Rc;

fn config_from(text: &str) -> Rc<Config> {
    Rc::new(Config::parse(text.as_bytes(), &|_| None).unwrap())
}

fn mock() -> Rc<Config> {
    Rc::new(Config::default_mock().unwrap())
}

fn info(depth: u32) -> RequestInfo {
    RequestInfo {
        request_id: "same-id".into(),
        depth,
        ..RequestInfo::default()
    }
}

fn go(config: &Rc<Config>, api: Api, body: &Value) -> Start {
    engine::start(
        config,
        api,
        info(0),
        body.to_string().as_bytes(),
        1_000,
        false,
    )
}

fn callouts(start: Start) -> Vec<Callout> {
    match start {
        Start::Run(_, cmds) => cmds
            .into_iter()
            .filter_map(|c| match c {
                Command::Dispatch(c) => Some(c),
                _ => None,
            })
            .collect(),
        other => panic!("expected a run, got {other:?}"),
    }
}

fn status(start: &Start) -> Option<u16> {
    match start {
        Start::Reply(r) | Start::Overloaded(r) => Some(r.status),
        _ => None,
    }
}

fn user() -> Value {
    json!([{"role": "user", "content": "Is tea healthy?"}])
}

#[test]
fn alias_token_budget_is_capped_for_every_member() {
    let c = mock();
    for body in [
        json!({"model": "fusion", "messages": user(), "max_tokens": 1_000_000_000u64}),
        json!({"model": "fusion", "messages": user(), "max_completion_tokens": u64::MAX}),
        json!({"model": "fusion", "messages": user(), "max_tokens": 1_000_000_000u64,
               "fusion": {"analysis_models": ["mock-a", "mock-b"]}}),
    ] {
        let calls = callouts(go(&c, Api::Chat, &body));
        assert!(!calls.is_empty());
        for call in &calls {
            // A same-API member call is a patch of the client's body: its own
            // spelling (`max_tokens`), clamped; a rebuilt one writes `max_completion_tokens`.
            let b = body_of(call);
            let budget = if b["max_completion_tokens"].is_null() {
                &b["max_tokens"]
            } else {
                &b["max_completion_tokens"]
            };
            assert_eq!(budget, 32_768, "{body} -> {b}");
        }
    }
    let calls = callouts(go(
        &c,
        Api::Messages,
        &json!({"model": "fusion", "max_tokens": 99_999_999, "messages": user()}),
    ));
    assert!(calls
        .iter()
        .all(|call| body_of(call)["max_completion_tokens"] == 32_768));
}

#[test]
fn out_of_range_sampling_is_refused_in_every_form() {
    let c = mock();
    let forms = [
        json!({"model": "fusion", "messages": user(), "temperature": 50}),
        json!({"model": "fusion", "messages": user(), "temperature": -3}),
        json!({"model": "fusion", "messages": user(), "top_p": 7,
               "fusion": {"analysis_models": ["mock-a"]}}),
        json!({"model": "mock-outer", "messages": user(), "temperature": 9,
               "tools": [{"type": "fusion"}]}),
        json!({"model": "mock-outer", "messages": user(),
               "tools": [{"type": "fusion", "temperature": 9}]}),
    ];
    for body in forms {
        assert_eq!(status(&go(&c, Api::Chat, &body)), Some(400), "{body}");
    }
}

#[test]
fn escaped_alias_is_fusion() {
    let c = mock();
    let body = br#"{"model": "fu\u0073ion", "messages": [{"role": "user", "content": "hi"}]}"#;
    assert!(matches!(
        engine::start(&c, Api::Chat, info(0), body, 0, false),
        Start::Run(..)
    ));
    // An alias with `/` and non-ASCII characters, escaped as Python and PHP write them.
    let text = DEFAULT_CONFIG.replace(r#"["fusion"]"#, r#"["team/fusión"]"#);
    let c = config_from(&text);
    let body =
        br#"{"model": "team\/fusi\u00f3n", "messages": [{"role": "user", "content": "hi"}]}"#;
    assert!(matches!(
        engine::start(&c, Api::Chat, info(0), body, 0, false),
        Start::Run(..)
    ));
}

#[test]
fn size_limit_applies_only_to_fusion_requests() {
    let text = DEFAULT_CONFIG.replacen('{', r#"{"limits": {"max_request_bytes": 1000},"#, 1);
    let c = config_from(&text);
    let big = "stable diffusion and confusion ".repeat(100);
    let plain = json!({"model": "mock-a", "messages": [{"role": "user", "content": big}]});
    assert!(matches!(go(&c, Api::Chat, &plain), Start::PassThrough));
    let fusion = json!({"model": "fusion", "messages": [{"role": "user", "content": big}]});
    assert_eq!(status(&go(&c, Api::Chat, &fusion)), Some(413));
}

#[test]
fn refusals_send_the_name_a_callout_would() {
    let text = DEFAULT_CONFIG
        .replace("\"outer_model\": \"mock-outer\"", "\"outer_model\": \"openai/gpt-4.1\"")
        .replace(
            r#""routes": [{"prefix": "", "upstream": "mock"}]"#,
            r#""routes": [{"prefix": "openai/", "strip_prefix": true, "upstream": "mock"}, {"prefix": "", "upstream": "mock"}]"#,
        );
    let c = config_from(&text);
    let body = json!({"model": "fusion", "messages": user()}).to_string();
    for (depth, busy, why) in [(1, false, Refusal::Depth), (0, true, Refusal::Overload)] {
        let text = text.replacen('{', r#"{"limits": {"on_overload": "pass_through"},"#, 1);
        let c = if busy {
            config_from(&text)
        } else {
            Rc::clone(&c)
        };
        match engine::start(&c, Api::Chat, info(depth), body.as_bytes(), 0, busy) {
            Start::Rewrite(b, w) => {
                assert_eq!(w, why);
                let v: Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(v["model"], "gpt-4.1");
            }
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }
}

#[test]
fn a_client_tool_named_fusion_is_refused_in_its_api_shape() {
    let c = mock();
    let chat = json!({"model": "fusion", "messages": user(), "tools": [
        {"type": "function", "function": {"name": "fusion", "parameters": {"type": "object"}}}]});
    assert_eq!(status(&go(&c, Api::Chat, &chat)), Some(400));
    let messages = json!({"model": "mock-outer", "max_tokens": 100, "messages": user(), "tools": [
        {"type": "fusion"}, {"name": "fusion", "input_schema": {"type": "object"}}]});
    match go(&c, Api::Messages, &messages) {
        Start::Reply(r) => {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!((r.status, v["type"].as_str()), (400, Some("error")));
            assert!(v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("named `fusion`"));
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[test]
fn run_ids_are_unique_and_the_request_id_is_kept_apart() {
    let c = mock();
    let body = json!({"model": "fusion", "messages": user()});
    let ids: Vec<(String, Value)> = (0..3)
        .map(|_| match go(&c, Api::Chat, &body) {
            Start::Run(turn, _) => (turn.run_id().to_string(), turn.report()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(ids[0].0 != ids[1].0 && ids[1].0 != ids[2].0 && ids[0].0 != ids[2].0);
    for (id, report) in &ids {
        assert_eq!(report["run_id"], id.as_str());
        assert_eq!(report["request_id"], "same-id");
    }
}

#[test]
fn a_turn_sends_at_most_its_upstream_calls_and_bytes() {
    let text = DEFAULT_CONFIG.replacen('{', r#"{"limits": {"max_upstream_calls": 2},"#, 1);
    let c = config_from(&text);
    let body = json!({"model": "fusion", "messages": user()});
    let (turn, calls) = match go(&c, Api::Chat, &body) {
        Start::Run(turn, cmds) => {
            let n = cmds
                .iter()
                .filter(|c| matches!(c, Command::Dispatch(_)))
                .count();
            (turn, n)
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(calls, 2);
    let report = turn.report();
    assert_eq!(
        report["panel"][2]["failure_reason"], "over_budget",
        "{report}"
    );
    // Bytes: a budget smaller than one panel call sends nothing and answers anyway.
    let text = DEFAULT_CONFIG.replacen('{', r#"{"limits": {"max_upstream_bytes": 10},"#, 1);
    let c = config_from(&text);
    match go(&c, Api::Chat, &body) {
        Start::Run(turn, cmds) => {
            assert!(
                cmds.iter().all(|c| !matches!(c, Command::Dispatch(_))),
                "{cmds:?}"
            );
            assert!(turn.is_done());
        }
        other => panic!("{other:?}"),
    }
}
