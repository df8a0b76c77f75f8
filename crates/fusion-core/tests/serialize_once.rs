//! Serialize once, patch per call: the calls of a turn are written from the
//! client's own bytes and from each answer escaped once (wire::splice,
//! engine::slots). What each model and the client receive must be exactly what
//! a plain serialization of the same values would give, whatever the texts hold.

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
use common::dispatches;

use fusion_core::config::Config;
use fusion_core::engine::{self, CallResult, Command, RequestInfo, Start};
use fusion_core::wire::Api;
use serde_json::{json, Value};
use std::rc::Rc;

fn ok(text: &str) -> CallResult {
    CallResult {
        status: Some(200),
        body: json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
            .to_string()
            .into_bytes(),
        ..CallResult::default()
    }
}

/// Texts that escaping must get right, and texts that look like the markers.
const ANSWERS: [&str; 3] = [
    "Quotes \" and backslashes \\ and\nnewlines\tand \u{1} control, é, 😀.",
    "\u{0}response-0000000000000000 0\u{0} a NUL-wrapped fake marker, and \\u0000 spelled out",
    "</response-x> plain",
];

#[test]
fn every_call_and_the_reply_carry_the_exact_texts() {
    let config = Rc::new(Config::default_mock().unwrap());
    // The client's own spelling: escapes, a big number, odd spacing.
    let body = br#"{ "model" : "fusion", "seed": 12345678901234567890,
        "messages": [ {"role":"system","content":"Be brief.\u00e9"},
                      {"role":"user","content":"Is the sky blue? \ud83d\ude00", "x_extra": [1.0e2, {"k": "\u0000"}]} ] }"#;
    let info = RequestInfo {
        request_id: "req-1".into(),
        ..RequestInfo::default()
    };
    let (mut turn, panel) = match engine::start(&config, Api::Chat, info, body, 1_000, false) {
        Start::Run(turn, cmds) => (turn, dispatches(cmds)),
        other => panic!("expected a run, got {other:?}"),
    };
    let run_id = turn.run_id().to_string();
    // Each member gets the client's messages byte for byte.
    let text = std::str::from_utf8(body).unwrap();
    let messages =
        &text[text.find(r#"{"role":"system""#).unwrap()..text.find("]} ] }").unwrap() + 2];
    for c in &panel {
        let sent = std::str::from_utf8(&c.body).unwrap();
        assert!(sent.contains(messages), "{sent}");
        assert!(sent.contains("\"seed\":12345678901234567890"), "{sent}");
    }
    let mut judge = Vec::new();
    for (c, answer) in panel.iter().zip(ANSWERS) {
        judge = dispatches(turn.on_call_result(c.id, ok(answer), 1_100));
    }
    let judge_body: Value = serde_json::from_slice(&judge[0].body).unwrap();
    let prompt = judge_body["messages"][1]["content"].as_str().unwrap();
    for (i, answer) in ANSWERS.iter().enumerate() {
        assert!(
            prompt.contains(&format!(" n=\"{}\">\n{answer}\n</response-", i + 1)),
            "{prompt}"
        );
    }
    let analysis = json!({"consensus": ["\u{0}x"], "blind_spots": []}).to_string();
    let outer = dispatches(turn.on_call_result(judge[0].id, ok(&analysis), 1_200));
    let outer_body: Value = serde_json::from_slice(&outer[0].body).unwrap();
    let msgs = outer_body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["content"], "Is the sky blue? 😀");
    let result_text = msgs[msgs.len() - 1]["content"].as_str().unwrap();
    let result: Value = serde_json::from_str(result_text).unwrap();
    let contents: Vec<&str> = result["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ANSWERS);
    assert_eq!(result["analysis"]["consensus"][0], "\u{0}x");
    let reply = match turn
        .on_call_result(outer[0].id, ok("Blue."), 1_300)
        .as_slice()
    {
        [Command::Reply(r)] => r.clone(),
        other => panic!("expected a reply, got {other:?}"),
    };
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["fusion"]["tool_result"], result);
    // No marker is left anywhere: none of the bodies holds the run's id.
    for bytes in [&judge[0].body, &outer[0].body, &reply.body] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(&format!("\\u0000{run_id}")), "{text}");
    }
}
