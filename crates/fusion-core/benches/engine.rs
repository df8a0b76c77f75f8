//! The engine's own CPU cost per fusion run, measured natively: one forced turn
//! (alias) with 8 panel members whose answers are realistic 32 KB Chat Completions
//! bodies, then the judge's analysis, then the final answer, all fed through
//! `engine::start` and `Turn::on_call_result` as the filter does in Envoy.
//!
//! Usage: `cargo bench -p fusion-core --bench engine -- [--iters N] [--members N]
//! [--answer-bytes N] [--json]`. Plain `std::time::Instant` loops: no harness.
//! With `--iters N` it runs exactly N measured runs and no warm-up (for callgrind).

use fusion_core::config::Config;
use fusion_core::engine::{self, CallResult, Command, RequestInfo, Start};
use fusion_core::wire::Api;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

struct Args {
    iters: Option<usize>,
    members: usize,
    answer_bytes: usize,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        iters: None,
        members: 8,
        answer_bytes: 32 * 1024,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--iters" => args.iters = Some(num("--iters")?),
            "--members" => args.members = num("--members")?,
            "--answer-bytes" => args.answer_bytes = num("--answer-bytes")?,
            "--json" => args.json = true,
            // `cargo bench` passes `--bench`; ignore it and any filter words.
            _ => {}
        }
    }
    Ok(args)
}

/// A filter configuration with `members` panel models, all served by the mock upstream.
fn config(members: usize) -> Result<Rc<Config>, String> {
    let panel: Vec<Value> = (0..members)
        .map(|i| json!({"model": format!("member-{i}")}))
        .collect();
    let text = json!({
        "aliases": ["fusion"],
        "outer_model": "outer",
        "panel": panel,
        "judge": {"model": "judge"},
        "upstreams": {"mock": {"cluster": "mock", "authority": "mock", "api": "chat"}},
        "routes": [{"prefix": "", "upstream": "mock"}]
    })
    .to_string();
    Config::parse(text.as_bytes(), &|_| None)
        .map(Rc::new)
        .map_err(|e| e.to_string())
}

/// About `bytes` of markdown-ish prose with quotes, newlines and non-ASCII text,
/// so that JSON escaping and UTF-8 handling cost what they cost in real answers.
fn prose(bytes: usize, seed: usize) -> String {
    const PARTS: [&str; 6] = [
        "The sky looks blue because air molecules scatter short wavelengths more than long ones (Rayleigh scattering). ",
        "At sunset the light crosses more atmosphere, so the blue is scattered away and reds dominate.\n\n",
        "- **Key point:** the effect scales with 1/λ⁴, so violet scatters even more, but our eyes are less sensitive to it.\n",
        "As one textbook puts it, \"the colour of the sky is a statement about the eye as much as about the air\". ",
        "Clouds are white because droplets are large compared with the wavelength (Mie scattering) — all colours scatter alike.\n",
        "```\nI(λ) ∝ 1 / λ^4\n```\n",
    ];
    let mut s = String::with_capacity(bytes + 256);
    let mut i = seed;
    while s.len() < bytes {
        if let Some(p) = PARTS.get(i % PARTS.len()) {
            s.push_str(p);
        }
        i += 1;
    }
    s
}

fn chat_answer(model: &str, text: &str, prompt: u64, completion: u64) -> Vec<u8> {
    json!({
        "id": format!("chatcmpl-{model}"),
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        "system_fingerprint": "fp_bench"
    })
    .to_string()
    .into_bytes()
}

fn request_body() -> Vec<u8> {
    json!({
        "model": "fusion",
        "messages": [
            {"role": "system", "content": prose(1200, 3)},
            {"role": "user", "content": "Why is the sky blue? Explain it to a curious twelve-year-old, then give the physics."}
        ],
        "temperature": 0.7,
        "max_tokens": 4096
    })
    .to_string()
    .into_bytes()
}

struct Inputs {
    config: Rc<Config>,
    request: Vec<u8>,
    answers: Vec<CallResult>,
    judge: CallResult,
    outer: CallResult,
}

fn inputs(args: &Args) -> Result<Inputs, String> {
    let answers = (0..args.members)
        .map(|i| CallResult {
            status: Some(200),
            body: chat_answer(
                &format!("member-{i}"),
                &prose(args.answer_bytes, i),
                900,
                8000,
            ),
            ..CallResult::default()
        })
        .collect();
    let analysis = json!({
        "consensus": ["Rayleigh scattering makes the sky blue", "sunsets are red for the same reason"],
        "contradictions": [{"topic": "violet", "positions": ["eyes", "sun spectrum"]}],
        "partial_coverage": ["Mie scattering for clouds"],
        "unique_insights": ["1/λ⁴ dependence", "polarisation of skylight"],
        "blind_spots": ["ozone absorption (Chappuis band)"]
    })
    .to_string();
    Ok(Inputs {
        config: config(args.members)?,
        request: request_body(),
        answers,
        judge: CallResult {
            status: Some(200),
            body: chat_answer("judge", &analysis, 70_000, 400),
            ..CallResult::default()
        },
        outer: CallResult {
            status: Some(200),
            body: chat_answer("outer", &prose(2000, 1), 72_000, 600),
            ..CallResult::default()
        },
    })
}

/// Time spent in each step of one run.
#[derive(Default, Clone, Copy)]
struct Phases {
    start: Duration,
    panel: Duration,
    judge: Duration,
    outer: Duration,
}

impl Phases {
    fn total(&self) -> Duration {
        self.start + self.panel + self.judge + self.outer
    }
}

fn dispatched_ids(commands: &[Command]) -> Vec<u32> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(c) => Some(c.id),
            _ => None,
        })
        .collect()
}

fn one_id(commands: &[Command], what: &str) -> Result<u32, String> {
    match dispatched_ids(commands).as_slice() {
        [id] => Ok(*id),
        other => Err(format!("expected one {what} dispatch, got {}", other.len())),
    }
}

/// One whole fusion run through the engine; checks it ends with a 200 reply.
fn run(inp: &Inputs, n: u64) -> Result<Phases, String> {
    let info = RequestInfo {
        request_id: format!("bench-{n}"),
        ..RequestInfo::default()
    };
    let mut p = Phases::default();
    let t = Instant::now();
    let started = engine::start(&inp.config, Api::Chat, info, &inp.request, 1_000, false);
    p.start = t.elapsed();
    let (mut turn, commands) = match started {
        Start::Run(turn, commands) => (turn, commands),
        _ => return Err("the alias request did not start a fusion run".into()),
    };
    let ids = dispatched_ids(&commands);
    if ids.len() != inp.answers.len() {
        return Err(format!("{} panel dispatches", ids.len()));
    }
    let t = Instant::now();
    let mut after_panel = Vec::new();
    for (id, answer) in ids.iter().zip(&inp.answers) {
        after_panel = turn.on_call_result(*id, answer.clone(), 1_200);
    }
    p.panel = t.elapsed();
    let judge_id = one_id(&after_panel, "judge")?;
    let t = Instant::now();
    let after_judge = turn.on_call_result(judge_id, inp.judge.clone(), 1_400);
    p.judge = t.elapsed();
    let outer_id = one_id(&after_judge, "final answer")?;
    let t = Instant::now();
    let done = turn.on_call_result(outer_id, inp.outer.clone(), 1_600);
    p.outer = t.elapsed();
    let reply = done.iter().find_map(|c| match c {
        Command::Reply(r) => Some(r),
        _ => None,
    });
    match reply {
        Some(r) if r.status == 200 => Ok(p),
        Some(r) => Err(format!("the run ended with status {}", r.status)),
        None => Err("the run did not end with a reply".into()),
    }
}

/// A non-fusion Chat request (model `mock-a`, no tools) of `bytes` bytes.
fn plain_request(bytes: usize) -> Vec<u8> {
    let body = |filler: &str| {
        json!({
            "model": "mock-a",
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": filler}],
            "max_tokens": 64
        })
        .to_string()
        .into_bytes()
    };
    let base = body("").len();
    let words = "the quick brown model reads the prompt and answers it briefly ";
    let filler: String = words
        .chars()
        .cycle()
        .take(bytes.saturating_sub(base))
        .collect();
    body(&filler)
}

/// Mean cost (us) of deciding that a non-fusion request passes through.
fn passthrough_us(config: &Rc<Config>, body: &[u8]) -> Result<f64, String> {
    let mut n = 0u32;
    let clock = Instant::now();
    while clock.elapsed() < Duration::from_millis(300) {
        match engine::start(config, Api::Chat, RequestInfo::default(), body, 0, false) {
            Start::PassThrough => n += 1,
            _ => return Err("a non-fusion request did not pass through".into()),
        }
    }
    Ok(us(clock.elapsed()) / f64::from(n.max(1)))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(rank).copied().unwrap_or(0.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<(), String> {
    let args = parse_args()?;
    let inp = inputs(&args)?;
    let answer_len = inp.answers.first().map_or(0, |a| a.body.len());
    if let Some(n) = args.iters {
        // Fixed count, no warm-up: instruction counting under callgrind.
        for i in 0..n {
            run(&inp, i as u64)?;
        }
        println!("ran {n} fusion runs");
        return Ok(());
    }
    // Warm up for ~0.3 s, then measure for ~2 s (at least 50 runs).
    let warm = Instant::now();
    let mut n = 0u64;
    while warm.elapsed() < Duration::from_millis(300) {
        run(&inp, n)?;
        n += 1;
    }
    let mut totals = Vec::new();
    let mut sum = Phases::default();
    let clock = Instant::now();
    while clock.elapsed() < Duration::from_secs(2) || totals.len() < 50 {
        let p = run(&inp, n)?;
        n += 1;
        totals.push(us(p.total()));
        sum.start += p.start;
        sum.panel += p.panel;
        sum.judge += p.judge;
        sum.outer += p.outer;
    }
    totals.sort_by(f64::total_cmp);
    let runs = totals.len() as f64;
    let mean = |d: Duration| us(d) / runs;
    let (p50, p99) = (percentile(&totals, 0.5), percentile(&totals, 0.99));
    let pass_2k = passthrough_us(&inp.config, &plain_request(2048))?;
    let pass_64k = passthrough_us(&inp.config, &plain_request(65536))?;
    if args.json {
        println!(
            "{}",
            json!({
                "passthrough_us": {"2048": pass_2k, "65536": pass_64k},
                "members": args.members,
                "answer_body_bytes": answer_len,
                "runs": totals.len(),
                "p50_us": p50,
                "p99_us": p99,
                "mean_us": {"start": mean(sum.start), "panel_answers": mean(sum.panel),
                            "judge_answer": mean(sum.judge), "final_answer": mean(sum.outer)},
            })
        );
    } else {
        println!(
            "fusion run, {} members x {answer_len} B answers: p50 {p50:.0} us, p99 {p99:.0} us over {} runs",
            args.members,
            totals.len()
        );
        println!(
            "  mean per step: start {:.0} us, panel answers {:.0} us, judge answer {:.0} us, final answer {:.0} us",
            mean(sum.start),
            mean(sum.panel),
            mean(sum.judge),
            mean(sum.outer)
        );
        println!(
            "pass-through decision (engine::start on a non-fusion Chat body): 2 KB {pass_2k:.2} us, 64 KB {pass_64k:.2} us"
        );
    }
    Ok(())
}
