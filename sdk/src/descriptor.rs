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

/// The cep plugin ABI a plugin was built for: same major as the host's and a
/// minor no newer than the host's, or the plugin is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AbiVersion {
    pub major: u16,
    pub minor: u16,
}

impl AbiVersion {
    /// The ABI this SDK (and the host built with it) speaks.
    pub const CURRENT: AbiVersion = AbiVersion { major: 1, minor: 1 };
}

impl Default for AbiVersion {
    fn default() -> Self {
        AbiVersion::CURRENT
    }
}

impl std::fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// How a plugin is built and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A stable-ABI Rust dylib (abi_stable).
    Native,
    /// A C shared library built against `include/cep.h`.
    C,
    /// A sandboxed WebAssembly module.
    Wasm,
    /// A Lua 5.4 script.
    Lua,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Native => "native",
            PluginKind::C => "c",
            PluginKind::Wasm => "wasm",
            PluginKind::Lua => "lua",
        }
    }
}

/// Declares an organ: a subtree with a lifecycle, owned by one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct OrganDescriptor {
    /// The organ kind (a word); organs are registered by (kind, version).
    pub kind: String,
    #[serde(default)]
    pub label: String,
    /// The subtree it owns, an absolute cell path.
    pub root: String,
    /// Enzyme run after every constructor; failing quarantines the organ.
    #[serde(default)]
    pub validator: Option<String>,
    /// Enzyme run at bootstrap, after the constructors of its dependencies.
    #[serde(default)]
    pub constructor: Option<String>,
    /// Enzyme run at shutdown, before the destructors of its dependencies.
    #[serde(default)]
    pub destructor: Option<String>,
    /// Organ kinds whose constructors must run first.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

impl OrganDescriptor {
    pub fn new(kind: &str, root: &str) -> Self {
        OrganDescriptor {
            kind: kind.to_owned(),
            root: root.to_owned(),
            ..Default::default()
        }
    }

    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }

    pub fn constructor(mut self, enzyme: &str) -> Self {
        self.constructor = Some(enzyme.to_owned());
        self
    }

    pub fn validator(mut self, enzyme: &str) -> Self {
        self.validator = Some(enzyme.to_owned());
        self
    }

    pub fn destructor(mut self, enzyme: &str) -> Self {
        self.destructor = Some(enzyme.to_owned());
        self
    }

    pub fn depends_on(mut self, kinds: &[&str]) -> Self {
        self.depends_on.extend(kinds.iter().map(|s| s.to_string()));
        self
    }
}

/// Declares a transport provider (filled in by federation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct TransportDescriptor {
    /// A word naming the transport.
    pub name: String,
    /// The address scheme it serves (a word, e.g. `tcp`).
    pub scheme: String,
    #[serde(default)]
    pub label: String,
}

/// Declares an adapter: code that turns the outside world into captured
/// inputs and observes committed state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct AdapterDescriptor {
    /// A word; also the injection source its inputs are ordered by.
    pub name: String,
    #[serde(default)]
    pub label: String,
}

impl AdapterDescriptor {
    pub fn new(name: &str) -> Self {
        AdapterDescriptor {
            name: name.to_owned(),
            ..Default::default()
        }
    }
}

/// Declares a plugin. Immutable once loaded; validated by the host (one
/// function for every kind) before anything of the plugin runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PluginDescriptor {
    /// A word.
    pub name: String,
    /// Semantic version (`1.2.3`).
    pub version: String,
    #[serde(default)]
    pub abi: AbiVersion,
    pub kind: PluginKind,
    #[serde(default)]
    pub organs: Vec<OrganDescriptor>,
    #[serde(default)]
    pub enzymes: Vec<EnzymeDescriptor>,
    #[serde(default)]
    pub transports: Vec<TransportDescriptor>,
    #[serde(default)]
    pub adapters: Vec<AdapterDescriptor>,
    /// Capabilities requested: `write:<path>`, `emit:<signal prefix>`,
    /// `net`, `fs:<dir>`, `threads`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl PluginDescriptor {
    pub fn new(name: &str, version: &str, kind: PluginKind) -> Self {
        PluginDescriptor {
            name: name.to_owned(),
            version: version.to_owned(),
            abi: AbiVersion::CURRENT,
            kind,
            organs: Vec::new(),
            enzymes: Vec::new(),
            transports: Vec::new(),
            adapters: Vec::new(),
            capabilities: Vec::new(),
        }
    }

    /// The descriptor as canonical JSON (how descriptors cross binary
    /// boundaries and how they are hashed).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("descriptors always serialize")
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}
