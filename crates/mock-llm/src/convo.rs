//! The API-independent view of a request and the content rules that decide
//! what the mock answers.

use serde_json::{json, Map, Value};

use crate::script::Script;

/// A function tool offered by the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// JSON schema of the arguments (`Value::Null` when absent).
    pub schema: Value,
}

/// Role of a flattened message. Tool results are messages of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    Tool,
}

/// A request flattened to what the content rules look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Convo {
    /// All system / developer / instructions text, joined by newlines.
    pub system: String,
    /// Messages in order; tool results are `Role::Tool` entries.
    pub messages: Vec<(Role, String)>,
    /// Offered function tools.
    pub tools: Vec<Tool>,
    /// `tool_choice` is none: never call a tool.
    pub tool_choice_none: bool,
}

impl Convo {
    pub fn add_system(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.system.is_empty() {
            self.system.push('\n');
        }
        self.system.push_str(text);
    }

    pub fn add(&mut self, role: Role, text: String) {
        self.messages.push((role, text));
    }

    pub fn add_tool(&mut self, name: &str, schema: Option<&Value>) {
        if name.is_empty() {
            return;
        }
        self.tools.push(Tool {
            name: name.to_string(),
            schema: schema.cloned().unwrap_or(Value::Null),
        });
    }

    /// Text of the last user message ("" if there is none).
    pub fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|(r, _)| *r == Role::User)
            .map_or("", |(_, t)| t.as_str())
    }

    /// The last tool result that came after the last user message, i.e. a
    /// tool result the model has not answered yet.
    pub fn pending_tool_result(&self) -> Option<&str> {
        for (role, text) in self.messages.iter().rev() {
            match role {
                Role::Tool => return Some(text),
                Role::User => return None,
                Role::Assistant => {}
            }
        }
        None
    }

    /// Tool results after the last user message.
    pub fn tool_results_since_user(&self) -> usize {
        self.messages
            .iter()
            .rev()
            .take_while(|(r, _)| *r != Role::User)
            .filter(|(r, _)| *r == Role::Tool)
            .count()
    }

    /// Whitespace-separated words across all request text, at least 1.
    pub fn input_words(&self) -> u64 {
        let n = word_count(&self.system)
            + self
                .messages
                .iter()
                .map(|(_, t)| word_count(t))
                .sum::<u64>();
        n.max(1)
    }

    fn offers(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

pub fn word_count(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Text of a message content: a string, an array of parts (`text`,
/// `input_text`, `output_text`, or anything with a string `text`), or an
/// object with `text`. Other parts (images, tool calls) are skipped.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(part_text).collect();
            texts.join("\n")
        }
        Value::Object(_) => part_text(content).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

fn part_text(part: &Value) -> Option<&str> {
    match part {
        Value::String(s) => Some(s),
        Value::Object(o) => {
            let ty = o.get("type").and_then(Value::as_str).unwrap_or("text");
            match ty {
                "text" | "input_text" | "output_text" => o.get("text").and_then(Value::as_str),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What the mock answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Text(String),
    ToolCall {
        /// 16 hex digits, stable for the same model, tool and arguments.
        hash: String,
        name: String,
        /// The arguments as a JSON string.
        arguments: String,
    },
}

impl Answer {
    /// Output tokens: words of the text, 10 for a tool call.
    pub fn output_tokens(&self) -> u64 {
        match self {
            Answer::Text(t) => word_count(t),
            Answer::ToolCall { .. } => 10,
        }
    }
}

/// Applies the content rules, in order: judge, tool call, after a tool
/// result, plain answer.
pub fn decide(convo: &Convo, script: &Script, model: &str) -> Answer {
    if let Some(text) = judge(convo, script) {
        return text_answer(text, script);
    }
    if let Some(call) = tool_call(convo, script, model) {
        return call;
    }
    if let Some(result) = convo.pending_tool_result() {
        let head: String = result.chars().take(300).collect();
        let text = format!(
            "{} final answer. Based on the tool result: {head}",
            script.base
        );
        return text_answer(text, script);
    }
    text_answer(plain(convo, script, model), script)
}

fn text_answer(text: String, script: &Script) -> Answer {
    Answer::Text(if script.empty { String::new() } else { text })
}

/// Rule 1: a judge prompt mentions `blind_spots` in the system text or in a
/// user message (not in a tool result or an earlier answer: a conversation
/// that continues after a fusion answer has the analysis in its history).
fn judge(convo: &Convo, script: &Script) -> Option<String> {
    const KEY: &str = "blind_spots";
    let in_messages = convo
        .messages
        .iter()
        .any(|(r, t)| *r == Role::User && t.contains(KEY));
    if !convo.system.contains(KEY) && !in_messages {
        return None;
    }
    // The filter encloses each response in `<response-NONCE n="N">` tags
    // (opening tags start a line); older prompts used `### Response N` headings.
    const MARK: &str = "### Response ";
    const TAG: &str = "\n<response-";
    let count = |t: &str| t.matches(TAG).count().max(t.matches(MARK).count());
    let mut n: usize = convo
        .messages
        .iter()
        .filter(|(r, _)| *r != Role::Tool)
        .map(|(_, t)| count(t))
        .sum();
    if n == 0 {
        n = convo.system.matches(MARK).count();
    }
    if script.prose {
        return Some(format!(
            "All {n} responses agree on the main point. Response 2 covers less, \
             and Response 1 adds a detail. None of the responses cite sources."
        ));
    }
    let analysis = judge_json(n);
    if script.fenced {
        return Some(format!("Here is the analysis:\n```json\n{analysis}\n```"));
    }
    Some(analysis)
}

/// The judge analysis JSON (keys in a fixed order).
pub fn judge_json(n: usize) -> String {
    format!(
        "{{\"consensus\":[\"All {n} responses agree on the main point.\"],\
         \"contradictions\":[],\
         \"partial_coverage\":[\"Response 2 covers less.\"],\
         \"unique_insights\":[\"Response 1 adds a detail.\"],\
         \"blind_spots\":[\"None of the responses cite sources.\"]}}"
    )
}

/// Rule 2: call an offered function tool.
fn tool_call(convo: &Convo, script: &Script, model: &str) -> Option<Answer> {
    if convo.tools.is_empty() || script.nocall || convo.tool_choice_none {
        return None;
    }
    let question = convo.last_user_text();
    if convo.pending_tool_result().is_some() {
        // `fusion_calls=N`: keep calling fusion until N tool results came back.
        if convo.tool_results_since_user() >= script.fusion_calls {
            return None;
        }
        convo.offers("fusion")?;
        let arguments = json!({ "question": question }).to_string();
        let hash = format!(
            "{:016x}",
            fnv1a(&[
                model,
                "fusion",
                &arguments,
                &convo.tool_results_since_user().to_string()
            ])
        );
        return Some(Answer::ToolCall {
            hash,
            name: "fusion".to_string(),
            arguments,
        });
    }
    let (name, args) = match script.call.as_deref().and_then(|n| convo.offers(n)) {
        Some(tool) => (tool.name.clone(), client_args(&tool.schema, question)),
        None => {
            convo.offers("fusion")?;
            ("fusion".to_string(), json!({ "question": question }))
        }
    };
    let arguments = args.to_string();
    let hash = format!("{:016x}", fnv1a(&[model, &name, &arguments]));
    Some(Answer::ToolCall {
        hash,
        name,
        arguments,
    })
}

/// Arguments for a client tool: fills the schema's required properties
/// (strings with the question, numbers with 1, booleans with true).
fn client_args(schema: &Value, question: &str) -> Value {
    let mut args = Map::new();
    let props = schema.get("properties").and_then(Value::as_object);
    let required = schema.get("required").and_then(Value::as_array);
    if let (Some(props), Some(required)) = (props, required) {
        for name in required.iter().filter_map(Value::as_str) {
            let ty = props
                .get(name)
                .and_then(|p| p.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("string");
            let v = match ty {
                "integer" | "number" => json!(1),
                "boolean" => json!(true),
                "array" => json!([]),
                "object" => json!({}),
                _ => json!(question),
            };
            args.insert(name.to_string(), v);
        }
    }
    Value::Object(args)
}

const VOCAB: [&str; 32] = [
    "alpha",
    "bravo",
    "careful",
    "detail",
    "evidence",
    "factor",
    "general",
    "however",
    "indeed",
    "journey",
    "key",
    "likely",
    "method",
    "notably",
    "overall",
    "point",
    "quality",
    "reason",
    "simple",
    "therefore",
    "useful",
    "various",
    "which",
    "yields",
    "zone",
    "answer",
    "model",
    "option",
    "result",
    "source",
    "tradeoff",
    "view",
];

/// Rule 4: `<base> answers #<hash8>: <words...> about <first 60 chars>`.
fn plain(convo: &Convo, script: &Script, model: &str) -> String {
    let prompt = convo.last_user_text();
    let h = fnv1a(&[model, prompt]);
    let hash8 = format!("{:08x}", (h >> 32) as u32);
    let snippet: String = prompt.chars().take(60).collect();
    let snippet = snippet.split_whitespace().collect::<Vec<_>>().join(" ");
    let snippet = if snippet.is_empty() {
        "the question".to_string()
    } else {
        snippet
    };
    // "<base> answers #h:" + "about" + snippet are the fixed words.
    let fixed = 4 + word_count(&snippet) as usize;
    let filler = match script.words {
        Some(n) => n.saturating_sub(fixed),
        // Default: about 12 words, with at least a few filler words.
        None => 12usize.saturating_sub(fixed).max(3),
    };
    let mut state = h;
    let mut words = Vec::with_capacity(filler);
    for _ in 0..filler {
        state = splitmix64(state);
        let idx = (state % VOCAB.len() as u64) as usize;
        words.push(VOCAB.get(idx).copied().unwrap_or("word"));
    }
    let mut out = format!("{} answers #{hash8}:", script.base);
    for w in words {
        out.push(' ');
        out.push_str(w);
    }
    out.push_str(" about ");
    out.push_str(&snippet);
    if let Some(n) = script.bytes {
        // Filler after the fixed words: the answer still starts as every plain answer does.
        const FILL: &str = " lorem";
        out.push_str(&FILL.repeat(n.saturating_sub(out.len()) / FILL.len()));
    }
    out
}

/// FNV-1a over the parts, separated by a 0xff byte.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo(msgs: &[(Role, &str)]) -> Convo {
        let mut c = Convo::default();
        for (r, t) in msgs {
            c.add(*r, (*t).to_string());
        }
        c
    }

    fn text(a: Answer) -> String {
        match a {
            Answer::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn plain_answer_is_deterministic_and_model_specific() {
        let c = convo(&[(Role::User, "What is the capital of France?")]);
        let a1 = text(decide(&c, &Script::parse("m1"), "m1"));
        let a2 = text(decide(&c, &Script::parse("m1"), "m1"));
        let b = text(decide(&c, &Script::parse("m2"), "m2"));
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert!(a1.starts_with("m1 answers #"), "{a1}");
        assert!(a1.ends_with("about What is the capital of France?"), "{a1}");
        assert_eq!(word_count(&a1), 13, "{a1}");
    }

    #[test]
    fn words_directive_sets_length() {
        let c = convo(&[(Role::User, "hi")]);
        let a = text(decide(&c, &Script::parse("m:words=100"), "m:words=100"));
        assert_eq!(word_count(&a), 100);
    }

    #[test]
    fn empty_directive() {
        let c = convo(&[(Role::User, "hi")]);
        assert_eq!(text(decide(&c, &Script::parse("m:empty"), "m:empty")), "");
    }

    #[test]
    fn judge_counts_responses() {
        let mut c = convo(&[(
            Role::User,
            "### Response 1\na\n### Response 2\nb\n### Response 3\nc",
        )]);
        c.add_system("Return JSON with keys consensus, ..., blind_spots.");
        let a = text(decide(&c, &Script::parse("j"), "j"));
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(
            v["consensus"][0],
            "All 3 responses agree on the main point."
        );
        assert_eq!(v["blind_spots"][0], "None of the responses cite sources.");
        assert!(a.starts_with("{\"consensus\""));

        let f = text(decide(&c, &Script::parse("j:fenced"), "j:fenced"));
        assert!(f.starts_with("Here is the analysis:\n```json\n{"), "{f}");
        assert!(f.ends_with("}\n```"));
        let p = text(decide(&c, &Script::parse("j:prose"), "j:prose"));
        assert!(!p.contains('{'));
    }

    #[test]
    fn judge_beats_tools() {
        let mut c = convo(&[(Role::User, "fill blind_spots")]);
        c.add_tool("fusion", None);
        assert!(matches!(
            decide(&c, &Script::parse("j"), "j"),
            Answer::Text(_)
        ));
    }

    #[test]
    fn blind_spots_in_tool_result_is_not_a_judge() {
        let mut c = convo(&[(Role::User, "q"), (Role::Tool, "{\"blind_spots\":[]}")]);
        c.add_tool("fusion", None);
        let a = text(decide(&c, &Script::parse("o"), "o"));
        assert!(a.starts_with("o final answer. Based on the tool result: {\"blind_spots\""));
        // Nor in an earlier answer of the conversation.
        let c = convo(&[
            (Role::User, "q1"),
            (Role::Assistant, "o final answer. {\"blind_spots\": []}"),
            (Role::User, "q2"),
        ]);
        let a = text(decide(&c, &Script::parse("o"), "o"));
        assert!(a.starts_with("o answers #"), "{a}");
    }

    #[test]
    fn calls_fusion_with_question() {
        let mut c = convo(&[(Role::User, "first"), (Role::User, "Why is the sky blue?")]);
        c.add_tool("get_weather", None);
        c.add_tool("fusion", None);
        match decide(&c, &Script::parse("o"), "o") {
            Answer::ToolCall {
                name,
                arguments,
                hash,
            } => {
                assert_eq!(name, "fusion");
                assert_eq!(arguments, r#"{"question":"Why is the sky blue?"}"#);
                assert_eq!(hash.len(), 16);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn call_directive_and_nocall() {
        let mut c = convo(&[(Role::User, "weather in Paris")]);
        let schema = json!({"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city","days"]});
        c.add_tool("get_weather", Some(&schema));
        c.add_tool("fusion", None);
        match decide(
            &c,
            &Script::parse("o:call=get_weather"),
            "o:call=get_weather",
        ) {
            Answer::ToolCall {
                name, arguments, ..
            } => {
                assert_eq!(name, "get_weather");
                let v: Value = serde_json::from_str(&arguments).unwrap();
                assert_eq!(v, json!({"city":"weather in Paris","days":1}));
            }
            other => panic!("{other:?}"),
        }
        // Not offered -> falls back to fusion.
        match decide(&c, &Script::parse("o:call=nope"), "o:call=nope") {
            Answer::ToolCall { name, .. } => assert_eq!(name, "fusion"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&c, &Script::parse("o:nocall"), "o:nocall"),
            Answer::Text(_)
        ));
    }

    #[test]
    fn no_fusion_tool_means_text() {
        let mut c = convo(&[(Role::User, "q")]);
        c.add_tool("get_weather", None);
        assert!(matches!(
            decide(&c, &Script::parse("o"), "o"),
            Answer::Text(_)
        ));
    }

    #[test]
    fn after_tool_result_final_answer() {
        let long = "x".repeat(400);
        let mut c = convo(&[
            (Role::User, "q"),
            (Role::Assistant, ""),
            (Role::Tool, &long),
        ]);
        c.add_tool("fusion", None);
        let a = text(decide(
            &c,
            &Script::parse("outer:latency=5"),
            "outer:latency=5",
        ));
        assert_eq!(
            a,
            format!(
                "outer final answer. Based on the tool result: {}",
                "x".repeat(300)
            )
        );
    }

    #[test]
    fn new_user_turn_after_tool_result_calls_again() {
        let mut c = convo(&[(Role::User, "q1"), (Role::Tool, "r1"), (Role::User, "q2")]);
        c.add_tool("fusion", None);
        assert!(matches!(
            decide(&c, &Script::parse("o"), "o"),
            Answer::ToolCall { .. }
        ));
    }

    #[test]
    fn text_of_parts() {
        let v = json!([{"type":"text","text":"a"},{"type":"image_url"},{"type":"input_text","text":"b"},{"type":"output_text","text":"c"}]);
        assert_eq!(text_of(&v), "a\nb\nc");
        assert_eq!(text_of(&json!("s")), "s");
        assert_eq!(text_of(&Value::Null), "");
    }

    #[test]
    fn input_words_at_least_one() {
        assert_eq!(Convo::default().input_words(), 1);
        let mut c = convo(&[(Role::User, "one two"), (Role::Tool, "three")]);
        c.add_system("four five six");
        assert_eq!(c.input_words(), 6);
    }
}
