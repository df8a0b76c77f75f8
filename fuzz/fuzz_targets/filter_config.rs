//! The filter configuration (`Config::parse`, what `on_configure` runs on the
//! operator's bytes: JSON, or a binary `google.protobuf.Struct`). An accepted configuration must then serve a fusion
//! request without panicking, with every callout failing.
#![no_main]

use fusion_core::config::Config;
use fusion_core::wire::Api;
use fusion_fuzz::drive;
use libfuzzer_sys::fuzz_target;
use std::rc::Rc;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = Config::parse(data, &|name| Some(format!("secret-{name}"))) else {
        return;
    };
    // Secrets never show in the Debug form (it reaches logs).
    assert!(
        !format!("{config:?}").contains("secret-"),
        "a secret in Debug output"
    );
    let config = Rc::new(config);
    let _ = config.resolve(&config.outer_model);
    let _ = config.resolve("");
    let alias = config.aliases.first().cloned().unwrap_or_default();
    let body = serde_json::json!({
        "model": alias,
        "messages": [{"role": "user", "content": "Is tea healthy?"}],
        "stream": true,
    })
    .to_string();
    drive(&config, Api::Chat, 0, false, body.as_bytes(), &[]);
    let tool = serde_json::json!({
        "model": config.outer_model,
        "input": "Is tea healthy?",
        "tools": [{"type": "fusion"}],
        "tool_choice": "required",
    })
    .to_string();
    drive(&config, Api::Responses, 0, false, tool.as_bytes(), &[]);
});
