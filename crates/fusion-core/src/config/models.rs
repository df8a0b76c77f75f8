//! Per-model settings: which optional request parameters a model does not take.
//!
//! `"models": {"o3": {"unsupported_params": ["temperature", "top_p"]}}`. By
//! default every model takes every parameter; a call that a provider refuses
//! naming an unsupported optional parameter is retried once without it anyway
//! (docs/configuration.md, "Per-model parameters").

use super::read::{entries, join, list, object, string, unknown_field};
use super::{ConfigError, Named};
use serde_json::Value;

/// One model's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSettings {
    /// Top-level request fields never sent to this model (`temperature`,
    /// `top_p`, `seed`, ...): removed from every call the filter makes to it.
    pub unsupported_params: Vec<String>,
}

/// Reads `models` (raw.rs); the names are checked by [`check`].
pub(super) fn read(field: &str, v: Value) -> Result<Named<ModelSettings>, ConfigError> {
    let mut models = Named::default();
    for (model, settings) in entries(field, v, settings)? {
        models.insert(model, settings);
    }
    Ok(models)
}

fn settings(at: &str, v: Value) -> Result<ModelSettings, ConfigError> {
    let mut s = ModelSettings::default();
    for (key, v) in object(at, v)? {
        match key.as_str() {
            "unsupported_params" => {
                s.unsupported_params = list(&join(at, &key), v, string)?;
            }
            _ => return Err(unknown_field(at, &key, &["unsupported_params"])),
        }
    }
    Ok(s)
}

/// The optional parameters the filter may remove from a call: sampling and
/// output settings, never the conversation, the model or the tools.
pub const OPTIONAL_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "stop_sequences",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "parallel_tool_calls",
    "reasoning_effort",
    "reasoning",
    "thinking",
    "metadata",
    "user",
    "service_tier",
    "max_tool_calls",
    "verbosity",
];

/// Whether `name` is a parameter a call may lose (declared or retried without).
pub fn is_optional(name: &str) -> bool {
    OPTIONAL_PARAMS.contains(&name)
}

/// Checks the declared names: each must be one of [`OPTIONAL_PARAMS`].
pub fn check(models: &Named<ModelSettings>) -> Result<(), (String, String)> {
    for (model, settings) in models {
        for (i, p) in settings.unsupported_params.iter().enumerate() {
            if !is_optional(p) {
                return Err((
                    format!("models.{model}.unsupported_params[{i}]"),
                    format!(
                        "`{p}` is not an optional parameter the filter may leave out (one of: {})",
                        crate::text::join(OPTIONAL_PARAMS, ", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}
