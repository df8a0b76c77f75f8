//! Helpers shared by the engine's integration tests (each test file is its own
//! crate and includes this module with `mod common;`, natively and in wasm).

// Test code: panicking on a broken expectation is the point; not every test
// crate uses every helper.
#![allow(clippy::unwrap_used, clippy::panic, dead_code)]

use fusion_core::engine::{Callout, Command};
use serde_json::Value;

/// The callouts of a step that must only dispatch.
pub fn dispatches(cmds: Vec<Command>) -> Vec<Callout> {
    cmds.into_iter()
        .map(|c| match c {
            Command::Dispatch(c) => c,
            other => panic!("expected a dispatch, got {other:?}"),
        })
        .collect()
}

/// A callout's body as JSON.
pub fn body_of(c: &Callout) -> Value {
    serde_json::from_slice(&c.body).unwrap()
}
