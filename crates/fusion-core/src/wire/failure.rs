//! What a provider's error answer means, whatever its spelling: a pure function
//! of the HTTP status and the body, for `failed_models` and the retry policy.

use serde_json::Value;

/// The failure classes a provider error can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderFailure {
    /// Credit or quota exhausted: 402; OpenAI `429 insufficient_quota`;
    /// Anthropic 400 "credit balance is too low"; OpenRouter 402 "Insufficient credits".
    InsufficientCredits,
    /// Retry later: 429 (other than exhausted quota), Anthropic `rate_limit_error`.
    RateLimited,
    /// An optional parameter the model does not take; the name when the error says it.
    UnsupportedParameter(Option<String>),
    ContextLengthExceeded,
    ContentFilter,
    /// Nothing recognised: the caller keeps its status-based class (`http_<status>`).
    Other,
}

impl ProviderFailure {
    /// The documented `reason` in `failed_models` (`None` for [`ProviderFailure::Other`]).
    pub fn reason(&self) -> Option<&'static str> {
        Some(match self {
            ProviderFailure::InsufficientCredits => "insufficient_credits",
            ProviderFailure::RateLimited => "rate_limited",
            ProviderFailure::UnsupportedParameter(_) => "unsupported_parameter",
            ProviderFailure::ContextLengthExceeded => "context_length_exceeded",
            ProviderFailure::ContentFilter => "content_filter",
            ProviderFailure::Other => return None,
        })
    }
}

/// The start of the body Envoy answers in place of a callout answer that passed the
/// gateway's response cap (envoy/demo.yaml, listener `callouts`: a local reply mapped
/// to 502 with this body). It names the filter's own reason, `response_too_large`.
pub const RESPONSE_CAP_MARKER: &[u8] = b"response_too_large:";

/// Whether a callout's answer is Envoy's reply for an answer past the response cap.
pub fn is_response_cap(status: u16, body: &[u8]) -> bool {
    status == 502 && body.starts_with(RESPONSE_CAP_MARKER)
}

/// The provider error's class from its status and body (JSON in OpenAI's,
/// Anthropic's or OpenRouter's error shape, or anything else).
pub fn classify_error(status: u16, body: &[u8]) -> ProviderFailure {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // Some OpenAI-compatible servers wrap the error object in a list.
    let v = match v {
        Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
        v => v,
    };
    let err = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
    let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("");
    let code = field("code").to_ascii_lowercase();
    let ty = field("type").to_ascii_lowercase();
    let message = match field("message") {
        "" => String::from_utf8_lossy(body).into_owned(),
        m => m.to_string(),
    };
    let lower = message.to_ascii_lowercase();
    let named = |needle: &str| code == needle || ty == needle;

    if status == 402
        || named("insufficient_quota")
        || named("billing_error")
        || lower.contains("credit balance is too low")
        || lower.contains("insufficient credits")
        || lower.contains("exceeded your current quota")
    {
        return ProviderFailure::InsufficientCredits;
    }
    if named("context_length_exceeded")
        || named("string_above_max_length")
        || lower.contains("context length")
        || lower.contains("context window")
        || lower.contains("prompt is too long")
        || lower.contains("exceed context limit")
        || lower.contains("maximum context")
    {
        return ProviderFailure::ContextLengthExceeded;
    }
    if named("content_filter")
        || named("content_policy_violation")
        || lower.contains("content management policy")
        || lower.contains("content filter")
    {
        return ProviderFailure::ContentFilter;
    }
    if status == 429 || named("rate_limit_error") || named("rate_limit_exceeded") {
        return ProviderFailure::RateLimited;
    }
    if (400..500).contains(&status) {
        let param = err
            .get("param")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        let unsupported = named("unsupported_parameter")
            || named("unsupported_value")
            || lower.contains("unsupported parameter")
            || lower.contains("unsupported value")
            || lower.contains("is deprecated for this model")
            || lower.contains("not supported with this model")
            || lower.contains("is not supported for this model")
            || lower.contains("extra inputs are not permitted");
        if unsupported {
            let name = param.map(str::to_string).or_else(|| parameter_in(&message));
            return ProviderFailure::UnsupportedParameter(name);
        }
    }
    ProviderFailure::Other
}

/// The parameter an error message names: the first `quoted`, 'quoted' or
/// leading `name:` word that looks like a parameter name.
fn parameter_in(message: &str) -> Option<String> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    for quote in ['`', '\''] {
        let mut parts = message.split(quote);
        parts.next();
        if let Some(inner) = parts.next() {
            if is_name(inner) {
                return Some(inner.to_string());
            }
        }
    }
    // "temperature is deprecated for this model." / "top_k: Extra inputs are not permitted"
    let first = message
        .split(|c: char| c == ':' || c.is_whitespace())
        .next()
        .unwrap_or("");
    is_name(first).then(|| first.to_string())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use ProviderFailure::*;

    fn unsupported(name: &str) -> ProviderFailure {
        UnsupportedParameter(Some(name.into()))
    }

    #[test]
    fn the_response_cap_reply_is_recognised_by_status_and_marker() {
        let body = b"response_too_large: the answer passed the gateway's response cap";
        assert!(is_response_cap(502, body));
        assert!(!is_response_cap(500, body));
        assert!(!is_response_cap(
            502,
            b"upstream connect error or disconnect/reset before headers"
        ));
        assert!(!is_response_cap(
            502,
            br#"{"error":{"message":"response_too_large:"}}"#
        ));
    }

    #[test]
    fn exhausted_credit_in_every_spelling() {
        assert_eq!(classify_error(402, b""), InsufficientCredits);
        assert_eq!(
            classify_error(402, br#"{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/settings/credits"}}"#),
            InsufficientCredits
        );
        assert_eq!(
            classify_error(429, br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#),
            InsufficientCredits
        );
        assert_eq!(
            classify_error(400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#),
            InsufficientCredits
        );
    }

    #[test]
    fn rate_limits() {
        assert_eq!(
            classify_error(429, br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}"#),
            RateLimited
        );
        assert_eq!(
            classify_error(429, br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#),
            RateLimited
        );
        assert_eq!(classify_error(429, b"too many"), RateLimited);
    }

    #[test]
    fn unsupported_parameters_are_named() {
        assert_eq!(
            classify_error(400, br#"{"error":{"message":"Unsupported parameter: 'temperature' is not supported with this model.","type":"invalid_request_error","param":"temperature","code":"unsupported_parameter"}}"#),
            unsupported("temperature")
        );
        assert_eq!(
            classify_error(400, br#"{"error":{"message":"Unsupported value: 'temperature' does not support 0 with this model. Only the default (1) value is supported.","type":"invalid_request_error","param":"temperature","code":"unsupported_value"}}"#),
            unsupported("temperature")
        );
        // Without `param`, the name comes from the message.
        assert_eq!(
            classify_error(400, br#"{"error":{"message":"Unsupported parameter: 'top_p' is not supported with this model.","type":"invalid_request_error","param":null}}"#),
            unsupported("top_p")
        );
        assert_eq!(
            classify_error(400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"`temperature` is deprecated for this model."}}"#),
            unsupported("temperature")
        );
        assert_eq!(
            classify_error(400, br#"{"error":{"code":"invalid_request_error","message":"temperature is deprecated for this model.","type":"invalid_request_error","param":null}}"#),
            unsupported("temperature")
        );
        assert_eq!(
            classify_error(400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"top_k: Extra inputs are not permitted"}}"#),
            unsupported("top_k")
        );
        assert_eq!(
            ProviderFailure::UnsupportedParameter(None).reason(),
            Some("unsupported_parameter")
        );
    }

    #[test]
    fn context_length_and_content_filter() {
        assert_eq!(
            classify_error(400, br#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#),
            ContextLengthExceeded
        );
        assert_eq!(
            classify_error(400, br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#),
            ContextLengthExceeded
        );
        assert_eq!(
            classify_error(400, br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}"#),
            ContentFilter
        );
        assert_eq!(ContentFilter.reason(), Some("content_filter"));
    }

    #[test]
    fn anything_else_is_other() {
        assert_eq!(classify_error(500, b"boom"), Other);
        assert_eq!(
            classify_error(400, br#"{"error":{"message":"Invalid 'messages[0].role'","param":"messages[0].role","code":"invalid_value"}}"#),
            Other
        );
        assert_eq!(
            classify_error(404, br#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}"#),
            Other
        );
        assert_eq!(Other.reason(), None);
    }
}
