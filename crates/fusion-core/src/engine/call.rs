//! Callouts: what the engine asks the host to send, and how an answer is classified.

use crate::config::{Auth, Target};
use crate::wire::failure::ProviderFailure;
use crate::wire::neutral::Reply;
use crate::wire::{self, Api};

/// One HTTP call for the host to dispatch (`dispatch_http_call`).
#[derive(Debug, Clone, PartialEq)]
pub struct Callout {
    /// The engine's own id; the host maps its token to it.
    pub id: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// A callout's outcome as the host saw it. `status: None` is a transport
/// failure (reset, no healthy upstream, Envoy gave no headers).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallResult {
    pub status: Option<u16>,
    pub body: Vec<u8>,
    /// The answer was larger than `limits.max_response_bytes` and was not read.
    pub oversize: bool,
}

/// Why a call gave no usable answer; the strings are the documented `reason`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Unreachable,
    RateLimited,
    InsufficientCredits,
    /// The provider refused an optional parameter the model does not take.
    UnsupportedParameter,
    ContextLengthExceeded,
    ContentFilter,
    HttpError(u16),
    Unusable,
    Empty,
    TooLarge,
    /// Not sent: the turn reached `limits.max_upstream_calls` or `limits.max_upstream_bytes`.
    OverBudget,
}

impl Failure {
    pub fn reason(self) -> String {
        match self {
            Failure::HttpError(code) => format!("http_{code}"),
            other => other.class().name().to_string(),
        }
    }

    /// The reason with HTTP statuses grouped, a bounded set for metric names.
    pub fn class(self) -> FailureClass {
        match self {
            Failure::Timeout => FailureClass::Timeout,
            Failure::Unreachable => FailureClass::Unreachable,
            Failure::RateLimited => FailureClass::RateLimited,
            Failure::InsufficientCredits => FailureClass::InsufficientCredits,
            Failure::UnsupportedParameter => FailureClass::UnsupportedParameter,
            Failure::ContextLengthExceeded => FailureClass::ContextLengthExceeded,
            Failure::ContentFilter => FailureClass::ContentFilter,
            Failure::HttpError(code) if code < 500 => FailureClass::Http4xx,
            Failure::HttpError(_) => FailureClass::Http5xx,
            Failure::Unusable => FailureClass::Unusable,
            Failure::Empty => FailureClass::Empty,
            Failure::TooLarge => FailureClass::TooLarge,
            Failure::OverBudget => FailureClass::OverBudget,
        }
    }
}

/// Why a call gave no usable answer, grouped into the bounded set metric
/// names are defined for: every [`Failure::class`], and `Late` (the run went on
/// without the call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureClass {
    Timeout,
    Unreachable,
    RateLimited,
    InsufficientCredits,
    UnsupportedParameter,
    ContextLengthExceeded,
    ContentFilter,
    Http4xx,
    Http5xx,
    Unusable,
    Empty,
    TooLarge,
    OverBudget,
    Late,
}

impl FailureClass {
    pub const ALL: [FailureClass; 14] = [
        FailureClass::Timeout,
        FailureClass::Unreachable,
        FailureClass::RateLimited,
        FailureClass::InsufficientCredits,
        FailureClass::UnsupportedParameter,
        FailureClass::ContextLengthExceeded,
        FailureClass::ContentFilter,
        FailureClass::Http4xx,
        FailureClass::Http5xx,
        FailureClass::Unusable,
        FailureClass::Empty,
        FailureClass::TooLarge,
        FailureClass::OverBudget,
        FailureClass::Late,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Timeout => "timeout",
            FailureClass::Unreachable => "unreachable",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::InsufficientCredits => "insufficient_credits",
            FailureClass::UnsupportedParameter => "unsupported_parameter",
            FailureClass::ContextLengthExceeded => "context_length_exceeded",
            FailureClass::ContentFilter => "content_filter",
            FailureClass::Http4xx => "http_4xx",
            FailureClass::Http5xx => "http_5xx",
            FailureClass::Unusable => "unusable_response",
            FailureClass::Empty => "empty_response",
            FailureClass::TooLarge => "response_too_large",
            FailureClass::OverBudget => "over_budget",
            FailureClass::Late => "late",
        }
    }
}

/// Parses a call's answer, or says why it is unusable.
pub fn classify(api: Api, result: &CallResult) -> Result<Reply, Failure> {
    if result.oversize {
        return Err(Failure::TooLarge);
    }
    match result.status {
        None => Err(Failure::Unreachable),
        Some(504) => Err(Failure::Timeout),
        // Envoy's reply when the answer passed the gateway's response cap as it arrived.
        Some(s) if wire::failure::is_response_cap(s, &result.body) => Err(Failure::TooLarge),
        // Envoy's own reply when the connection failed or was reset before headers.
        Some(503) if is_envoy_connect_failure(&result.body) => Err(Failure::Unreachable),
        Some(s) if !(200..300).contains(&s) => Err(provider_failure(s, &result.body)),
        Some(_) => wire::parse_response(api, &result.body).map_err(|_| Failure::Unusable),
    }
}

/// A non-2xx answer's failure, by what the provider's error says in any
/// provider's spelling (`wire::failure`), else by its status.
fn provider_failure(status: u16, body: &[u8]) -> Failure {
    match wire::failure::classify_error(status, body) {
        ProviderFailure::InsufficientCredits => Failure::InsufficientCredits,
        ProviderFailure::RateLimited => Failure::RateLimited,
        ProviderFailure::UnsupportedParameter(_) => Failure::UnsupportedParameter,
        ProviderFailure::ContextLengthExceeded => Failure::ContextLengthExceeded,
        ProviderFailure::ContentFilter => Failure::ContentFilter,
        ProviderFailure::Other => Failure::HttpError(status),
    }
}

/// The optional parameter a failed call's provider refused, when it names one.
pub fn unsupported_parameter(result: &CallResult) -> Option<String> {
    match result.status {
        Some(s) if (400..500).contains(&s) => {
            match wire::failure::classify_error(s, &result.body) {
                ProviderFailure::UnsupportedParameter(name) => name,
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_envoy_connect_failure(body: &[u8]) -> bool {
    body.starts_with(b"upstream connect error") || body.starts_with(b"no healthy upstream")
}

/// The usage a failed call still reports, if its body says.
pub fn failed_usage(api: Api, result: &CallResult) -> crate::wire::neutral::Usage {
    wire::parse_response(api, &result.body)
        .map(|r| r.usage)
        .unwrap_or_default()
}

/// A JSON body's bytes, written straight into a `Vec` (`Value::to_string`
/// goes through `fmt::Write`, a dynamic call per piece: a fifth more
/// instructions on a fusion turn's bodies). A `Value` always serializes.
pub fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Builds the HTTP call with its body already written (a patch or a rebuild).
pub fn build_body(
    id: u32,
    target: Target<'_>,
    body: Vec<u8>,
    depth_header: (&str, u32),
    client_auth: &[(String, String)],
    trace: &[(String, String)],
    timeout_ms: u64,
) -> Callout {
    let up = target.upstream;
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), up.path.clone()),
        (":authority".to_string(), up.authority.clone()),
        ("content-type".to_string(), "application/json".to_string()),
        (depth_header.0.to_string(), depth_header.1.to_string()),
    ];
    if up.api == Api::Messages {
        headers.push(("anthropic-version".into(), "2023-06-01".into()));
    }
    // The client's trace context: the deliberation shows up in its trace.
    headers.extend(trace.iter().cloned());
    match &up.auth {
        Auth::None => {}
        Auth::Header { name, value } => headers.push((name.clone(), value.clone())),
        Auth::Forward => headers.extend(client_auth.iter().cloned()),
    }
    Callout {
        id,
        cluster: up.cluster.clone(),
        headers,
        body,
        timeout_ms,
    }
}

/// A parameter lowered (or raised) into the range the target API takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Clamped {
    pub param: &'static str,
    pub asked: f64,
    pub sent: f64,
}

/// The range an API takes for a sampling parameter: Anthropic's Messages API
/// takes `temperature` 0 to 1, OpenAI's Chat and Responses 0 to 2; `top_p` is
/// 0 to 1 everywhere.
pub fn param_range(api: Api, param: &str) -> Option<(f64, f64)> {
    match (param, api) {
        ("temperature", Api::Messages) => Some((0.0, 1.0)),
        ("temperature", Api::Chat | Api::Responses) => Some((0.0, 2.0)),
        ("top_p", _) => Some((0.0, 1.0)),
        _ => None,
    }
}

/// The widest range any API takes for a sampling parameter: a request value
/// outside it can reach no upstream (a 400 before any call); inside it, each
/// call gets [`clamp_to_api`].
pub fn widest_range(param: &str) -> Option<(f64, f64)> {
    [Api::Chat, Api::Responses, Api::Messages]
        .into_iter()
        .filter_map(|api| param_range(api, param))
        .reduce(|(lo, hi), (l, h)| (lo.min(l), hi.max(h)))
}

/// Clamps the body's sampling parameters into `api`'s ranges: a value the
/// client's own API accepts (a Chat client's `temperature: 1.5`) reaches an
/// upstream of another API (a Messages member) as that API's nearest value
/// instead of a 400 there. Values outside every API's range never get here
/// (refused with a 400 before any call, docs/configuration.md). Returns what
/// changed, for the call's report entry.
pub fn clamp_to_api(api: Api, body: &mut serde_json::Value) -> Vec<Clamped> {
    let mut out = Vec::new();
    let Some(obj) = body.as_object_mut() else {
        return out;
    };
    for param in ["temperature", "top_p"] {
        let (Some(asked), Some((lo, hi))) = (
            obj.get(param).and_then(serde_json::Value::as_f64),
            param_range(api, param),
        ) else {
            continue;
        };
        let sent = asked.clamp(lo, hi);
        if sent != asked {
            obj.insert(param.to_string(), serde_json::json!(sent));
            out.push(Clamped { param, asked, sent });
        }
    }
    out
}
