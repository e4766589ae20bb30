//! The RO-slices benchmark's scenario (128 episodes, each slice at least
//! 50 µs of hashing) on 1 and 2 workers, without criterion around it: best
//! and mean beat time over `reps` runs of 20 beats, and the process's CPU
//! time per wall time (how busy the cores were).
//! `cargo run --release -p cep-host --example ro_slices -- [reps]`
use std::time::{Duration, Instant};

use cep_host::{Config, EnzymeCx, ExecutorKind};

#[path = "support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// User + system CPU time of the whole process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    cep_host::process::prefer_small_pages();
    let reps = support::arg(1, 10);
    let rounds = support::rounds_for(Duration::from_micros(50));
    println!("{rounds} hash rounds per slice");
    for workers in [1usize, 2, 1, 2] {
        let config = Config {
            executor: ExecutorKind::Threaded,
            workers,
            ..support::bench_config()
        };
        let mut rt = support::with_episodes(config, 128, move |cx: &mut EnzymeCx<'_>| {
            let seed = cx.episode().map(|e| e.as_str().len()).unwrap_or(0) as u64 + cx.beat();
            std::hint::black_box(support::hash_rounds(seed, rounds));
        });
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            rt.run(20).unwrap();
            best = best.min(t.elapsed().as_secs_f64() / 20.0);
        }
        let wall = wall.elapsed().as_secs_f64();
        println!(
            "workers {workers}: best {:.3} ms, mean {:.3} ms per beat; cpu/wall {:.2}",
            best * 1e3,
            wall / (20 * reps) as f64 * 1e3,
            (cpu_seconds() - cpu) / wall
        );
    }
}
