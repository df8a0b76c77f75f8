//! The common conversation model every wire API translates to and from.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A user turn: its content parts in order (adjacent text parts joined).
    User(Vec<Part>),
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: String,
        content: String,
    },
}

impl Message {
    /// A user turn of text only.
    pub fn user_text(text: impl Into<String>) -> Message {
        Message::User(vec![Part::Text(text.into())])
    }

    /// The text of a user turn (its text parts joined), `None` for other turns.
    pub fn user_text_of(&self) -> Option<String> {
        match self {
            Message::User(parts) => Some(parts_text(parts)),
            _ => None,
        }
    }
}

/// One content part of a user turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image {
        source: Source,
        /// OpenAI's `detail` (`low`, `high`, `auto`).
        detail: Option<String>,
    },
    /// A document or file (PDF, plain text).
    File {
        source: Source,
        filename: Option<String>,
    },
    /// Base64 audio and its format (`wav`, `mp3`).
    Audio {
        data: String,
        format: String,
    },
}

impl Part {
    /// What the part is, as error messages and the judge name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Part::Text(_) => "text",
            Part::Image { .. } => "image",
            Part::File { .. } => "file",
            Part::Audio { .. } => "audio",
        }
    }
}

/// The filename OpenAI needs with inline file data when the client gave none
/// (a Messages `document` has a `title` at most): `document.<ext>` by media type.
pub fn default_filename(source: &Source) -> Option<String> {
    let Source::Base64 { media_type, .. } = source else {
        return None;
    };
    let ext = match media_type.as_str() {
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "text/markdown" => "md",
        "text/html" => "html",
        "text/csv" => "csv",
        _ => "bin",
    };
    Some(format!("document.{ext}"))
}

/// Where an image's or a file's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Url(String),
    Base64 {
        media_type: String,
        data: String,
    },
    /// A file uploaded to a provider's Files API: valid only at that provider
    /// (`openai`: an OpenAI file id, else an Anthropic one).
    FileId {
        id: String,
        openai: bool,
    },
}

impl Source {
    /// A URL, reading `data:<type>;base64,<data>` URLs as inline bytes.
    pub fn from_url(url: &str) -> Source {
        if let Some(rest) = url.strip_prefix("data:") {
            if let Some((media_type, data)) = rest.split_once(";base64,") {
                return Source::Base64 {
                    media_type: media_type.to_string(),
                    data: data.to_string(),
                };
            }
        }
        Source::Url(url.to_string())
    }

    /// The source as a URL (`data:` URL for inline bytes); `None` for a file id.
    pub fn as_url(&self) -> Option<String> {
        match self {
            Source::Url(u) => Some(u.clone()),
            Source::Base64 { media_type, data } => Some(format!("data:{media_type};base64,{data}")),
            Source::FileId { .. } => None,
        }
    }
}

/// The text parts of a turn, joined by newlines.
pub fn parts_text(parts: &[Part]) -> String {
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    crate::text::join(&texts, "\n")
}

/// Adds a part, joining adjacent text parts with a newline.
pub fn push_part(parts: &mut Vec<Part>, part: Part) {
    if let (Some(Part::Text(prev)), Part::Text(t)) = (parts.last_mut(), &part) {
        prev.push('\n');
        prev.push_str(t);
        return;
    }
    parts.push(part);
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
    pub fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find_map(Message::user_text_of)
            .unwrap_or_default()
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

    /// The one cost rule: a call that used no tokens costs 0, priced or not;
    /// otherwise its price's cost, `None` for a model without a price.
    pub fn call_cost(price: Option<Price>, usage: &Usage) -> Option<f64> {
        if usage.total() == 0 {
            return Some(0.0);
        }
        price.map(|p| round_cost(p.cost(usage)))
    }
}

/// A cost as reports write it: rounded to 10 decimal places (a ten-thousandth
/// of a micro-dollar), so sums print `0.004048`, not `0.0040479999999999995`.
pub fn round_cost(cost: f64) -> f64 {
    (cost * 1e10).round() / 1e10 + 0.0
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
