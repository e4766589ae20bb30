//! The slice running on this thread: its context, kept thread-local so the
//! guards work without passing state, and the guards themselves.

use std::cell::RefCell;

use cep_sdk::Name;

use super::{Profile, SliceEnd, SliceInfo};
use crate::cei::{Fact, Severity};

/// Runs `f`, timing it when `timed`. CPU time is not deterministic: the
/// figure only feeds a budget decision, which is recorded as an input so a
/// replay applies the decision instead of measuring.
pub(crate) fn measure_if<R>(timed: bool, f: impl FnOnce() -> R) -> (R, Option<u64>) {
    if !timed {
        return (f(), None);
    }
    // determinism: recorded decision
    let started = std::time::Instant::now();
    let result = f();
    (result, Some(started.elapsed().as_nanos() as u64))
}

/// The state of the slice running on this thread.
struct SliceState {
    /// A slice runs on this thread now: the other fields are its.
    active: bool,
    info: SliceInfo,
    io_used: u64,
    cancel: bool,
    io_reported: bool,
    facts: Vec<Fact>,
    end: Option<SliceEnd>,
}

thread_local! {
    static SLICE: RefCell<Option<SliceState>> = const { RefCell::new(None) };
}

/// Runs `f` with `info` as this thread's slice context; returns its result,
/// the slice's requested end, the IO it accounted and the facts it raised.
pub(crate) fn with_slice<R>(
    info: &SliceInfo,
    f: impl FnOnce() -> R,
) -> (R, Option<SliceEnd>, u64, Vec<Fact>) {
    // The thread's state is reset in place, not made anew and moved in
    // and out: moving it cost two `memcpy` calls per slice.
    SLICE.with(|s| {
        let mut s = s.borrow_mut();
        match &mut *s {
            Some(st) => {
                st.active = true;
                st.info.clone_from(info);
                st.io_used = info.io_used;
                st.cancel = info.cancel_requested;
                st.io_reported = false;
                st.facts.clear();
                st.end = None;
            }
            None => {
                *s = Some(SliceState {
                    active: true,
                    info: info.clone(),
                    io_used: info.io_used,
                    cancel: info.cancel_requested,
                    io_reported: false,
                    facts: Vec::new(),
                    end: None,
                })
            }
        }
    });
    let result = f();
    let ended = SLICE.with(|s| {
        let mut s = s.borrow_mut();
        let st = s.as_mut().filter(|st| st.active)?;
        st.active = false;
        Some((st.end.take(), st.io_used, std::mem::take(&mut st.facts)))
    });
    match ended {
        Some((end, io_used, facts)) => (result, end, io_used - info.io_used, facts),
        None => (result, None, 0, Vec::new()),
    }
}

/// Clears this thread's slice context (after a panic unwound through it).
pub(crate) fn clear_slice() {
    SLICE.with(|s| {
        if let Some(st) = s.borrow_mut().as_mut() {
            st.active = false;
            st.facts.clear();
            st.end = None;
        }
    });
}

fn with_state<R>(f: impl FnOnce(&mut SliceState) -> R) -> Option<R> {
    SLICE.with(|s| s.borrow_mut().as_mut().filter(|st| st.active).map(f))
}

/// Why a guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("not inside an episode slice")]
    NoEpisode,
    #[error("episode {eid} runs with the read-only profile; this needs ep:rw")]
    ReadOnly { eid: Name },
    #[error("episode {eid} is suspended (suspend_rw); call resume_rw first")]
    Suspended { eid: Name },
}

/// Whether the running slice should stop: its episode was cancelled or it
/// overran its IO budget. Outside a slice: false.
pub fn check_cancel() -> bool {
    with_state(|s| s.cancel).unwrap_or(false)
}

/// Accounts `bytes` of IO to the running slice's episode. Crossing the
/// episode's IO budget raises `ep:bud/io` (once) and sets the cancel flag.
pub fn account_io(bytes: u64) -> Result<(), GuardError> {
    with_state(|s| {
        s.io_used = s.io_used.saturating_add(bytes);
        if s.info.io_budget > 0 && s.io_used > s.info.io_budget && !s.io_reported {
            s.io_reported = true;
            s.cancel = true;
            let note = format!(
                "episode {} used {} bytes of IO, over its budget of {}",
                s.info.eid, s.io_used, s.info.io_budget
            );
            s.facts.push(
                Fact::new(Severity::Usage, "ep:bud/io", note)
                    .subject(Some(crate::ops::dossier(&s.info.eid))),
            );
        }
    })
    .ok_or(GuardError::NoEpisode)
}

/// Fails unless the running slice has the RW profile.
pub fn require_rw() -> Result<(), GuardError> {
    with_state(|s| match s.info.profile {
        Profile::Rw if s.info.suspended => Err(GuardError::Suspended {
            eid: s.info.eid.clone(),
        }),
        Profile::Rw => Ok(()),
        Profile::Ro => Err(GuardError::ReadOnly {
            eid: s.info.eid.clone(),
        }),
    })
    .unwrap_or(Err(GuardError::NoEpisode))
}

/// The id of the episode whose slice runs on this thread.
pub fn current_episode() -> Option<Name> {
    with_state(|s| s.info.eid.clone())
}

pub(crate) fn set_end(end: SliceEnd) -> Result<(), GuardError> {
    with_state(|s| s.end = Some(end)).ok_or(GuardError::NoEpisode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(eid: &str, profile: Profile, io_used: u64) -> SliceInfo {
        SliceInfo {
            eid: Name::new(eid).expect("valid name"),
            profile,
            io_used,
            io_budget: 10,
            cpu_left_ns: None,
            cancel_requested: false,
            suspended: false,
        }
    }

    /// The thread keeps its slice state between slices (reset in place):
    /// outside a slice every guard still says so, and the next slice sees
    /// nothing of the one before.
    #[test]
    fn a_slice_leaves_nothing_to_the_guards_or_the_next_slice() {
        let (_, end, io, facts) = with_slice(&info("ep-a", Profile::Rw, 0), || {
            assert_eq!(require_rw(), Ok(()));
            account_io(25).expect("inside a slice");
            assert!(check_cancel(), "over the IO budget");
            set_end(SliceEnd::Yield).expect("inside a slice");
        });
        assert_eq!(end, Some(SliceEnd::Yield));
        assert_eq!(io, 25);
        assert_eq!(facts.len(), 1, "ep:bud/io");
        assert_eq!(require_rw(), Err(GuardError::NoEpisode));
        assert_eq!(account_io(1), Err(GuardError::NoEpisode));
        assert!(!check_cancel());
        assert_eq!(current_episode(), None);
        let (_, end, io, facts) = with_slice(&info("ep-b", Profile::Ro, 3), || {
            assert!(!check_cancel(), "a fresh slice");
            assert_eq!(current_episode().as_ref().map(Name::as_str), Some("ep-b"));
            assert!(matches!(require_rw(), Err(GuardError::ReadOnly { .. })));
        });
        assert_eq!((end, io, facts.len()), (None, 0, 0));
        clear_slice();
        assert_eq!(current_episode(), None);
    }
}
