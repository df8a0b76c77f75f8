//! The three wire formats behind one enum, plus what they share.

use serde_json::Value;

use crate::convo::{Answer, Convo};
use crate::{chat, messages, responses};

/// Which LLM API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions.
    Chat,
    /// OpenAI Responses.
    Responses,
    /// Anthropic Messages.
    Messages,
}

impl Api {
    /// The API served at `path` (without query string), if any.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.trim_end_matches('/');
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

    /// Name used in the call log.
    pub fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Responses => "responses",
            Api::Messages => "messages",
        }
    }

    /// Flattens a request body.
    pub fn parse(self, body: &Value) -> Convo {
        match self {
            Api::Chat => chat::parse(body),
            Api::Responses => responses::parse(body),
            Api::Messages => messages::parse(body),
        }
    }

    /// The non-streaming response body.
    pub fn body(self, reply: &Reply) -> Value {
        match self {
            Api::Chat => chat::body(reply),
            Api::Responses => responses::body(reply),
            Api::Messages => messages::body(reply),
        }
    }

    /// The SSE events of a streaming response, each a complete
    /// `event:`/`data:` block ending in a blank line.
    pub fn events(self, reply: &Reply) -> Vec<String> {
        match self {
            Api::Chat => chat::events(reply),
            Api::Responses => responses::events(reply),
            Api::Messages => messages::events(reply),
        }
    }

    /// The error body for an HTTP status, in the API's native shape.
    pub fn error(self, status: u16, message: &str) -> Value {
        match self {
            Api::Chat | Api::Responses => openai_error(status, message),
            Api::Messages => messages::error(status, message),
        }
    }
}

impl Api {
    /// Exhausted credit, as each provider spells it: OpenAI a 429
    /// `insufficient_quota`, Anthropic a 400 "credit balance is too low".
    pub fn no_credits(self) -> (u16, Value) {
        match self {
            Api::Chat | Api::Responses => (
                429,
                serde_json::json!({ "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                    "type": "insufficient_quota", "param": null, "code": "insufficient_quota"
                }}),
            ),
            Api::Messages => (
                400,
                messages::error(
                    400,
                    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
                ),
            ),
        }
    }
}

/// Everything needed to render one answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Sequence number of the call in the log (ids derive from it).
    pub seq: u64,
    /// The model string exactly as requested.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// All input tokens, the cached ones included.
    pub input_tokens: u64,
    /// Input tokens reported as read from a prompt cache (`cached=N`).
    pub cached_tokens: u64,
    /// Reasoning tokens, on top of the answer's own (`reasoning=N`).
    pub reasoning_tokens: u64,
    pub answer: Answer,
    /// `refuse`: the text answer is a refusal (rendered in the API's refusal field).
    pub refusal: bool,
    /// `cite`: the text answer carries one URL citation (see `citation`).
    pub cite: bool,
    /// The request body (for echoed fields such as `instructions`).
    pub request: Value,
}

/// The source a `cite` answer cites: (url, title, cited text).
pub fn citation(r: &Reply) -> (String, String, String) {
    let base = r.model.split(':').next().unwrap_or("");
    let text = match &r.answer {
        Answer::Text(t) => t.clone(),
        Answer::ToolCall { .. } => String::new(),
    };
    (
        format!("https://example.com/{base}/source"),
        format!("Source cited by {base}"),
        text,
    )
}

impl Reply {
    /// All output tokens: the answer's and the reasoning ones.
    pub fn output_tokens(&self) -> u64 {
        self.answer.output_tokens() + self.reasoning_tokens
    }
}

fn openai_error(status: u16, message: &str) -> Value {
    let (ty, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", "invalid_api_key".into()),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", "model_not_found".into()),
        429 => ("rate_limit_error", "rate_limit_exceeded".into()),
        500..=599 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    serde_json::json!({
        "error": { "message": message, "type": ty, "param": null, "code": code }
    })
}

/// `data: <json>` SSE block (Chat Completions).
pub fn sse_data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// `event: <name>` + `data: <json>` SSE block (Responses, Messages).
pub fn sse_event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

/// Splits text into per-word pieces (each word with the whitespace after
/// it); the pieces concatenate back to the text.
pub fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if in_space && !space {
            if let Some(p) = text.get(start..i) {
                pieces.push(p);
            }
            start = i;
        }
        in_space = space;
    }
    if let Some(p) = text.get(start..) {
        if !p.is_empty() {
            pieces.push(p);
        }
    }
    pieces
}

/// Splits a string into pieces of at most `n` characters.
pub fn split_chars(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_suffix() {
        assert_eq!(Api::from_path("/v1/chat/completions"), Some(Api::Chat));
        assert_eq!(Api::from_path("/openai/v1/responses"), Some(Api::Responses));
        assert_eq!(Api::from_path("/v1/messages"), Some(Api::Messages));
        assert_eq!(Api::from_path("/health"), None);
    }

    #[test]
    fn cached_and_reasoning_tokens_in_each_spelling() {
        let r = Reply {
            seq: 1,
            model: "m:cached=4,reasoning=3".into(),
            created: 0,
            input_tokens: 10,
            cached_tokens: 4,
            reasoning_tokens: 3,
            answer: Answer::Text("two words".into()),
            refusal: false,
            cite: false,
            request: serde_json::json!({}),
        };
        let chat = Api::Chat.body(&r)["usage"].clone();
        assert_eq!(
            (&chat["prompt_tokens"], &chat["completion_tokens"]),
            (&10.into(), &5.into())
        );
        assert_eq!(chat["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(chat["completion_tokens_details"]["reasoning_tokens"], 3);
        let resp = Api::Responses.body(&r)["usage"].clone();
        assert_eq!(
            (&resp["input_tokens"], &resp["output_tokens"]),
            (&10.into(), &5.into())
        );
        assert_eq!(resp["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(resp["output_tokens_details"]["reasoning_tokens"], 3);
        let msg = Api::Messages.body(&r)["usage"].clone();
        assert_eq!(msg["input_tokens"], 6, "Anthropic counts the uncached part");
        assert_eq!(msg["cache_read_input_tokens"], 4);
        assert_eq!(msg["output_tokens"], 5);
        assert_eq!(msg["output_tokens_details"]["thinking_tokens"], 3);
        let events = Api::Messages.events(&r).concat();
        assert!(events.contains(
            r#""usage":{"output_tokens":5,"output_tokens_details":{"thinking_tokens":3}}"#
        ));
    }

    fn reply(refusal: bool, cite: bool) -> Reply {
        Reply {
            seq: 3,
            model: "outer:refuse".into(),
            created: 0,
            input_tokens: 1,
            cached_tokens: 0,
            reasoning_tokens: 0,
            answer: Answer::Text("no way".into()),
            refusal,
            cite,
            request: serde_json::json!({}),
        }
    }

    #[test]
    fn refusals_in_each_apis_own_field() {
        let r = reply(true, false);
        let chat = Api::Chat.body(&r);
        assert_eq!(chat["choices"][0]["message"]["refusal"], "no way");
        assert!(chat["choices"][0]["message"]["content"].is_null());
        let resp = Api::Responses.body(&r);
        assert_eq!(
            resp["output"][0]["content"][0],
            serde_json::json!({"type": "refusal", "refusal": "no way"})
        );
        assert_eq!(Api::Messages.body(&r)["stop_reason"], "refusal");
        assert!(Api::Chat.events(&r).concat().contains(r#""refusal":"no ""#));
        assert!(Api::Responses
            .events(&r)
            .concat()
            .contains("response.refusal.done"));
        assert!(Api::Messages
            .events(&r)
            .concat()
            .contains(r#""stop_reason":"refusal""#));
    }

    #[test]
    fn citations_in_each_spelling() {
        let r = reply(false, true);
        let url = "https://example.com/outer/source";
        let chat = Api::Chat.body(&r);
        assert_eq!(
            chat["choices"][0]["message"]["annotations"][0]["url_citation"]["url"],
            url
        );
        let resp = Api::Responses.body(&r);
        assert_eq!(
            resp["output"][0]["content"][0]["annotations"][0]["url"],
            url
        );
        let msg = Api::Messages.body(&r);
        assert_eq!(msg["content"][0]["citations"][0]["url"], url);
        assert!(Api::Chat.events(&r).concat().contains(url));
        assert!(Api::Responses
            .events(&r)
            .concat()
            .contains("response.output_text.annotation.added"));
        assert!(Api::Messages
            .events(&r)
            .concat()
            .contains("citations_delta"));
    }

    #[test]
    fn exhausted_credit_in_each_providers_spelling() {
        let (status, body) = Api::Chat.no_credits();
        assert_eq!(
            (status, &body["error"]["code"]),
            (429, &"insufficient_quota".into())
        );
        let (status, body) = Api::Messages.no_credits();
        assert_eq!(status, 400);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Your credit balance is too low"));
    }

    #[test]
    fn split_words_round_trips() {
        let t = "one two  three\nfour ";
        let p = split_words(t);
        assert_eq!(p, vec!["one ", "two  ", "three\n", "four "]);
        assert_eq!(p.concat(), t);
        assert!(split_words("").is_empty());
        assert_eq!(split_chars("abcdé", 2), vec!["ab", "cd", "é"]);
    }
}
