//! The relay of a provider's own stream to the client (final answer up the
//! route): arbitrary bytes in arbitrary chunks. The output must not depend on
//! where the network cut the chunks, and a stream without any JSON object
//! passes through byte for byte. Input: `<api byte><flags byte><stream>`; the
//! flags byte's low 5 bits set the chunk size, its high bits the final call's
//! prices and whether a Chat client asked for usage.
#![no_main]

use fusion_core::config::Price;
use fusion_core::wire::neutral::Usage;
use fusion_core::wire::relay::{FinalCall, Relay};
use fusion_fuzz::api_of;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn relay(api: fusion_core::wire::Api, flags: u8) -> Relay {
    let prior = Usage {
        input_tokens: 100,
        output_tokens: 10,
        ..Usage::default()
    };
    let final_call = FinalCall {
        prior_cost: (flags & 0x20 != 0).then_some(0.25),
        price: (flags & 0x40 != 0).then_some(Price {
            input_per_mtok: 1.0,
            output_per_mtok: 4.0,
            cached_input_per_mtok: None,
        }),
        client_wants_usage: flags & 0x80 != 0,
    };
    Relay::new(
        api,
        prior,
        json!({"run_id": "fuzz", "rounds": 1}),
        final_call,
    )
}

fuzz_target!(|data: &[u8]| {
    let [selector, cuts, stream @ ..] = data else {
        return;
    };
    let api = api_of(*selector);
    let mut whole = relay(api, *cuts);
    let one = whole.chunk(stream, true);

    // The same stream cut every `step` bytes (1..=32), the last chunk flagged `end`.
    let step = usize::from(cuts % 32) + 1;
    let mut cut = relay(api, *cuts);
    let mut many = Vec::new();
    let pieces: Vec<&[u8]> = stream.chunks(step).collect();
    for (i, piece) in pieces.iter().enumerate() {
        many.extend(cut.chunk(piece, i + 1 == pieces.len()));
    }
    if pieces.is_empty() {
        many.extend(cut.chunk(b"", true));
    }
    assert_eq!(one, many, "relay output depends on chunk boundaries");
    assert_eq!(whole.completed, cut.completed);
    assert_eq!(whole.relayed_usage, cut.relayed_usage);
    if !stream.contains(&b'{') {
        assert_eq!(
            one, stream,
            "a stream without JSON objects must pass untouched"
        );
    }
});
