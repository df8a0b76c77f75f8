//! The filter configuration: parsed, validated and compiled once, in `on_configure`.
//!
//! An empty configuration selects the embedded default: the project's mock LLM
//! server behind the Envoy cluster `mock`, so the demo works without keys.
//! The text is JSON (a `google.protobuf.StringValue` in Envoy, Istio's
//! `pluginConfig`) or a binary `google.protobuf.Struct` (native YAML in Envoy).

pub mod limits;
mod models;
mod named;
mod raw;
mod read;
mod struct_pb;

use crate::prescan::Prescan;
pub use crate::wire::neutral::Price;
use crate::wire::Api;
pub use models::{is_optional, ModelSettings};
pub use named::Named;
use serde_json::Value;
use std::fmt;
use std::rc::Rc;

pub const DEFAULT_CONFIG: &str = r#"{
  "aliases": ["fusion"],
  "outer_model": "mock-outer",
  "panel": [{"model": "mock-a"}, {"model": "mock-b"}, {"model": "mock-c"}],
  "judge": {"model": "mock-judge"},
  "upstreams": {"mock": {"cluster": "mock", "authority": "mock", "api": "chat"}},
  "routes": [{"prefix": "", "upstream": "mock"}]
}"#;

/// The configuration as written, before it is checked and compiled (read.rs reads it).
struct RawConfig {
    aliases: Vec<String>,
    outer_model: String,
    panel: Vec<PanelMember>,
    member_tools: Vec<Value>,
    judge: JudgeSpec,
    synthesizer: Option<String>,
    min_panel_answers: usize,
    panel_grace_ms: u64,
    presets: Vec<(String, RawPreset)>,
    prices: Vec<(String, PriceDecl)>,
    log: LogConfig,
    depth_header: String,
    max_depth: u32,
    limits: Limits,
    models: Named<ModelSettings>,
    upstreams: Vec<(String, RawUpstream)>,
    routes: Vec<RawRoute>,
}

/// One panel member; `tools` are provider tools (e.g. web search) sent to this member only.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelMember {
    pub model: String,
    pub tools: Vec<Value>,
}

struct JudgeSpec {
    model: String,
}

struct RawPreset {
    panel: Option<Vec<PanelMember>>,
    judge: Option<JudgeSpec>,
    synthesizer: Option<String>,
    min_panel_answers: Option<usize>,
    panel_grace_ms: Option<u64>,
}

/// When the judge may start before every member answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quorum {
    /// Usable answers that are enough; 0 waits for every member.
    pub min_answers: usize,
    /// How long to wait for the rest once `min_answers` arrived.
    pub grace_ms: u64,
}

/// Who takes part in a run by default: the top level, or a named preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub panel: Vec<PanelMember>,
    pub judge: String,
    pub synthesizer: Option<String>,
    pub quorum: Quorum,
}

/// A price as the configuration writes it; compiled into [`Price`].
struct PriceDecl {
    input_per_mtok: f64,
    output_per_mtok: f64,
    /// Cached input tokens; the input price when absent.
    cached_input_per_mtok: Option<f64>,
}

impl From<PriceDecl> for Price {
    fn from(d: PriceDecl) -> Price {
        Price {
            input_per_mtok: d.input_per_mtok,
            output_per_mtok: d.output_per_mtok,
            cached_input_per_mtok: d.cached_input_per_mtok,
        }
    }
}

/// The per-run JSON log line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogConfig {
    /// One info line per fusion run.
    pub runs: bool,
    /// Add prompt and answer text to that line (off: no user content is logged).
    pub include_text: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            runs: true,
            include_text: false,
        }
    }
}

/// What happens to a fusion request when the worker already runs `max_concurrent_runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Answer 429 in the client's API shape.
    #[default]
    Reject,
    /// Send the request on without fusion (alias resolved, fusion tool removed).
    PassThrough,
}

/// Bounds on what one request can consume; every one is enforced.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_panel: usize,
    pub max_rounds: u32,
    pub tool_timeout_ms: u64,
    pub turn_timeout_ms: u64,
    /// Largest client request body the filter buffers; larger gets 413.
    pub max_request_bytes: usize,
    /// Largest answer read from one callout; larger counts as a failed call.
    pub max_response_bytes: usize,
    /// Fusion runs in flight per worker (per Wasm VM).
    pub max_concurrent_runs: usize,
    pub on_overload: Overload,
    /// Highest `max_completion_tokens` a request may ask of panel members.
    pub max_completion_tokens: u64,
    /// Highest `max_tool_calls` a request may ask of panel members.
    pub max_tool_calls: u64,
    /// Upstream calls one turn may start (panel, judge, outer rounds together).
    pub max_upstream_calls: u32,
    /// Request bytes one turn may send upstream, all calls together.
    pub max_upstream_bytes: u64,
    /// Bytes one worker holds for its runs (callout requests sent and answers
    /// buffered, until the run ends); past it new runs meet `on_overload`.
    pub max_bytes_in_flight: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_panel: 8,
            max_rounds: 10,
            tool_timeout_ms: 30_000,
            turn_timeout_ms: 120_000,
            max_request_bytes: 1 << 20,
            max_response_bytes: 4 << 20,
            max_concurrent_runs: 256,
            on_overload: Overload::Reject,
            max_completion_tokens: 32_768,
            max_tool_calls: 16,
            max_upstream_calls: 64,
            max_upstream_bytes: 64 << 20,
            max_bytes_in_flight: 512 << 20,
        }
    }
}

struct RawUpstream {
    cluster: String,
    authority: Option<String>,
    api: Api,
    path: Option<String>,
    auth: RawAuth,
}

/// `auth`, tagged by its `type`.
enum RawAuth {
    None,
    /// `authorization: Bearer $env`
    Bearer {
        env: String,
    },
    /// `<header>: $env`, e.g. Anthropic's `x-api-key`.
    Header {
        name: String,
        env: String,
    },
    /// Forward the client's own `authorization` and `x-api-key` headers.
    Forward,
}

struct RawRoute {
    prefix: Option<String>,
    models: Vec<String>,
    strip_prefix: bool,
    upstream: String,
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
    /// The default panel, judge, synthesizer and quorum.
    pub defaults: Preset,
    // `Rc` on what a routed copy (`RoutePolicy::apply`) shares with the
    // configuration it was made from: the copy is cheap and Wasm holds no
    // `Clone` of these vectors.
    pub presets: Rc<Named<Preset>>,
    /// Provider tools sent to every panel member.
    pub member_tools: Vec<Value>,
    pub prices: Rc<Named<Price>>,
    pub log: LogConfig,
    pub depth_header: String,
    pub max_depth: u32,
    pub limits: Limits,
    /// Per-model settings (`models`), by the model name requests use.
    pub models: Rc<Named<ModelSettings>>,
    upstreams: Rc<Vec<Upstream>>,
    routes: Rc<Vec<Route>>,
    /// The body pre-scan for these aliases, built once here.
    prescan: Rc<Prescan>,
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
        let first = text.iter().find(|b| !b.is_ascii_whitespace());
        // Both forms become a `Value` first; raw.rs reads the settings out of it
        // by hand (serde's derived code for them was tens of KB of wasm).
        let value: Value = if first == Some(&b'{') {
            serde_json::from_slice(text).map_err(|e| err("(document)", e.to_string()))?
        } else {
            struct_pb::struct_to_json(text).map_err(|e| {
                err(
                    "(document)",
                    format!("neither JSON nor a google.protobuf.Struct: {e}"),
                )
            })?
        };
        compile(raw::config(value)?, env)
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

    /// The cheap test run on every JSON body before any parse: `false` when the
    /// body cannot name an alias or a fusion tool type in any JSON spelling.
    pub fn prescan(&self) -> &Prescan {
        &self.prescan
    }

    pub fn is_alias(&self, model: &str) -> bool {
        self.aliases.iter().any(|a| a == model)
    }

    /// The optional parameters `model` does not take (`models.<model>.unsupported_params`).
    pub fn unsupported_params(&self, model: &str) -> &[String] {
        self.models
            .get(model)
            .map(|m| m.unsupported_params.as_slice())
            .unwrap_or_default()
    }

    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices.get(model).copied()
    }
}

// Not inlined into `parse` (see `raw::config`).
#[inline(never)]
fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if raw.aliases.is_empty() || raw.aliases.iter().any(|a| a.is_empty()) {
        return Err(err(
            "aliases",
            "must list at least one non-empty model name",
        ));
    }
    limits::check_limits(&raw.limits)?;
    limits::check("max_depth", "max_depth", u64::from(raw.max_depth))?;
    limits::check("panel_grace_ms", "panel_grace_ms", raw.panel_grace_ms)?;
    for (name, p) in &raw.presets {
        if let Some(ms) = p.panel_grace_ms {
            limits::check(
                "panel_grace_ms",
                &format!("presets.{name}.panel_grace_ms"),
                ms,
            )?;
        }
    }
    if raw.depth_header.is_empty()
        || !raw
            .depth_header
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err("depth_header", "must be a lowercase HTTP header name"));
    }
    let mut upstreams: Vec<Upstream> = Vec::with_capacity(raw.upstreams.len());
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
        let upstream = upstreams.iter().position(|u| u.name == r.upstream);
        let upstream = upstream.ok_or_else(|| {
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
    let defaults = Preset {
        panel: raw.panel,
        judge: raw.judge.model,
        synthesizer: raw.synthesizer,
        quorum: Quorum {
            min_answers: raw.min_panel_answers,
            grace_ms: raw.panel_grace_ms,
        },
    };
    let mut presets = Named::default();
    for (name, p) in raw.presets {
        if name.is_empty() {
            return Err(err("presets", "a preset needs a non-empty name"));
        }
        let preset = Preset {
            panel: p.panel.unwrap_or_else(|| defaults.panel.clone()),
            judge: p.judge.map_or_else(|| defaults.judge.clone(), |j| j.model),
            synthesizer: p.synthesizer.or_else(|| defaults.synthesizer.clone()),
            quorum: Quorum {
                min_answers: p.min_panel_answers.unwrap_or(defaults.quorum.min_answers),
                grace_ms: p.panel_grace_ms.unwrap_or(defaults.quorum.grace_ms),
            },
        };
        presets.insert(name, preset);
    }
    let mut prices = Named::default();
    for (model, price) in raw.prices {
        let values = [
            Some(price.input_per_mtok),
            Some(price.output_per_mtok),
            price.cached_input_per_mtok,
        ];
        if values.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(err(
                format!("prices.{model}"),
                "prices must be finite and not negative",
            ));
        }
        prices.insert(model, Price::from(price));
    }
    for (i, tool) in raw.member_tools.iter().enumerate() {
        check_provider_tool(&format!("member_tools[{i}]"), tool)?;
    }
    let config = Config {
        prescan: Rc::new(Prescan::new(&raw.aliases)),
        aliases: raw.aliases,
        outer_model: raw.outer_model,
        defaults,
        presets: Rc::new(presets),
        member_tools: raw.member_tools,
        prices: Rc::new(prices),
        log: raw.log,
        depth_header: raw.depth_header,
        max_depth: raw.max_depth,
        limits: raw.limits,
        models: Rc::new(raw.models),
        upstreams: Rc::new(upstreams),
        routes: Rc::new(routes),
    };
    models::check(&config.models).map_err(|(field, reason)| err(field, reason))?;
    check_preset(&config, "", &config.defaults, true)?;
    for (name, preset) in config.presets.iter() {
        check_preset(&config, &format!("presets.{name}."), preset, false)?;
    }
    if config.resolve(&config.outer_model).is_none() {
        return Err(err(
            "outer_model",
            format!("no route serves model `{}`", config.outer_model),
        ));
    }
    Ok(config)
}

fn check_provider_tool(field: &str, tool: &Value) -> Result<(), ConfigError> {
    if tool.get("type").and_then(Value::as_str).is_none() {
        return Err(err(field, "a provider tool is an object with a `type`"));
    }
    Ok(())
}

/// Whether an upstream speaking `api` takes a provider tool of type `ty`:
/// Chat Completions only function and custom tools; Anthropic's server tools
/// carry a version date (`web_search_20250305`), which OpenAI's Responses tools
/// (`web_search`, `code_interpreter`, `web_search_preview_2025_03_11`) never do.
fn provider_tool_fits(api: Api, ty: &str) -> bool {
    let dated = ty
        .rsplit_once('_')
        .is_some_and(|(_, d)| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
    match api {
        Api::Chat => matches!(ty, "function" | "custom"),
        Api::Responses => !dated,
        Api::Messages => ty == "custom" || dated,
    }
}

/// A panel, judge and synthesizer every route serves, within the limits. Only the
/// top level may leave the panel empty: requests then must name their own.
fn check_preset(
    config: &Config,
    at: &str,
    preset: &Preset,
    may_be_empty: bool,
) -> Result<(), ConfigError> {
    let panel = &preset.panel;
    if panel.is_empty() && !may_be_empty {
        return Err(err(format!("{at}panel"), "must have at least one member"));
    }
    if panel.len() > config.limits.max_panel {
        return Err(err(
            format!("{at}panel"),
            format!(
                "has {} members, more than limits.max_panel ({})",
                panel.len(),
                config.limits.max_panel
            ),
        ));
    }
    if preset.quorum.min_answers > panel.len() && !panel.is_empty() {
        return Err(err(
            format!("{at}min_panel_answers"),
            format!(
                "is {}, more than the {} panel members",
                preset.quorum.min_answers,
                panel.len()
            ),
        ));
    }
    let mut models: Vec<(String, &str)> = vec![(format!("{at}judge.model"), preset.judge.as_str())];
    for (i, m) in panel.iter().enumerate() {
        models.push((format!("{at}panel[{i}].model"), m.model.as_str()));
        for (j, tool) in m.tools.iter().enumerate() {
            check_provider_tool(&format!("{at}panel[{i}].tools[{j}]"), tool)?;
        }
        // A provider tool the member's API cannot take would fail that member on every run.
        let api = config.resolve(&m.model).map(|t| t.upstream.api);
        let own = m
            .tools
            .iter()
            .enumerate()
            .map(|(j, t)| (format!("{at}panel[{i}].tools[{j}]"), t));
        let shared = config
            .member_tools
            .iter()
            .enumerate()
            .map(|(j, t)| (format!("member_tools[{j}]"), t));
        for (field, tool) in own.chain(shared) {
            let ty = tool.get("type").and_then(Value::as_str).unwrap_or_default();
            if let Some(api) = api.filter(|api| !provider_tool_fits(*api, ty)) {
                return Err(err(
                    field,
                    format!(
                        "tool type `{ty}` is not one the {} API of member `{}` takes",
                        api.name(),
                        m.model
                    ),
                ));
            }
        }
    }
    if let Some(s) = &preset.synthesizer {
        models.push((format!("{at}synthesizer"), s.as_str()));
    }
    for (field, model) in models {
        if config.resolve(model).is_none() {
            return Err(err(field, format!("no route serves model `{model}`")));
        }
    }
    Ok(())
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
        assert!(c
            .prescan()
            .may_ask_for_fusion(br#"{"model": "fu\u0073ion"}"#));
        assert!(!c.prescan().may_ask_for_fusion(br#"{"model": "mock-a"}"#));
        assert_eq!(c.defaults.panel.len(), 3);
        assert_eq!(c.defaults.quorum, Quorum::default());
        assert!(c.log.runs && !c.log.include_text);
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

    fn refused(text: &str) -> ConfigError {
        match Config::parse(text.as_bytes(), &no_env) {
            Ok(_) => panic!("accepted {text}"),
            Err(e) => e,
        }
    }

    /// The default document with top-level entries replaced or added.
    fn with(entries: &str) -> String {
        let mut doc: Value = serde_json::from_str(DEFAULT_CONFIG).unwrap();
        let entries: Value = serde_json::from_str(&format!("{{{entries}}}")).unwrap();
        for (k, v) in entries.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc.to_string()
    }

    #[test]
    fn every_error_names_the_full_path_of_its_setting() {
        let cases = [
            (
                r#""limits": {"max_panels": 3}"#,
                "limits.max_panels",
                "unknown field `max_panels`, expected one of `max_panel`, ",
            ),
            (
                r#""limits": {"max_rounds": "3"}"#,
                "limits.max_rounds",
                "invalid type: string \"3\", expected u32",
            ),
            (
                r#""limits": {"max_rounds": 4294967296}"#,
                "limits.max_rounds",
                "invalid value: integer `4294967296`, expected u32",
            ),
            (
                r#""limits": {"on_overload": "explode"}"#,
                "limits.on_overload",
                "unknown variant `explode`, expected `reject` or `pass_through`",
            ),
            (
                r#""limits": []"#,
                "limits",
                "invalid type: sequence, expected an object",
            ),
            (
                r#""log": {"runs": 1}"#,
                "log.runs",
                "invalid type: integer `1`, expected a boolean",
            ),
            (
                r#""aliases": ["fusion", 7]"#,
                "aliases[1]",
                "invalid type: integer `7`, expected a string",
            ),
            (
                r#""panel": [{"model": "mock-a"}, {"modle": "mock-b"}]"#,
                "panel[1].modle",
                "unknown field `modle`, expected `model` or `tools`",
            ),
            (
                r#""panel": [{"tools": []}]"#,
                "panel[0].model",
                "missing field `model`",
            ),
            (
                r#""presets": {"p": {"judge": {}}}"#,
                "presets.p.judge.model",
                "missing field `model`",
            ),
            (
                r#""presets": {"p": {"min_panel_answers": -1}}"#,
                "presets.p.min_panel_answers",
                "invalid value: integer `-1`, expected usize",
            ),
            (
                r#""prices": {"m": {"input_per_mtok": 1}}"#,
                "prices.m.output_per_mtok",
                "missing field `output_per_mtok`",
            ),
            (
                r#""prices": {"m": {"input_per_mtok": "x", "output_per_mtok": 1}}"#,
                "prices.m.input_per_mtok",
                "`x` is not a number",
            ),
            (
                r#""prices": {"m": {"input_per_mtok": true, "output_per_mtok": 1}}"#,
                "prices.m.input_per_mtok",
                "invalid type: boolean `true`, expected a number",
            ),
            (
                r#""models": {"o3": {"unsupported": []}}"#,
                "models.o3.unsupported",
                "unknown field `unsupported`, expected `unsupported_params`",
            ),
            (
                r#""upstreams": {"mock": {"cluster": "mock"}}"#,
                "upstreams.mock.api",
                "missing field `api`",
            ),
            (
                r#""upstreams": {"mock": {"cluster": "mock", "api": "grpc"}}"#,
                "upstreams.mock.api",
                "unknown variant `grpc`, expected one of `chat`, `responses`, `messages`",
            ),
            (
                r#""upstreams": {"mock": {"cluster": "mock", "api": "chat", "auth": {"env": "K"}}}"#,
                "upstreams.mock.auth.type",
                "missing field `type`",
            ),
            (
                r#""upstreams": {"mock": {"cluster": "mock", "api": "chat", "auth": {"type": "bearer"}}}"#,
                "upstreams.mock.auth.env",
                "missing field `env`",
            ),
            (
                r#""upstreams": {"mock": {"cluster": "mock", "api": "chat", "auth": {"type": "forward", "env": "K"}}}"#,
                "upstreams.mock.auth.env",
                "unknown field `env`, expected `type`",
            ),
            (
                r#""upstreams": {"mock": {"cluster": "mock", "api": "chat", "auth": {"type": "bearer", "name": "x", "env": "K"}}}"#,
                "upstreams.mock.auth.name",
                "unknown field `name`, expected `type` or `env`",
            ),
            (
                r#""routes": [{"prefix": "", "upstream": "mock", "strip_prefix": "yes"}]"#,
                "routes[0].strip_prefix",
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                r#""routes": [{"prefix": ""}]"#,
                "routes[0].upstream",
                "missing field `upstream`",
            ),
            (
                r#""max_depth": 2.5"#,
                "max_depth",
                "invalid type: floating point `2.5`, expected u32",
            ),
            (
                r#""member_tools": {"type": "web_search"}"#,
                "member_tools",
                "invalid type: map, expected a sequence",
            ),
        ];
        for (entry, field, reason) in cases {
            let e = refused(&with(entry));
            assert_eq!(e.field, field, "{entry}: {e}");
            assert!(e.reason.starts_with(reason), "{entry}: {e}");
        }
        let e = refused(
            r#"{"outer_model": "mock-outer", "judge": {"model": "mock-judge"}, "routes": []}"#,
        );
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("upstreams", "missing field `upstreams`")
        );
        let e = refused("[1, 2]");
        assert_eq!(e.field, "(document)");
    }

    #[test]
    fn optional_settings_take_null_and_defaults() {
        let text = with(
            r#""synthesizer": null, "presets": {"p": {"panel": null, "judge": null, "synthesizer": null,
               "min_panel_answers": null, "panel_grace_ms": null}},
               "limits": {"on_overload": "pass_through", "max_rounds": 3},
               "log": {"include_text": true},
               "prices": {"mock-a": {"input_per_mtok": " 2.5 ", "output_per_mtok": 10, "cached_input_per_mtok": 0.25}},
               "models": {"mock-a": {"unsupported_params": ["temperature"]}}"#,
        );
        let c = Config::parse(text.as_bytes(), &no_env).unwrap();
        assert_eq!(c.defaults.synthesizer, None);
        let p = c.presets.get("p").unwrap();
        assert_eq!((p.panel.len(), p.judge.as_str()), (3, "mock-judge"));
        assert_eq!(c.limits.on_overload, Overload::PassThrough);
        assert_eq!(
            c.limits,
            Limits {
                max_rounds: 3,
                on_overload: Overload::PassThrough,
                ..Limits::default()
            }
        );
        assert_eq!(
            c.log,
            LogConfig {
                runs: true,
                include_text: true
            }
        );
        assert_eq!(
            c.price("mock-a"),
            Some(Price {
                input_per_mtok: 2.5,
                output_per_mtok: 10.0,
                cached_input_per_mtok: Some(0.25)
            })
        );
        assert_eq!(c.unsupported_params("mock-a"), ["temperature"]);
        assert_eq!(
            (c.depth_header.as_str(), c.max_depth),
            ("x-fusion-depth", 1)
        );
    }
}

#[cfg(test)]
mod provider_tool_tests {
    use super::*;

    #[test]
    fn provider_tools_fit_their_api() {
        assert!(provider_tool_fits(Api::Responses, "web_search"));
        assert!(provider_tool_fits(
            Api::Responses,
            "web_search_preview_2025_03_11"
        ));
        assert!(!provider_tool_fits(Api::Responses, "web_search_20250305"));
        assert!(provider_tool_fits(Api::Messages, "web_search_20250305"));
        assert!(!provider_tool_fits(Api::Messages, "code_interpreter"));
        assert!(!provider_tool_fits(Api::Chat, "web_search"));
        assert!(provider_tool_fits(Api::Chat, "function"));
    }

    #[test]
    fn a_member_tool_its_api_refuses_is_a_config_error() {
        let none = |_: &str| None;
        let mut raw: Value = serde_json::from_str(DEFAULT_CONFIG).unwrap();
        raw["member_tools"] = serde_json::json!([{"type": "web_search"}]);
        let e = Config::parse(raw.to_string().as_bytes(), &none).unwrap_err();
        assert!(e.to_string().contains("member_tools[0]"), "{e}");
        assert!(e.to_string().contains("chat"), "{e}");
    }
}
