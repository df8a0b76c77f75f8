//! OpenAI Chat Completions request rules.

use serde_json::{Map, Value};

use super::{
    first_duplicate, foreign_field, invalid_value, is_url_or_data, missing, str_of, Ctx, Invalid,
};
use crate::apis::Api;

const ROLES: [&str; 6] = [
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];
const USER_PARTS: [&str; 4] = ["text", "image_url", "input_audio", "file"];
const ASSISTANT_PARTS: [&str; 2] = ["text", "refusal"];
const TEXT_PARTS: [&str; 1] = ["text"];

pub fn check(obj: &Map<String, Value>, _ctx: &Ctx<'_>) -> Result<(), Invalid> {
    if !obj.get("model").is_some_and(Value::is_string) {
        return Err(missing("model".into()));
    }
    if let Some(k) = foreign_field(Api::Chat, obj) {
        return Err(Invalid::new(format!(
            "Unrecognized request argument supplied: {k}"
        )));
    }
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return Err(missing("messages".into()));
    };
    if messages.is_empty() {
        return Err(Invalid::new(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        )
        .param("messages")
        .code("empty_array"));
    }
    check_messages(messages)?;
    check_tools(obj)?;
    let has_tools = obj
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    for k in ["tool_choice", "parallel_tool_calls"] {
        if obj.get(k).is_some_and(|v| !v.is_null()) && !has_tools {
            return Err(Invalid::new(format!(
                "Invalid value for '{k}': '{k}' is only allowed when 'tools' are specified."
            ))
            .param(k)
            .code("invalid_request_error"));
        }
    }
    let store = obj.get("store").and_then(Value::as_bool).unwrap_or(false);
    if obj.get("metadata").is_some_and(|m| !m.is_null()) && !store {
        return Err(Invalid::new(
            "The 'metadata' parameter is only allowed when 'store' is enabled.",
        )
        .param("metadata")
        .code("invalid_request_error"));
    }
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if obj.get("stream_options").is_some_and(|m| !m.is_null()) && !stream {
        return Err(Invalid::new(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        )
        .param("stream_options")
        .code("invalid_value"));
    }
    if let Some(t) = obj.get("temperature").and_then(Value::as_f64) {
        if !(0.0..=2.0).contains(&t) {
            return Err(Invalid::new(format!(
                "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {t} instead."
            ))
            .param("temperature")
            .code("decimal_above_max_value"));
        }
    }
    Ok(())
}

fn check_messages(messages: &[Value]) -> Result<(), Invalid> {
    // Tool call ids of the last assistant message still waiting for a tool message.
    let mut pending: Vec<String> = Vec::new();
    let mut after_tool_calls = false;
    for (i, m) in messages.iter().enumerate() {
        let Some(role) = str_of(m, "role") else {
            return Err(missing(format!("messages[{i}].role")));
        };
        if !ROLES.contains(&role) {
            return Err(invalid_value(role, &ROLES, format!("messages[{i}].role")));
        }
        if role != "tool" && !pending.is_empty() {
            return Err(Invalid::new(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                pending.join(", ")
            ))
            .param(format!("messages.[{i}].role"))
            .code("invalid_request_error"));
        }
        match role {
            "tool" => {
                let id = str_of(m, "tool_call_id").unwrap_or("");
                if !after_tool_calls {
                    return Err(Invalid::new(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                    )
                    .param(format!("messages.[{i}].role"))
                    .code("invalid_request_error"));
                }
                if id.is_empty() {
                    return Err(missing(format!("messages[{i}].tool_call_id")));
                }
                pending.retain(|p| p != id);
                check_content(m, i, &TEXT_PARTS, true)?;
            }
            "assistant" => {
                pending.clear();
                after_tool_calls = false;
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for (j, c) in calls.iter().enumerate() {
                        let id = str_of(c, "id").unwrap_or("");
                        if id.is_empty() {
                            return Err(missing(format!("messages[{i}].tool_calls[{j}].id")));
                        }
                        let fname = c.pointer("/function/name").and_then(Value::as_str);
                        if str_of(c, "type") == Some("function") && fname.is_none() {
                            return Err(missing(format!(
                                "messages[{i}].tool_calls[{j}].function.name"
                            )));
                        }
                        pending.push(id.to_string());
                    }
                    after_tool_calls = !calls.is_empty();
                }
                let has_calls = after_tool_calls || m.get("function_call").is_some();
                check_content(m, i, &ASSISTANT_PARTS, has_calls)?;
            }
            "user" => {
                after_tool_calls = false;
                check_content(m, i, &USER_PARTS, false)?;
            }
            _ => {
                after_tool_calls = false;
                check_content(m, i, &TEXT_PARTS, role == "function")?;
            }
        }
    }
    Ok(())
}

/// `content` is a string or an array of known parts (`may_be_null`: an
/// assistant message with tool calls, a tool or function result).
fn check_content(m: &Value, i: usize, allowed: &[&str], may_be_null: bool) -> Result<(), Invalid> {
    let parts = match m.get("content") {
        Some(Value::String(_)) => return Ok(()),
        None | Some(Value::Null) if may_be_null => return Ok(()),
        None | Some(Value::Null) => return Err(missing(format!("messages[{i}].content"))),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(Invalid::new(format!(
                "Invalid type for 'messages[{i}].content': expected one of a string or array of objects, but got an object instead."
            ))
            .param(format!("messages[{i}].content"))
            .code("invalid_type"))
        }
    };
    for (j, p) in parts.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        let Some(ty) = str_of(p, "type") else {
            return Err(missing(format!("{at}.type")));
        };
        if !allowed.contains(&ty) {
            return Err(invalid_value(ty, allowed, format!("{at}.type")));
        }
        match ty {
            "text" if str_of(p, "text").is_none() => return Err(missing(format!("{at}.text"))),
            "refusal" if str_of(p, "refusal").is_none() => {
                return Err(missing(format!("{at}.refusal")))
            }
            "image_url" => {
                let Some(url) = p.pointer("/image_url/url").and_then(Value::as_str) else {
                    return Err(missing(format!("{at}.image_url.url")));
                };
                if !is_url_or_data(url, "data:image/") {
                    return Err(Invalid::new(format!(
                        "Invalid '{at}.image_url.url'. Expected a valid URL, but got a value with an invalid format."
                    ))
                    .param(format!("{at}.image_url.url"))
                    .code("invalid_value"));
                }
            }
            "input_audio" => {
                for k in ["data", "format"] {
                    if p.pointer(&format!("/input_audio/{k}")).is_none() {
                        return Err(missing(format!("{at}.input_audio.{k}")));
                    }
                }
            }
            "file" => {
                let f = p.get("file");
                let has = |k: &str| f.and_then(|f| f.get(k)).is_some_and(Value::is_string);
                if !has("file_data") && !has("file_id") {
                    return Err(Invalid::new(format!(
                        "Invalid '{at}.file': one of 'file_data' or 'file_id' must be provided."
                    ))
                    .param(format!("{at}.file"))
                    .code("invalid_value"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_tools(obj: &Map<String, Value>) -> Result<(), Invalid> {
    let Some(tools) = obj.get("tools").and_then(Value::as_array) else {
        return Ok(());
    };
    let mut names = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let ty = str_of(t, "type").unwrap_or("");
        match ty {
            "function" => {
                let Some(name) = t.pointer("/function/name").and_then(Value::as_str) else {
                    return Err(missing(format!("tools[{i}].function.name")));
                };
                names.push(name);
            }
            "custom" => {
                let Some(name) = t.pointer("/custom/name").and_then(Value::as_str) else {
                    return Err(missing(format!("tools[{i}].custom.name")));
                };
                names.push(name);
            }
            _ => {
                return Err(invalid_value(
                    ty,
                    &["function", "custom"],
                    format!("tools[{i}].type"),
                ))
            }
        }
    }
    if let Some(dup) = first_duplicate(names) {
        return Err(Invalid::new(format!(
            "Invalid 'tools': duplicate function name '{dup}'. Function names must be unique."
        ))
        .param("tools")
        .code("invalid_value"));
    }
    Ok(())
}
