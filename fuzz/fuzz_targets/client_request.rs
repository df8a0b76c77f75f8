//! Client requests of the three APIs: any JSON value through each translator's
//! `parse_request`, and the raw bytes through `engine::start` (which parses
//! only what may be fusion) under both configurations.
#![no_main]

use fusion_core::wire::{self, Api};
use fusion_fuzz::{config_of, drive};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        for a in [Api::Chat, Api::Responses, Api::Messages] {
            if let Err(e) = wire::parse_request(a, &value) {
                assert!(
                    (400..500).contains(&e.status),
                    "refusal status {}",
                    e.status
                );
                let body = wire::error_body(a, &e);
                assert!(body["error"]["message"].is_string());
            }
        }
    }
    for selector in [0u8, 1, 2, 3, 4, 5] {
        // Every callout fails: the engine must still end the turn with a reply.
        drive(
            &config_of(selector),
            fusion_fuzz::api_of(selector),
            0,
            false,
            data,
            &[],
        );
    }
    // A worker at capacity: 429 (default config) or pass-through (mixed config).
    drive(&config_of(0), fusion_fuzz::api_of(0), 0, true, data, &[]);
    drive(&config_of(4), fusion_fuzz::api_of(4), 0, true, data, &[]);
});
