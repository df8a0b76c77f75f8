//! Callouts: what the engine asks the host to send, and how an answer is classified.

use crate::config::{Auth, Target};
use crate::wire::neutral::{ModelRequest, Reply};
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
    HttpError(u16),
    Unusable,
    Empty,
    TooLarge,
}

impl Failure {
    pub fn reason(self) -> String {
        match self {
            Failure::Timeout => "timeout".into(),
            Failure::Unreachable => "unreachable".into(),
            Failure::RateLimited => "rate_limited".into(),
            Failure::InsufficientCredits => "insufficient_credits".into(),
            Failure::HttpError(code) => format!("http_{code}"),
            Failure::Unusable => "unusable_response".into(),
            Failure::Empty => "empty_response".into(),
            Failure::TooLarge => "response_too_large".into(),
        }
    }

    /// The reason with HTTP statuses grouped, a bounded set for metric names.
    pub fn class(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::RateLimited => "rate_limited",
            Failure::InsufficientCredits => "insufficient_credits",
            Failure::HttpError(code) if code < 500 => "http_4xx",
            Failure::HttpError(_) => "http_5xx",
            Failure::Unusable => "unusable_response",
            Failure::Empty => "empty_response",
            Failure::TooLarge => "response_too_large",
        }
    }
}

/// Every [`Failure::class`], and `late`: what metric names are defined for.
pub const FAILURE_CLASSES: [&str; 10] = [
    "timeout",
    "unreachable",
    "rate_limited",
    "insufficient_credits",
    "http_4xx",
    "http_5xx",
    "unusable_response",
    "empty_response",
    "response_too_large",
    "late",
];

/// Parses a call's answer, or says why it is unusable.
pub fn classify(api: Api, result: &CallResult) -> Result<Reply, Failure> {
    if result.oversize {
        return Err(Failure::TooLarge);
    }
    match result.status {
        None => Err(Failure::Unreachable),
        Some(504) => Err(Failure::Timeout),
        Some(429) => Err(Failure::RateLimited),
        Some(402) => Err(Failure::InsufficientCredits),
        // Envoy's own reply when the connection failed or was reset before headers.
        Some(503) if is_envoy_connect_failure(&result.body) => Err(Failure::Unreachable),
        Some(s) if !(200..300).contains(&s) => Err(Failure::HttpError(s)),
        Some(_) => wire::parse_response(api, &result.body).map_err(|_| Failure::Unusable),
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

/// Builds the HTTP call for one model request to its upstream.
pub fn build(
    id: u32,
    target: Target<'_>,
    req: &ModelRequest<'_>,
    depth_header: (&str, u32),
    client_auth: &[(String, String)],
    timeout_ms: u64,
) -> Callout {
    let up = target.upstream;
    let body = wire::build_request(up.api, req).to_string().into_bytes();
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
