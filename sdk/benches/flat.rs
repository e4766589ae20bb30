//! Flat frame throughput (issue 9's targets): encode + CRC32C and decode of
//! 64 KiB frames, plain and deflated. Figures: docs/BENCHMARKS.md.

use cep_sdk::flat::{decode, encode_into, Encoding, Frame, Limits, Record};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A 64 KiB frame of 64 records of about 1 KiB each, with bodies that
/// compress like typical cell data (repetitive, not constant).
fn frame() -> Frame {
    let records = (0..64u32)
        .map(|i| {
            let body: Vec<u8> = (0..1016u32)
                .map(|j| ((i * 31 + j * 7) % 251) as u8)
                .collect();
            Record::new(format!("/data/k{i:04}").into_bytes(), body)
        })
        .collect();
    Frame {
        kind: 1,
        beat: 123_456,
        records,
    }
}

fn flat(c: &mut Criterion) {
    let frame = frame();
    let limits = Limits::default();
    let mut group = c.benchmark_group("flat");
    for deflate in [false, true] {
        let encoding = Encoding { deflate };
        let label = if deflate { "deflate" } else { "plain" };
        let plain_len = cep_sdk::flat::encode(&frame, Encoding::default()).len();
        group.throughput(Throughput::Bytes(plain_len as u64));
        let mut out = Vec::with_capacity(plain_len * 2);
        group.bench_function(format!("encode_{label}_64k"), |b| {
            b.iter(|| {
                out.clear();
                encode_into(&frame, encoding, &mut out);
                out.len()
            })
        });
        let bytes = cep_sdk::flat::encode(&frame, encoding);
        group.bench_function(format!("decode_{label}_64k"), |b| {
            b.iter(|| decode(&bytes, &limits).unwrap().records.len())
        });
    }
    group.finish();
}

criterion_group!(benches, flat);
criterion_main!(benches);
