//! Same-API calls as splices of the client's bytes: serialize once, patch per call.
//!
//! A patch ([`super::patch`]) changes a few top-level members (`model`, `stream`,
//! `tools`, `tool_choice`, settings) and appends turns to the conversation; the
//! conversation itself, the system prompt and every other large member stay as the
//! client sent them. [`ClientBody`] indexes the client's top-level members once per
//! turn and keeps a light copy of the object in which each large member is a
//! marker; a call's patch runs on that light copy (the same rules as ever), and
//! [`ClientBody::write`] writes the result with the client's own bytes in place of
//! each marker. The conversation is copied byte for byte, never parsed into a tree
//! per call nor escaped again.
//!
//! Conservative: a body with duplicate top-level keys, replayed fusion items to
//! drop, or anything the index does not recognise is patched as a whole tree
//! (the earlier way), so its meaning never depends on this module.

use super::patch::{self, PatchSpec};
use super::{is_fusion_tool, messages, Api, ApiError};
use serde_json::{Map, Value};
use std::ops::Range;

/// A large top-level member left as the client's bytes (never a value a patch sets).
const MARKER: &str = "\u{0}fusion-splice\u{0}";
/// A client `tools` entry left as the client's bytes; its index follows.
const TOOL_MARKER: &str = "\u{0}fusion-splice-tool\u{0}";
/// Members shorter than this are cheap to copy as values.
const SMALL: usize = 64;
/// Members a patch reads (not only replaces or removes): always real values.
const READ_BY_PATCH: [&str; 8] = [
    "model",
    "stream",
    "stream_options",
    "tool_choice",
    "temperature",
    "top_p",
    "fusion",
    "tools",
];

/// The client's body, ready to be patched once per call.
#[derive(Debug)]
pub enum ClientBody {
    Spliced(Spliced),
    /// Patched as a tree (see the module's notes).
    Whole(Value),
}

#[derive(Debug)]
pub struct Spliced {
    /// The client's bytes.
    text: Vec<u8>,
    /// Top-level members left as bytes: key and the value's span.
    raw: Vec<(String, Range<usize>)>,
    /// The conversation array (`messages`, or `input` on Responses): its key and
    /// the span of its elements (empty when it has none).
    conversation: Option<(&'static str, Range<usize>)>,
    /// The spans of the client's `tools` entries, by index.
    tools: Vec<Range<usize>>,
    /// The object with markers in place of the members above.
    light: Map<String, Value>,
    /// Messages: the history holds `tool_use`/`tool_result` blocks.
    history_has_tool_use: bool,
}

impl ClientBody {
    /// Indexes `body` (the bytes `value` was parsed from, unchanged since but for
    /// scalar parameters bounded by the plan).
    pub fn new(api: Api, body: &[u8], value: Value) -> ClientBody {
        match value {
            Value::Object(obj) => match Spliced::new(api, body, &obj) {
                Some(mut s) => {
                    s.fill(obj);
                    ClientBody::Spliced(s)
                }
                None => ClientBody::Whole(Value::Object(obj)),
            },
            other => ClientBody::Whole(other),
        }
    }

    /// The patched call: for a splice, a value with markers that only
    /// [`Self::write`] turns into bytes.
    pub fn patch(&self, api: Api, spec: &PatchSpec<'_>) -> Result<Patched, ApiError> {
        let value = match self {
            ClientBody::Whole(v) => patch::patch_request(api, v, spec)?,
            ClientBody::Spliced(s) => {
                patch::patch_object(api, s.light.clone(), spec, s.history_has_tool_use)
            }
        };
        Ok(Patched(value))
    }

    /// The bytes of a call [`Self::patch`] returned.
    pub fn write(&self, patched: &Patched) -> Vec<u8> {
        match (self, &patched.0) {
            (ClientBody::Spliced(s), Value::Object(obj)) => s.write(obj),
            _ => serde_json::to_vec(&patched.0).unwrap_or_default(),
        }
    }

    /// Whether calls are written from the client's bytes (for tests and reports).
    pub fn is_spliced(&self) -> bool {
        matches!(self, ClientBody::Spliced(_))
    }
}

/// A call patched from the client's body. Only [`ClientBody::patch`] makes one
/// and [`ClientBody::write`] takes nothing else, so a body rebuilt from the
/// neutral model cannot reach the splice writer (which would put the client's
/// turns before its own): that pairing does not compile. The first example,
/// the right pairing, shows the second fails for that alone (its error code
/// is checked on nightly only).
///
/// ```
/// # use fusion_core::wire::{patch::{CallRole, PatchSpec}, splice::ClientBody, Api};
/// # let text = r#"{"model":"fusion","messages":[{"role":"user","content":"Hi"}]}"#;
/// # let client = ClientBody::new(Api::Chat, text.as_bytes(), serde_json::from_str(text).unwrap());
/// # let spec = PatchSpec { role: CallRole::Panel, model: "m", stream: false, extra_tools: &[], set: &[], exchange: None };
/// let patched = client.patch(Api::Chat, &spec).unwrap();
/// let bytes = client.write(&patched);
/// ```
/// ```compile_fail,E0308
/// # use fusion_core::wire::{patch::{CallRole, PatchSpec}, splice::ClientBody, Api};
/// # let text = r#"{"model":"fusion","messages":[{"role":"user","content":"Hi"}]}"#;
/// # let client = ClientBody::new(Api::Chat, text.as_bytes(), serde_json::from_str(text).unwrap());
/// let rebuilt = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]});
/// let bytes = client.write(&rebuilt); // expected `&Patched`, found `&Value`
/// ```
#[derive(Debug)]
pub struct Patched(Value);

impl Patched {
    /// Drops a top-level member (a parameter the operator says the model does not take).
    pub fn remove(&mut self, key: &str) {
        if let Some(obj) = self.0.as_object_mut() {
            obj.remove(key);
        }
    }

    /// Edits the call's numeric members (`temperature`, `top_p`, ...) in place:
    /// `edit` gets an object holding them alone. Markers are strings and the
    /// conversation is an array, so none is within its reach; what it leaves
    /// goes back (never over a member it was not given). The map is sorted (no
    /// `preserve_order`), so the members are written in the same order as before.
    pub fn edit_numbers<R>(&mut self, edit: impl FnOnce(&mut Value) -> R) -> R {
        let Value::Object(obj) = &mut self.0 else {
            return edit(&mut Value::Object(Map::new()));
        };
        let (numbers, mut rest): (Map<String, Value>, Map<String, Value>) = std::mem::take(obj)
            .into_iter()
            .partition(|(_, v)| v.is_number());
        let mut numbers = Value::Object(numbers);
        let out = edit(&mut numbers);
        if let Value::Object(numbers) = numbers {
            for (key, value) in numbers {
                if !rest.contains_key(&key) {
                    rest.insert(key, value);
                }
            }
        }
        *obj = rest;
        out
    }
}

impl Spliced {
    fn new(api: Api, body: &[u8], obj: &Map<String, Value>) -> Option<Spliced> {
        let members = scan_object(body)?;
        // Duplicate keys (the tree kept the last one) or a mismatch: not spliced.
        if members.len() != obj.len() || members.iter().any(|(k, _)| !obj.contains_key(k)) {
            return None;
        }
        if patch::has_fusion_history(api, obj) {
            return None;
        }
        let conversation_key = match api {
            Api::Responses => "input",
            Api::Chat | Api::Messages => "messages",
        };
        let mut s = Spliced {
            text: Vec::new(),
            raw: Vec::new(),
            conversation: None,
            tools: Vec::new(),
            light: Map::new(),
            history_has_tool_use: api == Api::Messages && messages::history_has_tool_use(obj),
        };
        for (key, span) in members {
            let bytes = body.get(span.clone())?;
            let is_array = bytes.first() == Some(&b'[');
            if key == conversation_key && is_array {
                s.conversation = Some((conversation_key, array_inner(bytes, span.start)?));
            } else if key == "tools" && is_array {
                let entries = scan_array(bytes, span.start)?;
                let parsed = obj.get("tools").and_then(Value::as_array)?;
                if entries.len() != parsed.len() {
                    return None;
                }
                s.tools = entries;
            } else if span.len() >= SMALL
                && !READ_BY_PATCH.contains(&key.as_str())
                && matches!(bytes.first(), Some(b'[' | b'{' | b'"'))
                && key != conversation_key
            {
                s.raw.push((key, span));
            }
        }
        s.text = body.to_vec();
        Some(s)
    }

    /// Moves the object's small members into the light copy; markers for the rest.
    fn fill(&mut self, obj: Map<String, Value>) {
        for (key, value) in obj {
            let light = if self.conversation.as_ref().is_some_and(|(k, _)| *k == key) {
                Value::Array(Vec::new())
            } else if key == "tools" && !self.tools.is_empty() {
                // Fusion declarations stay values (the patch drops them); the
                // client's own tools are markers for their bytes.
                let Value::Array(entries) = value else {
                    continue;
                };
                Value::Array(
                    entries
                        .into_iter()
                        .enumerate()
                        .map(|(i, t)| {
                            if is_fusion_tool(&t) {
                                t
                            } else {
                                Value::String(format!("{TOOL_MARKER}{i}"))
                            }
                        })
                        .collect(),
                )
            } else if self.raw.iter().any(|(k, _)| *k == key) {
                Value::String(MARKER.to_string())
            } else {
                value
            };
            self.light.insert(key, light);
        }
    }

    fn span(&self, span: &Range<usize>) -> &[u8] {
        self.text.get(span.clone()).unwrap_or_default()
    }

    fn write(&self, obj: &Map<String, Value>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + 512);
        out.push(b'{');
        for (i, (key, value)) in obj.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(&mut out, key);
            out.push(b':');
            self.write_member(&mut out, key, value);
        }
        out.push(b'}');
        out
    }

    fn write_member(&self, out: &mut Vec<u8>, key: &str, value: &Value) {
        match value {
            Value::Array(items) if self.conversation.as_ref().is_some_and(|(k, _)| *k == key) => {
                // The client's turns as they came, then the appended ones.
                out.push(b'[');
                let inner = self.conversation.as_ref().map(|(_, r)| self.span(r));
                let mut first = true;
                if let Some(inner) = inner.filter(|b| !b.is_empty()) {
                    out.extend_from_slice(inner);
                    first = false;
                }
                for item in items {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    write_json(out, item);
                }
                out.push(b']');
            }
            Value::Array(items) if key == "tools" && !self.tools.is_empty() => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    match self.tool_span(item) {
                        Some(bytes) => out.extend_from_slice(bytes),
                        None => write_json(out, item),
                    }
                }
                out.push(b']');
            }
            Value::String(s) if s == MARKER => {
                match self.raw.iter().find(|(k, _)| k == key) {
                    Some((_, span)) => out.extend_from_slice(self.span(span)),
                    // Not reachable: a marker is only ever the client's member's.
                    None => write_json(out, value),
                }
            }
            _ => write_json(out, value),
        }
    }

    /// The client's bytes of a `tools` entry the light copy holds as a marker.
    fn tool_span(&self, item: &Value) -> Option<&[u8]> {
        let index: usize = item.as_str()?.strip_prefix(TOOL_MARKER)?.parse().ok()?;
        self.tools.get(index).map(|r| self.span(r))
    }
}

fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing a `Value` or a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, value);
}

// ---------------------------------------------------------------- the index
//
// A scanner for JSON the serde parser already accepted: it only finds where
// values begin and end (strings with their escapes, nesting), it never decides
// what is valid. Offsets are absolute in the body.

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// `i` at a `"`: the index after its closing quote.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i.checked_add(1)?;
    loop {
        let at = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b.get(at) == Some(&b'\\') {
            j = at + 2;
        } else {
            return Some(at + 1);
        }
    }
}

/// `i` at the start of a value: the index after its end.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The top-level members of an object body: decoded key and value span, in order.
fn scan_object(b: &[u8]) -> Option<Vec<(String, Range<usize>)>> {
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(b, i)?;
        let key_bytes = b.get(i..key_end)?;
        let key: String = if key_bytes.contains(&b'\\') {
            // Read as a `Value` (its code is in the module anyway): a typed `String`
            // read would add serde's error formatting, float printing included (~13 KB).
            match serde_json::from_slice::<Value>(key_bytes).ok()? {
                Value::String(key) => key,
                _ => return None,
            }
        } else {
            std::str::from_utf8(b.get(i + 1..key_end - 1)?)
                .ok()?
                .to_string()
        };
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start)?;
        out.push((key, start..end));
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return (skip_ws(b, i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// An array's element spans; `arr` is the array's bytes, starting at `offset` in the body.
fn scan_array(arr: &[u8], offset: usize) -> Option<Vec<Range<usize>>> {
    if arr.first() != Some(&b'[') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = skip_ws(arr, 1);
    if arr.get(i) == Some(&b']') {
        return Some(out);
    }
    loop {
        let end = skip_value(arr, i)?;
        out.push(offset + i..offset + end);
        i = skip_ws(arr, end);
        match arr.get(i)? {
            b',' => i = skip_ws(arr, i + 1),
            b']' => return Some(out),
            _ => return None,
        }
    }
}

/// The span of an array's elements (from the first one's start to the last one's end).
fn array_inner(arr: &[u8], offset: usize) -> Option<Range<usize>> {
    let elements = scan_array(arr, offset)?;
    match (elements.first(), elements.last()) {
        (Some(first), Some(last)) => Some(first.start..last.end),
        _ => Some(offset..offset),
    }
}

#[cfg(test)]
#[path = "splice_tests.rs"]
mod tests;
