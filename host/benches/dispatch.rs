//! Heartbeat benchmarks: the three dispatch workloads measured on the C
//! kernel (sig, tgt, write), enqueue, the empty beat, and the parallel
//! speed-up of the threaded executor. Figures: docs/BENCHMARKS.md.
//!
//! Every runtime here runs with the ledger off (`ledger_beats = 0`), like the
//! C anchor's `ensure_directories = false`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cep_host::cell::WorkTree;
use cep_host::{
    Config, EnzymeCx, EnzymeDescriptor, ExecutorKind, Impulse, Name, Outcome, Path, Runtime,
    Snapshot, Value, Word,
};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

#[path = "../examples/support/mod.rs"]
mod support;

// The allocator the `cep` binary runs with (host/src/bin/cep.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config() -> Config {
    support::bench_config()
}

fn p(text: &str) -> Path {
    Path::parse(text).unwrap()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Sig,
    Tgt,
    Write,
}

/// A runtime with `enzymes` counting enzymes and, for tgt/write, `impulses`
/// target cells under `/bz_tree` carrying a propagating binding.
fn setup(mode: Mode, enzymes: usize, impulses: usize) -> (Runtime, Vec<Impulse>, Arc<AtomicU64>) {
    let tree = p("/bz_tree");
    let targets: Vec<Path> = (0..impulses)
        .map(|i| tree.child(Name::from_index(i as u64)))
        .collect();
    let genesis = if mode == Mode::Sig {
        Snapshot::empty()
    } else {
        let mut t = WorkTree::new(&Snapshot::empty());
        for target in &targets {
            t.write(target, Value::I64(0)).unwrap();
        }
        t.commit(0)
    };
    let mut rt = Runtime::with_genesis(config(), genesis).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    for e in 0..enzymes {
        let name = format!("bz_e{e}");
        let calls = calls.clone();
        let write = mode == Mode::Write;
        rt.register(
            &EnzymeDescriptor::new(&name, "bz_sig"),
            move |cx: &mut EnzymeCx<'_>| {
                // A plain increment, like the C anchor's global counter: the
                // dispatch benchmarks run on one thread (cooperative).
                calls.store(calls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                if write {
                    if let Some(target) = cx.target().cloned() {
                        cx.write(&target, cx.beat() as i64).ok();
                    }
                }
                Outcome::Ok
            },
        )
        .unwrap();
        if mode != Mode::Sig {
            rt.bind(&tree, &Name::new(&name).unwrap(), true);
        }
    }
    let signal = p("bz_sig");
    let batch = match mode {
        Mode::Sig => (0..impulses)
            .map(|_| Impulse::signal(signal.clone()))
            .collect(),
        _ => targets
            .into_iter()
            .map(|t| Impulse::targeted(signal.clone(), t))
            .collect(),
    };
    (rt, batch, calls)
}

fn dispatch(c: &mut Criterion) {
    let source = Word::new("bench").unwrap();
    for (mode, label) in [
        (Mode::Sig, "sig"),
        (Mode::Tgt, "tgt"),
        (Mode::Write, "write"),
    ] {
        let mut group = c.benchmark_group(format!("dispatch/{label}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));
        for enzymes in [1usize, 10] {
            for impulses in [1_000usize, 100_000] {
                let (mut rt, batch, calls) = setup(mode, enzymes, impulses);
                let injector = rt.injector();
                group.throughput(Throughput::Elements((enzymes * impulses) as u64));
                let id = BenchmarkId::new(format!("E{enzymes}"), format!("M{impulses}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            injector
                                .inject_batch(&source, batch.iter().cloned())
                                .unwrap();
                            let before = calls.load(Ordering::Relaxed);
                            let start = Instant::now();
                            black_box(rt.step().unwrap());
                            total += start.elapsed();
                            assert_eq!(
                                calls.load(Ordering::Relaxed) - before,
                                (enzymes * impulses) as u64
                            );
                        }
                        total
                    })
                });
            }
        }
        group.finish();
    }
}

fn enqueue(c: &mut Criterion) {
    let source = Word::new("bench").unwrap();
    let mut group = c.benchmark_group("enqueue");
    group.sample_size(20);
    for impulses in [1_000usize, 100_000] {
        let (mut rt, batch, _) = setup(Mode::Sig, 0, impulses);
        let injector = rt.injector();
        group.throughput(Throughput::Elements(impulses as u64));
        group.bench_function(BenchmarkId::from_parameter(impulses), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let copies = batch.clone();
                    let start = Instant::now();
                    injector.inject_batch(&source, copies).unwrap();
                    total += start.elapsed();
                    rt.step().unwrap();
                }
                total
            })
        });
    }
    group.finish();
}

fn empty_beat(c: &mut Criterion) {
    let mut rt = Runtime::new(config()).unwrap();
    rt.register(
        &EnzymeDescriptor::new("idle", "never"),
        |_: &mut EnzymeCx<'_>| Outcome::Ok,
    )
    .unwrap();
    c.bench_function("beat/empty", |b| b.iter(|| black_box(rt.step().unwrap())));
    let mut with_ledger = Runtime::new(Config::default()).unwrap();
    c.bench_function("beat/empty_default_config", |b| {
        b.iter(|| black_box(with_ledger.step().unwrap()))
    });
}

/// At least 20 µs of CPU work per call (hash rounds, calibrated once at
/// start: [`support::rounds_for`]), the same on every run.
fn heavy(rounds: u32) -> impl Fn(&mut EnzymeCx<'_>) -> Outcome + Send + Sync + 'static {
    move |cx: &mut EnzymeCx<'_>| {
        let seed = cx.payload().and_then(Value::as_i64).unwrap_or(0);
        let state = support::hash_rounds(seed as u64, rounds);
        // Each call its own cell: the commit stays cheap and conflict-free, so
        // the figure measures the parallel compute phase.
        let target = p("/data/heavy").child(Name::from_index(seed as u64));
        cx.write(
            &target,
            i64::from_le_bytes(state.as_bytes()[..8].try_into().unwrap()),
        )
        .ok();
        Outcome::Ok
    }
}

fn parallel(c: &mut Criterion) {
    let source = Word::new("bench").unwrap();
    let mut group = c.benchmark_group("parallel/heavy_enzymes");
    group.sample_size(10);
    let calls = 256;
    group.throughput(Throughput::Elements(calls));
    let rounds = support::rounds_for(Duration::from_micros(20));
    eprintln!("parallel/heavy_enzymes: {rounds} hash rounds per call (at least 20 µs here)");
    let mut hashes = Vec::new();
    for (label, executor, workers) in [
        ("cooperative", ExecutorKind::Cooperative, 0),
        ("threaded_1", ExecutorKind::Threaded, 1),
        ("threaded_2", ExecutorKind::Threaded, 2),
    ] {
        let backend = Config {
            executor,
            workers,
            ..config()
        };
        let mut rt = Runtime::new(backend).unwrap();
        rt.register(&EnzymeDescriptor::new("heavy", "work"), heavy(rounds))
            .unwrap();
        let injector = rt.injector();
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    injector
                        .inject_batch(
                            &source,
                            (0..calls as i64)
                                .map(|i| Impulse::signal(p("work")).with_payload(Value::I64(i))),
                        )
                        .unwrap();
                    let start = Instant::now();
                    black_box(rt.step().unwrap());
                    total += start.elapsed();
                }
                total
            })
        });
        // Same inputs on a fresh runtime: the hash must not depend on the backend.
        let mut check = Runtime::new(Config {
            executor,
            workers,
            ..config()
        })
        .unwrap();
        check
            .register(&EnzymeDescriptor::new("heavy", "work"), heavy(rounds))
            .unwrap();
        check
            .injector()
            .inject_batch(
                &source,
                (0..calls as i64).map(|i| Impulse::signal(p("work")).with_payload(Value::I64(i))),
            )
            .unwrap();
        hashes.push(check.step().unwrap().state_hash);
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "backends disagree");
    group.finish();
}

criterion_group!(benches, dispatch, enqueue, empty_beat, parallel);
// criterion_main!, with the process set up as `cep` sets it up.
fn main() {
    cep_host::process::prefer_small_pages();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
