//! The common conversation model every wire API translates to and from.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    User(String),
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments, as the model wrote it.
    pub arguments: String,
}

/// A function tool, in the shape every API can express.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
    Named(String),
}

/// Generation parameters forwarded to a provider call; `None` leaves the provider default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenParams {
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Option<Value>,
    /// `{"effort": "low" | ...}`: Chat `reasoning_effort`, Responses `reasoning`,
    /// Messages `thinking` with a budget for the effort.
    pub reasoning: Option<Value>,
    /// Responses `max_tool_calls`; the other APIs have no such bound.
    pub max_tool_calls: Option<u64>,
    /// Request metadata (Chat and Responses `metadata`, Messages `metadata.user_id`).
    pub metadata: Option<Value>,
    /// Provider tools (e.g. `{"type": "web_search"}`) sent as they are, after the function tools.
    pub provider_tools: Vec<Value>,
}

impl GenParams {
    /// `self` with every parameter `over` sets replaced.
    pub fn overlay(&self, over: &GenParams) -> GenParams {
        GenParams {
            max_tokens: over.max_tokens.or(self.max_tokens),
            temperature: over.temperature.or(self.temperature),
            top_p: over.top_p.or(self.top_p),
            stop: over.stop.clone().or_else(|| self.stop.clone()),
            reasoning: over.reasoning.clone().or_else(|| self.reasoning.clone()),
            max_tool_calls: over.max_tool_calls.or(self.max_tool_calls),
            metadata: over.metadata.clone().or_else(|| self.metadata.clone()),
            provider_tools: if over.provider_tools.is_empty() {
                self.provider_tools.clone()
            } else {
                over.provider_tools.clone()
            },
        }
    }
}

/// What one provider call is asked: conversation, tools and parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub system: Option<String>,
    pub messages: Vec<Message>,
}

impl Conversation {
    /// Text of the last user message, the question a fusion run answers.
    pub fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find_map(|m| match m {
                Message::User(t) => Some(t.as_str()),
                _ => None,
            })
            .unwrap_or("")
    }
}

/// Token counts of one call or of a whole turn, API-neutral
/// (`api::usage` reads and writes each API's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// All input tokens, cached ones and cache writes included.
    pub input_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    /// The part of `input_tokens` served from a prompt cache.
    pub cached_input_tokens: u64,
    /// The part of `input_tokens` written to a prompt cache (Anthropic's
    /// `cache_creation_input_tokens`, OpenAI's `cache_write_tokens`).
    pub cache_write_tokens: u64,
    /// The part of `output_tokens` spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// The API-neutral shape the `fusion` report and the run log use.
    pub fn report_json(&self) -> Value {
        serde_json::json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total(),
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        })
    }

    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
    /// Sums every count (saturating: provider numbers are untrusted).
    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
    }
}

/// Price of a model in currency units (e.g. USD) per million tokens
/// (the configuration's `prices` table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Cached input tokens; the input price when absent.
    pub cached_input_per_mtok: Option<f64>,
}

impl Price {
    /// Cost of one call's usage, in the price table's currency.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        ((usage.input_tokens - cached) as f64 * self.input_per_mtok
            + cached as f64 * cached_price
            + usage.output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Finish {
    #[default]
    Stop,
    Length,
    ToolCalls,
}

/// A provider's answer, parsed from any API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub model: String,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish: Finish,
    /// The model declined: Chat `message.refusal`, a Responses `refusal` part,
    /// Messages `stop_reason: "refusal"` (its text).
    pub refusal: Option<String>,
    /// Sources the answer cites: OpenAI `annotations`, Anthropic `citations`.
    pub citations: Vec<Citation>,
}

impl Reply {
    /// The answer as a panel member gave it, for the judge: a refusal is the
    /// member's answer, marked as one.
    pub fn answer_text(&self) -> String {
        match &self.refusal {
            Some(r) if self.text.is_empty() => format!("[refused] {r}"),
            Some(r) => format!("{}\n[refused] {r}", self.text),
            None => self.text.clone(),
        }
    }
}

/// A source an answer cites, whatever the API's spelling.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Citation {
    pub url: Option<String>,
    pub title: Option<String>,
    /// The cited span of the reply's text, in characters, where the API says.
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// The quoted source text (Anthropic `cited_text`).
    pub cited_text: Option<String>,
    /// The API it was read from and its own object, written back unchanged to
    /// a client of that API.
    pub origin: Option<(super::Api, Value)>,
}

/// One provider call to build: the request in API-neutral form.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest<'a> {
    pub model: &'a str,
    pub conversation: &'a Conversation,
    pub tools: &'a [ToolDef],
    pub tool_choice: &'a ToolChoice,
    pub params: &'a GenParams,
}
