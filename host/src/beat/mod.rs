//! The heartbeat: capture → compute → commit, one beat at a time.
//!
//! Owns: the impulse queues (emitted and injected), the agenda of a beat, the
//! compute phase on either executor, the canonical commit of staged intents,
//! the ledger `/rt/beat/<N>` and the per-beat hashes.
//!
//! Must not touch: how enzymes are ordered (that is [`crate::enzyme`]) or how
//! the tree stores and hashes cells (that is [`crate::cell`]). Data flows one
//! way: inputs → capture → agenda → compute (reads the frozen snapshot,
//! stages intents) → commit (applies them in agenda order) → hash.

mod capture;
mod commit;
mod executor;
mod intents;
mod ledger;
mod life;
mod queue;
mod reclaim;
mod runtime;

pub use crate::enzyme::{EnzymeCx, HostError};
pub use crate::episode::DECISIONS_KEPT;
pub use crate::impulse::{Impulse, InjectError, Injector, Input};
pub use runtime::{
    BeatReport, Runtime, RuntimeError, BOOT_OID, BOOT_STATES, SHUTDOWN_OID, SHUTDOWN_STATES,
};
