//! Anthropic Messages request rules.

use serde_json::{Map, Value};

use super::{first_duplicate, foreign_field, str_of, Ctx, Invalid};
use crate::apis::Api;

/// The beta that allows `{"role": "system"}` entries inside `messages`.
pub const MID_CONVERSATION_SYSTEM: &str = "mid-conversation-system-2026-04-07";

const USER_BLOCKS: [&str; 6] = [
    "text",
    "image",
    "document",
    "tool_result",
    "search_result",
    "container_upload",
];
const ASSISTANT_BLOCKS: [&str; 16] = [
    "text",
    "tool_use",
    "server_tool_use",
    "thinking",
    "redacted_thinking",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "container_upload",
    "compaction",
    "search_result",
];
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
/// Server tool type prefixes (each is dated, e.g. `web_search_20250305`).
const SERVER_TOOLS: [&str; 9] = [
    "web_search_",
    "web_fetch_",
    "code_execution_",
    "bash_",
    "text_editor_",
    "computer_",
    "memory_",
    "tool_search_tool_",
    "mcp_toolset",
];

fn field_required(path: &str) -> Invalid {
    Invalid::new(format!("{path}: Field required"))
}

pub fn check(obj: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), Invalid> {
    for k in ["model", "messages", "max_tokens"] {
        if !obj.contains_key(k) {
            return Err(field_required(k));
        }
    }
    if let Some(k) = foreign_field(Api::Messages, obj) {
        return Err(Invalid::new(format!("{k}: Extra inputs are not permitted")));
    }
    let max_tokens = obj.get("max_tokens").and_then(Value::as_i64).unwrap_or(0);
    if max_tokens < 1 {
        return Err(Invalid::new(
            "max_tokens: Input should be greater than or equal to 1",
        ));
    }
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return Err(Invalid::new("messages: Input should be a valid list"));
    };
    if let Some(meta) = obj.get("metadata").and_then(Value::as_object) {
        if let Some(k) = meta.keys().find(|k| *k != "user_id") {
            return Err(Invalid::new(format!(
                "metadata.{k}: Extra inputs are not permitted"
            )));
        }
    }
    if let Some(system) = obj.get("system") {
        check_system_field(system, "system")?;
    }
    if let Some(t) = obj.get("temperature").and_then(Value::as_f64) {
        if !(0.0..=1.0).contains(&t) {
            return Err(Invalid::new(
                "temperature: Input should be less than or equal to 1",
            ));
        }
    }
    let thinking = check_thinking(obj, max_tokens)?;
    let beta = ctx.header("anthropic-beta");
    let mid_system = beta.split(',').any(|b| b.trim() == MID_CONVERSATION_SYSTEM);
    check_messages(messages, mid_system, thinking)?;
    check_tools(obj)?;
    let has_tools = obj
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let forces_tool = obj
        .get("tool_choice")
        .and_then(|c| str_of(c, "type"))
        .is_some_and(|t| t != "none" && t != "auto");
    // Anthropic reads tool blocks only against declared tools (a client that
    // drops `tools` once it is done calling them gets this 400).
    if !has_tools && history_has_tool_blocks(messages) {
        return Err(Invalid::new(
            "Requests which include `tool_use` or `tool_result` blocks must define tools.",
        ));
    }
    if forces_tool && !has_tools {
        return Err(Invalid::new(
            "tool_choice: a tool choice that requires tool use may only be specified while providing tools.",
        ));
    }
    let breakpoints = count_cache_control(&Value::Object(obj.clone()));
    if breakpoints > 4 {
        return Err(Invalid::new(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        )));
    }
    Ok(())
}

/// Whether extended thinking is on; checks its own rules.
fn check_thinking(obj: &Map<String, Value>, max_tokens: i64) -> Result<bool, Invalid> {
    let Some(t) = obj.get("thinking") else {
        return Ok(false);
    };
    let on = match str_of(t, "type") {
        Some("enabled") => {
            let Some(budget) = t.get("budget_tokens").and_then(Value::as_i64) else {
                return Err(field_required("thinking.enabled.budget_tokens"));
            };
            if budget < 1024 {
                return Err(Invalid::new(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                ));
            }
            if budget >= max_tokens {
                return Err(Invalid::new(
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size",
                ));
            }
            true
        }
        Some("adaptive") => true,
        Some("disabled") => false,
        other => {
            return Err(Invalid::new(format!(
                "thinking: Input tag '{}' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'",
                other.unwrap_or("")
            )))
        }
    };
    if on {
        if obj
            .get("temperature")
            .and_then(Value::as_f64)
            .is_some_and(|t| t != 1.0)
        {
            return Err(Invalid::new(
                "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
            ));
        }
        if obj.contains_key("top_k") {
            return Err(Invalid::new(
                "`top_k` must be unset when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
            ));
        }
        let forced = obj
            .get("tool_choice")
            .and_then(|c| str_of(c, "type"))
            .is_some_and(|t| t == "any" || t == "tool");
        if forced {
            return Err(Invalid::new(
                "Thinking may not be enabled when tool_choice forces tool use.",
            ));
        }
    }
    Ok(on)
}

fn check_system_field(system: &Value, path: &str) -> Result<(), Invalid> {
    match system {
        Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (i, b) in blocks.iter().enumerate() {
                if str_of(b, "type") != Some("text") || str_of(b, "text").is_none() {
                    return Err(Invalid::new(format!(
                        "{path}.{i}: Input should be a valid dictionary or object to extract fields from; only text blocks are allowed in system"
                    )));
                }
            }
            Ok(())
        }
        _ => Err(Invalid::new(format!(
            "{path}: Input should be a valid list"
        ))),
    }
}

/// A message after merging consecutive same-role messages.
struct Turn<'a> {
    /// Index of its first message.
    index: usize,
    role: &'a str,
    blocks: Vec<&'a Value>,
}

fn check_messages(messages: &[Value], mid_system: bool, thinking: bool) -> Result<(), Invalid> {
    let mut turns: Vec<Turn> = Vec::new();
    // Owned string content wrapped as a text block, so merging sees blocks only.
    for (i, m) in messages.iter().enumerate() {
        let role = str_of(m, "role").unwrap_or("");
        match role {
            "user" | "assistant" => {}
            "system" if mid_system => {
                if i == 0 {
                    return Err(Invalid::new(
                        "messages: first message must use the \"user\" role",
                    ));
                }
                match m.get("content") {
                    Some(c) => check_system_field(c, &format!("messages.{i}.content"))?,
                    None => return Err(field_required(&format!("messages.{i}.content"))),
                }
                continue;
            }
            _ => {
                return Err(Invalid::new(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )))
            }
        }
        let blocks: Vec<&Value> = match m.get("content") {
            Some(Value::String(_)) => vec![],
            Some(Value::Array(blocks)) => blocks.iter().collect(),
            None => return Err(field_required(&format!("messages.{i}.content"))),
            Some(_) => {
                return Err(Invalid::new(format!(
                    "messages.{i}.content: Input should be a valid list"
                )))
            }
        };
        let allowed: &[&str] = if role == "user" {
            &USER_BLOCKS
        } else {
            &ASSISTANT_BLOCKS
        };
        for (j, b) in blocks.iter().enumerate() {
            check_block(b, &format!("messages.{i}.content.{j}"), allowed)?;
        }
        match turns.last_mut() {
            Some(t) if t.role == role => t.blocks.extend(blocks),
            _ => turns.push(Turn {
                index: i,
                role,
                blocks,
            }),
        }
    }
    match turns.first() {
        None => return Err(Invalid::new("messages: at least one message is required")),
        Some(t) if t.role != "user" => {
            return Err(Invalid::new(
                "messages: first message must use the \"user\" role",
            ))
        }
        _ => {}
    }
    check_tool_pairing(&turns)?;
    if thinking {
        check_thinking_turn(&turns)?;
    }
    Ok(())
}

fn check_block(b: &Value, at: &str, allowed: &[&str]) -> Result<(), Invalid> {
    let ty = str_of(b, "type").unwrap_or("");
    if !allowed.contains(&ty) {
        let list: Vec<String> = allowed.iter().map(|t| format!("'{t}'")).collect();
        return Err(Invalid::new(format!(
            "{at}: Input tag '{ty}' found using 'type' does not match any of the expected tags: {}",
            list.join(", ")
        )));
    }
    let has = |k: &str| b.get(k).is_some_and(Value::is_string);
    match ty {
        "text" if !has("text") => return Err(field_required(&format!("{at}.text.text"))),
        "image" => check_source(b, &format!("{at}.image"), &IMAGE_TYPES)?,
        "document" => check_source(b, &format!("{at}.document"), &["application/pdf"])?,
        "tool_use" | "server_tool_use" => {
            for k in ["id", "name"] {
                if !has(k) {
                    return Err(field_required(&format!("{at}.{ty}.{k}")));
                }
            }
            if !b.get("input").is_some_and(Value::is_object) {
                return Err(field_required(&format!("{at}.{ty}.input")));
            }
        }
        "tool_result" => {
            if !has("tool_use_id") {
                return Err(field_required(&format!("{at}.tool_result.tool_use_id")));
            }
            if let Some(Value::Array(inner)) = b.get("content") {
                let inner_allowed = ["text", "image", "document", "search_result"];
                for (k, c) in inner.iter().enumerate() {
                    check_block(c, &format!("{at}.tool_result.content.{k}"), &inner_allowed)?;
                }
            }
        }
        "thinking" => {
            if !has("thinking") {
                return Err(field_required(&format!("{at}.thinking.thinking")));
            }
            if !has("signature") {
                return Err(field_required(&format!("{at}.thinking.signature")));
            }
        }
        "redacted_thinking" if !has("data") => {
            return Err(field_required(&format!("{at}.redacted_thinking.data")))
        }
        _ => {}
    }
    if let Some(cc) = b.get("cache_control") {
        if str_of(cc, "type") != Some("ephemeral") {
            return Err(Invalid::new(format!(
                "{at}.{ty}.cache_control.type: Input should be 'ephemeral'"
            )));
        }
    }
    Ok(())
}

/// `image.source` / `document.source`: base64 with a known media type, url,
/// file, or (documents) plain text and content blocks.
fn check_source(b: &Value, at: &str, media_types: &[&str]) -> Result<(), Invalid> {
    let Some(src) = b.get("source") else {
        return Err(field_required(&format!("{at}.source")));
    };
    let is_doc = at.ends_with(".document");
    let has = |k: &str| src.get(k).is_some_and(Value::is_string);
    match str_of(src, "type").unwrap_or("") {
        "base64" => {
            let mt = str_of(src, "media_type").unwrap_or("");
            if !media_types.contains(&mt) {
                let list: Vec<String> = media_types.iter().map(|t| format!("'{t}'")).collect();
                return Err(Invalid::new(format!(
                    "{at}.source.base64.media_type: Input should be {}",
                    list.join(", ")
                )));
            }
            if !has("data") {
                return Err(field_required(&format!("{at}.source.base64.data")));
            }
        }
        "url" if !has("url") => return Err(field_required(&format!("{at}.source.url.url"))),
        "file" if !has("file_id") => {
            return Err(field_required(&format!("{at}.source.file.file_id")))
        }
        "text" if is_doc => {
            if str_of(src, "media_type") != Some("text/plain") || !has("data") {
                return Err(field_required(&format!("{at}.source.text.data")));
            }
        }
        "content" if is_doc => {}
        "url" | "file" => {}
        other => {
            let tags = if is_doc {
                "'base64', 'text', 'content', 'url', 'file'"
            } else {
                "'base64', 'url', 'file'"
            };
            return Err(Invalid::new(format!(
                "{at}.source: Input tag '{other}' found using 'type' does not match any of the expected tags: {tags}"
            )));
        }
    }
    Ok(())
}

/// Every `tool_use` is answered by a `tool_result` in the next turn, and every
/// `tool_result` answers a `tool_use` of the turn before.
fn check_tool_pairing(turns: &[Turn<'_>]) -> Result<(), Invalid> {
    let ids = |t: &Turn<'_>, ty: &str, key: &str| -> Vec<String> {
        t.blocks
            .iter()
            .filter(|b| str_of(b, "type") == Some(ty))
            .filter_map(|b| str_of(b, key).map(str::to_string))
            .collect()
    };
    for (n, turn) in turns.iter().enumerate() {
        if turn.role == "user" {
            let results = ids(turn, "tool_result", "tool_use_id");
            let uses = match n.checked_sub(1).and_then(|p| turns.get(p)) {
                Some(prev) => ids(prev, "tool_use", "id"),
                None => Vec::new(),
            };
            let stray: Vec<&String> = results.iter().filter(|r| !uses.contains(r)).collect();
            if !stray.is_empty() {
                let list: Vec<&str> = stray.iter().map(|s| s.as_str()).collect();
                return Err(Invalid::new(format!(
                    "messages.{}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: {}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                    turn.index,
                    list.join(", ")
                )));
            }
        } else {
            let uses = ids(turn, "tool_use", "id");
            if uses.is_empty() {
                continue;
            }
            let results = match turns.get(n + 1) {
                Some(next) => ids(next, "tool_result", "tool_use_id"),
                None => Vec::new(),
            };
            let missing: Vec<&str> = uses
                .iter()
                .filter(|u| !results.contains(u))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                let at = turns.get(n + 1).map_or(turn.index, |t| t.index);
                return Err(Invalid::new(format!(
                    "messages.{at}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// With thinking on, the assistant turn of the current tool loop (the one
/// whose tool_use the last user turn answers) must begin with a thinking block.
fn check_thinking_turn(turns: &[Turn<'_>]) -> Result<(), Invalid> {
    let n = turns.len();
    let (Some(last), Some(prev)) = (
        n.checked_sub(1).and_then(|i| turns.get(i)),
        n.checked_sub(2).and_then(|i| turns.get(i)),
    ) else {
        return Ok(());
    };
    let answers_tools = last.role == "user"
        && last
            .blocks
            .iter()
            .any(|b| str_of(b, "type") == Some("tool_result"));
    if !answers_tools {
        return Ok(());
    }
    let first = prev
        .blocks
        .first()
        .and_then(|b| str_of(b, "type"))
        .unwrap_or("text");
    if first != "thinking" && first != "redacted_thinking" {
        return Err(Invalid::new(format!(
            "messages.{}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
            prev.index
        )));
    }
    Ok(())
}

/// Whether any message carries a `tool_use` or `tool_result` block.
fn history_has_tool_blocks(messages: &[Value]) -> bool {
    messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .any(|b| matches!(str_of(b, "type"), Some("tool_use" | "tool_result")))
}

fn check_tools(obj: &Map<String, Value>) -> Result<(), Invalid> {
    let Some(tools) = obj.get("tools").and_then(Value::as_array) else {
        return Ok(());
    };
    let mut names = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        let name = str_of(t, "name");
        match str_of(t, "type") {
            None | Some("custom") => {
                let Some(name) = name else {
                    return Err(field_required(&format!("tools.{i}.custom.name")));
                };
                if !t.get("input_schema").is_some_and(Value::is_object) {
                    return Err(field_required(&format!("tools.{i}.custom.input_schema")));
                }
                names.push(name);
            }
            Some(ty) if SERVER_TOOLS.iter().any(|p| ty.starts_with(p)) => {
                names.extend(name);
            }
            Some(ty) => {
                return Err(Invalid::new(format!(
                    "tools.{i}: Input tag '{ty}' found using 'type' does not match any of the expected tags: 'custom', 'web_search_20250305', 'web_fetch_20250910', 'code_execution_20250825', 'bash_20250124', 'text_editor_20250728', 'computer_20250124', 'memory_20250818', 'tool_search_tool_regex_20251119'"
                )))
            }
        }
    }
    if first_duplicate(names).is_some() {
        return Err(Invalid::new("tools: Tool names must be unique."));
    }
    Ok(())
}

/// `cache_control` breakpoints anywhere in the request.
fn count_cache_control(v: &Value) -> usize {
    match v {
        Value::Object(o) => {
            usize::from(o.get("cache_control").is_some_and(|c| !c.is_null()))
                + o.values().map(count_cache_control).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_cache_control).sum(),
        _ => 0,
    }
}
