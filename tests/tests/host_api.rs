//! The host API is declared once (`cep_sdk::api::OPERATIONS`): every
//! binding carries exactly the operations listed, under the names listed,
//! and refuses a plugin that lacks the capability the list names.

use std::collections::BTreeSet;

use cep_host::plugin::PluginHost;
use cep_host::{Config, Runtime};
use cep_sdk::api::{Binding, Needs, Operation, Type, OPERATIONS};
use cep_tests::plugins::workspace;

/// The names `binding` should carry.
fn listed(binding: Binding) -> BTreeSet<String> {
    OPERATIONS
        .iter()
        .filter_map(|op| op.name_in(binding))
        .map(str::to_owned)
        .collect()
}

/// The function-pointer fields of the struct `name` in Rust source.
fn rust_fields(source: &str, name: &str) -> BTreeSet<String> {
    let start = source
        .find(&format!("pub struct {name} {{"))
        .unwrap_or_else(|| panic!("struct {name} not found"));
    let body = &source[start..start + source[start..].find("\n}").unwrap()];
    body.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line.strip_prefix("pub ")?;
            let (field, ty) = rest.split_once(':')?;
            // A field of a function type, on this line or the next.
            (ty.trim().is_empty() || ty.contains("extern \"C\" fn")).then(|| field.to_owned())
        })
        .collect()
}

#[test]
fn the_native_table_holds_the_listed_operations() {
    let source = std::fs::read_to_string(workspace().join("sdk/src/abi.rs")).unwrap();
    let fields = rust_fields(&source, "HostApi");
    assert_eq!(fields, listed(Binding::Native));
}

#[test]
fn the_c_table_holds_the_listed_operations() {
    let header = std::fs::read_to_string(workspace().join("include/cep.h")).unwrap();
    let end = header.find("} cep_host_api;").unwrap();
    let start = header[..end].rfind("typedef struct {").unwrap();
    let fields: BTreeSet<String> = header[start..end]
        .split("(*")
        .skip(1)
        .map(|rest| rest[..rest.find(')').unwrap()].to_owned())
        .collect();
    assert_eq!(fields, listed(Binding::C));
}

#[test]
fn the_wasm_imports_are_the_listed_operations_gated_by_the_listed_capability() {
    let all: BTreeSet<&str> = cep_host::plugin::wasm::linked(|_| true)
        .into_iter()
        .collect();
    let wasm: BTreeSet<&str> = OPERATIONS
        .iter()
        .filter(|op| op.wasm.is_some())
        .map(|op| op.name)
        .collect();
    assert_eq!(all, wasm);
    for held in [
        &[Needs::Nothing][..],
        &[Needs::Nothing, Needs::Write],
        &[Needs::Nothing, Needs::Emit],
    ] {
        let linked: BTreeSet<&str> = cep_host::plugin::wasm::linked(|n| held.contains(&n))
            .into_iter()
            .collect();
        let expected: BTreeSet<&str> = OPERATIONS
            .iter()
            .filter(|op| op.wasm.is_some() && held.contains(&op.needs))
            .map(|op| op.name)
            .collect();
        assert_eq!(linked, expected, "holding {held:?}");
    }
}

#[test]
fn the_lua_table_holds_the_listed_operations() {
    let names: BTreeSet<String> = cep_host::plugin::lua::cep_functions().into_iter().collect();
    assert_eq!(names, listed(Binding::Lua));
}

/// A Lua expression for a dummy argument of `ty` named `name`.
fn lua_arg(name: &str, ty: Type) -> String {
    match ty {
        Type::Text if name == "path" => "\"/data/x\"".into(),
        Type::Text if name == "signal" => "\"sig/x\"".into(),
        Type::Text => "\"x\"".into(),
        Type::OptText => "nil".into(),
        Type::Bool => "true".into(),
        Type::U64 | Type::U32 => "1".into(),
        Type::Value | Type::OptValue => "1".into(),
        Type::Flags => "{ data = true }".into(),
        Type::OpSpec => "{ verb = \"op/x\" }".into(),
        Type::AwaitSpec => "{ want = \"ist:ok\", cont = \"sig/x\" }".into(),
        Type::EpisodeSpec => "{ callback = \"t.run\", signal = \"sig/x\" }".into(),
        Type::Function => "function() end".into(),
        Type::Unit | Type::Names => "nil".into(),
    }
}

/// Every operation is reachable from a Lua plugin, and each one the list
/// says needs a capability is refused, naming the capability, to a plugin
/// granted nothing; the others are not refused for a capability. The rule
/// is `plugin::api::Call`'s, which every binding calls.
#[test]
fn a_plugin_granted_nothing_is_refused_exactly_the_operations_that_need_a_capability() {
    let calls: Vec<(&Operation, String)> = OPERATIONS
        .iter()
        .filter_map(|op| {
            let name = op.name_in(Binding::Lua)?;
            let args: Vec<String> = op.args.iter().map(|(n, t)| lua_arg(n, *t)).collect();
            Some((op, format!("cep.{name}({})", args.join(", "))))
        })
        .collect();
    let body: String = calls
        .iter()
        .map(|(op, call)| {
            format!(
                "do local ok, e = pcall(function() return {call} end) out[#out + 1] = \"{}=\" .. (ok and \"ok\" or (string.gsub(tostring(e), \"[\\n;]\", \" \"))) end\n",
                op.name
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.lua");
    std::fs::write(
        &file,
        format!(
            "return {{ name = \"t\", version = \"0.1.0\", capabilities = {{ \"write:/data/t\", \"emit:*\" }},\n  enzymes = {{ {{ name = \"t.run\", signal = \"go\", run = function()\n local out = {{}}\n{body} error(table.concat(out, \";\")) end }} }} }}\n"
        ),
    )
    .unwrap();
    let config = Config {
        plugins: vec![file],
        ..Config::default()
    };
    let mut runtime = Runtime::new(config.clone()).unwrap();
    let host = PluginHost::bootstrap(&mut runtime, &config).unwrap();
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    runtime.run(6).unwrap();
    cep_tests::world::inject(&runtime, "go", None, None);
    runtime.run(2).unwrap();
    let facts = cep_tests::facts(&runtime, "enzyme:fatal");
    let report = &facts
        .iter()
        .find(|f| f.note.contains("t.run failed"))
        .unwrap_or_else(|| panic!("no report among {facts:#?}"))
        .note;
    for (op, _) in &calls {
        let line = report
            .split(';')
            .find(|l| l.contains(&format!("{}=", op.name)))
            .unwrap_or_else(|| panic!("{} did not run: {report}", op.name));
        let denied = line.contains("capability");
        assert_eq!(
            denied,
            op.needs != Needs::Nothing,
            "{}: needs {:?}, got {line}",
            op.name,
            op.needs
        );
    }
}
