//! OpenAI Chat Completions (`/v1/chat/completions`): everything about the API in one place.

pub mod content;
mod patch;
mod request;
mod response;
mod stream;

pub use patch::patch;
pub use request::{build_request, parse_request};
pub(crate) use response::finish_reason;
pub use response::{parse_response, write_response};
pub use stream::{read_stream, write_stream};
#[cfg(test)]
mod tests;
