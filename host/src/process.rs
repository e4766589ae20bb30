//! Process-wide settings: what the `cep` command applies before it builds a
//! runtime, and what the benchmarks apply so they measure what `cep` runs.
//! A program embedding the library chooses for itself.

/// The environment variable that keeps transparent huge pages on (`1`).
pub const THP_VAR: &str = "CEP_THP";

/// Turns transparent huge pages off for this process (Linux's
/// `PR_SET_THP_DISABLE`) unless `CEP_THP=1`; returns whether they are off.
///
/// Why: a beat copies the cells it changes into fresh memory while older
/// snapshots are freed, so the allocator keeps taking and returning pages.
/// With huge pages each fault zeroes (and may first compact) 2 MiB, and a
/// runtime whose tree is growing stalls on them: 10,000 live episodes took
/// 30 µs per slice while their histories filled and 5.8 µs with huge pages
/// off, with bursts of 20–40 µs per slice later in the run that vanish too
/// (docs/BENCHMARKS.md). Huge pages do make random reads of a large tree
/// faster (fewer TLB misses: 670 vs 856 ns on a 1M-cell tree), which is
/// what `CEP_THP=1` is for: steady latency is the default, as databases
/// that allocate like this (Redis, MongoDB) also recommend.
pub fn prefer_small_pages() -> bool {
    if keeps_thp(std::env::var(THP_VAR).ok().as_deref()) {
        return false;
    }
    disable_thp()
}

/// Whether a `CEP_THP` of `value` keeps huge pages on.
fn keeps_thp(value: Option<&str>) -> bool {
    value == Some("1")
}

#[cfg(target_os = "linux")]
fn disable_thp() -> bool {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag
    // of this process's memory map; it touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn disable_thp() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cep_thp_1_keeps_huge_pages() {
        assert!(keeps_thp(Some("1")));
        for other in [None, Some("0"), Some(""), Some("yes")] {
            assert!(!keeps_thp(other), "{other:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_flag_is_set() {
        assert!(disable_thp());
        // SAFETY: as in `disable_thp`; the getter only reads the flag.
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
    }
}
