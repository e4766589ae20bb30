//! The host API, declared once: every operation a plugin can ask of the
//! host, its arguments, its result, the capability it needs, and its name
//! in each binding.
//!
//! The host implements each operation once (`cep-host`'s `plugin::api`);
//! the four bindings — the abi_stable table of native plugins
//! ([`crate::abi::HostApi`]), the C table (`include/cep.h`), the wasm
//! imports of module `cep` and the Lua `cep` table — carry it to plugins.
//! The wasm import list and its link-time capability gate are read from
//! this list; a test checks that every other binding has exactly the
//! operations listed here, under the names listed here, and that each
//! refuses a plugin lacking the capability this list names.
//!
//! Adding an operation: an entry here, its implementation in
//! `plugin::api::Call`, its line in each binding, and a test
//! (`docs/plugins.md`, "Adding a host operation").

/// What an operation needs the plugin to hold. The path or signal itself
/// is checked on every call; a binding that links functions (wasm) leaves
/// out those whose need the plugin cannot meet at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Reading, operations and episodes: every plugin.
    Nothing,
    /// A `write:<path>` capability covering the path.
    Write,
    /// An `emit:<signal>` capability covering the signal.
    Emit,
}

impl Needs {
    /// The capability in the words of the docs and error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Needs::Nothing => "nothing",
            Needs::Write => "a write:<path> capability",
            Needs::Emit => "an emit:<signal> capability",
        }
    }
}

/// The kind of an argument or result, as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Unit,
    Bool,
    U64,
    U32,
    /// The `LEASE_*` bits.
    Flags,
    Text,
    /// Text that may be absent (empty in C and wasm).
    OptText,
    Value,
    OptValue,
    Names,
    OpSpec,
    AwaitSpec,
    EpisodeSpec,
    /// A Lua function.
    Function,
}

/// What the operation is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// An enzyme call (every binding).
    Call,
    /// An adapter's sink (native and C plugins run adapters).
    Sink,
    /// The snapshot an adapter is shown at commit.
    View,
}

/// One operation of the host API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// Its name in the host (`plugin::api::Call`) and, unless renamed
    /// below, in every binding.
    pub name: &'static str,
    pub doc: &'static str,
    pub on: On,
    pub args: &'static [(&'static str, Type)],
    pub result: Type,
    pub needs: Needs,
    /// Its name in each binding; `None`: the binding does not carry it.
    pub native: Option<&'static str>,
    pub c: Option<&'static str>,
    pub wasm: Option<&'static str>,
    pub lua: Option<&'static str>,
}

/// A binding of the host API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Native,
    C,
    Wasm,
    Lua,
}

impl Operation {
    /// Its name in `binding`, if the binding carries it.
    pub fn name_in(&self, binding: Binding) -> Option<&'static str> {
        match binding {
            Binding::Native => self.native,
            Binding::C => self.c,
            Binding::Wasm => self.wasm,
            Binding::Lua => self.lua,
        }
    }

    const fn new(name: &'static str, doc: &'static str) -> Self {
        Operation {
            name,
            doc,
            on: On::Call,
            args: &[],
            result: Type::Unit,
            needs: Needs::Nothing,
            native: Some(name),
            c: Some(name),
            wasm: Some(name),
            lua: Some(name),
        }
    }

    const fn args(mut self, args: &'static [(&'static str, Type)]) -> Self {
        self.args = args;
        self
    }

    const fn returns(mut self, result: Type) -> Self {
        self.result = result;
        self
    }

    const fn needs(mut self, needs: Needs) -> Self {
        self.needs = needs;
        self
    }

    /// An adapter operation: native and C plugins only, under these names.
    const fn adapter(mut self, on: On, name: &'static str) -> Self {
        self.on = on;
        self.native = Some(name);
        self.c = Some(name);
        self.wasm = None;
        self.lua = None;
        self
    }

    /// A convenience of the Lua binding, made of the operations above.
    const fn only_lua(mut self) -> Self {
        self.native = None;
        self.c = None;
        self.wasm = None;
        self
    }

    const fn native(mut self, name: Option<&'static str>) -> Self {
        self.native = name;
        self
    }

    const fn c(mut self, name: Option<&'static str>) -> Self {
        self.c = name;
        self
    }

    const fn wasm(mut self, name: Option<&'static str>) -> Self {
        self.wasm = name;
        self
    }

    const fn lua(mut self, name: Option<&'static str>) -> Self {
        self.lua = name;
        self
    }
}

use Type::*;

const fn op(name: &'static str, doc: &'static str) -> Operation {
    Operation::new(name, doc)
}

/// Every operation of the host API, in the order the docs list them.
pub const OPERATIONS: &[Operation] = &[
    op("beat", "The beat being computed.").returns(U64),
    op("signal", "The signal of the impulse being handled.").returns(Text),
    op("target", "The impulse's target cell, if any.").returns(OptText),
    op("payload", "The impulse's payload, if any.").returns(OptValue),
    op("enzyme", "The name of the enzyme being called.").returns(Text),
    op(
        "last_error",
        "The message of the last call the host refused (bindings that return a status code).",
    )
    .returns(Text)
    .native(None)
    .wasm(Some("error"))
    .lua(None),
    op(
        "set_error",
        "The message the call fails with, when it returns an error status (C).",
    )
    .args(&[("message", Text)])
    .native(None)
    .wasm(None)
    .lua(None),
    op(
        "read",
        "The value at a path in the previous beat's snapshot.",
    )
    .args(&[("path", Text)])
    .returns(OptValue),
    op("children", "The names of a cell's children, in name order.")
        .args(&[("path", Text)])
        .returns(Names),
    op("exists", "Whether a cell exists.")
        .args(&[("path", Text)])
        .returns(Bool),
    op("write", "Sets a cell's value at commit.")
        .args(&[("path", Text), ("value", Value)])
        .needs(Needs::Write),
    op("delete", "Deletes a cell and its subtree at commit.")
        .args(&[("path", Text)])
        .needs(Needs::Write)
        .c(Some("remove")),
    op(
        "append",
        "Appends a child with the next index name at commit.",
    )
    .args(&[("path", Text), ("value", Value)])
    .needs(Needs::Write),
    op("emit", "Emits an impulse for a later beat.")
        .args(&[
            ("signal", Text),
            ("target", OptText),
            ("payload", OptValue),
            ("delay", U32),
        ])
        .needs(Needs::Emit),
    op("bind", "Binds an enzyme to a cell from the next beat on.")
        .args(&[("path", Text), ("enzyme", Text), ("propagate", Bool)])
        .needs(Needs::Write),
    op(
        "unbind",
        "Unbinds an enzyme from a cell from the next beat on.",
    )
    .args(&[("path", Text), ("enzyme", Text)])
    .needs(Needs::Write),
    op("cei", "Records a CEI fact.").args(&[
        ("severity", Text),
        ("topic", Text),
        ("note", Text),
        ("subject", OptText),
    ]),
    op("log", "A line in the host's log (never in the state).")
        .args(&[("level", Text), ("message", Text)]),
    op("op_start", "Starts an operation; returns its id.")
        .args(&[("spec", OpSpec)])
        .returns(Text),
    op("op_state", "Moves an operation to a state.").args(&[("oid", Text), ("state", Text)]),
    op(
        "op_await",
        "Arms a watcher on an operation; its continuation is an emission.",
    )
    .args(&[("oid", Text), ("spec", AwaitSpec)])
    .needs(Needs::Emit),
    op("op_close", "Closes an operation.").args(&[
        ("oid", Text),
        ("status", Text),
        ("summary", Text),
    ]),
    op(
        "op_snapshot",
        "Records a labelled snapshot entry in an operation's history (Lua: of its own episode).",
    )
    .args(&[("oid", Text), ("label", Text)]),
    op(
        "ep_snapshot",
        "Lua: `op_snapshot` of the calling slice's own episode.",
    )
    .args(&[("label", Text)])
    .only_lua(),
    op(
        "delay",
        "Lua: runs a function some beats later, on the plugin's own private signal.",
    )
    .args(&[("beats", U32), ("callback", Function)])
    .returns(U64)
    .only_lua(),
    op("ep_start", "Starts an episode; returns its id.")
        .args(&[("spec", EpisodeSpec)])
        .returns(Text),
    op(
        "ep_yield",
        "Ends this slice; the episode runs again next beat.",
    ),
    op(
        "ep_await",
        "Ends this slice; the episode resumes when an operation reaches a state.",
    )
    .args(&[("oid", Text), ("want", Text), ("ttl_beats", U64)]),
    op("ep_close", "Ends the episode.").args(&[("status", Text), ("summary", Text)]),
    op("ep_cancel", "Cancels an episode.").args(&[("eid", Text), ("reason", Text)]),
    op("ep_lease", "Takes a lease over a subtree for this episode.")
        .args(&[("path", Text), ("flags", Flags)])
        .needs(Needs::Write),
    op("ep_release", "Gives up this episode's lease over a path.")
        .args(&[("path", Text)])
        .needs(Needs::Write),
    op(
        "check_cancel",
        "Whether this slice's episode was asked to stop.",
    )
    .returns(Bool)
    .native(Some("ep_check_cancel"))
    .c(Some("ep_check_cancel"))
    .lua(Some("ep_check_cancel")),
    op(
        "account_io",
        "Accounts IO bytes against the episode's budget.",
    )
    .args(&[("bytes", U64)])
    .native(Some("ep_account_io"))
    .c(Some("ep_account_io"))
    .lua(Some("ep_account_io")),
    op(
        "inject",
        "Queues an impulse from an adapter for the next beat.",
    )
    .args(&[("signal", Text), ("target", OptText), ("payload", OptValue)])
    .returns(U64)
    .adapter(On::Sink, "sink_inject"),
    op("retain", "Keeps a sink alive past the adapter's stop.")
        .adapter(On::Sink, "sink_retain")
        .c(None),
    op("release", "Lets a retained sink go.")
        .adapter(On::Sink, "sink_release")
        .c(None),
    op("view_beat", "The beat an adapter is shown.")
        .returns(U64)
        .adapter(On::View, "view_beat"),
    op("view_read", "A value in the snapshot an adapter is shown.")
        .args(&[("path", Text)])
        .returns(OptValue)
        .adapter(On::View, "view_read"),
];

/// The operation called `name` in `binding`.
pub fn in_binding(binding: Binding, name: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|op| op.name_in(binding) == Some(name))
}
