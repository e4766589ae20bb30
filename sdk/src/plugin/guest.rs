//! The guest side of a wasm plugin (`wasm32` with the `wasm-guest`
//! feature): [`Cx`] over the host functions imported from module `cep`, and
//! the exports [`crate::export_plugin!`] generates. An enzyme written for a
//! native plugin compiles here unchanged.
//!
//! Results come back in buffers this side owns: a call is made with a
//! buffer, and made again with a bigger one when the answer did not fit
//! (see [`crate::wasm`] and `docs/wasm-abi.md`).

use std::marker::PhantomData;
use std::sync::{Mutex, Once, OnceLock};

use super::{EpisodeRequest, HostError, OpRequest, Plugin};
use crate::wasm::{self, ABSENT, NONE, REFUSED};
use crate::{Outcome, Severity, Value};

#[cfg(not(feature = "wasm-guest"))]
compile_error!("building a cep plugin for wasm32 needs cep-sdk's `wasm-guest` feature");

mod raw {
    #[link(wasm_import_module = "cep")]
    extern "C" {
        pub fn beat() -> i64;
        pub fn signal(out: *mut u8, cap: i32) -> i32;
        pub fn target(out: *mut u8, cap: i32) -> i32;
        pub fn payload(out: *mut u8, cap: i32) -> i32;
        pub fn enzyme(out: *mut u8, cap: i32) -> i32;
        pub fn error(out: *mut u8, cap: i32) -> i32;
        pub fn read(path: *const u8, path_len: i32, out: *mut u8, cap: i32) -> i32;
        pub fn children(path: *const u8, path_len: i32, out: *mut u8, cap: i32) -> i32;
        pub fn exists(path: *const u8, path_len: i32) -> i32;
        pub fn write(path: *const u8, path_len: i32, value: *const u8, value_len: i32) -> i32;
        pub fn delete(path: *const u8, path_len: i32) -> i32;
        pub fn append(path: *const u8, path_len: i32, value: *const u8, value_len: i32) -> i32;
        pub fn emit(
            signal: *const u8,
            signal_len: i32,
            target: *const u8,
            target_len: i32,
            payload: *const u8,
            payload_len: i32,
            delay: i32,
        ) -> i32;
        pub fn bind(
            path: *const u8,
            path_len: i32,
            enzyme: *const u8,
            enzyme_len: i32,
            propagate: i32,
        ) -> i32;
        pub fn unbind(path: *const u8, path_len: i32, enzyme: *const u8, enzyme_len: i32) -> i32;
        pub fn cei(
            severity: *const u8,
            severity_len: i32,
            topic: *const u8,
            topic_len: i32,
            note: *const u8,
            note_len: i32,
            subject: *const u8,
            subject_len: i32,
        ) -> i32;
        pub fn log(level: *const u8, level_len: i32, message: *const u8, message_len: i32);
        pub fn op_start(
            verb: *const u8,
            verb_len: i32,
            target: *const u8,
            target_len: i32,
            mode: *const u8,
            mode_len: i32,
            payload: *const u8,
            payload_len: i32,
            ttl_beats: i64,
            out: *mut u8,
            cap: i32,
        ) -> i32;
        pub fn op_state(oid: *const u8, oid_len: i32, state: *const u8, state_len: i32) -> i32;
        pub fn op_await(
            oid: *const u8,
            oid_len: i32,
            want: *const u8,
            want_len: i32,
            ttl_beats: i64,
            cont: *const u8,
            cont_len: i32,
            payload: *const u8,
            payload_len: i32,
        ) -> i32;
        pub fn op_close(
            oid: *const u8,
            oid_len: i32,
            status: *const u8,
            status_len: i32,
            summary: *const u8,
            summary_len: i32,
        ) -> i32;
        pub fn op_snapshot(oid: *const u8, oid_len: i32, label: *const u8, label_len: i32) -> i32;
        pub fn ep_start(
            signal: *const u8,
            signal_len: i32,
            target: *const u8,
            target_len: i32,
            callback: *const u8,
            callback_len: i32,
            rw: i32,
            cpu_budget_ns: i64,
            io_budget_bytes: i64,
            max_beats: i64,
            out: *mut u8,
            cap: i32,
        ) -> i32;
        pub fn ep_yield() -> i32;
        pub fn ep_await(
            oid: *const u8,
            oid_len: i32,
            want: *const u8,
            want_len: i32,
            ttl_beats: i64,
        ) -> i32;
        pub fn ep_close(
            status: *const u8,
            status_len: i32,
            summary: *const u8,
            summary_len: i32,
        ) -> i32;
        pub fn ep_cancel(eid: *const u8, eid_len: i32, reason: *const u8, reason_len: i32) -> i32;
        pub fn ep_lease(path: *const u8, path_len: i32, flags: i32) -> i32;
        pub fn ep_release(path: *const u8, path_len: i32) -> i32;
        pub fn check_cancel() -> i32;
        pub fn account_io(bytes: i64) -> i32;
    }
}

/// A string argument: (pointer, length).
fn s(text: &str) -> (*const u8, i32) {
    (text.as_ptr(), text.len() as i32)
}

/// An optional string argument; absent is length -1.
fn opt(text: Option<&str>) -> (*const u8, i32) {
    text.map_or((std::ptr::null(), ABSENT), s)
}

/// An optional value argument, encoded into `buf`.
fn opt_value(value: Option<&Value>, buf: &mut Vec<u8>) -> (*const u8, i32) {
    match value {
        Some(v) => {
            wasm::encode_value(v, buf);
            (buf.as_ptr(), buf.len() as i32)
        }
        None => (std::ptr::null(), ABSENT),
    }
}

/// Calls `f` with a buffer until the answer fits: `None` when the host
/// answered [`NONE`].
fn fetch(mut f: impl FnMut(*mut u8, i32) -> i32) -> Result<Option<Vec<u8>>, HostError> {
    let mut buf: Vec<u8> = Vec::with_capacity(128);
    loop {
        let n = f(buf.as_mut_ptr(), buf.capacity() as i32);
        match n {
            NONE => return Ok(None),
            REFUSED => return Err(last_error()),
            n if n < 0 => return Err(HostError(format!("unexpected host result {n}"))),
            n if n as usize <= buf.capacity() => {
                // SAFETY: the host wrote `n` bytes into the buffer.
                unsafe { buf.set_len(n as usize) };
                return Ok(Some(buf));
            }
            n => buf.reserve(n as usize),
        }
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn last_error() -> HostError {
    // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
    let message = fetch(|out, cap| unsafe { raw::error(out, cap) })
        .ok()
        .flatten()
        .map(text)
        .unwrap_or_else(|| "the host refused the call".to_owned());
    HostError(message)
}

/// A host function's status result.
fn status(n: i32) -> Result<(), HostError> {
    if n == REFUSED {
        Err(last_error())
    } else {
        Ok(())
    }
}

fn fetch_text(f: impl FnMut(*mut u8, i32) -> i32) -> Result<Option<String>, HostError> {
    fetch(f).map(|b| b.map(text))
}

fn fetch_value(f: impl FnMut(*mut u8, i32) -> i32) -> Result<Option<Value>, HostError> {
    match fetch(f)? {
        Some(bytes) => wasm::decode_value(&bytes).map(Some).map_err(HostError),
        None => Ok(None),
    }
}

/// The host API during one enzyme call, as in a native plugin: reads see
/// the previous beat's snapshot, changes are staged for commit.
pub struct Cx<'a> {
    _call: PhantomData<&'a mut ()>,
}

impl Cx<'_> {
    fn new() -> Self {
        Cx { _call: PhantomData }
    }

    pub fn beat(&self) -> u64 {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        unsafe { raw::beat() as u64 }
    }

    pub fn signal(&self) -> String {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        fetch_text(|o, c| unsafe { raw::signal(o, c) })
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn target(&self) -> Option<String> {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        fetch_text(|o, c| unsafe { raw::target(o, c) })
            .ok()
            .flatten()
    }

    pub fn payload(&self) -> Option<Value> {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        fetch_value(|o, c| unsafe { raw::payload(o, c) })
            .ok()
            .flatten()
    }

    pub fn enzyme(&self) -> String {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        fetch_text(|o, c| unsafe { raw::enzyme(o, c) })
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn read(&self, path: &str) -> Result<Option<Value>, HostError> {
        let (p, l) = s(path);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        fetch_value(|o, c| unsafe { raw::read(p, l, o, c) })
    }

    pub fn children(&self, path: &str) -> Result<Vec<String>, HostError> {
        let (p, l) = s(path);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        let list = fetch_text(|o, c| unsafe { raw::children(p, l, o, c) })?.unwrap_or_default();
        Ok(list
            .split('\n')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect())
    }

    pub fn exists(&self, path: &str) -> Result<bool, HostError> {
        let (p, l) = s(path);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        let n = unsafe { raw::exists(p, l) };
        status(n).map(|()| n == 1)
    }

    pub fn write(&mut self, path: &str, value: impl Into<Value>) -> Result<(), HostError> {
        let (p, l) = s(path);
        let v = wasm::value_bytes(&value.into());
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::write(p, l, v.as_ptr(), v.len() as i32) })
    }

    pub fn delete(&mut self, path: &str) -> Result<(), HostError> {
        let (p, l) = s(path);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::delete(p, l) })
    }

    pub fn append(&mut self, path: &str, value: impl Into<Value>) -> Result<(), HostError> {
        let (p, l) = s(path);
        let v = wasm::value_bytes(&value.into());
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::append(p, l, v.as_ptr(), v.len() as i32) })
    }

    pub fn emit(
        &mut self,
        signal: &str,
        target: Option<&str>,
        payload: Option<Value>,
    ) -> Result<(), HostError> {
        self.emit_after(0, signal, target, payload)
    }

    pub fn emit_after(
        &mut self,
        delay: u32,
        signal: &str,
        target: Option<&str>,
        payload: Option<Value>,
    ) -> Result<(), HostError> {
        let (sp, sl) = s(signal);
        let (tp, tl) = opt(target);
        let mut buf = Vec::new();
        let (vp, vl) = opt_value(payload.as_ref(), &mut buf);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::emit(sp, sl, tp, tl, vp, vl, delay as i32) })
    }

    pub fn bind(&mut self, path: &str, enzyme: &str, propagate: bool) -> Result<(), HostError> {
        let ((p, l), (e, el)) = (s(path), s(enzyme));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::bind(p, l, e, el, propagate as i32) })
    }

    pub fn unbind(&mut self, path: &str, enzyme: &str) -> Result<(), HostError> {
        let ((p, l), (e, el)) = (s(path), s(enzyme));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::unbind(p, l, e, el) })
    }

    pub fn cei(
        &mut self,
        severity: Severity,
        topic: &str,
        note: &str,
        subject: Option<&str>,
    ) -> Result<(), HostError> {
        let (sp, sl) = s(severity.as_str());
        let ((tp, tl), (np, nl)) = (s(topic), s(note));
        let (jp, jl) = s(subject.unwrap_or(""));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::cei(sp, sl, tp, tl, np, nl, jp, jl) })
    }

    pub fn log(&self, level: &str, message: &str) {
        let ((lp, ll), (mp, ml)) = (s(level), s(message));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        unsafe { raw::log(lp, ll, mp, ml) }
    }

    pub fn op_start(&mut self, request: &OpRequest) -> Result<String, HostError> {
        let (vp, vl) = s(&request.verb);
        let (tp, tl) = opt(request.target.as_deref());
        let (mp, ml) = s(&request.mode);
        let mut buf = Vec::new();
        let (pp, pl) = opt_value(request.payload.as_ref(), &mut buf);
        let ttl = request.ttl_beats as i64;
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        fetch_text(|o, c| unsafe { raw::op_start(vp, vl, tp, tl, mp, ml, pp, pl, ttl, o, c) })
            .map(Option::unwrap_or_default)
    }

    pub fn op_state(&mut self, oid: &str, state: &str) -> Result<(), HostError> {
        let ((op, ol), (sp, sl)) = (s(oid), s(state));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::op_state(op, ol, sp, sl) })
    }

    pub fn op_await(
        &mut self,
        oid: &str,
        want: &str,
        ttl_beats: u64,
        cont: &str,
        payload: Option<Value>,
    ) -> Result<(), HostError> {
        let ((op, ol), (wp, wl), (cp, cl)) = (s(oid), s(want), s(cont));
        let mut buf = Vec::new();
        let (pp, pl) = opt_value(payload.as_ref(), &mut buf);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::op_await(op, ol, wp, wl, ttl_beats as i64, cp, cl, pp, pl) })
    }

    pub fn op_close(
        &mut self,
        oid: &str,
        status_text: &str,
        summary: &str,
    ) -> Result<(), HostError> {
        let ((op, ol), (sp, sl), (mp, ml)) = (s(oid), s(status_text), s(summary));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::op_close(op, ol, sp, sl, mp, ml) })
    }

    pub fn op_snapshot(&mut self, oid: &str, label: &str) -> Result<(), HostError> {
        let ((op, ol), (lp, ll)) = (s(oid), s(label));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::op_snapshot(op, ol, lp, ll) })
    }

    pub fn ep_snapshot(&mut self, label: &str) -> Result<(), HostError> {
        self.op_snapshot("", label)
    }

    pub fn ep_start(&mut self, request: &EpisodeRequest) -> Result<String, HostError> {
        let (sp, sl) = s(&request.signal);
        let (tp, tl) = opt(request.target.as_deref());
        let (cp, cl) = s(&request.callback);
        let r = request;
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        fetch_text(|o, c| unsafe {
            raw::ep_start(
                sp,
                sl,
                tp,
                tl,
                cp,
                cl,
                r.rw as i32,
                r.cpu_budget_ns as i64,
                r.io_budget_bytes as i64,
                r.max_beats as i64,
                o,
                c,
            )
        })
        .map(Option::unwrap_or_default)
    }

    pub fn ep_yield(&mut self) -> Result<(), HostError> {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::ep_yield() })
    }

    pub fn ep_await(&mut self, oid: &str, want: &str, ttl_beats: u64) -> Result<(), HostError> {
        let ((op, ol), (wp, wl)) = (s(oid), s(want));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::ep_await(op, ol, wp, wl, ttl_beats as i64) })
    }

    pub fn ep_close(&mut self, status_text: &str, summary: &str) -> Result<(), HostError> {
        let ((sp, sl), (mp, ml)) = (s(status_text), s(summary));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::ep_close(sp, sl, mp, ml) })
    }

    pub fn ep_cancel(&mut self, eid: &str, reason: &str) -> Result<(), HostError> {
        let ((ep, el), (rp, rl)) = (s(eid), s(reason));
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::ep_cancel(ep, el, rp, rl) })
    }

    pub fn ep_lease(&mut self, path: &str, flags: u8) -> Result<(), HostError> {
        let (p, l) = s(path);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::ep_lease(p, l, flags as i32) })
    }

    pub fn ep_release(&mut self, path: &str) -> Result<(), HostError> {
        let (p, l) = s(path);
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::ep_release(p, l) })
    }

    pub fn check_cancel(&self) -> bool {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        unsafe { raw::check_cancel() == 1 }
    }

    pub fn account_io(&mut self, bytes: u64) -> Result<(), HostError> {
        // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
        status(unsafe { raw::account_io(bytes as i64) })
    }
}

// ---------------------------------------------------------------------------
// Exports.

/// The plugin this module exports, built at its first export call.
static PLUGIN: OnceLock<Plugin> = OnceLock::new();
static DESCRIPTOR: OnceLock<String> = OnceLock::new();
/// The last outcome record handed to the host; valid until the next call.
static OUTCOME: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static RETRY: [u8; 1] = [wasm::OUTCOME_RETRY];
static HOOK: Once = Once::new();

fn plugin(build: fn() -> Plugin) -> &'static Plugin {
    HOOK.call_once(|| {
        // A panic aborts the module (a trap); the message goes to the host
        // first, which adds it to the `wasm:trap` fact.
        std::panic::set_hook(Box::new(|info| {
            let message = info.to_string();
            let ((lp, ll), (mp, ml)) = (s("panic"), s(&message));
            // SAFETY: a host import; every pointer passed points into this guest's own memory and is valid for the call.
            unsafe { raw::log(lp, ll, mp, ml) }
        }));
    });
    PLUGIN.get_or_init(build)
}

/// `cep_describe`: the descriptor JSON, packed.
#[doc(hidden)]
pub fn describe(build: fn() -> Plugin) -> i64 {
    let json = DESCRIPTOR.get_or_init(|| plugin(build).descriptor().to_json());
    wasm::pack(json.as_ptr() as u32, json.len() as u32)
}

/// `cep_call`: runs enzyme `index`; 0 for ok, else a packed outcome record.
#[doc(hidden)]
pub fn call(build: fn() -> Plugin, index: i32) -> i64 {
    let outcome = match plugin(build).enzymes.get(index as usize) {
        Some(enzyme) => enzyme.call(&mut Cx::new()),
        None => Outcome::Fatal(format!("the plugin has no enzyme number {index}")),
    };
    match outcome {
        Outcome::Ok => 0,
        Outcome::Retry => wasm::pack(RETRY.as_ptr() as u32, 1),
        Outcome::Fatal(message) => {
            let mut record = OUTCOME.lock().unwrap_or_else(|e| e.into_inner());
            record.clear();
            record.push(wasm::OUTCOME_FATAL);
            record.extend_from_slice(message.as_bytes());
            wasm::pack(record.as_ptr() as u32, record.len() as u32)
        }
    }
}

/// Exports a [`Plugin`] as a wasm cep plugin (the guest ABI 1.0 exports).
/// Use it once, at the root of a `cdylib` crate built with
/// `--target wasm32-unknown-unknown`:
///
/// ```ignore
/// cep_sdk::export_plugin!(build());
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($build:expr) => {
        fn __cep_plugin_build() -> $crate::plugin::Plugin {
            $build
        }
        /// The guest ABI marker.
        #[no_mangle]
        pub extern "C" fn cep_abi_1_0() {}
        #[no_mangle]
        pub extern "C" fn cep_describe() -> i64 {
            $crate::guest::describe(__cep_plugin_build)
        }
        #[no_mangle]
        pub extern "C" fn cep_call(enzyme: i32) -> i64 {
            $crate::guest::call(__cep_plugin_build, enzyme)
        }
    };
}
