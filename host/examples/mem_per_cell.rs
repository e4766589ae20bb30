//! Peak resident memory per cell of a committed 1M-cell tree (i64 leaves).
//!
//! `cargo run --release -p cep-host --example mem_per_cell -- [name_bytes]`
//!
//! Builds `/data/<a>/<b>/<c>/<d>` with fanout 32 at every level (1,082,401
//! cells below the root) where every name is padded to `name_bytes` bytes
//! (default 3, at most 22), commits it, and prints the growth of the peak RSS
//! (VmHWM) over the empty process, divided by the cell count.

use cep_host::cell::{Snapshot, WorkTree};
use cep_host::{Name, Path, Value};

#[path = "support/mod.rs"]
mod support;

fn main() {
    let name_bytes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3)
        .clamp(3, 22);
    let name = |letter: char, i: usize| {
        Name::new(&format!("{letter}{i:0width$}", width = name_bytes - 1)).unwrap()
    };
    let before = support::peak_rss_kib();
    let data = Path::parse("/data").unwrap();
    let mut tree = WorkTree::new(&Snapshot::empty());
    let mut cells = 1u64; // /data
    for a in 0..32 {
        let pa = data.child(name('a', a));
        for b in 0..32 {
            let pb = pa.child(name('b', b));
            for c in 0..32 {
                let pc = pb.child(name('c', c));
                for d in 0..32 {
                    tree.write(&pc.child(name('d', d)), Value::I64(d as i64))
                        .unwrap();
                }
            }
        }
    }
    cells += 32 + 32 * 32 + 32 * 32 * 32 + 32 * 32 * 32 * 32;
    let snapshot = tree.commit(0);
    let after = support::peak_rss_kib();
    let per_cell = (after - before) as f64 * 1024.0 / cells as f64;
    println!("cells={cells} name_bytes={name_bytes} peak_rss_growth_mib={:.1} bytes_per_cell={per_cell:.1} hash={}", (after - before) as f64 / 1024.0, snapshot.hash_hex());
}
