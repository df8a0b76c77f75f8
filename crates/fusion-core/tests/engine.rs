//! Drives whole turns through the sans-IO engine with scripted callout answers.
//! Runs natively and, under wasm-bindgen-test, inside wasm.

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
use fusion_core::engine::{
    self, CallResult, Callout, Command, FailureClass, Outcome, RequestInfo, Start, Turn,
};
use fusion_core::wire::Api;
use serde_json::{json, Value};
use std::rc::Rc;

fn config() -> Rc<Config> {
    Rc::new(Config::default_mock().unwrap())
}

fn chat(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Is the sky blue?"}
    ]})
    .to_string()
    .into_bytes()
}

fn info(depth: u32) -> RequestInfo {
    RequestInfo {
        request_id: "req-1".into(),
        depth,
        ..RequestInfo::default()
    }
}

fn start(body: &[u8]) -> (Box<Turn>, Vec<Callout>) {
    match engine::start(&config(), Api::Chat, info(0), body, 1_000, false) {
        Start::Run(turn, cmds) => (turn, dispatches(cmds)),
        other => panic!("expected a run, got {other:?}"),
    }
}

fn header<'a>(c: &'a Callout, name: &str) -> Option<&'a str> {
    c.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn ok(text: &str, prompt: u64, completion: u64) -> CallResult {
    CallResult {
        status: Some(200),
        body: json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})
            .to_string()
            .into_bytes(),
        ..CallResult::default()
    }
}

fn analysis() -> String {
    json!({"consensus": ["blue"], "contradictions": [], "partial_coverage": [], "unique_insights": ["Rayleigh"], "blind_spots": []}).to_string()
}

fn reply_json(cmds: Vec<Command>) -> (u16, Value) {
    match cmds.as_slice() {
        [Command::Reply(r)] => (r.status, serde_json::from_slice(&r.body).unwrap()),
        other => panic!("expected one reply, got {other:?}"),
    }
}

#[test]
fn non_fusion_requests_pass_through_unparsed() {
    let c = config();
    assert!(matches!(
        engine::start(&c, Api::Chat, info(0), &chat("gpt-x"), 0, false),
        Start::PassThrough
    ));
    assert!(matches!(
        engine::start(&c, Api::Chat, info(0), b"{not json", 0, false),
        Start::PassThrough
    ));
    assert!(!engine::may_be_fusion(&c, &chat("gpt-x")));
}

#[test]
fn depth_rule_resolves_alias_to_plain_model() {
    match engine::start(&config(), Api::Chat, info(1), &chat("fusion"), 0, false) {
        Start::Rewrite(body, engine::Refusal::Depth) => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["model"], "mock-outer");
            assert_eq!(v["messages"][1]["content"], "Is the sky blue?");
        }
        other => panic!("expected rewrite, got {other:?}"),
    }
}

#[test]
fn bad_alias_request_gets_native_400() {
    let body = json!({"model": "fusion", "messages": "hi"}).to_string();
    match engine::start(&config(), Api::Chat, info(0), body.as_bytes(), 0, false) {
        Start::Reply(r) => {
            assert_eq!(r.status, 400);
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["param"], "messages");
        }
        other => panic!("expected reply, got {other:?}"),
    }
}

#[test]
fn forced_turn_panel_then_judge_then_outer() {
    let (mut turn, panel) = start(&chat("fusion"));
    assert_eq!(panel.len(), 3, "the whole panel is dispatched at once");
    let models: Vec<Value> = panel.iter().map(|c| body_of(c)["model"].clone()).collect();
    assert_eq!(
        models,
        vec![json!("mock-a"), json!("mock-b"), json!("mock-c")]
    );
    for c in &panel {
        assert_eq!(header(c, "x-fusion-depth"), Some("1"));
        assert_eq!(header(c, ":path"), Some("/v1/chat/completions"));
        assert_eq!(c.cluster, "mock");
        assert_eq!(c.timeout_ms, 30_000);
        let b = body_of(c);
        assert_eq!(
            b["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert!(b.get("tools").is_none(), "the panel gets no fusion tool");
    }
    assert!(turn
        .on_call_result(panel[0].id, ok("yes", 10, 1), 1_100)
        .is_empty());
    assert!(turn
        .on_call_result(panel[1].id, ok("blue", 10, 1), 1_200)
        .is_empty());
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("azure", 10, 1), 1_300));
    assert_eq!(judge.len(), 1);
    let jb = body_of(&judge[0]);
    assert_eq!(jb["model"], "mock-judge");
    assert_eq!(jb["temperature"], 0.0);
    let prompt = jb["messages"][1]["content"].as_str().unwrap();
    assert!(prompt.contains(" n=\"3\">\nazure\n</response-"));
    assert!(!prompt.contains("mock-a"), "answers are labelled neutrally");

    let outer = dispatches(turn.on_call_result(judge[0].id, ok(&analysis(), 50, 20), 1_400));
    assert_eq!(outer.len(), 1);
    let ob = body_of(&outer[0]);
    assert_eq!(ob["model"], "mock-outer");
    let msgs = ob["messages"].as_array().unwrap();
    let call = &msgs[msgs.len() - 2];
    assert_eq!(call["tool_calls"][0]["function"]["name"], "fusion");
    let result: Value =
        serde_json::from_str(msgs[msgs.len() - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["status"], "ok");
    assert_eq!(result["analysis"]["unique_insights"][0], "Rayleigh");
    assert_eq!(result["responses"].as_array().unwrap().len(), 3);
    assert_eq!(ob["tool_choice"], "none", "the one invocation is spent");

    let (status, v) =
        reply_json(turn.on_call_result(outer[0].id, ok("The sky is blue.", 100, 5), 1_500));
    assert_eq!(status, 200);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock-outer");
    assert_eq!(v["choices"][0]["message"]["content"], "The sky is blue.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 180, "completion_tokens": 28, "total_tokens": 208,
               "prompt_tokens_details": {"cached_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    assert_eq!(v["fusion"]["analysis"], true);
    assert_eq!(v["fusion"]["panel"][1]["status"], "ok");
    assert_eq!(v["fusion"]["panel"][1]["latency_ms"], 200);
    assert_eq!(v["fusion"]["judge"]["model"], "mock-judge");
    assert!(turn.is_done());
}

#[test]
fn failed_member_is_dropped_and_named() {
    let (mut turn, panel) = start(&chat("fusion"));
    turn.on_call_result(
        panel[0].id,
        CallResult {
            status: Some(500),
            body: b"{}".to_vec(),
            ..CallResult::default()
        },
        1_100,
    );
    turn.on_call_result(
        panel[1].id,
        CallResult {
            status: None,
            body: vec![],
            ..CallResult::default()
        },
        1_100,
    );
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("azure", 1, 1), 1_100));
    let outer = dispatches(turn.on_call_result(judge[0].id, ok("no json here", 1, 1), 1_200));
    let ob = body_of(&outer[0]);
    let msgs = ob["messages"].as_array().unwrap();
    let result: Value =
        serde_json::from_str(msgs[msgs.len() - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["status"], "ok");
    assert!(
        result.get("analysis").is_none(),
        "judge degradation omits the analysis"
    );
    assert_eq!(
        result["failed_models"],
        json!([{"model": "mock-a", "reason": "http_500"}, {"model": "mock-b", "reason": "unreachable"}])
    );
    let (_, v) = reply_json(turn.on_call_result(outer[0].id, ok("fine", 1, 1), 1_300));
    assert_eq!(v["fusion"]["analysis"], false);
    assert_eq!(v["fusion"]["judge"]["status"], "failed");
    assert_eq!(v["fusion"]["panel"][0]["failure_reason"], "http_500");
}

#[test]
fn all_members_failing_still_answers() {
    let (mut turn, panel) = start(&chat("fusion"));
    turn.on_call_result(
        panel[0].id,
        CallResult {
            status: Some(429),
            body: vec![],
            ..CallResult::default()
        },
        1_100,
    );
    turn.on_call_result(
        panel[1].id,
        CallResult {
            status: Some(500),
            body: vec![],
            ..CallResult::default()
        },
        1_100,
    );
    let outer = dispatches(turn.on_call_result(panel[2].id, ok("   ", 1, 1), 1_100));
    let ob = body_of(&outer[0]);
    assert_eq!(ob["model"], "mock-outer", "no judge call without answers");
    let msgs = ob["messages"].as_array().unwrap();
    let result: Value =
        serde_json::from_str(msgs[msgs.len() - 1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(result["status"], "error");
    assert_eq!(result["failure_reason"], "rate_limited");
    let (status, _) = reply_json(turn.on_call_result(outer[0].id, ok("alone", 1, 1), 1_200));
    assert_eq!(status, 200);
}

#[test]
fn outer_failure_is_a_native_error_with_the_report() {
    let (mut turn, panel) = start(&chat("fusion"));
    let (last, others) = panel.split_last().unwrap();
    for c in others {
        assert!(turn.on_call_result(c.id, ok("x", 1, 1), 1_100).is_empty());
    }
    // The last member's answer starts the judge.
    let judge = dispatches(turn.on_call_result(last.id, ok("x", 1, 1), 1_100));
    assert_eq!(judge.len(), 1);
    assert_eq!(judge[0].id, turn_judge_id(&panel));
    assert_eq!(body_of(&judge[0])["model"], "mock-judge");
    let outer = match turn
        .on_call_result(judge[0].id, ok(&analysis(), 1, 1), 1_200)
        .pop()
    {
        Some(Command::Dispatch(c)) => c,
        other => panic!("{other:?}"),
    };
    let (status, v) = reply_json(turn.on_call_result(
        outer.id,
        CallResult {
            status: Some(503),
            body: vec![],
            ..CallResult::default()
        },
        1_300,
    ));
    assert_eq!(status, 502);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mock-outer"));
    assert_eq!(v["fusion"]["panel"].as_array().unwrap().len(), 3);
}

/// Engine ids are handed out in dispatch order: the judge follows the panel.
fn turn_judge_id(panel: &[Callout]) -> u32 {
    panel.iter().map(|c| c.id).max().unwrap() + 1
}

#[test]
fn late_answers_after_the_turn_are_ignored() {
    let (mut turn, panel) = start(&chat("fusion"));
    assert_eq!(turn.pending_calls(), 3);
    assert!(turn.on_call_result(999, ok("?", 1, 1), 1_100).is_empty());
    turn.on_call_result(panel[0].id, ok("a", 1, 1), 1_100);
    assert!(
        turn.on_call_result(panel[0].id, ok("a", 1, 1), 1_100)
            .is_empty(),
        "a repeated id is ignored"
    );
}

/// Runs a turn on the given route through panel and judge; returns the turn and
/// the commands for its final round.
fn through_judge(stream: bool, route_cluster: &str) -> (Box<Turn>, Vec<Command>) {
    let body = json!({"model": "fusion", "stream": stream, "messages": [{"role": "user", "content": "Q"}]})
        .to_string();
    let info = RequestInfo {
        route_cluster: Some(route_cluster.into()),
        ..info(0)
    };
    let Start::Run(mut turn, cmds) =
        engine::start(&config(), Api::Chat, info, body.as_bytes(), 0, false)
    else {
        panic!("expected a run")
    };
    let panel = dispatches(cmds);
    for c in &panel[..2] {
        turn.on_call_result(c.id, ok("x", 1, 1), 10);
    }
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("y", 1, 1), 10));
    let last = turn.on_call_result(judge[0].id, ok(&analysis(), 2, 2), 20);
    (turn, last)
}

#[test]
fn streaming_final_answer_goes_up_the_route() {
    let (mut turn, last) = through_judge(true, "mock");
    let resume = match last.as_slice() {
        [Command::Resume(r)] => r.clone(),
        other => panic!("expected resume, got {other:?}"),
    };
    let b: Value = serde_json::from_slice(&resume.body).unwrap();
    assert_eq!(b["stream"], true);
    assert_eq!(b["model"], "mock-outer");
    assert_eq!(b["tool_choice"], "none");
    // Usage is always asked for: the report needs the final call's.
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    assert!(resume
        .headers
        .contains(&("x-fusion-depth".into(), "1".into())));
    assert!(turn.relays_response());
    let out = turn.on_response_body(
        b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5}}\n\ndata: [DONE]\n\n",
        true,
        2_000,
    );
    let out = String::from_utf8(out).unwrap();
    // The client asked for no usage chunk; the report on the finishing chunk has the sum.
    assert!(!out.contains("\"prompt_tokens\""), "{out}");
    assert!(out.contains("\"input_tokens\":15"), "{out}");
    assert!(!turn.relay_incomplete());
}

#[test]
fn final_answer_up_the_route_keeps_path_and_authority_and_the_clients_fields() {
    let body = json!({"model": "fusion", "stream": true, "seed": 7,
        "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": "Q"}]});
    let info = RequestInfo {
        route_cluster: Some("mock".into()),
        ..info(0)
    };
    let Start::Run(mut turn, cmds) = engine::start(
        &config(),
        Api::Chat,
        info,
        body.to_string().as_bytes(),
        0,
        false,
    ) else {
        panic!("expected a run")
    };
    let panel = dispatches(cmds);
    for c in &panel[..2] {
        turn.on_call_result(c.id, ok("x", 1, 1), 10);
    }
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("y", 1, 1), 10));
    let last = turn.on_call_result(judge[0].id, ok(&analysis(), 2, 2), 20);
    let [Command::Resume(resume)] = last.as_slice() else {
        panic!("expected resume, got {last:?}")
    };
    // Changing them would make Envoy pick another route (and cluster) for the key.
    for (k, _) in &resume.headers {
        assert!(
            k != ":path" && k != ":authority" && k != ":method",
            "{k} set"
        );
    }
    assert!(resume
        .headers
        .contains(&("accept-encoding".into(), "identity".into())));
    let b: Value = serde_json::from_slice(&resume.body).unwrap();
    assert_eq!(b["seed"], 7);
    assert_eq!(b["response_format"], json!({"type": "json_object"}));
    let roles: Vec<&str> = b["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool"]);
}

#[test]
fn failed_route_answer_is_a_native_error_counted_as_a_failure() {
    for (status, body, want) in [
        (Some(500), r#"{"error":{"message":"boom"}}"#, 500),
        // Envoy's own replies on the route: a reset, the turn deadline.
        (
            Some(503),
            "upstream connect error or disconnect/reset before headers",
            502,
        ),
        (Some(504), "upstream request timeout", 504),
    ] {
        let (mut turn, _) = through_judge(true, "mock");
        assert!(turn.on_response_head(status, Some("text/plain"), Some("mock")));
        let reply = turn.on_buffered_response(status, body.as_bytes(), 3_000);
        assert_eq!(reply.status, want, "{body}");
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(v["error"]["message"].is_string(), "{v}");
        assert_ne!(v["fusion"]["final"][0]["status"], "ok", "{v}");
        assert_eq!(turn.stats(true).outcome, Outcome::Error, "{body}");
    }
}

#[test]
fn event_stream_route_answer_is_relayed() {
    let (mut turn, _) = through_judge(true, "mock");
    assert!(!turn.on_response_head(
        Some(200),
        Some("text/event-stream; charset=utf-8"),
        Some("mock")
    ));
    assert!(!turn.buffers_response());
}

#[test]
fn route_answer_from_another_cluster_is_refused() {
    let (mut turn, _) = through_judge(true, "mock");
    assert!(turn.on_response_head(Some(200), Some("text/event-stream"), Some("evil")));
    let reply = turn.on_buffered_response(Some(200), b"data: {}\n\n", 3_000);
    assert_eq!(reply.status, 502);
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`evil`"),
        "{v}"
    );
    assert_eq!(turn.stats(true).outcome, Outcome::Error);
}

#[test]
fn client_tools_stream_up_the_route_with_the_fusion_tool_declared() {
    let body = json!({"model": "fusion", "stream": true,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "messages": [{"role": "user", "content": "Q"}]});
    let info = RequestInfo {
        route_cluster: Some("mock".into()),
        ..info(0)
    };
    let Start::Run(mut turn, cmds) = engine::start(
        &config(),
        Api::Chat,
        info,
        body.to_string().as_bytes(),
        0,
        false,
    ) else {
        panic!("expected a run")
    };
    let panel = dispatches(cmds);
    for c in &panel[..2] {
        turn.on_call_result(c.id, ok("x", 1, 1), 10);
    }
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("y", 1, 1), 10));
    let last = turn.on_call_result(judge[0].id, ok(&analysis(), 2, 2), 20);
    let [Command::Resume(resume)] = last.as_slice() else {
        panic!("expected resume, got {last:?}")
    };
    let b: Value = serde_json::from_slice(&resume.body).unwrap();
    let names: Vec<&str> = b["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"get_weather"), "{names:?}");
    assert_ne!(b["tool_choice"], "none");
}

#[test]
fn non_streaming_or_foreign_route_answers_by_callout() {
    for (stream, cluster) in [(false, "mock"), (true, "elsewhere")] {
        let (turn, last) = through_judge(stream, cluster);
        assert_eq!(
            dispatches(last).len(),
            1,
            "stream={stream} cluster={cluster}"
        );
        assert!(!turn.relays_response());
    }
}

fn config_with(edit: impl FnOnce(&mut Value)) -> Rc<Config> {
    let mut v: Value = serde_json::from_str(fusion_core::config::DEFAULT_CONFIG).unwrap();
    edit(&mut v);
    Rc::new(Config::parse(v.to_string().as_bytes(), &|_| None).unwrap())
}

fn run(config: &Rc<Config>, body: &[u8]) -> (Box<Turn>, Vec<Callout>) {
    match engine::start(config, Api::Chat, info(0), body, 1_000, false) {
        Start::Run(turn, cmds) => (turn, dispatches(cmds)),
        other => panic!("expected a run, got {other:?}"),
    }
}

#[test]
fn quorum_goes_to_the_judge_after_the_grace_period() {
    let c = config_with(|v| {
        v["min_panel_answers"] = json!(2);
        v["panel_grace_ms"] = json!(100);
    });
    let (mut turn, panel) = run(&c, &chat("fusion"));
    assert!(turn
        .on_call_result(panel[0].id, ok("a", 1, 1), 1_010)
        .is_empty());
    // The second usable answer starts the grace period.
    let wake = turn.on_call_result(panel[1].id, ok("b", 1, 1), 1_020);
    assert_eq!(wake, vec![Command::WakeAt(1_120)]);
    // An early wake-up asks again; the deadline starts the judge.
    assert_eq!(turn.on_timer(1_050), vec![Command::WakeAt(1_120)]);
    let judge = dispatches(turn.on_timer(1_120));
    assert_eq!(body_of(&judge[0])["model"], "mock-judge");
    assert!(!body_of(&judge[0]).to_string().contains("Response 3"));
    // The straggler answers during the judge's call: late, its usage counted.
    assert!(turn
        .on_call_result(panel[2].id, ok("c", 7, 9), 1_500)
        .is_empty());
    let report = turn.report();
    assert_eq!(report["panel"][2]["status"], "late");
    assert_eq!(report["panel"][2]["usage"]["output_tokens"], 9);
    assert_eq!(report["panel_wait_ms"], 120);
    assert_eq!(report["usage"]["output_tokens"], 11);
}

#[test]
fn an_empty_answer_does_not_count_toward_the_quorum() {
    let c = config_with(|v| v["min_panel_answers"] = json!(1));
    let (mut turn, panel) = run(&c, &chat("fusion"));
    assert!(turn
        .on_call_result(panel[0].id, ok(" ", 1, 0), 1_010)
        .is_empty());
    // Quorum 1 without grace: the first usable answer goes straight to the judge.
    let judge = dispatches(turn.on_call_result(panel[1].id, ok("b", 1, 1), 1_020));
    assert_eq!(body_of(&judge[0])["model"], "mock-judge");
}

fn merge_request(block: Value) -> Vec<u8> {
    json!({"model": "fusion", "messages": [{"role": "user", "content": "Tea?"}], "fusion": block,
           "temperature": 0.4})
    .to_string()
    .into_bytes()
}

#[test]
fn merge_mode_synthesizes_without_a_judge() {
    let (mut turn, panel) = run(
        &config(),
        &merge_request(
            json!({"analysis_models": ["mock-a", "mock-b"], "synthesis_model": "mock-s"}),
        ),
    );
    assert_eq!(turn.mode(), engine::Mode::Merge);
    assert_eq!(panel.len(), 2);
    assert!(panel.iter().all(|c| body_of(c)["temperature"] == 0.4));
    assert!(turn
        .on_call_result(panel[0].id, ok("yes", 1, 1), 1_010)
        .is_empty());
    let synth = dispatches(turn.on_call_result(panel[1].id, fail(500), 1_020));
    let b = body_of(&synth[0]);
    assert_eq!(b["model"], "mock-s");
    assert!(b.get("tools").is_none());
    let prompt = b["messages"].to_string();
    assert!(prompt.contains("### Answer 1") && !prompt.contains("### Answer 2"));
    let [Command::Reply(reply)]: [Command; 1] = turn
        .on_call_result(synth[0].id, ok("merged", 2, 2), 1_030)
        .try_into()
        .unwrap()
    else {
        panic!("expected the answer")
    };
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "merged");
    assert_eq!(v["fusion"]["mode"], "merge");
    assert_eq!(v["fusion"]["judge"], Value::Null);
    assert_eq!(v["fusion"]["panel"][1]["failure_reason"], "http_500");
}

#[test]
fn merge_mode_with_every_member_failed_is_a_502_naming_each() {
    let (mut turn, panel) = run(
        &config(),
        &merge_request(json!({"analysis_models": ["mock-a", "mock-b"]})),
    );
    turn.on_call_result(panel[0].id, fail(429), 1_010);
    let [Command::Reply(reply)]: [Command; 1] = turn
        .on_call_result(panel[1].id, fail(503), 1_020)
        .try_into()
        .unwrap()
    else {
        panic!("expected the error")
    };
    assert_eq!(reply.status, 502);
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("mock-a: rate_limited") && message.contains("mock-b: http_503"));
    assert_eq!(turn.stats(false).outcome, Outcome::Error);
}

#[test]
fn at_capacity_rejects_or_passes_through_as_configured() {
    let Start::Overloaded(reply) =
        engine::start(&config(), Api::Chat, info(0), &chat("fusion"), 0, true)
    else {
        panic!("expected a 429")
    };
    assert_eq!(reply.status, 429);
    let c = config_with(|v| v["limits"] = json!({"on_overload": "pass_through"}));
    let Start::Rewrite(body, engine::Refusal::Overload) =
        engine::start(&c, Api::Chat, info(0), &chat("fusion"), 0, true)
    else {
        panic!("expected pass-through")
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["model"],
        "mock-outer"
    );
    // Plain requests are never affected by the cap.
    assert!(matches!(
        engine::start(&config(), Api::Chat, info(0), &chat("mock-a"), 0, true),
        Start::PassThrough
    ));
}

#[test]
fn a_request_mentioning_fusion_only_in_its_text_passes_through() {
    let body = json!({"model": "mock-a", "messages": [{"role": "user", "content": "Explain nuclear fusion"}],
                      "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]});
    assert!(matches!(
        engine::start(
            &config(),
            Api::Chat,
            info(0),
            body.to_string().as_bytes(),
            0,
            false
        ),
        Start::PassThrough
    ));
}

#[test]
fn run_stats_name_the_outcome_and_failures() {
    let (mut turn, panel) = start(&chat("fusion"));
    turn.on_call_result(panel[0].id, ok("a", 1, 1), 1_010);
    turn.on_call_result(panel[1].id, fail(429), 1_010);
    let judge = dispatches(turn.on_call_result(panel[2].id, ok("c", 1, 1), 1_020));
    let outer = dispatches(turn.on_call_result(judge[0].id, ok("prose, no JSON", 1, 1), 1_030));
    turn.on_call_result(outer[0].id, ok("final", 1, 1), 1_040);
    let s = turn.stats(false);
    assert_eq!(s.outcome, Outcome::Degraded);
    assert_eq!(s.panel_failures, vec![FailureClass::RateLimited]);
    assert_eq!(s.judge_degraded, Some(FailureClass::Unusable));
    assert_eq!((s.wall_ms, s.panel_wait_ms), (40, Some(20)));
    assert_eq!(s.cost, None, "the mock default has no prices");
}

fn fail(status: u16) -> CallResult {
    CallResult {
        status: Some(status),
        body: br#"{"error": {"message": "no"}}"#.to_vec(),
        ..CallResult::default()
    }
}

#[test]
fn a_json_array_is_not_a_request() {
    // serde would read `["fusion"]` into the head struct as `{"model": "fusion"}`.
    for body in [
        &b"[\"fusion\"]"[..],
        b" [\"fusion\", [{\"type\": \"fusion\"}]]",
    ] {
        assert!(matches!(
            engine::start(&config(), Api::Chat, info(0), body, 0, false),
            Start::PassThrough
        ));
    }
}

#[test]
fn an_outer_call_cut_at_the_turn_deadline_truncates_the_turn() {
    let c = config_with(|v| v["limits"] = json!({"turn_timeout_ms": 5_000}));
    let Start::Run(mut turn, cmds) =
        engine::start(&c, Api::Chat, info(0), &chat("fusion"), 1_000, false)
    else {
        panic!("expected a run")
    };
    let panel = dispatches(cmds);
    for p in &panel {
        turn.on_call_result(p.id, ok("x", 1, 1), 1_100);
    }
    let outer =
        dispatches(turn.on_call_result(turn_judge_id(&panel), ok(&analysis(), 1, 1), 1_200));
    // Envoy cut the dripping answer at the turn's deadline: no headers.
    let (status, v) = reply_json(turn.on_call_result(outer[0].id, CallResult::default(), 6_000));
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(turn.stats(false).truncated_by, Some(engine::Budget::Turn));
    assert_eq!(turn.stats(false).outcome, Outcome::Truncated);
}

/// A quorum turn answered with a local reply (the final answer a callout),
/// its third member still out; returns the turn, that member's id and the reply.
fn answered_before_the_straggler() -> (Box<Turn>, u32, Value) {
    let c = config_with(|v| {
        v["min_panel_answers"] = json!(2);
        v["panel_grace_ms"] = json!(100);
    });
    let (mut turn, panel) = run(&c, &chat("fusion"));
    turn.on_call_result(panel[0].id, ok("a", 1, 1), 1_010);
    turn.on_call_result(panel[1].id, ok("b", 1, 1), 1_020);
    let judge = dispatches(turn.on_timer(1_120));
    let outer = dispatches(turn.on_call_result(judge[0].id, ok(&analysis(), 2, 2), 1_200));
    let (status, reply) = reply_json(turn.on_call_result(outer[0].id, ok("final", 3, 3), 1_300));
    assert_eq!(status, 200);
    (turn, panel[2].id, reply)
}

#[test]
fn the_log_line_kept_from_the_answer_is_the_one_built_afresh() {
    let (mut turn, _, reply) = answered_before_the_straggler();
    let fresh = turn.log_line(true);
    let kept = turn.take_log_line(true);
    assert_eq!(kept, fresh);
    assert_eq!(kept["event"], "fusion_run");
    assert_eq!(kept["panel"], reply["fusion"]["panel"]);
    assert!(kept.get("tool_result").is_none() && kept.get("call_id").is_none());
    // Taken once: the next line is built afresh, the same.
    assert_eq!(turn.take_log_line(true), fresh);
}

#[test]
fn the_log_line_shows_what_came_after_the_answer() {
    let (mut turn, straggler, reply) = answered_before_the_straggler();
    assert_eq!(reply["fusion"]["usage"]["output_tokens"], 7);
    assert!(turn
        .on_call_result(straggler, ok("c", 7, 9), 1_500)
        .is_empty());
    let line = turn.take_log_line(true);
    assert_eq!(line, turn.log_line(true));
    assert_eq!(line["panel"][2]["usage"]["output_tokens"], 9);
    assert_eq!(line["usage"]["output_tokens"], 16);
}
