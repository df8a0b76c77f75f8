//! Citations and annotations: read from each API's spelling into the neutral
//! [`Citation`], written in each client API's own fields. A citation read from
//! the client's own API is written back as the provider sent it.

use super::common::str_field;
use super::neutral::Citation;
use super::Api;
use serde_json::{json, Value};

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn text(v: &Value, key: &str) -> Option<String> {
    str_field(v, key).map(str::to_string)
}

/// A Chat `message.annotations` entry (`{"type": "url_citation", "url_citation": {...}}`).
pub fn from_chat(a: &Value) -> Citation {
    let inner = a.get("url_citation").unwrap_or(a);
    Citation {
        url: text(inner, "url"),
        title: text(inner, "title"),
        start: num(inner, "start_index"),
        end: num(inner, "end_index"),
        cited_text: None,
        origin: Some((Api::Chat, a.clone())),
    }
}

/// A Responses `output_text.annotations` entry (`url_citation`, `file_citation`, ...).
pub fn from_responses(a: &Value) -> Citation {
    Citation {
        url: text(a, "url"),
        title: text(a, "title").or_else(|| text(a, "filename")),
        start: num(a, "start_index"),
        end: num(a, "end_index"),
        cited_text: None,
        origin: Some((Api::Responses, a.clone())),
    }
}

/// A Messages text block's `citations` entry; the block spans `start..end` of the reply text.
pub fn from_messages(c: &Value, start: u64, end: u64) -> Citation {
    Citation {
        url: text(c, "url").or_else(|| c.get("source").and_then(|s| text(s, "url"))),
        title: text(c, "title").or_else(|| text(c, "document_title")),
        start: Some(start),
        end: Some(end),
        cited_text: text(c, "cited_text"),
        origin: Some((Api::Messages, c.clone())),
    }
}

/// The span a citation covers, for APIs that require one.
fn span(c: &Citation, reply_text: &str) -> (u64, u64) {
    if let (Some(s), Some(e)) = (c.start, c.end) {
        return (s, e);
    }
    let len = reply_text.chars().count() as u64;
    (0, len)
}

/// The citation as a Chat annotation; `None` when it has no URL (Chat knows
/// only `url_citation`).
pub fn to_chat(c: &Citation, reply_text: &str) -> Option<Value> {
    if let Some((Api::Chat, raw)) = &c.origin {
        return Some(raw.clone());
    }
    let url = c.url.as_ref()?;
    let (start, end) = span(c, reply_text);
    Some(json!({"type": "url_citation", "url_citation": {
        "url": url, "title": c.title.clone().unwrap_or_default(),
        "start_index": start, "end_index": end}}))
}

/// The citation as a Responses annotation; `None` when it has no URL.
pub fn to_responses(c: &Citation, reply_text: &str) -> Option<Value> {
    if let Some((Api::Responses, raw)) = &c.origin {
        return Some(raw.clone());
    }
    let url = c.url.as_ref()?;
    let (start, end) = span(c, reply_text);
    Some(json!({"type": "url_citation", "url": url,
        "title": c.title.clone().unwrap_or_default(),
        "start_index": start, "end_index": end}))
}

/// The citation as a Messages `citations` entry; `None` when it has no URL.
pub fn to_messages(c: &Citation, reply_text: &str) -> Option<Value> {
    if let Some((Api::Messages, raw)) = &c.origin {
        return Some(raw.clone());
    }
    let url = c.url.as_ref()?;
    let cited = c.cited_text.clone().unwrap_or_else(|| {
        let (s, e) = span(c, reply_text);
        crate::text::char_span(reply_text, s as usize, e.saturating_sub(s) as usize).to_string()
    });
    Some(json!({"type": "web_search_result_location", "url": url,
        "title": c.title.clone().unwrap_or_default(), "cited_text": cited,
        "encrypted_index": ""}))
}

/// Every citation in the API's spelling (those it cannot express left out).
pub fn write_all(api: Api, citations: &[Citation], reply_text: &str) -> Vec<Value> {
    citations
        .iter()
        .filter_map(|c| match api {
            Api::Chat => to_chat(c, reply_text),
            Api::Responses => to_responses(c, reply_text),
            Api::Messages => to_messages(c, reply_text),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn same_api_citations_are_written_back_unchanged() {
        let a = json!({"type": "url_citation", "url_citation": {"url": "https://a", "title": "A", "start_index": 1, "end_index": 4}, "x": 1});
        assert_eq!(to_chat(&from_chat(&a), "text"), Some(a.clone()));
        let r =
            json!({"type": "file_citation", "file_id": "file-1", "filename": "f.pdf", "index": 3});
        assert_eq!(to_responses(&from_responses(&r), ""), Some(r));
        let m = json!({"type": "char_location", "cited_text": "x", "document_index": 0, "start_char_index": 0, "end_char_index": 1});
        assert_eq!(to_messages(&from_messages(&m, 0, 4), ""), Some(m));
    }

    #[test]
    fn url_citations_cross_apis() {
        let a = from_chat(
            &json!({"type": "url_citation", "url_citation": {"url": "https://a", "title": "A", "start_index": 0, "end_index": 5}}),
        );
        assert_eq!(
            to_responses(&a, "Hello world"),
            Some(
                json!({"type": "url_citation", "url": "https://a", "title": "A", "start_index": 0, "end_index": 5})
            )
        );
        let m = to_messages(&a, "Hello world").unwrap();
        assert_eq!(m["type"], "web_search_result_location");
        assert_eq!(m["cited_text"], "Hello");
        let w = from_messages(
            &json!({"type": "web_search_result_location", "url": "https://w", "title": "W", "cited_text": "q", "encrypted_index": "e"}),
            3,
            9,
        );
        assert_eq!(
            to_chat(&w, "")
                .unwrap()
                .pointer("/url_citation/start_index")
                .cloned(),
            Some(json!(3))
        );
        // A document location has no URL: Chat and Responses cannot express it.
        let d = from_messages(&json!({"type": "char_location", "cited_text": "x"}), 0, 1);
        assert_eq!(
            write_all(Api::Chat, std::slice::from_ref(&d), ""),
            Vec::<Value>::new()
        );
        assert_eq!(write_all(Api::Messages, &[d], "").len(), 1);
    }
}
