//! The host-independent admission rules the glue asks before and around a
//! run: which requests can be fusion at all (method, content type, path), how
//! the depth header reads, and whether the worker has a run slot free. The
//! depth rule and the request size limit apply in [`super::start`].

use crate::config::Config;
use crate::wire::Api;

const JSON: &str = "application/json";

/// A request the glue holds until its body is complete: a POST with a body to
/// one of the API paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub api: Api,
    /// Its content type says JSON: it may be fusion. `false`: never fusion,
    /// but its body is looked at to tell a client that asked for fusion why it
    /// got none (`x-fusion-skipped: content_type`).
    pub json: bool,
}

/// Which requests the filter looks at. Each header is read (through
/// `header`) only when the ones before left the request in question: a GET
/// costs one read, a POST elsewhere two, a request whose headers end the
/// stream none. `None`: pass it through untouched at once.
pub fn candidate<H: AsRef<str>>(
    end_of_stream: bool,
    mut header: impl FnMut(&str) -> Option<H>,
) -> Option<Candidate> {
    if end_of_stream || header(":method").as_ref().map(AsRef::as_ref) != Some("POST") {
        return None;
    }
    let api = Api::from_path(header(":path")?.as_ref())?;
    let content_type = header("content-type");
    Some(Candidate {
        api,
        json: json_content_type(content_type.as_ref().map(AsRef::as_ref)),
    })
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

    /// The rule over a fixed set of headers, recording which were read.
    fn classify(end_of_stream: bool, headers: &[(&str, &str)]) -> (Option<Candidate>, Vec<String>) {
        let mut read = Vec::new();
        let got = candidate(end_of_stream, |name| {
            read.push(name.to_string());
            headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        });
        (got, read)
    }

    fn post(path: &str, ct: &str) -> Option<Candidate> {
        let headers = [(":method", "POST"), (":path", path), ("content-type", ct)];
        classify(false, &headers).0
    }

    #[test]
    fn posts_with_a_body_to_api_paths_are_held_json_or_not() {
        let chat = |json| {
            Some(Candidate {
                api: Api::Chat,
                json,
            })
        };
        let messages = |json| {
            Some(Candidate {
                api: Api::Messages,
                json,
            })
        };
        assert_eq!(
            post("/v1/chat/completions", "Application/JSON; charset=utf-8"),
            chat(true)
        );
        assert_eq!(post("/v1/messages", "APPLICATION/JSON"), messages(true));
        assert_eq!(post("/v1/messages", "text/plain"), messages(false));
        assert_eq!(post("/v1/messages", "application/jso"), messages(false));
        assert_eq!(post("/v1/models", "application/json"), None);
        let (no_type, _) = classify(false, &[(":method", "POST"), (":path", "/v1/messages")]);
        assert_eq!(no_type, messages(false));
    }

    #[test]
    fn headers_are_read_only_while_the_request_is_in_question() {
        let all = [
            (":method", "GET"),
            (":path", "/v1/chat/completions"),
            ("content-type", "application/json"),
        ];
        assert_eq!(classify(false, &all), (None, vec![":method".to_string()]));
        assert_eq!(classify(true, &all), (None, vec![]));
        let elsewhere = [
            (":method", "POST"),
            (":path", "/healthz"),
            ("content-type", "application/json"),
        ];
        assert_eq!(
            classify(false, &elsewhere),
            (None, vec![":method".to_string(), ":path".to_string()])
        );
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
