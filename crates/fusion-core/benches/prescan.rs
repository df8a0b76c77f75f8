//! The pre-scan (`prescan::Prescan`, memmem + an escape walk) against the scan it
//! replaces (`windows().any()` per needle), on non-fusion Chat bodies of 2 KB and
//! 64 KB: plain ASCII (no escapes), prose with newlines and quotes (escapes that
//! cannot spell a needle), and json.dumps-style text (non-ASCII as `\uXXXX`).
//!
//! Usage: `cargo bench -p fusion-core --bench prescan -- [--json] [--millis N]`.
//! Plain `std::time::Instant` loops: no harness. Prints ns per scan (median of
//! 15 batches) for each scan and body.

use fusion_core::prescan::Prescan;
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The scan in `engine::may_be_fusion` before the pre-scan module.
fn windows_scan(aliases: &[String], body: &[u8]) -> bool {
    let contains =
        |needle: &[u8]| !needle.is_empty() && body.windows(needle.len()).any(|w| w == needle);
    contains(b"fusion")
        || aliases
            .iter()
            .any(|a| !a.contains("fusion") && contains(a.as_bytes()))
}

/// A non-fusion Chat body of about `size` bytes whose user message repeats `filler`.
fn chat_body(size: usize, filler: &str) -> Vec<u8> {
    let build = |chars: usize| -> Vec<u8> {
        let text: String = filler.chars().cycle().take(chars).collect();
        let body = json!({
            "model": "mock-a",
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}],
            "max_tokens": 64,
        })
        .to_string();
        // Python's json.dumps and PHP's json_encode escape every non-ASCII character.
        let mut ascii = String::with_capacity(body.len() * 2);
        for c in body.chars() {
            if c.is_ascii() {
                ascii.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    ascii.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        ascii.into_bytes()
    };
    let base = build(0).len();
    let per_char = (build(1000).len() - base) as f64 / 1000.0;
    build(((size.saturating_sub(base)) as f64 / per_char) as usize)
}

/// Nanoseconds per call: median over 15 batches of about `millis / 15` ms each.
fn time_ns(millis: u64, mut f: impl FnMut() -> bool) -> f64 {
    let mut per_batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..per_batch {
            black_box(f());
        }
        if t.elapsed() >= Duration::from_millis((millis / 15).max(1)) {
            break;
        }
        per_batch *= 2;
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                black_box(f());
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples.get(7).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().any(|a| a == "--json");
    let millis = args
        .iter()
        .position(|a| a == "--millis")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(300u64);
    let fillers = [
        (
            "ascii",
            "the quick brown fox jumps over the lazy dog while the model keeps reading ",
        ),
        (
            "prose",
            "Line one, \"quoted\" text\nand a path C:\\tmp / https://x.example/a\n",
        ),
        ("\\u-escaped", "прив\u{0435}т, 融合 — déjà vu 😀 "),
    ];
    let configs: [(&str, Vec<String>); 2] = [
        ("default aliases", vec!["fusion".into()]),
        (
            "3 aliases",
            vec![
                "fusion".into(),
                "openrouter/auto".into(),
                "délibération".into(),
            ],
        ),
    ];
    let mut rows = Vec::new();
    for (cname, aliases) in &configs {
        let pre = Prescan::new(aliases);
        for size in [2048usize, 65536] {
            for (fname, filler) in fillers {
                let body = chat_body(size, filler);
                assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
                // The same verdicts, or the comparison means nothing.
                assert!(!pre.may_ask_for_fusion(&body) && !windows_scan(aliases, &body));
                let new = time_ns(millis, || pre.may_ask_for_fusion(black_box(&body)));
                let old = time_ns(millis, || {
                    windows_scan(black_box(aliases), black_box(&body))
                });
                if !json_out {
                    println!(
                        "{cname:>15} {size:>6} B ({:>6}) {fname:>10}: prescan {:>9.0} ns, windows().any() {:>9.0} ns ({:.1}x)",
                        body.len(),
                        new,
                        old,
                        old / new
                    );
                }
                rows.push(json!({"config": cname, "bytes": size, "body": fname, "prescan_ns": new, "windows_ns": old}));
            }
        }
    }
    if json_out {
        println!("{}", serde_json::Value::Array(rows));
    }
}
