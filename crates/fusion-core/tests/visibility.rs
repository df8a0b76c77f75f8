//! What a turn shows the client and the operator: `x-fusion-include`, the
//! outcome in the `fusion` object, trace context on callouts, refusals by name.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
use common::dispatches;

use fusion_core::config::Config;
use fusion_core::engine::{self, CallResult, Callout, Command, Include, RequestInfo, Start, Turn};
use fusion_core::wire::Api;
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;

fn config() -> Rc<Config> {
    Rc::new(Config::default_mock().unwrap())
}

fn chat(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "Is the sky blue?"}]})
        .to_string()
        .into_bytes()
}

fn info(include: Include) -> RequestInfo {
    RequestInfo {
        request_id: "req-1".into(),
        include,
        trace: vec![
            (
                "traceparent".into(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ),
            ("x-request-id".into(), "req-1".into()),
        ],
        ..RequestInfo::default()
    }
}

fn ok(text: &str) -> CallResult {
    CallResult {
        status: Some(200),
        body: json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        .to_string()
        .into_bytes(),
        ..CallResult::default()
    }
}

fn analysis() -> Value {
    json!({"consensus": ["blue"], "contradictions": ["why"], "partial_coverage": [],
           "unique_insights": ["Rayleigh"], "blind_spots": []})
}

/// A whole alias turn: members answer `a0`, `a1`, ... (member `fail` answers 500),
/// the judge `judge`; returns the `fusion` object and every callout made.
fn run(include: Include, fail: Option<usize>, judge: CallResult) -> (Value, Vec<Callout>) {
    let Start::Run(mut turn, cmds) = engine::start(
        &config(),
        Api::Chat,
        info(include),
        &chat("fusion"),
        1_000,
        false,
    ) else {
        panic!("expected a run")
    };
    let panel = dispatches(cmds);
    let mut all = panel.clone();
    let mut next = Vec::new();
    for (i, c) in panel.iter().enumerate() {
        let result = if Some(i) == fail {
            CallResult {
                status: Some(500),
                ..CallResult::default()
            }
        } else {
            ok(&format!("a{i}"))
        };
        next = turn.on_call_result(c.id, result, 1_010);
    }
    let judge_call = dispatches(next).remove(0);
    all.push(judge_call.clone());
    let outer = dispatches(turn.on_call_result(judge_call.id, judge, 1_020)).remove(0);
    all.push(outer.clone());
    let reply = finish(&mut turn, outer.id);
    (reply["fusion"].clone(), all)
}

fn finish(turn: &mut Turn, id: u32) -> Value {
    match turn
        .on_call_result(id, ok("The sky is blue."), 1_030)
        .as_slice()
    {
        [Command::Reply(r)] => serde_json::from_slice(&r.body).unwrap(),
        other => panic!("expected one reply, got {other:?}"),
    }
}

#[test]
fn the_include_header_reads_either_or_both_words() {
    assert_eq!(Include::parse(None), Include::default());
    assert_eq!(
        Include::parse(Some(" Analysis , responses")),
        Include {
            analysis: true,
            responses: true
        }
    );
    assert_eq!(
        Include::parse(Some("responses,unknown")),
        Include {
            analysis: false,
            responses: true
        }
    );
}

#[test]
fn without_the_header_analysis_is_a_flag_and_responses_are_absent() {
    let judge = ok(&analysis().to_string());
    let (fusion, _) = run(Include::default(), None, judge);
    assert_eq!(fusion["analysis"], true);
    assert!(fusion.get("responses").is_none());
    assert_eq!(fusion["outcome"], "ok");
    assert_eq!(fusion["truncated_by"], Value::Null);
}

#[test]
fn the_header_brings_the_analysis_and_each_members_answer() {
    let include = Include {
        analysis: true,
        responses: true,
    };
    let (fusion, _) = run(include, Some(2), ok(&analysis().to_string()));
    assert_eq!(fusion["analysis"], analysis());
    assert_eq!(
        fusion["responses"],
        json!([{"model": "mock-a", "text": "a0"}, {"model": "mock-b", "text": "a1"}])
    );
    assert_eq!(fusion["outcome"], "degraded", "a member failed");
}

#[test]
fn a_failed_judge_gives_a_null_analysis() {
    let include = Include {
        analysis: true,
        responses: false,
    };
    let judge = CallResult {
        status: Some(500),
        ..CallResult::default()
    };
    let (fusion, _) = run(include, None, judge);
    assert_eq!(fusion["analysis"], Value::Null);
    assert!(fusion.get("responses").is_none());
    assert_eq!(fusion["outcome"], "degraded");
}

#[test]
fn every_callout_carries_the_clients_trace_context() {
    let (_, calls) = run(Include::default(), None, ok(&analysis().to_string()));
    assert_eq!(calls.len(), 5, "three members, the judge, the outer model");
    for c in &calls {
        let tp = c.headers.iter().find(|(k, _)| k == "traceparent");
        assert_eq!(
            tp.map(|(_, v)| v.as_str()),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert!(c
            .headers
            .iter()
            .any(|(k, v)| k == "x-request-id" && v == "req-1"));
    }
}

#[test]
fn a_plain_request_never_reads_the_request_info() {
    let read = Cell::new(false);
    let started = engine::start_with(
        &config(),
        Api::Chat,
        || {
            read.set(true);
            RequestInfo::default()
        },
        &chat("mock-a"),
        0,
        false,
    );
    assert!(matches!(started, Start::PassThrough));
    assert!(!read.get());
}

#[test]
fn a_misspelled_fusion_type_is_a_400_naming_it() {
    for kind in ["fusionx", "openrouter:fusion2"] {
        let body = json!({"model": "mock-a", "messages": [{"role": "user", "content": "Q"}],
                          "tools": [{"type": kind}]});
        let started = engine::start(
            &config(),
            Api::Chat,
            RequestInfo::default(),
            body.to_string().as_bytes(),
            0,
            false,
        );
        let Start::Reply(reply) = started else {
            panic!("expected a 400 for {kind}, got {started:?}")
        };
        assert_eq!(reply.status, 400);
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains(kind));
        assert_eq!(v["error"]["param"], "tools");
    }
    // A function tool that merely mentions fusion is the client's own.
    let body = json!({"model": "mock-a", "messages": [{"role": "user", "content": "Q"}],
                      "tools": [{"type": "function", "function": {"name": "fusion_power"}}]});
    assert!(matches!(
        engine::start(
            &config(),
            Api::Chat,
            RequestInfo::default(),
            body.to_string().as_bytes(),
            0,
            false
        ),
        Start::PassThrough
    ));
}
