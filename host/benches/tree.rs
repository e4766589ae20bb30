//! Cell-tree benchmarks: commit + rehash of 1,000 random leaf writes on 10k
//! and 1M-cell trees (the previous snapshot kept alive; written in one
//! batch as the runtime's commit does, and one by one), one write under a
//! 100,000-child parent, reads (cached and random depth-5 paths), snapshot
//! clone. Figures: docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cep_host::cell::{Snapshot, WorkTree};
use cep_host::{Name, Path, Value};
use criterion::{criterion_group, BenchmarkId, Criterion};

// The allocator the `cep` binary runs with (host/src/bin/cep.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../examples/support/mod.rs"]
mod support;

use support::{fanout_tree as build, Xorshift as Lcg};

fn commit_rehash(c: &mut Criterion) {
    // `batch`: the writes go in one `write_all`, as the runtime's commit
    // writes a large beat of writes (split between two threads);
    // `one_by_one`: each through `write`, on one thread.
    for (group_name, batch) in [
        ("commit_1000_writes", true),
        ("commit_1000_writes_one_by_one", false),
    ] {
        let mut group = c.benchmark_group(group_name);
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(5));
        for (label, fanout, levels) in [
            ("10k_F10xL4", 10, 4),
            ("34k_F32xL3", 32, 3),
            ("1M_F32xL4", 32, 4),
            ("1M_F10xL6", 10, 6),
        ] {
            let (base, leaves) = build(fanout, levels);
            let mut rng = Lcg(0x9e37_79b9_7f4a_7c15);
            let mut current = base;
            let mut round = 0i64;
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        let paths: Vec<Path> = (0..1000)
                            .map(|_| leaves[rng.below(leaves.len())].clone())
                            .collect();
                        // `current` stays alive during the commit: it really copies.
                        let start = Instant::now();
                        let mut tree = WorkTree::new(&current);
                        if batch {
                            let writes = paths.iter().map(|p| (p, Value::I64(round))).collect();
                            for result in tree.write_all(writes) {
                                result.unwrap();
                            }
                        } else {
                            for path in &paths {
                                tree.write(path, Value::I64(round)).unwrap();
                            }
                        }
                        let next = tree.commit(round as u64);
                        total += start.elapsed();
                        // Dropping the superseded snapshot is not counted.
                        current = next;
                    }
                    total
                })
            });
        }
        group.finish();
    }
}

fn wide_write(c: &mut Criterion) {
    let parent = Path::parse("/data/wide").unwrap();
    let mut tree = WorkTree::new(&Snapshot::empty());
    for i in 0..100_000u64 {
        tree.write(&parent.child(Name::from_index(i)), Value::I64(i as i64))
            .unwrap();
    }
    let mut current = tree.commit(0);
    let mut rng = Lcg(7);
    let mut round = 0i64;
    c.bench_function("commit_1_write_under_100k_children", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let path = parent.child(Name::from_index(rng.below(100_000) as u64));
                let start = Instant::now();
                let mut tree = WorkTree::new(&current);
                tree.write(&path, Value::I64(round)).unwrap();
                let next = tree.commit(round as u64);
                total += start.elapsed();
                current = next;
            }
            total
        })
    });
}

fn reads(c: &mut Criterion) {
    let (snapshot, leaves) = build(32, 4);
    let hot = leaves[leaves.len() / 3].clone();
    let mut group = c.benchmark_group("read_depth5_1M");
    group.bench_function("cached", |b| {
        b.iter(|| black_box(snapshot.read(black_box(&hot))))
    });
    let mut rng = Lcg(11);
    let random: Vec<Path> = (0..4096)
        .map(|_| leaves[rng.below(leaves.len())].clone())
        .collect();
    let mut i = 0;
    group.bench_function("random", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            black_box(snapshot.read(&random[i]))
        })
    });
    group.finish();
    c.bench_function("snapshot_clone_1M", |b| {
        b.iter(|| black_box(snapshot.clone()))
    });
}

criterion_group!(benches, commit_rehash, wide_write, reads);
// criterion_main!, with the process set up as `cep` sets it up.
fn main() {
    cep_host::process::prefer_small_pages();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
