//! The host functions a wasm plugin imports from module `cep`: the one host
//! API ([`Call`]) with arguments and results as bytes in guest memory.
//!
//! Only the functions a plugin's capabilities allow are linked
//! ([`Needs`]); the rest of the list is simply not there, and a module that
//! imports one fails to load with a message naming the import.
//!
//! ABI violations — a pointer and length outside memory, text that is not
//! UTF-8, a malformed value — trap the call: the guest is broken, and the
//! `wasm:trap` fact says which function and which argument. A request the
//! host refuses (no capability, a bad path, a sealed cell) is not a
//! violation: the function returns [`REFUSED`] and `cep.error` holds the
//! message.

use std::ffi::c_void;

use cep_sdk::api::{self, Binding, Needs};
use cep_sdk::wasm::{self, ABSENT, NONE, REFUSED};
use cep_sdk::Value;
use wasmtime::{Caller, Linker, Memory, ResourceLimiter, StoreLimits};

use super::super::api::{ApiError, Call};
use super::super::caps::{Capability, Grants};

/// Whether `grants` can meet `needs` at all (the path or signal is
/// checked on every call).
pub fn met_by(needs: Needs, grants: &Grants) -> bool {
    let held = grants.held();
    match needs {
        Needs::Nothing => true,
        Needs::Write => held.iter().any(|c| matches!(c, Capability::Write(_))),
        Needs::Emit => held.iter().any(|c| matches!(c, Capability::Emit(_))),
    }
}

/// What the host function a module imports as `cep.<name>` needs, or
/// `None` if there is no such function ([`cep_sdk::api::OPERATIONS`]).
pub fn needs(name: &str) -> Option<Needs> {
    api::in_binding(Binding::Wasm, name).map(|op| op.needs)
}

/// The host functions `define` links for a plugin `allowed` lets through:
/// every operation of the list the wasm binding carries.
pub fn linked(allowed: impl Fn(Needs) -> bool) -> Vec<&'static str> {
    let engine = super::engine();
    let mut linker: Linker<HostState> = Linker::new(engine);
    let mut names = Vec::new();
    if define(&mut linker, allowed).is_ok() {
        let mut store = wasmtime::Store::new(engine, HostState::new(StoreLimits::default()));
        for (module, name, _) in linker.iter(&mut store) {
            if module == wasm::IMPORT_MODULE {
                if let Some(op) = api::in_binding(Binding::Wasm, name) {
                    names.push(op.name);
                } else {
                    names.push("?");
                }
            }
        }
    }
    names
}

/// Caps an instance's memory; remembers that the cap was hit, so the trap
/// it causes is reported as `wasm:memory`.
pub struct Limiter {
    pub limits: StoreLimits,
    pub hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.hit = true;
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// The store's data: the call in progress and what the host functions
/// remember between calls.
pub struct HostState {
    /// The [`Call`] of the enzyme call in progress; null between calls
    /// (and while a module describes itself).
    call: *mut c_void,
    pub memory: Option<Memory>,
    pub limiter: Limiter,
    /// The message of the last refused host call.
    error: String,
    /// The message a guest logged at level `panic` during this call.
    pub panic: Option<String>,
}

// SAFETY: `call` is only set while the thread that set it is inside the
// guest call, and is cleared before that thread lets go of the store.
unsafe impl Send for HostState {}

impl HostState {
    pub fn new(limits: StoreLimits) -> Self {
        HostState {
            call: std::ptr::null_mut(),
            memory: None,
            limiter: Limiter { limits, hit: false },
            error: String::new(),
            panic: None,
        }
    }

    /// Makes `call` the current call until [`HostState::end`].
    pub fn begin(&mut self, call: &mut Call<'_, '_>) {
        HOST_BYTES.with(|b| b.set(0));
        self.call = call as *mut Call<'_, '_> as *mut c_void;
        self.panic = None;
        self.limiter.hit = false;
    }

    pub fn end(&mut self) {
        self.call = std::ptr::null_mut();
    }

    fn call(&mut self) -> Result<&mut Call<'static, 'static>, ApiError> {
        if self.call.is_null() {
            return Err(ApiError::Refused(
                "no enzyme call is running (a module may not use the host API while it describes itself)".to_owned(),
            ));
        }
        // SAFETY: set by `begin` from a live `&mut Call` whose call is in
        // progress on this thread (see `HostState`); the lifetimes are
        // erased only for the duration of one host function.
        Ok(unsafe { &mut *(self.call as *mut Call<'static, 'static>) })
    }

    /// Runs `f` with the current call: its result, or [`REFUSED`] with the
    /// message kept for `cep.error`.
    fn with<T>(&mut self, f: impl FnOnce(&mut Call) -> Result<T, ApiError>) -> Result<T, i32> {
        match self.call().and_then(f) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.error = e.to_string();
                Err(REFUSED)
            }
        }
    }
}

type Trap = wasmtime::Error;

/// Fuel one host call costs, before the bytes it moves.
pub const HOST_CALL_FUEL: u64 = 50;
/// Bytes of guest memory a host function reads or writes per unit of fuel.
pub const BYTES_PER_FUEL: u64 = 16;

thread_local! {
    /// Guest bytes the host functions of the running guest call have read
    /// or written since they were last charged (one guest call runs on one
    /// thread at a time, from `begin` to `settle`).
    static HOST_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn touched(n: usize) {
    HOST_BYTES.with(|b| b.set(b.get().saturating_add(n as u64)));
}

/// Charges `calls` host calls and the bytes moved since the last charge to
/// the guest's fuel: host work is paid like the guest's own, so a module
/// cannot stall a beat by handing the host megabytes in a loop. Out of
/// fuel is the same trap as running out in guest code (`wasm:fuel`).
fn charge_host_work(
    fuel: &mut dyn FnMut(Option<u64>) -> wasmtime::Result<u64>,
    calls: u64,
) -> Result<(), Trap> {
    let bytes = HOST_BYTES.with(|b| b.replace(0));
    let cost = calls
        .saturating_mul(HOST_CALL_FUEL)
        .saturating_add(bytes / BYTES_PER_FUEL);
    let left = fuel(None)?;
    if left < cost {
        fuel(Some(0))?;
        return Err(wasmtime::Trap::OutOfFuel.into());
    }
    fuel(Some(left - cost))?;
    Ok(())
}

/// Charges what the last host calls of a guest call moved (after it
/// returns): a call that ends out of fuel this way fails like any other.
pub fn settle(store: &mut wasmtime::Store<HostState>) -> Result<(), Trap> {
    if HOST_BYTES.with(|b| b.get()) == 0 {
        return Ok(());
    }
    charge_host_work(
        &mut |set| match set {
            None => store.get_fuel(),
            Some(v) => store.set_fuel(v).map(|()| v),
        },
        0,
    )
}

fn violation(function: &str, what: &str, reason: String) -> Trap {
    wasmtime::Error::msg(format!("cep.{function}: {what}: {reason}"))
}

/// The bytes at `ptr..ptr+len`, or a trap if they lie outside memory.
fn bytes<'m>(mem: &'m [u8], f: &str, what: &str, ptr: i32, len: i32) -> Result<&'m [u8], Trap> {
    let (start, n) = (ptr as u32 as usize, len as u32 as usize);
    touched(n);
    start
        .checked_add(n)
        .and_then(|end| mem.get(start..end))
        .ok_or_else(|| {
            violation(
                f,
                what,
                format!(
                    "{n} bytes at {start:#x} lie outside memory ({} bytes)",
                    mem.len()
                ),
            )
        })
}

fn text<'m>(mem: &'m [u8], f: &str, what: &str, ptr: i32, len: i32) -> Result<&'m str, Trap> {
    std::str::from_utf8(bytes(mem, f, what, ptr, len)?)
        .map_err(|e| violation(f, what, format!("not UTF-8: {e}")))
}

fn opt_text<'m>(
    mem: &'m [u8],
    f: &str,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<Option<&'m str>, Trap> {
    if len == ABSENT {
        return Ok(None);
    }
    text(mem, f, what, ptr, len).map(Some)
}

fn value(mem: &[u8], f: &str, what: &str, ptr: i32, len: i32) -> Result<Value, Trap> {
    wasm::decode_value(bytes(mem, f, what, ptr, len)?).map_err(|e| violation(f, what, e))
}

fn opt_value(mem: &[u8], f: &str, what: &str, ptr: i32, len: i32) -> Result<Option<Value>, Trap> {
    if len == ABSENT {
        return Ok(None);
    }
    value(mem, f, what, ptr, len).map(Some)
}

/// Copies `data` to the guest's buffer if it fits; the length either way.
fn out(mem: &mut [u8], f: &str, ptr: i32, cap: i32, data: &[u8]) -> Result<i32, Trap> {
    let len = i32::try_from(data.len())
        .map_err(|_| violation(f, "result", "longer than 2 GiB".to_owned()))?;
    if len <= cap {
        touched(data.len());
        let start = ptr as u32 as usize;
        let slot = start
            .checked_add(data.len())
            .and_then(|end| mem.get_mut(start..end))
            .ok_or_else(|| {
                violation(
                    f,
                    "result buffer",
                    format!("{len} bytes at {start:#x} lie outside memory"),
                )
            })?;
        slot.copy_from_slice(data);
    }
    Ok(len)
}

/// A status result: 0, or [`REFUSED`].
fn status(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(0)
}

/// Guest memory and the store's data, together.
fn split<'c>(
    caller: &'c mut Caller<'_, HostState>,
) -> Result<(&'c mut [u8], &'c mut HostState), Trap> {
    charge_host_work(
        &mut |set| match set {
            None => caller.get_fuel(),
            Some(v) => caller.set_fuel(v).map(|()| v),
        },
        1,
    )?;
    let memory = caller.data().memory.ok_or_else(|| {
        // Set right after instantiation: only a start function gets here.
        wasmtime::Error::msg("cep host functions cannot be called from the start function")
    })?;
    Ok(memory.data_and_store_mut(caller))
}

type C<'a> = Caller<'a, HostState>;

/// Adds the host functions allowed by `allowed` to `linker`.
pub fn define(
    linker: &mut Linker<HostState>,
    allowed: impl Fn(Needs) -> bool,
) -> wasmtime::Result<()> {
    let m = wasm::IMPORT_MODULE;
    let on = |name: &str| allowed(needs(name).expect("listed"));

    if on("beat") {
        linker.func_wrap(m, "beat", |mut c: C<'_>| -> i64 {
            c.data_mut()
                .with(|call| Ok(call.beat() as i64))
                .unwrap_or(0)
        })?;
    }
    // The getters of the impulse: (out, cap) -> len | NONE.
    type Getter = fn(&mut Call) -> Option<Vec<u8>>;
    let getters: [(&str, Getter); 4] = [
        ("signal", |call| Some(call.signal().into_bytes())),
        ("target", |call| call.target().map(String::into_bytes)),
        ("payload", |call| call.payload().map(wasm::value_bytes)),
        ("enzyme", |call| Some(call.enzyme().as_bytes().to_vec())),
    ];
    for (name, get) in getters {
        if !on(name) {
            continue;
        }
        linker.func_wrap(
            m,
            name,
            move |mut c: C<'_>, o: i32, cap: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                match st.with(|call| Ok(get(call))) {
                    Ok(Some(data)) => out(mem, name, o, cap, &data),
                    Ok(None) => Ok(NONE),
                    Err(code) => Ok(code),
                }
            },
        )?;
    }
    if on("error") {
        linker.func_wrap(
            m,
            "error",
            |mut c: C<'_>, o: i32, cap: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                out(mem, "error", o, cap, st.error.as_bytes())
            },
        )?;
    }
    if on("read") {
        linker.func_wrap(
            m,
            "read",
            |mut c: C<'_>, p: i32, l: i32, o: i32, cap: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let path = text(mem, "read", "path", p, l)?;
                match st.with(|call| call.read(path)) {
                    Ok(Some(v)) => out(mem, "read", o, cap, &wasm::value_bytes(&v)),
                    Ok(None) => Ok(NONE),
                    Err(code) => Ok(code),
                }
            },
        )?;
    }
    if on("children") {
        linker.func_wrap(
            m,
            "children",
            |mut c: C<'_>, p: i32, l: i32, o: i32, cap: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let path = text(mem, "children", "path", p, l)?;
                match st.with(|call| call.children(path)) {
                    Ok(names) => {
                        let list: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
                        out(mem, "children", o, cap, list.join("\n").as_bytes())
                    }
                    Err(code) => Ok(code),
                }
            },
        )?;
    }
    if on("exists") {
        linker.func_wrap(
            m,
            "exists",
            |mut c: C<'_>, p: i32, l: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let path = text(mem, "exists", "path", p, l)?;
                Ok(st
                    .with(|call| call.exists(path))
                    .map_or_else(|e| e, i32::from))
            },
        )?;
    }
    // write and append: (path, value) -> status.
    type Put = fn(&mut Call, &str, Value) -> Result<(), ApiError>;
    let puts: [(&str, Put); 2] = [
        ("write", |call, path, v| call.write(path, v)),
        ("append", |call, path, v| call.append(path, v)),
    ];
    for (name, put) in puts {
        if !on(name) {
            continue;
        }
        linker.func_wrap(
            m,
            name,
            move |mut c: C<'_>, p: i32, l: i32, vp: i32, vl: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let path = text(mem, name, "path", p, l)?;
                let v = value(mem, name, "value", vp, vl)?;
                Ok(status(st.with(|call| put(call, path, v))))
            },
        )?;
    }
    // One-path calls: (path) -> status.
    type OnPath = fn(&mut Call, &str) -> Result<(), ApiError>;
    let on_path: [(&str, OnPath); 2] = [
        ("delete", |call, path| call.delete(path)),
        ("ep_release", |call, path| call.ep_release(path)),
    ];
    for (name, f) in on_path {
        if !on(name) {
            continue;
        }
        linker.func_wrap(
            m,
            name,
            move |mut c: C<'_>, p: i32, l: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let path = text(mem, name, "path", p, l)?;
                Ok(status(st.with(|call| f(call, path))))
            },
        )?;
    }
    // Two-text calls: (a, b) -> status.
    type Two = fn(&mut Call, &str, &str) -> Result<(), ApiError>;
    let twos: [(&str, [&str; 2], Two); 5] = [
        ("unbind", ["path", "enzyme"], |call, a, b| call.unbind(a, b)),
        ("op_state", ["oid", "state"], |call, a, b| {
            call.op_state(a, b)
        }),
        ("op_snapshot", ["oid", "label"], |call, a, b| {
            call.op_snapshot(a, b)
        }),
        ("ep_close", ["status", "summary"], |call, a, b| {
            call.ep_close(a, b)
        }),
        ("ep_cancel", ["eid", "reason"], |call, a, b| {
            call.ep_cancel(a, b)
        }),
    ];
    for (name, [wa, wb], f) in twos {
        if !on(name) {
            continue;
        }
        linker.func_wrap(
            m,
            name,
            move |mut c: C<'_>, ap: i32, al: i32, bp: i32, bl: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let a = text(mem, name, wa, ap, al)?;
                let b = text(mem, name, wb, bp, bl)?;
                Ok(status(st.with(|call| f(call, a, b))))
            },
        )?;
    }
    if on("emit") {
        linker.func_wrap(
            m,
            "emit",
            |mut c: C<'_>,
             sp: i32,
             sl: i32,
             tp: i32,
             tl: i32,
             pp: i32,
             pl: i32,
             delay: i32|
             -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let signal = text(mem, "emit", "signal", sp, sl)?;
                let target = opt_text(mem, "emit", "target", tp, tl)?;
                let payload = opt_value(mem, "emit", "payload", pp, pl)?;
                let delay = delay.max(0) as u32;
                Ok(status(
                    st.with(|call| call.emit(signal, target, payload, delay)),
                ))
            },
        )?;
    }
    if on("bind") {
        linker.func_wrap(
            m,
            "bind",
            |mut c: C<'_>, p: i32, l: i32, ep: i32, el: i32, propagate: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let path = text(mem, "bind", "path", p, l)?;
                let enzyme = text(mem, "bind", "enzyme", ep, el)?;
                Ok(status(
                    st.with(|call| call.bind(path, enzyme, propagate != 0)),
                ))
            },
        )?;
    }
    if on("cei") {
        linker.func_wrap(
            m,
            "cei",
            |mut c: C<'_>,
             vp: i32,
             vl: i32,
             tp: i32,
             tl: i32,
             np: i32,
             nl: i32,
             sp: i32,
             sl: i32|
             -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let severity = text(mem, "cei", "severity", vp, vl)?;
                let topic = text(mem, "cei", "topic", tp, tl)?;
                let note = text(mem, "cei", "note", np, nl)?;
                let subject = text(mem, "cei", "subject", sp, sl)?;
                Ok(status(
                    st.with(|call| call.cei(severity, topic, note, subject)),
                ))
            },
        )?;
    }
    if on("log") {
        linker.func_wrap(
            m,
            "log",
            |mut c: C<'_>, lp: i32, ll: i32, mp: i32, ml: i32| -> Result<(), Trap> {
                let (mem, st) = split(&mut c)?;
                let level = text(mem, "log", "level", lp, ll)?;
                let message = String::from_utf8_lossy(bytes(mem, "log", "message", mp, ml)?);
                if level == "panic" {
                    let cap = crate::cei::OUTCOME_MESSAGE_BYTES_MAX / 4;
                    st.panic = Some(crate::cei::capped(&message, cap).into_owned());
                    return Ok(());
                }
                // A refused line (over the limit) has already failed the call.
                let _ = st.with(|call| {
                    let _ = call.log(level, &message);
                    Ok(())
                });
                Ok(())
            },
        )?;
    }
    if on("op_start") {
        linker.func_wrap(
            m,
            "op_start",
            |mut c: C<'_>,
             vp: i32,
             vl: i32,
             tp: i32,
             tl: i32,
             mp: i32,
             ml: i32,
             pp: i32,
             pl: i32,
             ttl: i64,
             o: i32,
             cap: i32|
             -> Result<i32, Trap> {
                let f = "op_start";
                let (mem, st) = split(&mut c)?;
                let verb = text(mem, f, "verb", vp, vl)?;
                let target = opt_text(mem, f, "target", tp, tl)?;
                let mode = text(mem, f, "mode", mp, ml)?;
                let payload = opt_value(mem, f, "payload", pp, pl)?;
                let ttl = ttl.max(0) as u64;
                match st.with(|call| call.op_start(verb, target, mode, payload, ttl)) {
                    Ok(oid) => out(mem, f, o, cap, oid.as_str().as_bytes()),
                    Err(code) => Ok(code),
                }
            },
        )?;
    }
    if on("op_await") {
        linker.func_wrap(
            m,
            "op_await",
            |mut c: C<'_>,
             op: i32,
             ol: i32,
             wp: i32,
             wl: i32,
             ttl: i64,
             cp: i32,
             cl: i32,
             pp: i32,
             pl: i32|
             -> Result<i32, Trap> {
                let f = "op_await";
                let (mem, st) = split(&mut c)?;
                let oid = text(mem, f, "oid", op, ol)?;
                let want = text(mem, f, "want", wp, wl)?;
                let cont = text(mem, f, "cont", cp, cl)?;
                let payload = opt_value(mem, f, "payload", pp, pl)?;
                let ttl = ttl.max(0) as u64;
                Ok(status(
                    st.with(|call| call.op_await(oid, want, ttl, cont, payload)),
                ))
            },
        )?;
    }
    if on("op_close") {
        linker.func_wrap(
            m,
            "op_close",
            |mut c: C<'_>,
             op: i32,
             ol: i32,
             sp: i32,
             sl: i32,
             mp: i32,
             ml: i32|
             -> Result<i32, Trap> {
                let f = "op_close";
                let (mem, st) = split(&mut c)?;
                let oid = text(mem, f, "oid", op, ol)?;
                let status_text = text(mem, f, "status", sp, sl)?;
                let summary = text(mem, f, "summary", mp, ml)?;
                Ok(status(
                    st.with(|call| call.op_close(oid, status_text, summary)),
                ))
            },
        )?;
    }
    if on("ep_start") {
        linker.func_wrap(
            m,
            "ep_start",
            |mut c: C<'_>,
             sp: i32,
             sl: i32,
             tp: i32,
             tl: i32,
             cp: i32,
             cl: i32,
             rw: i32,
             cpu: i64,
             io: i64,
             max_beats: i64,
             o: i32,
             cap: i32|
             -> Result<i32, Trap> {
                let f = "ep_start";
                let (mem, st) = split(&mut c)?;
                let signal = text(mem, f, "signal", sp, sl)?;
                let target = opt_text(mem, f, "target", tp, tl)?;
                let callback = text(mem, f, "callback", cp, cl)?;
                let [cpu, io, max_beats] = [cpu, io, max_beats].map(|n| n.max(0) as u64);
                match st.with(|call| {
                    call.ep_start(signal, target, callback, rw != 0, cpu, io, max_beats)
                }) {
                    Ok(eid) => out(mem, f, o, cap, eid.as_str().as_bytes()),
                    Err(code) => Ok(code),
                }
            },
        )?;
    }
    if on("ep_yield") {
        linker.func_wrap(m, "ep_yield", |mut c: C<'_>| -> i32 {
            status(c.data_mut().with(|call| call.ep_yield()))
        })?;
    }
    if on("ep_await") {
        linker.func_wrap(
            m,
            "ep_await",
            |mut c: C<'_>, op: i32, ol: i32, wp: i32, wl: i32, ttl: i64| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let oid = text(mem, "ep_await", "oid", op, ol)?;
                let want = text(mem, "ep_await", "want", wp, wl)?;
                let ttl = ttl.max(0) as u64;
                Ok(status(st.with(|call| call.ep_await(oid, want, ttl))))
            },
        )?;
    }
    if on("ep_lease") {
        linker.func_wrap(
            m,
            "ep_lease",
            |mut c: C<'_>, p: i32, l: i32, flags: i32| -> Result<i32, Trap> {
                let (mem, st) = split(&mut c)?;
                let path = text(mem, "ep_lease", "path", p, l)?;
                Ok(status(st.with(|call| call.ep_lease(path, flags as u8))))
            },
        )?;
    }
    if on("check_cancel") {
        linker.func_wrap(m, "check_cancel", |mut c: C<'_>| -> i32 {
            c.data_mut()
                .with(|call| Ok(call.check_cancel() as i32))
                .unwrap_or(0)
        })?;
    }
    if on("account_io") {
        linker.func_wrap(m, "account_io", |mut c: C<'_>, n: i64| -> i32 {
            status(c.data_mut().with(|call| call.account_io(n.max(0) as u64)))
        })?;
    }
    Ok(())
}
