//! OpenAI Responses (`/v1/responses`): everything about the API in one place.

pub mod content;
mod patch;
mod request;
mod response;
mod stream;

pub use patch::patch;
pub(crate) use request::only_text;
pub use request::{build_request, parse_request};
pub(crate) use response::{is_incomplete, output_items, reply_from_response};
pub use response::{parse_response, write_response};
pub use stream::{read_stream, write_stream};
