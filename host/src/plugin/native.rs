//! Native Rust plugins: `cdylib`s built against `cep-sdk`, loaded with
//! abi_stable.
//!
//! Loading checks, in order: the library opens; it exports the cep root
//! module; abi_stable's header is compatible; the layout of every type
//! reachable from the root module equals the host's (a plugin built against
//! a changed SDK is refused here, before any of its code runs); the root
//! module initialises. The descriptor then goes through the common
//! validation.
//!
//! Libraries are loaded once and never unloaded: a Rust library may have
//! registered thread-local destructors, and `dlclose` followed by a thread
//! exit would run code that is no longer mapped. abi_stable leaks the
//! handle for the same reason.
//!
//! The host side of the ABI is [`HOST_API`]: each function turns its
//! arguments into plain Rust data and calls [`api::Call`], the one
//! implementation of the host API. No panic crosses the boundary in either
//! direction: the SDK catches panics in plugin code, and every function here
//! catches its own.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cep_sdk::abi::{
    HostApi, HostCx, HostResult, HostSink, HostView, PluginModRef, RAwaitSpec, REpisodeSpec,
    ROpSpec, ROutcome, RValue,
};
use cep_sdk::abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use cep_sdk::abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use cep_sdk::{PluginDescriptor, Value};

use super::api::{self, ApiError, Call, PluginCtx};
use super::sink::SinkState;
use super::{AdapterCode, LoadError};
use crate::cell::Snapshot;
use crate::enzyme::EnzymeCx;
use crate::enzyme::{Enzyme, Outcome};

/// An opened native plugin library.
#[derive(Clone, Copy)]
pub struct NativeModule {
    module: PluginModRef,
}

impl NativeModule {
    /// Opens the library at `path` and reads its descriptor (not yet
    /// validated).
    pub fn open(path: &std::path::Path) -> Result<(Self, PluginDescriptor), LoadError> {
        let header = lib_header_from_path(path).map_err(library_error)?;
        let module = header
            .init_root_module::<PluginModRef>()
            .map_err(library_error)?;
        let json = (module.descriptor())();
        let descriptor = PluginDescriptor::from_json(&json).map_err(|reason| {
            LoadError::Descriptor(format!("descriptor is not valid JSON: {reason}"))
        })?;
        Ok((NativeModule { module }, descriptor))
    }

    /// The enzyme at `index` in the descriptor, bound to `plugin`'s grants.
    pub fn enzyme(&self, index: u32, plugin: Arc<PluginCtx>) -> Arc<dyn Enzyme> {
        Arc::new(NativeEnzyme {
            call: self.module.call(),
            index,
            plugin,
        })
    }

    /// The adapter at `index` in the descriptor.
    pub fn adapter(&self, index: u32) -> Arc<dyn AdapterCode> {
        Arc::new(NativeAdapter {
            module: *self,
            index,
        })
    }
}

/// A native plugin's adapter.
struct NativeAdapter {
    module: NativeModule,
    index: u32,
}

impl AdapterCode for NativeAdapter {
    fn start(&self, sink: Arc<SinkState>) -> Result<(), String> {
        let raw = HostSink(Arc::into_raw(sink) as *const c_void);
        (self.module.module.adapter_start())(&HOST_API, raw, self.index)
            .into_result()
            .map_err(RString::into_string)
    }

    fn commit(&self, beat: u64, snapshot: &Snapshot) {
        let view = ViewState { beat, snapshot };
        let raw = HostView(&view as *const ViewState<'_> as *const c_void);
        (self.module.module.adapter_commit())(&HOST_API, raw, self.index)
    }

    fn stop(&self) {
        (self.module.module.adapter_stop())(&HOST_API, self.index)
    }
}

fn library_error(e: LibraryError) -> LoadError {
    match e {
        LibraryError::OpenError { .. } => LoadError::Open(e.to_string()),
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin(format!(
            "exports neither {} (a C plugin, see include/cep.h) nor the cep root module {} (a Rust plugin built with cep_sdk::export_plugin!)",
            cep_ffi::CEP_PLUGIN_ENTRY,
            <PluginModRef as RootModule>::BASE_NAME
        )),
        LibraryError::AbiInstability(_) => LoadError::Layout(e.to_string()),
        LibraryError::InvalidAbiHeader(_) | LibraryError::IncompatibleVersionNumber { .. } => {
            LoadError::Layout(e.to_string())
        }
        other => LoadError::Init(other.to_string()),
    }
}

/// A plugin's enzyme, as the kernel sees it.
struct NativeEnzyme {
    call: extern "C" fn(&'static HostApi, HostCx, u32) -> ROutcome,
    index: u32,
    plugin: Arc<PluginCtx>,
}

impl Enzyme for NativeEnzyme {
    fn call(&self, cx: &mut EnzymeCx<'_>) -> Outcome {
        let mut call = Call::new(cx, &self.plugin);
        let raw = HostCx(&mut call as *mut Call<'_, '_> as *mut c_void);
        match (self.call)(&HOST_API, raw, self.index) {
            ROutcome::Ok => Outcome::Ok,
            ROutcome::Retry => Outcome::Retry,
            ROutcome::Fatal(m) => Outcome::Fatal(format!("plugin {}: {m}", self.plugin.name)),
            ROutcome::Panic(m) => Outcome::Fatal(format!(
                "plugin {}: enzyme {} panicked: {m}",
                self.plugin.name,
                call.enzyme()
            )),
        }
    }
}

struct ViewState<'a> {
    beat: u64,
    snapshot: &'a Snapshot,
}

// ---------------------------------------------------------------------------
// The host side of the ABI.

/// Recovers the call behind a `HostCx`.
///
/// # Safety
/// `cx` must be the pointer [`NativeEnzyme::call`] passed for the call
/// still running.
unsafe fn call_of<'x>(cx: HostCx) -> &'x mut Call<'x, 'x> {
    // SAFETY: the plugin passes back the handle the host gave it for this call, valid until the call returns.
    unsafe { &mut *(cx.0 as *mut Call<'x, 'x>) }
}

/// Runs a host function, turning a panic (a host bug) into an error
/// instead of unwinding into plugin code.
fn guard<T>(f: impl FnOnce() -> Result<T, ApiError>) -> HostResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.to_string().into()),
        Err(_) => RResult::RErr("internal host error (see the host log)".into()),
    }
}

fn guard_plain<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

fn opt_str<'s>(s: &'s ROption<RStr<'_>>) -> Option<&'s str> {
    match s {
        ROption::RSome(s) => Some(s.as_str()),
        ROption::RNone => None,
    }
}

fn opt_value(v: ROption<RValue>) -> Option<Value> {
    v.into_option().map(Value::from)
}

fn rvalue_opt(v: Option<Value>) -> ROption<RValue> {
    v.map(|v| RValue::from(&v)).into()
}

macro_rules! with_call {
    ($cx:ident, |$call:ident| $body:expr) => {
        // SAFETY: the host passed `$cx` for the call now running.
        guard(|| {
            // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
            let $call = unsafe { call_of($cx) };
            $body
        })
    };
}

extern "C" fn h_beat(cx: HostCx) -> u64 {
    // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
    guard_plain(0, || unsafe { call_of(cx) }.beat())
}

extern "C" fn h_signal(cx: HostCx) -> RString {
    // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
    guard_plain(RString::new(), || unsafe { call_of(cx) }.signal().into())
}

extern "C" fn h_target(cx: HostCx) -> ROption<RString> {
    guard_plain(ROption::RNone, || {
        // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
        unsafe { call_of(cx) }.target().map(RString::from).into()
    })
}

extern "C" fn h_payload(cx: HostCx) -> ROption<RValue> {
    guard_plain(ROption::RNone, || {
        // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
        unsafe { call_of(cx) }.payload().map(RValue::from).into()
    })
}

extern "C" fn h_enzyme(cx: HostCx) -> RString {
    // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
    guard_plain(RString::new(), || unsafe { call_of(cx) }.enzyme().into())
}

extern "C" fn h_read(cx: HostCx, path: RStr<'_>) -> HostResult<ROption<RValue>> {
    with_call!(cx, |call| call.read(path.as_str()).map(rvalue_opt))
}

extern "C" fn h_children(cx: HostCx, path: RStr<'_>) -> HostResult<RVec<RString>> {
    with_call!(cx, |call| call.children(path.as_str()).map(|names| names
        .iter()
        .map(|n| RString::from(n.as_str()))
        .collect()))
}

extern "C" fn h_exists(cx: HostCx, path: RStr<'_>) -> HostResult<bool> {
    with_call!(cx, |call| call.exists(path.as_str()))
}

extern "C" fn h_write(cx: HostCx, path: RStr<'_>, value: RValue) -> HostResult<()> {
    with_call!(cx, |call| call.write(path.as_str(), value.into()))
}

extern "C" fn h_delete(cx: HostCx, path: RStr<'_>) -> HostResult<()> {
    with_call!(cx, |call| call.delete(path.as_str()))
}

extern "C" fn h_append(cx: HostCx, path: RStr<'_>, value: RValue) -> HostResult<()> {
    with_call!(cx, |call| call.append(path.as_str(), value.into()))
}

extern "C" fn h_emit(
    cx: HostCx,
    signal: RStr<'_>,
    target: ROption<RStr<'_>>,
    payload: ROption<RValue>,
    delay: u32,
) -> HostResult<()> {
    with_call!(cx, |call| call.emit(
        signal.as_str(),
        opt_str(&target),
        opt_value(payload),
        delay
    ))
}

extern "C" fn h_bind(
    cx: HostCx,
    path: RStr<'_>,
    enzyme: RStr<'_>,
    propagate: bool,
) -> HostResult<()> {
    with_call!(cx, |call| call.bind(
        path.as_str(),
        enzyme.as_str(),
        propagate
    ))
}

extern "C" fn h_unbind(cx: HostCx, path: RStr<'_>, enzyme: RStr<'_>) -> HostResult<()> {
    with_call!(cx, |call| call.unbind(path.as_str(), enzyme.as_str()))
}

extern "C" fn h_cei(
    cx: HostCx,
    severity: RStr<'_>,
    topic: RStr<'_>,
    note: RStr<'_>,
    subject: RStr<'_>,
) -> HostResult<()> {
    with_call!(cx, |call| call.cei(
        severity.as_str(),
        topic.as_str(),
        note.as_str(),
        subject.as_str()
    ))
}

extern "C" fn h_log(cx: HostCx, level: RStr<'_>, message: RStr<'_>) {
    guard_plain((), || {
        // A refused line (over the limit) has already failed the call.
        // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
        let _ = unsafe { call_of(cx) }.log(level.as_str(), message.as_str());
    })
}

extern "C" fn h_op_start(cx: HostCx, spec: &ROpSpec) -> HostResult<RString> {
    with_call!(cx, |call| call
        .op_start(
            spec.verb.as_str(),
            spec.target.as_ref().map(|t| t.as_str()).into_option(),
            spec.mode.as_str(),
            opt_value(spec.payload.clone()),
            spec.ttl_beats,
        )
        .map(|oid| RString::from(oid.as_str())))
}

extern "C" fn h_op_state(cx: HostCx, oid: RStr<'_>, state: RStr<'_>) -> HostResult<()> {
    with_call!(cx, |call| call.op_state(oid.as_str(), state.as_str()))
}

extern "C" fn h_op_await(cx: HostCx, oid: RStr<'_>, spec: &RAwaitSpec) -> HostResult<()> {
    with_call!(cx, |call| call.op_await(
        oid.as_str(),
        spec.want.as_str(),
        spec.ttl_beats,
        spec.cont.as_str(),
        opt_value(spec.payload.clone())
    ))
}

extern "C" fn h_op_close(
    cx: HostCx,
    oid: RStr<'_>,
    status: RStr<'_>,
    summary: RStr<'_>,
) -> HostResult<()> {
    with_call!(cx, |call| call.op_close(
        oid.as_str(),
        status.as_str(),
        summary.as_str()
    ))
}

extern "C" fn h_op_snapshot(cx: HostCx, oid: RStr<'_>, label: RStr<'_>) -> HostResult<()> {
    with_call!(cx, |call| call.op_snapshot(oid.as_str(), label.as_str()))
}

extern "C" fn h_ep_start(cx: HostCx, spec: &REpisodeSpec) -> HostResult<RString> {
    with_call!(cx, |call| call
        .ep_start(
            spec.signal.as_str(),
            spec.target.as_ref().map(|t| t.as_str()).into_option(),
            spec.callback.as_str(),
            spec.rw,
            spec.cpu_budget_ns,
            spec.io_budget_bytes,
            spec.max_beats,
        )
        .map(|eid| RString::from(eid.as_str())))
}

extern "C" fn h_ep_yield(cx: HostCx) -> HostResult<()> {
    with_call!(cx, |call| call.ep_yield())
}

extern "C" fn h_ep_await(cx: HostCx, oid: RStr<'_>, want: RStr<'_>, ttl: u64) -> HostResult<()> {
    with_call!(cx, |call| call.ep_await(oid.as_str(), want.as_str(), ttl))
}

extern "C" fn h_ep_close(cx: HostCx, status: RStr<'_>, summary: RStr<'_>) -> HostResult<()> {
    with_call!(cx, |call| call.ep_close(status.as_str(), summary.as_str()))
}

extern "C" fn h_ep_cancel(cx: HostCx, eid: RStr<'_>, reason: RStr<'_>) -> HostResult<()> {
    with_call!(cx, |call| call.ep_cancel(eid.as_str(), reason.as_str()))
}

extern "C" fn h_ep_lease(cx: HostCx, path: RStr<'_>, flags: u8) -> HostResult<()> {
    with_call!(cx, |call| call.ep_lease(path.as_str(), flags))
}

extern "C" fn h_ep_release(cx: HostCx, path: RStr<'_>) -> HostResult<()> {
    with_call!(cx, |call| call.ep_release(path.as_str()))
}

extern "C" fn h_ep_check_cancel(cx: HostCx) -> bool {
    // SAFETY: the plugin passes back the `HostCx` of the call it runs in, valid until that call returns.
    guard_plain(true, || unsafe { call_of(cx) }.check_cancel())
}

extern "C" fn h_ep_account_io(cx: HostCx, bytes: u64) -> HostResult<()> {
    with_call!(cx, |call| call.account_io(bytes))
}

/// # Safety
/// `sink` must come from [`NativeModule::start_adapter`] and not be released.
unsafe fn sink_of<'x>(sink: HostSink) -> &'x SinkState {
    // SAFETY: the plugin passes back the handle the host gave it for this call, valid until the call returns.
    unsafe { &*(sink.0 as *const SinkState) }
}

extern "C" fn h_sink_inject(
    sink: HostSink,
    signal: RStr<'_>,
    target: ROption<RStr<'_>>,
    payload: ROption<RValue>,
) -> HostResult<u64> {
    match catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin passes back the sink it was started with, which outlives the adapter.
        unsafe { sink_of(sink) }.inject(signal.as_str(), opt_str(&target), opt_value(payload))
    })) {
        Ok(Ok(seq)) => RResult::ROk(seq),
        Ok(Err(e)) => RResult::RErr(e.to_string().into()),
        Err(_) => RResult::RErr("internal host error (see the host log)".into()),
    }
}

extern "C" fn h_sink_retain(sink: HostSink) {
    // SAFETY: the pointer came from `Arc::into_raw` and is still owned.
    unsafe { Arc::increment_strong_count(sink.0 as *const SinkState) }
}

extern "C" fn h_sink_release(sink: HostSink) {
    // SAFETY: as above; each retain (and the initial handover) is released once.
    unsafe { Arc::decrement_strong_count(sink.0 as *const SinkState) }
}

/// # Safety
/// `view` must be the pointer passed to the `adapter_commit` call running.
unsafe fn view_of<'x>(view: HostView) -> &'x ViewState<'x> {
    // SAFETY: the plugin passes back the handle the host gave it for this call, valid until the call returns.
    unsafe { &*(view.0 as *const ViewState<'x>) }
}

extern "C" fn h_view_beat(view: HostView) -> u64 {
    // SAFETY: the plugin passes back the view of the `adapter_commit` call running.
    unsafe { view_of(view) }.beat
}

extern "C" fn h_view_read(view: HostView, path: RStr<'_>) -> HostResult<ROption<RValue>> {
    guard(|| {
        // SAFETY: the plugin passes back the view of the `adapter_commit` call running.
        let view = unsafe { view_of(view) };
        let path = api::cell_path(path.as_str())?;
        Ok(view.snapshot.read(&path).map(RValue::from).into())
    })
}

/// The host API table handed to every native plugin.
pub static HOST_API: HostApi = HostApi {
    abi_major: cep_sdk::AbiVersion::CURRENT.major,
    abi_minor: cep_sdk::AbiVersion::CURRENT.minor,
    beat: h_beat,
    signal: h_signal,
    target: h_target,
    payload: h_payload,
    enzyme: h_enzyme,
    read: h_read,
    children: h_children,
    exists: h_exists,
    write: h_write,
    delete: h_delete,
    append: h_append,
    emit: h_emit,
    bind: h_bind,
    unbind: h_unbind,
    cei: h_cei,
    log: h_log,
    op_start: h_op_start,
    op_state: h_op_state,
    op_await: h_op_await,
    op_close: h_op_close,
    op_snapshot: h_op_snapshot,
    ep_start: h_ep_start,
    ep_yield: h_ep_yield,
    ep_await: h_ep_await,
    ep_close: h_ep_close,
    ep_cancel: h_ep_cancel,
    ep_lease: h_ep_lease,
    ep_release: h_ep_release,
    ep_check_cancel: h_ep_check_cancel,
    ep_account_io: h_ep_account_io,
    sink_inject: h_sink_inject,
    sink_retain: h_sink_retain,
    sink_release: h_sink_release,
    view_beat: h_view_beat,
    view_read: h_view_read,
};
