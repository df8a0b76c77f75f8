//! Who takes part in a fusion run and with which parameters: the operator's
//! defaults or a named preset, overridden by what the request declares (the
//! fusion tool `{"type":"fusion",...}` / `{"type":"openrouter:fusion",...}`, or
//! the merge-mode `fusion` block), validated against the operator's limits and routes.

use super::call;
use super::fusion_tool::{OPENROUTER_TOOL_TYPE, TOOL_TYPE};
use crate::config::{Config, Preset, Quorum};
use crate::text::decimal;
use crate::wire::neutral::GenParams;
use crate::wire::{Api, ApiError};
use serde_json::{Map, Value};

/// One panel member: the model and the provider tools it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub model: String,
    pub tools: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub panel: Vec<Member>,
    pub judge: String,
    /// Writes the final answer after fusion ran, instead of the outer model.
    pub synthesizer: Option<String>,
    pub quorum: Quorum,
    /// The preset the plan started from, if the request named one.
    pub preset: Option<String>,
    /// Parameter overrides for the panel members' calls.
    pub panel_params: GenParams,
}

impl Plan {
    pub fn defaults(config: &Config) -> Plan {
        Plan::from_preset(config, &config.defaults, None)
    }

    fn from_preset(config: &Config, preset: &Preset, name: Option<&str>) -> Plan {
        Plan {
            panel: preset
                .panel
                .iter()
                .map(|m| member(config, &m.model, m.tools.clone()))
                .collect(),
            judge: preset.judge.clone(),
            synthesizer: preset.synthesizer.clone(),
            quorum: preset.quorum,
            preset: name.map(str::to_string),
            panel_params: GenParams::default(),
        }
    }

    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.panel.iter().map(|m| m.model.as_str())
    }
}

/// A member with its own tools followed by the operator's `member_tools`.
fn member(config: &Config, model: &str, mut tools: Vec<Value>) -> Member {
    tools.extend(config.member_tools.iter().cloned());
    Member {
        model: model.to_string(),
        tools,
    }
}

/// Where the request spelled its fusion fields; error messages name it.
#[derive(Debug, Clone, Copy)]
struct Source {
    param: &'static str,
    panel_key: &'static str,
    judge_key: &'static str,
    synthesizer_key: &'static str,
}

const TOOL: Source = Source {
    param: "tools",
    panel_key: "panel",
    judge_key: "judge",
    synthesizer_key: "synthesizer",
};
const OPENROUTER_TOOL: Source = Source {
    param: "tools",
    panel_key: "analysis_models",
    judge_key: "model",
    synthesizer_key: "synthesizer",
};
const MERGE_BLOCK: Source = Source {
    param: "fusion",
    panel_key: "analysis_models",
    judge_key: "judge",
    synthesizer_key: "synthesis_model",
};

/// The plan a fusion tool declaration asks for; fields it leaves out take the defaults.
pub fn from_declaration(config: &Config, decl: &Value) -> Result<Plan, ApiError> {
    let kind = decl.get("type").and_then(Value::as_str).unwrap_or("");
    let empty = Map::new();
    let (fields, source) = match kind {
        TOOL_TYPE => (decl.as_object().unwrap_or(&empty), TOOL),
        OPENROUTER_TOOL_TYPE => match decl.get("parameters") {
            None | Some(Value::Null) => (&empty, OPENROUTER_TOOL),
            Some(Value::Object(o)) => (o, OPENROUTER_TOOL),
            Some(_) => {
                return Err(ApiError::invalid(
                    "`tools[].parameters` must be an object",
                    Some("tools"),
                ))
            }
        },
        other => {
            return Err(ApiError::invalid(
                format!(
                "unknown fusion tool type `{other}`; use `{TOOL_TYPE}` or `{OPENROUTER_TOOL_TYPE}`"
            ),
                Some("tools"),
            ))
        }
    };
    build(config, fields, source)
}

/// The plan of a merge-mode request's `fusion` block (`analysis_models`,
/// `synthesis_model`, `preset`, parameter overrides).
pub fn from_merge_block(config: &Config, block: Option<&Value>) -> Result<Plan, ApiError> {
    let empty = Map::new();
    let fields = match block {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(ApiError::invalid(
                "`fusion` must be an object",
                Some("fusion"),
            ))
        }
    };
    build(config, fields, MERGE_BLOCK)
}

fn build(config: &Config, fields: &Map<String, Value>, src: Source) -> Result<Plan, ApiError> {
    let invalid = |message: String| ApiError::invalid(message, Some(src.param));
    let mut plan = match fields.get("preset") {
        None | Some(Value::Null) => Plan::defaults(config),
        Some(Value::String(name)) => {
            let preset = config.presets.get(name).ok_or_else(|| {
                let known: Vec<&str> = config.presets.keys().map(String::as_str).collect();
                invalid(format!(
                    "unknown fusion preset `{name}`; configured presets: [{}]",
                    crate::text::join(&known, ", ")
                ))
            })?;
            Plan::from_preset(config, preset, Some(name))
        }
        Some(_) => return Err(invalid("the fusion `preset` must be a name".into())),
    };
    if let Some(panel) = fields.get(src.panel_key).filter(|v| !v.is_null()) {
        plan.panel = parse_panel(config, panel, src)?;
    }
    if plan.panel.is_empty() {
        return Err(invalid(format!(
            "no fusion panel: the request names none (`{}`) and the operator configured no default",
            src.panel_key
        )));
    }
    if let Some(judge) = fields.get(src.judge_key).filter(|v| !v.is_null()) {
        let model = match judge {
            Value::Object(o) => o.get("model").and_then(Value::as_str),
            // The OpenRouter spelling names the model directly.
            Value::String(s) if src.judge_key == "model" => Some(s.as_str()),
            _ => {
                return Err(invalid(
                    "the fusion `judge` must be an object with a `model`".into(),
                ))
            }
        }
        .ok_or_else(|| invalid("the fusion `judge` needs a `model` string".into()))?;
        plan.judge = served(config, model, "judge", src)?;
    }
    if let Some(s) = fields.get(src.synthesizer_key).filter(|v| !v.is_null()) {
        let key = src.synthesizer_key;
        let model = match s {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o
                .get("model")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("the fusion `{key}` needs a `model` string")))?,
            _ => return Err(invalid(format!("the fusion `{key}` must be a model name"))),
        };
        plan.synthesizer = Some(served(config, model, key, src)?);
    }
    plan.panel_params = overrides(config, fields, src)?;
    Ok(plan)
}

fn parse_panel(config: &Config, panel: &Value, src: Source) -> Result<Vec<Member>, ApiError> {
    let invalid = |message: String| ApiError::invalid(message, Some(src.param));
    let key = src.panel_key;
    let members = panel
        .as_array()
        .ok_or_else(|| invalid(format!("the fusion `{key}` must be a list of models")))?;
    if members.is_empty() {
        return Err(invalid(format!("the fusion `{key}` is empty")));
    }
    let cap = config.limits.max_panel;
    if members.len() > cap {
        return Err(invalid(format!(
            "the fusion `{key}` has {} members; at most {cap} are allowed",
            members.len()
        )));
    }
    members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (model, tools) = match m {
                Value::String(s) => (Some(s.as_str()), Vec::new()),
                Value::Object(o) => (
                    o.get("model").and_then(Value::as_str),
                    member_tools(o.get("tools"), i, src)?,
                ),
                _ => (None, Vec::new()),
            };
            let model =
                model.ok_or_else(|| invalid(format!("fusion panel member {i} has no `model`")))?;
            Ok(member(config, &served(config, model, "panel", src)?, tools))
        })
        .collect()
}

fn member_tools(tools: Option<&Value>, i: usize, src: Source) -> Result<Vec<Value>, ApiError> {
    let Some(tools) = tools.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    match tools.as_array() {
        Some(list)
            if list
                .iter()
                .all(|t| t.get("type").is_some_and(Value::is_string)) =>
        {
            Ok(list.clone())
        }
        _ => Err(ApiError::invalid(
            format!("fusion panel member {i}: `tools` must be a list of objects with a `type`"),
            Some(src.param),
        )),
    }
}

fn served(config: &Config, model: &str, role: &str, src: Source) -> Result<String, ApiError> {
    if model.is_empty() || config.resolve(model).is_none() {
        return Err(ApiError::invalid(
            format!("fusion {role} model `{model}` is not served by any configured upstream"),
            Some(src.param),
        ));
    }
    Ok(model.to_string())
}

/// Parameter overrides for the panel, bounded by the operator's limits.
fn overrides(
    config: &Config,
    fields: &Map<String, Value>,
    src: Source,
) -> Result<GenParams, ApiError> {
    let invalid = |message: String| ApiError::invalid(message, Some(src.param));
    let limits = &config.limits;
    let get = |key: &str| fields.get(key).filter(|v| !v.is_null());
    let mut p = GenParams::default();
    let tokens = get("max_completion_tokens").or_else(|| get("max_tokens"));
    if let Some(v) = tokens {
        let cap = limits.max_completion_tokens;
        p.max_tokens = Some(count_within(v, cap).ok_or_else(|| {
            invalid("fusion `max_completion_tokens` must be a positive integer".into())
        })?);
    }
    if let Some(v) = get("max_tool_calls") {
        let cap = limits.max_tool_calls;
        p.max_tool_calls =
            Some(count_within(v, cap).ok_or_else(|| {
                invalid("fusion `max_tool_calls` must be a positive integer".into())
            })?);
    }
    for (key, slot) in [("temperature", &mut p.temperature), ("top_p", &mut p.top_p)] {
        if let Some(v) = get(key) {
            *slot = Some(sampling(v, key).map_err(|(lo, hi)| {
                invalid(format!(
                    "fusion `{key}` must be a number from {} to {}",
                    decimal(lo),
                    decimal(hi)
                ))
            })?);
        }
    }
    if let Some(v) = get("stop") {
        let ok = match v {
            Value::String(_) => true,
            Value::Array(a) => a.len() <= 4 && a.iter().all(Value::is_string),
            _ => false,
        };
        if !ok {
            return Err(invalid(
                "fusion `stop` must be a string or a list of at most 4 strings".into(),
            ));
        }
        p.stop = Some(v.clone());
    }
    if let Some(v) = get("reasoning") {
        p.reasoning = Some(reasoning(v).ok_or_else(|| {
            invalid(
                "fusion `reasoning` must be an effort (`minimal`, `low`, `medium`, `high`) or {\"effort\": ...}"
                    .into(),
            )
        })?);
    }
    Ok(p)
}

/// A count (tokens, tool calls): a positive integer, lowered to the operator's cap.
fn count_within(v: &Value, cap: u64) -> Option<u64> {
    v.as_u64().filter(|n| *n >= 1).map(|n| n.min(cap))
}

/// A sampling parameter (`temperature`, `top_p`) within the widest range any
/// API takes ([`call::widest_range`]); `Err` carries that range for the message.
fn sampling(v: &Value, key: &str) -> Result<f64, (f64, f64)> {
    let (lo, hi) = call::widest_range(key).unwrap_or((0.0, 0.0));
    v.as_f64().filter(|t| (lo..=hi).contains(t)).ok_or((lo, hi))
}

/// The one rule for the client's own generation parameters, whatever the request
/// form (alias, declaration, merge, preset, and the refusal paths that send the
/// request on without fusion): counts above the operator's caps
/// (`limits.max_completion_tokens`, `limits.max_tool_calls`) are lowered to the
/// cap in the body itself, so every call built from it carries the cap; a value
/// no API accepts (a count that is not a positive integer, `temperature`
/// outside 0..2, `top_p` outside 0..1) is refused with a 400 naming it.
pub fn bound_client_params(
    config: &Config,
    api: Api,
    body: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let limits = &config.limits;
    let counts: &[(&str, u64)] = match api {
        Api::Chat => &[
            ("max_tokens", limits.max_completion_tokens),
            ("max_completion_tokens", limits.max_completion_tokens),
        ],
        Api::Responses => &[
            ("max_output_tokens", limits.max_completion_tokens),
            ("max_tool_calls", limits.max_tool_calls),
        ],
        Api::Messages => &[("max_tokens", limits.max_completion_tokens)],
    };
    for &(key, cap) in counts {
        let Some(v) = body.get_mut(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let n = count_within(v, cap).ok_or_else(|| {
            ApiError::invalid(format!("`{key}` must be a positive integer"), Some(key))
        })?;
        *v = Value::from(n);
    }
    for key in ["temperature", "top_p"] {
        let Some(v) = body.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        if let Err((lo, hi)) = sampling(v, key) {
            return Err(ApiError::invalid(
                format!(
                    "`{key}` must be a number from {} to {}",
                    decimal(lo),
                    decimal(hi)
                ),
                Some(key),
            ));
        }
    }
    Ok(())
}

/// A reasoning setting, normalised to `{"effort": "..."}` (the wire layer's normaliser).
pub use crate::wire::reasoning;

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let text = crate::config::DEFAULT_CONFIG
            .replace(r#""prefix": """#, r#""prefix": "mock-""#)
            // OpenAI's built-in tools need a Responses upstream (config refuses them on Chat).
            .replace(r#""api": "chat""#, r#""api": "responses""#)
            .replace(
                r#""judge": {"model": "mock-judge"},"#,
                r#""judge": {"model": "mock-judge"},
                   "member_tools": [{"type": "web_search"}],
                   "presets": {"fast": {"panel": [{"model": "mock-f", "tools": [{"type": "code"}]}], "min_panel_answers": 1, "panel_grace_ms": 50}},"#,
            );
        Config::parse(text.as_bytes(), &|_| None).unwrap()
    }

    fn err(decl: Value) -> String {
        from_declaration(&config(), &decl).unwrap_err().message
    }

    #[test]
    fn both_spellings() {
        let c = config();
        let p = from_declaration(&c, &json!({"type": "fusion", "panel": [{"model": "mock-x"}], "judge": {"model": "mock-j"}, "synthesizer": "mock-s"})).unwrap();
        assert_eq!(p.models().collect::<Vec<_>>(), vec!["mock-x"]);
        assert_eq!(p.judge, "mock-j");
        assert_eq!(p.synthesizer.as_deref(), Some("mock-s"));
        let p = from_declaration(&c, &json!({"type": "openrouter:fusion", "parameters": {"analysis_models": ["mock-1", "mock-2"], "model": "mock-j"}})).unwrap();
        assert_eq!(p.models().collect::<Vec<_>>(), vec!["mock-1", "mock-2"]);
        assert_eq!(p.judge, "mock-j");
        let p = from_declaration(&c, &json!({"type": "fusion"})).unwrap();
        assert_eq!(p, Plan::defaults(&c));
    }

    #[test]
    fn member_tools_follow_each_members_own() {
        let c = config();
        let p = from_declaration(
            &c,
            &json!({"type": "fusion", "panel": [{"model": "mock-x", "tools": [{"type": "file_search"}]}, "mock-y"]}),
        )
        .unwrap();
        let tools: Vec<Vec<&str>> = p
            .panel
            .iter()
            .map(|m| m.tools.iter().filter_map(|t| t["type"].as_str()).collect())
            .collect();
        assert_eq!(
            tools,
            vec![vec!["file_search", "web_search"], vec!["web_search"]]
        );
    }

    #[test]
    fn presets_select_panel_and_quorum() {
        let c = config();
        let p = from_declaration(&c, &json!({"type": "fusion", "preset": "fast"})).unwrap();
        assert_eq!(p.models().collect::<Vec<_>>(), vec!["mock-f"]);
        assert_eq!(p.panel[0].tools.len(), 2);
        assert_eq!(
            p.quorum,
            Quorum {
                min_answers: 1,
                grace_ms: 50
            }
        );
        assert_eq!(p.preset.as_deref(), Some("fast"));
        assert_eq!(p.judge, "mock-judge");
        assert!(err(json!({"type": "fusion", "preset": "slow"}))
            .contains("unknown fusion preset `slow`; configured presets: [fast]"));
    }

    #[test]
    fn overrides_within_limits_reach_the_panel_params() {
        let c = config();
        let p = from_declaration(
            &c,
            &json!({"type": "fusion", "max_completion_tokens": 300, "temperature": 0.3, "top_p": 0.8,
                    "stop": ["END"], "reasoning": "low", "max_tool_calls": 2}),
        )
        .unwrap();
        let q = &p.panel_params;
        assert_eq!(q.max_tokens, Some(300));
        assert_eq!(q.temperature, Some(0.3));
        assert_eq!(q.top_p, Some(0.8));
        assert_eq!(q.stop, Some(json!(["END"])));
        assert_eq!(q.reasoning, Some(json!({"effort": "low"})));
        assert_eq!(q.max_tool_calls, Some(2));
        // Counts above the operator's caps are lowered to them; below 1 is refused.
        let p = from_declaration(
            &c,
            &json!({"type": "fusion", "max_completion_tokens": 1_000_000_000u64, "max_tool_calls": 17}),
        )
        .unwrap();
        assert_eq!(p.panel_params.max_tokens, Some(32768));
        assert_eq!(p.panel_params.max_tool_calls, Some(16));
        assert!(err(json!({"type": "fusion", "max_completion_tokens": 0})).contains("positive"));
        assert!(err(json!({"type": "fusion", "max_tool_calls": -1})).contains("positive"));
        assert!(err(json!({"type": "fusion", "temperature": 3})).contains("from 0 to 2"));
        assert!(err(json!({"type": "fusion", "top_p": "x"})).contains("from 0 to 1"));
        assert!(err(json!({"type": "fusion", "stop": [1]})).contains("at most 4 strings"));
        assert!(err(json!({"type": "fusion", "reasoning": "max"})).contains("`reasoning`"));
    }

    #[test]
    fn client_parameters_obey_the_same_rule_in_every_api() {
        let c = config();
        let bound = |api: Api, body: Value| {
            let mut obj = body.as_object().cloned().unwrap();
            bound_client_params(&c, api, &mut obj).map(|()| Value::Object(obj))
        };
        let b = bound(
            Api::Chat,
            json!({"max_tokens": 1_000_000_000u64, "max_completion_tokens": u64::MAX}),
        )
        .unwrap();
        assert_eq!(
            (
                b["max_tokens"].as_u64(),
                b["max_completion_tokens"].as_u64()
            ),
            (Some(32768), Some(32768))
        );
        let b = bound(
            Api::Responses,
            json!({"max_output_tokens": 99_999_999, "max_tool_calls": 99}),
        )
        .unwrap();
        assert_eq!(
            (
                b["max_output_tokens"].as_u64(),
                b["max_tool_calls"].as_u64()
            ),
            (Some(32768), Some(16))
        );
        let b = bound(
            Api::Messages,
            json!({"max_tokens": 500, "temperature": 1, "top_p": null}),
        )
        .unwrap();
        assert_eq!(b["max_tokens"], 500);
        let e = bound(Api::Chat, json!({"temperature": 50})).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("temperature")));
        assert!(bound(Api::Messages, json!({"temperature": -3})).is_err());
        assert!(bound(Api::Responses, json!({"top_p": 1.5})).is_err());
        assert!(bound(Api::Chat, json!({"max_tokens": -1})).is_err());
        assert!(bound(Api::Messages, json!({"max_tokens": "9"})).is_err());
    }

    #[test]
    fn merge_block_names_panel_and_synthesis_model() {
        let c = config();
        let p = from_merge_block(
            &c,
            Some(&json!({"analysis_models": ["mock-1", "mock-2"], "synthesis_model": "mock-s"})),
        )
        .unwrap();
        assert_eq!(p.models().collect::<Vec<_>>(), vec!["mock-1", "mock-2"]);
        assert_eq!(p.synthesizer.as_deref(), Some("mock-s"));
        assert_eq!(from_merge_block(&c, None).unwrap(), Plan::defaults(&c));
        let e = from_merge_block(&c, Some(&json!({"analysis_models": []}))).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.param.as_deref()),
            ("the fusion `analysis_models` is empty", Some("fusion"))
        );
        assert!(from_merge_block(&c, Some(&json!("x"))).is_err());
    }

    #[test]
    fn every_declaration_error_names_the_problem() {
        assert!(err(json!({"type": "fusion", "panel": "mock-a"})).contains("must be a list"));
        assert!(err(json!({"type": "fusion", "panel": []})).contains("is empty"));
        let nine: Vec<Value> = (0..9)
            .map(|i| json!({"model": format!("mock-{i}")}))
            .collect();
        assert!(err(json!({"type": "fusion", "panel": nine})).contains("at most 8"));
        assert!(err(json!({"type": "fusion", "panel": [{"tools": []}]})).contains("has no `model`"));
        assert!(
            err(json!({"type": "fusion", "panel": [{"model": "mock-a", "tools": [1]}]}))
                .contains("`tools` must be a list")
        );
        assert!(
            err(json!({"type": "fusion", "panel": [{"model": "gpt-9"}]}))
                .contains("`gpt-9` is not served")
        );
        assert!(err(json!({"type": "fusion", "judge": "mock-j"})).contains("must be an object"));
        assert!(err(json!({"type": "fusion-x"})).contains("unknown fusion tool type"));
    }
}
