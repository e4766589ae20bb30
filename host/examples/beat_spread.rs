//! Per-beat times of the slice-overhead scenario (N episodes yielding every
//! beat), where `slice_loop` gives a best of rounds: the mean and
//! percentiles per slice, the heartbeat thread's CPU time against the wall
//! clock (equal: it was never descheduled, so what varies between runs is
//! the machine), and the mean by position in an 8-beat cycle (a history
//! log fills a segment of 8 entries every 8 beats; the beats that open and
//! trim segments show there).
//! `cargo run --release -p cep-host --example beat_spread -- [episodes [beats]]`
//! (`K=<n>` in the environment: snapshots kept, default 16; `W=<n>`:
//! beats run before the measured ones, default 64)
use std::time::Instant;

#[path = "support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    cep_host::process::prefer_small_pages();
    let (n, beats) = (support::arg(1, 1000), support::arg(2, 2000));
    let config = cep_host::Config {
        history_snapshots: std::env::var("K").map_or(16, |k| k.parse().expect("K: a number")),
        ..support::bench_config()
    };
    let mut rt = support::with_episodes(config, n, |_| {});
    let warm = std::env::var("W").map_or(64, |w| w.parse().expect("W: a number"));
    rt.run(warm).unwrap();
    let cpu0 = thread_cpu_ns();
    let wall0 = Instant::now();
    let mut times: Vec<f64> = (0..beats)
        .map(|_| {
            let t = Instant::now();
            rt.step().unwrap();
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    let cpu = (thread_cpu_ns() - cpu0) as f64 / (beats * n) as f64;
    let wall = wall0.elapsed().as_nanos() as f64 / (beats * n) as f64;
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let mut cycle = [0f64; 8];
    for (i, t) in times.iter().enumerate() {
        cycle[i % 8] += t / (beats / 8) as f64;
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "per slice ns: mean {mean:.0} min {:.0} p10 {:.0} p50 {:.0} p90 {:.0} p99 {:.0} max {:.0}",
        q(0.0),
        q(0.1),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    println!("heartbeat thread: cpu {cpu:.0} ns per slice of wall {wall:.0}");
    println!("by beat mod 8: {:?}", cycle.map(|c| c.round() as u64));
}

/// CPU time of this thread in nanoseconds, from `/proc/thread-self/schedstat`
/// (`stat` counts clock ticks, too coarse here); 0 where there is none.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
