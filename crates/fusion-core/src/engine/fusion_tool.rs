//! The fusion function the outer model sees, and the tool result it gets back.

use crate::wire::neutral::ToolDef;
use crate::wire::FUSION_TOOL;
use serde_json::{json, Value};

/// The `type` of a fusion server-tool entry in `tools`: ours, and OpenRouter's spelling
/// (whose fields sit under `parameters`).
pub const TOOL_TYPE: &str = FUSION_TOOL;
pub const OPENROUTER_TOOL_TYPE: &str = crate::wire::OPENROUTER_FUSION_TYPE;

/// Whether a `tools` entry's `type` declares the fusion server tool (the wire layer's rule).
pub use crate::wire::is_fusion_type;

pub fn tool_def() -> ToolDef {
    ToolDef {
        name: FUSION_TOOL.to_string(),
        description:
            "Ask a panel of independent AI models to answer the conversation in parallel, \
            and get back their answers with a judge's structured comparison (consensus, \
            contradictions, partial coverage, unique insights, blind spots). Use it for hard, \
            high-stakes or contested questions; then write the final answer from the result."
                .to_string(),
        parameters: json!({
            "type": "object",
            "properties": {"question": {"type": "string", "description": "The question the panel should answer."}},
        }),
    }
}

/// Characters of the question the filter's own fusion call (alias, forced
/// fusion) carries: the panel answers the conversation, not this argument, and
/// every later outer round resends the call, so a 1 MB question is not copied
/// into it.
pub const QUESTION_PREVIEW_CHARS: usize = 200;

/// The arguments of the fusion call the filter makes itself.
pub fn forced_arguments(question: &str) -> String {
    let mut preview = crate::text::char_span(question, 0, QUESTION_PREVIEW_CHARS).to_string();
    if preview.len() < question.len() {
        preview.push('…');
    }
    crate::text::json(&json!({ "question": preview }))
}

/// A panel member's answer or failure, as the tool result lists it.
pub struct MemberOutcome<'a> {
    pub model: &'a str,
    pub answer: Result<&'a str, String>,
}

/// `{"status":"ok","analysis"?,"responses","failed_models"}`, or the error form
/// when no member answered.
pub fn tool_result(members: &[MemberOutcome<'_>], analysis: Option<&Value>) -> Value {
    let responses: Vec<Value> = members
        .iter()
        .filter_map(|m| {
            m.answer
                .as_ref()
                .ok()
                .map(|a| json!({"model": m.model, "content": a}))
        })
        .collect();
    let failed: Vec<Value> = members
        .iter()
        .filter_map(|m| {
            m.answer
                .as_ref()
                .err()
                .map(|r| json!({"model": m.model, "reason": r}))
        })
        .collect();
    if responses.is_empty() {
        let reasons: Vec<&str> = members
            .iter()
            .filter_map(|m| m.answer.as_ref().err().map(String::as_str))
            .collect();
        let failure_reason = if reasons.contains(&"rate_limited") {
            "rate_limited"
        } else if reasons.contains(&"insufficient_credits") {
            "insufficient_credits"
        } else {
            "all_panels_failed"
        };
        let mut out = json!({
            "status": "error",
            "error": "no panel member produced a usable answer; answer without the panel",
            "failure_reason": failure_reason,
        });
        // The lists go in as built (`json!` would copy each through serde).
        if let Some(obj) = out.as_object_mut() {
            obj.insert("failed_models".into(), Value::Array(failed));
        }
        return out;
    }
    let mut out = json!({"status": "ok"});
    if let Some(obj) = out.as_object_mut() {
        obj.insert("responses".into(), Value::Array(responses));
        obj.insert("failed_models".into(), Value::Array(failed));
        if let Some(a) = analysis {
            obj.insert("analysis".into(), a.clone());
        }
    }
    out
}

pub fn capped_result() -> Value {
    json!({
        "status": "error",
        "error": "fusion runs at most once per turn; answer with the result you already have",
        "failure_reason": "fusion_invocation_capped",
    })
}
