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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
    pub fn add(&mut self, other: Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
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
