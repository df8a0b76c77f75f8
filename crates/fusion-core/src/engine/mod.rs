//! The sans-IO engine: per-stream state machine. It takes events (request body,
//! callout answered, time) and returns commands; it never calls the host.

mod call;
pub mod fusion_tool;
pub mod judge;
pub mod plan;
mod turn;

pub use call::{CallResult, Callout, Failure};
pub use turn::{Mode, Turn};

use crate::api::{self, Api, ApiError};
use crate::config::Config;
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
        LocalReply::json(err.status, &api::error_body(api, err))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Dispatch(Callout),
    Reply(LocalReply),
    /// The final answer streams from the route: rewrite the request and resume it;
    /// the response body then goes through [`Turn::on_response_body`].
    Resume(Resume),
}

/// How a request starts.
#[derive(Debug)]
pub enum Start {
    /// Not the filter's: continue with the body untouched.
    PassThrough,
    /// Continue upstream with this body instead (fusion refused by the depth rule).
    Rewrite(Vec<u8>),
    /// Answer at once (a bad request).
    Reply(LocalReply),
    /// A fusion turn runs; dispatch these and feed the answers to the turn.
    Run(Box<Turn>, Vec<Command>),
}

/// Cheap test on the raw body: can this request ask for fusion at all?
/// A body that names no alias and no `fusion` is never parsed.
pub fn may_be_fusion(config: &Config, body: &[u8]) -> bool {
    let contains =
        |needle: &[u8]| !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle);
    contains(b"fusion") || config.aliases.iter().any(|a| contains(a.as_bytes()))
}

pub fn start(config: &Rc<Config>, api: Api, info: RequestInfo, body: &[u8], now_ms: u64) -> Start {
    if !may_be_fusion(config, body) {
        return Start::PassThrough;
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Not ours to judge: the upstream answers malformed JSON in its own words.
        Err(_) => return Start::PassThrough,
    };
    let model = value.get("model").and_then(Value::as_str).unwrap_or("");
    let alias = config.is_alias(model);
    let declared = value
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(api::is_fusion_tool));
    if !alias && !declared {
        return Start::PassThrough;
    }
    if info.depth >= config.max_depth {
        return refuse_by_depth(config, value, alias);
    }
    let req = match api::parse_request(api, &value) {
        Ok(r) => r,
        Err(e) => return Start::Reply(LocalReply::error(api, &e)),
    };
    match Turn::start(Rc::clone(config), api, info, req, alias, now_ms) {
        Ok((turn, commands)) => Start::Run(Box::new(turn), commands),
        Err(e) => Start::Reply(LocalReply::error(api, &e)),
    }
}

/// An inner call that came back through the gateway: the alias resolves to its
/// plain model, fusion tool entries are removed, and no fusion runs, so calls
/// cannot recurse.
fn refuse_by_depth(config: &Config, mut value: Value, alias: bool) -> Start {
    let Some(obj) = value.as_object_mut() else {
        return Start::PassThrough;
    };
    if alias {
        obj.insert("model".into(), Value::String(config.outer_model.clone()));
    }
    obj.remove("fusion");
    if let Some(Value::Array(tools)) = obj.get_mut("tools") {
        tools.retain(|t| !api::is_fusion_tool(t));
        if tools.is_empty() {
            obj.remove("tools");
            obj.remove("tool_choice");
        }
    }
    if obj.get("tool_choice").is_some_and(api::names_fusion) {
        obj.remove("tool_choice");
    }
    Start::Rewrite(value.to_string().into_bytes())
}
