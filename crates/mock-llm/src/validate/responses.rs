//! OpenAI Responses request rules.

use serde_json::{Map, Value};

use super::{
    first_duplicate, foreign_field, invalid_value, is_url_or_data, missing, str_of, Ctx, Invalid,
};
use crate::apis::Api;

const ROLES: [&str; 4] = ["user", "assistant", "system", "developer"];
const INPUT_PARTS: [&str; 4] = ["input_text", "input_image", "input_file", "input_audio"];
const OUTPUT_PARTS: [&str; 2] = ["output_text", "refusal"];
/// Input item types (`message` items may also come without `type`).
const ITEMS: [&str; 22] = [
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call_output",
];
/// Tool types; dated variants (`web_search_preview_2025_03_11`) are accepted by prefix.
const TOOLS: [&str; 12] = [
    "function",
    "custom",
    "file_search",
    "web_search",
    "web_search_preview",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
];

pub fn check(obj: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), Invalid> {
    if !obj.get("model").is_some_and(Value::is_string) {
        return Err(missing("model".into()));
    }
    if let Some(k) = foreign_field(Api::Responses, obj) {
        return Err(Invalid::new(format!("Unknown parameter: '{k}'."))
            .param(k)
            .code("unknown_parameter"));
    }
    let previous = str_of(&Value::Object(obj.clone()), "previous_response_id").map(str::to_string);
    if let Some(prev) = &previous {
        if !(ctx.issued)(prev) {
            return Err(
                Invalid::new(format!("Previous response with id '{prev}' not found."))
                    .param("previous_response_id")
                    .code("previous_response_not_found"),
            );
        }
    }
    match obj.get("input") {
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => check_items(items, previous.is_some(), ctx)?,
        None | Some(Value::Null) if previous.is_some() || obj.contains_key("conversation") => {}
        None | Some(Value::Null) => return Err(missing("input".into())),
        Some(_) => {
            return Err(Invalid::new(
                "Invalid type for 'input': expected one of a string or array of input items, but got an object instead.",
            )
            .param("input")
            .code("invalid_type"))
        }
    }
    check_tools(obj)?;
    if let Some(n) = obj.get("max_output_tokens").and_then(Value::as_i64) {
        if n < 16 {
            return Err(Invalid::new(format!(
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {n} instead."
            ))
            .param("max_output_tokens")
            .code("integer_below_min_value"));
        }
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

fn check_items(items: &[Value], has_previous: bool, ctx: &Ctx<'_>) -> Result<(), Invalid> {
    let mut calls: Vec<&str> = Vec::new();
    let mut outputs: Vec<&str> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ty = match str_of(item, "type") {
            Some(t) => t,
            None if item.get("role").is_some() => "message",
            None => return Err(missing(format!("input[{i}].type"))),
        };
        if !ITEMS.contains(&ty) && ty != "custom_tool_call" {
            return Err(invalid_value(ty, &ITEMS, format!("input[{i}].type")));
        }
        match ty {
            "message" => check_message(item, i)?,
            "function_call" => {
                for k in ["call_id", "name", "arguments"] {
                    if str_of(item, k).is_none() {
                        return Err(missing(format!("input[{i}].{k}")));
                    }
                }
                calls.extend(str_of(item, "call_id"));
            }
            "function_call_output" => {
                let Some(id) = str_of(item, "call_id") else {
                    return Err(missing(format!("input[{i}].call_id")));
                };
                if item.get("output").is_none() {
                    return Err(missing(format!("input[{i}].output")));
                }
                if !calls.contains(&id) && !has_previous {
                    return Err(Invalid::new(format!(
                        "No tool call found for function call output with call_id {id}."
                    ))
                    .param("input")
                    .code("invalid_value"));
                }
                outputs.push(id);
            }
            "item_reference" => {
                let id = str_of(item, "id").unwrap_or("");
                if !(ctx.issued)(id) {
                    return Err(Invalid::new(format!("Item with id '{id}' not found."))
                        .param("input")
                        .code("invalid_value"));
                }
            }
            "reasoning" if !item.get("summary").is_some_and(Value::is_array) => {
                return Err(missing(format!("input[{i}].summary")));
            }
            _ => {}
        }
    }
    if let Some(id) = calls.iter().find(|c| !outputs.contains(c)) {
        return Err(
            Invalid::new(format!("No tool output found for function call {id}."))
                .param("input")
                .code("invalid_value"),
        );
    }
    Ok(())
}

fn check_message(item: &Value, i: usize) -> Result<(), Invalid> {
    let role = str_of(item, "role").unwrap_or("");
    if !ROLES.contains(&role) {
        return Err(invalid_value(role, &ROLES, format!("input[{i}].role")));
    }
    let parts = match item.get("content") {
        Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(parts)) => parts,
        _ => return Err(missing(format!("input[{i}].content"))),
    };
    let allowed: &[&str] = if role == "assistant" {
        &OUTPUT_PARTS
    } else {
        &INPUT_PARTS
    };
    for (j, p) in parts.iter().enumerate() {
        let at = format!("input[{i}].content[{j}]");
        let ty = str_of(p, "type").unwrap_or("");
        if !allowed.contains(&ty) {
            return Err(invalid_value(ty, allowed, format!("{at}.type")));
        }
        let has = |k: &str| p.get(k).is_some_and(Value::is_string);
        match ty {
            "input_text" | "output_text" if !has("text") => {
                return Err(missing(format!("{at}.text")))
            }
            "refusal" if !has("refusal") => return Err(missing(format!("{at}.refusal"))),
            "input_image" => {
                if !has("image_url") && !has("file_id") {
                    return Err(Invalid::new(format!(
                        "Invalid '{at}': one of 'image_url' or 'file_id' must be provided."
                    ))
                    .param(at)
                    .code("invalid_value"));
                }
                if let Some(url) = str_of(p, "image_url") {
                    if !is_url_or_data(url, "data:image/") {
                        return Err(Invalid::new(format!(
                            "Invalid '{at}.image_url'. Expected a valid URL, but got a value with an invalid format."
                        ))
                        .param(format!("{at}.image_url"))
                        .code("invalid_value"));
                    }
                }
            }
            "input_file" => {
                if !has("file_id") && !has("file_data") && !has("file_url") {
                    return Err(Invalid::new(format!(
                        "Invalid '{at}': one of 'file_id', 'file_data' or 'file_url' must be provided."
                    ))
                    .param(at)
                    .code("invalid_value"));
                }
                if has("file_data") && !has("filename") {
                    return Err(missing(format!("{at}.filename")));
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
        let known = TOOLS
            .iter()
            .any(|k| ty == *k || ty.strip_prefix(k).is_some_and(|r| r.starts_with('_')));
        if !known {
            return Err(invalid_value(ty, &TOOLS, format!("tools[{i}].type")));
        }
        if ty == "function" || ty == "custom" {
            let Some(name) = str_of(t, "name") else {
                return Err(missing(format!("tools[{i}].name")));
            };
            names.push(name);
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
