//! Anthropic Messages (`/v1/messages`): everything about the API in one place.

pub mod content;
mod patch;
mod request;
mod response;
mod stream;

pub use patch::{history_has_tool_use, patch, tool_choice_none};
pub use request::{build_request, parse_request, DEFAULT_MAX_TOKENS};
pub(crate) use response::{content_blocks, finish_of, message_id, stop_reason};
pub use response::{parse_response, write_response};
pub use stream::{read_stream, write_stream};
