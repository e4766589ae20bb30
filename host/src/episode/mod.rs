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

mod engine;
mod lease;
mod slice;

use cep_sdk::{Name, Path};

use crate::ops::OpStatus;

pub use engine::DECISIONS_KEPT;
pub(crate) use engine::{Captured, Engine, YieldedSlice};
pub use lease::Lease;
pub(crate) use lease::{record_leases, Episodes, LeaseRefusal};
pub use slice::{account_io, check_cancel, current_episode, require_rw, GuardError};
pub(crate) use slice::{clear_slice, measure_if, set_end, with_slice};

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

/// An episode change, applied at commit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EpisodeOp {
    Start {
        eid: Name,
        spec: EpisodeSpec,
        /// The operation the starting call worked for.
        parent: Option<Name>,
    },
    /// A slice finished: how it asked to end, the IO it accounted, the CPU it
    /// measured (when budgeted), whether it was cancelled, or why it failed.
    SliceDone {
        eid: Name,
        end: Option<SliceEnd>,
        io_bytes: u64,
        cpu_ns: Option<u64>,
        cancelled: bool,
        failed: Option<String>,
    },
    Lease {
        eid: Name,
        lease: Lease,
    },
    Release {
        eid: Name,
        path: Path,
    },
    Suspend {
        eid: Name,
        drop_leases: bool,
    },
    Resume {
        eid: Name,
    },
    Cancel {
        eid: Name,
        topic: String,
        reason: String,
    },
    /// Cancel one slice (see [`crate::episode::SliceTicket`]).
    CancelTicket {
        ticket: SliceTicket,
    },
}
