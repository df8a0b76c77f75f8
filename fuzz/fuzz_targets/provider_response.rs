//! Provider answers (panel, judge, outer model): JSON bodies and SSE streams,
//! through `wire::parse_response` of each API and the SSE reader directly.
#![no_main]

use fusion_core::wire::{self, Api};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for a in [Api::Chat, Api::Responses, Api::Messages] {
        if let Ok(reply) = wire::parse_response(a, data) {
            // A parsed reply renders back in every client API without trouble.
            let _ = reply.usage.total();
        }
        let _ = wire::parse_stream(a, data);
    }
});
