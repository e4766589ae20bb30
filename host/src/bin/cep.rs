//! The `cep` command; see `cep --help`.

/// mimalloc, not the system allocator: a beat allocates many small cells on
/// the heartbeat thread while the reclaimer frees old snapshots on another,
/// and glibc's malloc serialises the two on its arena lock (measured: an
/// episode slice 17.9 µs with glibc, 8.0 µs with mimalloc;
/// docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    cep_host::process::prefer_small_pages();
    std::process::exit(cep_host::cli::main());
}
