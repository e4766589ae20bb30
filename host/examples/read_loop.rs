//! Reads one depth-5 path of a 1M-cell tree in a loop (for callgrind:
//! `--toggle-collect='read_loop::hot_reads*'`).
use std::hint::black_box;

use cep_host::cell::Snapshot;
use cep_host::Path;
#[path = "support/mod.rs"]
mod support;

#[inline(never)]
fn hot_reads(snapshot: &Snapshot, hot: &Path, n: usize) {
    for _ in 0..n {
        black_box(snapshot.read(black_box(hot)));
    }
}

fn main() {
    let n = support::arg(1, 1_000_000);
    let (snapshot, leaves) = support::fanout_tree(32, 4);
    let hot = leaves[leaves.len() / 3].clone();
    let t = std::time::Instant::now();
    hot_reads(&snapshot, &hot, n);
    println!("read {:.1} ns", t.elapsed().as_nanos() as f64 / n as f64);
}
