//! fusion-core: everything of the fusion-wasm filter that does not touch the host.
//!
//! - [`config`]: parse, validate and compile the filter configuration.
//! - [`api`]: one translator per wire API (Chat Completions, Responses, Messages).
//! - [`engine`]: the sans-IO per-stream state machine.

pub mod api;
pub mod config;
pub mod conversation;
pub mod engine;
pub mod prescan;
