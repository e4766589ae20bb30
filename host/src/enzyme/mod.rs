//! Enzymes: descriptors, the registry, bindings and resolution order.
//!
//! Owns: which enzymes exist ([`Registry`]), which cells they are bound to,
//! and, for one impulse, which enzymes run and in what order
//! ([`Registry::resolve`]). Must not touch the tree or run callbacks: the
//! heartbeat does that with the agenda this module computes.

mod context;
mod pattern;
mod registry;

pub use context::{EnzymeCx, HostError};
pub(crate) use context::{Op, Staged};

pub use pattern::SignalPattern;
pub use registry::{Binding, EnzymeId, EnzymeSpec, RegisterError, Registry, ResolveKey};

pub use cep_sdk::Outcome;

/// The callback behind an enzyme. It reads the committed snapshot of the
/// previous beat through `cx` and stages intents; it never sees other
/// enzymes' intents of the same beat.
pub trait Enzyme: Send + Sync + 'static {
    fn call(&self, cx: &mut EnzymeCx<'_>) -> Outcome;

    /// A lane this enzyme shares with others: the threaded executor runs
    /// every call of every enzyme of one lane on one worker, in agenda order
    /// (as it does for the calls of one stateful enzyme). For enzymes that
    /// share state they cannot lock in a fixed order, such as a world's one
    /// Lua VM. Default: none.
    fn lane(&self) -> Option<&'static str> {
        None
    }
}

impl<F> Enzyme for F
where
    F: Fn(&mut EnzymeCx<'_>) -> Outcome + Send + Sync + 'static,
{
    fn call(&self, cx: &mut EnzymeCx<'_>) -> Outcome {
        self(cx)
    }
}
