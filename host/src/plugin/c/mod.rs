//! C plugins: shared libraries built against `include/cep.h`, loaded with
//! libloading.
//!
//! Loading, in order: the library opens; it exports `cep_plugin_v1`; the
//! entry returns a descriptor (not NULL); every struct's header names ABI
//! major 1 and a `struct_size` covering ABI 1.0's fields; every text is
//! UTF-8 without NUL bytes; every required function pointer is set. The
//! descriptor is then copied into a [`PluginDescriptor`] and goes through
//! the common validation. Nothing of the plugin but its entry point runs
//! before that.
//!
//! Libraries are never unloaded (see `native.rs`): the handle is leaked.
//!
//! The host side of the ABI is [`C_HOST_API`]. Each function converts its
//! arguments to plain Rust data and calls [`api::Call`], the one
//! implementation of the host API, and never unwinds into C: a host panic
//! becomes `CEP_ERR_INTERNAL`. What the host returns lives in the call's
//! arena until the enzyme returns (the ownership rule of `cep.h`).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cep_ffi::*;
use cep_sdk::descriptor::{AdapterDescriptor, EnzymeFlags, MatchKind, TransportDescriptor};
use cep_sdk::{AbiVersion, EnzymeDescriptor, OrganDescriptor, PluginDescriptor, PluginKind, Value};

use super::api::{self, ApiError, Call, PluginCtx};
use super::sink::{SinkError, SinkState};
use super::validate::DescriptorError;
use super::{AdapterCode, LoadError};
use crate::beat::EnzymeCx;
use crate::cell::Snapshot;
use crate::enzyme::{Enzyme, Outcome};

mod descriptor;
mod host_api;

use descriptor::*;
pub use host_api::C_HOST_API;

type EnzymeFn = unsafe extern "C" fn(*const cep_host_api, *mut cep_call, *mut c_void) -> i32;
type StartFn = unsafe extern "C" fn(*const cep_host_api, *mut cep_sink, *mut c_void) -> i32;
type CommitFn = unsafe extern "C" fn(*const cep_host_api, *mut cep_view, *mut c_void);
type StopFn = unsafe extern "C" fn(*const cep_host_api, *mut c_void);

/// A pointer the plugin chose (`user`), handed back untouched. The plugin
/// answers for what it points to, including thread safety.
#[derive(Clone, Copy)]
struct UserPtr(*mut c_void);
// SAFETY: the host never dereferences it; it only hands it back to the
// plugin's own functions, and cep.h makes the plugin answer for using it
// from the threads the host calls on.
unsafe impl Send for UserPtr {}
// SAFETY: as for `Send` above: the plugin answers for its pointer.
unsafe impl Sync for UserPtr {}

/// An opened C plugin: the function pointers of its descriptor.
pub struct CModule {
    enzymes: Vec<(EnzymeFn, UserPtr)>,
    adapters: Vec<CAdapterFns>,
}

#[derive(Clone, Copy)]
struct CAdapterFns {
    start: StartFn,
    commit: Option<CommitFn>,
    stop: StopFn,
    user: UserPtr,
}

/// Whether the library at `path` exports the C entry point. The library
/// stays loaded (see the module docs).
pub fn is_c_plugin(path: &std::path::Path) -> Result<bool, LoadError> {
    let lib = open(path)?;
    // SAFETY: only the symbol's presence is checked.
    let found = unsafe { lib.get::<*const c_void>(CEP_PLUGIN_ENTRY.as_bytes()) }.is_ok();
    std::mem::forget(lib);
    Ok(found)
}

fn open(path: &std::path::Path) -> Result<libloading::Library, LoadError> {
    // SAFETY: loading a library runs its initialisers; plugins are trusted
    // native code (docs/plugins.md).
    unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open(e.to_string()))
}

impl CModule {
    /// Opens the C plugin at `path` and reads its descriptor (checked for
    /// layout, not yet validated).
    pub fn open(path: &std::path::Path) -> Result<(Arc<Self>, PluginDescriptor), LoadError> {
        let lib = open(path)?;
        // SAFETY: `cep.h` declares the entry with this signature.
        let entry = unsafe {
            lib.get::<unsafe extern "C" fn(*const cep_host_api) -> *const cep_plugin_desc>(
                CEP_PLUGIN_ENTRY.as_bytes(),
            )
        }
        .map(|symbol| *symbol)
        .map_err(|_| LoadError::NotAPlugin(format!("no entry symbol {CEP_PLUGIN_ENTRY} exported")));
        std::mem::forget(lib);
        let entry = entry?;
        // SAFETY: the entry point of a plugin built against cep.h.
        let desc = unsafe { entry(&C_HOST_API) };
        if desc.is_null() {
            return Err(LoadError::Init(format!(
                "{CEP_PLUGIN_ENTRY} returned NULL (the plugin refused to load)"
            )));
        }
        // SAFETY: a non-null descriptor from the entry point; every read
        // below is bounded by the headers it carries.
        unsafe { read_plugin(desc) }
    }

    /// The enzyme at `index` in the descriptor, bound to `plugin`'s grants.
    pub fn enzyme(&self, index: usize, plugin: Arc<PluginCtx>) -> Arc<dyn Enzyme> {
        let (call, user) = self.enzymes[index];
        Arc::new(CEnzyme { call, user, plugin })
    }

    /// The adapter at `index` in the descriptor.
    pub fn adapter(&self, index: usize) -> Arc<dyn AdapterCode> {
        Arc::new(CAdapter {
            fns: self.adapters[index],
            sink: Mutex::new(None),
            stopped: AtomicBool::new(false),
        })
    }
}

// ---------------------------------------------------------------------------
// Enzymes.

/// A C plugin's enzyme, as the kernel sees it.
struct CEnzyme {
    call: EnzymeFn,
    user: UserPtr,
    plugin: Arc<PluginCtx>,
}

/// The host's side of one enzyme call: what a `cep_call *` points to.
struct CCall<'c, 'a> {
    call: Call<'c, 'a>,
    /// Values and texts returned to the plugin, alive until it returns.
    arena: Arena,
    last_error: Option<Box<str>>,
    failure: Option<String>,
}

/// What the host lends to C code for the length of one callback.
#[derive(Default)]
struct Arena {
    values: Vec<Value>,
    texts: Vec<Box<str>>,
    lists: Vec<Box<[cep_str]>>,
}

impl Arena {
    fn text(&mut self, text: String) -> cep_str {
        let text = text.into_boxed_str();
        let out = cep_str {
            ptr: text.as_ptr() as *const _,
            len: text.len(),
        };
        self.texts.push(text);
        out
    }

    /// A `cep_value` for `value`, its bytes kept alive in the arena.
    fn value(&mut self, value: Option<Value>) -> cep_value {
        let mut out = cep_value {
            kind: CEP_VALUE_NONE,
            as_bool: false,
            as_i64: 0,
            as_f64: 0.0,
            data: std::ptr::null(),
            len: 0,
        };
        let Some(value) = value else { return out };
        match &value {
            Value::Null => out.kind = CEP_VALUE_NULL,
            Value::Bool(b) => (out.kind, out.as_bool) = (CEP_VALUE_BOOL, *b),
            Value::I64(i) => (out.kind, out.as_i64) = (CEP_VALUE_I64, *i),
            Value::F64(f) => (out.kind, out.as_f64) = (CEP_VALUE_F64, *f),
            Value::Text(t) => {
                // A short text lives inside the `Value`, which moves; the
                // arena's own copy of it does not.
                let text = self.text(t.to_string());
                (out.kind, out.data, out.len) = (CEP_VALUE_TEXT, text.ptr as *const u8, text.len);
                return out;
            }
            Value::Bytes(b) => {
                (out.kind, out.data, out.len) = (CEP_VALUE_BYTES, b.as_ptr(), b.len())
            }
        }
        if out.len > 0 {
            // The bytes' shared allocation does not move while the arena
            // holds the value.
            self.values.push(value);
        }
        out
    }
}

impl Enzyme for CEnzyme {
    fn call(&self, cx: &mut EnzymeCx<'_>) -> Outcome {
        let mut state = CCall {
            call: Call::new(cx, &self.plugin),
            arena: Arena::default(),
            last_error: None,
            failure: None,
        };
        let raw = &mut state as *mut CCall<'_, '_> as *mut cep_call;
        // SAFETY: a function the plugin's validated descriptor declared;
        // `raw` stays valid for the whole call.
        let code = unsafe { (self.call)(&C_HOST_API, raw, self.user.0) };
        match code {
            CEP_OK => Outcome::Ok,
            CEP_RETRY => Outcome::Retry,
            code => {
                let enzyme = state.call.enzyme().to_owned();
                let message = state.failure.take().unwrap_or_else(|| {
                    if code < 0 {
                        "failed without a message".to_owned()
                    } else {
                        "returned an unknown status".to_owned()
                    }
                });
                Outcome::Fatal(format!(
                    "plugin {}: enzyme {enzyme}: {message} (status {code})",
                    self.plugin.name
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Adapters.

struct SinkPtr(*const SinkState);
// SAFETY: it points to a `SinkState` (which is `Sync`) that the adapter
// owns and keeps alive until after the plugin's `adapter_stop` returns.
unsafe impl Send for SinkPtr {}
const _: fn() = || {
    fn shared_across_threads<T: Sync>() {}
    shared_across_threads::<SinkState>();
};

/// A C plugin's adapter.
struct CAdapter {
    fns: CAdapterFns,
    /// The sink handed to `start`, released after `stop` returns.
    sink: Mutex<Option<SinkPtr>>,
    stopped: AtomicBool,
}

/// What a `cep_view *` points to.
struct CView<'a> {
    beat: u64,
    snapshot: &'a Snapshot,
    arena: Mutex<Arena>,
}

impl AdapterCode for CAdapter {
    fn start(&self, sink: Arc<SinkState>) -> Result<(), String> {
        let raw = Arc::into_raw(sink);
        // SAFETY: a function of the validated descriptor; `raw` stays valid
        // until `stop` returns (we hold the reference).
        let code = unsafe { (self.fns.start)(&C_HOST_API, raw as *mut cep_sink, self.fns.user.0) };
        if code < 0 {
            // The plugin keeps nothing when start fails.
            // SAFETY: from `Arc::into_raw` above, released once.
            drop(unsafe { Arc::from_raw(raw) });
            return Err(format!("start returned status {code}"));
        }
        *self.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(SinkPtr(raw));
        Ok(())
    }

    fn commit(&self, beat: u64, snapshot: &Snapshot) {
        let Some(commit) = self.fns.commit else {
            return;
        };
        let view = CView {
            beat,
            snapshot,
            arena: Mutex::new(Arena::default()),
        };
        let raw = &view as *const CView<'_> as *mut cep_view;
        // SAFETY: as in `start`; `raw` is valid for the call.
        unsafe { commit(&C_HOST_API, raw, self.fns.user.0) }
    }

    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(SinkPtr(raw)) = self.sink.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        // SAFETY: as in `start`.
        unsafe { (self.fns.stop)(&C_HOST_API, self.fns.user.0) };
        // After stop returns the adapter no longer uses the sink.
        // SAFETY: from `Arc::into_raw` in `start`, released once.
        drop(unsafe { Arc::from_raw(raw) });
    }
}
