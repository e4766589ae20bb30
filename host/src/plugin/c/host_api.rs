//! The host side of the C ABI: [`C_HOST_API`], each function converting its
//! arguments to plain Rust data and calling [`api::Call`].

use super::*;

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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        put(out, s.call.exists(unsafe { arg(path, "path") }?)?)
    })
}

unsafe extern "C" fn h_write(call: *mut cep_call, path: cep_str, value: *const cep_value) -> i32 {
    with_call(call, |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let value = unsafe { value_arg(value) }?.ok_or_else(|| bad("value", "none"))?;
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        s.call.write(unsafe { arg(path, "path") }?, value)
    })
}

unsafe extern "C" fn h_delete(call: *mut cep_call, path: cep_str) -> i32 {
    // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
    with_call(call, |s| s.call.delete(unsafe { arg(path, "path") }?))
}

unsafe extern "C" fn h_append(call: *mut cep_call, path: cep_str, value: *const cep_value) -> i32 {
    with_call(call, |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let value = unsafe { value_arg(value) }?.ok_or_else(|| bad("value", "none"))?;
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let target = optional(unsafe { arg(target, "target") }?);
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let payload = unsafe { value_arg(payload) }?;
        s.call
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(path, "path") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(enzyme, "enzyme") }?,
            propagate,
        )
    })
}

unsafe extern "C" fn h_unbind(call: *mut cep_call, path: cep_str, enzyme: cep_str) -> i32 {
    with_call(call, |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(severity, "severity") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(topic, "topic") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(note, "note") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(subject, "subject") }?,
        )
    })
}

unsafe extern "C" fn h_log(call: *mut cep_call, level: cep_str, message: cep_str) {
    plain(call, (), |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let level = unsafe { arg(level, "level") }.unwrap_or("info");
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let spec = unsafe { spec_arg(spec, "cep_op_spec") }?;
        let id = s.call.op_start(
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(spec.verb, "verb") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            optional(unsafe { arg(spec.target, "target") }?),
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(spec.mode, "mode") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            .op_state(unsafe { arg(oid, "oid") }?, unsafe { arg(state, "state") }?)
    })
}

unsafe extern "C" fn h_op_await(
    call: *mut cep_call,
    oid: cep_str,
    spec: *const cep_await_spec,
) -> i32 {
    with_call(call, |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let spec = unsafe { spec_arg(spec, "cep_await_spec") }?;
        s.call.op_await(
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(oid, "oid") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(spec.want, "want") }?,
            spec.ttl_beats,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(spec.cont, "cont") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(oid, "oid") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(status, "status") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(summary, "summary") }?,
        )
    })
}

unsafe extern "C" fn h_op_snapshot(call: *mut cep_call, oid: cep_str, label: cep_str) -> i32 {
    with_call(call, |s| {
        s.call
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            .op_snapshot(unsafe { arg(oid, "oid") }?, unsafe { arg(label, "label") }?)
    })
}

unsafe extern "C" fn h_ep_start(
    call: *mut cep_call,
    spec: *const cep_episode_spec,
    eid: *mut cep_str,
) -> i32 {
    with_call(call, |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let spec = unsafe { spec_arg(spec, "cep_episode_spec") }?;
        let id = s.call.ep_start(
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(spec.signal, "signal") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            optional(unsafe { arg(spec.target, "target") }?),
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(oid, "oid") }?,
            // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
            unsafe { arg(want, "want") }?,
            ttl,
        )
    })
}

unsafe extern "C" fn h_ep_close(call: *mut cep_call, status: cep_str, summary: cep_str) -> i32 {
    with_call(call, |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        s.call.ep_close(unsafe { arg(status, "status") }?, unsafe {
            arg(summary, "summary")
        }?)
    })
}

unsafe extern "C" fn h_ep_cancel(call: *mut cep_call, eid: cep_str, reason: cep_str) -> i32 {
    with_call(call, |s| {
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        s.call.ep_cancel(unsafe { arg(eid, "eid") }?, unsafe {
            arg(reason, "reason")
        }?)
    })
}

unsafe extern "C" fn h_ep_lease(call: *mut cep_call, path: cep_str, flags: u32) -> i32 {
    with_call(call, |s| {
        let flags = u8::try_from(flags).map_err(|_| bad("flags", "unknown lease flags"))?;
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        s.call.ep_lease(unsafe { arg(path, "path") }?, flags)
    })
}

unsafe extern "C" fn h_ep_release(call: *mut cep_call, path: cep_str) -> i32 {
    // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let signal = unsafe { arg(signal, "signal") }?;
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
        let target = optional(unsafe { arg(target, "target") }?);
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
        // SAFETY: the arguments of a host call point to memory the plugin keeps valid for the call (cep.h).
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
