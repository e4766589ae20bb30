//! The `cep` table: the one host API bound for Lua.
//!
//! Each function finds the running call through the VM's slot and calls
//! [`Call`], so parsing, capability checks and errors are the same as for
//! every other plugin kind. A refused call raises a Lua error with the
//! host's message (a script may `pcall` it). Outside an enzyme call (while
//! the script loads) they raise an error; `cep.null` is always there.
//!
//! Values: `nil` ↔ no value, `cep.null` ↔ null, booleans, integers ↔ i64,
//! floats ↔ f64, strings ↔ text (bytes when not UTF-8; bytes read back
//! become strings). Tables are not values.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cep_sdk::abi::{LEASE_DATA, LEASE_DESCENDANTS, LEASE_STORE};
use cep_sdk::{Path, Value};
use mlua::{FromLuaMulti, Function, IntoLuaMulti, LightUserData, Lua, MultiValue, Table};

use super::super::api::{ApiError, Call};
use super::{delay_signal, LuaCall, Slot};
use crate::Impulse;

fn refused(e: ApiError) -> mlua::Error {
    mlua::Error::runtime(e.to_string())
}

/// The call running in the VM.
fn current<'x>(slot: &Slot) -> mlua::Result<&'x mut LuaCall<'x, 'x>> {
    let ptr = slot.call.load(Ordering::Acquire);
    if ptr.is_null() {
        return Err(mlua::Error::runtime(
            "cep: host functions work only inside an enzyme call",
        ));
    }
    // SAFETY: the pointer is set by `LuaEnzyme::call` for the call now
    // running on this thread (the VM's lock is held) and cleared before it
    // returns.
    Ok(unsafe { &mut *(ptr as *mut LuaCall<'x, 'x>) })
}

/// Converts a Lua value to a cell value (`nil` is none).
pub(super) fn to_cell(v: mlua::Value) -> mlua::Result<Option<Value>> {
    Ok(Some(match v {
        mlua::Value::Nil => return Ok(None),
        mlua::Value::LightUserData(p) if p.0.is_null() => Value::Null,
        mlua::Value::Boolean(b) => Value::Bool(b),
        mlua::Value::Integer(i) => Value::I64(i),
        mlua::Value::Number(f) => Value::F64(f),
        mlua::Value::String(s) => match s.to_str() {
            Ok(text) => Value::text(&text),
            Err(_) => Value::bytes(&s.as_bytes()),
        },
        other => {
            return Err(mlua::Error::runtime(format!(
                "a {} cannot be stored in a cell (values are nil, cep.null, booleans, numbers and strings)",
                other.type_name()
            )))
        }
    }))
}

/// Converts a cell value to Lua.
pub(super) fn to_lua(lua: &Lua, v: Option<&Value>) -> mlua::Result<mlua::Value> {
    Ok(match v {
        None => mlua::Value::Nil,
        Some(Value::Null) => mlua::Value::LightUserData(LightUserData(std::ptr::null_mut())),
        Some(Value::Bool(b)) => mlua::Value::Boolean(*b),
        Some(Value::I64(i)) => mlua::Value::Integer(*i),
        Some(Value::F64(f)) => mlua::Value::Number(*f),
        Some(Value::Text(t)) => mlua::Value::String(lua.create_string(t.as_bytes())?),
        Some(Value::Bytes(b)) => mlua::Value::String(lua.create_string(b)?),
    })
}

/// The arguments of a `run` function: the payload and the target.
pub(super) fn call_args(lua: &Lua, call: &Call<'_, '_>) -> mlua::Result<MultiValue> {
    let payload = to_lua(lua, call.payload())?;
    let target = match call.target() {
        Some(t) => mlua::Value::String(lua.create_string(t)?),
        None => mlua::Value::Nil,
    };
    Ok(MultiValue::from_iter([payload, target]))
}

/// The longest error message a `cep` function raises, in bytes.
const ERROR_BYTES_MAX: usize = 1024;

/// Adds `cep.<name>`, a function of the running call. It returns `true`
/// and its results, or `false` and its error as a Lua string: the
/// environment wraps it into a function raising that string (prelude.lua),
/// so a refusal is an ordinary Lua error that counts against the VM's
/// memory limit like everything else the script makes.
fn add<A, R, F>(lua: &Lua, cep: &Table, slot: &Arc<Slot>, name: &str, f: F) -> mlua::Result<()>
where
    A: FromLuaMulti,
    R: IntoLuaMulti,
    F: Fn(&Lua, &mut LuaCall<'_, '_>, A) -> mlua::Result<R> + Send + 'static,
{
    let slot = slot.clone();
    let function = lua.create_function(move |lua, args: A| {
        let result = current(&slot)
            .and_then(|call| f(lua, call, args))
            .and_then(|r| r.into_lua_multi(lua))
            .map(|mut values| values.pop_front().unwrap_or(mlua::Value::Nil));
        protocol(lua, result)
    })?;
    cep.set(name, function)
}

/// A `cep` function's result in the `true, result` / `false, message`
/// form.
pub(super) fn protocol(
    lua: &Lua,
    result: mlua::Result<mlua::Value>,
) -> mlua::Result<(bool, mlua::Value)> {
    match result {
        Ok(value) => Ok((true, value)),
        Err(e) => {
            let message = super::error_message(&e);
            let message = crate::plugin::api::capped(&message, ERROR_BYTES_MAX);
            Ok((
                false,
                mlua::Value::String(lua.create_string(message.as_bytes())?),
            ))
        }
    }
}

fn text_field(spec: &Table, key: &str) -> mlua::Result<Option<String>> {
    spec.get::<Option<String>>(key)
}

/// Builds the `cep` table for one plugin environment.
pub(super) fn table(lua: &Lua, slot: &Arc<Slot>) -> mlua::Result<Table> {
    let cep = lua.create_table()?;
    cep.set(
        "null",
        mlua::Value::LightUserData(LightUserData(std::ptr::null_mut())),
    )?;
    add(lua, &cep, slot, "beat", |_, c, ()| Ok(c.call.beat() as i64))?;
    add(lua, &cep, slot, "signal", |_, c, ()| Ok(c.call.signal()))?;
    add(lua, &cep, slot, "target", |_, c, ()| Ok(c.call.target()))?;
    add(lua, &cep, slot, "payload", |lua, c, ()| {
        to_lua(lua, c.call.payload())
    })?;
    add(lua, &cep, slot, "enzyme", |_, c, ()| {
        Ok(c.call.enzyme().to_owned())
    })?;
    add(lua, &cep, slot, "read", |lua, c, path: String| {
        let value = c.call.read(&path).map_err(refused)?;
        to_lua(lua, value.as_ref())
    })?;
    add(lua, &cep, slot, "children", |_, c, path: String| {
        let names = c.call.children(&path).map_err(refused)?;
        Ok(names
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect::<Vec<_>>())
    })?;
    add(lua, &cep, slot, "exists", |_, c, path: String| {
        c.call.exists(&path).map_err(refused)
    })?;
    add(
        lua,
        &cep,
        slot,
        "write",
        |_, c, (path, value): (String, mlua::Value)| {
            let value = to_cell(value)?.ok_or_else(|| {
                mlua::Error::runtime("cep.write: nil is not a value (use cep.delete)")
            })?;
            c.call.write(&path, value).map_err(refused)
        },
    )?;
    add(lua, &cep, slot, "delete", |_, c, path: String| {
        c.call.delete(&path).map_err(refused)
    })?;
    add(
        lua,
        &cep,
        slot,
        "append",
        |_, c, (path, value): (String, mlua::Value)| {
            let value = to_cell(value)?
                .ok_or_else(|| mlua::Error::runtime("cep.append: nil is not a value"))?;
            c.call.append(&path, value).map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "emit",
        |_,
         c,
         (signal, target, payload, delay): (
            String,
            Option<String>,
            mlua::Value,
            Option<u32>,
        )| {
            let payload = to_cell(payload)?;
            c.call
                .emit(&signal, target.as_deref(), payload, delay.unwrap_or(0))
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "delay",
        |_, c, (beats, f): (u32, Function)| {
            if beats == 0 {
                return Err(mlua::Error::runtime(
                    "cep.delay: beats must be at least 1 (the callback runs that many beats later)",
                ));
            }
            let id = *c.next_delay;
            *c.next_delay += 1;
            c.delayed.set(id, f)?;
            let signal = Path::parse(&delay_signal(&c.call.plugin.name))
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
            c.call.cx.emit_after(
                beats - 1,
                Impulse::signal(signal).with_payload(Value::I64(id)),
            );
            Ok(id)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "bind",
        |_, c, (path, enzyme, propagate): (String, String, Option<bool>)| {
            c.call
                .bind(&path, &enzyme, propagate.unwrap_or(false))
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "unbind",
        |_, c, (path, enzyme): (String, String)| c.call.unbind(&path, &enzyme).map_err(refused),
    )?;
    add(
        lua,
        &cep,
        slot,
        "cei",
        |_, c, (severity, topic, note, subject): (String, String, String, Option<String>)| {
            c.call
                .cei(&severity, &topic, &note, subject.as_deref().unwrap_or(""))
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "log",
        |_, c, (level, message): (String, String)| c.call.log(&level, &message).map_err(refused),
    )?;
    add(lua, &cep, slot, "op_start", |_, c, spec: Table| {
        let verb: String = spec.get("verb")?;
        let payload = to_cell(spec.get("payload")?)?;
        let id = c
            .call
            .op_start(
                &verb,
                text_field(&spec, "target")?.as_deref(),
                &text_field(&spec, "mode")?.unwrap_or_default(),
                payload,
                spec.get::<Option<u64>>("ttl")?.unwrap_or(0),
            )
            .map_err(refused)?;
        Ok(id.as_str().to_owned())
    })?;
    add(
        lua,
        &cep,
        slot,
        "op_state",
        |_, c, (oid, state): (String, String)| c.call.op_state(&oid, &state).map_err(refused),
    )?;
    add(
        lua,
        &cep,
        slot,
        "op_await",
        |_, c, (oid, spec): (String, Table)| {
            let want: String = spec.get("want")?;
            let cont: String = spec.get("cont")?;
            let payload = to_cell(spec.get("payload")?)?;
            let ttl = spec.get::<Option<u64>>("ttl")?.unwrap_or(0);
            c.call
                .op_await(&oid, &want, ttl, &cont, payload)
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "op_close",
        |_, c, (oid, status, summary): (String, String, Option<String>)| {
            c.call
                .op_close(&oid, &status, &summary.unwrap_or_default())
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "op_snapshot",
        |_, c, (oid, label): (String, String)| c.call.op_snapshot(&oid, &label).map_err(refused),
    )?;
    add(lua, &cep, slot, "ep_snapshot", |_, c, label: String| {
        c.call.op_snapshot("", &label).map_err(refused)
    })?;
    add(lua, &cep, slot, "ep_start", |_, c, spec: Table| {
        let signal: String = spec.get("signal")?;
        let callback: String = spec.get("callback")?;
        let id = c
            .call
            .ep_start(
                &signal,
                text_field(&spec, "target")?.as_deref(),
                &callback,
                spec.get::<Option<bool>>("rw")?.unwrap_or(false),
                spec.get::<Option<u64>>("cpu_budget_ns")?.unwrap_or(0),
                spec.get::<Option<u64>>("io_budget_bytes")?.unwrap_or(0),
                spec.get::<Option<u64>>("max_beats")?.unwrap_or(0),
            )
            .map_err(refused)?;
        Ok(id.as_str().to_owned())
    })?;
    add(lua, &cep, slot, "ep_yield", |_, c, ()| {
        c.call.ep_yield().map_err(refused)
    })?;
    add(
        lua,
        &cep,
        slot,
        "ep_await",
        |_, c, (oid, want, ttl): (String, String, Option<u64>)| {
            c.call
                .ep_await(&oid, &want, ttl.unwrap_or(0))
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "ep_close",
        |_, c, (status, summary): (String, Option<String>)| {
            c.call
                .ep_close(&status, &summary.unwrap_or_default())
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "ep_cancel",
        |_, c, (eid, reason): (String, Option<String>)| {
            c.call
                .ep_cancel(&eid, &reason.unwrap_or_default())
                .map_err(refused)
        },
    )?;
    add(
        lua,
        &cep,
        slot,
        "ep_lease",
        |_, c, (path, flags): (String, Option<Table>)| {
            let mut bits = 0;
            if let Some(flags) = flags {
                for (name, bit) in [
                    ("store", LEASE_STORE),
                    ("data", LEASE_DATA),
                    ("descendants", LEASE_DESCENDANTS),
                ] {
                    if flags.get::<Option<bool>>(name)?.unwrap_or(false) {
                        bits |= bit;
                    }
                }
            }
            c.call.ep_lease(&path, bits).map_err(refused)
        },
    )?;
    add(lua, &cep, slot, "ep_release", |_, c, path: String| {
        c.call.ep_release(&path).map_err(refused)
    })?;
    add(lua, &cep, slot, "ep_check_cancel", |_, c, ()| {
        Ok(c.call.check_cancel())
    })?;
    add(lua, &cep, slot, "ep_account_io", |_, c, bytes: u64| {
        c.call.account_io(bytes).map_err(refused)
    })?;
    Ok(cep)
}
