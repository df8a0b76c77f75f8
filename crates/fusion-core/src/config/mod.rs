//! The filter configuration: parsed, validated and compiled once, in `on_configure`.
//!
//! An empty configuration selects the embedded default: the project's mock LLM
//! server behind the Envoy cluster `mock`, so the demo works without keys.

use crate::api::Api;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

pub const DEFAULT_CONFIG: &str = r#"{
  "aliases": ["fusion"],
  "outer_model": "mock-outer",
  "panel": [{"model": "mock-a"}, {"model": "mock-b"}, {"model": "mock-c"}],
  "judge": {"model": "mock-judge"},
  "upstreams": {"mock": {"cluster": "mock", "authority": "mock", "api": "chat"}},
  "routes": [{"prefix": "", "upstream": "mock"}]
}"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_aliases")]
    aliases: Vec<String>,
    outer_model: String,
    panel: Vec<PanelMember>,
    judge: JudgeSpec,
    #[serde(default)]
    synthesizer: Option<String>,
    #[serde(default = "default_depth_header")]
    depth_header: String,
    #[serde(default = "default_max_depth")]
    max_depth: u32,
    #[serde(default)]
    limits: Limits,
    upstreams: BTreeMap<String, RawUpstream>,
    routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PanelMember {
    pub model: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct JudgeSpec {
    model: String,
}

/// Per-turn bounds; every one is enforced by the engine.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_panel: usize,
    pub max_rounds: u32,
    pub tool_timeout_ms: u64,
    pub turn_timeout_ms: u64,
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_panel: 8,
            max_rounds: 10,
            tool_timeout_ms: 30_000,
            turn_timeout_ms: 120_000,
            max_request_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    api: Api,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    auth: RawAuth,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
enum RawAuth {
    #[default]
    None,
    /// `authorization: Bearer $env`
    Bearer { env: String },
    /// `<header>: $env`, e.g. Anthropic's `x-api-key`.
    Header { name: String, env: String },
    /// Forward the client's own `authorization` and `x-api-key` headers.
    Forward,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    strip_prefix: bool,
    upstream: String,
}

fn default_aliases() -> Vec<String> {
    vec!["fusion".to_string()]
}
fn default_depth_header() -> String {
    "x-fusion-depth".to_string()
}
fn default_max_depth() -> u32 {
    1
}

/// How a call to an upstream authenticates. The secret is never printed.
#[derive(Clone, PartialEq)]
pub enum Auth {
    None,
    Header { name: String, value: String },
    Forward,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Header { name, .. } => write!(f, "Header({name}: <redacted>)"),
            Auth::Forward => f.write_str("Forward"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub cluster: String,
    pub authority: String,
    pub api: Api,
    pub path: String,
    pub auth: Auth,
}

#[derive(Debug, Clone, PartialEq)]
struct Route {
    prefix: Option<String>,
    models: Vec<String>,
    strip_prefix: bool,
    upstream: usize,
}

/// Where one model is served: the upstream and the model name it knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target<'a> {
    pub upstream: &'a Upstream,
    pub model: &'a str,
}

/// The compiled configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub aliases: Vec<String>,
    pub outer_model: String,
    pub panel: Vec<PanelMember>,
    pub judge: String,
    pub synthesizer: Option<String>,
    pub depth_header: String,
    pub max_depth: u32,
    pub limits: Limits,
    upstreams: Vec<Upstream>,
    routes: Vec<Route>,
}

/// Why a configuration was rejected: the field and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid fusion configuration: `{}`: {}",
            self.field, self.reason
        )
    }
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Parse and validate. `env` looks up credentials (the host passes `std::env::var`).
    pub fn parse(text: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = if text.iter().all(u8::is_ascii_whitespace) {
            DEFAULT_CONFIG.as_bytes()
        } else {
            text
        };
        let raw: RawConfig = serde_json::from_slice(text).map_err(|e| {
            let msg = e.to_string();
            // serde names unknown and missing fields in its message; keep it whole.
            let field = field_in_serde_error(&msg)
                .unwrap_or("(document)")
                .to_string();
            err(field, msg)
        })?;
        compile(raw, env)
    }

    pub fn default_mock() -> Result<Config, ConfigError> {
        Config::parse(b"", &|_| None)
    }

    /// Which upstream serves `model`, and under which name. `None`: no rule serves it.
    pub fn resolve<'a>(&'a self, model: &'a str) -> Option<Target<'a>> {
        self.routes.iter().find_map(|r| {
            let name = if r.models.iter().any(|m| m == model) {
                model
            } else {
                let prefix = r.prefix.as_deref()?;
                let rest = model.strip_prefix(prefix)?;
                if r.strip_prefix {
                    rest
                } else {
                    model
                }
            };
            Some(Target {
                upstream: self.upstreams.get(r.upstream)?,
                model: name,
            })
        })
    }

    pub fn is_alias(&self, model: &str) -> bool {
        self.aliases.iter().any(|a| a == model)
    }
}

fn field_in_serde_error(msg: &str) -> Option<&str> {
    let start = msg.find('`')? + 1;
    let len = msg.get(start..)?.find('`')?;
    msg.get(start..start + len)
}

fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if raw.aliases.is_empty() || raw.aliases.iter().any(|a| a.is_empty()) {
        return Err(err(
            "aliases",
            "must list at least one non-empty model name",
        ));
    }
    let l = &raw.limits;
    if l.max_panel == 0 {
        return Err(err("limits.max_panel", "must be at least 1"));
    }
    if l.max_rounds == 0 {
        return Err(err("limits.max_rounds", "must be at least 1"));
    }
    if l.tool_timeout_ms == 0 || l.turn_timeout_ms == 0 {
        return Err(err(
            "limits.tool_timeout_ms / limits.turn_timeout_ms",
            "must be positive (a callout timeout of 0 would mean no timeout)",
        ));
    }
    if raw.depth_header.is_empty()
        || !raw
            .depth_header
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err("depth_header", "must be a lowercase HTTP header name"));
    }
    if raw.max_depth == 0 {
        return Err(err("max_depth", "must be at least 1"));
    }
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    let mut index = BTreeMap::new();
    for (name, u) in raw.upstreams {
        let field = format!("upstreams.{name}");
        if u.cluster.is_empty() {
            return Err(err(
                format!("{field}.cluster"),
                "must name an Envoy cluster",
            ));
        }
        let auth = match u.auth {
            RawAuth::None => Auth::None,
            RawAuth::Forward => Auth::Forward,
            RawAuth::Bearer { env: var } => Auth::Header {
                name: "authorization".into(),
                value: format!("Bearer {}", secret(&field, &var, env)?),
            },
            RawAuth::Header { name, env: var } => Auth::Header {
                name: name.to_ascii_lowercase(),
                value: secret(&field, &var, env)?,
            },
        };
        index.insert(name.clone(), upstreams.len());
        upstreams.push(Upstream {
            authority: u.authority.unwrap_or_else(|| u.cluster.clone()),
            path: u.path.unwrap_or_else(|| u.api.default_path().to_string()),
            name,
            cluster: u.cluster,
            api: u.api,
            auth,
        });
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let upstream = *index.get(&r.upstream).ok_or_else(|| {
            err(
                format!("routes[{i}].upstream"),
                format!("`{}` is not a configured upstream", r.upstream),
            )
        })?;
        if r.prefix.is_none() && r.models.is_empty() {
            return Err(err(format!("routes[{i}]"), "needs `prefix` or `models`"));
        }
        routes.push(Route {
            prefix: r.prefix,
            models: r.models,
            strip_prefix: r.strip_prefix,
            upstream,
        });
    }
    let config = Config {
        aliases: raw.aliases,
        outer_model: raw.outer_model,
        panel: raw.panel,
        judge: raw.judge.model,
        synthesizer: raw.synthesizer,
        depth_header: raw.depth_header,
        max_depth: raw.max_depth,
        limits: raw.limits,
        upstreams,
        routes,
    };
    if config.panel.is_empty() {
        return Err(err("panel", "must have at least one member"));
    }
    if config.panel.len() > config.limits.max_panel {
        return Err(err(
            "panel",
            format!(
                "has {} members, more than limits.max_panel ({})",
                config.panel.len(),
                config.limits.max_panel
            ),
        ));
    }
    let mut models: Vec<(String, &str)> = vec![
        ("outer_model".into(), config.outer_model.as_str()),
        ("judge.model".into(), config.judge.as_str()),
    ];
    for (i, m) in config.panel.iter().enumerate() {
        models.push((format!("panel[{i}].model"), m.model.as_str()));
    }
    if let Some(s) = &config.synthesizer {
        models.push(("synthesizer".into(), s.as_str()));
    }
    for (field, model) in models {
        if config.resolve(model).is_none() {
            return Err(err(field, format!("no route serves model `{model}`")));
        }
    }
    Ok(config)
}

fn secret(
    field: &str,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
        err(
            format!("{field}.auth.env"),
            format!("environment variable `{var}` is not set (pass it with vm_config.environment_variables)"),
        )
    })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn empty_config_is_the_mock_default() {
        let c = Config::parse(b"  ", &no_env).unwrap();
        assert_eq!(c.aliases, vec!["fusion"]);
        assert_eq!(c.panel.len(), 3);
        let t = c.resolve("mock-a").unwrap();
        assert_eq!(t.upstream.cluster, "mock");
        assert_eq!(t.upstream.path, "/v1/chat/completions");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = Config::parse(br#"{"aliasez": []}"#, &no_env).unwrap_err();
        assert_eq!(e.field, "aliasez");
    }

    #[test]
    fn unserved_model_is_rejected() {
        let text = DEFAULT_CONFIG
            .replace(r#""prefix": """#, r#""prefix": "mock-""#)
            .replace("mock-outer", "gpt-x");
        let e = Config::parse(text.as_bytes(), &no_env).unwrap_err();
        assert_eq!(e.field, "outer_model");
    }

    #[test]
    fn prefix_strip_and_explicit_models() {
        let text = r#"{"outer_model": "oa/gpt", "panel": [{"model": "claude"}], "judge": {"model": "oa/gpt"},
          "upstreams": {"oa": {"cluster": "openai", "api": "chat", "auth": {"type": "bearer", "env": "K"}},
                        "an": {"cluster": "anthropic", "api": "messages"}},
          "routes": [{"prefix": "oa/", "strip_prefix": true, "upstream": "oa"}, {"models": ["claude"], "upstream": "an"}]}"#;
        let c =
            Config::parse(text.as_bytes(), &|k| (k == "K").then(|| "sk-1".to_string())).unwrap();
        let t = c.resolve("oa/gpt").unwrap();
        assert_eq!((t.model, t.upstream.cluster.as_str()), ("gpt", "openai"));
        assert_eq!(
            t.upstream.auth,
            Auth::Header {
                name: "authorization".into(),
                value: "Bearer sk-1".into()
            }
        );
        assert!(!format!("{:?}", t.upstream.auth).contains("sk-1"));
        assert_eq!(c.resolve("claude").unwrap().upstream.api, Api::Messages);
        assert!(c.resolve("other").is_none());
    }

    #[test]
    fn missing_secret_is_rejected() {
        let text = DEFAULT_CONFIG.replace(
            r#""api": "chat""#,
            r#""api": "chat", "auth": {"type": "bearer", "env": "NOPE"}"#,
        );
        let e = Config::parse(text.as_bytes(), &no_env).unwrap_err();
        assert_eq!(e.field, "upstreams.mock.auth.env");
    }
}
