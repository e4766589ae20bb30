//! Reading the descriptor table a Lua script returns.
//!
//! Fields mirror `PluginDescriptor`; lists are Lua sequences of strings.
//! An enzyme is `{ name, signal, label?, match = "exact"|"prefix", before?,
//! after?, reads?, writes?, idempotent?, stateful?, emits?, run = function }`;
//! an organ `{ kind, root, label?, constructor?, validator?, destructor?,
//! depends_on? }`. A missing or mistyped field is an error naming it.

use cep_sdk::descriptor::{EnzymeFlags, MatchKind};
use cep_sdk::{AbiVersion, EnzymeDescriptor, OrganDescriptor, PluginDescriptor};
use mlua::{FromLua, Function, Table, Value};

fn field<T: FromLua>(table: &Table, key: &str, at: &str) -> Result<Option<T>, String> {
    table
        .get::<Option<T>>(key)
        .map_err(|e| format!("{at}.{key}: {}", super::first_line(&e.to_string())))
}

fn required<T: FromLua>(table: &Table, key: &str, at: &str) -> Result<T, String> {
    field(table, key, at)?.ok_or_else(|| format!("{at}.{key} is missing"))
}

fn strings(table: &Table, key: &str, at: &str) -> Result<Vec<String>, String> {
    let Some(list) = field::<Table>(table, key, at)? else {
        return Ok(Vec::new());
    };
    list.sequence_values::<String>()
        .enumerate()
        .map(|(i, v)| {
            v.map_err(|e| {
                format!(
                    "{at}.{key}[{}]: {}",
                    i + 1,
                    super::first_line(&e.to_string())
                )
            })
        })
        .collect()
}

fn tables(table: &Table, key: &str, at: &str) -> Result<Vec<Table>, String> {
    let Some(list) = field::<Table>(table, key, at)? else {
        return Ok(Vec::new());
    };
    list.sequence_values::<Table>()
        .enumerate()
        .map(|(i, v)| {
            v.map_err(|e| {
                format!(
                    "{at}.{key}[{}]: {}",
                    i + 1,
                    super::first_line(&e.to_string())
                )
            })
        })
        .collect()
}

fn flag(table: &Table, key: &str, at: &str) -> Result<bool, String> {
    Ok(field::<bool>(table, key, at)?.unwrap_or(false))
}

/// The descriptor and, in order, each declared enzyme's `run` function:
/// the returned table's `enzymes`, then those declared with `cep.enzyme`
/// (`registered`), in call order.
pub(super) fn read(
    table: &Table,
    registered: &Table,
) -> Result<(PluginDescriptor, Vec<Function>), String> {
    let at = "descriptor";
    let name: String = required(table, "name", at)?;
    let version: String = required(table, "version", at)?;
    let mut d = super::lua_descriptor(&name, &version);
    if let Some(abi) = field::<String>(table, "abi", at)? {
        d.abi =
            parse_abi(&abi).ok_or_else(|| format!("descriptor.abi {abi:?} is not major.minor"))?;
    }
    d.capabilities = strings(table, "capabilities", at)?;
    let mut functions = Vec::new();
    let listed = tables(table, "enzymes", at)?;
    let declared: Vec<Table> = registered
        .sequence_values::<Table>()
        .collect::<mlua::Result<_>>()
        .map_err(|e| e.to_string())?;
    let all = listed
        .iter()
        .enumerate()
        .map(|(i, e)| (format!("enzymes[{}]", i + 1), e))
        .chain(
            declared
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("cep.enzyme call {}", i + 1), e)),
        );
    for (at, e) in all {
        let match_kind = match field::<String>(e, "match", &at)?.as_deref() {
            None | Some("exact") => MatchKind::Exact,
            Some("prefix") => MatchKind::Prefix,
            Some(other) => {
                return Err(format!(
                    "{at}.match {other:?}: expected \"exact\" or \"prefix\""
                ))
            }
        };
        d.enzymes.push(EnzymeDescriptor {
            name: required(e, "name", &at)?,
            label: field(e, "label", &at)?.unwrap_or_default(),
            signal: required(e, "signal", &at)?,
            match_kind,
            before: strings(e, "before", &at)?,
            after: strings(e, "after", &at)?,
            flags: EnzymeFlags {
                idempotent: flag(e, "idempotent", &at)?,
                stateful: flag(e, "stateful", &at)?,
                emits: flag(e, "emits", &at)?,
            },
            reads: strings(e, "reads", &at)?,
            writes: strings(e, "writes", &at)?,
        });
        match e.get::<Value>("run").map_err(|e| e.to_string())? {
            Value::Function(f) => functions.push(f),
            other => {
                return Err(format!(
                    "{at}.run must be a function, not a {}",
                    other.type_name()
                ))
            }
        }
    }
    for (i, o) in tables(table, "organs", at)?.iter().enumerate() {
        let at = format!("organs[{}]", i + 1);
        let mut organ = OrganDescriptor::new(
            &required::<String>(o, "kind", &at)?,
            &required::<String>(o, "root", &at)?,
        );
        organ.label = field(o, "label", &at)?.unwrap_or_default();
        organ.constructor = field(o, "constructor", &at)?;
        organ.validator = field(o, "validator", &at)?;
        organ.destructor = field(o, "destructor", &at)?;
        organ.depends_on = strings(o, "depends_on", &at)?;
        d.organs.push(organ);
    }
    if field::<Value>(table, "adapters", at)?.is_some_and(|v| !v.is_nil()) {
        return Err(
            "descriptor.adapters: Lua plugins cannot have adapters (they would need threads)"
                .to_owned(),
        );
    }
    Ok((d, functions))
}

fn parse_abi(text: &str) -> Option<AbiVersion> {
    let (major, minor) = text.split_once('.')?;
    Some(AbiVersion {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}
