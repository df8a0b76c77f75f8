//! Wire APIs: one module of pure translation functions per API.

pub mod chat;
mod text;

use crate::conversation::{Conversation, GenParams, Reply, ToolChoice, ToolDef, Usage};
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
        let path = path.split('?').next().unwrap_or(path);
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
    match api {
        Api::Chat => chat::parse_request(body),
        Api::Responses | Api::Messages => Err(ApiError::invalid(
            format!("fusion is not available on the {} API yet", api.name()),
            Some("model"),
        )),
    }
}

/// The body of a provider call in the API the provider speaks.
pub fn build_request(api: Api, req: &crate::conversation::ModelRequest<'_>) -> Value {
    match api {
        Api::Chat | Api::Responses | Api::Messages => chat::build_request(req),
    }
}

pub fn parse_response(api: Api, body: &[u8]) -> Result<Reply, String> {
    match api {
        Api::Chat | Api::Responses | Api::Messages => chat::parse_response(body),
    }
}

pub fn write_response(api: Api, reply: &Reply, meta: &ResponseMeta) -> Value {
    match api {
        Api::Chat | Api::Responses | Api::Messages => chat::write_response(reply, meta),
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
                "code": Value::Null,
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
