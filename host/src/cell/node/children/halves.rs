//! Two threads on one list: the stale half of a group hashed or walked
//! on a helper while this thread takes the other.

use super::*;

/// Where a group's kids are cut in two for [`both_halves`]: at the kid
/// that starts the second half of its stale kids; `None` when fewer than
/// two are stale (or the list is not a group).
pub(super) fn stale_half(root: Option<&Link>) -> Option<usize> {
    let Some(Link::Group(kids)) = root else {
        return None;
    };
    let stale = kids.iter().filter(|k| k.hash == STALE).count();
    if stale < 2 {
        return None;
    }
    kids.iter()
        .enumerate()
        .filter(|(_, k)| k.hash == STALE)
        .nth(stale / 2)
        .map(|(i, _)| i)
}

/// The kids of the group at `root` (copied if shared), cut at `at`.
pub(super) fn kids_cut_at(root: &mut Link, at: usize) -> (&mut [Kid], &mut [Kid]) {
    let Link::Group(kids) = root else {
        unreachable!("cut where stale_half said")
    };
    own(kids).split_at_mut(at)
}

/// Runs `low` on this thread and `high` on a helper, and returns both
/// results; a panic on the helper goes on here. When no thread can be
/// started (the process is at its limit), `high` runs here after `low`:
/// slower, same result.
pub(in crate::cell) fn both_halves<A, B: Send>(
    low: impl FnOnce() -> A,
    high: impl FnOnce() -> B + Send,
) -> (A, B) {
    // `high` waits here until the helper takes it, so that it is still at
    // hand if the helper cannot be started.
    let waiting = std::sync::Mutex::new(Some(high));
    let take = || waiting.lock().map(|mut high| high.take()).ok().flatten();
    std::thread::scope(|scope| {
        let helper = if helpers_refused() {
            None
        } else {
            std::thread::Builder::new()
                .name("cep-commit".into())
                .spawn_scoped(scope, || take().map(|high| high()))
                .ok()
        };
        let a = low();
        let b = match helper.map(|h| h.join()) {
            Some(Ok(Some(b))) => Some(b),
            Some(Ok(None)) | None => None,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        };
        match b {
            Some(b) => (a, b),
            None => (a, take().expect("the helper did not run it")()),
        }
    })
}

#[cfg(test)]
thread_local! {
    /// Tests: act as if no helper thread could be started.
    pub(in crate::cell) static REFUSE_HELPERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(super) fn helpers_refused() -> bool {
    #[cfg(test)]
    return REFUSE_HELPERS.with(|refuse| refuse.get());
    #[cfg(not(test))]
    false
}
