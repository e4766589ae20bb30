//! `cep-host`: the cep kernel.
//!
//! A heartbeat (capture → compute → commit) over a tree of cells, enzymes that
//! react to impulses, and structured diagnostics (CEI). See `DESIGN.md` for
//! the architecture and `docs/` for the semantics and formats.

pub mod beat;
pub mod cei;
pub mod cell;
pub mod cli;
pub mod config;
pub mod default_world;
pub mod enzyme;
pub mod episode;
pub mod impulse;
pub mod journal;
pub mod ops;
pub mod organ;
pub mod plugin;
pub mod process;

pub use beat::{BeatReport, Runtime, RuntimeError};
pub use cei::{Fact, Severity};
pub use cell::{Hash, Name, Path, Snapshot, Value, Word};
pub use cep_sdk::{EnzymeDescriptor, EnzymeFlags, MatchKind};
pub use config::{Config, ExecutorKind};
pub use enzyme::{Enzyme, EnzymeId, Outcome};
pub use enzyme::{EnzymeCx, HostError};
pub use episode::{Budgets, EpisodeSpec, Lease, Profile, SliceTicket, TicketError};
pub use impulse::{Impulse, Injector};
pub use ops::{AwaitSpec, OpSpec, OpStatus};
