//! The panel's answers escaped once for every body that carries them.
//!
//! JSON string escaping is concatenative: the escaped form of a text that holds
//! an answer is the escaped text around it with the answer's escaped form in
//! the middle. So the judge's prompt and the tool result are written with a
//! marker string where each answer goes, and the answer's escaped bytes
//! (computed once, in [`Slots::new`]) are spliced in place of the marker's
//! serialized form: each answer costs one escape instead of one per body.
//!
//! A marker is `\0<tag> <n>\0`. The tag holds the run's id (no model sees it)
//! and the judge's nonce (which depends on every answer, so neither the client
//! nor a member can know it): no text anyone else wrote can spell a marker.

use memchr::memmem;

#[derive(Debug, Default)]
pub struct Slots {
    tag: String,
    /// The answers' escaped bytes (no quotes), by the key the caller gave.
    escaped: Vec<(usize, Vec<u8>)>,
}

impl Slots {
    /// Escapes each `(key, answer)` once.
    pub fn new<'a>(tag: String, answers: impl IntoIterator<Item = (usize, &'a str)>) -> Slots {
        let escaped = answers
            .into_iter()
            .map(|(key, text)| {
                let quoted = serde_json::to_vec(text).unwrap_or_default();
                let inner = quoted
                    .get(1..quoted.len().saturating_sub(1))
                    .unwrap_or_default();
                (key, inner.to_vec())
            })
            .collect();
        Slots { tag, escaped }
    }

    /// Whether the answer of `key` was escaped here.
    pub fn has(&self, key: usize) -> bool {
        self.escaped.iter().any(|(k, _)| *k == key)
    }

    /// The text to put where the answer of `key` goes, in a string of a value
    /// that is then serialized and passed to [`Self::fill`].
    pub fn marker(&self, key: usize) -> String {
        format!("\u{0}{} {key}\u{0}", self.tag)
    }

    /// `body` (serialized JSON) with every marker replaced by its answer's escaped bytes.
    pub fn fill(&self, body: Vec<u8>) -> Vec<u8> {
        // A marker serializes as `\u0000<tag> <key>\u0000`.
        let prefix = format!("\\u0000{} ", self.tag);
        let finder = memmem::Finder::new(prefix.as_bytes());
        let extra: usize = self.escaped.iter().map(|(_, e)| e.len()).sum();
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut at = 0;
        while let Some(found) = body.get(at..).and_then(|rest| finder.find(rest)) {
            let start = at + found;
            let digits_at = start + prefix.len();
            let rest = body.get(digits_at..).unwrap_or_default();
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let key: Option<usize> = std::str::from_utf8(rest.get(..digits).unwrap_or_default())
                .ok()
                .and_then(|d| d.parse().ok());
            let closes = rest
                .get(digits..)
                .is_some_and(|r| r.starts_with(b"\\u0000"));
            let answer = key
                .filter(|_| closes)
                .and_then(|k| self.escaped.iter().find(|(key, _)| *key == k));
            let Some((_, escaped)) = answer else {
                at = start + 1;
                continue;
            };
            let out = out.get_or_insert_with(|| Vec::with_capacity(body.len() + extra));
            out.extend_from_slice(body.get(copied..start).unwrap_or_default());
            out.extend_from_slice(escaped);
            copied = digits_at + digits + "\\u0000".len();
            at = copied;
        }
        match out {
            Some(mut out) => {
                out.extend_from_slice(body.get(copied..).unwrap_or_default());
                out
            }
            None => body,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    #[test]
    fn a_filled_body_is_the_body_written_with_the_answers() {
        let answers = ["a \"quoted\"\nline\\ é \u{1}", "second", ""];
        let slots = Slots::new(
            "fr-1-abc".into(),
            answers.iter().enumerate().map(|(i, a)| (i * 2, *a)),
        );
        let with = |text: &dyn Fn(usize) -> String| {
            json!({"prompt": format!("<r>{}</r> and <r>{}</r>", text(0), text(2)),
                   "responses": [{"content": text(0)}, {"content": text(2)}, {"content": text(4)}],
                   "other": "\u{0}fr-1-abc 9\u{0} \u{0}fr-1-abc 1\u{0}"})
        };
        let direct = serde_json::to_vec(&with(&|k| answers[k / 2].to_string())).unwrap();
        let marked = serde_json::to_vec(&with(&|k| slots.marker(k))).unwrap();
        assert!(slots.has(4) && !slots.has(1));
        assert_eq!(
            String::from_utf8(slots.fill(marked)).unwrap(),
            String::from_utf8(direct).unwrap()
        );
    }

    #[test]
    fn a_body_without_markers_is_returned_as_it_is() {
        let slots = Slots::new("t".into(), [(0, "x")]);
        let body = br#"{"a":"\u0000t 0 \u0000t x\u0000"}"#.to_vec();
        assert_eq!(slots.fill(body.clone()), body);
    }
}
