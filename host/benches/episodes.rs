//! OPS and E3 benchmarks: slice overhead, `op_state` + commit with 100k live
//! dossiers, and CPU-bound RO slices on 1 and 2 workers. Figures:
//! docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cep_host::{Config, EnzymeCx, ExecutorKind, Name, OpSpec, Path, Runtime};
use criterion::{criterion_group, Criterion, Throughput};

#[path = "../examples/support/mod.rs"]
mod support;

// The allocator the `cep` binary runs with (host/src/bin/cep.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config() -> Config {
    support::bench_config()
}

fn slice_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("episode/slice_overhead");
    group.sample_size(20);
    for episodes in [1_000usize, 10_000] {
        let mut rt = support::with_episodes(config(), episodes, |_| {});
        group.throughput(Throughput::Elements(episodes as u64));
        group.bench_function(format!("cooperative/{episodes}"), |b| {
            b.iter(|| black_box(rt.step().unwrap()))
        });
    }
    group.finish();
}

fn op_state_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("ops/op_state_commit_100k_live");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    // Two retained snapshots: with the default 16, every beat rewriting 100k
    // dossiers keeps 16 generations of them alive (≈ 1 GB), and the figure
    // measures page faults more than OPS. Both are recorded in BENCHMARKS.md.
    let mut rt = Runtime::new(Config {
        history_snapshots: 2,
        ..config()
    })
    .unwrap();
    let oids: Vec<Name> = (0..100_000)
        .map(|_| rt.op_start(OpSpec::new(Path::parse("op/bench").unwrap())))
        .collect();
    rt.run(8).unwrap();
    let mut round = 0u64;
    group.throughput(Throughput::Elements(oids.len() as u64));
    group.bench_function("op_state_all_then_step", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let state = format!("ist:s{}", round % 4);
                let start = Instant::now();
                for oid in &oids {
                    rt.op_state(oid, &state);
                }
                black_box(rt.step().unwrap());
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// At least 50 µs of CPU work (hash rounds, calibrated once at start:
/// [`support::rounds_for`]), the same on every run.
fn heavy(rounds: u32) -> impl Fn(&mut EnzymeCx<'_>) + Send + Sync + Copy + 'static {
    move |cx: &mut EnzymeCx<'_>| {
        let seed = cx.episode().map(|e| e.as_str().len()).unwrap_or(0) as u64 + cx.beat();
        black_box(support::hash_rounds(seed, rounds));
    }
}

fn parallel_slices(c: &mut Criterion) {
    let mut group = c.benchmark_group("episode/ro_slices_50us");
    group.sample_size(10);
    let episodes = 128;
    group.throughput(Throughput::Elements(episodes as u64));
    let rounds = support::rounds_for(Duration::from_micros(50));
    eprintln!("episode/ro_slices_50us: {rounds} hash rounds per slice (at least 50 µs here)");
    let mut hashes = Vec::new();
    for workers in [1usize, 2] {
        let cfg = Config {
            executor: ExecutorKind::Threaded,
            workers,
            ..config()
        };
        let mut rt = support::with_episodes(cfg, episodes, heavy(rounds));
        group.bench_function(format!("threaded_{workers}"), |b| {
            b.iter(|| black_box(rt.step().unwrap()))
        });
        let cfg = Config {
            executor: ExecutorKind::Threaded,
            workers,
            ..config()
        };
        let mut check = support::with_episodes(cfg, episodes, heavy(rounds));
        hashes.push(check.run(5).unwrap().unwrap().state_hash);
    }
    assert_eq!(hashes[0], hashes[1], "1 and 2 workers must agree");
    group.finish();
}

criterion_group!(benches, slice_overhead, op_state_commit, parallel_slices);
// criterion_main!, with the process set up as `cep` sets it up.
fn main() {
    cep_host::process::prefer_small_pages();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
