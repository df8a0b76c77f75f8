//! Reading text out of the content shapes the APIs share.

use super::ApiError;
use crate::wire::neutral::GenParams;
use serde_json::{json, Map, Value};

/// The start every client request parser shares: a JSON object with a `model` string.
pub fn request_head(body: &Value) -> Result<(&Map<String, Value>, &str), ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("the request body must be a JSON object", None))?;
    let model = str_field(body, "model")
        .ok_or_else(|| ApiError::invalid("`model` must be a string", Some("model")))?;
    Ok((obj, model))
}

/// Refuses fields the filter reads when they have the wrong type, instead of
/// reading them as absent: a fusion request is answered by the filter, so the
/// client must hear what the provider would have said.
pub fn check_types(api: super::Api, body: &Value) -> Result<(), ApiError> {
    let Some(obj) = body.as_object() else {
        return Ok(());
    };
    let present = |key: &str| obj.get(key).filter(|v| !v.is_null());
    let wrong = |key: &str, what: &str| {
        Err(ApiError::invalid(
            format!("`{key}` must be {what}"),
            Some(key),
        ))
    };
    if let Some(tools) = present("tools") {
        if !tools
            .as_array()
            .is_some_and(|t| t.iter().all(Value::is_object))
        {
            return wrong("tools", "a list of tool objects");
        }
    }
    if let Some(choice) = present("tool_choice") {
        let ok = match (api, choice) {
            (_, Value::Object(_)) => true,
            (super::Api::Messages, _) => false,
            (_, Value::String(s)) => matches!(s.as_str(), "auto" | "none" | "required"),
            _ => false,
        };
        if !ok {
            return wrong(
                "tool_choice",
                "`auto`, `none`, `required` or a tool choice object",
            );
        }
    }
    if present("stream").is_some_and(|s| !s.is_boolean()) {
        return wrong("stream", "a boolean");
    }
    for key in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
        if present(key).is_some_and(|v| v.as_u64().is_none()) {
            return wrong(key, "a non-negative integer");
        }
    }
    for key in ["temperature", "top_p"] {
        if present(key).is_some_and(|v| !v.is_number()) {
            return wrong(key, "a number");
        }
    }
    if present("fusion").is_some_and(|v| !v.is_object()) {
        return wrong("fusion", "an object");
    }
    let conversation = match api {
        super::Api::Responses => "input",
        super::Api::Chat | super::Api::Messages => "messages",
    };
    if let Some(items) = present(conversation).and_then(Value::as_array) {
        for item in items {
            if let Some(content) = item.get("content").filter(|c| !c.is_null()) {
                let ok = match content {
                    Value::String(_) => true,
                    Value::Array(parts) => parts.iter().all(Value::is_object),
                    _ => false,
                };
                if !ok {
                    return wrong(
                        conversation,
                        "a list of messages whose `content` is a string or a list of content objects",
                    );
                }
            }
        }
    }
    Ok(())
}

/// `temperature` and `top_p`, spelled alike in every API; absent ones are left out.
pub fn insert_sampling(body: &mut Map<String, Value>, p: &GenParams) {
    if let Some(v) = p.temperature {
        body.insert("temperature".into(), json!(v));
    }
    if let Some(v) = p.top_p {
        body.insert("top_p".into(), json!(v));
    }
}

/// Provider tools go after the function tools, as the client or operator wrote them.
pub fn insert_provider_tools(body: &mut Map<String, Value>, p: &GenParams) {
    if p.provider_tools.is_empty() {
        return;
    }
    match body.get_mut("tools") {
        Some(Value::Array(tools)) => tools.extend(p.provider_tools.iter().cloned()),
        _ => {
            body.insert("tools".into(), Value::Array(p.provider_tools.clone()));
        }
    }
}

/// A reasoning setting (an effort string or `{"effort": ...}`), normalised to
/// `{"effort": "..."}`; `None` for anything else.
pub fn reasoning(v: &Value) -> Option<Value> {
    let effort = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("effort").and_then(Value::as_str)?,
        _ => return None,
    };
    matches!(effort, "minimal" | "low" | "medium" | "high").then(|| json!({ "effort": effort }))
}

/// A content field that is a string or an array of text parts, joined by newlines.
/// Parts without text (images, files) are skipped: the panel sees the text only.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    _ => p.get("text").and_then(Value::as_str),
                })
                .collect();
            crate::text::join(&texts, "\n")
        }
        _ => String::new(),
    }
}

/// Sets `key` on `v` when it is an object (indexing could panic).
pub fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_string(), value);
    }
}

pub fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Splits text into stream pieces of about `target` characters, cut after
/// whitespace where possible (at most twice `target`); the pieces join back to `text`.
pub fn pieces(text: &str, target: usize) -> Vec<&str> {
    let target = target.max(1);
    let mut out = Vec::new();
    let (mut start, mut count) = (0, 0);
    for (i, c) in text.char_indices() {
        count += 1;
        if (count >= target && c.is_whitespace()) || count >= target * 2 {
            let end = i + c.len_utf8();
            out.extend(text.get(start..end));
            start = end;
            count = 0;
        }
    }
    out.extend(text.get(start..).filter(|p| !p.is_empty()));
    out
}

/// `id` with `prefix` in front, unless it already starts with it.
pub fn with_prefix(prefix: &str, id: &str) -> String {
    if id.starts_with(prefix) {
        id.to_string()
    } else {
        format!("{prefix}{id}")
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn text_pieces_join_back() {
        for text in [
            "",
            "a",
            "héllo wörld ",
            "no-spaces-at-all-in-this-long-string-of-text",
            "日本語のテキストです。とても長い文章になります。",
        ] {
            let p = pieces(text, 5);
            assert_eq!(p.concat(), text);
            assert!(p.iter().all(|s| !s.is_empty() && s.chars().count() <= 10));
        }
        assert_eq!(
            pieces("one two three four", 3),
            ["one ", "two ", "three ", "four"]
        );
    }
}
