//! Splits the 1M-cell commit benchmark into its write and rehash phases.
//! `cargo run --release -p cep-host --example commit_split [FANOUT LEVELS
//! [one-by-one]]` (default 32 4: the 1M F32×L4 tree; 10 6 is the 1M
//! F10×L6 one). The writes go in one `write_all` batch, as the runtime's
//! commit writes a large beat, or with `one-by-one` through `write`.
use std::time::Instant;

use cep_host::cell::WorkTree;
use cep_host::Value;

#[path = "support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    cep_host::process::prefer_small_pages();
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"));
    let fanout = args.next().unwrap_or(32);
    let levels = args.next().unwrap_or(4);
    let one_by_one = std::env::args().nth(3).as_deref() == Some("one-by-one");
    let (mut current, leaves) = support::fanout_tree(fanout, levels);
    let mut rng = support::Xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut write_ns, mut commit_ns) = (0u128, 0u128);
    let rounds = 100;
    for round in 1..=rounds {
        let batch: Vec<_> = (0..1000)
            .map(|_| &leaves[rng.below(leaves.len())])
            .collect();
        let t0 = Instant::now();
        let mut tree = WorkTree::new(&current);
        if one_by_one {
            for path in batch {
                tree.write(path, Value::I64(round)).expect("unsealed");
            }
        } else {
            let batch = batch.into_iter().map(|p| (p, Value::I64(round))).collect();
            assert!(tree.write_all(batch).iter().all(Result::is_ok));
        }
        let t1 = Instant::now();
        let next = tree.commit(round as u64);
        let t2 = Instant::now();
        write_ns += (t1 - t0).as_nanos();
        commit_ns += (t2 - t1).as_nanos();
        current = next;
    }
    println!(
        "write {:.2} ms, rehash {:.2} ms per 1000 writes",
        write_ns as f64 / rounds as f64 / 1e6,
        commit_ns as f64 / rounds as f64 / 1e6
    );
}
