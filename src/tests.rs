//! The host glue against a fake host: callbacks in, host calls out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::filter::FusionFilter;
use crate::host::fake::{Dispatched, FakeHost, Op};
use crate::host::{BufferType, MapType};
use crate::root::FusionRoot;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde_json::{json, Value};
use std::rc::Rc;

const ROOT: u32 = 1;
const STREAM: u32 = 2;

struct Rig {
    host: Rc<FakeHost>,
    root: FusionRoot,
    filter: FusionFilter,
}

/// A root configured with `config` (the embedded mock default when empty) and one stream.
fn rig(config: &str) -> Rig {
    let host = Rc::new(FakeHost::default());
    host.now.set(1_000);
    host.set_body(BufferType::PluginConfiguration, config.as_bytes());
    let mut root = FusionRoot::with_host(ROOT, host.clone());
    assert!(root.on_configure(config.len()));
    let filter = root.filter(STREAM).unwrap();
    Rig { host, root, filter }
}

fn chat(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "Is the sky blue?"}]})
        .to_string()
        .into_bytes()
}

impl Rig {
    /// Sends the request headers of a JSON POST to the Chat path.
    fn headers(&mut self) -> Action {
        let req = MapType::HttpRequestHeaders;
        self.host.set_header(req, ":method", "POST");
        self.host.set_header(req, ":path", "/v1/chat/completions");
        self.host
            .set_header(req, "content-type", "application/json");
        self.host.set_header(req, "x-request-id", "req-1");
        self.filter.on_http_request_headers(4, false)
    }

    /// The whole body in one callback.
    fn body(&mut self, body: &[u8]) -> Action {
        self.host.set_body(BufferType::HttpRequestBody, body);
        self.filter.on_http_request_body(body.len(), true)
    }

    fn dispatched(&self) -> Vec<Dispatched> {
        self.host.dispatched.borrow().clone()
    }

    /// Answers callout `token` with a Chat completion, to the context the SDK
    /// registered it to (the root, after `route_answers_to_root`).
    fn answer(&mut self, token: u32, text: &str) {
        let owner = self
            .dispatched()
            .iter()
            .find(|d| d.token == token)
            .map(|d| d.owner);
        let body = json!({"model": "m", "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        .to_string();
        self.host
            .set_header(MapType::HttpCallResponseHeaders, ":status", "200");
        self.host
            .set_body(BufferType::HttpCallResponseBody, body.as_bytes());
        if owner == Some(ROOT) {
            self.root.on_http_call_response(token, 1, body.len(), 0);
        } else {
            self.filter.on_http_call_response(token, 1, body.len(), 0);
        }
    }

    /// A whole alias turn: the request, three members answering "blue", the
    /// judge's analysis, and `final_text` from the outer model.
    fn alias_turn(&mut self, final_text: &str) {
        self.headers();
        self.body(&chat("fusion"));
        for d in &self.dispatched() {
            self.answer(d.token, "blue");
        }
        let judge = self.dispatched()[3].clone();
        self.answer(judge.token, &analysis());
        let outer = self.dispatched()[4].clone();
        self.answer(outer.token, final_text);
    }

    fn sent_json(&self) -> (u32, Value) {
        let sent = self.host.sent.borrow();
        let last = sent.last().expect("a local reply");
        (last.status, serde_json::from_slice(&last.body).unwrap())
    }
}

fn model_of(d: &Dispatched) -> String {
    let v: Value = serde_json::from_slice(&d.body).unwrap();
    v["model"].as_str().unwrap().to_string()
}

fn analysis() -> String {
    json!({"consensus": ["yes"], "contradictions": [], "partial_coverage": [],
           "unique_insights": [], "blind_spots": []})
    .to_string()
}

#[test]
fn a_plain_request_passes_untouched() {
    let mut r = rig("");
    r.host
        .set_header(MapType::HttpRequestHeaders, ":method", "GET");
    assert_eq!(r.filter.on_http_request_headers(1, true), Action::Continue);
    let mut r = rig("");
    assert_eq!(r.headers(), Action::Pause);
    assert_eq!(r.body(&chat("mock-a")), Action::Continue);
    assert!(r.dispatched().is_empty() && r.host.sent.borrow().is_empty());
}

#[test]
fn an_alias_run_answers_locally_and_counts_the_run() {
    let mut r = rig("");
    r.headers();
    assert_eq!(r.body(&chat("fusion")), Action::Pause);
    let panel = r.dispatched();
    assert_eq!(panel.len(), 3);
    assert_eq!(r.host.metric("fusion_active_runs"), 1);
    for d in &panel {
        r.answer(d.token, "blue");
    }
    let judge = r.dispatched()[3].clone();
    assert_eq!(model_of(&judge), "mock-judge");
    r.answer(judge.token, &analysis());
    let outer = r.dispatched()[4].clone();
    assert_eq!(model_of(&outer), "mock-outer");
    r.answer(outer.token, "The sky is blue.");
    let (status, v) = r.sent_json();
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "The sky is blue.");
    assert_eq!(r.host.metric("fusion_active_runs"), 0);
    r.filter.on_log();
    assert_eq!(
        r.host
            .metric("mode=.=alias;.;outcome=.=ok;.;fusion_runs_total"),
        1
    );
}

#[test]
fn the_grace_timer_runs_on_the_root_and_its_callout_answers_through_the_root() {
    let mut r = rig(
        r#"{"outer_model": "mock-outer", "panel": [{"model": "mock-a"}, {"model": "mock-b"}, {"model": "mock-c"}],
        "judge": {"model": "mock-judge"}, "min_panel_answers": 2, "panel_grace_ms": 100,
        "upstreams": {"mock": {"cluster": "mock", "authority": "mock", "api": "chat"}},
        "routes": [{"prefix": "", "upstream": "mock"}]}"#,
    );
    r.headers();
    r.body(&chat("fusion"));
    let panel = r.dispatched();
    r.answer(panel[0].token, "a");
    r.answer(panel[1].token, "b");
    // The quorum answered: the root ticks until the grace period ends.
    assert!(r.host.tick_period.get().is_some_and(|p| !p.is_zero()));
    assert_eq!(
        r.host.effective.get(),
        STREAM,
        "back in the stream's context"
    );
    r.host.now.set(1_050);
    r.root.on_tick();
    assert_eq!(r.dispatched().len(), 3, "grace not over yet");
    r.host.now.set(1_200);
    r.root.on_tick();
    let judge = r.dispatched()[3].clone();
    assert_eq!(model_of(&judge), "mock-judge");
    assert_eq!(judge.context, STREAM, "dispatched as the stream");
    assert_eq!(r.host.tick_period.get(), Some(std::time::Duration::ZERO));
    // Dispatched from the tick: the host answers the root, which routes it on.
    assert_eq!(judge.owner, ROOT);
    r.answer(judge.token, &analysis());
    let outer = r.dispatched()[4].clone();
    assert_eq!(model_of(&outer), "mock-outer");
    r.answer(outer.token, "done");
    let (status, v) = r.sent_json();
    assert_eq!(status, 200);
    assert_eq!(v["fusion"]["panel"][2]["status"], "late");
}

#[test]
fn a_refused_dispatch_is_a_failed_member_not_a_crash() {
    let mut r = rig("");
    r.host.refuse(Op::Dispatch);
    r.headers();
    assert_eq!(r.body(&chat("fusion")), Action::Pause);
    // Every call refused: the panel fails, the outer round is refused too,
    // and the client gets a native error with the report.
    let (status, v) = r.sent_json();
    assert_eq!(status, 502);
    assert_eq!(v["fusion"]["panel"][0]["failure_reason"], "unreachable");
    assert!(r.host.refused.borrow().iter().all(|op| *op == Op::Dispatch));
    assert_eq!(r.host.metric("fusion_active_runs"), 0);
}

#[test]
fn a_local_reply_the_host_refuses_lets_the_request_go_on() {
    let mut r = rig("");
    r.host.refuse(Op::SendResponse);
    r.headers();
    // A bad fusion request: the 400 cannot be sent, so the request is not left hanging.
    let body = json!({"model": "fusion", "messages": []}).to_string();
    assert_eq!(r.body(body.as_bytes()), Action::Continue);
    assert_eq!(*r.host.refused.borrow(), vec![Op::SendResponse]);
}

#[test]
fn a_refused_header_write_is_logged_and_the_request_goes_on() {
    // Depth 1: the alias is rewritten to the plain model; the content-length
    // write is refused (as Envoy does once headers went upstream).
    let mut r = rig("");
    r.host.refuse(Op::SetHeader);
    r.host
        .set_header(MapType::HttpRequestHeaders, "x-fusion-depth", "1");
    r.headers();
    assert_eq!(r.body(&chat("fusion")), Action::Continue);
    let body: Value = serde_json::from_slice(&r.host.body(BufferType::HttpRequestBody)).unwrap();
    assert_eq!(body["model"], "mock-outer");
    assert_eq!(*r.host.refused.borrow(), vec![Op::SetHeader]);
    assert_eq!(r.host.metric("fusion_depth_refusals_total"), 1);
}

#[test]
fn a_client_gone_before_the_answer_is_counted_as_such() {
    let mut r = rig("");
    r.headers();
    r.body(&chat("fusion"));
    r.host.now.set(1_500);
    r.filter.on_log();
    assert_eq!(
        r.host
            .metric("mode=.=alias;.;outcome=.=client_gone;.;fusion_runs_total"),
        1
    );
    assert_eq!(r.host.metric("fusion_client_disconnects_total"), 1);
    // Its callouts still run: the run keeps its slot until they have ended.
    assert_eq!(r.host.metric("fusion_active_runs"), 1);
    // An answer after the stream ended is dropped quietly.
    let token = r.dispatched()[0].token;
    r.answer(token, "late");
    assert!(r.host.sent.borrow().is_empty());
}

/// Answers callout `token` with a failure (what Envoy delivers on a timeout
/// or reset: no headers), to the root.
fn fail_to_root(r: &mut Rig, token: u32) {
    r.root.on_http_call_response(token, 0, 0, 0);
}

#[test]
fn every_stream_callout_answers_to_the_root() {
    let mut r = rig("");
    r.headers();
    r.body(&chat("fusion"));
    let panel = r.dispatched();
    assert!(!panel.is_empty());
    for d in &panel {
        assert_eq!(d.owner, ROOT, "its end reaches the root");
    }
}

#[test]
fn a_gone_run_holds_its_slot_exactly_until_its_last_callout_ends() {
    let config = fusion_core::config::DEFAULT_CONFIG.replacen(
        '{',
        r#"{"limits": {"max_concurrent_runs": 1, "tool_timeout_ms": 60000},"#,
        1,
    );
    let mut r = rig(&config);
    r.headers();
    r.body(&chat("fusion"));
    let panel = r.dispatched();
    assert!(panel.len() >= 2, "{panel:?}");
    r.host.now.set(1_500);
    r.filter.on_done();
    r.filter.on_log();
    // The client left; the host deletes the stream.
    r.filter = r.root.filter(STREAM + 1).unwrap();
    assert_eq!(r.host.metric("fusion_active_runs"), 1);
    // All but one member answer (or time out): the slot is still taken.
    r.answer(panel[0].token, "late");
    for d in &panel[1..panel.len() - 1] {
        fail_to_root(&mut r, d.token);
    }
    assert_eq!(r.host.metric("fusion_active_runs"), 1);
    r.headers();
    r.body(&chat("fusion"));
    assert_eq!(r.sent_json().0, 429, "the worker is still full");
    // The last callout ends, long before its timeout: the slot is free at once.
    r.host.sent.borrow_mut().clear();
    let before = r.dispatched().len();
    fail_to_root(&mut r, panel[panel.len() - 1].token);
    assert_eq!(r.host.metric("fusion_active_runs"), 0);
    assert_eq!(
        r.dispatched().len(),
        before,
        "nothing new (judge, outer round) starts for a gone client"
    );
    r.filter = r.root.filter(STREAM + 2).unwrap();
    r.headers();
    r.body(&chat("fusion"));
    assert!(r.host.sent.borrow().is_empty(), "the run started");
    assert_eq!(r.host.metric("fusion_active_runs"), 1);
}

#[test]
fn answers_between_the_streams_end_and_its_deletion_start_nothing() {
    let mut r = rig("");
    r.headers();
    r.body(&chat("fusion"));
    let panel = r.dispatched();
    r.filter.on_done();
    r.filter.on_log();
    // The stream still exists: answers reach it, are counted, start nothing.
    for d in &panel {
        r.answer(d.token, "late");
    }
    assert_eq!(
        r.dispatched().len(),
        panel.len(),
        "no judge for a gone client"
    );
    assert!(r.host.sent.borrow().is_empty());
    assert_eq!(
        r.host.metric("fusion_active_runs"),
        0,
        "the last end freed the slot"
    );
    // Deleting the stream then changes nothing.
    r.filter = r.root.filter(STREAM + 1).unwrap();
    assert_eq!(r.host.metric("fusion_active_runs"), 0);
}

#[test]
fn a_gone_run_frees_its_bytes_in_flight_with_its_slot() {
    let mut r = rig("");
    r.headers();
    r.body(&chat("fusion"));
    let panel = r.dispatched();
    let shared = r.root.shared().unwrap();
    let sent: usize = panel.iter().map(|d| d.body.len()).sum();
    assert_eq!(shared.bytes_in_flight.get(), sent as u64);
    r.filter.on_log();
    r.filter = r.root.filter(STREAM + 1).unwrap();
    assert_eq!(shared.gone.borrow().len(), 1);
    assert_eq!(shared.bytes_in_flight.get(), sent as u64, "still held");
    for d in &panel {
        fail_to_root(&mut r, d.token);
    }
    assert_eq!(shared.gone.borrow().len(), 0);
    assert_eq!(shared.bytes_in_flight.get(), 0);
    assert_eq!(r.host.metric("fusion_active_runs"), 0);
}

#[test]
fn a_gone_run_whose_answer_is_lost_is_freed_past_its_deadline() {
    let config = fusion_core::config::DEFAULT_CONFIG.replacen(
        '{',
        r#"{"limits": {"max_concurrent_runs": 1, "tool_timeout_ms": 5000},"#,
        1,
    );
    let mut r = rig(&config);
    r.headers();
    r.body(&chat("fusion"));
    r.filter.on_log();
    r.filter = r.root.filter(STREAM + 1).unwrap();
    // No answer ever comes (a host that loses them): the slot waits for the
    // callouts' timeout plus the margin, then admission frees it.
    r.host.now.set(1_000 + 5_000 + 9_999);
    r.headers();
    r.body(&chat("fusion"));
    assert_eq!(r.sent_json().0, 429);
    r.host.sent.borrow_mut().clear();
    r.host.now.set(1_000 + 5_000 + 10_000);
    r.filter = r.root.filter(STREAM + 2).unwrap();
    r.headers();
    r.body(&chat("fusion"));
    assert!(r.host.sent.borrow().is_empty(), "the run started");
}

/// Runs an alias request through panel and judge until the final answer goes up the route.
fn rig_relaying() -> Rig {
    // The only way keys reach the filter: the VM's environment.
    std::env::set_var("FUSION_TEST_OP_KEY", "op-key");
    let mut r = rig(
        r#"{"outer_model": "mock-outer", "panel": [{"model": "mock-a"}],
        "judge": {"model": "mock-judge"},
        "upstreams": {"mock": {"cluster": "mock", "authority": "mock", "api": "chat",
                               "auth": {"type": "header", "name": "x-api-key", "env": "FUSION_TEST_OP_KEY"}}},
        "routes": [{"prefix": "", "upstream": "mock"}]}"#,
    );
    r.host
        .properties
        .borrow_mut()
        .insert("xds.cluster_name".into(), b"mock".to_vec());
    let req = MapType::HttpRequestHeaders;
    r.host.set_header(req, "authorization", "Bearer client-key");
    r.headers();
    let body = json!({"model": "fusion", "stream": true,
                      "messages": [{"role": "user", "content": "Is the sky blue?"}]})
    .to_string();
    r.body(body.as_bytes());
    let member = r.dispatched()[0].clone();
    r.answer(member.token, "blue");
    let judge = r.dispatched()[1].clone();
    r.answer(judge.token, &analysis());
    assert_eq!(r.host.resumed.get(), 1);
    r
}

#[test]
fn resumed_request_keeps_its_route_and_swaps_the_key() {
    let r = rig_relaying();
    let req = MapType::HttpRequestHeaders;
    assert_eq!(
        r.host.header(req, ":path").as_deref(),
        Some("/v1/chat/completions")
    );
    assert_eq!(
        r.host.header(req, ":authority"),
        None,
        "never set by the filter"
    );
    assert_eq!(r.host.header(req, "x-api-key").as_deref(), Some("op-key"));
    assert_eq!(
        r.host.header(req, "authorization"),
        None,
        "the client's key does not go along"
    );
    assert_eq!(
        r.host.header(req, "accept-encoding").as_deref(),
        Some("identity")
    );
}

#[test]
fn relayed_provider_error_is_answered_in_the_api_shape_and_counted() {
    let mut r = rig_relaying();
    let res = MapType::HttpResponseHeaders;
    r.host.set_header(res, ":status", "503");
    r.host.set_header(res, "content-type", "text/plain");
    assert_eq!(r.filter.on_http_response_headers(2, false), Action::Pause);
    let text = b"upstream connect error or disconnect/reset before headers";
    r.host.set_body(BufferType::HttpResponseBody, text);
    assert_eq!(
        r.filter.on_http_response_body(text.len(), true),
        Action::Continue
    );
    assert_eq!(r.host.header(res, ":status").as_deref(), Some("502"));
    assert_eq!(
        r.host.header(res, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value =
        serde_json::from_slice(&r.host.body(BufferType::HttpResponseBody)).unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["fusion"].is_object(), "{body}");
    r.filter.on_log();
    assert_eq!(
        r.host
            .metric("mode=.=alias;.;outcome=.=error;.;fusion_runs_total"),
        1
    );
}

#[test]
fn request_trailers_end_the_body_like_end_of_stream() {
    let mut r = rig("");
    r.headers();
    let body = chat("fusion");
    let a = &body[..10];
    r.host.set_body(BufferType::HttpRequestBody, a);
    assert_eq!(r.filter.on_http_request_body(a.len(), false), Action::Pause);
    r.host.set_body(BufferType::HttpRequestBody, &body);
    assert_eq!(
        r.filter.on_http_request_body(body.len(), false),
        Action::Pause
    );
    assert!(r.dispatched().is_empty());
    // The trailers complete the request: the alias runs fusion instead of reaching the upstream.
    assert_eq!(r.filter.on_http_request_trailers(1), Action::Pause);
    assert_eq!(r.dispatched().len(), 3);
}

#[test]
fn response_trailers_complete_a_relayed_answer() {
    let mut r = rig(
        r#"{"outer_model": "mock-outer", "panel": [{"model": "mock-a"}],
        "judge": {"model": "mock-judge"},
        "upstreams": {"mock": {"cluster": "mock", "authority": "mock", "api": "chat"}},
        "routes": [{"prefix": "", "upstream": "mock"}]}"#,
    );
    r.host
        .properties
        .borrow_mut()
        .insert("xds.cluster_name".into(), b"mock".to_vec());
    r.headers();
    let body = json!({"model": "fusion", "stream": true,
                      "messages": [{"role": "user", "content": "Is the sky blue?"}]})
    .to_string();
    r.body(body.as_bytes());
    let member = r.dispatched()[0].clone();
    r.answer(member.token, "blue");
    let judge = r.dispatched()[1].clone();
    r.answer(judge.token, &analysis());
    // The final answer streams up the route.
    assert_eq!(r.host.resumed.get(), 1);
    let res = MapType::HttpResponseHeaders;
    r.host.set_header(res, ":status", "200");
    r.host.set_header(res, "content-type", "text/event-stream");
    assert_eq!(
        r.filter.on_http_response_headers(2, false),
        Action::Continue
    );
    let chunk = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Blue.\"}}]}\n\n";
    r.host
        .set_body(BufferType::HttpResponseBody, chunk.as_bytes());
    r.filter.on_http_response_body(chunk.len(), false);
    r.host.now.set(1_300);
    assert_eq!(r.filter.on_http_response_trailers(1), Action::Continue);
    r.filter.on_log();
    assert_eq!(
        r.host
            .metric("mode=.=alias;.;outcome=.=ok;.;fusion_runs_total"),
        1,
        "the trailers ended the answer: not client_gone"
    );
}

// --- What the client and the operator see (issues 17, 18, 19) ---

#[test]
fn a_plain_json_post_reads_no_header_or_property_past_eligibility() {
    let mut r = rig("");
    r.host.reads.borrow_mut().clear();
    r.headers();
    r.body(&chat("mock-a"));
    assert_eq!(
        *r.host.reads.borrow(),
        [":method", ":path", "content-type"],
        "depth, auth, request id and cluster are read only for fusion"
    );
}

#[test]
fn requests_that_cannot_be_fusion_cost_no_host_call_past_the_deciding_one() {
    // A GET: one header read, nothing else, from headers to log.
    let mut r = rig("");
    r.host
        .set_header(MapType::HttpRequestHeaders, ":method", "GET");
    r.host.reads.borrow_mut().clear();
    r.host.clock_reads.set(0);
    assert_eq!(r.filter.on_http_request_headers(1, false), Action::Continue);
    r.filter.on_log();
    assert_eq!(*r.host.reads.borrow(), [":method"]);
    // A POST to another path: the method and the path.
    let mut r = rig("");
    let req = MapType::HttpRequestHeaders;
    r.host.set_header(req, ":method", "POST");
    r.host.set_header(req, ":path", "/v1/embeddings");
    r.host.reads.borrow_mut().clear();
    assert_eq!(r.filter.on_http_request_headers(1, false), Action::Continue);
    assert_eq!(*r.host.reads.borrow(), [":method", ":path"]);
    // A JSON POST whose body names no fusion: no clock read either (no
    // lease bookkeeping, no run to log).
    let mut r = rig("");
    r.headers();
    r.host.clock_reads.set(0);
    assert_eq!(r.body(&chat("mock-a")), Action::Continue);
    r.filter.on_http_response_headers(1, false);
    r.filter.on_log();
    assert_eq!(r.host.clock_reads.get(), 0);
    assert!(
        r.host.properties.borrow().is_empty(),
        "no filter state written"
    );
}

/// A GET (its headers end the stream) costs no host call at all, from its
/// headers to its log: the no-op floor's work.
#[test]
fn a_get_makes_no_host_call() {
    let mut r = rig("");
    r.host
        .set_header(MapType::HttpRequestHeaders, ":method", "GET");
    r.host.calls.borrow_mut().clear();
    assert_eq!(r.filter.on_http_request_headers(4, true), Action::Continue);
    assert_eq!(
        r.filter.on_http_response_headers(3, false),
        Action::Continue
    );
    assert_eq!(r.filter.on_http_response_body(200, true), Action::Continue);
    r.filter.on_log();
    assert!(r.filter.on_done());
    assert!(!r.filter.has_state(), "no stream state allocated");
    drop(r.filter);
    assert_eq!(*r.host.calls.borrow(), Vec::<String>::new());
    // A POST elsewhere: the two deciding reads, no state either.
    let mut r = rig("");
    let req = MapType::HttpRequestHeaders;
    r.host.set_header(req, ":method", "POST");
    r.host.set_header(req, ":path", "/v1/embeddings");
    r.host.calls.borrow_mut().clear();
    assert_eq!(r.filter.on_http_request_headers(4, false), Action::Continue);
    assert_eq!(r.filter.on_http_request_body(10, true), Action::Continue);
    r.filter.on_log();
    assert!(!r.filter.has_state());
    assert_eq!(
        *r.host.calls.borrow(),
        ["get_map_value :method", "get_map_value :path"]
    );
}

/// A JSON POST whose body names no fusion costs what the body floor costs (the
/// three eligibility headers, the body read once at its end) and nothing more:
/// no read per chunk, no clock, property, metric or write, whatever its size.
#[test]
fn a_non_fusion_post_reads_its_headers_and_its_body_once() {
    for size in [2048, 65536] {
        let mut r = rig("");
        let filler = "the quick brown fox jumps over the lazy dog ".repeat(size / 44);
        let body = json!({"model": "mock-a", "messages": [{"role": "user", "content": filler}]})
            .to_string()
            .into_bytes();
        r.host.calls.borrow_mut().clear();
        assert_eq!(r.headers(), Action::Pause);
        // The body in 16 KB chunks, each callback reporting what is buffered so far.
        r.host.set_body(BufferType::HttpRequestBody, &body);
        let mut end = 0;
        while end < body.len() {
            end = (end + 16384).min(body.len());
            let last = end == body.len();
            let action = r.filter.on_http_request_body(end, last);
            assert_eq!(
                action,
                if last {
                    Action::Continue
                } else {
                    Action::Pause
                }
            );
        }
        assert_eq!(
            r.filter.on_http_response_headers(3, false),
            Action::Continue
        );
        assert_eq!(r.filter.on_http_response_body(200, true), Action::Continue);
        r.filter.on_log();
        drop(r.filter);
        assert_eq!(
            *r.host.calls.borrow(),
            [
                "get_map_value :method",
                "get_map_value :path",
                "get_map_value content-type",
                "get_buffer HttpRequestBody",
            ],
            "{size} bytes"
        );
    }
}

#[test]
fn a_fusion_request_reads_its_context_once_the_body_asks() {
    let mut r = rig("");
    r.host.reads.borrow_mut().clear();
    r.host
        .set_header(MapType::HttpRequestHeaders, "traceparent", "00-abc-def-01");
    r.host
        .set_header(MapType::HttpRequestHeaders, "baggage", "team=a");
    r.headers();
    assert_eq!(r.host.reads.borrow().len(), 3);
    r.body(&chat("fusion"));
    let reads = r.host.reads.borrow().clone();
    // The request headers (depth, request id, include, auth, trace) in one read.
    for key in ["*", "xds.cluster_name"] {
        assert_eq!(
            reads.iter().filter(|k| *k == key).count(),
            1,
            "{key} read: {reads:?}"
        );
    }
    assert_eq!(reads.len(), 3 + 2 + 5, "{reads:?}");
    for d in r.dispatched() {
        let h: std::collections::BTreeMap<_, _> = d.headers.iter().cloned().collect();
        assert_eq!(
            h.get("traceparent").map(String::as_str),
            Some("00-abc-def-01")
        );
        assert_eq!(h.get("baggage").map(String::as_str), Some("team=a"));
        assert_eq!(h.get("x-request-id").map(String::as_str), Some("req-1"));
    }
}

#[test]
fn a_finished_run_publishes_filter_state_for_access_logs() {
    let mut r = rig("");
    r.alias_turn("The sky is blue.");
    r.filter.on_log();
    let props = r.host.properties.borrow();
    let get = |k: &str| String::from_utf8(props.get(k).cloned().unwrap_or_default()).unwrap();
    assert!(
        get("fusion_run_id").starts_with("fr-"),
        "{}",
        get("fusion_run_id")
    );
    assert_eq!(get("fusion_mode"), "alias");
    assert_eq!(get("fusion_outcome"), "ok");
    assert_eq!(get("fusion_panel"), "ok=3,failed=0,late=0");
    assert!(get("fusion_cost").parse::<f64>().is_ok() || get("fusion_cost") == "null");
    // The durations the shipped stats access logger records, in decimal seconds.
    for key in ["fusion_run_seconds", "fusion_panel_wait_seconds"] {
        let v = get(key);
        assert!(
            v.parse::<f64>().is_ok_and(|s| s >= 0.0)
                && v.split_once('.').is_some_and(|(_, f)| f.len() == 3),
            "{key}={v:?}"
        );
    }
}

#[test]
fn a_refused_filter_state_write_does_not_stop_the_answer() {
    let mut r = rig("");
    r.host.refuse(Op::SetProperty);
    r.alias_turn("fine");
    assert_eq!(r.sent_json().0, 200);
    assert!(r.host.refused.borrow().contains(&Op::SetProperty));
}

#[test]
fn an_inner_call_gets_no_fusion_and_the_response_says_why() {
    let mut r = rig("");
    r.host
        .set_header(MapType::HttpRequestHeaders, "x-fusion-depth", "1");
    r.headers();
    assert_eq!(r.body(&chat("fusion")), Action::Continue);
    assert!(r.dispatched().is_empty());
    r.filter.on_http_response_headers(1, false);
    assert_eq!(
        r.host
            .header(MapType::HttpResponseHeaders, "x-fusion-skipped")
            .as_deref(),
        Some("depth")
    );
    assert_eq!(
        r.host.properties.borrow().get("fusion_skipped").cloned(),
        Some(b"depth".to_vec())
    );
}

#[test]
fn a_fusion_body_without_a_json_content_type_is_told_why() {
    let mut r = rig("");
    let req = MapType::HttpRequestHeaders;
    r.host.set_header(req, ":method", "POST");
    r.host.set_header(req, ":path", "/v1/chat/completions");
    r.host
        .set_header(req, "content-type", "application/x-www-form-urlencoded");
    assert_eq!(r.filter.on_http_request_headers(3, false), Action::Pause);
    assert_eq!(r.body(&chat("fusion")), Action::Continue);
    assert!(r.dispatched().is_empty());
    r.filter.on_http_response_headers(1, false);
    assert_eq!(
        r.host
            .header(MapType::HttpResponseHeaders, "x-fusion-skipped")
            .as_deref(),
        Some("content_type")
    );
    // A plain request with that content type gets no such header.
    let mut r = rig("");
    r.host.set_header(req, ":method", "POST");
    r.host.set_header(req, ":path", "/v1/chat/completions");
    r.host.set_header(req, "content-type", "text/plain");
    r.filter.on_http_request_headers(3, false);
    assert_eq!(r.body(&chat("mock-a")), Action::Continue);
    r.filter.on_http_response_headers(1, false);
    assert_eq!(
        r.host
            .header(MapType::HttpResponseHeaders, "x-fusion-skipped"),
        None
    );
}

#[test]
fn the_log_sets_only_the_filter_state_that_changed_since_the_answer() {
    let mut r = rig("");
    r.alias_turn("The sky is blue.");
    let at_answer = r.host.properties.borrow().clone();
    // From here every filter-state write is refused, and so recorded.
    r.host.refuse(Op::SetProperty);
    r.filter.on_log();
    let set_again = r
        .host
        .refused
        .borrow()
        .iter()
        .filter(|op| **op == Op::SetProperty)
        .count();
    // The run id and the mode cannot change after the answer: never set twice.
    assert!(set_again <= 3, "{set_again} filter-state writes at the log");
    let get = |k: &str| at_answer.get(k).cloned().unwrap_or_default();
    assert!(String::from_utf8(get("fusion_run_id"))
        .unwrap()
        .starts_with("fr-"));
    assert_eq!(get("fusion_mode"), b"alias");
    assert_eq!(get("fusion_outcome"), b"ok");
}
