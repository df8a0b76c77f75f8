//! The host-independent admission rules the glue asks before and around a
//! run: which requests can be fusion at all (method, content type, path), how
//! the depth header reads, and whether the worker has a run slot free. The
//! depth rule and the request size limit apply in [`super::start`].

use crate::config::Config;
use crate::wire::Api;

/// What the host read from a request's headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// The request has no body.
    pub end_of_stream: bool,
}

const JSON: &str = "application/json";

/// The API of a request that may ask for fusion: a POST of JSON with a body
/// to one of the API paths. `None`: pass it through untouched at once.
pub fn candidate(head: &RequestHead<'_>) -> Option<Api> {
    if head.end_of_stream || head.method != Some("POST") {
        return None;
    }
    let api = head.path.and_then(Api::from_path)?;
    json_content_type(head.content_type).then_some(api)
}

/// Whether a content type says JSON (`application/json`, any case, with or
/// without parameters).
pub fn json_content_type(content_type: Option<&str>) -> bool {
    // Compared in place: no lowercased copy per request; the usual lowercase
    // spelling with one memcmp, any other case byte by byte.
    content_type.is_some_and(|t| {
        t.starts_with(JSON)
            || t.as_bytes()
                .get(..JSON.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(JSON.as_bytes()))
    })
}

/// The API of a POST with a body to an API path whose content type is not
/// JSON: never fusion, but the filter looks at its body to tell a client that
/// asked for fusion why it got none (`x-fusion-skipped: content_type`).
pub fn mislabelled(head: &RequestHead<'_>) -> Option<Api> {
    if head.end_of_stream || head.method != Some("POST") || candidate(head).is_some() {
        return None;
    }
    head.path.and_then(Api::from_path)
}

/// The depth header's value: 0 when absent; an unreadable value reads as
/// deep, so a doubtful request never recurses.
pub fn depth(value: Option<&str>) -> u32 {
    match value {
        None => 0,
        Some(v) => v.trim().parse::<u32>().unwrap_or(u32::MAX),
    }
}

/// The worker already runs `limits.max_concurrent_runs` fusion runs.
pub fn at_capacity(config: &Config, active_runs: usize) -> bool {
    active_runs >= config.limits.max_concurrent_runs
}

/// The worker's runs already hold `limits.max_bytes_in_flight` bytes (requests
/// sent and answers buffered): a new run meets `on_overload` as at capacity.
pub fn over_bytes_in_flight(config: &Config, bytes: u64) -> bool {
    bytes >= config.limits.max_bytes_in_flight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(method: &'a str, path: &'a str, ct: &'a str) -> RequestHead<'a> {
        RequestHead {
            method: Some(method),
            path: Some(path),
            content_type: Some(ct),
            end_of_stream: false,
        }
    }

    #[test]
    fn only_json_posts_to_api_paths_are_candidates() {
        assert_eq!(
            candidate(&head(
                "POST",
                "/v1/chat/completions",
                "Application/JSON; charset=utf-8"
            )),
            Some(Api::Chat)
        );
        assert_eq!(
            candidate(&head("GET", "/v1/chat/completions", "application/json")),
            None
        );
        assert_eq!(
            candidate(&head("POST", "/v1/models", "application/json")),
            None
        );
        assert_eq!(candidate(&head("POST", "/v1/messages", "text/plain")), None);
        assert_eq!(
            candidate(&head("POST", "/v1/messages", "application/jso")),
            None
        );
        assert_eq!(
            candidate(&head("POST", "/v1/messages", "APPLICATION/JSON")),
            Some(Api::Messages)
        );
        let no_body = RequestHead {
            end_of_stream: true,
            ..head("POST", "/v1/messages", "application/json")
        };
        assert_eq!(candidate(&no_body), None);
    }

    #[test]
    fn depth_reads_absent_as_zero_and_garbage_as_deep() {
        assert_eq!(depth(None), 0);
        assert_eq!(depth(Some(" 2 ")), 2);
        assert_eq!(depth(Some("x")), u32::MAX);
    }

    #[test]
    fn capacity_is_the_configured_slot_count() {
        let c = Config::default_mock().unwrap_or_else(|e| panic!("{e}"));
        let max = c.limits.max_concurrent_runs;
        assert!(!at_capacity(&c, max - 1));
        assert!(at_capacity(&c, max));
    }
}
