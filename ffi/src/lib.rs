//! `cep-ffi`: the `#[repr(C)]` ABI that C plugins are written against.
//!
//! Owns every type and constant that crosses the C boundary; `include/cep.h`
//! is generated from this crate by cbindgen (`cargo run -p xtask -- header`)
//! and a test fails when the committed header is stale. It contains no host
//! logic: the host implements the operations (`host/src/plugin/c.rs`), this
//! crate only describes their shape.
//!
//! The names are the C names (`cep_host_api`, `cep_str`, ...) so that the
//! header reads like hand-written C; hence the lint allowance below. The
//! doc comments are the header's comments: they are written for a C
//! programmer who never reads Rust.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

/// Major version of the cep plugin ABI. A plugin built for another major is
/// refused at load, with a message naming both versions.
pub const CEP_ABI_MAJOR: u32 = 1;
/// Minor version of the cep plugin ABI. A plugin built for a newer minor
/// than the host's is refused; an older minor keeps working.
pub const CEP_ABI_MINOR: u32 = 1;

/// Result of a host function, and of a plugin's enzyme or adapter function.
/// Zero or positive is success; negative is an error.
pub type cep_status = i32;

/// Success.
pub const CEP_OK: i32 = 0;
/// Returned by an enzyme only: run me again next beat with the same impulse
/// (bounded by the host's retry limit).
pub const CEP_RETRY: i32 = 1;
/// An argument is malformed: a path, signal, name, value or struct. The
/// message (`last_error`) names the argument and the text.
pub const CEP_ERR_INVALID: i32 = -1;
/// The plugin lacks the capability the operation needs. The host has also
/// recorded a `usage` fact `plugin:capability`.
pub const CEP_ERR_DENIED: i32 = -2;
/// The host refused the operation in this state (for example
/// `ep_yield` outside an episode, or a write outside the enzyme's scope).
pub const CEP_ERR_REFUSED: i32 = -3;
/// An adapter's input queue is full: back off and offer the input again.
pub const CEP_ERR_FULL: i32 = -4;
/// Shutdown has begun: the input was dropped (and counted).
pub const CEP_ERR_CLOSED: i32 = -5;
/// A host bug; details are in the host's log.
pub const CEP_ERR_INTERNAL: i32 = -6;
/// Returned by a plugin: the enzyme or adapter failed. Any negative value
/// means failure; this one is the conventional choice.
pub const CEP_ERR_FAILED: i32 = -7;

/// `cep_value.kind`: the cell holds no value (or there is no payload).
pub const CEP_VALUE_NONE: u32 = 0;
/// `cep_value.kind`: null.
pub const CEP_VALUE_NULL: u32 = 1;
/// `cep_value.kind`: `as_bool` holds the value.
pub const CEP_VALUE_BOOL: u32 = 2;
/// `cep_value.kind`: `as_i64` holds the value.
pub const CEP_VALUE_I64: u32 = 3;
/// `cep_value.kind`: `as_f64` holds the value (NaN is stored canonical).
pub const CEP_VALUE_F64: u32 = 4;
/// `cep_value.kind`: `data`/`len` hold UTF-8 text (not NUL-terminated).
pub const CEP_VALUE_TEXT: u32 = 5;
/// `cep_value.kind`: `data`/`len` hold bytes.
pub const CEP_VALUE_BYTES: u32 = 6;

/// `cep_enzyme_desc.flags`: the signal pattern matches a leading part of
/// the signal (otherwise the whole signal).
pub const CEP_ENZYME_PREFIX: u32 = 1;
/// `cep_enzyme_desc.flags`: running it twice equals running it once.
pub const CEP_ENZYME_IDEMPOTENT: u32 = 2;
/// `cep_enzyme_desc.flags`: it keeps state between calls; the host never
/// runs two of its calls at once and keeps agenda order.
pub const CEP_ENZYME_STATEFUL: u32 = 4;
/// `cep_enzyme_desc.flags`: it emits impulses.
pub const CEP_ENZYME_EMITS: u32 = 8;

/// `ep_lease` flag: lock the cell's store (its children).
pub const CEP_LEASE_STORE: u32 = 1;
/// `ep_lease` flag: lock the cell's value.
pub const CEP_LEASE_DATA: u32 = 2;
/// `ep_lease` flag: include every descendant.
pub const CEP_LEASE_DESCENDANTS: u32 = 4;

/// Text as pointer + length: UTF-8, not NUL-terminated, and it must not
/// contain NUL bytes. `{NULL, 0}` is the empty string, which optional
/// arguments (a target, a subject) use for "none". Initialise a constant
/// one with `CEP_STR("text")`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_str {
    pub ptr: *const c_char,
    pub len: usize,
}

/// A value. `kind` is one of `CEP_VALUE_*`; only the field that kind names
/// is meaningful. Text and bytes are `data` + `len`; when the host returns
/// a value, the bytes are the host's and stay valid until the enzyme (or
/// adapter callback) returns; when the plugin passes one, the host copies
/// it before the call returns. Build one with `cep_i64(42)`,
/// `cep_text("on", 2)`, ... (see the end of this header).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_value {
    pub kind: u32,
    pub as_bool: bool,
    pub as_i64: i64,
    pub as_f64: f64,
    pub data: *const u8,
    pub len: usize,
}

/// The first member of every struct that may grow. Set it with
/// `CEP_HEADER(type)`: the ABI version the plugin was compiled against and
/// `sizeof(type)`. A newer host reads only the fields `struct_size` covers,
/// so an older plugin keeps working; a size smaller than ABI 1.0's is
/// refused. In an array, every element must carry the same header.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_header {
    pub abi_major: u32,
    pub abi_minor: u32,
    pub struct_size: u32,
}

/// One enzyme call in progress, and the plugin's capability token for it:
/// the host issues it to one plugin for one call, and checks every
/// operation made through it against that plugin's grants. Valid only
/// until the enzyme function returns; never keep it.
pub struct cep_call {
    _opaque: [u8; 0],
}

/// An adapter's input sink, and the adapter's capability token: the host
/// checks each input's signal against the plugin's `emit:` grants. Valid
/// from `start` until `stop` returns; it may be used from any thread.
pub struct cep_sink {
    _opaque: [u8; 0],
}

/// The committed state after a beat, for an adapter's `commit` function.
/// Valid only until that function returns.
pub struct cep_view {
    _opaque: [u8; 0],
}

/// What `op_start` opens: an operation dossier.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_op_spec {
    pub header: cep_header,
    /// The verb, a signal such as `index/rebuild`.
    pub verb: cep_str,
    /// The cell it concerns, or empty.
    pub target: cep_str,
    /// Free text; empty means the host's default.
    pub mode: cep_str,
    /// A payload, or NULL.
    pub payload: *const cep_value,
    /// Beats before the operation times out; 0 means never.
    pub ttl_beats: u64,
}

/// What `op_await` arms: when operation `oid` reaches status or state
/// `want`, the host emits `cont` with `payload`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_await_spec {
    pub header: cep_header,
    /// A status (`sts:ok`, `sts:fail`, `sts:cnl`) or a state (`ist:...`).
    pub want: cep_str,
    /// Beats to wait; 0 means forever.
    pub ttl_beats: u64,
    /// The continuation signal.
    pub cont: cep_str,
    /// A payload for the continuation, or NULL.
    pub payload: *const cep_value,
}

/// What `ep_start` starts: an episode, a long task run in slices.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_episode_spec {
    pub header: cep_header,
    /// The signal each slice is dispatched with.
    pub signal: cep_str,
    /// The cell it concerns, or empty.
    pub target: cep_str,
    /// The enzyme that runs each slice.
    pub callback: cep_str,
    /// True: read-write slices (on the beat thread); false: read-only.
    pub rw: bool,
    /// CPU budget per slice in nanoseconds; 0 means the host's default.
    pub cpu_budget_ns: u64,
    /// I/O budget per slice in bytes; 0 means unlimited.
    pub io_budget_bytes: u64,
    /// Beats before the episode is cancelled; 0 means never.
    pub max_beats: u64,
}

/// The host API: one table of plain operations, the same list every plugin
/// kind is given. The host passes it to `cep_plugin_v1` and to every plugin
/// function; it is valid for the life of the process.
///
/// Conventions:
/// - Paths are absolute cell paths (`/data/thermo/last`); signals are
///   relative (`thermo/reading`).
/// - Reads see the state committed by the previous beat; writes, deletes,
///   appends and emits are staged and take effect at the end of the beat
///   (or never, if the enzyme fails).
/// - Every text, value and array the host returns is owned by the host and
///   stays valid until the enzyme (or adapter callback) returns. Copy what
///   you keep.
/// - Every text, value and spec the plugin passes is only read during the
///   call; the host copies what it keeps.
/// - A function returning `cep_status` returns `CEP_OK` or a negative
///   `CEP_ERR_*`; `last_error` then gives the message.
#[repr(C)]
pub struct cep_host_api {
    pub header: cep_header,
    /// The message of the last failed host call made with `call`, or empty.
    pub last_error: unsafe extern "C" fn(call: *mut cep_call) -> cep_str,
    /// Sets the message the host reports when the enzyme returns a negative
    /// status (the outcome is `fatal` with this message). Copied.
    pub set_error: unsafe extern "C" fn(call: *mut cep_call, message: cep_str),
    /// The beat being computed.
    pub beat: unsafe extern "C" fn(call: *mut cep_call) -> u64,
    /// The impulse's signal (`thermo/reading`).
    pub signal: unsafe extern "C" fn(call: *mut cep_call) -> cep_str,
    /// The impulse's target cell, or empty.
    pub target: unsafe extern "C" fn(call: *mut cep_call) -> cep_str,
    /// The impulse's payload into `*out` (`CEP_VALUE_NONE` when absent).
    pub payload: unsafe extern "C" fn(call: *mut cep_call, out: *mut cep_value) -> cep_status,
    /// The name of the enzyme being run.
    pub enzyme: unsafe extern "C" fn(call: *mut cep_call) -> cep_str,
    /// The value of the cell at `path` into `*out` (`CEP_VALUE_NONE` when the
    /// cell is absent or holds no value).
    pub read:
        unsafe extern "C" fn(call: *mut cep_call, path: cep_str, out: *mut cep_value) -> cep_status,
    /// The names of the children of `path`, in order: `*names` gets an array
    /// of `*count` texts.
    pub children: unsafe extern "C" fn(
        call: *mut cep_call,
        path: cep_str,
        names: *mut *const cep_str,
        count: *mut usize,
    ) -> cep_status,
    /// Whether a cell exists at `path`, into `*out`.
    pub exists:
        unsafe extern "C" fn(call: *mut cep_call, path: cep_str, out: *mut bool) -> cep_status,
    /// Stages a write of `*value` at `path`. Needs `write:<path>`.
    pub write: unsafe extern "C" fn(
        call: *mut cep_call,
        path: cep_str,
        value: *const cep_value,
    ) -> cep_status,
    /// Stages the deletion of `path` and its descendants (`delete` in the
    /// host API list; renamed because `delete` is a C++ keyword). Needs
    /// `write:<path>`.
    pub remove: unsafe extern "C" fn(call: *mut cep_call, path: cep_str) -> cep_status,
    /// Stages a new last child of the list at `path` holding `*value`. Needs
    /// `write:<path>`.
    pub append: unsafe extern "C" fn(
        call: *mut cep_call,
        path: cep_str,
        value: *const cep_value,
    ) -> cep_status,
    /// Emits an impulse for beat + 1 + `delay`: `signal`, `target` (or
    /// empty), `payload` (or NULL). Needs `emit:<signal>`.
    pub emit: unsafe extern "C" fn(
        call: *mut cep_call,
        signal: cep_str,
        target: cep_str,
        payload: *const cep_value,
        delay: u32,
    ) -> cep_status,
    /// Binds enzyme `enzyme` to the cell `path` (`propagate`: also to its
    /// descendants). Needs `write:<path>`.
    pub bind: unsafe extern "C" fn(
        call: *mut cep_call,
        path: cep_str,
        enzyme: cep_str,
        propagate: bool,
    ) -> cep_status,
    /// Removes a binding made with `bind`. Needs `write:<path>`.
    pub unbind:
        unsafe extern "C" fn(call: *mut cep_call, path: cep_str, enzyme: cep_str) -> cep_status,
    /// Records a CEI fact: `severity` is `debug`, `info`, `usage`, `warn`,
    /// `crit` or `fatal`; `subject` is a cell path or empty.
    pub cei: unsafe extern "C" fn(
        call: *mut cep_call,
        severity: cep_str,
        topic: cep_str,
        note: cep_str,
        subject: cep_str,
    ) -> cep_status,
    /// A log line for the operator (`error`, `warn`, `info`, `debug`); never
    /// part of the state.
    pub log: unsafe extern "C" fn(call: *mut cep_call, level: cep_str, message: cep_str),
    /// Opens an operation; its id goes to `*oid`.
    pub op_start: unsafe extern "C" fn(
        call: *mut cep_call,
        spec: *const cep_op_spec,
        oid: *mut cep_str,
    ) -> cep_status,
    /// Appends state `state` (`ist:...`) to operation `oid`'s history.
    pub op_state:
        unsafe extern "C" fn(call: *mut cep_call, oid: cep_str, state: cep_str) -> cep_status,
    /// Arms a watcher on operation `oid`. Needs `emit:<cont>`.
    pub op_await: unsafe extern "C" fn(
        call: *mut cep_call,
        oid: cep_str,
        spec: *const cep_await_spec,
    ) -> cep_status,
    /// Closes operation `oid` with `status` (`sts:ok`, `sts:fail`, `sts:cnl`).
    pub op_close: unsafe extern "C" fn(
        call: *mut cep_call,
        oid: cep_str,
        status: cep_str,
        summary: cep_str,
    ) -> cep_status,
    /// Starts an episode; its id goes to `*eid`.
    pub ep_start: unsafe extern "C" fn(
        call: *mut cep_call,
        spec: *const cep_episode_spec,
        eid: *mut cep_str,
    ) -> cep_status,
    /// Ends the current slice; the episode continues next beat.
    pub ep_yield: unsafe extern "C" fn(call: *mut cep_call) -> cep_status,
    /// Parks the episode until operation `oid` reaches `want` (or `ttl`
    /// beats pass).
    pub ep_await: unsafe extern "C" fn(
        call: *mut cep_call,
        oid: cep_str,
        want: cep_str,
        ttl: u64,
    ) -> cep_status,
    /// Closes the current episode with `status`.
    pub ep_close:
        unsafe extern "C" fn(call: *mut cep_call, status: cep_str, summary: cep_str) -> cep_status,
    /// Cancels episode `eid` with `reason`.
    pub ep_cancel:
        unsafe extern "C" fn(call: *mut cep_call, eid: cep_str, reason: cep_str) -> cep_status,
    /// Requests a lease on `path` for the current episode (`CEP_LEASE_*`
    /// flags). Needs `write:<path>`.
    pub ep_lease:
        unsafe extern "C" fn(call: *mut cep_call, path: cep_str, flags: u32) -> cep_status,
    /// Releases a lease.
    pub ep_release: unsafe extern "C" fn(call: *mut cep_call, path: cep_str) -> cep_status,
    /// Whether the current episode has been asked to stop.
    pub ep_check_cancel: unsafe extern "C" fn(call: *mut cep_call) -> bool,
    /// Charges `bytes` of I/O to the current episode's budget.
    pub ep_account_io: unsafe extern "C" fn(call: *mut cep_call, bytes: u64) -> cep_status,
    /// Offers one input from an adapter (any thread). The host captures it
    /// at the next beat boundary, in canonical order; the adapter never
    /// changes the tree itself. Returns `CEP_ERR_FULL` when the input queue
    /// is full (back off and offer it again), `CEP_ERR_CLOSED` once shutdown
    /// has begun (the input is dropped and counted), `CEP_ERR_DENIED`
    /// without `emit:<signal>`.
    pub sink_inject: unsafe extern "C" fn(
        sink: *mut cep_sink,
        signal: cep_str,
        target: cep_str,
        payload: *const cep_value,
    ) -> cep_status,
    /// The beat whose committed state `view` shows.
    pub view_beat: unsafe extern "C" fn(view: *mut cep_view) -> u64,
    /// The committed value at `path` into `*out` (`CEP_VALUE_NONE` if
    /// absent).
    pub view_read:
        unsafe extern "C" fn(view: *mut cep_view, path: cep_str, out: *mut cep_value) -> cep_status,
    /// Takes a labelled snapshot of operation `oid`'s execution document
    /// (`<data>/exec/<protocol>/<uid>/snap-<label>.json` when the run is
    /// journaled). An empty `oid` means the episode this call is a slice
    /// of. Added in ABI 1.1: check `struct_size` before calling it.
    pub op_snapshot:
        unsafe extern "C" fn(call: *mut cep_call, oid: cep_str, label: cep_str) -> cep_status,
}

/// An enzyme function: runs once per matched impulse, on a host thread.
/// Return `CEP_OK`, `CEP_RETRY`, or a negative status (after `set_error`)
/// for a `fatal` outcome. `user` is the descriptor's `user` pointer.
pub type cep_enzyme_fn = Option<
    unsafe extern "C" fn(
        host: *const cep_host_api,
        call: *mut cep_call,
        user: *mut c_void,
    ) -> cep_status,
>;

/// Declares one enzyme.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_enzyme_desc {
    pub header: cep_header,
    /// A cell name, unique in the host (`thermo.reading`).
    pub name: cep_str,
    pub label: cep_str,
    /// Signal pattern: `/`-separated segments, `*` for one segment, `**`
    /// for any number.
    pub signal: cep_str,
    /// `CEP_ENZYME_*` bits.
    pub flags: u32,
    /// Enzymes this one must run before / after (arrays of names).
    pub before: *const cep_str,
    pub before_count: usize,
    pub after: *const cep_str,
    pub after_count: usize,
    /// Path scopes it reads (advisory) and may write (empty: anywhere its
    /// grants allow).
    pub reads: *const cep_str,
    pub reads_count: usize,
    pub writes: *const cep_str,
    pub writes_count: usize,
    /// The function; must not be NULL.
    pub call: cep_enzyme_fn,
    /// Passed back to `call` untouched.
    pub user: *mut c_void,
}

/// Declares one organ: a subtree the plugin owns, with its lifecycle.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_organ_desc {
    pub header: cep_header,
    /// The organ kind, a word (`thermo`).
    pub kind: cep_str,
    pub label: cep_str,
    /// The absolute path of the organ's root cell.
    pub root: cep_str,
    /// Names of enzymes of this plugin run at boot (constructor, then
    /// validator) and at shutdown (destructor); each may be empty.
    pub validator: cep_str,
    pub constructor: cep_str,
    pub destructor: cep_str,
    /// Organ kinds that must be constructed first.
    pub depends_on: *const cep_str,
    pub depends_on_count: usize,
}

/// Declares one transport provider (used by federation).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_transport_desc {
    pub header: cep_header,
    pub name: cep_str,
    pub scheme: cep_str,
    pub label: cep_str,
}

/// Starts an adapter: keep `sink` and start producing inputs (usually on a
/// thread of your own). Return `CEP_OK`, or a negative status: the adapter
/// is then not run and a `crit` fact says so.
pub type cep_adapter_start_fn = Option<
    unsafe extern "C" fn(
        host: *const cep_host_api,
        sink: *mut cep_sink,
        user: *mut c_void,
    ) -> cep_status,
>;

/// Called on the beat thread after each commit with the committed state.
/// Keep it short: the next beat waits for it.
pub type cep_adapter_commit_fn =
    Option<unsafe extern "C" fn(host: *const cep_host_api, view: *mut cep_view, user: *mut c_void)>;

/// Stops an adapter: when it returns, the adapter no longer uses its sink
/// (join your threads here).
pub type cep_adapter_stop_fn =
    Option<unsafe extern "C" fn(host: *const cep_host_api, user: *mut c_void)>;

/// Declares one adapter: code that touches the outside world. Its inputs
/// are the only nondeterministic boundary of a world: the host captures
/// them at beat boundaries and the journal records them, so a replay feeds
/// the same inputs at the same beats. Needs the `threads` capability.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_adapter_desc {
    pub header: cep_header,
    /// A word, unique in the plugin; inputs are captured with this source.
    pub name: cep_str,
    pub label: cep_str,
    /// Must not be NULL.
    pub start: cep_adapter_start_fn,
    /// May be NULL.
    pub commit: cep_adapter_commit_fn,
    /// Must not be NULL.
    pub stop: cep_adapter_stop_fn,
    /// Passed back to the three functions untouched.
    pub user: *mut c_void,
}

/// What a plugin is: returned by its `cep_plugin_v1` function. The host
/// reads it once at load (and copies it) and validates it before running
/// anything of the plugin; it must stay valid (a `static const`) because
/// the host keeps the function pointers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cep_plugin_desc {
    pub header: cep_header,
    /// The plugin's name, a word (1–11 of `a-z 0-9 : _ - .`).
    pub name: cep_str,
    /// Semantic version (`1.2.0`).
    pub version: cep_str,
    pub enzymes: *const cep_enzyme_desc,
    pub enzyme_count: usize,
    pub organs: *const cep_organ_desc,
    pub organ_count: usize,
    pub transports: *const cep_transport_desc,
    pub transport_count: usize,
    pub adapters: *const cep_adapter_desc,
    pub adapter_count: usize,
    /// Capabilities requested (`write:/data/thermo`, `emit:thermo`,
    /// `threads`, ...); the host grants those its configuration covers.
    pub capabilities: *const cep_str,
    pub capability_count: usize,
}

/// The function every C plugin exports under the name `cep_plugin_v1`
/// (see `CEP_PLUGIN_ENTRY`). The host calls it once, at load; it returns
/// the plugin's descriptor, or NULL to refuse loading.
pub type cep_plugin_entry_fn =
    Option<unsafe extern "C" fn(host: *const cep_host_api) -> *const cep_plugin_desc>;

/// The name of the entry point a C plugin exports.
pub const CEP_PLUGIN_ENTRY: &str = "cep_plugin_v1";

// SAFETY: a `cep_str` or `cep_value` is a view of bytes nobody writes
// while it is shared (cep.h: the host's stay valid and unchanged until the
// call returns, a plugin's descriptor texts for the library's life); the
// views are only ever read, from any thread. (The same for the four.)
unsafe impl Send for cep_str {}
// SAFETY: shared read-only, as for `Send` above.
unsafe impl Sync for cep_str {}
// SAFETY: as for `cep_str` above.
unsafe impl Send for cep_value {}
// SAFETY: shared read-only, as for `cep_str`.
unsafe impl Sync for cep_value {}
