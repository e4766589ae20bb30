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

type EnzymeFn = unsafe extern "C" fn(*const cep_host_api, *mut cep_call, *mut c_void) -> i32;
type StartFn = unsafe extern "C" fn(*const cep_host_api, *mut cep_sink, *mut c_void) -> i32;
type CommitFn = unsafe extern "C" fn(*const cep_host_api, *mut cep_view, *mut c_void);
type StopFn = unsafe extern "C" fn(*const cep_host_api, *mut c_void);

/// A pointer the plugin chose (`user`), handed back untouched. The plugin
/// answers for what it points to, including thread safety.
#[derive(Clone, Copy)]
struct UserPtr(*mut c_void);
unsafe impl Send for UserPtr {}
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
// Reading the descriptor.

/// The size of each struct in ABI 1.0: a plugin's `struct_size` may be
/// larger (a newer minor), never smaller.
fn min_size<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// Checks the header of a struct named `what` and returns its size.
fn check_header<T>(header: &cep_header, what: &str) -> Result<usize, LoadError> {
    if header.abi_major != CEP_ABI_MAJOR {
        return Err(LoadError::Invalid(DescriptorError::Abi {
            found: abi(header),
            host: AbiVersion::CURRENT,
            reason: "the major versions differ",
        }));
    }
    if header.struct_size < min_size::<T>() {
        return Err(LoadError::Layout(format!(
            "{what}.struct_size is {} bytes, but ABI {}.0 needs at least {} (was it built against a different cep.h?)",
            header.struct_size,
            CEP_ABI_MAJOR,
            min_size::<T>()
        )));
    }
    Ok(header.struct_size as usize)
}

fn abi(header: &cep_header) -> AbiVersion {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    AbiVersion {
        major: clamp(header.abi_major),
        minor: clamp(header.abi_minor),
    }
}

/// Reads `count` structs of type `T` at `base`, each starting with a
/// header; the stride is the first header's `struct_size`.
///
/// # Safety
/// `base` points to `count` such structs (or `count` is 0).
unsafe fn read_array<T: Copy>(
    base: *const T,
    count: usize,
    what: &str,
    header_of: impl Fn(&T) -> cep_header,
) -> Result<Vec<T>, LoadError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if base.is_null() {
        return Err(LoadError::Descriptor(format!(
            "{what} is NULL but its count is {count}"
        )));
    }
    // SAFETY: the header is the first member of every element.
    let first = unsafe { *(base as *const cep_header) };
    let stride = check_header::<T>(&first, &format!("{what}[0]"))?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: element i starts `i * stride` bytes in and has at least
        // `size_of::<T>()` bytes (checked above).
        let item =
            unsafe { std::ptr::read_unaligned((base as *const u8).add(i * stride) as *const T) };
        let header = header_of(&item);
        if header.struct_size as usize != stride || header.abi_major != first.abi_major {
            return Err(LoadError::Layout(format!(
                "{what}[{i}] has header {}.{} size {}, unlike {what}[0] ({}.{} size {})",
                header.abi_major,
                header.abi_minor,
                header.struct_size,
                first.abi_major,
                first.abi_minor,
                first.struct_size
            )));
        }
        out.push(item);
    }
    Ok(out)
}

/// Copies a descriptor text: UTF-8 without NUL bytes.
///
/// # Safety
/// `s` points to `s.len` readable bytes (or is `{NULL, 0}`).
unsafe fn text(s: cep_str, what: &str) -> Result<String, LoadError> {
    if s.len == 0 {
        return Ok(String::new());
    }
    if s.ptr.is_null() {
        return Err(LoadError::Descriptor(format!(
            "{what}: NULL text with length {}",
            s.len
        )));
    }
    // SAFETY: as the caller promises.
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr as *const u8, s.len) };
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(LoadError::Descriptor(format!(
            "{what}: contains a NUL byte at offset {at} (texts are pointer + length, without NUL)"
        )));
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|e| LoadError::Descriptor(format!("{what}: not UTF-8 ({e})")))
}

/// Copies an array of texts.
///
/// # Safety
/// `base` points to `count` `cep_str`s, each valid for [`text`].
unsafe fn texts(base: *const cep_str, count: usize, what: &str) -> Result<Vec<String>, LoadError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if base.is_null() {
        return Err(LoadError::Descriptor(format!(
            "{what} is NULL but its count is {count}"
        )));
    }
    (0..count)
        // SAFETY: as the caller promises.
        .map(|i| unsafe { text(*base.add(i), &format!("{what}[{i}]")) })
        .collect()
}

fn required<F>(f: Option<F>, what: &str) -> Result<F, LoadError> {
    f.ok_or_else(|| LoadError::Descriptor(format!("{what} is NULL")))
}

/// # Safety
/// `desc` is the non-null result of a plugin's entry point.
unsafe fn read_plugin(
    desc: *const cep_plugin_desc,
) -> Result<(Arc<CModule>, PluginDescriptor), LoadError> {
    // SAFETY: the header comes first; the rest is read once its size is
    // known to cover ABI 1.0's fields.
    let header = unsafe { *(desc as *const cep_header) };
    check_header::<cep_plugin_desc>(&header, "cep_plugin_desc")?;
    let d = unsafe { std::ptr::read_unaligned(desc) };
    let mut out = PluginDescriptor::new(
        &unsafe { text(d.name, "cep_plugin_desc.name") }?,
        &unsafe { text(d.version, "cep_plugin_desc.version") }?,
        PluginKind::C,
    );
    out.abi = abi(&header);
    out.capabilities = unsafe {
        texts(
            d.capabilities,
            d.capability_count,
            "cep_plugin_desc.capabilities",
        )
    }?;
    let mut module = CModule {
        enzymes: Vec::new(),
        adapters: Vec::new(),
    };
    let enzymes = unsafe { read_array(d.enzymes, d.enzyme_count, "enzymes", |e| e.header) }?;
    for (i, e) in enzymes.iter().enumerate() {
        let at = |field: &str| format!("enzymes[{i}].{field}");
        let flag = |bit: u32| e.flags & bit != 0;
        out.enzymes.push(EnzymeDescriptor {
            name: unsafe { text(e.name, &at("name")) }?,
            label: unsafe { text(e.label, &at("label")) }?,
            signal: unsafe { text(e.signal, &at("signal")) }?,
            match_kind: if flag(CEP_ENZYME_PREFIX) {
                MatchKind::Prefix
            } else {
                MatchKind::Exact
            },
            before: unsafe { texts(e.before, e.before_count, &at("before")) }?,
            after: unsafe { texts(e.after, e.after_count, &at("after")) }?,
            flags: EnzymeFlags {
                idempotent: flag(CEP_ENZYME_IDEMPOTENT),
                stateful: flag(CEP_ENZYME_STATEFUL),
                emits: flag(CEP_ENZYME_EMITS),
            },
            reads: unsafe { texts(e.reads, e.reads_count, &at("reads")) }?,
            writes: unsafe { texts(e.writes, e.writes_count, &at("writes")) }?,
        });
        module
            .enzymes
            .push((required(e.call, &at("call"))?, UserPtr(e.user)));
    }
    let organs = unsafe { read_array(d.organs, d.organ_count, "organs", |o| o.header) }?;
    for (i, o) in organs.iter().enumerate() {
        let at = |field: &str| format!("organs[{i}].{field}");
        let optional = |s: cep_str, field: &str| -> Result<Option<String>, LoadError> {
            let t = unsafe { text(s, &at(field)) }?;
            Ok((!t.is_empty()).then_some(t))
        };
        out.organs.push(OrganDescriptor {
            kind: unsafe { text(o.kind, &at("kind")) }?,
            label: unsafe { text(o.label, &at("label")) }?,
            root: unsafe { text(o.root, &at("root")) }?,
            validator: optional(o.validator, "validator")?,
            constructor: optional(o.constructor, "constructor")?,
            destructor: optional(o.destructor, "destructor")?,
            depends_on: unsafe { texts(o.depends_on, o.depends_on_count, &at("depends_on")) }?,
        });
    }
    let transports =
        unsafe { read_array(d.transports, d.transport_count, "transports", |t| t.header) }?;
    for (i, t) in transports.iter().enumerate() {
        let at = |field: &str| format!("transports[{i}].{field}");
        out.transports.push(TransportDescriptor {
            name: unsafe { text(t.name, &at("name")) }?,
            scheme: unsafe { text(t.scheme, &at("scheme")) }?,
            label: unsafe { text(t.label, &at("label")) }?,
        });
    }
    let adapters = unsafe { read_array(d.adapters, d.adapter_count, "adapters", |a| a.header) }?;
    for (i, a) in adapters.iter().enumerate() {
        let at = |field: &str| format!("adapters[{i}].{field}");
        out.adapters.push(AdapterDescriptor {
            name: unsafe { text(a.name, &at("name")) }?,
            label: unsafe { text(a.label, &at("label")) }?,
        });
        module.adapters.push(CAdapterFns {
            start: required(a.start, &at("start"))?,
            commit: a.commit,
            stop: required(a.stop, &at("stop"))?,
            user: UserPtr(a.user),
        });
    }
    Ok((Arc::new(module), out))
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
unsafe impl Send for SinkPtr {}

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

// ---------------------------------------------------------------------------
// The host side of the ABI.

fn code_of(e: &ApiError) -> i32 {
    match e {
        ApiError::Invalid { .. } => CEP_ERR_INVALID,
        ApiError::Denied { .. } => CEP_ERR_DENIED,
        ApiError::Refused(_) | ApiError::Limit { .. } => CEP_ERR_REFUSED,
    }
}

/// Borrows a text argument.
///
/// # Safety
/// `s` points to `s.len` readable bytes (or is `{NULL, 0}`).
unsafe fn arg<'s>(s: cep_str, what: &'static str) -> Result<&'s str, ApiError> {
    if s.len == 0 {
        return Ok("");
    }
    if s.ptr.is_null() {
        return Err(bad(what, "NULL with a non-zero length"));
    }
    // SAFETY: as the caller promises.
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr as *const u8, s.len) };
    std::str::from_utf8(bytes).map_err(|e| bad(what, e))
}

fn bad(what: &'static str, reason: impl ToString) -> ApiError {
    ApiError::Invalid {
        what,
        value: String::new(),
        reason: reason.to_string(),
    }
}

fn optional(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Copies a value argument; NULL is none.
///
/// # Safety
/// `v` is NULL or points to a `cep_value` whose bytes are readable.
unsafe fn value_arg(v: *const cep_value) -> Result<Option<Value>, ApiError> {
    if v.is_null() {
        return Ok(None);
    }
    // SAFETY: as the caller promises.
    let v = unsafe { &*v };
    let bytes = || -> Result<&[u8], ApiError> {
        if v.len == 0 {
            return Ok(&[]);
        }
        if v.data.is_null() {
            return Err(bad("value", "NULL data with a non-zero length"));
        }
        // SAFETY: as the caller promises.
        Ok(unsafe { std::slice::from_raw_parts(v.data, v.len) })
    };
    Ok(Some(match v.kind {
        CEP_VALUE_NONE => return Ok(None),
        CEP_VALUE_NULL => Value::Null,
        CEP_VALUE_BOOL => Value::Bool(v.as_bool),
        CEP_VALUE_I64 => Value::I64(v.as_i64),
        CEP_VALUE_F64 => Value::F64(v.as_f64),
        CEP_VALUE_TEXT => Value::text(std::str::from_utf8(bytes()?).map_err(|e| bad("text", e))?),
        CEP_VALUE_BYTES => Value::bytes(bytes()?),
        other => return Err(bad("value", format!("unknown kind {other}"))),
    }))
}

/// Runs a host operation for the call behind `raw`, recording a failure's
/// message for `last_error`, and never unwinding into C.
fn with_call(
    raw: *mut cep_call,
    f: impl FnOnce(&mut CCall<'_, '_>) -> Result<(), ApiError>,
) -> i32 {
    // SAFETY: `raw` is the pointer `CEnzyme::call` passed for the call
    // still running.
    let state = unsafe { &mut *(raw as *mut CCall<'_, '_>) };
    match catch_unwind(AssertUnwindSafe(|| f(state))) {
        Ok(Ok(())) => CEP_OK,
        Ok(Err(e)) => {
            state.last_error = Some(e.to_string().into_boxed_str());
            code_of(&e)
        }
        Err(_) => {
            state.last_error = Some("internal host error (see the host log)".into());
            CEP_ERR_INTERNAL
        }
    }
}

/// Like [`with_call`] for operations that cannot fail.
fn plain<T>(raw: *mut cep_call, fallback: T, f: impl FnOnce(&mut CCall<'_, '_>) -> T) -> T {
    // SAFETY: as in `with_call`.
    let state = unsafe { &mut *(raw as *mut CCall<'_, '_>) };
    catch_unwind(AssertUnwindSafe(|| f(state))).unwrap_or(fallback)
}

/// Writes `value` to the out-pointer `out`, refusing NULL.
fn put<T>(out: *mut T, value: T) -> Result<(), ApiError> {
    if out.is_null() {
        return Err(bad("out", "NULL result pointer"));
    }
    // SAFETY: a non-null result pointer from the plugin.
    unsafe { out.write(value) };
    Ok(())
}

const EMPTY: cep_str = cep_str {
    ptr: std::ptr::null(),
    len: 0,
};

unsafe extern "C" fn h_last_error(call: *mut cep_call) -> cep_str {
    plain(call, EMPTY, |s| match s.last_error.clone() {
        Some(message) => s.arena.text(message.into()),
        None => EMPTY,
    })
}

unsafe extern "C" fn h_set_error(call: *mut cep_call, message: cep_str) {
    plain(call, (), |s| {
        s.failure = Some(match unsafe { arg(message, "message") } {
            Ok(m) => m.to_owned(),
            Err(e) => format!("(unreadable message: {e})"),
        })
    })
}

unsafe extern "C" fn h_beat(call: *mut cep_call) -> u64 {
    plain(call, 0, |s| s.call.beat())
}

unsafe extern "C" fn h_signal(call: *mut cep_call) -> cep_str {
    plain(call, EMPTY, |s| {
        let signal = s.call.signal();
        s.arena.text(signal)
    })
}

unsafe extern "C" fn h_target(call: *mut cep_call) -> cep_str {
    plain(call, EMPTY, |s| match s.call.target() {
        Some(target) => s.arena.text(target),
        None => EMPTY,
    })
}

unsafe extern "C" fn h_payload(call: *mut cep_call, out: *mut cep_value) -> i32 {
    with_call(call, |s| {
        let value = s.call.payload().cloned();
        put(out, s.arena.value(value))
    })
}

unsafe extern "C" fn h_enzyme(call: *mut cep_call) -> cep_str {
    plain(call, EMPTY, |s| {
        let name = s.call.enzyme().to_owned();
        s.arena.text(name)
    })
}

unsafe extern "C" fn h_read(call: *mut cep_call, path: cep_str, out: *mut cep_value) -> i32 {
    with_call(call, |s| {
        let value = s.call.read(unsafe { arg(path, "path") }?)?;
        put(out, s.arena.value(value))
    })
}

unsafe extern "C" fn h_children(
    call: *mut cep_call,
    path: cep_str,
    names: *mut *const cep_str,
    count: *mut usize,
) -> i32 {
    with_call(call, |s| {
        let children = s.call.children(unsafe { arg(path, "path") }?)?;
        let list: Box<[cep_str]> = children
            .iter()
            .map(|n| s.arena.text(n.as_str().to_owned()))
            .collect();
        put(names, list.as_ptr())?;
        put(count, list.len())?;
        s.arena.lists.push(list);
        Ok(())
    })
}

unsafe extern "C" fn h_exists(call: *mut cep_call, path: cep_str, out: *mut bool) -> i32 {
    with_call(call, |s| {
        put(out, s.call.exists(unsafe { arg(path, "path") }?)?)
    })
}

unsafe extern "C" fn h_write(call: *mut cep_call, path: cep_str, value: *const cep_value) -> i32 {
    with_call(call, |s| {
        let value = unsafe { value_arg(value) }?.ok_or_else(|| bad("value", "none"))?;
        s.call.write(unsafe { arg(path, "path") }?, value)
    })
}

unsafe extern "C" fn h_delete(call: *mut cep_call, path: cep_str) -> i32 {
    with_call(call, |s| s.call.delete(unsafe { arg(path, "path") }?))
}

unsafe extern "C" fn h_append(call: *mut cep_call, path: cep_str, value: *const cep_value) -> i32 {
    with_call(call, |s| {
        let value = unsafe { value_arg(value) }?.ok_or_else(|| bad("value", "none"))?;
        s.call.append(unsafe { arg(path, "path") }?, value)
    })
}

unsafe extern "C" fn h_emit(
    call: *mut cep_call,
    signal: cep_str,
    target: cep_str,
    payload: *const cep_value,
    delay: u32,
) -> i32 {
    with_call(call, |s| {
        let target = optional(unsafe { arg(target, "target") }?);
        let payload = unsafe { value_arg(payload) }?;
        s.call
            .emit(unsafe { arg(signal, "signal") }?, target, payload, delay)
    })
}

unsafe extern "C" fn h_bind(
    call: *mut cep_call,
    path: cep_str,
    enzyme: cep_str,
    propagate: bool,
) -> i32 {
    with_call(call, |s| {
        s.call.bind(
            unsafe { arg(path, "path") }?,
            unsafe { arg(enzyme, "enzyme") }?,
            propagate,
        )
    })
}

unsafe extern "C" fn h_unbind(call: *mut cep_call, path: cep_str, enzyme: cep_str) -> i32 {
    with_call(call, |s| {
        s.call.unbind(unsafe { arg(path, "path") }?, unsafe {
            arg(enzyme, "enzyme")
        }?)
    })
}

unsafe extern "C" fn h_cei(
    call: *mut cep_call,
    severity: cep_str,
    topic: cep_str,
    note: cep_str,
    subject: cep_str,
) -> i32 {
    with_call(call, |s| {
        s.call.cei(
            unsafe { arg(severity, "severity") }?,
            unsafe { arg(topic, "topic") }?,
            unsafe { arg(note, "note") }?,
            unsafe { arg(subject, "subject") }?,
        )
    })
}

unsafe extern "C" fn h_log(call: *mut cep_call, level: cep_str, message: cep_str) {
    plain(call, (), |s| {
        let level = unsafe { arg(level, "level") }.unwrap_or("info");
        let message = unsafe { arg(message, "message") }.unwrap_or("(not UTF-8)");
        // A refused line (over the limit) has already failed the call.
        let _ = s.call.log(level, message);
    })
}

/// Reads a spec struct, checking its header.
///
/// # Safety
/// `spec` is NULL or points to a `T` starting with a header.
unsafe fn spec_arg<T: Copy>(spec: *const T, what: &'static str) -> Result<T, ApiError> {
    if spec.is_null() {
        return Err(bad(what, "NULL"));
    }
    // SAFETY: the header comes first.
    let header = unsafe { *(spec as *const cep_header) };
    check_header::<T>(&header, what).map_err(|e| bad(what, e))?;
    // SAFETY: its size covers `T`.
    Ok(unsafe { std::ptr::read_unaligned(spec) })
}

unsafe extern "C" fn h_op_start(
    call: *mut cep_call,
    spec: *const cep_op_spec,
    oid: *mut cep_str,
) -> i32 {
    with_call(call, |s| {
        let spec = unsafe { spec_arg(spec, "cep_op_spec") }?;
        let id = s.call.op_start(
            unsafe { arg(spec.verb, "verb") }?,
            optional(unsafe { arg(spec.target, "target") }?),
            unsafe { arg(spec.mode, "mode") }?,
            unsafe { value_arg(spec.payload) }?,
            spec.ttl_beats,
        )?;
        let id = s.arena.text(id.as_str().to_owned());
        put(oid, id)
    })
}

unsafe extern "C" fn h_op_state(call: *mut cep_call, oid: cep_str, state: cep_str) -> i32 {
    with_call(call, |s| {
        s.call
            .op_state(unsafe { arg(oid, "oid") }?, unsafe { arg(state, "state") }?)
    })
}

unsafe extern "C" fn h_op_await(
    call: *mut cep_call,
    oid: cep_str,
    spec: *const cep_await_spec,
) -> i32 {
    with_call(call, |s| {
        let spec = unsafe { spec_arg(spec, "cep_await_spec") }?;
        s.call.op_await(
            unsafe { arg(oid, "oid") }?,
            unsafe { arg(spec.want, "want") }?,
            spec.ttl_beats,
            unsafe { arg(spec.cont, "cont") }?,
            unsafe { value_arg(spec.payload) }?,
        )
    })
}

unsafe extern "C" fn h_op_close(
    call: *mut cep_call,
    oid: cep_str,
    status: cep_str,
    summary: cep_str,
) -> i32 {
    with_call(call, |s| {
        s.call.op_close(
            unsafe { arg(oid, "oid") }?,
            unsafe { arg(status, "status") }?,
            unsafe { arg(summary, "summary") }?,
        )
    })
}

unsafe extern "C" fn h_op_snapshot(call: *mut cep_call, oid: cep_str, label: cep_str) -> i32 {
    with_call(call, |s| {
        s.call
            .op_snapshot(unsafe { arg(oid, "oid") }?, unsafe { arg(label, "label") }?)
    })
}

unsafe extern "C" fn h_ep_start(
    call: *mut cep_call,
    spec: *const cep_episode_spec,
    eid: *mut cep_str,
) -> i32 {
    with_call(call, |s| {
        let spec = unsafe { spec_arg(spec, "cep_episode_spec") }?;
        let id = s.call.ep_start(
            unsafe { arg(spec.signal, "signal") }?,
            optional(unsafe { arg(spec.target, "target") }?),
            unsafe { arg(spec.callback, "callback") }?,
            spec.rw,
            spec.cpu_budget_ns,
            spec.io_budget_bytes,
            spec.max_beats,
        )?;
        let id = s.arena.text(id.as_str().to_owned());
        put(eid, id)
    })
}

unsafe extern "C" fn h_ep_yield(call: *mut cep_call) -> i32 {
    with_call(call, |s| s.call.ep_yield())
}

unsafe extern "C" fn h_ep_await(call: *mut cep_call, oid: cep_str, want: cep_str, ttl: u64) -> i32 {
    with_call(call, |s| {
        s.call.ep_await(
            unsafe { arg(oid, "oid") }?,
            unsafe { arg(want, "want") }?,
            ttl,
        )
    })
}

unsafe extern "C" fn h_ep_close(call: *mut cep_call, status: cep_str, summary: cep_str) -> i32 {
    with_call(call, |s| {
        s.call.ep_close(unsafe { arg(status, "status") }?, unsafe {
            arg(summary, "summary")
        }?)
    })
}

unsafe extern "C" fn h_ep_cancel(call: *mut cep_call, eid: cep_str, reason: cep_str) -> i32 {
    with_call(call, |s| {
        s.call.ep_cancel(unsafe { arg(eid, "eid") }?, unsafe {
            arg(reason, "reason")
        }?)
    })
}

unsafe extern "C" fn h_ep_lease(call: *mut cep_call, path: cep_str, flags: u32) -> i32 {
    with_call(call, |s| {
        let flags = u8::try_from(flags).map_err(|_| bad("flags", "unknown lease flags"))?;
        s.call.ep_lease(unsafe { arg(path, "path") }?, flags)
    })
}

unsafe extern "C" fn h_ep_release(call: *mut cep_call, path: cep_str) -> i32 {
    with_call(call, |s| s.call.ep_release(unsafe { arg(path, "path") }?))
}

unsafe extern "C" fn h_ep_check_cancel(call: *mut cep_call) -> bool {
    plain(call, true, |s| s.call.check_cancel())
}

unsafe extern "C" fn h_ep_account_io(call: *mut cep_call, bytes: u64) -> i32 {
    with_call(call, |s| s.call.account_io(bytes))
}

unsafe extern "C" fn h_sink_inject(
    sink: *mut cep_sink,
    signal: cep_str,
    target: cep_str,
    payload: *const cep_value,
) -> i32 {
    // SAFETY: `sink` is the pointer `CAdapter::start` handed over; it stays
    // valid until `stop` returns.
    let sink = unsafe { &*(sink as *const SinkState) };
    let offer = || -> Result<u64, SinkError> {
        let signal = unsafe { arg(signal, "signal") }?;
        let target = optional(unsafe { arg(target, "target") }?);
        let payload = unsafe { value_arg(payload) }?;
        sink.inject(signal, target, payload)
    };
    match catch_unwind(AssertUnwindSafe(offer)) {
        Ok(Ok(_)) => CEP_OK,
        Ok(Err(SinkError::Api(e))) => code_of(&e),
        Ok(Err(SinkError::Full { .. })) => CEP_ERR_FULL,
        Ok(Err(SinkError::Closed)) => CEP_ERR_CLOSED,
        Err(_) => CEP_ERR_INTERNAL,
    }
}

unsafe extern "C" fn h_view_beat(view: *mut cep_view) -> u64 {
    // SAFETY: the pointer `CAdapter::commit` passed for the call running.
    unsafe { &*(view as *const CView<'_>) }.beat
}

unsafe extern "C" fn h_view_read(view: *mut cep_view, path: cep_str, out: *mut cep_value) -> i32 {
    // SAFETY: as in `h_view_beat`.
    let view = unsafe { &*(view as *const CView<'_>) };
    let read = || -> Result<(), ApiError> {
        let path = api::cell_path(unsafe { arg(path, "path") }?)?;
        let value = view.snapshot.read(&path).cloned();
        let mut arena = view.arena.lock().unwrap_or_else(|e| e.into_inner());
        put(out, arena.value(value))
    };
    match catch_unwind(AssertUnwindSafe(read)) {
        Ok(Ok(())) => CEP_OK,
        Ok(Err(e)) => code_of(&e),
        Err(_) => CEP_ERR_INTERNAL,
    }
}

/// The host API table handed to every C plugin.
pub static C_HOST_API: cep_host_api = cep_host_api {
    header: cep_header {
        abi_major: CEP_ABI_MAJOR,
        abi_minor: CEP_ABI_MINOR,
        struct_size: std::mem::size_of::<cep_host_api>() as u32,
    },
    last_error: h_last_error,
    set_error: h_set_error,
    beat: h_beat,
    signal: h_signal,
    target: h_target,
    payload: h_payload,
    enzyme: h_enzyme,
    read: h_read,
    children: h_children,
    exists: h_exists,
    write: h_write,
    remove: h_delete,
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
    view_beat: h_view_beat,
    view_read: h_view_read,
    op_snapshot: h_op_snapshot,
};
