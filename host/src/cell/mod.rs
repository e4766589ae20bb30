//! The cell tree: nodes, copy-on-write commits, snapshots and the Merkle state
//! hash.
//!
//! Owns: the in-memory representation of cells ([`Node`]), how a batch of
//! mutations turns one committed [`Snapshot`] into the next ([`WorkTree`]),
//! the hash format ([`hash`]), and the window of recent snapshots kept for
//! `read_at` ([`History`]).
//!
//! Must not touch: beats, enzymes or anything that decides *what* to write.
//! The tree applies mutations it is handed, in the order it is handed them.

mod delta;
pub mod hash;
mod node;
mod snapshot;
mod work;

pub use cep_sdk::{Name, NameError, Path, Value, Word};
pub use delta::{diff, Change};
pub use hash::Hash;
pub use node::{Node, TreeError};
pub use snapshot::{History, Snapshot};
pub use work::{CellMut, NameOrder, WorkTree};

#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod tests;
