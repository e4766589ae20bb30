//! Helpers shared by the examples and the benchmarks (included with
//! `#[path]`; not an example itself).
#![allow(dead_code)]

use cep_host::cell::{Snapshot, WorkTree};
use cep_host::{
    Config, EnzymeCx, EnzymeDescriptor, EpisodeSpec, Name, Outcome, Path, Profile, Runtime, Value,
};

/// The settings the kernel benchmarks and their examples run with: the
/// defaults without the ledger and without CEI signals, so a beat costs
/// what the measured work costs.
pub fn bench_config() -> Config {
    Config {
        ledger_beats: 0,
        cei_signal: false,
        ..Config::default()
    }
}

/// Command-line argument `index` (1 is the first) as a number, or `default`
/// when it is not given.
pub fn arg(index: usize, default: usize) -> usize {
    std::env::args().nth(index).map_or(default, |a| {
        a.parse()
            .unwrap_or_else(|_| panic!("argument {index} must be a number, not {a:?}"))
    })
}

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

/// `rounds` chained BLAKE3 hashes from `seed`: CPU work with no memory
/// traffic, the same result on every run and thread.
pub fn hash_rounds(seed: u64, rounds: u32) -> blake3::Hash {
    let mut state = blake3::hash(&seed.to_le_bytes());
    for _ in 0..rounds {
        state = blake3::hash(state.as_bytes());
    }
    state
}

/// Rounds of [`hash_rounds`] that take at least `at_least` on this machine
/// (best of 5 timings, plus 10 %). The benchmarks state their work as a
/// duration, as the issues do; a fixed round count would be less work on a
/// faster machine and more on a slower one. Only the amount of work depends
/// on the machine: runs whose hashes are compared use the same count.
pub fn rounds_for(at_least: std::time::Duration) -> u32 {
    const PROBE: u32 = 4_000;
    let best = (0..5)
        .map(|i| {
            let start = std::time::Instant::now();
            std::hint::black_box(hash_rounds(i, PROBE));
            start.elapsed()
        })
        .min()
        .expect("five timings");
    let per_round = best.as_nanos().max(1) as f64 / f64::from(PROBE);
    (at_least.as_nanos() as f64 / per_round * 1.1).ceil() as u32
}

/// A runtime past its boot beats (8), with `episodes` live RO episodes
/// whose slices run `body` and yield.
pub fn with_episodes(
    config: Config,
    episodes: usize,
    body: impl Fn(&mut EnzymeCx<'_>) + Send + Sync + 'static,
) -> Runtime {
    let mut rt = Runtime::new(config).expect("a valid configuration");
    rt.register(
        &EnzymeDescriptor::new("slice", "ep/cb/bench"),
        move |cx: &mut EnzymeCx<'_>| {
            body(cx);
            cx.ep_yield().expect("inside a slice");
            Outcome::Ok
        },
    )
    .expect("a fresh registry");
    for _ in 0..episodes {
        rt.ep_start(EpisodeSpec::new("slice", Profile::Ro));
    }
    rt.run(8).expect("boot beats");
    assert_eq!(rt.episodes_live(), episodes);
    rt
}
