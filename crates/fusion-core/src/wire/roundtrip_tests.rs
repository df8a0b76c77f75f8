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

#[test]
fn an_image_and_a_pdf_cross_every_api_and_audio_is_refused_where_it_has_no_place() {
    use super::neutral::{GenParams, ModelRequest, ToolChoice};
    let body = serde_json::json!({"model": "fusion", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}]}]});
    let req = parse_request(Api::Chat, &body).unwrap();
    for api in APIS {
        check_parts(api, &req.conversation, "m").unwrap();
        let out = build_request(
            api,
            &ModelRequest {
                model: "m",
                conversation: &req.conversation,
                tools: &[],
                tool_choice: &ToolChoice::Auto,
                params: &GenParams::default(),
            },
        );
        let text = out.to_string();
        assert!(text.contains("iVBORw0KGgo="), "{api:?}: {text}");
        assert!(text.contains("JVBERi0="), "{api:?}: {text}");
        // The same request parsed back carries the same parts (Responses
        // requires an image `detail`: `auto` is written when none was given).
        if api == Api::Chat {
            let back = parse_request(api, &out).unwrap();
            assert_eq!(
                back.conversation.messages, req.conversation.messages,
                "{api:?}"
            );
        }
    }
    let audio = serde_json::json!({"model": "fusion", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}]}]});
    let req = parse_request(Api::Chat, &audio).unwrap();
    check_parts(Api::Chat, &req.conversation, "gpt-4o-audio").unwrap();
    let err = check_parts(Api::Messages, &req.conversation, "claude-x").unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("`audio` part"), "{}", err.message);
    assert!(err.message.contains("`claude-x`"), "{}", err.message);
    assert!(err.message.contains("messages API"), "{}", err.message);
    // An unknown part type is refused when parsed, naming it.
    let odd = serde_json::json!({"model": "fusion", "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "u"}}]}]});
    let err = parse_request(Api::Chat, &odd).unwrap_err();
    assert!(err.message.contains("`video_url`"), "{}", err.message);
}
