//! Journal append throughput (issue 9): beats of ~64 KiB of inputs appended
//! with fsync off, and the per-beat cost with fsync every beat. Figures:
//! docs/BENCHMARKS.md.

use cep_host::journal::{BeatEntry, Fsync, Journal, JournalConfig, RunHeader};
use cep_host::{Impulse, Path, Value, Word};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A beat with 256 inputs of a 200-byte text payload each, and the 256
/// cells they changed.
fn entry(beat: u64) -> BeatEntry {
    let source = Word::new("bench").unwrap();
    let inputs = (0..256u64)
        .map(|seq| cep_host::beat::Input {
            source: source.clone(),
            seq,
            impulse: Impulse::targeted(
                Path::parse("sensor/reading").unwrap(),
                Path::parse(&format!("/data/in/{seq}")).unwrap(),
            )
            .with_payload(Value::text(&"x".repeat(200))),
        })
        .collect();
    // What those inputs wrote: one cell each.
    let changes = (0..256u64)
        .map(|seq| cep_host::cell::Change::Put {
            path: Path::parse(&format!("/data/in/{seq}")).unwrap(),
            value: Some(Value::text(&"y".repeat(200))),
            sealed: false,
            log: None,
        })
        .collect();
    BeatEntry {
        beat,
        inputs,
        decisions: Vec::new(),
        changes,
        state_hash: [7; 32],
    }
}

fn append(c: &mut Criterion) {
    let beat = entry(0);
    let size = cep_sdk::flat::encode(
        &cep_host::journal::codec::beat_frame(&beat, Some(0)),
        Default::default(),
    )
    .len();
    let mut group = c.benchmark_group("journal");
    for (label, fsync) in [
        ("append_fsync_never", Fsync::Never),
        ("append_fsync_every_beat", Fsync::EveryBeat),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = JournalConfig {
            fsync,
            segment_bytes: 256 << 20,
        };
        let mut journal = Journal::open(dir.path(), config, &RunHeader::default()).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        if fsync == Fsync::EveryBeat {
            group.sample_size(20);
        }
        group.bench_function(label, |b| b.iter(|| journal.append(&beat).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
