//! Descriptors: the immutable, plain-data declarations a plugin makes.
//!
//! They hold text as written by the author; the host validates them (one
//! function for every plugin kind) before anything of the plugin runs.

use serde::{Deserialize, Serialize};

/// How an enzyme's signal pattern must cover an impulse's signal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// The pattern must match the whole signal.
    #[default]
    Exact,
    /// The pattern must match a leading part of the signal.
    Prefix,
}

/// Behaviour flags of an enzyme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct EnzymeFlags {
    /// Running it twice on the same input has the effect of running it once.
    pub idempotent: bool,
    /// It keeps mutable state between calls: the host never runs two of its
    /// calls at once and always runs them in agenda order.
    pub stateful: bool,
    /// It emits impulses.
    pub emits: bool,
}

/// Declares one enzyme: what it reacts to and how it is ordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct EnzymeDescriptor {
    /// The enzyme's name: a cell name (1–64 visible ASCII bytes, no `/`).
    pub name: String,
    /// A human-readable label.
    #[serde(default)]
    pub label: String,
    /// Signal pattern: `/`-separated segments, `*` for exactly one segment,
    /// `**` for any number (including none).
    pub signal: String,
    #[serde(default)]
    pub match_kind: MatchKind,
    /// Enzymes this one must run before.
    #[serde(default)]
    pub before: Vec<String>,
    /// Enzymes this one must run after.
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub flags: EnzymeFlags,
    /// Path scopes it reads (advisory).
    #[serde(default)]
    pub reads: Vec<String>,
    /// Path scopes it may write; empty means unrestricted. A staged change
    /// outside every scope is refused.
    #[serde(default)]
    pub writes: Vec<String>,
}

impl EnzymeDescriptor {
    /// A descriptor with a name and a signal pattern, everything else default.
    pub fn new(name: &str, signal: &str) -> Self {
        EnzymeDescriptor {
            name: name.to_owned(),
            signal: signal.to_owned(),
            ..Default::default()
        }
    }

    pub fn prefix(mut self) -> Self {
        self.match_kind = MatchKind::Prefix;
        self
    }

    pub fn before(mut self, names: &[&str]) -> Self {
        self.before.extend(names.iter().map(|s| s.to_string()));
        self
    }

    pub fn after(mut self, names: &[&str]) -> Self {
        self.after.extend(names.iter().map(|s| s.to_string()));
        self
    }

    pub fn writes(mut self, scopes: &[&str]) -> Self {
        self.writes.extend(scopes.iter().map(|s| s.to_string()));
        self
    }

    pub fn stateful(mut self) -> Self {
        self.flags.stateful = true;
        self
    }

    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }
}
