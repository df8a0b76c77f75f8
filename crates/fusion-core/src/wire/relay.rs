//! Relaying the provider's own stream to the client when the final answer goes
//! up the request's route: events pass through as they arrive; the ones that
//! carry usage get the turn's earlier usage added, and the closing event gets
//! the `fusion` report.

use super::{usage, Api};
use crate::wire::neutral::{Price, Usage};
use memchr::memmem::Finder;
use serde_json::{json, Map, Value};

/// What completes the `fusion` report once the relayed call's usage is known:
/// its cost, and the run's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FinalCall {
    /// Cost of the turn's earlier calls; `None` when one of them has no price.
    pub prior_cost: Option<f64>,
    /// Price of the relayed call's model.
    pub price: Option<Price>,
    /// Chat: the client asked for the usage chunk (`stream_options.include_usage`).
    pub client_wants_usage: bool,
}

#[derive(Debug)]
pub struct Relay {
    api: Api,
    /// Usage of every call of the turn before the relayed one.
    prior: Usage,
    fusion: Value,
    /// Bytes of an event not yet complete.
    pending: Vec<u8>,
    /// Where in `pending` the search for the next event end resumes: bytes
    /// before it hold no separator, so no byte is searched twice.
    scan_from: usize,
    /// Bytes examined in the search for event ends (the linearity guard).
    pub(crate) scanned: usize,
    /// Usage the provider reported for the relayed call.
    pub relayed_usage: Usage,
    /// Messages: the running usage counts of the relayed stream so far.
    running: Map<String, Value>,
    /// The stream reached its end event.
    pub completed: bool,
    final_call: FinalCall,
    /// Chat: the finishing chunk, held until the usage chunk after it arrives
    /// so that it carries the complete report.
    held: Option<Value>,
    /// What marks an event that may need a change, searchers built once per
    /// relay (building one costs more than searching a short event).
    markers: Vec<Finder<'static>>,
    finish_reason: Finder<'static>,
}

impl Relay {
    pub fn new(api: Api, prior: Usage, fusion: Value, final_call: FinalCall) -> Relay {
        Relay {
            api,
            prior,
            fusion,
            pending: Vec::new(),
            scan_from: 0,
            scanned: 0,
            relayed_usage: Usage::default(),
            running: Map::new(),
            completed: false,
            final_call,
            held: None,
            markers: markers(api),
            finish_reason: Finder::new(FINISH_REASON).into_owned(),
        }
    }

    /// Rewrites one chunk of the stream; returns the bytes to send on now.
    /// Incomplete events wait for the next chunk; at `end` everything goes out.
    pub fn chunk(&mut self, data: &[u8], end: bool) -> Vec<u8> {
        // Linear in the bytes seen: the buffer is searched from where the last
        // search stopped and drained once per chunk, never once per event.
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let mut out = Vec::with_capacity(buf.len() + 64);
        let mut start = 0;
        let mut from = self.scan_from;
        while let Some((at, sep)) = event_end(&buf, from, &mut self.scanned) {
            let event = buf.get(start..at).unwrap_or_default();
            // Most events are content deltas that need no change: they go out
            // as they came, unparsed and uncopied but for `out`.
            if !self.may_rewrite(event) {
                out.extend_from_slice(buf.get(start..at + sep).unwrap_or_default());
            } else {
                match std::str::from_utf8(event) {
                    Ok(text) => {
                        if let Some(rewritten) = self.event(text) {
                            out.extend_from_slice(rewritten.as_bytes());
                            out.extend_from_slice(buf.get(at..at + sep).unwrap_or_default());
                        }
                    }
                    Err(_) => out.extend_from_slice(buf.get(start..at + sep).unwrap_or_default()),
                }
            }
            start = at + sep;
            from = start;
        }
        buf.drain(..start);
        // A separator may straddle this chunk and the next: its first bytes are
        // searched again, at most three per chunk.
        self.scan_from = buf.len().saturating_sub(3);
        self.pending = buf;
        if end {
            // A finishing chunk still held (no usage chunk came): send it now.
            if let Some(mut held) = self.held.take() {
                self.add_fusion(&mut held);
                out.extend_from_slice(format!("data: {}\n\n", crate::text::json(&held)).as_bytes());
            }
            out.append(&mut self.pending);
            self.scan_from = 0;
        }
        out
    }

    /// Whether an event may need a change (usage, the finishing chunk, the
    /// end event, `[DONE]`), read on its raw bytes without parsing. Never
    /// `false` for an event that needs one: every marker is looked for as bare
    /// bytes, so a JSON escape (`\u`) anywhere sends the event to the parser.
    fn may_rewrite(&self, event: &[u8]) -> bool {
        self.markers.iter().any(|m| m.find(event).is_some())
            || (self.api == Api::Chat && self.finish_reason_set(event))
    }

    /// Whether some `finish_reason` in a Chat chunk's raw bytes holds anything
    /// but `null` (every delta chunk carries `"finish_reason":null`).
    fn finish_reason_set(&self, event: &[u8]) -> bool {
        self.finish_reason.find_iter(event).any(|at| {
            let rest = event.get(at + FINISH_REASON.len()..).unwrap_or_default();
            let value = rest
                .iter()
                .position(|&b| !(b == b'"' || b == b':' || b.is_ascii_whitespace()))
                .and_then(|i| rest.get(i..))
                .unwrap_or_default();
            !value.starts_with(b"null")
        })
    }

    /// One event rewritten; `None` drops it (with its separator).
    fn event(&mut self, text: &str) -> Option<String> {
        let mut name = None;
        let mut data = String::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(data.as_bytes()) else {
            if data.trim() == "[DONE]" {
                self.completed = true;
                // No usage chunk came: the report goes on the finishing chunk all the same.
                if let Some(mut held) = self.held.take() {
                    self.add_fusion(&mut held);
                    return Some(format!("data: {}\n\n{text}", crate::text::json(&held)));
                }
            }
            return Some(text.to_string());
        };
        if self.api == Api::Chat {
            return self.chat_event(value, text);
        }
        if !self.rewrite(&mut value) {
            return Some(text.to_string());
        }
        Some(match name {
            Some(n) => format!("event: {n}\ndata: {}", crate::text::json(&value)),
            None => format!("data: {}", crate::text::json(&value)),
        })
    }

    /// Chat streams end with the finishing chunk and then (when asked for) a
    /// usage chunk with no choices. The finishing chunk is held until the
    /// usage is known, then sent with the report; the usage chunk goes on
    /// only when the client asked for it.
    fn chat_event(&mut self, mut v: Value, text: &str) -> Option<String> {
        if let Some(u) = v.get_mut("usage").filter(|u| u.is_object()) {
            self.relayed_usage = usage::read(Api::Chat, u);
            usage::rewrite(Api::Chat, u, &self.total());
            let held = self.held.take().map(|mut h| {
                self.add_fusion(&mut h);
                format!("data: {}\n\n", crate::text::json(&h))
            });
            let own = self
                .final_call
                .client_wants_usage
                .then(|| format!("data: {}", crate::text::json(&v)));
            return match (held, own) {
                (Some(h), Some(o)) => Some(format!("{h}{o}")),
                (Some(h), None) => Some(h.trim_end().to_string()),
                (None, Some(o)) => Some(o),
                (None, None) => None,
            };
        }
        let finishing = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .and_then(|c| c.get("finish_reason"))
            .is_some_and(|f| !f.is_null());
        if finishing {
            self.held = Some(v);
            return None;
        }
        Some(text.to_string())
    }

    /// Adjusts one event's JSON; false when it needs no change.
    fn rewrite(&mut self, v: &mut Value) -> bool {
        match self.api {
            // Chat events go through `chat_event`.
            Api::Chat => false,
            Api::Responses => {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
                if !matches!(
                    kind,
                    "response.completed" | "response.incomplete" | "response.failed"
                ) {
                    return false;
                }
                self.completed = true;
                let Some(resp) = v.get_mut("response") else {
                    return false;
                };
                if let Some(u) = resp.get_mut("usage").filter(|u| u.is_object()) {
                    self.relayed_usage = usage::read(Api::Responses, u);
                    usage::rewrite(Api::Responses, u, &self.total());
                }
                self.add_fusion(resp);
                true
            }
            Api::Messages => match v.get("type").and_then(Value::as_str) {
                // Counts are running totals of the relayed call: the start's
                // input side gets the turn's earlier input added, its output
                // (the call's first tokens) stays; the delta carries the turn's totals.
                Some("message_start") => {
                    let Some(u) = v
                        .get_mut("message")
                        .and_then(|m| m.get_mut("usage"))
                        .filter(|u| u.is_object())
                    else {
                        return false;
                    };
                    usage::fold_running(&mut self.running, u);
                    self.relayed_usage =
                        usage::read(Api::Messages, &Value::Object(self.running.clone()));
                    let shown = Usage {
                        output_tokens: self.relayed_usage.output_tokens,
                        reasoning_tokens: self.relayed_usage.reasoning_tokens,
                        ..self.total()
                    };
                    usage::rewrite(Api::Messages, u, &shown);
                    true
                }
                Some("message_delta") => {
                    if let Some(u) = v.get_mut("usage").filter(|u| u.is_object()) {
                        usage::fold_running(&mut self.running, u);
                        self.relayed_usage =
                            usage::read(Api::Messages, &Value::Object(self.running.clone()));
                        usage::rewrite(Api::Messages, u, &self.total());
                    }
                    self.add_fusion(v);
                    true
                }
                Some("message_stop") => {
                    self.completed = true;
                    false
                }
                _ => false,
            },
        }
    }

    fn total(&self) -> Usage {
        let mut t = self.prior;
        t.add(self.relayed_usage);
        t
    }

    /// Adds the report, completed with the relayed call's usage and cost.
    fn add_fusion(&self, v: &mut Value) {
        let mut fusion = self.fusion.clone();
        let call = self.relayed_usage;
        // The ledger's rule (engine::call_cost): zero usage costs 0.
        let call_cost = Price::call_cost(self.final_call.price, &call);
        if let Some(f) = fusion.as_object_mut() {
            f.insert("usage".into(), self.total().report_json());
            let cost = match (self.final_call.prior_cost, call_cost) {
                (Some(a), Some(b)) => json!(super::neutral::round_cost(a + b)),
                _ => Value::Null,
            };
            f.insert("cost".into(), cost);
            if let Some(last) = f
                .get_mut("final")
                .and_then(Value::as_array_mut)
                .and_then(|a| a.last_mut())
                .and_then(Value::as_object_mut)
            {
                last.insert("status".into(), json!("ok"));
                last.insert("usage".into(), call.report_json());
                last.insert("cost".into(), json!(call_cost));
                if call_cost.is_none() {
                    let model = last.get("model").cloned().unwrap_or(Value::Null);
                    if let Some(list) = f.get_mut("unpriced_models").and_then(Value::as_array_mut) {
                        if !list.contains(&model) {
                            list.push(model);
                        }
                    }
                }
            }
        }
        if let Some(obj) = v.as_object_mut() {
            obj.insert("fusion".into(), fusion);
        }
    }
}

const FINISH_REASON: &[u8] = b"finish_reason";

/// The bytes whose presence sends an event to the parser: a JSON escape (it
/// could spell any of the others), `[DONE]`, and what the API's events that
/// carry usage or end the stream hold (Chat: `usage`; its finishing chunk is
/// found by [`Relay::finish_reason_set`]).
fn markers(api: Api) -> Vec<Finder<'static>> {
    let own: &[&[u8]] = match api {
        Api::Chat => &[b"usage"],
        Api::Responses => &[
            b"response.completed",
            b"response.incomplete",
            b"response.failed",
        ],
        Api::Messages => &[b"message_start", b"message_delta", b"message_stop"],
    };
    [b"\\u".as_slice(), b"[DONE]"]
        .iter()
        .chain(own)
        .map(|m| Finder::new(m).into_owned())
        .collect()
}

/// Where the first event end (`\n\n` or `\r\n\r\n`) at or after `from` is,
/// and the separator's length; counts the bytes it examines in `scanned`.
fn event_end(buf: &[u8], from: usize, scanned: &mut usize) -> Option<(usize, usize)> {
    let rest = buf.get(from..)?;
    for (i, &b) in rest.iter().enumerate() {
        *scanned += 1;
        if b != b'\n' {
            continue;
        }
        let at = from + i;
        if buf.get(at + 1) == Some(&b'\n') {
            return Some((at, 2));
        }
        // `\r\n\r\n`: this `\n` is its second byte.
        if at >= 1
            && buf.get(at - 1) == Some(&b'\r')
            && buf.get(at + 1..at + 3) == Some(b"\r\n".as_slice())
        {
            return Some((at - 1, 4));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn prior() -> Usage {
        Usage {
            input_tokens: 100,
            output_tokens: 10,
            cached_input_tokens: 50,
            cache_write_tokens: 2,
            reasoning_tokens: 4,
        }
    }

    /// The JSON of each event's data, `[DONE]` left out.
    fn data(out: &[u8]) -> Vec<Value> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_slice(d.as_bytes()).ok())
            .collect()
    }

    #[test]
    fn chat_usage_is_summed_and_events_split_across_chunks_survive() {
        let wants = FinalCall {
            client_wants_usage: true,
            ..FinalCall::default()
        };
        let mut r = Relay::new(Api::Chat, prior(), json!({"run_id": "x"}), wants);
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":3},\"completion_tokens_details\":{\"reasoning_tokens\":1}}}\n\ndata: [DONE]\n\n";
        let (a, b) = stream.split_at(30);
        let mut out = r.chunk(a.as_bytes(), false);
        assert!(out.is_empty(), "half an event waits");
        out.extend(r.chunk(b.as_bytes(), true));
        let events = data(&out);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}"),
            "untouched events pass as they are"
        );
        assert_eq!(
            events[2]["usage"],
            json!({"prompt_tokens": 105, "completion_tokens": 12, "total_tokens": 117,
                   "prompt_tokens_details": {"cached_tokens": 53, "cache_write_tokens": 2},
                   "completion_tokens_details": {"reasoning_tokens": 5}})
        );
        assert_eq!(events[1]["fusion"]["run_id"], "x");
        assert_eq!(events[1]["fusion"]["usage"]["input_tokens"], 105);
        assert_eq!(events[1]["fusion"]["cost"], Value::Null, "no prices known");
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert!(r.completed);
        assert_eq!(
            r.relayed_usage,
            Usage {
                input_tokens: 5,
                output_tokens: 2,
                cached_input_tokens: 3,
                cache_write_tokens: 0,
                reasoning_tokens: 1,
            }
        );
    }

    #[test]
    fn messages_usage_in_start_and_delta() {
        let mut r = Relay::new(Api::Messages, prior(), json!(1), FinalCall::default());
        // The call's input: 7 uncached + 20 cache reads + 3 cache writes = 30.
        let s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,\"cache_read_input_tokens\":20,\"cache_creation_input_tokens\":3,\"output_tokens\":1}}}\r\n\r\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3,\"output_tokens_details\":{\"thinking_tokens\":2}}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let out = r.chunk(s.as_bytes(), true);
        let events = data(&out);
        // Start: the turn's input so far (130: 70 cache reads, 5 cache writes, 55 the rest),
        // the call's first output token.
        assert_eq!(
            events[0]["message"]["usage"],
            json!({"input_tokens": 55, "cache_read_input_tokens": 70,
                   "cache_creation_input_tokens": 5, "output_tokens": 1})
        );
        assert_eq!(
            events[1]["usage"],
            json!({"input_tokens": 55, "cache_read_input_tokens": 70,
                   "cache_creation_input_tokens": 5, "output_tokens": 13,
                   "output_tokens_details": {"thinking_tokens": 6}})
        );
        assert_eq!(events[1]["fusion"], 1);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("event: message_delta\ndata:"));
        assert!(r.completed);
        assert_eq!(
            r.relayed_usage,
            Usage {
                input_tokens: 30,
                output_tokens: 3,
                cached_input_tokens: 20,
                cache_write_tokens: 3,
                reasoning_tokens: 2,
            }
        );
    }

    #[test]
    fn responses_completed_carries_totals() {
        let mut r = Relay::new(Api::Responses, prior(), json!(true), FinalCall::default());
        let s = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"a\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1,\"input_tokens_details\":{\"cached_tokens\":1},\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":2},\"total_tokens\":3}}}\n\n";
        let events = data(&r.chunk(s.as_bytes(), true));
        assert_eq!(
            events[1]["response"]["usage"],
            json!({"input_tokens": 101,
                   "input_tokens_details": {"cached_tokens": 51, "cache_write_tokens": 2},
                   "output_tokens": 12, "output_tokens_details": {"reasoning_tokens": 6},
                   "total_tokens": 113})
        );
        assert_eq!(events[1]["response"]["fusion"], true);
    }

    #[test]
    fn chat_report_gets_the_final_cost_and_the_unasked_usage_chunk_is_dropped() {
        let price = Price {
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
            cached_input_per_mtok: None,
        };
        let call = FinalCall {
            prior_cost: Some(0.5),
            price: Some(price),
            client_wants_usage: false,
        };
        let report = json!({"final": [{"model": "m", "status": "pending"}], "unpriced_models": []});
        let mut r = Relay::new(Api::Chat, prior(), report, call);
        let stream = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000000,\"completion_tokens\":500000}}\n\ndata: [DONE]\n\n";
        let out = r.chunk(stream.as_bytes(), true);
        let events = data(&out);
        assert_eq!(
            events.len(),
            1,
            "the usage chunk the client did not ask for is dropped"
        );
        let fusion = &events[0]["fusion"];
        assert_eq!(fusion["cost"], 2.5);
        assert_eq!(fusion["final"][0]["status"], "ok");
        assert_eq!(fusion["final"][0]["cost"], 2.0);
        assert_eq!(fusion["usage"]["output_tokens"], 500_010);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("}\n\ndata: [DONE]\n\n"));
    }

    #[test]
    fn an_unpriced_call_with_no_usage_costs_zero_as_in_the_ledger() {
        let call = FinalCall {
            prior_cost: Some(0.5),
            price: None,
            client_wants_usage: false,
        };
        let report = json!({"final": [{"model": "m", "status": "pending"}], "unpriced_models": []});
        let mut r = Relay::new(Api::Chat, prior(), report, call);
        let stream =
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let events = data(&r.chunk(stream.as_bytes(), true));
        let fusion = &events[0]["fusion"];
        assert_eq!(fusion["final"][0]["cost"], 0.0);
        assert_eq!(fusion["cost"], 0.5);
        assert_eq!(fusion["unpriced_models"], json!([]));
    }

    #[test]
    fn events_read_unparsed_still_find_spaced_and_escaped_markers() {
        let mut r = Relay::new(
            Api::Chat,
            prior(),
            json!({"run_id": "x"}),
            FinalCall::default(),
        );
        // A finishing chunk with spaces around the colon, a usage key spelled
        // with an escape: both are still read and rewritten.
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"finish_reason null\"},\"finish_reason\" : null}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\" :  \"stop\"}]}\n\n\
data: {\"choices\":[],\"\\u0075sage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]\n\n";
        let out = r.chunk(stream.as_bytes(), true);
        let events = data(&out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("data: {\"choices\":[{\"delta\":{\"content\":\"finish_reason null\"},\"finish_reason\" : null}]}\n\n"),
            "a delta passes byte for byte: {text}"
        );
        assert_eq!(events.len(), 2, "the usage chunk was not asked for: {text}");
        assert_eq!(events[1]["fusion"]["usage"]["input_tokens"], 105);
        assert_eq!(r.relayed_usage.output_tokens, 2);
        assert!(r.completed);
    }

    #[test]
    fn messages_content_deltas_pass_byte_for_byte() {
        let mut r = Relay::new(
            Api::Messages,
            prior(),
            json!({"run_id": "x"}),
            FinalCall::default(),
        );
        let delta = "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"usage\"}}\n\n";
        let out = r.chunk(delta.as_bytes(), false);
        assert_eq!(String::from_utf8(out).unwrap(), delta);
    }

    #[test]
    fn garbage_passes_through() {
        let mut r = Relay::new(Api::Chat, prior(), json!(null), FinalCall::default());
        assert_eq!(
            r.chunk(b"\xff\xfe\n\nnot sse", true),
            b"\xff\xfe\n\nnot sse"
        );
    }

    /// A long Chat stream: `n` content chunks, a usage chunk and `[DONE]`.
    fn long_chat_stream(n: usize) -> Vec<u8> {
        let mut s = String::new();
        let filler = "lorem ipsum ".repeat(50);
        for i in 0..n {
            s.push_str(&format!(
                "data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"piece {i}: {filler}\"}},\"finish_reason\":null}}]}}\n\n"
            ));
            if i % 7 == 0 {
                s.push_str(": keep-alive\r\n\r\n");
            }
        }
        s.push_str("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        s.push_str("data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n");
        s.push_str("data: [DONE]\n\n");
        s.into_bytes()
    }

    fn relay_in_chunks(stream: &[u8], size: usize) -> (Vec<u8>, usize) {
        let mut r = Relay::new(
            Api::Chat,
            prior(),
            json!({"mode": "x"}),
            FinalCall::default(),
        );
        let mut out = Vec::new();
        let mut pieces = stream.chunks(size).peekable();
        while let Some(piece) = pieces.next() {
            out.extend(r.chunk(piece, pieces.peek().is_none()));
        }
        (out, r.scanned)
    }

    #[test]
    fn a_long_stream_relays_alike_in_one_chunk_and_in_small_ones_in_linear_work() {
        let stream = long_chat_stream(15_000);
        assert!(stream.len() > 10_000_000, "{}", stream.len());
        let (whole, scanned_whole) = relay_in_chunks(&stream, stream.len());
        let (split, scanned_split) = relay_in_chunks(&stream, 16 * 1024);
        assert_eq!(whole.len(), split.len());
        assert!(
            whole == split,
            "one chunk and 16 KiB chunks give different output"
        );
        let events = data(&whole);
        // The content chunks and the finishing chunk (which took the usage
        // chunk's report: the client did not ask for usage).
        assert_eq!(events.len(), 15_001);
        assert_eq!(
            events.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
        // Every byte is searched about once, whatever the chunking.
        assert!(scanned_whole <= 2 * stream.len(), "{scanned_whole}");
        assert!(scanned_split <= 2 * stream.len(), "{scanned_split}");
    }

    #[test]
    fn separators_split_across_chunks_are_found() {
        let stream = b"data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        let (whole, _) = relay_in_chunks(stream, stream.len());
        for size in 1..8 {
            assert_eq!(relay_in_chunks(stream, size).0, whole, "chunks of {size}");
        }
        assert_eq!(whole, stream.to_vec());
    }
}
