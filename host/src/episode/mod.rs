//! E3 episodes: long-running operations executed in slices across beats.
//!
//! Owns: the live-episode table, leases, budgets, the per-slice execution
//! context (thread-local, so guards work without passing state), and the
//! record of nondeterministic decisions (CPU-budget cancellations).
//!
//! An episode is an `op/ep` dossier (see [`crate::ops`]) with
//! `ist:plan → ist:run ↔ ist:yield | ist:await → ist:ok | ist:fail | ist:cxl`;
//! the history gets one entry per slice, the state it ended in (`ist:run`
//! begins and ends inside the beat).
//! Each slice is one call of the episode's callback enzyme, dispatched by an
//! `ep/cont` impulse targeted at the dossier. Must not touch: the tree layout
//! of dossiers (ops does that) or the order of the agenda (the heartbeat).

use std::cell::RefCell;
use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use cep_sdk::{Name, Path, Value};

use crate::cei::{Fact, Severity};
use crate::cell::{TreeError, WorkTree};
use crate::ops::OpStatus;

/// The continuation signal that runs an episode's next slice.
pub const CONT_SIGNAL: &str = "ep/cont";

/// [`CONT_SIGNAL`] as a path, parsed once (one is emitted per slice, and
/// every impulse of a beat is compared with it: clones of it compare by
/// pointer).
pub(crate) fn cont_signal_path() -> &'static Path {
    static CONT: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
    CONT.get_or_init(|| Path::parse(CONT_SIGNAL).expect("static path"))
}

pub(crate) fn cont_signal() -> Path {
    cont_signal_path().clone()
}

/// What a slice may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Reads the snapshot and stages intents; may run on worker threads.
    Ro,
    /// Mutates only under leases; runs on the heartbeat thread.
    Rw,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Ro => "ep:ro",
            Profile::Rw => "ep:rw",
        }
    }
}

/// Budgets of one episode; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budgets {
    /// CPU time over all slices, measured (and recorded as a decision).
    pub cpu_budget_ns: u64,
    /// Bytes accounted with `account_io` over all slices (deterministic).
    pub io_budget_bytes: u64,
}

/// What starts an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeSpec {
    pub signal: Path,
    pub target: Option<Path>,
    /// The enzyme whose calls are the slices.
    pub callback: Name,
    pub profile: Profile,
    pub budgets: Budgets,
    /// Beats the episode may live; past it, it is cancelled. 0 = unlimited.
    pub max_beats: u64,
}

impl EpisodeSpec {
    pub fn new(callback: &str, profile: Profile) -> Self {
        EpisodeSpec {
            signal: Path::parse("ep/run").expect("static path"),
            target: None,
            callback: Name::new(callback)
                .unwrap_or_else(|_| Name::new("invalid-callback").expect("static name")),
            profile,
            budgets: Budgets::default(),
            max_beats: 0,
        }
    }
}

/// A lease: exclusive ownership of a subtree across beats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub path: Path,
    /// Locks the structure (creating and deleting cells).
    pub lock_store: bool,
    /// Locks the values.
    pub lock_data: bool,
    pub include_descendants: bool,
}

impl Lease {
    fn covers(&self, path: &Path) -> bool {
        if self.include_descendants {
            path.starts_with(&self.path)
        } else {
            path == &self.path
        }
    }
}

/// How a slice ended, as the callback asked.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceEnd {
    /// Run again next beat.
    Yield,
    /// Resume when `oid` reaches `want`; cancelled if `ttl_beats` pass first.
    Await {
        oid: Name,
        want: String,
        ttl_beats: u64,
    },
    Close(OpStatus, String),
}

/// One slice of one episode: the call of episode `eid`'s callback at
/// `beat`. A supervisor cancels that slice, and only that one, with
/// `cancel_ticket`: a ticket whose slice already ran is stale and changes
/// nothing, so cancelling by ticket cannot hit a later slice by mistake (as
/// `ep_cancel`, which cancels whatever the episode is doing, can).
///
/// Written `<eid>@<beat>` (its [`std::fmt::Display`] and
/// [`std::str::FromStr`]), so a ticket can travel through a cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceTicket {
    pub eid: Name,
    pub beat: u64,
}

impl SliceTicket {
    pub fn new(eid: Name, beat: u64) -> Self {
        SliceTicket { eid, beat }
    }
}

impl std::fmt::Display for SliceTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.eid, self.beat)
    }
}

impl std::str::FromStr for SliceTicket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Self, TicketError> {
        let malformed = || TicketError::Malformed {
            text: text.to_owned(),
        };
        let (eid, beat) = text.rsplit_once('@').ok_or_else(malformed)?;
        let eid = Name::new(eid).map_err(|_| malformed())?;
        let beat = beat.parse().map_err(|_| malformed())?;
        Ok(SliceTicket { eid, beat })
    }
}

/// Why a slice ticket was refused. Nothing was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("invalid slice ticket {text:?}: a ticket is <episode id>@<beat>, e.g. 12-h0@40")]
    Malformed { text: String },
    #[error("slice {ticket} cannot be cancelled: episode {} is not running", ticket.eid)]
    NotLive { ticket: SliceTicket },
    #[error("slice {ticket} already ran (the next beat is {next_beat}); the ticket is stale")]
    Stale { ticket: SliceTicket, next_beat: u64 },
    #[error("slice {ticket} is not queued: episode {} has no slice waiting for beat {}", ticket.eid, ticket.beat)]
    NotQueued { ticket: SliceTicket },
}

/// A nondeterministic decision, recorded so that a replay applies it instead
/// of measuring again. The journal persists these.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decision {
    /// The beat whose commit applies it.
    pub beat: u64,
    pub kind: DecisionKind,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DecisionKind {
    /// The episode exceeded its CPU budget and is cancelled.
    CancelEpisodeCpu { eid: Name, used_ns: u64 },
}

pub(crate) struct Episode {
    pub spec: EpisodeSpec,
    /// `/rt/ops/<eid>`, made once: every slice's continuation targets it.
    pub dossier: Path,
    pub started: u64,
    pub io_used: u64,
    /// Measured, never hashed.
    pub cpu_used_ns: u64,
    pub leases: Vec<Lease>,
    /// Leases given up by `suspend_rw`, re-acquired by `resume_rw`.
    pub suspended: Option<Vec<Lease>>,
}

/// What a slice call knows about its episode (frozen at capture).
#[derive(Debug, Clone)]
pub(crate) struct SliceInfo {
    pub eid: Name,
    pub profile: Profile,
    pub io_used: u64,
    pub io_budget: u64,
    pub cpu_left_ns: Option<u64>,
    pub cancel_requested: bool,
    /// The RW episode called `suspend_rw` and has not resumed.
    pub suspended: bool,
}

/// The live episodes and their leases.
///
/// Found by id through a hash map, which is only ever looked up, never
/// iterated: every slice looks its episode up at capture (and at commit
/// when an episode ended in between, [`Episodes::ended`]), and a search of
/// an ordered map of 1,000 names cost ≈ 9 % of a slice. What must go in
/// canonical (id) order, the lease checks, walks `holders`: the episodes
/// holding a lease, usually few, so a write is checked against them and
/// not against every live episode.
#[derive(Default)]
pub(crate) struct Episodes {
    live: FxHashMap<Name, Episode>,
    holders: BTreeSet<Name>,
    /// Episodes removed so far.
    ended: u64,
}

/// Why a change was refused by the lease rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseRefusal {
    /// Another episode holds a lease over the path.
    HeldBy(Name),
    /// An RW slice changed a path outside its own leases.
    NotLeased,
}

impl Episode {
    /// The context of this episode's next slice (its id is `eid`).
    pub fn slice_info(&self, eid: &Name, cancel_requested: bool) -> SliceInfo {
        SliceInfo {
            eid: eid.clone(),
            profile: self.spec.profile,
            io_used: self.io_used,
            io_budget: self.spec.budgets.io_budget_bytes,
            cpu_left_ns: (self.spec.budgets.cpu_budget_ns > 0).then(|| {
                self.spec
                    .budgets
                    .cpu_budget_ns
                    .saturating_sub(self.cpu_used_ns)
            }),
            cancel_requested,
            suspended: self.suspended.is_some(),
        }
    }
}

impl Episodes {
    pub fn get(&self, eid: &Name) -> Option<&Episode> {
        self.live.get(eid)
    }

    /// The episode for its counters; its leases change only through the
    /// methods below, which keep `holders` right.
    pub fn get_mut(&mut self, eid: &Name) -> Option<&mut Episode> {
        self.live.get_mut(eid)
    }

    pub fn contains(&self, eid: &Name) -> bool {
        self.live.contains_key(eid)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn insert(&mut self, eid: Name, episode: Episode) {
        self.live.insert(eid.clone(), episode);
        self.note_leases(&eid);
    }

    pub fn remove(&mut self, eid: &Name) {
        if self.live.remove(eid).is_some() {
            self.ended += 1;
        }
        self.holders.remove(eid);
    }

    /// How many episodes were removed so far: while it stays the same, an
    /// episode seen live is still live, without a lookup.
    pub fn ended(&self) -> u64 {
        self.ended
    }

    /// Keeps `holders` in step with `eid`'s leases.
    fn note_leases(&mut self, eid: &Name) {
        match self.live.get(eid) {
            Some(ep) if !ep.leases.is_empty() => {
                self.holders.insert(eid.clone());
            }
            _ => {
                self.holders.remove(eid);
            }
        }
    }

    /// The lease holders with their episodes, in id order.
    fn holding(&self) -> impl Iterator<Item = (&Name, &Episode)> {
        self.holders
            .iter()
            .filter_map(|eid| self.live.get(eid).map(|ep| (eid, ep)))
    }

    /// Checks a change at `path` by `writer` (the episode of the slice that
    /// staged it, if any). `structural` is a create/delete/append.
    pub fn check_change(
        &self,
        path: &Path,
        writer: Option<(&Name, Profile)>,
        structural: bool,
    ) -> Result<(), LeaseRefusal> {
        for (eid, ep) in self.holding() {
            for lease in &ep.leases {
                let locks = if structural {
                    lease.lock_store || lease.lock_data
                } else {
                    lease.lock_data
                };
                if locks && lease.covers(path) && writer.map(|(w, _)| w) != Some(eid) {
                    return Err(LeaseRefusal::HeldBy(eid.clone()));
                }
            }
        }
        if let Some((eid, Profile::Rw)) = writer {
            let own = self.live.get(eid).is_some_and(|ep| {
                ep.suspended.is_none() && ep.leases.iter().any(|l| l.covers(path))
            });
            if !own {
                return Err(LeaseRefusal::NotLeased);
            }
        }
        Ok(())
    }

    /// Grants `lease` to `eid` unless another episode holds an overlapping one.
    pub fn grant(&mut self, eid: &Name, lease: Lease) -> Result<(), Name> {
        for (other, ep) in self.holding() {
            if other == eid {
                continue;
            }
            let overlaps = ep
                .leases
                .iter()
                .any(|l| l.covers(&lease.path) || lease.covers(&l.path));
            if overlaps {
                return Err(other.clone());
            }
        }
        if let Some(ep) = self.live.get_mut(eid) {
            if !ep.leases.contains(&lease) {
                ep.leases.push(lease);
            }
        }
        self.note_leases(eid);
        Ok(())
    }

    /// `suspend_rw`: the episode stops mutating; with `drop_leases` its
    /// leases are released and remembered for `resume_rw`.
    pub fn suspend(&mut self, eid: &Name, drop_leases: bool) {
        if let Some(ep) = self.live.get_mut(eid) {
            if ep.suspended.is_none() {
                ep.suspended = Some(if drop_leases {
                    std::mem::take(&mut ep.leases)
                } else {
                    Vec::new()
                });
            }
        }
        self.note_leases(eid);
    }

    /// `resume_rw`: re-acquires the dropped leases in their original order.
    /// Returns the episode that took one meanwhile, if any (then the caller
    /// cancels this episode).
    pub fn resume(&mut self, eid: &Name) -> Result<(), Name> {
        let Some(dropped) = self.live.get_mut(eid).and_then(|ep| ep.suspended.take()) else {
            return Ok(());
        };
        for lease in dropped {
            self.grant(eid, lease)?;
        }
        Ok(())
    }

    pub fn release(&mut self, eid: &Name, path: &Path) {
        if let Some(ep) = self.live.get_mut(eid) {
            ep.leases.retain(|l| &l.path != path);
        }
        self.note_leases(eid);
    }
}

/// Mirrors an episode's leases into its dossier (`leases/<i>` = path).
pub(crate) fn record_leases(
    tree: &mut WorkTree,
    eid: &Name,
    leases: &[Lease],
) -> Result<(), TreeError> {
    let at = crate::ops::dossier(eid).child(Name::new("leases").expect("static name"));
    if tree.node(&at).is_some() {
        tree.delete(&at)?;
    }
    for lease in leases {
        tree.append(&at, Value::from(lease.path.to_string()))?;
    }
    Ok(())
}

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

// ---- the per-slice thread-local context and its guards ----

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
