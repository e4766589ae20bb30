//! The stable ABI between the host and native Rust plugins, built on
//! `abi_stable`.
//!
//! Plugin authors never touch this module: they use [`crate::plugin`] and
//! [`crate::export_plugin!`]. It is the wire under them, public because the
//! host implements the other end.
//!
//! A plugin library exports one root module ([`PluginMod`]). When the host
//! loads it, abi_stable compares the layout of every type reachable from the
//! root module — this module's types, the host API table included — with the
//! host's own, so a plugin built against a changed SDK is refused before any
//! of its code runs. The cep ABI version travels separately in the
//! descriptor and is checked by the host's validation.
//!
//! Ownership: every `RString`/`RVec`/`RValue` passed by value moves to the
//! callee; `RStr` arguments are borrowed for the duration of the call only.

use std::ffi::c_void;

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

use crate::{Outcome, Value};

/// A value crossing the boundary.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum RValue {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    Text(RString),
    Bytes(RVec<u8>),
}

impl From<&Value> for RValue {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => RValue::Null,
            Value::Bool(v) => RValue::Bool(*v),
            Value::I64(v) => RValue::I64(*v),
            Value::F64(v) => RValue::F64(*v),
            Value::Text(v) => RValue::Text(RString::from(&**v)),
            Value::Bytes(v) => RValue::Bytes(RVec::from(&**v)),
        }
    }
}

impl From<Value> for RValue {
    fn from(value: Value) -> Self {
        RValue::from(&value)
    }
}

impl From<RValue> for Value {
    fn from(value: RValue) -> Self {
        match value {
            RValue::Null => Value::Null,
            RValue::Bool(v) => Value::Bool(v),
            RValue::I64(v) => Value::I64(v),
            RValue::F64(v) => Value::F64(v),
            RValue::Text(v) => Value::text(&v),
            RValue::Bytes(v) => Value::bytes(&v),
        }
    }
}

/// How an enzyme call ended, as it crosses the boundary.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum ROutcome {
    Ok,
    Retry,
    /// The enzyme returned a failure with this message.
    Fatal(RString),
    /// The enzyme panicked; the panic was caught inside the plugin and this
    /// is its message.
    Panic(RString),
}

impl From<Outcome> for ROutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok => ROutcome::Ok,
            Outcome::Retry => ROutcome::Retry,
            Outcome::Fatal(m) => ROutcome::Fatal(m.into()),
        }
    }
}

/// The host's state for one enzyme call; opaque to the plugin, valid only
/// during the call it was passed to.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct HostCx(pub *mut c_void);

/// An adapter's input channel; valid until released with
/// [`HostApi::sink_release`]. Usable from any thread.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct HostSink(pub *const c_void);

// SAFETY: the host's sink behind the pointer is `Send + Sync` (an injector
// behind an `Arc`); the pointer itself is only an address.
unsafe impl Send for HostSink {}
// SAFETY: as for `Send` above: the sink is `Sync`.
unsafe impl Sync for HostSink {}

/// The committed state an adapter observes after a beat; valid only during
/// the `adapter_commit` call it was passed to.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct HostView(pub *const c_void);

/// A host call's result: the error is a message naming what was refused.
pub type HostResult<T> = RResult<T, RString>;

/// Arguments of `op_start`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct ROpSpec {
    pub verb: RString,
    pub target: ROption<RString>,
    pub mode: RString,
    pub payload: ROption<RValue>,
    pub ttl_beats: u64,
}

/// Arguments of `op_await`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct RAwaitSpec {
    pub want: RString,
    pub ttl_beats: u64,
    pub cont: RString,
    pub payload: ROption<RValue>,
}

/// Arguments of `ep_start`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct REpisodeSpec {
    pub signal: RString,
    pub target: ROption<RString>,
    pub callback: RString,
    /// `true`: read-write profile (needs leases to change cells).
    pub rw: bool,
    pub cpu_budget_ns: u64,
    pub io_budget_bytes: u64,
    pub max_beats: u64,
}

/// Lease flags for `ep_lease`.
pub const LEASE_STORE: u8 = 1;
pub const LEASE_DATA: u8 = 2;
pub const LEASE_DESCENDANTS: u8 = 4;

/// The host API: one table of plain operations, the same list every plugin
/// kind is given (DESIGN.md §9). Paths and signals are text in the cell
/// path syntax; reads see the committed snapshot of the previous beat;
/// changes are staged and applied at commit.
#[repr(C)]
#[derive(StableAbi)]
pub struct HostApi {
    pub abi_major: u16,
    pub abi_minor: u16,
    // The call being run.
    pub beat: extern "C" fn(HostCx) -> u64,
    pub signal: extern "C" fn(HostCx) -> RString,
    pub target: extern "C" fn(HostCx) -> ROption<RString>,
    pub payload: extern "C" fn(HostCx) -> ROption<RValue>,
    pub enzyme: extern "C" fn(HostCx) -> RString,
    // Reads.
    pub read: extern "C" fn(HostCx, RStr<'_>) -> HostResult<ROption<RValue>>,
    pub children: extern "C" fn(HostCx, RStr<'_>) -> HostResult<RVec<RString>>,
    pub exists: extern "C" fn(HostCx, RStr<'_>) -> HostResult<bool>,
    // Staged changes.
    pub write: extern "C" fn(HostCx, RStr<'_>, RValue) -> HostResult<()>,
    pub delete: extern "C" fn(HostCx, RStr<'_>) -> HostResult<()>,
    pub append: extern "C" fn(HostCx, RStr<'_>, RValue) -> HostResult<()>,
    /// signal, target, payload, delay in beats after the next one.
    pub emit:
        extern "C" fn(HostCx, RStr<'_>, ROption<RStr<'_>>, ROption<RValue>, u32) -> HostResult<()>,
    /// path, enzyme, propagate.
    pub bind: extern "C" fn(HostCx, RStr<'_>, RStr<'_>, bool) -> HostResult<()>,
    pub unbind: extern "C" fn(HostCx, RStr<'_>, RStr<'_>) -> HostResult<()>,
    /// severity (`fatal`, `crit`, `usage`, `warn`, `debug`), topic, note,
    /// subject path (empty: none).
    pub cei: extern "C" fn(HostCx, RStr<'_>, RStr<'_>, RStr<'_>, RStr<'_>) -> HostResult<()>,
    /// level (`error`, `warn`, `info`, `debug`), message. Never part of the
    /// state.
    pub log: extern "C" fn(HostCx, RStr<'_>, RStr<'_>),
    // Operations.
    pub op_start: extern "C" fn(HostCx, &ROpSpec) -> HostResult<RString>,
    pub op_state: extern "C" fn(HostCx, RStr<'_>, RStr<'_>) -> HostResult<()>,
    pub op_await: extern "C" fn(HostCx, RStr<'_>, &RAwaitSpec) -> HostResult<()>,
    /// oid, status (`sts:ok|fail|cnl`), summary.
    pub op_close: extern "C" fn(HostCx, RStr<'_>, RStr<'_>, RStr<'_>) -> HostResult<()>,
    // Episodes.
    pub ep_start: extern "C" fn(HostCx, &REpisodeSpec) -> HostResult<RString>,
    pub ep_yield: extern "C" fn(HostCx) -> HostResult<()>,
    /// oid, wanted state, ttl in beats (0: none).
    pub ep_await: extern "C" fn(HostCx, RStr<'_>, RStr<'_>, u64) -> HostResult<()>,
    pub ep_close: extern "C" fn(HostCx, RStr<'_>, RStr<'_>) -> HostResult<()>,
    /// eid, reason.
    pub ep_cancel: extern "C" fn(HostCx, RStr<'_>, RStr<'_>) -> HostResult<()>,
    /// path, `LEASE_*` flags.
    pub ep_lease: extern "C" fn(HostCx, RStr<'_>, u8) -> HostResult<()>,
    pub ep_release: extern "C" fn(HostCx, RStr<'_>) -> HostResult<()>,
    pub ep_check_cancel: extern "C" fn(HostCx) -> bool,
    pub ep_account_io: extern "C" fn(HostCx, u64) -> HostResult<()>,
    // Adapters.
    /// signal, target, payload; returns the input's sequence number.
    pub sink_inject:
        extern "C" fn(HostSink, RStr<'_>, ROption<RStr<'_>>, ROption<RValue>) -> HostResult<u64>,
    pub sink_retain: extern "C" fn(HostSink),
    pub sink_release: extern "C" fn(HostSink),
    pub view_beat: extern "C" fn(HostView) -> u64,
    pub view_read: extern "C" fn(HostView, RStr<'_>) -> HostResult<ROption<RValue>>,
    /// oid (empty: the current episode), label: a labelled snapshot of the
    /// operation's execution document.
    pub op_snapshot: extern "C" fn(HostCx, RStr<'_>, RStr<'_>) -> HostResult<()>,
}

/// The root module a native plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin's descriptor as JSON.
    pub descriptor: extern "C" fn() -> RString,
    /// Runs enzyme number `index` (its position in the descriptor).
    pub call: extern "C" fn(&'static HostApi, HostCx, u32) -> ROutcome,
    /// Starts adapter number `index`, handing it its input sink (which it
    /// now owns and must release).
    pub adapter_start: extern "C" fn(&'static HostApi, HostSink, u32) -> HostResult<()>,
    /// Shows adapter `index` the state committed by a beat.
    pub adapter_commit: extern "C" fn(&'static HostApi, HostView, u32),
    /// Stops adapter `index`; it must not inject afterwards.
    #[sabi(last_prefix_field)]
    pub adapter_stop: extern "C" fn(&'static HostApi, u32),
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "cep_plugin";
    const NAME: &'static str = "cep_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The exported symbol abi_stable looks up in a plugin library (what
/// `#[export_root_module]` would name it; a test keeps the two equal).
pub const ROOT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    #[test]
    fn root_symbol_matches_abi_stable() {
        assert_eq!(
            super::ROOT_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
