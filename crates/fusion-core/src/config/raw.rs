//! The configuration document read into its raw types, one reader per object.
//!
//! Each object is read entry by entry, in the document's order (like serde's
//! derive with `deny_unknown_fields`): an unknown entry or a value of the wrong
//! type stops the read naming its full path; a required entry that is absent is
//! reported after the object's other entries. Defaults are those of the types.

use super::read::{
    boolean, entries, join, list, missing_field, number, object, optional, required, sequence,
    string, u32_, u64_, unknown_field, usize_, variant,
};
use super::{
    models, ConfigError, JudgeSpec, Limits, LogConfig, Overload, PanelMember, PriceDecl, RawAuth,
    RawConfig, RawPreset, RawRoute, RawUpstream,
};
use crate::wire::Api;
use serde_json::Value;

const CONFIG_FIELDS: &[&str] = &[
    "aliases",
    "outer_model",
    "panel",
    "member_tools",
    "judge",
    "synthesizer",
    "min_panel_answers",
    "panel_grace_ms",
    "presets",
    "prices",
    "log",
    "depth_header",
    "max_depth",
    "limits",
    "models",
    "upstreams",
    "routes",
];

/// The whole document (a JSON object, or the decoded `google.protobuf.Struct`).
// Not inlined into `Config::parse`: one 30 KB function costs V8's optimizing compiler
// about 1.6 MiB more memory at start-up than three smaller ones (bench/memory-findings.md).
#[inline(never)]
pub(super) fn config(v: Value) -> Result<RawConfig, ConfigError> {
    let mut c = RawConfig {
        aliases: vec!["fusion".to_string()],
        outer_model: String::new(),
        panel: Vec::new(),
        member_tools: Vec::new(),
        judge: JudgeSpec {
            model: String::new(),
        },
        synthesizer: None,
        min_panel_answers: 0,
        panel_grace_ms: 0,
        presets: Vec::new(),
        prices: Vec::new(),
        log: LogConfig::default(),
        depth_header: "x-fusion-depth".to_string(),
        max_depth: 1,
        limits: Limits::default(),
        models: Default::default(),
        upstreams: Vec::new(),
        routes: Vec::new(),
    };
    let (mut outer_model, mut judge, mut upstreams, mut routes) = (None, None, None, None);
    for (key, v) in object("(document)", v)? {
        let f = key.as_str();
        match f {
            "aliases" => c.aliases = list(f, v, string)?,
            "outer_model" => outer_model = Some(string(f, v)?),
            "panel" => c.panel = list(f, v, panel_member)?,
            "member_tools" => c.member_tools = sequence(f, v)?,
            "judge" => judge = Some(judge_spec(f, v)?),
            "synthesizer" => c.synthesizer = optional(f, v, string)?,
            "min_panel_answers" => c.min_panel_answers = usize_(f, v)?,
            "panel_grace_ms" => c.panel_grace_ms = u64_(f, v)?,
            "presets" => c.presets = entries(f, v, preset)?,
            "prices" => c.prices = entries(f, v, price)?,
            "log" => c.log = log(f, v)?,
            "depth_header" => c.depth_header = string(f, v)?,
            "max_depth" => c.max_depth = u32_(f, v)?,
            "limits" => c.limits = limits(f, v)?,
            "models" => c.models = models::read(f, v)?,
            "upstreams" => upstreams = Some(entries(f, v, upstream)?),
            "routes" => routes = Some(list(f, v, route)?),
            _ => return Err(unknown_field("", f, CONFIG_FIELDS)),
        }
    }
    c.outer_model = required(outer_model, "", "outer_model")?;
    c.judge = required(judge, "", "judge")?;
    c.upstreams = required(upstreams, "", "upstreams")?;
    c.routes = required(routes, "", "routes")?;
    Ok(c)
}

/// `{"model": ..., "tools": [...]}`
fn panel_member(at: &str, v: Value) -> Result<PanelMember, ConfigError> {
    let (mut model, mut tools) = (None, Vec::new());
    for (key, v) in object(at, v)? {
        let f = &join(at, &key);
        match key.as_str() {
            "model" => model = Some(string(f, v)?),
            "tools" => tools = sequence(f, v)?,
            _ => return Err(unknown_field(at, &key, &["model", "tools"])),
        }
    }
    Ok(PanelMember {
        model: required(model, at, "model")?,
        tools,
    })
}

fn judge_spec(at: &str, v: Value) -> Result<JudgeSpec, ConfigError> {
    let mut model = None;
    for (key, v) in object(at, v)? {
        match key.as_str() {
            "model" => model = Some(string(&join(at, &key), v)?),
            _ => return Err(unknown_field(at, &key, &["model"])),
        }
    }
    Ok(JudgeSpec {
        model: required(model, at, "model")?,
    })
}

/// A named preset: every entry optional, the top level's when absent.
fn preset(at: &str, v: Value) -> Result<RawPreset, ConfigError> {
    let mut p = RawPreset {
        panel: None,
        judge: None,
        synthesizer: None,
        min_panel_answers: None,
        panel_grace_ms: None,
    };
    for (key, v) in object(at, v)? {
        let f = &join(at, &key);
        match key.as_str() {
            "panel" => p.panel = optional(f, v, |f, v| list(f, v, panel_member))?,
            "judge" => p.judge = optional(f, v, judge_spec)?,
            "synthesizer" => p.synthesizer = optional(f, v, string)?,
            "min_panel_answers" => p.min_panel_answers = optional(f, v, usize_)?,
            "panel_grace_ms" => p.panel_grace_ms = optional(f, v, u64_)?,
            _ => {
                return Err(unknown_field(
                    at,
                    &key,
                    &[
                        "panel",
                        "judge",
                        "synthesizer",
                        "min_panel_answers",
                        "panel_grace_ms",
                    ],
                ))
            }
        }
    }
    Ok(p)
}

fn price(at: &str, v: Value) -> Result<PriceDecl, ConfigError> {
    const FIELDS: &[&str] = &["input_per_mtok", "output_per_mtok", "cached_input_per_mtok"];
    let (mut input, mut output, mut cached) = (None, None, None);
    for (key, v) in object(at, v)? {
        let f = &join(at, &key);
        match key.as_str() {
            "input_per_mtok" => input = Some(number(f, v)?),
            "output_per_mtok" => output = Some(number(f, v)?),
            "cached_input_per_mtok" => cached = Some(number(f, v)?),
            _ => return Err(unknown_field(at, &key, FIELDS)),
        }
    }
    Ok(PriceDecl {
        input_per_mtok: required(input, at, "input_per_mtok")?,
        output_per_mtok: required(output, at, "output_per_mtok")?,
        cached_input_per_mtok: cached,
    })
}

fn log(at: &str, v: Value) -> Result<LogConfig, ConfigError> {
    let mut l = LogConfig::default();
    for (key, v) in object(at, v)? {
        let f = &join(at, &key);
        match key.as_str() {
            "runs" => l.runs = boolean(f, v)?,
            "include_text" => l.include_text = boolean(f, v)?,
            _ => return Err(unknown_field(at, &key, &["runs", "include_text"])),
        }
    }
    Ok(l)
}

/// Every limit (limits.rs `RANGES` holds their ranges); absent ones keep their default.
const LIMITS_FIELDS: &[&str] = &[
    "max_panel",
    "max_rounds",
    "tool_timeout_ms",
    "turn_timeout_ms",
    "max_request_bytes",
    "max_response_bytes",
    "max_concurrent_runs",
    "on_overload",
    "max_completion_tokens",
    "max_tool_calls",
    "max_upstream_calls",
    "max_upstream_bytes",
    "max_bytes_in_flight",
];

fn limits(at: &str, v: Value) -> Result<Limits, ConfigError> {
    let mut l = Limits::default();
    for (key, v) in object(at, v)? {
        let f = &join(at, &key);
        match key.as_str() {
            "max_panel" => l.max_panel = usize_(f, v)?,
            "max_rounds" => l.max_rounds = u32_(f, v)?,
            "tool_timeout_ms" => l.tool_timeout_ms = u64_(f, v)?,
            "turn_timeout_ms" => l.turn_timeout_ms = u64_(f, v)?,
            "max_request_bytes" => l.max_request_bytes = usize_(f, v)?,
            "max_response_bytes" => l.max_response_bytes = usize_(f, v)?,
            "max_concurrent_runs" => l.max_concurrent_runs = usize_(f, v)?,
            "on_overload" => {
                l.on_overload = match variant(f, v, &["reject", "pass_through"])? {
                    "pass_through" => Overload::PassThrough,
                    _ => Overload::Reject,
                }
            }
            "max_completion_tokens" => l.max_completion_tokens = u64_(f, v)?,
            "max_tool_calls" => l.max_tool_calls = u64_(f, v)?,
            "max_upstream_calls" => l.max_upstream_calls = u32_(f, v)?,
            "max_upstream_bytes" => l.max_upstream_bytes = u64_(f, v)?,
            "max_bytes_in_flight" => l.max_bytes_in_flight = u64_(f, v)?,
            _ => return Err(unknown_field(at, &key, LIMITS_FIELDS)),
        }
    }
    Ok(l)
}

fn upstream(at: &str, v: Value) -> Result<RawUpstream, ConfigError> {
    const FIELDS: &[&str] = &["cluster", "authority", "api", "path", "auth"];
    let (mut cluster, mut api) = (None, None);
    let (mut authority, mut path, mut auth) = (None, None, RawAuth::None);
    for (key, v) in object(at, v)? {
        let f = &join(at, &key);
        match key.as_str() {
            "cluster" => cluster = Some(string(f, v)?),
            "authority" => authority = optional(f, v, string)?,
            "api" => {
                api = Some(match variant(f, v, &["chat", "responses", "messages"])? {
                    "responses" => Api::Responses,
                    "messages" => Api::Messages,
                    _ => Api::Chat,
                })
            }
            "path" => path = optional(f, v, string)?,
            "auth" => auth = self::auth(f, v)?,
            _ => return Err(unknown_field(at, &key, FIELDS)),
        }
    }
    Ok(RawUpstream {
        cluster: required(cluster, at, "cluster")?,
        authority,
        api: required(api, at, "api")?,
        path,
        auth,
    })
}

/// `{"type": "none" | "bearer" | "header" | "forward", ...}` with the type's own entries.
fn auth(at: &str, v: Value) -> Result<RawAuth, ConfigError> {
    let mut entries = object(at, v)?;
    let Some(kind) = entries.remove("type") else {
        return Err(missing_field(at, "type"));
    };
    let kind = variant(
        &join(at, "type"),
        kind,
        &["none", "bearer", "header", "forward"],
    )?;
    let known: &[&str] = match kind {
        "bearer" => &["type", "env"],
        "header" => &["type", "name", "env"],
        _ => &["type"],
    };
    let (mut name, mut env) = (None, None);
    for (key, v) in entries {
        let f = &join(at, &key);
        match key.as_str() {
            "name" if kind == "header" => name = Some(string(f, v)?),
            "env" if kind != "none" && kind != "forward" => env = Some(string(f, v)?),
            _ => return Err(unknown_field(at, &key, known)),
        }
    }
    Ok(match kind {
        "bearer" => RawAuth::Bearer {
            env: required(env, at, "env")?,
        },
        "header" => RawAuth::Header {
            name: required(name, at, "name")?,
            env: required(env, at, "env")?,
        },
        "forward" => RawAuth::Forward,
        _ => RawAuth::None,
    })
}

fn route(at: &str, v: Value) -> Result<RawRoute, ConfigError> {
    const FIELDS: &[&str] = &["prefix", "models", "strip_prefix", "upstream"];
    let mut r = RawRoute {
        prefix: None,
        models: Vec::new(),
        strip_prefix: false,
        upstream: String::new(),
    };
    let mut upstream = None;
    for (key, v) in object(at, v)? {
        let f = &join(at, &key);
        match key.as_str() {
            "prefix" => r.prefix = optional(f, v, string)?,
            "models" => r.models = list(f, v, string)?,
            "strip_prefix" => r.strip_prefix = boolean(f, v)?,
            "upstream" => upstream = Some(string(f, v)?),
            _ => return Err(unknown_field(at, &key, FIELDS)),
        }
    }
    r.upstream = required(upstream, at, "upstream")?;
    Ok(r)
}
