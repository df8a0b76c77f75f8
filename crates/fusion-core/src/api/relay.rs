//! Relaying the provider's own stream to the client when the final answer goes
//! up the request's route: events pass through as they arrive; the ones that
//! carry usage get the turn's earlier usage added, and the closing event gets
//! the `fusion` report.

use super::Api;
use crate::conversation::Usage;
use serde_json::{json, Value};

#[derive(Debug)]
pub struct Relay {
    api: Api,
    /// Usage of every call of the turn before the relayed one.
    prior: Usage,
    fusion: Value,
    /// Bytes of an event not yet complete.
    pending: Vec<u8>,
    /// Usage the provider reported for the relayed call.
    pub relayed_usage: Usage,
    /// The stream reached its end event.
    pub completed: bool,
}

impl Relay {
    pub fn new(api: Api, prior: Usage, fusion: Value) -> Relay {
        Relay {
            api,
            prior,
            fusion,
            pending: Vec::new(),
            relayed_usage: Usage::default(),
            completed: false,
        }
    }

    /// Rewrites one chunk of the stream; returns the bytes to send on now.
    /// Incomplete events wait for the next chunk; at `end` everything goes out.
    pub fn chunk(&mut self, data: &[u8], end: bool) -> Vec<u8> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len() + 64);
        while let Some((len, sep)) = event_end(&self.pending) {
            let rest = self.pending.split_off(len + sep);
            let event = std::mem::replace(&mut self.pending, rest);
            match event.get(..len).and_then(|e| std::str::from_utf8(e).ok()) {
                Some(text) => {
                    let rewritten = self.event(text);
                    out.extend_from_slice(rewritten.as_bytes());
                    out.extend_from_slice(event.get(len..).unwrap_or_default());
                }
                None => out.extend_from_slice(&event),
            }
        }
        if end {
            out.append(&mut self.pending);
        }
        out
    }

    fn event(&mut self, text: &str) -> String {
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
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            if data.trim() == "[DONE]" {
                self.completed = true;
            }
            return text.to_string();
        };
        if !self.rewrite(&mut value) {
            return text.to_string();
        }
        match name {
            Some(n) => format!("event: {n}\ndata: {value}"),
            None => format!("data: {value}"),
        }
    }

    /// Adjusts one event's JSON; false when it needs no change.
    fn rewrite(&mut self, v: &mut Value) -> bool {
        match self.api {
            Api::Chat => {
                let mut changed = false;
                if let Some(u) = v.get_mut("usage").filter(|u| u.is_object()) {
                    self.relayed_usage = Usage {
                        input_tokens: u64_at(u, "prompt_tokens"),
                        output_tokens: u64_at(u, "completion_tokens"),
                    };
                    let total = self.total();
                    *u = json!({"prompt_tokens": total.input_tokens,
                                "completion_tokens": total.output_tokens,
                                "total_tokens": total.total()});
                    changed = true;
                }
                let finishing = v
                    .get("choices")
                    .and_then(Value::as_array)
                    .and_then(|c| c.first())
                    .and_then(|c| c.get("finish_reason"))
                    .is_some_and(|f| !f.is_null());
                if finishing {
                    self.add_fusion(v);
                    changed = true;
                }
                changed
            }
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
                    self.relayed_usage = Usage {
                        input_tokens: u64_at(u, "input_tokens"),
                        output_tokens: u64_at(u, "output_tokens"),
                    };
                    let total = self.total();
                    if let Some(obj) = u.as_object_mut() {
                        obj.insert("input_tokens".into(), json!(total.input_tokens));
                        obj.insert("output_tokens".into(), json!(total.output_tokens));
                        obj.insert("total_tokens".into(), json!(total.total()));
                    }
                }
                self.add_fusion(resp);
                true
            }
            Api::Messages => match v.get("type").and_then(Value::as_str) {
                Some("message_start") => {
                    let Some(u) = v.get_mut("message").and_then(|m| m.get_mut("usage")) else {
                        return false;
                    };
                    self.relayed_usage.input_tokens = super::messages::input_tokens_of(u);
                    let prior = self.prior;
                    if let Some(obj) = u.as_object_mut() {
                        let input = u64_of(obj.get("input_tokens")) + prior.input_tokens;
                        obj.insert("input_tokens".into(), json!(input));
                    }
                    true
                }
                Some("message_delta") => {
                    if let Some(obj) = v.get_mut("usage").and_then(Value::as_object_mut) {
                        self.relayed_usage.output_tokens = u64_of(obj.get("output_tokens"));
                        let total = self.total();
                        obj.insert("output_tokens".into(), json!(total.output_tokens));
                        if obj.contains_key("input_tokens") {
                            obj.insert("input_tokens".into(), json!(total.input_tokens));
                        }
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

    fn add_fusion(&self, v: &mut Value) {
        if let Some(obj) = v.as_object_mut() {
            obj.insert("fusion".into(), self.fusion.clone());
        }
    }
}

fn u64_at(v: &Value, key: &str) -> u64 {
    u64_of(v.get(key))
}

fn u64_of(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// Length of the first complete event and of its blank-line separator.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn prior() -> Usage {
        Usage {
            input_tokens: 100,
            output_tokens: 10,
        }
    }

    #[test]
    fn chat_usage_is_summed_and_events_split_across_chunks_survive() {
        let mut r = Relay::new(Api::Chat, prior(), json!({"run_id": "x"}));
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]\n\n";
        let (a, b) = stream.split_at(30);
        let mut out = r.chunk(a.as_bytes(), false);
        assert!(out.is_empty(), "half an event waits");
        out.extend(r.chunk(b.as_bytes(), true));
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}"),
            "untouched events pass as they are"
        );
        assert!(out.contains("\"prompt_tokens\":105") && out.contains("\"total_tokens\":117"));
        assert!(out.contains("\"fusion\":{\"run_id\":\"x\"}"));
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert!(r.completed);
        assert_eq!(
            r.relayed_usage,
            Usage {
                input_tokens: 5,
                output_tokens: 2
            }
        );
    }

    #[test]
    fn messages_usage_in_start_and_delta() {
        let mut r = Relay::new(Api::Messages, prior(), json!(1));
        let s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\r\n\r\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let out = String::from_utf8(r.chunk(s.as_bytes(), true)).unwrap();
        assert!(out.contains("\"input_tokens\":107"));
        assert!(out.contains("\"output_tokens\":13") && out.contains("\"fusion\":1"));
        assert!(out.contains("event: message_delta\ndata:"));
        assert!(r.completed);
    }

    #[test]
    fn responses_completed_carries_totals() {
        let mut r = Relay::new(Api::Responses, prior(), json!(true));
        let s = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"a\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":2,\"total_tokens\":3}}}\n\n";
        let out = String::from_utf8(r.chunk(s.as_bytes(), true)).unwrap();
        assert!(out.contains("\"input_tokens\":101") && out.contains("\"total_tokens\":113"));
        assert!(out.contains("\"fusion\":true"));
    }

    #[test]
    fn garbage_passes_through() {
        let mut r = Relay::new(Api::Chat, prior(), json!(null));
        assert_eq!(
            r.chunk(b"\xff\xfe\n\nnot sse", true),
            b"\xff\xfe\n\nnot sse"
        );
    }
}
