//! Strict request validation: the mock refuses what the real API refuses,
//! with that provider's own 400 shape and wording (taken from the official API
//! references, the SDKs' request types and errors the providers are known to
//! send). A request a real provider would refuse must fail a test.
//!
//! Unknown top-level fields are accepted (future fields must reach the
//! provider), except fields that belong to one of the other two APIs: those
//! are a translation leak, and the real API refuses them.

mod chat;
mod messages;
mod responses;

use serde_json::{json, Value};

use crate::apis::Api;
use crate::script::Script;

/// Why a request is refused, rendered in the API's native 400 shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub message: String,
    /// OpenAI's `param` (Anthropic names it inside the message).
    pub param: Option<String>,
    /// OpenAI's `code`.
    pub code: Option<&'static str>,
}

impl Invalid {
    pub fn new(message: impl Into<String>) -> Invalid {
        Invalid {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn param(mut self, param: impl Into<String>) -> Invalid {
        self.param = Some(param.into());
        self
    }

    pub fn code(mut self, code: &'static str) -> Invalid {
        self.code = Some(code);
        self
    }

    /// The 400 body in the API's own shape.
    pub fn body(&self, api: Api) -> Value {
        match api {
            Api::Chat | Api::Responses => json!({
                "error": {
                    "message": self.message,
                    "type": "invalid_request_error",
                    "param": self.param,
                    "code": self.code,
                }
            }),
            Api::Messages => json!({
                "type": "error",
                "error": { "type": "invalid_request_error", "message": self.message }
            }),
        }
    }
}

/// What validation needs besides the body.
pub struct Ctx<'a> {
    /// Request headers (names as sent).
    pub headers: &'a [(String, String)],
    pub script: &'a Script,
    /// Whether the mock issued this id earlier (`resp_…`, `msg_…`, `fc_…`).
    pub issued: &'a dyn Fn(&str) -> bool,
}

impl Ctx<'_> {
    /// All values of a header, comma-joined.
    pub fn header(&self, name: &str) -> String {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        values.join(",")
    }

    /// Parameters this model refuses: the `unsupported=a+b` directive, plus
    /// the sampling parameters for a reasoning model.
    fn refused_params(&self, api: Api) -> Vec<String> {
        let mut out = self.script.unsupported.clone();
        if self.script.reasoning_model {
            out.extend(["temperature".to_string(), "top_p".to_string()]);
            match api {
                Api::Chat => out.push("max_tokens".to_string()),
                Api::Messages => out.push("top_k".to_string()),
                Api::Responses => {}
            }
        }
        out
    }
}

/// Checks a parsed request body; `Err` is the 400 to send.
pub fn check(api: Api, body: &Value, ctx: &Ctx<'_>) -> Result<(), Invalid> {
    let Some(obj) = body.as_object() else {
        return Err(match api {
            Api::Messages => Invalid::new("Input should be a valid dictionary"),
            _ => Invalid::new("The request body must be a JSON object.").code("invalid_type"),
        });
    };
    for param in ctx.refused_params(api) {
        if obj.contains_key(&param) {
            return Err(unsupported(api, &param));
        }
    }
    match api {
        Api::Chat => chat::check(obj, ctx),
        Api::Responses => responses::check(obj, ctx),
        Api::Messages => messages::check(obj, ctx),
    }
}

/// The provider's answer to a parameter the model does not take.
pub fn unsupported(api: Api, param: &str) -> Invalid {
    match api {
        Api::Messages => Invalid::new(format!("`{param}` is deprecated for this model.")),
        _ => {
            let hint = if param == "max_tokens" {
                " Use 'max_completion_tokens' instead."
            } else {
                ""
            };
            Invalid::new(format!(
                "Unsupported parameter: '{param}' is not supported with this model.{hint}"
            ))
            .param(param)
            .code("unsupported_parameter")
        }
    }
}

/// Top-level fields of the other two APIs that this one does not know.
fn foreign_field(api: Api, obj: &serde_json::Map<String, Value>) -> Option<String> {
    let foreign: &[&str] = match api {
        Api::Chat => &[
            "input",
            "instructions",
            "max_output_tokens",
            "text",
            "reasoning",
            "previous_response_id",
            "truncation",
            "include",
            "system",
            "stop_sequences",
            "top_k",
            "thinking",
        ],
        Api::Responses => &[
            "messages",
            "max_tokens",
            "max_completion_tokens",
            "response_format",
            "reasoning_effort",
            "n",
            "seed",
            "stop",
            "functions",
            "function_call",
            "system",
            "stop_sequences",
            "top_k",
            "thinking",
        ],
        Api::Messages => &[
            "input",
            "instructions",
            "max_output_tokens",
            "max_completion_tokens",
            "text",
            "reasoning",
            "reasoning_effort",
            "previous_response_id",
            "response_format",
            "stream_options",
            "n",
            "seed",
            "stop",
            "store",
            "user",
            "frequency_penalty",
            "presence_penalty",
            "logprobs",
            "parallel_tool_calls",
        ],
    };
    foreign
        .iter()
        .find(|k| obj.contains_key(**k))
        .map(|k| k.to_string())
}

/// Duplicate names among `names`, in order of first repetition.
fn first_duplicate<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if seen.contains(&n) {
            return Some(n);
        }
        seen.push(n);
    }
    None
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// OpenAI's spelling of an enum error.
fn invalid_value(value: &str, supported: &[&str], param: String) -> Invalid {
    let list: Vec<String> = supported.iter().map(|s| format!("'{s}'")).collect();
    let list = match list.split_last() {
        Some((last, [one])) => format!("{one} and {last}"),
        Some((last, rest)) if !rest.is_empty() => format!("{}, and {last}", rest.join(", ")),
        _ => list.join(""),
    };
    Invalid::new(format!(
        "Invalid value: '{value}'. Supported values are: {list}."
    ))
    .param(param)
    .code("invalid_value")
}

/// OpenAI's spelling of a missing field.
fn missing(param: String) -> Invalid {
    Invalid::new(format!("Missing required parameter: '{param}'."))
        .param(param)
        .code("missing_required_parameter")
}

/// Whether a string is an http(s) URL or a base64 data URL of the given kind.
fn is_url_or_data(url: &str, data_prefix: &str) -> bool {
    url.starts_with("https://")
        || url.starts_with("http://")
        || (url.starts_with(data_prefix) && url.contains(";base64,"))
}

#[cfg(test)]
mod tests;
