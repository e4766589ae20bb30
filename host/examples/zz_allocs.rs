//! Allocations per slice in the slice-overhead scenario (N episodes that
//! yield every beat), counted by a wrapping allocator: what a slice costs
//! the allocator, and the reclaimer later.
//! `cargo run --release -p cep-host --example slice_allocs -- [episodes]`
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[path = "support/mod.rs"]
mod support;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
thread_local! {static IN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };}
static COUNT: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static SIZES: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

// SAFETY: forwards every call to mimalloc unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        SIZES[(layout.size() / 16).min(63)].fetch_add(1, Relaxed);
        if ARMED.load(Relaxed)
            && (layout.size() >= 640 && layout.size() < 656)
            && !IN.with(|c| c.replace(true))
        {
            let bt = std::backtrace::Backtrace::force_capture().to_string();
            let key: Vec<&str> = bt
                .lines()
                .filter(|l| l.contains("cep_host::") && !l.contains("at "))
                .take(4)
                .map(|l| l.trim())
                .collect();
            eprintln!("size {} | {}", layout.size(), key.join(" < "));
            if COUNT.fetch_add(1, Relaxed) > 3000 {
                ARMED.store(false, Relaxed);
            }
            IN.with(|c| c.set(false));
        }
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        SIZES[(new_size / 16).min(63)].fetch_add(1, Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let n = support::arg(1, 1000);
    let mut rt = support::with_episodes(support::bench_config(), n, |_| {});
    rt.run(32).unwrap();
    let beats = 64;
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let s0: Vec<u64> = SIZES.iter().map(|s| s.load(Relaxed)).collect();
    ARMED.store(true, Relaxed);
    rt.run(1).unwrap();
    ARMED.store(true, Relaxed);
    while ARMED.load(Relaxed) {
        rt.run(1).unwrap();
    }
    rt.run(beats).unwrap();
    let slices = (beats as usize * n) as f64;
    println!(
        "{:.2} allocations, {:.0} bytes per slice",
        (ALLOCS.load(Relaxed) - a0) as f64 / slices,
        (BYTES.load(Relaxed) - b0) as f64 / slices
    );
    for (i, s) in SIZES.iter().enumerate() {
        let d = s.load(Relaxed) - s0[i];
        if d > 0 {
            println!(
                "  {:>5}..{:<5} bytes: {:.3} per slice",
                i * 16,
                i * 16 + 16,
                d as f64 / slices
            );
        }
    }
}
