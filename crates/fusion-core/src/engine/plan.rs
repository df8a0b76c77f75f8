//! Who takes part in a fusion run: the operator's defaults, or a request's
//! declaration (`{"type":"fusion",...}` / `{"type":"openrouter:fusion",...}`),
//! validated against the operator's limits and routes.

use crate::api::ApiError;
use crate::config::Config;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub panel: Vec<String>,
    pub judge: String,
    /// Writes the final answer after fusion ran, instead of the outer model.
    pub synthesizer: Option<String>,
}

impl Plan {
    pub fn defaults(config: &Config) -> Plan {
        Plan {
            panel: config.panel.iter().map(|m| m.model.clone()).collect(),
            judge: config.judge.clone(),
            synthesizer: config.synthesizer.clone(),
        }
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::invalid(message, Some("tools"))
}

/// The plan a declaration asks for; fields it leaves out take the operator's defaults.
pub fn from_declaration(config: &Config, decl: &Value) -> Result<Plan, ApiError> {
    let mut plan = Plan::defaults(config);
    let kind = decl.get("type").and_then(Value::as_str).unwrap_or("");
    let (panel, judge, synthesizer) = match kind {
        "fusion" => (
            decl.get("panel"),
            decl.get("judge"),
            decl.get("synthesizer"),
        ),
        "openrouter:fusion" => {
            let params = decl.get("parameters").unwrap_or(&Value::Null);
            if !(params.is_null() || params.is_object()) {
                return Err(invalid("`tools[].parameters` must be an object".into()));
            }
            (
                params.get("analysis_models"),
                params.get("model"),
                params.get("synthesizer"),
            )
        }
        other => {
            return Err(invalid(format!(
                "unknown fusion tool type `{other}`; use `fusion` or `openrouter:fusion`"
            )))
        }
    };
    if let Some(panel) = panel {
        plan.panel = parse_panel(config, panel)?;
    }
    if let Some(judge) = judge {
        let model = match judge {
            Value::Object(o) => o.get("model").and_then(Value::as_str),
            // The OpenRouter spelling names the model directly.
            Value::String(s) if kind == "openrouter:fusion" => Some(s.as_str()),
            _ => {
                return Err(invalid(
                    "the fusion `judge` must be an object with a `model`".into(),
                ))
            }
        }
        .ok_or_else(|| invalid("the fusion `judge` needs a `model` string".into()))?;
        plan.judge = served(config, model, "judge")?;
    }
    if let Some(s) = synthesizer {
        let model = match s {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o
                .get("model")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("the fusion `synthesizer` needs a `model` string".into()))?,
            Value::Null => return Ok(plan),
            _ => {
                return Err(invalid(
                    "the fusion `synthesizer` must be a model name".into(),
                ))
            }
        };
        plan.synthesizer = Some(served(config, model, "synthesizer")?);
    }
    Ok(plan)
}

fn parse_panel(config: &Config, panel: &Value) -> Result<Vec<String>, ApiError> {
    let members = panel
        .as_array()
        .ok_or_else(|| invalid("the fusion `panel` must be a list of members".into()))?;
    if members.is_empty() {
        return Err(invalid("the fusion `panel` is empty".into()));
    }
    let cap = config.limits.max_panel;
    if members.len() > cap {
        return Err(invalid(format!(
            "the fusion `panel` has {} members; at most {cap} are allowed",
            members.len()
        )));
    }
    members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let model = match m {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => o.get("model").and_then(Value::as_str),
                _ => None,
            }
            .ok_or_else(|| invalid(format!("fusion panel member {i} has no `model`")))?;
            served(config, model, "panel")
        })
        .collect()
}

fn served(config: &Config, model: &str, role: &str) -> Result<String, ApiError> {
    if model.is_empty() || config.resolve(model).is_none() {
        return Err(invalid(format!(
            "fusion {role} model `{model}` is not served by any configured upstream"
        )));
    }
    Ok(model.to_string())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let text = crate::config::DEFAULT_CONFIG.replace(r#""prefix": """#, r#""prefix": "mock-""#);
        Config::parse(text.as_bytes(), &|_| None).unwrap()
    }

    fn err(decl: Value) -> String {
        from_declaration(&config(), &decl).unwrap_err().message
    }

    #[test]
    fn both_spellings() {
        let c = config();
        let p = from_declaration(&c, &json!({"type": "fusion", "panel": [{"model": "mock-x"}], "judge": {"model": "mock-j"}, "synthesizer": "mock-s"})).unwrap();
        assert_eq!(
            p,
            Plan {
                panel: vec!["mock-x".into()],
                judge: "mock-j".into(),
                synthesizer: Some("mock-s".into())
            }
        );
        let p = from_declaration(&c, &json!({"type": "openrouter:fusion", "parameters": {"analysis_models": ["mock-1", "mock-2"], "model": "mock-j"}})).unwrap();
        assert_eq!(p.panel, vec!["mock-1", "mock-2"]);
        assert_eq!(p.judge, "mock-j");
        let p = from_declaration(&c, &json!({"type": "fusion"})).unwrap();
        assert_eq!(p, Plan::defaults(&c));
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
            err(json!({"type": "fusion", "panel": [{"model": "gpt-9"}]}))
                .contains("`gpt-9` is not served")
        );
        assert!(err(json!({"type": "fusion", "judge": "mock-j"})).contains("must be an object"));
        assert!(err(json!({"type": "fusion-x"})).contains("unknown fusion tool type"));
    }
}
