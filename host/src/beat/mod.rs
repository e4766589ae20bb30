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

mod context;
mod executor;
mod impulse;
mod runtime;

pub use context::{EnzymeCx, HostError};
pub use impulse::{Impulse, InjectError, Injector, Input};
pub use runtime::{
    BeatReport, Runtime, RuntimeError, BOOT_OID, BOOT_STATES, DECISIONS_KEPT, SHUTDOWN_OID,
    SHUTDOWN_STATES,
};
