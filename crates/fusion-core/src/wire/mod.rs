//! Wire APIs: one module of pure translation functions per API.

pub mod chat;
pub mod citation;
pub mod common;
pub mod failure;
pub mod messages;
pub mod neutral;
pub mod patch;
pub mod relay;
pub mod render;
pub mod responses;
pub mod splice;
pub mod sse;
pub mod state;
pub mod usage;

pub use common::reasoning;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::wire::neutral::{Conversation, GenParams, Reply, ToolChoice, ToolDef, Usage};
use serde::Deserialize;
use serde_json::Value;

/// The three LLM wire APIs, on the client side and on the provider side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    Chat,
    Responses,
    Messages,
}

impl Api {
    /// Which API a request path is, ignoring any query string.
    pub fn from_path(path: &str) -> Option<Api> {
        // Before the query; a byte loop, not `split('?')`'s char searcher.
        let end = path.bytes().position(|b| b == b'?').unwrap_or(path.len());
        let path = path.get(..end).unwrap_or(path);
        if path.ends_with("/chat/completions") {
            Some(Api::Chat)
        } else if path.ends_with("/responses") {
            Some(Api::Responses)
        } else if path.ends_with("/messages") {
            Some(Api::Messages)
        } else {
            None
        }
    }

    pub fn default_path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Responses => "responses",
            Api::Messages => "messages",
        }
    }
}

/// The name the fusion tool has wherever a model sees it.
pub const FUSION_TOOL: &str = "fusion";

/// OpenRouter's spelling of the fusion server tool's `type` (fields under `parameters`).
pub const OPENROUTER_FUSION_TYPE: &str = "openrouter:fusion";

/// Whether a `tools` entry's `type` declares the fusion server tool, in either spelling.
pub fn is_fusion_type(kind: &str) -> bool {
    kind == FUSION_TOOL || kind == OPENROUTER_FUSION_TYPE
}

/// Whether a `tools` entry (or a `tool_choice` object) is the fusion server tool.
pub fn is_fusion_tool(entry: &Value) -> bool {
    entry
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(is_fusion_type)
}

/// Whether a `tool_choice` value, in any API's spelling, forces the fusion tool.
pub fn names_fusion(choice: &Value) -> bool {
    is_fusion_tool(choice)
        || choice.get("name").and_then(Value::as_str) == Some(FUSION_TOOL)
        || choice
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            == Some(FUSION_TOOL)
}

/// A client request, parsed into the common model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientRequest {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub conversation: Conversation,
    /// The client's own function tools, kept for every outer round.
    pub tools: Vec<ToolDef>,
    pub tool_choice: ToolChoice,
    pub params: GenParams,
    /// Fusion server-tool entries found in `tools` (`{"type":"fusion",...}` or
    /// `{"type":"openrouter:fusion",...}`), raw, removed from `tools`.
    pub fusion_tools: Vec<Value>,
    /// A top-level `fusion` object (merge mode), raw.
    pub fusion_block: Option<Value>,
}

/// The fusion call as the client sees it: Responses shows it as an output item,
/// Messages as a `server_tool_use` block followed by its result block.
#[derive(Debug, Clone, PartialEq)]
pub struct FusionCallView {
    pub id: String,
    /// JSON text of the arguments.
    pub arguments: String,
    /// The tool result the outer model received.
    pub result: Value,
}

/// A request the filter refuses, written in the client's API error shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    pub fn upstream(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
        }
    }
}

/// Everything a client response carries besides the model's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMeta {
    pub id: String,
    pub created_s: u64,
    pub usage: Usage,
    pub fusion: Value,
    /// The budget ran out: the client sees its API's truncation signal.
    pub truncated: bool,
}

pub fn parse_request(api: Api, body: &Value) -> Result<ClientRequest, ApiError> {
    common::check_types(api, body)?;
    match api {
        Api::Chat => chat::parse_request(body),
        Api::Responses => responses::parse_request(body),
        Api::Messages => messages::parse_request(body),
    }
}

/// The first user part a provider API cannot take, as the 400 the client gets
/// (in its own API's shape via [`error_body`]): the part and the model named.
/// Call it before [`build_request`] for every cross-API call; the builders
/// write a visible placeholder for such a part, never drop it silently.
pub fn check_parts(api: Api, conversation: &Conversation, model: &str) -> Result<(), ApiError> {
    match unsupported_part(api, conversation) {
        None => Ok(()),
        Some((i, kind, why)) => Err(ApiError::invalid(
            format!(
                "message {i} has {why} (a `{kind}` part), which model `{model}` cannot take \
                 through the {} API",
                api.name()
            ),
            None,
        )),
    }
}

/// [`check_parts`] for a client of `client`'s API: the part is named as that
/// client spelled it (`input_audio`, `input_image`, `document`, ...).
pub fn check_client_parts(
    client: Api,
    provider: Api,
    conversation: &Conversation,
    model: &str,
) -> Result<(), ApiError> {
    match unsupported_part(provider, conversation) {
        None => Ok(()),
        Some((i, kind, why)) => Err(ApiError::invalid(
            format!(
                "message {i} has {why} (a `{}` part), which model `{model}` cannot take \
                 through the {} API",
                client_part_type(client, kind),
                provider.name()
            ),
            None,
        )),
    }
}

/// A neutral part kind as `api`'s clients spell its `type`.
fn client_part_type(api: Api, kind: &'static str) -> &'static str {
    match (api, kind) {
        (Api::Chat, "image") => "image_url",
        (Api::Chat | Api::Responses, "audio") => "input_audio",
        (Api::Responses, "text") => "input_text",
        (Api::Responses, "image") => "input_image",
        (Api::Responses, "file") => "input_file",
        (Api::Messages, "file") => "document",
        _ => kind,
    }
}

/// The first user part `api` cannot take: (message index, part kind, why).
pub fn unsupported_part(
    api: Api,
    conversation: &Conversation,
) -> Option<(usize, &'static str, &'static str)> {
    conversation
        .messages
        .iter()
        .enumerate()
        .find_map(|(i, m)| match m {
            neutral::Message::User(parts) => parts.iter().find_map(|p| {
                let why = match api {
                    Api::Chat => chat::content::unsupported(p),
                    Api::Responses => responses::content::unsupported(p),
                    Api::Messages => messages::content::unsupported(p),
                }?;
                Some((i, p.kind(), why))
            }),
            _ => None,
        })
}

/// The body of a provider call in the API the provider speaks (never streaming).
pub fn build_request(api: Api, req: &crate::wire::neutral::ModelRequest<'_>) -> Value {
    match api {
        Api::Chat => chat::build_request(req),
        Api::Responses => responses::build_request(req),
        Api::Messages => messages::build_request(req),
    }
}

/// A provider's answer: a JSON body, or an SSE body when the call streamed.
pub fn parse_response(api: Api, body: &[u8]) -> Result<Reply, String> {
    if sse::looks_like_sse(body) {
        return parse_stream(api, body);
    }
    match api {
        Api::Chat => chat::parse_response(body),
        Api::Responses => responses::parse_response(body),
        Api::Messages => messages::parse_response(body),
    }
}

/// The client's JSON response.
pub fn write_response(api: Api, reply: &Reply, meta: &ResponseMeta) -> Value {
    match api {
        Api::Chat => chat::write_response(reply, meta),
        Api::Responses => responses::write_response(reply, meta),
        Api::Messages => messages::write_response(reply, meta),
    }
}

/// A provider's complete streamed answer, as one reply.
pub fn parse_stream(api: Api, body: &[u8]) -> Result<Reply, String> {
    let events = sse::json_events(body)?;
    match api {
        Api::Chat => chat::read_stream(&events),
        Api::Responses => responses::read_stream(&events),
        Api::Messages => messages::read_stream(&events),
    }
}

/// The client's response as a complete SSE stream in its API's event grammar,
/// equivalent to its JSON response.
pub fn write_stream(api: Api, reply: &Reply, meta: &ResponseMeta, include_usage: bool) -> String {
    match api {
        Api::Chat => chat::write_stream(reply, meta, include_usage),
        Api::Responses => responses::write_stream(reply, meta),
        Api::Messages => messages::write_stream(reply, meta),
    }
}

pub fn error_body(api: Api, err: &ApiError) -> Value {
    match api {
        Api::Messages => serde_json::json!({
            "type": "error",
            "error": {"type": anthropic_error_type(err.status), "message": err.message},
        }),
        Api::Chat | Api::Responses => serde_json::json!({
            "error": {
                "message": err.message,
                "type": openai_error_type(err.status),
                "param": err.param,
                "code": null,
            }
        }),
    }
}

fn openai_error_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "insufficient_quota",
        429 => "rate_limit_error",
        _ => "server_error",
    }
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod roundtrip_tests;
