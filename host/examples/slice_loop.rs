//! The slice-overhead benchmark's scenario (N episodes that yield every
//! beat) in a plain loop, best of 8 (or the given number of) rounds of 50 beats: a steady state
//! without criterion's harness around it, for `perf record`.
//! `cargo run --release -p cep-host --example slice_loop -- [episodes [rounds]]`
//! (`K=<n>` in the environment: snapshots kept, default 16)
use cep_host::{Config, EnzymeCx, EnzymeDescriptor, EpisodeSpec, Outcome, Profile, Runtime};
use std::time::Instant;
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    cep_host::process::prefer_small_pages();
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1000);
    let rounds: usize = std::env::args()
        .nth(2)
        .map(|a| a.parse().unwrap())
        .unwrap_or(8);
    let mut rt = Runtime::new(Config {
        ledger_beats: 0,
        cei_signal: false,
        history_snapshots: std::env::var("K").map(|k| k.parse().unwrap()).unwrap_or(16),
        ..Config::default()
    })
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("slice", "ep/cb/bench"),
        |cx: &mut EnzymeCx<'_>| {
            cx.ep_yield().unwrap();
            Outcome::Ok
        },
    )
    .unwrap();
    for _ in 0..n {
        rt.ep_start(EpisodeSpec::new("slice", Profile::Ro));
    }
    rt.run(40).unwrap();
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        rt.run(50).unwrap();
        best = best.min(t.elapsed().as_nanos() as f64 / 50.0 / n as f64);
    }
    println!("slice {best:.0} ns");
}
