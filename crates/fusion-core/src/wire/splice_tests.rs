#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::wire::neutral::ToolCall;
use crate::wire::patch::{CallRole, FusionExchange};
use serde_json::json;

fn exchange(thinking: bool) -> FusionExchange {
    FusionExchange {
        text: "Asking the panel.".into(),
        call: ToolCall {
            id: "call_f1".into(),
            name: "fusion".into(),
            arguments: "{\"question\":\"q\"}".into(),
        },
        result:
            "{\"status\":\"ok\",\"responses\":[{\"model\":\"a\",\"content\":\"x \\\"y\\\"\\n\"}]}"
                .into(),
        thinking: if thinking {
            vec![json!({"type": "thinking", "thinking": "hm", "signature": "sig=="})]
        } else {
            Vec::new()
        },
    }
}

/// A long text, so that its member is left as bytes.
fn long(s: &str) -> String {
    s.repeat(40)
}

fn body(api: Api) -> String {
    let conversation = json!([
        {"role": "user", "content": [
            {"type": "text", "text": long("What is in this image? é \"q\" \n")},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]},
        {"role": "assistant", "content": "It is a cat."},
        {"role": "user", "content": "And the colour?"}
    ]);
    let conversation_key = if api == Api::Responses {
        "input"
    } else {
        "messages"
    };
    let mut v = json!({
        "model": "fusion",
        "tools": [{"type": "fusion"}, {"type": "function", "function": {"name": "weather",
            "description": long("Weather now. "), "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "description": long("schema ")}}},
        "seed": 7,
        "n": 2,
        "temperature": 0.5,
        "metadata": {"k": "v"},
        "stream": true,
        "stream_options": {"include_usage": false},
        "system": long("Be brief. "),
        "x_future_field": {"a": [1, 2], "note": long("future ")},
        "fusion": {"preset": "fast"}
    });
    if let Some(obj) = v.as_object_mut() {
        obj.insert(conversation_key.into(), conversation);
    }
    serde_json::to_string_pretty(&v).unwrap()
}

fn specs<'a>(
    extra: &'a [Value],
    set: &'a [(&'a str, Value)],
    ex: &'a FusionExchange,
) -> Vec<PatchSpec<'a>> {
    let base = PatchSpec {
        role: CallRole::Panel,
        model: "provider-model",
        stream: false,
        extra_tools: &[],
        set: &[],
        exchange: None,
    };
    vec![
        base.clone(),
        PatchSpec {
            extra_tools: extra,
            set,
            ..base.clone()
        },
        PatchSpec {
            role: CallRole::OuterRound,
            extra_tools: extra,
            set,
            exchange: Some(ex),
            ..base.clone()
        },
        PatchSpec {
            role: CallRole::Final,
            stream: true,
            extra_tools: extra,
            exchange: Some(ex),
            ..base
        },
    ]
}

/// Every role's splice parses to exactly the tree patch's value.
#[test]
fn a_splice_is_the_tree_patch_in_every_api_and_role() {
    let extra = [json!({"type": "function", "function": {"name": "fusion", "parameters": {}}})];
    let set = [
        ("temperature", json!(0.2)),
        ("seed", Value::Null),
        ("system", Value::Null),
        ("tool_choice", json!("required")),
    ];
    for api in [Api::Chat, Api::Responses, Api::Messages] {
        for thinking in [false, true] {
            let ex = exchange(thinking);
            let text = body(api);
            let value: Value = serde_json::from_str(&text).unwrap();
            let client = ClientBody::new(api, text.as_bytes(), value.clone());
            assert!(client.is_spliced(), "{api:?}");
            for spec in specs(&extra, &set, &ex) {
                let tree = patch::patch_request(api, &value, &spec).unwrap();
                let spliced = client.write(&client.patch(api, &spec).unwrap());
                let parsed: Value = serde_json::from_slice(&spliced).unwrap();
                assert_eq!(parsed, tree, "{api:?} {:?}", spec.role);
            }
        }
    }
}

/// The conversation, the system prompt and the client's tools reach the call as
/// the client wrote them: escapes and number spellings included.
#[test]
fn the_clients_bytes_are_copied_not_rewritten() {
    let text = format!(
        r#"{{"model":"fusion","messages":[{{"role":"user","content":"caf\u00e9 \ud83d\ude00 {}"}}],"system":"{}","tools":[{{"type":"fusion"}},{{"name":"w","input_schema":{{"type":"object","maximum":1.0e2}},"description":"{}"}}],"max_tokens":100}}"#,
        long("x"),
        long("s"),
        long("d")
    );
    let value: Value = serde_json::from_str(&text).unwrap();
    let client = ClientBody::new(Api::Messages, text.as_bytes(), value);
    let spec = PatchSpec {
        role: CallRole::OuterRound,
        model: "claude",
        stream: false,
        extra_tools: &[],
        set: &[],
        exchange: Some(&exchange(false)),
    };
    let out =
        String::from_utf8(client.write(&client.patch(Api::Messages, &spec).unwrap())).unwrap();
    assert!(out.contains(&format!(
        r#"[{{"role":"user","content":"caf\u00e9 \ud83d\ude00 {}"}},{{"content":[{{"text":"Asking"#,
        long("x")
    )));
    assert!(out.contains(&format!(r#""system":"{}""#, long("s"))));
    assert!(out.contains(r#""input_schema":{"type":"object","maximum":1.0e2}"#));
    assert!(!out.contains(r#"{"type":"fusion"}"#));
    assert!(out.contains(r#""model":"claude""#));
}

/// Duplicate top-level keys, replayed fusion items, a body that is not an
/// object: patched as a tree, as before (the tree keeps the last duplicate).
#[test]
fn odd_bodies_are_patched_as_a_tree() {
    let dup = r#"{"model":"fusion","messages":[{"role":"user","content":"a"}],"messages":[{"role":"user","content":"b"}]}"#;
    let value: Value = serde_json::from_str(dup).unwrap();
    let client = ClientBody::new(Api::Chat, dup.as_bytes(), value.clone());
    assert!(!client.is_spliced());
    let spec = PatchSpec {
        role: CallRole::Panel,
        model: "m",
        stream: false,
        extra_tools: &[],
        set: &[],
        exchange: None,
    };
    let out: Value =
        serde_json::from_slice(&client.write(&client.patch(Api::Chat, &spec).unwrap())).unwrap();
    assert_eq!(out["messages"][0]["content"], "b");
    assert_eq!(out, patch::patch_request(Api::Chat, &value, &spec).unwrap());

    let replay = r#"{"model":"fusion","input":[{"role":"user","content":"q"},{"type":"fusion_call","id":"x"}]}"#;
    let value: Value = serde_json::from_str(replay).unwrap();
    let client = ClientBody::new(Api::Responses, replay.as_bytes(), value);
    assert!(!client.is_spliced());
    let out: Value =
        serde_json::from_slice(&client.write(&client.patch(Api::Responses, &spec).unwrap()))
            .unwrap();
    assert_eq!(out["input"].as_array().unwrap().len(), 1);

    let empty = r#"{"model":"fusion","messages":[{"role":"user","content":[]},{"role":"user","content":"q"}]}"#;
    let value: Value = serde_json::from_str(empty).unwrap();
    assert!(!ClientBody::new(Api::Messages, empty.as_bytes(), value).is_spliced());
}

/// Escaped keys, empty arrays, whitespace everywhere, a string `input`.
#[test]
fn the_index_reads_any_spelling_of_an_object() {
    for text in [
        " { \"mod\\u0065l\" : \"fusion\" ,\n \"messages\" : [ ] , \"tools\" : [ ] } \n",
        r#"{"model":"fusion","input":"a question that is long enough to be more than sixty-four bytes long, surely"}"#,
        r#"{"model":"fusion","messages":[{"role":"user","content":"q \\\" ] } ["}],"n":1,"stop":["]","}"]}"#,
    ] {
        let value: Value = serde_json::from_str(text).unwrap();
        for api in [Api::Chat, Api::Responses, Api::Messages] {
            let client = ClientBody::new(api, text.as_bytes(), value.clone());
            assert!(client.is_spliced(), "{text}");
            let ex = exchange(false);
            for spec in specs(&[], &[], &ex) {
                let tree = patch::patch_request(api, &value, &spec).unwrap();
                let parsed: Value =
                    serde_json::from_slice(&client.write(&client.patch(api, &spec).unwrap()))
                        .unwrap();
                assert_eq!(parsed, tree, "{text} {api:?} {:?}", spec.role);
            }
        }
    }
}

#[test]
fn the_scanner_finds_each_member() {
    let b = br#" {"a" : [1, {"b": "}"}], "c\"d": "x\\", "e": -1.5e3 , "f":null}"#;
    let m = scan_object(b).unwrap();
    let got: Vec<(String, &str)> = m
        .iter()
        .map(|(k, r)| (k.clone(), std::str::from_utf8(&b[r.clone()]).unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".to_string(), r#"[1, {"b": "}"}]"#),
            ("c\"d".to_string(), r#""x\\""#),
            ("e".to_string(), "-1.5e3"),
            ("f".to_string(), "null"),
        ]
    );
    assert!(scan_object(b"[1]").is_none());
    assert!(scan_object(br#"{"a":1} x"#).is_none());
}
