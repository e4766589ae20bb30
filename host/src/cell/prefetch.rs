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

/// Hints the cache to fetch `bytes` bytes from `start` for writing. A
/// build for baseline x86-64 (no `prfchw` target feature) emits a plain
/// `prefetcht0` for it: the line comes in shared and the write upgrades
/// it, which is still what the measured gains were taken with.
#[inline(always)]
pub(super) fn write(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    each_line(start, bytes, |line| {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        // SAFETY: as in `read`: a hint, which reads and writes nothing.
        unsafe { _mm_prefetch::<_MM_HINT_ET0>(line) }
    });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// [`write`] of the memory `value` occupies.
#[inline(always)]
pub(super) fn write_of<T: ?Sized>(value: &T) {
    write(
        (value as *const T).cast::<u8>(),
        std::mem::size_of_val(value),
    );
}
