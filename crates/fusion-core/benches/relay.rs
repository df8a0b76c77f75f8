//! Throughput of the stream relay (`wire::relay::Relay`, the final answer relayed
//! from the provider to the client): a fast 10 MB Chat Completions SSE stream fed
//! in chunks as Envoy hands them over, natively. Measures whatever relay is in the
//! tree (its cost per chunk grows with the events the chunk holds while it splits
//! events off the front of its buffer one by one).
//!
//! Usage: `cargo bench -p fusion-core --bench relay -- [--mb N] [--json]`.

use fusion_core::wire::neutral::Usage;
use fusion_core::wire::relay::{FinalCall, Relay};
use fusion_core::wire::Api;
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

/// About `bytes` of Chat Completions stream: content deltas of ~40 characters,
/// the finishing chunk, the usage chunk, `[DONE]`.
fn stream(bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 1024);
    let mut i = 0usize;
    while out.len() < bytes {
        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": format!("token {i} of a long and fast answer, ")}}]});
        out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
        i += 1;
    }
    let fin = json!({"id": "c1", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let usage = json!({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": i, "total_tokens": 10 + i}});
    out.extend_from_slice(format!("data: {fin}\n\ndata: {usage}\n\ndata: [DONE]\n\n").as_bytes());
    out
}

/// Seconds to relay `data` in chunks of `chunk` bytes; checks that every byte of
/// content went out.
fn relay(data: &[u8], chunk: usize) -> (f64, usize) {
    let t = Instant::now();
    let mut r = Relay::new(
        Api::Chat,
        Usage::default(),
        json!({"mode": "alias"}),
        FinalCall::default(),
    );
    let mut sent = 0usize;
    let mut chunks = data.chunks(chunk).peekable();
    while let Some(c) = chunks.next() {
        let out = r.chunk(black_box(c), chunks.peek().is_none());
        sent += out.len();
    }
    (t.elapsed().as_secs_f64(), sent)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().any(|a| a == "--json");
    let mb = args
        .iter()
        .position(|a| a == "--mb")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10usize);
    let data = stream(mb << 20);
    let mut rows = Vec::new();
    // 16 KB: Envoy's usual read size on a fast upstream; larger: what piles up
    // while the worker is busy. (At 1 MB per chunk the relay as it stands takes
    // minutes for 10 MB: its cost per chunk grows with the square of the chunk.)
    for chunk in [16 << 10, 64 << 10, 256 << 10] {
        // One run: at the speed of the relay as it stands, one run is seconds.
        let (s, sent) = relay(&data, chunk);
        assert!(sent >= data.len(), "relayed {sent} of {} bytes", data.len());
        let mbps = data.len() as f64 / 1048576.0 / s;
        if !json_out {
            println!(
                "relay, {:.1} MB Chat stream in {} KB chunks: {:.3} s ({mbps:.1} MB/s), {} bytes out",
                data.len() as f64 / 1048576.0,
                chunk >> 10,
                s,
                sent
            );
        }
        rows.push(json!({"stream_bytes": data.len(), "chunk_bytes": chunk, "seconds": s, "mb_per_s": mbps}));
    }
    if json_out {
        println!("{}", serde_json::Value::Array(rows));
    }
}
