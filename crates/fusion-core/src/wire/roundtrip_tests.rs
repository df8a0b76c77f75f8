//! Refusals and citations survive every provider API x client API pair, in
//! JSON and in SSE.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::fixtures::meta;
use super::neutral::Reply;
use super::*;

const APIS: [Api; 3] = [Api::Chat, Api::Responses, Api::Messages];

fn refusal_bodies() -> Vec<(Api, &'static str)> {
    vec![
        (
            Api::Chat,
            r#"{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#,
        ),
        (
            Api::Responses,
            r#"{"id":"resp_1","model":"m","status":"completed","output":[{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"refusal","refusal":"I can't help with that."}]}]}"#,
        ),
        (
            Api::Messages,
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"I can't help with that."}],"stop_reason":"refusal","usage":{"input_tokens":1,"output_tokens":1}}"#,
        ),
    ]
}

fn cited_bodies() -> Vec<(Api, &'static str)> {
    vec![
        (
            Api::Chat,
            r#"{"id":"c","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital.","refusal":null,"annotations":[{"type":"url_citation","url_citation":{"url":"https://en.wikipedia.org/wiki/Paris","title":"Paris","start_index":0,"end_index":5}}]},"finish_reason":"stop"}]}"#,
        ),
        (
            Api::Responses,
            r#"{"id":"resp_1","model":"m","status":"completed","output":[{"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Paris is the capital.","annotations":[{"type":"url_citation","url":"https://en.wikipedia.org/wiki/Paris","title":"Paris","start_index":0,"end_index":5}]}]}]}"#,
        ),
        (
            Api::Messages,
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Paris is the capital.","citations":[{"type":"web_search_result_location","url":"https://en.wikipedia.org/wiki/Paris","title":"Paris","cited_text":"Paris is the capital and largest city of France","encrypted_index":"Eo8B"}]}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#,
        ),
    ]
}

/// The reply a client of `client` reads back from what the filter wrote, JSON and SSE.
fn written_and_read_back(client: Api, reply: &Reply) -> [Reply; 2] {
    let json = write_response(client, reply, &meta()).to_string();
    let sse = write_stream(client, reply, &meta(), true);
    [
        parse_response(client, json.as_bytes()).unwrap(),
        parse_response(client, sse.as_bytes()).unwrap(),
    ]
}

#[test]
fn refusals_reach_every_client_api_in_its_own_field() {
    for (provider, body) in refusal_bodies() {
        let reply = parse_response(provider, body.as_bytes()).unwrap();
        assert_eq!(
            reply.refusal.as_deref(),
            Some("I can't help with that."),
            "{provider:?}"
        );
        assert_eq!(reply.text, "", "{provider:?}");
        assert_eq!(reply.answer_text(), "[refused] I can't help with that.");
        for client in APIS {
            for back in written_and_read_back(client, &reply) {
                assert_eq!(
                    back.refusal.as_deref(),
                    Some("I can't help with that."),
                    "{provider:?} -> {client:?}"
                );
            }
        }
    }
    let reply = parse_response(Api::Chat, refusal_bodies()[0].1.as_bytes()).unwrap();
    let chat = write_response(Api::Chat, &reply, &meta());
    assert_eq!(chat["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(
        chat["choices"][0]["message"]["refusal"],
        "I can't help with that."
    );
    let messages = write_response(Api::Messages, &reply, &meta());
    assert_eq!(messages["stop_reason"], "refusal");
    let responses = write_response(Api::Responses, &reply, &meta());
    assert_eq!(
        responses["output"][0]["content"],
        serde_json::json!([{"type": "refusal", "refusal": "I can't help with that."}])
    );
}

#[test]
fn url_citations_reach_every_client_api() {
    for (provider, body) in cited_bodies() {
        let reply = parse_response(provider, body.as_bytes()).unwrap();
        assert_eq!(reply.citations.len(), 1, "{provider:?}");
        for client in APIS {
            for back in written_and_read_back(client, &reply) {
                assert_eq!(back.text, "Paris is the capital.");
                let urls: Vec<_> = back.citations.iter().map(|c| c.url.clone()).collect();
                assert_eq!(
                    urls,
                    [Some("https://en.wikipedia.org/wiki/Paris".to_string())],
                    "{provider:?} -> {client:?}"
                );
            }
        }
    }
    // Same API: the provider's own object comes back unchanged.
    let (api, body) = cited_bodies()[2];
    let reply = parse_response(api, body.as_bytes()).unwrap();
    let out = write_response(Api::Messages, &reply, &meta());
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(out["content"][0]["citations"], v["content"][0]["citations"]);
}
