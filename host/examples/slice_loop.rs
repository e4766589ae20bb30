//! The slice-overhead benchmark's scenario (N episodes that yield every
//! beat) in a plain loop, best of 8 (or the given number of) rounds of 50 beats: a steady state
//! without criterion's harness around it, for `perf record`.
//! `cargo run --release -p cep-host --example slice_loop -- [episodes [rounds]]`
//! (`K=<n>` in the environment: snapshots kept, default 16)
use std::time::Instant;

use cep_host::Config;

#[path = "support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    cep_host::process::prefer_small_pages();
    let (n, rounds) = (support::arg(1, 1000), support::arg(2, 8));
    let config = Config {
        history_snapshots: std::env::var("K").map(|k| k.parse().unwrap()).unwrap_or(16),
        ..support::bench_config()
    };
    let mut rt = support::with_episodes(config, n, |_| {});
    rt.run(32).unwrap();
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        rt.run(50).unwrap();
        best = best.min(t.elapsed().as_nanos() as f64 / 50.0 / n as f64);
    }
    println!("slice {best:.0} ns");
}
