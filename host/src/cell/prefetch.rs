//! Cache hints: fetch the lines of memory a walk is about to read or
//! write, so that its misses overlap instead of following one another.
//! Hints only: nothing is read or written, and a wrong address costs a
//! wasted fetch, never a fault.

/// Bytes per cache line.
const LINE: usize = 64;

/// Calls `hint` with the start of every line of `bytes` bytes from `start`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
fn each_line(start: *const u8, bytes: usize, mut hint: impl FnMut(*const i8)) {
    let mut at = 0;
    while at < bytes {
        hint(start.wrapping_add(at).cast());
        at += LINE;
    }
}

/// Hints the cache to fetch `bytes` bytes from `start` for reading.
#[inline(always)]
pub(super) fn read(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    each_line(start, bytes, |line| {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` only hints the cache; it reads nothing
        // and cannot fault, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line) }
    });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// Hints the cache to fetch `bytes` bytes from `start` for writing: the
/// lines come in exclusive (`prefetchw`), so the write, often a locked
/// count increment, finds them ready. With the `prefetcht0` a baseline
/// x86-64 build emits for a write hint, a line last written by the other
/// core (the reclaimer's count decrements) came in shared, and the write
/// waited for a second transfer. On a CPU without `prefetchw`
/// (`has_prefetchw`), a read hint.
#[inline(always)]
pub(super) fn write(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_prefetchw() {
            each_line(start, bytes, |line| {
                // SAFETY: `prefetchw` only hints the cache, like
                // `_mm_prefetch`: it reads and writes nothing and cannot
                // fault; the CPU has it (`has_prefetchw`). It leaves the
                // stack and the flags alone, as declared.
                unsafe {
                    std::arch::asm!(
                        "prefetchw [{line}]",
                        line = in(reg) line,
                        options(readonly, nostack, preserves_flags)
                    )
                }
            });
        } else {
            read(start, bytes);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// Whether the CPU has `prefetchw` (CPUID leaf 8000_0001h, ECX bit 8:
/// every AMD64 CPU, Intel since Broadwell). Asked once.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_prefetchw() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    /// 0: not asked yet; 1: no; 2: yes.
    static HAS: AtomicU8 = AtomicU8::new(0);
    match HAS.load(Relaxed) {
        0 => {
            let has = ask_prefetchw();
            HAS.store(1 + has as u8, Relaxed);
            has
        }
        known => known == 2,
    }
}

#[cfg(target_arch = "x86_64")]
#[cold]
fn ask_prefetchw() -> bool {
    use std::arch::x86_64::__cpuid;
    const EXTENDED: u32 = 0x8000_0001;
    // A leaf above the highest one is never asked.
    let highest = __cpuid(0x8000_0000).eax;
    highest >= EXTENDED && __cpuid(EXTENDED).ecx & (1 << 8) != 0
}

/// [`write`] of the memory `value` occupies.
#[inline(always)]
pub(super) fn write_of<T: ?Sized>(value: &T) {
    write(
        (value as *const T).cast::<u8>(),
        std::mem::size_of_val(value),
    );
}
