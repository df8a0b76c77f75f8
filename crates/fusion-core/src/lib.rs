//! fusion-core: everything of the fusion-wasm filter that does not touch the host.
//!
//! - [`config`]: parse, validate and compile the filter configuration.
//! - [`wire`]: the wire layer: one folder per API (Chat Completions, Responses, Messages), the neutral model, the SSE framer.
//! - [`engine`]: the sans-IO per-stream state machine.
//! - [`vec_map`]: the small sorted map the other modules keep their tables in.
//! - [`request_head`]: the body's `model` and tool types, read without a tree, to decide fusion.
//! - [`text`]: JSON values and costs as text, with less code than `core::fmt`.

pub mod config;
pub mod engine;
pub mod prescan;
pub mod request_head;
pub mod text;
pub mod vec_map;
pub mod wire;
