//! Placeholder: being written.
use super::{Api, ResponseMeta};
use crate::conversation::Reply;

pub fn looks_like_sse(body: &[u8]) -> bool {
    let t = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| body.get(i..))
        .unwrap_or(&[]);
    t.starts_with(b"data:") || t.starts_with(b"event:")
}
pub fn parse_stream(_api: Api, _body: &[u8]) -> Result<Reply, String> {
    Err("not yet".into())
}
pub fn write_stream(
    _api: Api,
    _reply: &Reply,
    _meta: &ResponseMeta,
    _include_usage: bool,
) -> String {
    String::new()
}
