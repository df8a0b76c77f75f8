//! The sans-IO engine: per-stream state machine. It takes events (request body,
//! callout answered, time) and returns commands; it never calls the host.

pub mod admit;
mod call;
pub mod fusion_tool;
pub mod judge;
mod merge;
pub mod plan;
mod turn;

pub use call::{CallResult, Callout, Failure, FailureClass};
pub use turn::{call_cost, Budget, Mode, Outcome, RunStats, Turn};

use crate::config::{Config, Overload};
use crate::wire::{self, Api, ApiError};
use serde::Deserialize;
use serde_json::Value;
use std::rc::Rc;

/// What the host knows about the request besides its body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestInfo {
    pub request_id: String,
    /// Value of the depth header; 0 when absent.
    pub depth: u32,
    /// The client's `authorization` / `x-api-key`, forwarded only where an upstream says so.
    pub client_auth: Vec<(String, String)>,
    /// The client's API feature headers (`anthropic-beta`, `openai-beta`): a
    /// patched same-API call carries the body those features allow, so it
    /// carries them too.
    pub api_headers: Vec<(String, String)>,
    /// The cluster of the request's own route; a final answer for a model served
    /// there can stream up the route instead of through a callout.
    pub route_cluster: Option<String>,
}

/// Send the request up its own route with these headers set and this body.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response the filter writes itself (`send_http_response`).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn json(status: u16, body: &Value) -> LocalReply {
        LocalReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn error(api: Api, err: &ApiError) -> LocalReply {
        LocalReply::json(err.status, &wire::error_body(api, err))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Dispatch(Callout),
    Reply(LocalReply),
    /// The final answer streams from the route: rewrite the request and resume it;
    /// the response body then goes through [`Turn::on_response_body`].
    Resume(Resume),
    /// Call [`Turn::on_timer`] at this time (ms since the epoch), unless the turn moved on.
    WakeAt(u64),
}

/// Why a fusion request went on without fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An inner call (depth header at `max_depth`): fusion never recurses.
    Depth,
    /// The worker already runs `limits.max_concurrent_runs` and the operator
    /// chose `on_overload: pass_through`.
    Overload,
}

/// How a request starts.
#[derive(Debug)]
pub enum Start {
    /// Not the filter's: continue with the body untouched.
    PassThrough,
    /// Continue upstream with this body instead: fusion refused, the request
    /// sent on as a plain one.
    Rewrite(Vec<u8>, Refusal),
    /// Not fusion, but the history replays fusion items of an earlier answer,
    /// which no provider knows: continue upstream with this body, without them.
    Clean(Vec<u8>),
    /// Answer at once (a bad request).
    Reply(LocalReply),
    /// Answer 429 at once: too many runs on this worker (`on_overload: reject`).
    Overloaded(LocalReply),
    /// A fusion turn runs; dispatch these and feed the answers to the turn.
    Run(Box<Turn>, Vec<Command>),
}

/// Cheap test on the raw body: can this request ask for fusion at all?
/// A body that names no alias and no `fusion` is never parsed.
pub fn may_be_fusion(config: &Config, body: &[u8]) -> bool {
    let contains =
        |needle: &[u8]| !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle);
    // An alias that contains "fusion" is already covered by the first scan.
    contains(b"fusion")
        || config
            .aliases
            .iter()
            .any(|a| !a.contains("fusion") && contains(a.as_bytes()))
}

/// The only fields that decide whether a request is fusion; everything else
/// is skipped by the parser without building a tree.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tools: Option<Vec<ToolHead<'a>>>,
}

#[derive(Deserialize)]
struct ToolHead<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Whether the body asks for fusion (alias or declared tool), read without a full parse.
/// `None`: not a JSON object of that shape; the upstream judges it.
fn asks_for_fusion(config: &Config, body: &[u8]) -> Option<(bool, bool)> {
    // serde reads a JSON array into a struct field by field: `["fusion"]` would
    // read as `{"model": "fusion"}`. Only an object is a request.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Some((false, false));
    }
    let head: Head<'_> = serde_json::from_slice(body).ok()?;
    let alias = head.model.as_deref().is_some_and(|m| config.is_alias(m));
    let declared = head
        .tools
        .iter()
        .flatten()
        .any(|t| t.kind.as_deref().is_some_and(fusion_tool::is_fusion_type));
    Some((alias, declared))
}

/// Starts a request. `at_capacity`: the worker already runs
/// `limits.max_concurrent_runs` fusion runs.
pub fn start(
    config: &Rc<Config>,
    api: Api,
    info: RequestInfo,
    body: &[u8],
    now_ms: u64,
    at_capacity: bool,
) -> Start {
    if !may_be_fusion(config, body) {
        return Start::PassThrough;
    }
    if body.len() > config.limits.max_request_bytes {
        let err = ApiError {
            status: 413,
            message: format!(
                "the request body has {} bytes; fusion requests may have at most {} (limits.max_request_bytes)",
                body.len(),
                config.limits.max_request_bytes
            ),
            param: None,
        };
        return Start::Reply(LocalReply::error(api, &err));
    }
    let head = asks_for_fusion(config, body);
    if head == Some((false, false)) {
        return pass_through(api, body);
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Not ours to judge: the upstream answers malformed JSON in its own words.
        Err(_) => return Start::PassThrough,
    };
    // Fields of unexpected types: decide on the tree, so a fusion request with
    // a bad field gets the filter's 400 instead of reaching the upstream.
    let (alias, declared) = head.unwrap_or_else(|| {
        let alias = value
            .get("model")
            .and_then(Value::as_str)
            .is_some_and(|m| config.is_alias(m));
        let declared = value
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(wire::is_fusion_tool));
        (alias, declared)
    });
    if !alias && !declared {
        return pass_through(api, body);
    }
    if info.depth >= config.max_depth {
        return refuse(config, api, value, alias, Refusal::Depth);
    }
    if at_capacity {
        return match config.limits.on_overload {
            Overload::PassThrough => refuse(config, api, value, alias, Refusal::Overload),
            Overload::Reject => Start::Overloaded(LocalReply::error(
                api,
                &ApiError {
                    status: 429,
                    message: format!(
                        "this gateway worker already runs {} fusion requests (limits.max_concurrent_runs); retry shortly",
                        config.limits.max_concurrent_runs
                    ),
                    param: None,
                },
            )),
        };
    }
    let req = match wire::parse_request(api, &value) {
        Ok(r) => r,
        Err(e) => return Start::Reply(LocalReply::error(api, &e)),
    };
    match Turn::start(Rc::clone(config), api, info, req, value, alias, now_ms) {
        Ok((turn, commands)) => Start::Run(Box::new(turn), commands),
        Err(e) => Start::Reply(LocalReply::error(api, &e)),
    }
}

/// A request that is not fusion goes on untouched, unless its history replays
/// fusion items of an earlier answer (only then is it parsed): those are removed.
fn pass_through(api: Api, body: &[u8]) -> Start {
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if !(contains(b"fusion_call")
        || contains(b"fusion_tool_result")
        || contains(b"server_tool_use"))
    {
        return Start::PassThrough;
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Start::PassThrough;
    };
    if wire::patch::drop_fusion_history(api, &mut obj) {
        Start::Clean(Value::Object(obj).to_string().into_bytes())
    } else {
        Start::PassThrough
    }
}

/// A request sent on without fusion: the alias resolves to its plain model and
/// fusion tool entries are removed. For an inner call that came back through
/// the gateway this is what keeps calls from recursing.
fn refuse(config: &Config, api: Api, mut value: Value, alias: bool, why: Refusal) -> Start {
    let Some(obj) = value.as_object_mut() else {
        return Start::PassThrough;
    };
    wire::patch::drop_fusion_history(api, obj);
    if alias {
        obj.insert("model".into(), Value::String(config.outer_model.clone()));
    }
    obj.remove("fusion");
    if let Some(Value::Array(tools)) = obj.get_mut("tools") {
        tools.retain(|t| !wire::is_fusion_tool(t));
        if tools.is_empty() {
            obj.remove("tools");
            obj.remove("tool_choice");
        }
    }
    if obj.get("tool_choice").is_some_and(wire::names_fusion) {
        obj.remove("tool_choice");
    }
    Start::Rewrite(value.to_string().into_bytes(), why)
}
