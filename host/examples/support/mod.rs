//! Helpers shared by the examples and the benchmarks (included with
//! `#[path]`; not an example itself).
#![allow(dead_code)]

use cep_host::cell::{Snapshot, WorkTree};
use cep_host::{Name, Path, Value};

/// Peak resident set size of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A tree `/data/aNN/bNN/...` with `fanout` children per level and `levels`
/// levels below `/data`, leaves holding an i64. Returns it with its leaves.
pub fn fanout_tree(fanout: usize, levels: usize) -> (Snapshot, Vec<Path>) {
    let mut leaves = vec![Path::parse("/data").expect("static path")];
    for level in 0..levels {
        let letter = (b'a' + level as u8) as char;
        leaves = leaves
            .iter()
            .flat_map(|parent| {
                (0..fanout).map(move |i| {
                    parent.child(Name::new(&format!("{letter}{i:02}")).expect("valid name"))
                })
            })
            .collect();
    }
    let mut tree = WorkTree::new(&Snapshot::empty());
    for (i, leaf) in leaves.iter().enumerate() {
        tree.write(leaf, Value::I64(i as i64)).expect("fresh tree");
    }
    (tree.commit(0), leaves)
}

/// A deterministic generator (xorshift64*), so every run picks the same cells.
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}
