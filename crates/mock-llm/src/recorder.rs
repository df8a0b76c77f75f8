//! The call log behind `GET /__mock/calls` and `POST /__mock/reset`.

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Milliseconds since the Unix epoch, as a float.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// One logged call, as first seen.
pub struct NewCall<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub api: &'a str,
    pub model: Option<&'a str>,
    pub headers: &'a [(String, String)],
    pub body: Value,
    /// The body bytes exactly as received (logged as a lossy UTF-8 string).
    pub raw: &'a [u8],
}

/// Identifies a recorded call so its end time can be filled in later, even
/// if the log was reset in between (then the update is dropped).
#[derive(Debug, Clone, Copy)]
pub struct CallId {
    generation: u64,
    index: usize,
    /// 1-based position in the log since the last reset.
    pub seq: u64,
}

#[derive(Default)]
struct State {
    generation: u64,
    calls: Vec<Value>,
    /// Directives added at run time per base model name (`POST /__mock/script`).
    scripts: Map<String, Value>,
}

#[derive(Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler thread must not take the log down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a call whose request was just fully read.
    pub fn record(&self, call: NewCall<'_>) -> CallId {
        let start_ms = now_ms();
        let mut headers = Map::new();
        for (name, value) in call.headers {
            let name = name.to_ascii_lowercase();
            let joined = match headers.get(&name).and_then(Value::as_str) {
                Some(prev) => format!("{prev}, {value}"),
                None => value.clone(),
            };
            headers.insert(name, Value::String(joined));
        }
        let mut st = self.lock();
        let index = st.calls.len();
        let seq = index as u64 + 1;
        st.calls.push(json!({
            "seq": seq,
            "method": call.method,
            "path": call.path,
            "api": call.api,
            "model": call.model,
            "headers": headers,
            "body": call.body,
            "raw": String::from_utf8_lossy(call.raw),
            "start_ms": start_ms,
            "end_ms": null,
        }));
        CallId {
            generation: st.generation,
            index,
            seq,
        }
    }

    /// Marks a call as completely answered (or abandoned).
    pub fn finish(&self, id: CallId) {
        let end_ms = now_ms();
        let mut st = self.lock();
        if st.generation != id.generation {
            return;
        }
        if let Some(Value::Object(call)) = st.calls.get_mut(id.index) {
            call.insert("end_ms".into(), json!(end_ms));
        }
    }

    /// Records the usage the mock reported in its answer to a call, API-neutral:
    /// `input_tokens` (cached included), `output_tokens` (reasoning included),
    /// `cached_tokens`, `reasoning_tokens`.
    pub fn set_usage(&self, id: CallId, usage: Value) {
        self.set(id, "usage", usage);
    }

    /// Sets a field of a logged call (e.g. `rejected`: the 400 body the strict
    /// validation answered).
    pub fn set(&self, id: CallId, key: &str, value: Value) {
        let mut st = self.lock();
        if st.generation != id.generation {
            return;
        }
        if let Some(Value::Object(call)) = st.calls.get_mut(id.index) {
            call.insert(key.into(), value);
        }
    }

    /// Whether the mock issued this response or item id since the last reset:
    /// `resp_mock_N` / `msg_mock_N` of a logged Responses call N, or a function
    /// call item `fc_…` (ids derive from content, not from the log).
    pub fn issued(&self, id: &str) -> bool {
        if id.starts_with("fc_") {
            return true;
        }
        let seq = id
            .strip_prefix("resp_mock_")
            .or_else(|| id.strip_prefix("msg_mock_"))
            .and_then(|n| n.parse::<usize>().ok());
        let Some(seq) = seq else {
            return false;
        };
        let st = self.lock();
        seq.checked_sub(1)
            .and_then(|i| st.calls.get(i))
            .is_some_and(|c| c.get("api").and_then(Value::as_str) == Some("responses"))
    }

    /// Merges `{"<base model>": "dir,dir=val", ...}` into the run-time scripts.
    pub fn add_scripts(&self, scripts: &Value) -> bool {
        let Some(map) = scripts.as_object() else {
            return false;
        };
        let mut st = self.lock();
        for (k, v) in map {
            st.scripts.insert(k.clone(), v.clone());
        }
        true
    }

    /// The model name with any run-time directives for its base appended.
    pub fn scripted_model(&self, model: &str) -> String {
        let base = model.split(':').next().unwrap_or(model);
        let st = self.lock();
        match st.scripts.get(base).and_then(Value::as_str) {
            Some(extra) if !extra.is_empty() => {
                let sep = if model.contains(':') { "," } else { ":" };
                format!("{model}{sep}{extra}")
            }
            _ => model.to_string(),
        }
    }

    /// The log as a JSON array.
    pub fn calls_json(&self) -> String {
        let st = self.lock();
        serde_json::to_string(&st.calls).unwrap_or_else(|_| "[]".into())
    }

    pub fn reset(&self) {
        let mut st = self.lock();
        st.generation += 1;
        st.calls.clear();
        st.scripts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(rec: &Recorder) -> CallId {
        rec.record(NewCall {
            method: "POST",
            path: "/v1/chat/completions",
            api: "chat",
            model: Some("m"),
            headers: &[
                ("Content-Type".into(), "a".into()),
                ("X-A".into(), "1".into()),
                ("x-a".into(), "2".into()),
            ],
            body: json!({"model": "m"}),
            raw: br#"{"model": "m"}"#,
        })
    }

    #[test]
    fn records_finishes_and_resets() {
        let rec = Recorder::default();
        let a = call(&rec);
        let b = call(&rec);
        assert_eq!((a.seq, b.seq), (1, 2));
        rec.finish(a);
        let v: Value = serde_json::from_str(&rec.calls_json()).unwrap();
        assert_eq!(v[0]["headers"]["x-a"], "1, 2");
        assert_eq!(v[0]["headers"]["content-type"], "a");
        assert_eq!(v[0]["raw"], r#"{"model": "m"}"#);
        assert!(
            !rec.issued("resp_mock_1"),
            "a chat call issues no response id"
        );
        assert!(!rec.issued("resp_mock_9") && !rec.issued("resp_x"));
        assert!(rec.issued("fc_0123"));
        assert!(v[0]["end_ms"].as_f64().unwrap() >= v[0]["start_ms"].as_f64().unwrap());
        assert!(v[1]["end_ms"].is_null());
        rec.reset();
        rec.finish(b); // stale: ignored
        assert_eq!(rec.calls_json(), "[]");
        assert_eq!(call(&rec).seq, 1);
    }
}
