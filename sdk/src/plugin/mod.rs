//! Writing a cep plugin in Rust: enzymes, organ lifecycles and adapters as
//! safe traits, the host API as [`Cx`], and a [`Plugin`] builder that
//! [`crate::export_plugin!`] turns into a loadable library.
//!
//! ```ignore
//! use cep_sdk::plugin::{Cx, Plugin};
//! use cep_sdk::{EnzymeDescriptor, Outcome};
//!
//! fn build() -> Plugin {
//!     Plugin::new("hello", "0.1.0")
//!         .capability("write:/data/hello")
//!         .enzyme(EnzymeDescriptor::new("hello.say", "hello/say"), |cx: &mut Cx<'_>| {
//!             cx.write("/data/hello/said", cx.beat() as i64)
//!         })
//! }
//! cep_sdk::export_plugin!(build());
//! ```
//!
//! The code is the same whatever runs it: a panic in any of it is caught
//! before it reaches the host and becomes a `fatal` outcome.

use std::fmt;
#[cfg(not(target_arch = "wasm32"))]
use std::marker::PhantomData;
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
use abi_stable::std_types::{ROption, RStr, RString};

#[cfg(not(target_arch = "wasm32"))]
use crate::abi::{
    HostApi, HostCx, HostResult, HostSink, HostView, RAwaitSpec, REpisodeSpec, ROpSpec, RValue,
};
#[cfg(not(target_arch = "wasm32"))]
use crate::descriptor::AdapterDescriptor;
use crate::descriptor::{EnzymeDescriptor, OrganDescriptor, PluginDescriptor};
#[cfg(not(target_arch = "wasm32"))]
use crate::Severity;
use crate::{AbiVersion, Outcome, PluginKind, Value};

#[cfg(target_arch = "wasm32")]
pub mod guest;

#[cfg(target_arch = "wasm32")]
pub use guest::Cx;

/// A host call refused: the message says what and why (a CEI `usage` fact
/// has been recorded too when the refusal is a capability or scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostError {}

#[cfg(not(target_arch = "wasm32"))]
fn result<T>(r: HostResult<T>) -> Result<T, HostError> {
    r.into_result().map_err(|e| HostError(e.into_string()))
}

/// What an enzyme body may return: an [`Outcome`], or a `Result` whose
/// error becomes a `fatal` outcome (so `?` works inside enzymes).
pub trait IntoOutcome {
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for Outcome {
    fn into_outcome(self) -> Outcome {
        self
    }
}

impl<E: fmt::Display> IntoOutcome for Result<Outcome, E> {
    fn into_outcome(self) -> Outcome {
        self.unwrap_or_else(|e| Outcome::Fatal(e.to_string()))
    }
}

impl<E: fmt::Display> IntoOutcome for Result<(), E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Fatal(e.to_string()),
        }
    }
}

/// An enzyme: reacts to one impulse by reading the previous beat's state and
/// staging changes.
pub trait Enzyme: Send + Sync + 'static {
    fn call(&self, cx: &mut Cx<'_>) -> Outcome;
}

impl<F, R> Enzyme for F
where
    F: Fn(&mut Cx<'_>) -> R + Send + Sync + 'static,
    R: IntoOutcome,
{
    fn call(&self, cx: &mut Cx<'_>) -> Outcome {
        self(cx).into_outcome()
    }
}

/// An organ's lifecycle. Each method runs as an enzyme call during
/// bootstrap (construct, then validate) or shutdown (destruct); a failure
/// quarantines the organ.
pub trait Organ: Send + Sync + 'static {
    fn construct(&self, _cx: &mut Cx<'_>) -> Outcome {
        Outcome::Ok
    }
    fn validate(&self, _cx: &mut Cx<'_>) -> Outcome {
        Outcome::Ok
    }
    fn destruct(&self, _cx: &mut Cx<'_>) -> Outcome {
        Outcome::Ok
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// An adapter: turns the outside world into inputs the host captures at the
/// next beat boundary, and observes committed state. It may use its own
/// threads (with the `threads` capability); it never changes the tree.
pub trait Adapter: Send + Sync + 'static {
    /// Starts producing inputs into `sink`.
    fn start(&self, sink: Sink) -> Result<(), String>;
    /// Called on the heartbeat thread after each beat's commit.
    fn on_commit(&self, _view: &View<'_>) {}
    /// Stops producing; inputs sent afterwards are dropped and counted.
    fn stop(&self) {}
}

/// Arguments of [`Cx::op_start`].
#[derive(Debug, Clone, Default)]
pub struct OpRequest {
    pub verb: String,
    pub target: Option<String>,
    pub mode: String,
    pub payload: Option<Value>,
    pub ttl_beats: u64,
}

impl OpRequest {
    pub fn new(verb: &str) -> Self {
        OpRequest {
            verb: verb.to_owned(),
            ..Default::default()
        }
    }
}

/// Arguments of [`Cx::ep_start`].
#[derive(Debug, Clone, Default)]
pub struct EpisodeRequest {
    pub signal: String,
    pub target: Option<String>,
    /// The enzyme that runs each slice.
    pub callback: String,
    /// Read-write profile (changes need leases); default read-only.
    pub rw: bool,
    pub cpu_budget_ns: u64,
    pub io_budget_bytes: u64,
    pub max_beats: u64,
}

impl EpisodeRequest {
    pub fn new(callback: &str) -> Self {
        EpisodeRequest {
            signal: "ep/run".to_owned(),
            callback: callback.to_owned(),
            ..Default::default()
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn ropt_str(s: Option<&str>) -> ROption<RStr<'_>> {
    match s {
        Some(s) => ROption::RSome(RStr::from(s)),
        None => ROption::RNone,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn ropt_value(v: Option<Value>) -> ROption<RValue> {
    match v {
        Some(v) => ROption::RSome(RValue::from(&v)),
        None => ROption::RNone,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn value_opt(v: ROption<RValue>) -> Option<Value> {
    v.into_option().map(Value::from)
}

#[cfg(not(target_arch = "wasm32"))]
/// The host API during one enzyme call. Reads see the committed snapshot of
/// the previous beat; changes are staged and applied at commit in agenda
/// order. Paths are absolute cell paths (`/data/x`), signals relative
/// (`store/put`).
pub struct Cx<'a> {
    api: &'static HostApi,
    cx: HostCx,
    _call: PhantomData<&'a mut ()>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Cx<'_> {
    #[doc(hidden)]
    pub fn from_raw(api: &'static HostApi, cx: HostCx) -> Self {
        Cx {
            api,
            cx,
            _call: PhantomData,
        }
    }

    /// The beat being computed.
    pub fn beat(&self) -> u64 {
        (self.api.beat)(self.cx)
    }

    /// The signal of the impulse being handled.
    pub fn signal(&self) -> String {
        (self.api.signal)(self.cx).into_string()
    }

    pub fn target(&self) -> Option<String> {
        (self.api.target)(self.cx)
            .into_option()
            .map(RString::into_string)
    }

    pub fn payload(&self) -> Option<Value> {
        value_opt((self.api.payload)(self.cx))
    }

    /// This enzyme's name.
    pub fn enzyme(&self) -> String {
        (self.api.enzyme)(self.cx).into_string()
    }

    pub fn read(&self, path: &str) -> Result<Option<Value>, HostError> {
        result((self.api.read)(self.cx, path.into())).map(value_opt)
    }

    pub fn children(&self, path: &str) -> Result<Vec<String>, HostError> {
        result((self.api.children)(self.cx, path.into()))
            .map(|names| names.into_iter().map(RString::into_string).collect())
    }

    pub fn exists(&self, path: &str) -> Result<bool, HostError> {
        result((self.api.exists)(self.cx, path.into()))
    }

    pub fn write(&mut self, path: &str, value: impl Into<Value>) -> Result<(), HostError> {
        let value = RValue::from(value.into());
        result((self.api.write)(self.cx, path.into(), value))
    }

    pub fn delete(&mut self, path: &str) -> Result<(), HostError> {
        result((self.api.delete)(self.cx, path.into()))
    }

    pub fn append(&mut self, path: &str, value: impl Into<Value>) -> Result<(), HostError> {
        let value = RValue::from(value.into());
        result((self.api.append)(self.cx, path.into(), value))
    }

    /// Emits an impulse for the next beat.
    pub fn emit(
        &mut self,
        signal: &str,
        target: Option<&str>,
        payload: Option<Value>,
    ) -> Result<(), HostError> {
        self.emit_after(0, signal, target, payload)
    }

    /// Emits an impulse for `delay` beats after the next one.
    pub fn emit_after(
        &mut self,
        delay: u32,
        signal: &str,
        target: Option<&str>,
        payload: Option<Value>,
    ) -> Result<(), HostError> {
        result((self.api.emit)(
            self.cx,
            signal.into(),
            ropt_str(target),
            ropt_value(payload),
            delay,
        ))
    }

    /// Binds enzyme `enzyme` to the cell at `path` from the next beat on.
    pub fn bind(&mut self, path: &str, enzyme: &str, propagate: bool) -> Result<(), HostError> {
        result((self.api.bind)(
            self.cx,
            path.into(),
            enzyme.into(),
            propagate,
        ))
    }

    pub fn unbind(&mut self, path: &str, enzyme: &str) -> Result<(), HostError> {
        result((self.api.unbind)(self.cx, path.into(), enzyme.into()))
    }

    /// Records a CEI fact at commit.
    pub fn cei(
        &mut self,
        severity: Severity,
        topic: &str,
        note: &str,
        subject: Option<&str>,
    ) -> Result<(), HostError> {
        result((self.api.cei)(
            self.cx,
            severity.as_str().into(),
            topic.into(),
            note.into(),
            subject.unwrap_or("").into(),
        ))
    }

    /// A diagnostic line for the operator's log; never part of the state.
    pub fn log(&self, level: &str, message: &str) {
        (self.api.log)(self.cx, level.into(), message.into())
    }

    pub fn op_start(&mut self, request: &OpRequest) -> Result<String, HostError> {
        let spec = ROpSpec {
            verb: request.verb.as_str().into(),
            target: request.target.as_deref().map(RString::from).into(),
            mode: request.mode.as_str().into(),
            payload: ropt_value(request.payload.clone()),
            ttl_beats: request.ttl_beats,
        };
        result((self.api.op_start)(self.cx, &spec)).map(RString::into_string)
    }

    pub fn op_state(&mut self, oid: &str, state: &str) -> Result<(), HostError> {
        result((self.api.op_state)(self.cx, oid.into(), state.into()))
    }

    /// Arms a watcher: when `oid` reaches `want`, `cont` is emitted targeted
    /// at the dossier (or `op/tmo` after `ttl_beats`).
    pub fn op_await(
        &mut self,
        oid: &str,
        want: &str,
        ttl_beats: u64,
        cont: &str,
        payload: Option<Value>,
    ) -> Result<(), HostError> {
        let spec = RAwaitSpec {
            want: want.into(),
            ttl_beats,
            cont: cont.into(),
            payload: ropt_value(payload),
        };
        result((self.api.op_await)(self.cx, oid.into(), &spec))
    }

    /// Closes an operation with `sts:ok`, `sts:fail` or `sts:cnl`.
    pub fn op_close(&mut self, oid: &str, status: &str, summary: &str) -> Result<(), HostError> {
        result((self.api.op_close)(
            self.cx,
            oid.into(),
            status.into(),
            summary.into(),
        ))
    }

    /// Takes a labelled snapshot of operation `oid`'s execution document
    /// (written under `<data>/exec/` when the run is journaled).
    pub fn op_snapshot(&mut self, oid: &str, label: &str) -> Result<(), HostError> {
        result((self.api.op_snapshot)(self.cx, oid.into(), label.into()))
    }

    /// [`Host::op_snapshot`] of the episode this call is a slice of.
    pub fn ep_snapshot(&mut self, label: &str) -> Result<(), HostError> {
        result((self.api.op_snapshot)(self.cx, "".into(), label.into()))
    }

    pub fn ep_start(&mut self, request: &EpisodeRequest) -> Result<String, HostError> {
        let spec = REpisodeSpec {
            signal: request.signal.as_str().into(),
            target: request.target.as_deref().map(RString::from).into(),
            callback: request.callback.as_str().into(),
            rw: request.rw,
            cpu_budget_ns: request.cpu_budget_ns,
            io_budget_bytes: request.io_budget_bytes,
            max_beats: request.max_beats,
        };
        result((self.api.ep_start)(self.cx, &spec)).map(RString::into_string)
    }

    /// Ends this slice of an episode; the next one runs next beat.
    pub fn ep_yield(&mut self) -> Result<(), HostError> {
        result((self.api.ep_yield)(self.cx))
    }

    pub fn ep_await(&mut self, oid: &str, want: &str, ttl_beats: u64) -> Result<(), HostError> {
        result((self.api.ep_await)(
            self.cx,
            oid.into(),
            want.into(),
            ttl_beats,
        ))
    }

    pub fn ep_close(&mut self, status: &str, summary: &str) -> Result<(), HostError> {
        result((self.api.ep_close)(self.cx, status.into(), summary.into()))
    }

    pub fn ep_cancel(&mut self, eid: &str, reason: &str) -> Result<(), HostError> {
        result((self.api.ep_cancel)(self.cx, eid.into(), reason.into()))
    }

    /// Requests a lease (`abi::LEASE_*` flags) for this slice's episode.
    pub fn ep_lease(&mut self, path: &str, flags: u8) -> Result<(), HostError> {
        result((self.api.ep_lease)(self.cx, path.into(), flags))
    }

    pub fn ep_release(&mut self, path: &str) -> Result<(), HostError> {
        result((self.api.ep_release)(self.cx, path.into()))
    }

    /// Whether this slice should stop now (cancelled or over budget).
    pub fn check_cancel(&self) -> bool {
        (self.api.ep_check_cancel)(self.cx)
    }

    pub fn account_io(&mut self, bytes: u64) -> Result<(), HostError> {
        result((self.api.ep_account_io)(self.cx, bytes))
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// An adapter's channel into the host. Cloneable and usable from any
/// thread; inputs are captured at the next beat boundary, ordered by
/// (adapter, sequence).
pub struct Sink {
    api: &'static HostApi,
    sink: HostSink,
}

#[cfg(not(target_arch = "wasm32"))]
impl Sink {
    #[doc(hidden)]
    pub fn from_raw(api: &'static HostApi, sink: HostSink) -> Self {
        Sink { api, sink }
    }

    /// Hands one input to the host; returns its sequence number. Fails when
    /// the host's queue is full (back-pressure: try again later) or the host
    /// is shutting down (the input is dropped and counted).
    pub fn inject(
        &self,
        signal: &str,
        target: Option<&str>,
        payload: Option<Value>,
    ) -> Result<u64, HostError> {
        result((self.api.sink_inject)(
            self.sink,
            signal.into(),
            ropt_str(target),
            ropt_value(payload),
        ))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Clone for Sink {
    fn clone(&self) -> Self {
        (self.api.sink_retain)(self.sink);
        Sink {
            api: self.api,
            sink: self.sink,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Sink {
    fn drop(&mut self) {
        (self.api.sink_release)(self.sink)
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// The state a beat committed, shown to an adapter.
pub struct View<'a> {
    api: &'static HostApi,
    view: HostView,
    _call: PhantomData<&'a ()>,
}

#[cfg(not(target_arch = "wasm32"))]
impl View<'_> {
    #[doc(hidden)]
    pub fn from_raw(api: &'static HostApi, view: HostView) -> Self {
        View {
            api,
            view,
            _call: PhantomData,
        }
    }

    pub fn beat(&self) -> u64 {
        (self.api.view_beat)(self.view)
    }

    pub fn read(&self, path: &str) -> Result<Option<Value>, HostError> {
        result((self.api.view_read)(self.view, path.into())).map(value_opt)
    }
}

/// A plugin under construction: its descriptor and the code behind each
/// enzyme and adapter, in descriptor order.
pub struct Plugin {
    pub(crate) descriptor: PluginDescriptor,
    pub(crate) enzymes: Vec<Box<dyn Enzyme>>,
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) adapters: Vec<Box<dyn Adapter>>,
}

impl Plugin {
    /// The kind of plugin this build makes: a native library, or a wasm
    /// module when compiled for `wasm32`.
    #[cfg(not(target_arch = "wasm32"))]
    const KIND: PluginKind = PluginKind::Native;
    #[cfg(target_arch = "wasm32")]
    const KIND: PluginKind = PluginKind::Wasm;

    /// A plugin named `name` (a word) at semantic version `version`.
    pub fn new(name: &str, version: &str) -> Self {
        Plugin {
            descriptor: PluginDescriptor::new(name, version, Self::KIND),
            enzymes: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            adapters: Vec::new(),
        }
    }

    pub fn descriptor(&self) -> &PluginDescriptor {
        &self.descriptor
    }

    /// Requests a capability (granted only if the host configuration allows
    /// it too).
    pub fn capability(mut self, capability: &str) -> Self {
        self.descriptor.capabilities.push(capability.to_owned());
        self
    }

    pub fn enzyme(mut self, descriptor: EnzymeDescriptor, enzyme: impl Enzyme) -> Self {
        self.descriptor.enzymes.push(descriptor);
        self.enzymes.push(Box::new(enzyme));
        self
    }

    /// Declares an organ whose lifecycle enzymes are named in the descriptor.
    pub fn organ(mut self, descriptor: OrganDescriptor) -> Self {
        self.descriptor.organs.push(descriptor);
        self
    }

    /// Declares an organ whose lifecycle is `organ`: its methods become the
    /// enzymes `<kind>.ctor`, `<kind>.vald` and `<kind>.dtor`.
    pub fn organ_with(mut self, descriptor: OrganDescriptor, organ: impl Organ) -> Self {
        let organ = Arc::new(organ);
        let kind = descriptor.kind.clone();
        let name = |stage: &str| format!("{kind}.{stage}");
        let signal = |stage: &str| format!("organ/{kind}/{stage}");
        let o = organ.clone();
        self = self.enzyme(
            EnzymeDescriptor::new(&name("ctor"), &signal("ctor")),
            move |cx: &mut Cx<'_>| o.construct(cx),
        );
        let o = organ.clone();
        self = self.enzyme(
            EnzymeDescriptor::new(&name("vald"), &signal("vald")),
            move |cx: &mut Cx<'_>| o.validate(cx),
        );
        self = self.enzyme(
            EnzymeDescriptor::new(&name("dtor"), &signal("dtor")),
            move |cx: &mut Cx<'_>| organ.destruct(cx),
        );
        let descriptor = descriptor
            .constructor(&name("ctor"))
            .validator(&name("vald"))
            .destructor(&name("dtor"));
        self.organ(descriptor)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn adapter(mut self, descriptor: AdapterDescriptor, adapter: impl Adapter) -> Self {
        self.descriptor.adapters.push(descriptor);
        self.adapters.push(Box::new(adapter));
        self
    }

    /// Declares the ABI the plugin claims; only for building incompatible
    /// fixtures in tests.
    #[doc(hidden)]
    pub fn abi(mut self, major: u16, minor: u16) -> Self {
        self.descriptor.abi = AbiVersion { major, minor };
        self
    }

    /// Edits the descriptor directly; only for building malformed fixtures.
    #[doc(hidden)]
    pub fn descriptor_mut(&mut self) -> &mut PluginDescriptor {
        &mut self.descriptor
    }
}
