//! Peak resident memory of 100,000 live OPS dossiers.
//!
//! `cargo run --release -p cep-host --example ops_memory`
//!
//! Starts 100,000 operations from the host, commits them, and prints the
//! growth of the peak RSS (VmHWM) per dossier.

use cep_host::{Config, OpSpec, Path, Runtime};

#[path = "support/mod.rs"]
mod support;

fn main() {
    let dossiers = 100_000u64;
    let config = Config {
        ledger_beats: 0,
        history_snapshots: 1,
        ..Config::default()
    };
    let mut rt = Runtime::new(config).expect("valid configuration");
    rt.run(6).expect("boot");
    let before = support::peak_rss_kib();
    for _ in 0..dossiers {
        rt.op_start(OpSpec::new(Path::parse("op/job").expect("static path")));
    }
    let report = rt.step().expect("commit");
    let cells = rt
        .snapshot()
        .node(&Path::parse("/rt/ops").expect("static path"))
        .map_or(0, |n| n.child_count());
    let after = support::peak_rss_kib();
    println!(
        "dossiers={cells} peak_rss_growth_mib={:.1} bytes_per_dossier={:.0} beat={} hash={}",
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / dossiers as f64,
        report.beat,
        cep_host::cell::hash::hex(&report.state_hash)
    );
}
