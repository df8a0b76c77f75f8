//! The sans-IO engine: per-stream state machine. It takes events (request body,
//! callout answered, time) and returns commands; it never calls the host.

pub mod admit;
mod call;
pub mod fusion_tool;
pub mod judge;
mod merge;
pub mod plan;
pub mod route;
mod slots;
mod turn;

pub use call::{CallResult, Callout, Failure, FailureClass};
pub use turn::FilterState;
pub use turn::{call_cost, Budget, Mode, Outcome, RunStats, Turn};

use crate::config::{Config, Overload};
use crate::wire::{self, Api, ApiError};
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
    /// What the client asked the `fusion` object to carry (`x-fusion-include`).
    pub include: Include,
    /// The client's trace context headers, copied to every callout.
    pub trace: Vec<(String, String)>,
    /// What the route's metadata says about fusion.
    pub route: route::RoutePolicy,
}

/// The request header that asks for more in the `fusion` object.
pub const INCLUDE_HEADER: &str = "x-fusion-include";

/// The trace context headers a callout inherits from the client's request
/// (W3C, Envoy's request id, Zipkin B3 in both forms, baggage).
pub const TRACE_HEADERS: [&str; 10] = [
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "baggage",
];

/// Extra parts of the `fusion` object: `x-fusion-include: analysis,responses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Include {
    /// The judge's analysis (its five keys; `null` when the judge failed).
    pub analysis: bool,
    /// Each usable panel member's model and answer text.
    pub responses: bool,
}

impl Include {
    /// Reads the header's comma-separated list; unknown words are ignored.
    pub fn parse(value: Option<&str>) -> Include {
        let mut include = Include::default();
        for word in value.unwrap_or_default().split(',') {
            match word.trim().to_ascii_lowercase().as_str() {
                "analysis" => include.analysis = true,
                "responses" => include.responses = true,
                _ => {}
            }
        }
        include
    }
}

/// Send the request up its own route with these headers set, these removed,
/// and this body. Never `:path` or `:authority`: the request must keep the
/// route (and cluster) it already has.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub headers: Vec<(String, String)>,
    pub remove: Vec<String>,
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
            body: call::json_bytes(body),
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
    /// The body asks for fusion but the content type is not JSON.
    ContentType,
    /// The route's metadata turns fusion off (`disabled: true`).
    Route,
}

impl Refusal {
    /// The `x-fusion-skipped` response header's value.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Depth => "depth",
            Refusal::Overload => "overload",
            Refusal::ContentType => "content_type",
            Refusal::Route => "route_disabled",
        }
    }
}

/// The response header that says why a request that asked for fusion did not get it.
pub const SKIPPED_HEADER: &str = "x-fusion-skipped";

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
/// `false` only when no JSON spelling (escapes included) of an alias or of a
/// fusion tool type occurs in it; such a body is never parsed.
pub fn may_be_fusion(config: &Config, body: &[u8]) -> bool {
    config.prescan().may_ask_for_fusion(body)
}

/// Whether the body asks for fusion (alias or declared tool), read without a full parse.
/// `None`: not a JSON object of that shape; the upstream judges it.
fn asks_for_fusion(config: &Config, body: &[u8]) -> Option<(bool, bool)> {
    // Only an object is a request: anything else passes without a parse.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Some((false, false));
    }
    let head = crate::request_head::read(body)?;
    let alias = head.model.as_deref().is_some_and(|m| config.is_alias(m));
    let declared = head
        .tool_types
        .iter()
        // A misspelled declaration counts too: `start` refuses it by name.
        .any(|k| fusion_tool::is_fusion_type(k) || k.contains("fusion"));
    Some((alias, declared))
}

/// Whether a body sent with a non-JSON content type would have asked for
/// fusion (the filter then tells the client why it got none).
pub fn names_fusion(config: &Config, body: &[u8]) -> bool {
    may_be_fusion(config, body)
        && asks_for_fusion(config, body).is_some_and(|(alias, declared)| alias || declared)
}

/// A `tools` entry whose `type` looks like a fusion declaration but is no
/// spelling the filter knows (`fusionx`, `openrouter:fusion2`): no provider
/// serves such a type, so the client gets a 400 naming it instead of the
/// upstream's error or, worse, a silent pass-through.
fn misspelled_fusion_type(value: &Value) -> Option<String> {
    value
        .get("tools")?
        .as_array()?
        .iter()
        .filter_map(|t| t.get("type").and_then(Value::as_str))
        .find(|kind| !fusion_tool::is_fusion_type(kind) && kind.contains("fusion"))
        .map(str::to_string)
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
    start_with(config, api, || info, body, now_ms, at_capacity)
}

/// [`start`], reading what the host knows about the request only once the
/// body asks for fusion: a plain request costs no header or property read.
pub fn start_with(
    config: &Rc<Config>,
    api: Api,
    read_info: impl FnOnce() -> RequestInfo,
    body: &[u8],
    now_ms: u64,
    at_capacity: bool,
) -> Start {
    if !may_be_fusion(config, body) {
        return Start::PassThrough;
    }
    // Decided on the parsed value: only a request that asks for fusion meets
    // the filter's size limit; any other passes untouched, however large.
    let head = asks_for_fusion(config, body);
    if head == Some((false, false)) {
        return pass_through(api, body);
    }
    if head.is_some() && body.len() > config.limits.max_request_bytes {
        return too_large(api, body.len(), config);
    }
    let mut value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Not ours to judge: the upstream answers malformed JSON in its own words.
        Err(_) => return Start::PassThrough,
    };
    if let Some(kind) = misspelled_fusion_type(&value) {
        let err = ApiError::invalid(
            format!(
                "unknown tool type `{kind}`: the fusion server tool is declared with `\"type\": \"fusion\"` or `\"type\": \"openrouter:fusion\"`"
            ),
            Some("tools"),
        );
        return Start::Reply(LocalReply::error(api, &err));
    }
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
    if body.len() > config.limits.max_request_bytes {
        return too_large(api, body.len(), config);
    }
    let info = read_info();
    if info.route.disabled {
        return refuse(config, api, value, alias, Refusal::Route);
    }
    let config = &match info.route.apply(config) {
        Ok(c) => c,
        Err(e) => return Start::Reply(LocalReply::error(api, &e)),
    };
    // Within the operator's limits whatever path the request takes from here.
    if let Some(obj) = value.as_object_mut() {
        if let Err(e) = plan::bound_client_params(config, api, obj) {
            return Start::Reply(LocalReply::error(api, &e));
        }
        if let Some(e) = client_tool_named_fusion(obj) {
            return Start::Reply(LocalReply::error(api, &e));
        }
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
                        "this gateway worker is at its fusion capacity ({} runs, limits.max_concurrent_runs, or {} bytes in flight, limits.max_bytes_in_flight); retry shortly",
                        config.limits.max_concurrent_runs, config.limits.max_bytes_in_flight
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
    match Turn::start(
        Rc::clone(config),
        api,
        info,
        req,
        value,
        body,
        alias,
        now_ms,
    ) {
        Ok((turn, commands)) => Start::Run(Box::new(turn), commands),
        Err(e) => Start::Reply(LocalReply::error(api, &e)),
    }
}

/// A client function tool named like the filter's own: the outer model would be
/// offered two functions of one name, and its calls could not be told apart.
fn client_tool_named_fusion(body: &serde_json::Map<String, Value>) -> Option<ApiError> {
    let tools = body.get("tools").and_then(Value::as_array)?;
    let clash = tools.iter().filter(|t| !wire::is_fusion_tool(t)).any(|t| {
        let name = t
            .get("name")
            .or_else(|| t.get("function").and_then(|f| f.get("name")));
        name.and_then(Value::as_str) == Some(wire::FUSION_TOOL)
    });
    clash.then(|| {
        ApiError::invalid(
            format!(
                "a client tool may not be named `{}`: the fusion filter offers a tool of that name; rename yours",
                wire::FUSION_TOOL
            ),
            Some("tools"),
        )
    })
}

fn too_large(api: Api, size: usize, config: &Config) -> Start {
    let err = ApiError {
        status: 413,
        message: format!(
            "the request body has {size} bytes; fusion requests may have at most {} (limits.max_request_bytes)",
            config.limits.max_request_bytes
        ),
        param: None,
    };
    Start::Reply(LocalReply::error(api, &err))
}

/// A request that is not fusion goes on untouched, unless its history replays
/// fusion items of an earlier answer (only then is it parsed): those are removed.
fn pass_through(api: Api, body: &[u8]) -> Start {
    let contains = |needle: &[u8]| memchr::memmem::find(body, needle).is_some();
    if !(contains(b"fusion_") || contains(b"server_tool_use")) {
        return Start::PassThrough;
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Start::PassThrough;
    };
    if wire::patch::drop_fusion_history(api, &mut obj) {
        Start::Clean(call::json_bytes(&Value::Object(obj)))
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
        // The name the outer model's upstream knows, as a callout would send it
        // (a route's prefix stripped: `openai/gpt-4.1` goes up as `gpt-4.1`).
        let model = config
            .resolve(&config.outer_model)
            .map_or(config.outer_model.as_str(), |t| t.model);
        obj.insert("model".into(), Value::String(model.to_string()));
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
    Start::Rewrite(call::json_bytes(&value), why)
}
