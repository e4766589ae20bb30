//! Splits the 1M-cell commit benchmark into its write and rehash phases.
//! `cargo run --release -p cep-host --example commit_split`
use std::time::Instant;

use cep_host::cell::{Snapshot, WorkTree};
use cep_host::{Name, Path, Value};

fn main() {
    let (fanout, levels) = (32usize, 4usize);
    let mut leaves = vec![Path::parse("/data").unwrap()];
    for level in 0..levels {
        let letter = (b'a' + level as u8) as char;
        leaves = leaves
            .iter()
            .flat_map(|parent| {
                (0..fanout)
                    .map(move |i| parent.child(Name::new(&format!("{letter}{i:02}")).unwrap()))
            })
            .collect();
    }
    let mut tree = WorkTree::new(&Snapshot::empty());
    for (i, leaf) in leaves.iter().enumerate() {
        tree.write(leaf, Value::I64(i as i64)).unwrap();
    }
    let mut current = tree.commit(0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut write_ns, mut commit_ns) = (0u128, 0u128);
    let rounds = 40;
    for round in 1..=rounds {
        let batch: Vec<&Path> = (0..1000)
            .map(|_| {
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                &leaves[(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) % leaves.len() as u64) as usize]
            })
            .collect();
        let t0 = Instant::now();
        let mut tree = WorkTree::new(&current);
        for path in batch {
            tree.write(path, Value::I64(round)).unwrap();
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
