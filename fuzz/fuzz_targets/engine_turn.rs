//! A whole fusion turn from untrusted bytes: the client's request through
//! `engine::start`, then every callout answered with fuzz-chosen status, body
//! and timing (panel, judge and outer model answers: JSON, SSE, garbage), then
//! the route's relayed stream. Input: `<selector byte><request body>` followed
//! by `\n%%\n`-separated answers `"<status> <advance_ms> <pick>\n<body>"`.
#![no_main]

use fusion_fuzz::{api_of, config_drawn, drive, split, SEP};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let chunks = split(rest, SEP);
    let Some((body, results)) = chunks.split_first() else {
        return;
    };
    // selector: API (mod 3), base configuration (/3 mod 2; its limits drawn from the input), an inner call at depth 1
    // (/6 mod 2), a worker already at `max_concurrent_runs` (/12 mod 2).
    let depth = u32::from((selector / 6) % 2);
    let at_capacity = (selector / 12) % 2 == 1;
    drive(
        // Limits drawn from the whole input: within their ranges, every turn ends.
        &config_drawn(selector, data),
        api_of(selector),
        depth,
        at_capacity,
        body,
        results,
    );
});
