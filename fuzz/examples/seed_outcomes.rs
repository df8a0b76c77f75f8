//! Prints what each seed does: `cargo run --example seed_outcomes` in fuzz/.
use fusion_core::config::Config;
use fusion_fuzz::*;
fn main() {
    for e in std::fs::read_dir("seeds/engine_turn")
        .into_iter()
        .flatten()
        .flatten()
    {
        let data = std::fs::read(e.path()).unwrap_or_default();
        let Some((sel, rest)) = data.split_first() else {
            continue;
        };
        let chunks = split(rest, SEP);
        let Some((body, results)) = chunks.split_first() else {
            continue;
        };
        let o = drive(&config_of(*sel), api_of(*sel), 0, false, body, results);
        println!("engine_turn sel={sel} {o:?}");
    }
    for e in std::fs::read_dir("seeds/filter_config")
        .into_iter()
        .flatten()
        .flatten()
    {
        let data = std::fs::read(e.path()).unwrap_or_default();
        let r = Config::parse(&data, &|_| Some("k".into()));
        println!(
            "filter_config {} bytes: {:?}",
            data.len(),
            r.map(|c| c.outer_model)
        );
    }
}
