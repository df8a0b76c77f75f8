//! Behaviour scripted by the model name: `base` or `base:dir,dir=val,...`.

/// The directives parsed from a model name. Unknown directives are kept in
/// `unknown` and otherwise ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    /// The part before the first `:`.
    pub base: String,
    /// `latency=MS`: sleep before sending the response headers.
    pub latency_ms: u64,
    /// `chunk_delay=MS`: sleep between SSE events.
    pub chunk_delay_ms: u64,
    /// `status=CODE`: reply with this status and a native error body.
    pub status: Option<u16>,
    /// `malformed`: truncated JSON body or truncated SSE stream.
    pub malformed: bool,
    /// `reset`: close the connection without answering.
    pub reset: bool,
    /// `hang`: never answer.
    pub hang: bool,
    /// `empty`: answer with empty text.
    pub empty: bool,
    /// `prose`: as judge, answer plain prose instead of JSON.
    pub prose: bool,
    /// `fenced`: as judge, answer JSON inside a code fence after some text.
    pub fenced: bool,
    /// `nocall`: never call an offered tool.
    pub nocall: bool,
    /// `call=NAME`: call this offered function tool instead of `fusion`.
    pub call: Option<String>,
    /// `fusion_calls=N`: call an offered `fusion` tool again until N tool results came back.
    pub fusion_calls: usize,
    /// `words=N`: make the plain answer about N words long.
    pub words: Option<usize>,
    /// `bytes=N`: pad the plain answer with filler to about N bytes (cheap at any size:
    /// `bytes=67108864,slow_body=60000` is a 64 MiB answer dripped over a minute).
    pub bytes: Option<usize>,
    /// `slow_body=MS`: send the headers at once, then drip the body over MS milliseconds.
    pub slow_body_ms: u64,
    /// `sse`: answer with an SSE stream even when the request did not ask for one.
    pub sse: bool,
    /// `cut`: send the headers and half the announced body, then close the connection.
    pub cut: bool,
    /// `garbage`: status 200, a JSON content type and a body of invalid UTF-8 bytes.
    pub garbage: bool,
    /// `cached=N`: report N of the input tokens (at most all) as read from a prompt cache.
    pub cached: u64,
    /// `reasoning=N`: report N reasoning tokens, counted in the output tokens.
    pub reasoning: u64,
    /// `reasoning_model` (or a base name containing `reasoning`): refuse
    /// sampling parameters the way OpenAI's o-series and Anthropic's newest
    /// Opus models do (`temperature`, `top_p`; Chat `max_tokens`; Messages `top_k`).
    pub reasoning_model: bool,
    /// `unsupported=a+b`: answer 400 "unsupported parameter" when the request has these fields.
    pub unsupported: Vec<String>,
    /// `refuse`: answer with a refusal in the API's own field.
    pub refuse: bool,
    /// `cite`: attach a URL citation to the text answer.
    pub cite: bool,
    /// `no_credits`: the provider's exhausted-credit error (OpenAI 429
    /// `insufficient_quota`, Anthropic 400 "credit balance is too low").
    pub no_credits: bool,
    /// `sse_comment`: begin an SSE answer with a comment line (as OpenRouter does:
    /// `: OPENROUTER PROCESSING`) and put `id:`/`retry:` fields before the first event.
    pub sse_comment: bool,
    /// Directives that were not understood.
    pub unknown: Vec<String>,
}

impl Script {
    /// Parses a model name. Never fails: bad values land in `unknown`.
    pub fn parse(model: &str) -> Script {
        let (base, rest) = match model.split_once(':') {
            Some((b, r)) => (b, r),
            None => (model, ""),
        };
        let mut s = Script {
            base: base.to_string(),
            reasoning_model: base.contains("reasoning"),
            ..Script::default()
        };
        for raw in rest.split(',') {
            let dir = raw.trim();
            if dir.is_empty() {
                continue;
            }
            let (key, val) = match dir.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (dir, None),
            };
            let ok = match (key, val) {
                ("latency", Some(v)) => set(&mut s.latency_ms, v),
                ("chunk_delay", Some(v)) => set(&mut s.chunk_delay_ms, v),
                ("slow_body", Some(v)) => set(&mut s.slow_body_ms, v),
                ("cached", Some(v)) => set(&mut s.cached, v),
                ("reasoning", Some(v)) => set(&mut s.reasoning, v),
                ("fusion_calls", Some(v)) => v.parse().map(|n| s.fusion_calls = n).is_ok(),
                ("status", Some(v)) => v.parse().map(|c| s.status = Some(c)).is_ok(),
                ("words", Some(v)) => v.parse().map(|n| s.words = Some(n)).is_ok(),
                ("bytes", Some(v)) => v.parse().map(|n| s.bytes = Some(n)).is_ok(),
                ("call", Some(v)) if !v.is_empty() => {
                    s.call = Some(v.to_string());
                    true
                }
                ("unsupported", Some(v)) if !v.is_empty() => {
                    s.unsupported
                        .extend(v.split('+').filter(|p| !p.is_empty()).map(str::to_string));
                    true
                }
                ("reasoning_model", None) => flag(&mut s.reasoning_model),
                ("refuse", None) => flag(&mut s.refuse),
                ("cite", None) => flag(&mut s.cite),
                ("no_credits", None) => flag(&mut s.no_credits),
                ("sse_comment", None) => flag(&mut s.sse_comment),
                ("malformed", None) => flag(&mut s.malformed),
                ("reset", None) => flag(&mut s.reset),
                ("hang", None) => flag(&mut s.hang),
                ("empty", None) => flag(&mut s.empty),
                ("prose", None) => flag(&mut s.prose),
                ("fenced", None) => flag(&mut s.fenced),
                ("nocall", None) => flag(&mut s.nocall),
                ("sse", None) => flag(&mut s.sse),
                ("cut", None) => flag(&mut s.cut),
                ("garbage", None) => flag(&mut s.garbage),
                _ => false,
            };
            if !ok {
                s.unknown.push(dir.to_string());
            }
        }
        s
    }
}

fn set(slot: &mut u64, v: &str) -> bool {
    v.parse().map(|n| *slot = n).is_ok()
}

fn flag(slot: &mut bool) -> bool {
    *slot = true;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_name_has_no_directives() {
        let s = Script::parse("gpt-4o");
        assert_eq!(s.base, "gpt-4o");
        assert_eq!(
            s,
            Script {
                base: "gpt-4o".into(),
                ..Script::default()
            }
        );
    }

    #[test]
    fn parses_all_directives() {
        let s = Script::parse(
            "m1:latency=250,chunk_delay=5,status=429,malformed,reset,hang,empty,prose,fenced,nocall,call=get_weather,words=40,bytes=4096,slow_body=900,sse,cut,garbage,cached=7,reasoning=9",
        );
        assert_eq!(s.base, "m1");
        assert_eq!(s.latency_ms, 250);
        assert_eq!(s.chunk_delay_ms, 5);
        assert_eq!(s.status, Some(429));
        assert!(s.malformed && s.reset && s.hang && s.empty);
        assert!(s.prose && s.fenced && s.nocall);
        assert_eq!(s.call.as_deref(), Some("get_weather"));
        assert_eq!(s.words, Some(40));
        assert_eq!(s.bytes, Some(4096));
        assert_eq!(s.slow_body_ms, 900);
        assert!(s.sse && s.cut && s.garbage);
        assert_eq!((s.cached, s.reasoning), (7, 9));
        assert!(s.unknown.is_empty());
    }

    #[test]
    fn bad_values_are_unknown() {
        let s = Script::parse("b:latency=abc,bogus,hang=1, empty ,");
        assert_eq!(s.base, "b");
        assert_eq!(s.latency_ms, 0);
        assert!(s.empty);
        assert!(!s.hang);
        assert_eq!(s.unknown, vec!["latency=abc", "bogus", "hang=1"]);
    }

    #[test]
    fn strictness_and_answer_directives() {
        let s = Script::parse(
            "m:reasoning_model,unsupported=seed+metadata,refuse,cite,no_credits,sse_comment",
        );
        assert!(s.reasoning_model && s.refuse && s.cite && s.no_credits && s.sse_comment);
        assert_eq!(s.unsupported, vec!["seed", "metadata"]);
        assert!(s.unknown.is_empty());
        assert!(Script::parse("o3-reasoning-judge").reasoning_model);
        assert!(!Script::parse("mock-judge").reasoning_model);
    }

    #[test]
    fn only_first_colon_splits() {
        let s = Script::parse("a:call=ns:tool");
        assert_eq!(s.base, "a");
        assert_eq!(s.call.as_deref(), Some("ns:tool"));
    }
}
