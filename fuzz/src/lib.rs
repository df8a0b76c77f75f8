//! Shared pieces of the fuzz targets: the configurations a turn runs under, the
//! driver that plays a whole turn from fuzz bytes, and the invariants every
//! command the engine emits must hold. A broken invariant panics, which
//! libFuzzer reports as a crash with the input that caused it.

use fusion_core::config::Config;
use fusion_core::engine::{self, CallResult, Command, LocalReply, RequestInfo, Start};
use fusion_core::wire::Api;
use serde_json::Value;
use std::collections::VecDeque;
use std::rc::Rc;

/// The cluster of the request's own route in every driven turn: the same as the
/// upstreams', so streaming final answers go up the route (the relay runs).
pub const ROUTE_CLUSTER: &str = "mock";

/// One mock behind three upstreams, one per provider API, chosen by model prefix
/// (as tests/test_api_pairs.py), so provider answers of every API get parsed.
pub const MIXED_CONFIG: &str = r#"{
  "aliases": ["fusion", "bitrouter/fusion"],
  "outer_model": "chat/outer",
  "panel": [{"model": "chat/p1"}, {"model": "responses/p2"}, {"model": "messages/p3"}],
  "judge": {"model": "responses/judge"},
  "presets": {"quick": {"panel": [{"model": "chat/q1"}, {"model": "messages/q2"}], "min_panel_answers": 1}},
  "min_panel_answers": 2,
  "panel_grace_ms": 500,
  "prices": {"chat/outer": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}},
  "log": {"runs": true, "include_text": true},
  "limits": {"max_panel": 8, "max_rounds": 4, "tool_timeout_ms": 30000, "turn_timeout_ms": 120000,
             "max_response_bytes": 65536, "on_overload": "pass_through"},
  "upstreams": {
    "chat": {"cluster": "mock", "api": "chat"},
    "responses": {"cluster": "mock", "api": "responses"},
    "messages": {"cluster": "mock", "api": "messages"}
  },
  "routes": [
    {"prefix": "chat/", "strip_prefix": true, "upstream": "chat"},
    {"prefix": "responses/", "strip_prefix": true, "upstream": "responses"},
    {"prefix": "messages/", "strip_prefix": true, "upstream": "messages"},
    {"prefix": "", "upstream": "chat"}
  ]
}"#;

pub fn api_of(selector: u8) -> Api {
    match selector % 3 {
        0 => Api::Chat,
        1 => Api::Responses,
        _ => Api::Messages,
    }
}

/// The embedded default (the mock, Chat upstream) or the mixed configuration.
pub fn config_of(selector: u8) -> Rc<Config> {
    let parsed = if (selector / 3) % 2 == 0 {
        Config::default_mock()
    } else {
        Config::parse(MIXED_CONFIG.as_bytes(), &|_| None)
    };
    match parsed {
        Ok(c) => Rc::new(c),
        Err(e) => panic!("the fuzz configuration itself is invalid: {e}"),
    }
}

/// One of the two base configurations with every `limits.*` setting drawn from
/// `data` (a hash of the whole fuzz input): an edge of its documented range, a
/// small value, or anywhere in it; now and then a value just outside the range,
/// which the configuration must refuse naming that field.
pub fn config_drawn(selector: u8, data: &[u8]) -> Rc<Config> {
    let base = if (selector / 3) % 2 == 0 {
        fusion_core::config::DEFAULT_CONFIG
    } else {
        MIXED_CONFIG
    };
    let mut value: Value = match serde_json::from_str(base) {
        Ok(v) => v,
        Err(e) => panic!("the base configuration is not JSON: {e}"),
    };
    let mut rng = Draw::new(data);
    let mut limits = serde_json::Map::new();
    for r in fusion_core::config::limits::RANGES {
        let Some(key) = r.field.strip_prefix("limits.") else {
            continue;
        };
        // The base panels have 3 members: a smaller cap is a panel error, not a range one.
        let min = if key == "max_panel" { 3 } else { r.min };
        let v = match rng.next() % 8 {
            0 => min,
            1 => r.max,
            2 | 3 => min.saturating_add(rng.next() % 16).min(r.max),
            _ => min + rng.next() % (r.max - min + 1),
        };
        limits.insert(key.into(), v.into());
        if rng.next() % 16 == 0 {
            let outside = if r.min > 0 {
                r.min - 1
            } else {
                r.max.saturating_add(1)
            };
            let mut bad = limits.clone();
            bad.insert(key.into(), outside.into());
            let mut bad_config = value.clone();
            merge_limits(&mut bad_config, bad);
            match Config::parse(bad_config.to_string().as_bytes(), &|_| None) {
                Ok(_) => panic!("{} = {outside} is outside its range, yet accepted", r.field),
                Err(e) => assert_eq!(e.field, r.field, "{e}"),
            }
        }
    }
    merge_limits(&mut value, limits);
    match Config::parse(value.to_string().as_bytes(), &|_| None) {
        Ok(c) => Rc::new(c),
        Err(e) => panic!("limits drawn within their ranges were refused: {e}"),
    }
}

fn merge_limits(config: &mut Value, drawn: serde_json::Map<String, Value>) {
    let Some(obj) = config.as_object_mut() else {
        return;
    };
    let limits = obj
        .entry("limits")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(l) = limits.as_object_mut() {
        l.extend(drawn);
    }
}

/// splitmix64 seeded with FNV-1a of the input: every mutation of the input
/// draws other limits.
struct Draw(u64);

impl Draw {
    fn new(data: &[u8]) -> Draw {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        Draw(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Separates the request body from the call results in an `engine_turn` input.
pub const SEP: &[u8] = b"\n%%\n";

pub fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

/// One scripted callout answer: `"<status> <advance_ms> <pick> [o]\n<body>"`. A status
/// that is not a number is a transport failure (no headers); `advance_ms` moves
/// the clock before the answer; `pick` chooses which pending call it answers.
pub struct Scripted<'a> {
    pub status: Option<u16>,
    /// A 4th field `o`: the answer was larger than `limits.max_response_bytes`.
    pub oversize: bool,
    pub advance_ms: u64,
    pub pick: usize,
    pub body: &'a [u8],
}

pub fn scripted(chunk: &[u8]) -> Scripted<'_> {
    let (head, body) = match chunk.iter().position(|b| *b == b'\n') {
        Some(i) => (&chunk[..i], &chunk[i + 1..]),
        None => (chunk, &chunk[chunk.len()..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut nums = head.split_whitespace();
    let status = nums.next().and_then(|s| s.parse::<u16>().ok());
    let advance_ms = nums
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        .min(1 << 40);
    let pick = nums
        .next()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let oversize = nums.next() == Some("o");
    Scripted {
        status,
        oversize,
        advance_ms,
        pick,
        body,
    }
}

/// The outcome of a driven turn, for targets that want to look further.
#[derive(Debug, Default)]
pub struct Outcome {
    pub started: bool,
    pub dispatched: usize,
    pub timers: usize,
    pub replied: Option<u16>,
    pub resumed: bool,
}

/// Starts a turn on `body` and answers its callouts from `results` (then with
/// transport failures once they run out), firing its timers when the clock
/// passes them, until the turn ends. Checks that every command is well formed
/// and that a turn whose calls are all answered always ends: exactly one
/// reply or resume, never a hang.
pub fn drive(
    config: &Rc<Config>,
    api: Api,
    depth: u32,
    at_capacity: bool,
    body: &[u8],
    results: &[&[u8]],
) -> Outcome {
    let info = RequestInfo {
        request_id: "fuzz-run".into(),
        depth,
        client_auth: vec![("authorization".into(), "Bearer client".into())],
        route_cluster: Some(ROUTE_CLUSTER.into()),
        ..RequestInfo::default()
    };
    let mut now: u64 = 1_700_000_000_000;
    let mut out = Outcome::default();
    let (mut turn, commands) = match engine::start(config, api, info, body, now, at_capacity) {
        Start::PassThrough => return out,
        Start::Rewrite(b, _) | Start::Clean(b) => {
            assert!(
                serde_json::from_slice::<Value>(&b).is_ok(),
                "rewritten body is not JSON"
            );
            return out;
        }
        Start::Reply(reply) | Start::Overloaded(reply) => {
            check_reply(api, &reply);
            assert!(
                (400..500).contains(&reply.status),
                "a refused request gets a 4xx, got {}",
                reply.status
            );
            check_error_shape(api, &reply);
            out.replied = Some(reply.status);
            return out;
        }
        Start::Run(turn, commands) => (turn, commands),
    };
    out.started = true;
    let mut pending: Vec<u32> = Vec::new();
    let mut wake: Option<u64> = None;
    let mut queue: VecDeque<Command> = commands.into();
    let mut scripted_results = results.iter();
    let mut relay_chunks: Vec<&[u8]> = Vec::new();
    let mut steps = 0usize;
    let mut sent_bytes = 0u64;
    loop {
        while let Some(cmd) = queue.pop_front() {
            assert!(
                out.replied.is_none() && !out.resumed,
                "a command after the turn's final reply/resume: {cmd:?}"
            );
            match cmd {
                Command::Dispatch(c) => {
                    assert!(
                        c.timeout_ms > 0,
                        "callout without a timeout (0 means none to Envoy)"
                    );
                    assert!(!c.cluster.is_empty(), "callout without a cluster");
                    for h in [":method", ":path", ":authority"] {
                        assert!(c.headers.iter().any(|(k, _)| k == h), "callout without {h}");
                    }
                    assert!(
                        serde_json::from_slice::<Value>(&c.body).is_ok(),
                        "callout body is not JSON"
                    );
                    assert!(
                        !pending.contains(&c.id),
                        "callout id {} reused while pending",
                        c.id
                    );
                    pending.push(c.id);
                    out.dispatched += 1;
                    sent_bytes += c.body.len() as u64;
                    let l = &config.limits;
                    assert!(
                        out.dispatched as u64 <= u64::from(l.max_upstream_calls)
                            && sent_bytes <= l.max_upstream_bytes,
                        "a turn sent more than limits.max_upstream_calls/bytes"
                    );
                    assert!(
                        c.timeout_ms <= l.turn_timeout_ms,
                        "a callout timeout past the turn's budget"
                    );
                }
                Command::Reply(reply) => {
                    check_reply(api, &reply);
                    out.replied = Some(reply.status);
                }
                Command::Resume(r) => {
                    assert!(
                        serde_json::from_slice::<Value>(&r.body).is_ok(),
                        "resumed body is not JSON"
                    );
                    out.resumed = true;
                }
                Command::WakeAt(t) => {
                    assert!(t >= now, "a timer in the past: {t} < {now}");
                    out.timers += 1;
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            }
        }
        if out.replied.is_some() || out.resumed || (pending.is_empty() && wake.is_none()) {
            break;
        }
        steps += 1;
        assert!(
            steps < 10_000,
            "the turn never ends: {} calls pending",
            pending.len()
        );
        let next = if pending.is_empty() {
            None
        } else {
            scripted_results.next().map(|chunk| scripted(chunk))
        };
        let advance = match &next {
            Some(s) => s.advance_ms,
            None => 1_000,
        };
        let at = now.saturating_add(advance);
        // A timer due before the next answer fires first, at its own time.
        if let Some(t) = wake.filter(|t| *t <= at || pending.is_empty()) {
            wake = None;
            now = now.max(t);
            queue.extend(turn.on_timer(now));
            if next.is_none() && !pending.is_empty() {
                continue;
            }
        }
        now = now.max(at);
        if pending.is_empty() {
            continue;
        }
        let (result, pick) = match next {
            Some(s) => {
                relay_chunks.push(s.body);
                let r = CallResult {
                    status: s.status,
                    body: s.body.to_vec(),
                    oversize: s.oversize,
                };
                (r, s.pick)
            }
            None => (CallResult::default(), 0),
        };
        let id = pending.remove(pick % pending.len());
        queue.extend(turn.on_call_result(id, result, now));
    }
    assert!(
        out.replied.is_some() || out.resumed,
        "every call answered, yet no reply: the client would hang"
    );
    assert!(turn.is_done(), "the turn replied but is not done");
    // Late answers (a client that left, a callout that raced the end) and
    // late timers are ignored.
    for id in pending.drain(..).chain([u32::MAX]) {
        assert!(
            turn.on_call_result(id, CallResult::default(), now)
                .is_empty(),
            "a late answer produced commands"
        );
    }
    assert!(
        turn.on_timer(now.saturating_add(1 << 30)).is_empty(),
        "a late timer produced commands"
    );
    if out.resumed {
        assert!(turn.relays_response());
        // The route's stream: the scripted bodies again, as response chunks.
        let n = relay_chunks.len();
        for (i, chunk) in relay_chunks.iter().enumerate() {
            let _ = turn.on_response_body(chunk, i + 1 == n, now);
        }
        let _ = turn.on_response_body(b"", true, now);
        let _ = turn.relay_incomplete();
    }
    let report = turn.report();
    assert!(report.is_object(), "the fusion report is not an object");
    let _ = turn.debug_headers();
    let _ = turn.stats(false);
    let line = turn.log_line(true);
    assert!(line.is_object(), "the run's log line is not an object");
    // The log line kept from the answer is the one built afresh.
    assert_eq!(turn.take_log_line(true), line, "the kept log line differs");
    out
}

/// A local reply is a real HTTP status with a body the client can read.
pub fn check_reply(api: Api, reply: &LocalReply) {
    assert!(
        (200..600).contains(&reply.status),
        "status {}",
        reply.status
    );
    let sse = reply
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"));
    if sse {
        assert!(
            std::str::from_utf8(&reply.body).is_ok(),
            "SSE reply is not UTF-8"
        );
    } else {
        let v: Value = match serde_json::from_slice(&reply.body) {
            Ok(v) => v,
            Err(e) => panic!("{api:?} reply body is not JSON: {e}"),
        };
        if reply.status >= 400 {
            check_error_shape(api, reply);
        } else {
            assert!(v.is_object(), "a 2xx reply is not a JSON object");
        }
    }
}

/// OpenAI `{"error":{"message","type","param","code"}}`; Anthropic
/// `{"type":"error","error":{"type","message"}}`.
pub fn check_error_shape(api: Api, reply: &LocalReply) {
    let Ok(v) = serde_json::from_slice::<Value>(&reply.body) else {
        panic!("error body is not JSON");
    };
    let err = &v["error"];
    match api {
        Api::Messages => {
            assert_eq!(v["type"], "error", "Anthropic error without type: error");
            assert!(err["type"].is_string() && err["message"].is_string(), "{v}");
        }
        Api::Chat | Api::Responses => {
            assert!(err["message"].is_string() && err["type"].is_string(), "{v}");
            let obj = err.as_object().map(|o| o.len()).unwrap_or(0);
            assert!(
                err.get("param").is_some() && err.get("code").is_some() && obj == 4,
                "OpenAI error needs message, type, param, code: {v}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many drawn configurations: each parses, refuses its out-of-range twin,
    /// and serves a fusion request to the end with every callout failing.
    #[test]
    fn drawn_limits_hold() {
        let body = br#"{"model": "fusion", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 99999999}"#;
        for i in 0u32..3000 {
            let sel = (i % 6) as u8;
            let config = config_drawn(sel, &i.to_le_bytes());
            drive(&config, api_of(sel), 0, false, body, &[]);
        }
    }
}
