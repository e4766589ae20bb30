//! Issue 9's recovery and replay targets. Figures: docs/BENCHMARKS.md.
//!
//! - `recovery/journal_1gib`: what `cep run --data-dir` does at start-up
//!   on a 1 GiB journal with a checkpoint every 10k beats: recover (CRC
//!   scan, torn-tail check), read, rebuild the last beat's tree from the
//!   newest checkpoint and the recorded changes after it (hash-checked).
//! - `replay/live_20k` vs `replay/verify_20k`: the release `cep` running the
//!   default world for 20,000 journaled beats, and `cep replay --verify` of
//!   that journal.

use std::path::{Path as FsPath, PathBuf};
use std::process::Command;

use cep_host::cell::{Change, WorkTree};
use cep_host::journal::{self, checkpoint, state, BeatEntry, Fsync, Journal, JournalConfig};
use cep_host::{Impulse, Path, Snapshot, Value, Word};
use criterion::{criterion_group, criterion_main, Criterion};

const BEATS: u64 = 10_240;
const CHECKPOINT_EVERY: u64 = 10_000;
/// ~100 KiB of inputs per beat: 10,240 beats make 1 GiB.
const INPUTS: u64 = 100;
const PAYLOAD: usize = 1000;

/// Writes the 1 GiB journal: every beat 100 inputs of 1000 bytes and the
/// 8 cells they changed, with true state hashes; checkpoints every 10k.
fn build(data: &FsPath) {
    let config = JournalConfig {
        fsync: Fsync::Never,
        segment_bytes: 64 << 20,
    };
    let mut journal = Journal::open(&data.join("journal"), config, &Default::default()).unwrap();
    let source = Word::new("bench").unwrap();
    let payload = Value::text(&"x".repeat(PAYLOAD));
    let mut tree = Snapshot::empty();
    for beat in 0..BEATS {
        let changes: Vec<Change> = (0..8u64)
            .map(|i| Change::Put {
                path: Path::parse(&format!("/data/in/{}", (beat * 8 + i) % 50_000)).unwrap(),
                value: Some(Value::I64(beat as i64)),
                sealed: false,
                log: None,
            })
            .collect();
        let mut work = WorkTree::new(&tree);
        for c in &changes {
            work.apply(c).unwrap();
        }
        tree = work.commit(beat);
        let inputs = (0..INPUTS)
            .map(|seq| cep_host::beat::Input {
                source: source.clone(),
                seq,
                impulse: Impulse::signal(Path::parse("bench/in").unwrap())
                    .with_payload(payload.clone()),
            })
            .collect();
        let entry = BeatEntry {
            beat,
            decisions: Vec::new(),
            inputs,
            changes,
            state_hash: tree.hash(),
        };
        journal.append(&entry).unwrap();
        if beat > 0 && beat % CHECKPOINT_EVERY == 0 {
            checkpoint::write(data, beat, &tree).unwrap();
        }
    }
    journal.sync().unwrap();
}

fn recovery(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let bytes: u64 = journal::segments(&dir.path().join("journal"))
        .unwrap()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    eprintln!("journal: {} MiB in {BEATS} beats", bytes >> 20);
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.bench_function("journal_1gib", |b| {
        b.iter(|| {
            let jdir = dir.path().join("journal");
            let (r, contents) =
                journal::recover_and_read(&jdir, &journal::OnCorrupt::Refuse).unwrap();
            assert!(r.truncated.is_none());
            let rebuilt = state::tree_at(dir.path(), &contents, None).unwrap();
            assert_eq!(rebuilt.checkpoint, Some(CHECKPOINT_EVERY));
            rebuilt.snapshot.hash()
        })
    });
    group.finish();
}

/// The release `cep`, built once.
fn cep_release() -> PathBuf {
    let root = FsPath::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "cep-host",
            "--bin",
            "cep",
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    root.join("target/release/cep")
}

fn replay(c: &mut Criterion) {
    let cep = cep_release();
    let dir = tempfile::tempdir().unwrap();
    let run = |data: &FsPath| {
        let out = Command::new(&cep)
            .args(["run", "--beats", "20000", "--fsync", "never", "--data-dir"])
            .arg(data)
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    let mut n = 0;
    group.bench_function("live_20k", |b| {
        b.iter(|| {
            n += 1;
            run(&dir.path().join(format!("live{n}")));
        })
    });
    let data = dir.path().join("recorded");
    run(&data);
    group.bench_function("verify_20k", |b| {
        b.iter(|| {
            let out = Command::new(&cep)
                .args(["replay", "--verify"])
                .arg(&data)
                .output()
                .unwrap();
            assert!(out.status.success());
        })
    });
    group.finish();
}

criterion_group!(benches, recovery, replay);
criterion_main!(benches);
