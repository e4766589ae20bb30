//! Cache hints: fetch the lines of memory a walk is about to read or
//! write, so that its misses overlap instead of following one another.
//! Hints only: nothing is read or written, and a wrong address costs a
//! wasted fetch, never a fault.

/// Bytes per cache line.
const LINE: usize = 64;

/// Hints the cache to fetch `bytes` bytes from `start` for reading.
#[inline(always)]
pub(super) fn read(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache; it reads nothing and
    // cannot fault, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut at = 0;
        while at < bytes {
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(at).cast::<i8>());
            at += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// Hints the cache to fetch `bytes` bytes from `start` for writing.
#[inline(always)]
pub(super) fn write(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `read`: a hint, which reads and writes nothing.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        let mut at = 0;
        while at < bytes {
            _mm_prefetch::<_MM_HINT_ET0>(start.wrapping_add(at).cast::<i8>());
            at += LINE;
        }
    }
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
