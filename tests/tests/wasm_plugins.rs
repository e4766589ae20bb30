//! Wasm plugins end to end: real modules in wasmtime — the Rust example
//! built with `--target wasm32-unknown-unknown`, the `.wat` example, and
//! hostile modules written in WebAssembly text and compiled here with the
//! `wat` crate.

use std::path::{Path, PathBuf};

use cep_host::plugin::{load_file_with, LoadError, PluginError, PluginHost};
use cep_host::{Config, Hash, Runtime, Value};
use cep_tests::plugins::{cep_bin, ping_wat, wasm_module};
use cep_tests::world::{self, int, read, text};
use cep_tests::{backends, facts};

fn tally() -> PathBuf {
    wasm_module("cep-plugin-tally")
}

/// A configuration with `plugins`, the examples' grants, and no module
/// cache (a test of the cache sets its own).
fn config(plugins: Vec<PathBuf>) -> Config {
    let mut config = Config {
        plugins,
        wasm_cache_dir: Some(PathBuf::new()),
        ..Config::default()
    };
    for (name, caps) in [
        ("tally", &["write:/data/tally", "emit:ping"][..]),
        ("ping", &["write:/data/ping"]),
        ("g", &["write:/data/g", "emit:g"]),
    ] {
        config
            .grants
            .insert(name.into(), caps.iter().map(|c| c.to_string()).collect());
    }
    config
}

fn boot(config: &Config) -> (Runtime, PluginHost) {
    let (runtime, host) = world::boot(config);
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    (runtime, host)
}

fn inject(runtime: &Runtime, signal: &str, payload: Option<Value>) {
    world::inject(runtime, signal, None, payload);
}

/// WebAssembly text of a guest with the given descriptor JSON, imports,
/// `cep_call` body (its parameter is `$e`) and extra module fields.
fn guest(descriptor: &str, imports: &str, call: &str, extra: &str) -> String {
    let escaped = descriptor.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (data (i32.const 1024) "{escaped}")
  (func (export "cep_abi_1_0"))
  (func (export "cep_describe") (result i64)
    (i64.or (i64.const 1024) (i64.shl (i64.const {len}) (i64.const 32))))
  (func (export "cep_call") (param $e i32) (result i64) {call})
  {extra}
)"#,
        len = descriptor.len()
    )
}

/// The descriptor JSON of wasm plugin `g` with one enzyme `g.run` on
/// signal `g/run`.
fn descriptor(caps: &[&str]) -> String {
    let caps: Vec<String> = caps.iter().map(|c| format!("{c:?}")).collect();
    format!(
        r#"{{"name":"g","version":"0.1.0","abi":{{"major":1,"minor":0}},"kind":"wasm","capabilities":[{}],"enzymes":[{{"name":"g.run","signal":"g/run"}}]}}"#,
        caps.join(",")
    )
}

/// Compiles `text` with the `wat` crate into `dir/<name>.wasm`.
fn module(dir: &Path, name: &str, text: &str) -> PathBuf {
    let bytes = wat::parse_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let file = dir.join(format!("{name}.wasm"));
    std::fs::write(&file, bytes).unwrap();
    file
}

/// A one-enzyme plugin `g` whose `cep_call` body is `call`.
fn g(dir: &Path, imports: &str, call: &str, extra: &str) -> PathBuf {
    let d = descriptor(&["write:/data/g", "emit:g"]);
    module(dir, "g", &guest(&d, imports, call, extra))
}

fn load_error(file: &Path) -> LoadError {
    match load_file_with(file, &config(vec![])) {
        Ok(loaded) => panic!("{} loaded as {}", file.display(), loaded.descriptor.name),
        Err(PluginError { error, .. }) => error,
    }
}

const WRITE: &str = r#"(import "cep" "write" (func $write (param i32 i32 i32 i32) (result i32)))"#;
const LOG: &str = r#"(import "cep" "log" (func $log (param i32 i32 i32 i32)))"#;

// ---------------------------------------------------------------------------
// The examples.

#[test]
fn the_rust_and_wat_examples_run_beside_each_other() {
    let (mut runtime, _host) = boot(&config(vec![tally(), ping_wat()]));
    // op/boot runs the organ constructor a few beats in.
    runtime.run(6).unwrap();
    assert_eq!(
        int(&runtime, "/data/tally/count"),
        Some(0),
        "constructor ran"
    );
    inject(&runtime, "tally/add", Some(Value::I64(7)));
    inject(&runtime, "ping/pong", Some(Value::text("hello")));
    runtime.run(1).unwrap();
    inject(&runtime, "tally/add", Some(Value::I64(5)));
    inject(&runtime, "ping/pong", None);
    let beat = runtime.run(1).unwrap().unwrap().beat;
    assert_eq!(int(&runtime, "/data/tally/count"), Some(12));
    assert_eq!(int(&runtime, "/data/tally/beat"), Some(beat as i64));
    assert_eq!(int(&runtime, "/data/ping/count"), Some(2));
    assert_eq!(text(&runtime, "/data/ping/last").as_deref(), Some("hello"));
    // Passing 10, tally (Rust) emitted ping/pong with the count to ping
    // (WebAssembly text), which ran next beat.
    runtime.run(1).unwrap();
    assert_eq!(int(&runtime, "/data/ping/count"), Some(3));
    assert_eq!(int(&runtime, "/data/ping/last"), Some(12));
    for (name, version) in [("tally", "0.1.0"), ("ping", "0.1.0")] {
        let kind = text(&runtime, &format!("/sys/plugins/{name}/{version}/kind"));
        assert_eq!(kind.as_deref(), Some("wasm"));
    }
    assert!(facts(&runtime, "wasm:trap").is_empty());
}

#[test]
fn nan_results_are_canonical() {
    let (mut runtime, _host) = boot(&config(vec![ping_wat()]));
    inject(&runtime, "ping/nan", None);
    runtime.run(2).unwrap();
    assert_eq!(
        int(&runtime, "/data/ping/nan"),
        Some(0x7ff8_0000_0000_0000),
        "0.0/0.0 must give the canonical NaN (x86 would give the negative one)"
    );
}

#[test]
fn an_instance_keeps_its_memory_until_a_failure_resets_it() {
    let mut config = config(vec![tally()]);
    config.wasm_limits.insert(
        "tally".into(),
        cep_host::config::WasmLimit {
            fuel: Some(200_000),
            memory_max: None,
        },
    );
    let (mut runtime, _host) = boot(&config);
    for _ in 0..3 {
        inject(&runtime, "tally/keep", None);
        runtime.run(1).unwrap();
    }
    runtime.run(1).unwrap();
    assert_eq!(int(&runtime, "/data/tally/kept"), Some(3));
    inject(&runtime, "tally/burn", Some(Value::I64(10_000_000)));
    runtime.run(2).unwrap();
    let fuel = facts(&runtime, "wasm:fuel");
    assert_eq!(fuel.len(), 1, "{fuel:?}");
    assert!(
        fuel[0].note.contains("plugin tally")
            && fuel[0].note.contains("enzyme tally.burn")
            && fuel[0].note.contains("ran out of fuel (200000 per call)"),
        "{}",
        fuel[0].note
    );
    assert_eq!(read(&runtime, "/data/tally/burn"), None, "intents dropped");
    inject(&runtime, "tally/keep", None);
    runtime.run(2).unwrap();
    assert_eq!(
        int(&runtime, "/data/tally/kept"),
        Some(1),
        "the failed call reset the instance"
    );
    // A burn within the per-plugin fuel still runs.
    inject(&runtime, "tally/burn", Some(Value::I64(1_000)));
    runtime.run(2).unwrap();
    assert!(read(&runtime, "/data/tally/burn").is_some());
}

// ---------------------------------------------------------------------------
// Hostile modules.

#[test]
fn an_infinite_loop_runs_out_of_fuel_and_the_host_continues() {
    let dir = tempfile::tempdir().unwrap();
    let looping = g(dir.path(), "", "(loop $l (br $l)) (i64.const 0)", "");
    let (mut runtime, _host) = boot(&config(vec![looping, ping_wat()]));
    inject(&runtime, "g/run", None);
    inject(&runtime, "ping/pong", None);
    runtime.run(2).unwrap();
    let fuel = facts(&runtime, "wasm:fuel");
    assert_eq!(fuel.len(), 1);
    assert!(fuel[0]
        .note
        .contains("plugin g: enzyme g.run: ran out of fuel"));
    assert_eq!(int(&runtime, "/data/ping/count"), Some(1), "others ran");
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    assert_eq!(
        facts(&runtime, "wasm:fuel").len(),
        2,
        "the reset instance ran again"
    );
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = g(
        dir.path(),
        "",
        "(loop $l (drop (memory.grow (i32.const 16))) (br $l)) (i64.const 0)",
        "",
    );
    let mut config = config(vec![bomb]);
    config.wasm_memory_max = 4 << 20;
    let (mut runtime, _host) = boot(&config);
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    let memory = facts(&runtime, "wasm:memory");
    assert_eq!(memory.len(), 1, "{:?}", facts(&runtime, "wasm:trap"));
    assert!(
        memory[0]
            .note
            .contains("hit the memory cap of 4194304 bytes"),
        "{}",
        memory[0].note
    );
    runtime.run(1).unwrap();
}

#[test]
fn a_garbage_descriptor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = module(
        dir.path(),
        "garbage",
        &guest("{not json at all", "", "(i64.const 0)", ""),
    );
    let e = load_error(&file);
    assert!(
        matches!(&e, LoadError::Descriptor(m) if m.contains("not valid JSON")),
        "{e}"
    );
}

#[test]
fn an_oversized_descriptor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptor(&[]);
    // Claim 2 MiB (the memory has 1 page: the size check comes first).
    let text = guest(&d, "", "(i64.const 0)", "").replace(
        &format!("(i64.const {})", d.len()),
        &format!("(i64.const {})", 2 << 20),
    );
    let e = load_error(&module(dir.path(), "big", &text));
    assert!(
        matches!(&e, LoadError::Descriptor(m) if m.contains("2097152 bytes, more than the limit of 1048576")),
        "{e}"
    );
}

#[test]
fn a_descriptor_outside_memory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = descriptor(&[]);
    let text = guest(&d, "", "(i64.const 0)", "")
        .replace("(i64.or (i64.const 1024)", "(i64.or (i64.const 65500)");
    let e = load_error(&module(dir.path(), "oob", &text));
    assert!(
        matches!(&e, LoadError::Descriptor(m) if m.contains("lies outside memory (65536 bytes)")),
        "{e}"
    );
}

#[test]
fn an_outcome_pointer_outside_memory_is_fatal_and_contained() {
    let dir = tempfile::tempdir().unwrap();
    // ptr 0xfff0, length 64: past the end of the one page.
    let lying = g(
        dir.path(),
        "",
        "(i64.or (i64.const 0xfff0) (i64.shl (i64.const 64) (i64.const 32)))",
        "",
    );
    let (mut runtime, _host) = boot(&config(vec![lying, ping_wat()]));
    inject(&runtime, "g/run", None);
    inject(&runtime, "ping/pong", None);
    runtime.run(2).unwrap();
    let abi = facts(&runtime, "wasm:abi");
    assert_eq!(abi.len(), 1);
    assert!(
        abi[0]
            .note
            .contains("outcome record at 0xfff0 (64 bytes) lies outside memory"),
        "{}",
        abi[0].note
    );
    assert_eq!(int(&runtime, "/data/ping/count"), Some(1));
}

#[test]
fn a_pointer_outside_memory_passed_to_the_host_traps_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let lying = g(
        dir.path(),
        WRITE,
        "(drop (call $write (i32.const 0x10000) (i32.const 4) (i32.const 0) (i32.const 1))) (i64.const 0)",
        "",
    );
    let (mut runtime, _host) = boot(&config(vec![lying]));
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    let trap = facts(&runtime, "wasm:trap");
    assert_eq!(trap.len(), 1);
    assert!(
        trap[0]
            .note
            .contains("cep.write: path: 4 bytes at 0x10000 lie outside memory"),
        "{}",
        trap[0].note
    );
}

#[test]
fn a_module_without_the_abi_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = guest(&descriptor(&[]), "", "(i64.const 0)", "")
        .replace(r#"(func (export "cep_abi_1_0"))"#, "");
    let e = load_error(&module(dir.path(), "nomarker", &text));
    assert!(
        matches!(&e, LoadError::NotAPlugin(m) if m.contains("exports no ABI marker (expected cep_abi_1_0)")),
        "{e}"
    );
}

#[test]
fn a_module_of_another_abi_major_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        guest(&descriptor(&[]), "", "(i64.const 0)", "").replace("cep_abi_1_0", "cep_abi_2_0");
    let e = load_error(&module(dir.path(), "major", &text));
    assert!(
        matches!(&e, LoadError::WasmAbi(m) if m.contains("exports cep_abi_2_0: guest ABI 2.0, but this host speaks 1.x")),
        "{e}"
    );
}

#[test]
fn an_import_the_capabilities_do_not_grant_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Asks for no write capability, imports cep.write anyway.
    let d = descriptor(&["emit:g"]);
    let file = module(dir.path(), "g", &guest(&d, WRITE, "(i64.const 0)", ""));
    let (_runtime, host) = world::boot(&config(vec![file]));
    let rejected = host.rejected();
    assert_eq!(rejected.len(), 1);
    let message = rejected[0].to_string();
    assert!(
        message.contains("import cep.write is not granted: it needs a write:<path> capability, and plugin g holds none"),
        "{message}"
    );
}

#[test]
fn imports_that_are_not_host_functions_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    for (import, expected) in [
        (
            r#"(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))"#,
            "import wasi_snapshot_preview1.clock_time_get: WASI is not granted",
        ),
        (
            r#"(import "env" "now" (func (result i64)))"#,
            "import env.now: a cep plugin imports host functions from module \"cep\" only",
        ),
        (
            r#"(import "cep" "open_socket" (func (result i32)))"#,
            "import cep.open_socket: there is no such host function",
        ),
    ] {
        let file = module(
            dir.path(),
            "imp",
            &guest(&descriptor(&[]), import, "(i64.const 0)", ""),
        );
        let e = load_error(&file);
        assert!(
            matches!(&e, LoadError::WasmAbi(m) if m.contains(expected)),
            "{e}"
        );
    }
}

#[test]
fn a_start_function_that_traps_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = module(
        dir.path(),
        "start",
        &guest(
            &descriptor(&[]),
            "",
            "(i64.const 0)",
            "(func $boom unreachable) (start $boom)",
        ),
    );
    let e = load_error(&file);
    assert!(
        matches!(&e, LoadError::Init(m) if m.contains("the start function trapped")),
        "{e}"
    );
    // The cause is on the first line, and no backtrace comes with it.
    let text = e.to_string();
    let first = text.lines().next().unwrap();
    assert!(first.contains("unreachable"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(!text.contains("backtrace"), "{text}");
}

#[test]
fn an_abi_marker_with_an_absurd_version_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let text = guest(&descriptor(&[]), "", "(i64.const 0)", "")
        .replace("cep_abi_1_0", "cep_abi_99999999999999999999_0");
    let e = load_error(&module(dir.path(), "absurd", &text));
    assert!(
        matches!(&e, LoadError::WasmAbi(m) if m.contains("cep_abi_99999999999999999999_0") && m.contains("not two numbers")),
        "{e}"
    );
}

/// A trap in a call reaches the state as one line naming its cause.
#[test]
fn a_trap_in_a_call_leaves_no_backtrace_in_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = g(dir.path(), "", "unreachable", "");
    let (mut runtime, _host) = boot(&config(vec![file]));
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    let trap = facts(&runtime, "wasm:trap");
    assert_eq!(trap.len(), 1, "{trap:?}");
    assert!(trap[0].note.contains("unreachable"), "{}", trap[0].note);
    assert!(!trap[0].note.contains('\n'), "{}", trap[0].note);
    assert!(!trap[0].note.contains("backtrace"), "{}", trap[0].note);
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fake.wasm");
    std::fs::write(&file, b"\x7fELF not a module").unwrap();
    let e = load_error(&file);
    assert!(
        matches!(&e, LoadError::NotAPlugin(m) if m.contains("does not start with \\0asm")),
        "{e}"
    );
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, b"\0asm\x01\0\0\0\x01\x05").unwrap();
    let e = load_error(&truncated);
    assert!(
        matches!(&e, LoadError::NotAPlugin(m) if m.contains("invalid WebAssembly")),
        "{e}"
    );
}

#[test]
fn a_guest_panic_message_reaches_the_trap_fact() {
    let dir = tempfile::tempdir().unwrap();
    let file = g(
        dir.path(),
        LOG,
        "(call $log (i32.const 100) (i32.const 5) (i32.const 110) (i32.const 4)) unreachable",
        r#"(data (i32.const 100) "panic") (data (i32.const 110) "boom")"#,
    );
    let (mut runtime, _host) = boot(&config(vec![file]));
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    let trap = facts(&runtime, "wasm:trap");
    assert_eq!(trap.len(), 1);
    assert!(
        trap[0].note.contains("unreachable") && trap[0].note.contains("the guest panicked: boom"),
        "{}",
        trap[0].note
    );
}

#[test]
fn a_refused_host_call_returns_refused_with_the_message_and_a_usage_fact() {
    let dir = tempfile::tempdir().unwrap();
    // Write /data/x (not granted) and store the result code and the error
    // message under /data/g.
    let error = r#"(import "cep" "error" (func $error (param i32 i32) (result i32)))"#;
    let call = r#"
      (local $rc i32) (local $n i32)
      (local.set $rc (call $write (i32.const 200) (i32.const 7) (i32.const 300) (i32.const 1)))
      (i32.store8 (i32.const 400) (i32.const 2))
      (i64.store (i32.const 401) (i64.extend_i32_s (local.get $rc)))
      (drop (call $write (i32.const 220) (i32.const 10) (i32.const 400) (i32.const 9)))
      (i32.store8 (i32.const 2047) (i32.const 4))
      (local.set $n (call $error (i32.const 2048) (i32.const 1024)))
      (drop (call $write (i32.const 240) (i32.const 10) (i32.const 2047) (i32.add (local.get $n) (i32.const 1))))
      (i64.const 0)"#;
    let data = r#"(data (i32.const 200) "/data/x") (data (i32.const 220) "/data/g/rc") (data (i32.const 240) "/data/g/er") (data (i32.const 300) "\00")"#;
    let d = descriptor(&["write:/data/g"]);
    let file = module(
        dir.path(),
        "g",
        &guest(&d, &format!("{WRITE} {error}"), call, data),
    );
    let (mut runtime, _host) = boot(&config(vec![file]));
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    assert_eq!(int(&runtime, "/data/g/rc"), Some(-2));
    let message = text(&runtime, "/data/g/er").unwrap_or_default();
    assert!(
        message.contains("plugin g lacks capability write:/data/x"),
        "{message}"
    );
    assert_eq!(read(&runtime, "/data/x"), None);
    assert_eq!(facts(&runtime, "plugin:capability").len(), 1);
}

// ---------------------------------------------------------------------------
// The module cache.

#[test]
fn compiled_modules_are_cached_on_disk_and_a_corrupt_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = config(vec![]);
    config.wasm_cache_dir = Some(cache.path().to_owned());
    let load = |config: &Config| {
        let loaded = load_file_with(&tally(), config).expect("loads");
        match loaded.code {
            cep_host::plugin::PluginCode::Wasm(module) => module.from_cache(),
            _ => panic!("not wasm"),
        }
    };
    assert!(!load(&config), "first load compiles");
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let key = cep_host::plugin::wasm::cache_key(&std::fs::read(tally()).unwrap());
    assert_eq!(
        entries[0].file_name().unwrap().to_str(),
        Some(&*format!("{key}.cwasm"))
    );
    assert!(load(&config), "second load comes from the cache");
    // Flip a byte of the compiled code: the checksum catches it.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&entries[0], bytes).unwrap();
    assert!(!load(&config), "a corrupt entry is recompiled, not trusted");
    assert!(load(&config), "and rewritten");
    // The cached module runs like a fresh one.
    let mut run = config.clone();
    run.plugins = vec![tally()];
    let (mut runtime, _host) = boot(&run);
    inject(&runtime, "tally/add", Some(Value::I64(3)));
    runtime.run(2).unwrap();
    assert_eq!(int(&runtime, "/data/tally/count"), Some(3));
}

// ---------------------------------------------------------------------------
// Hot reload.

/// Plugin `g` at `version`: `g.run` writes the version to /data/g/v.
fn g_version(dir: &Path, version: &str) -> PathBuf {
    let d = descriptor(&["write:/data/g"]).replace("0.1.0", version);
    let value = format!("\\04{version}");
    let call = format!(
        "(drop (call $write (i32.const 200) (i32.const 9) (i32.const 300) (i32.const {}))) (i64.const 0)",
        1 + version.len()
    );
    let data = format!(r#"(data (i32.const 200) "/data/g/v") (data (i32.const 300) "{value}")"#);
    module(
        dir,
        &format!("g-{version}"),
        &guest(&d, WRITE, &call, &data),
    )
}

#[test]
fn a_wasm_plugin_reloads_at_a_beat_boundary_as_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(vec![g_version(dir.path(), "0.1.0")]);
    let (mut runtime, mut host) = boot(&config);
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    assert_eq!(text(&runtime, "/data/g/v").as_deref(), Some("0.1.0"));
    host.reload(&mut runtime, &config, &g_version(dir.path(), "0.2.0"))
        .unwrap();
    let first = runtime.next_beat();
    inject(&runtime, "g/run", None);
    runtime.run(2).unwrap();
    assert_eq!(text(&runtime, "/data/g/v").as_deref(), Some("0.2.0"));
    assert_eq!(
        text(&runtime, "/sys/plugins/g/active").as_deref(),
        Some("0.2.0")
    );
    for version in ["0.1.0", "0.2.0"] {
        let kind = text(&runtime, &format!("/sys/plugins/g/{version}/kind"));
        assert_eq!(kind.as_deref(), Some("wasm"), "{version} kept in history");
    }
    assert_eq!(
        text(&runtime, "/sys/plugins/g/reloads/0/from").as_deref(),
        Some("0.1.0")
    );
    assert_eq!(
        int(&runtime, "/sys/plugins/g/reloads/0/beat"),
        Some(first as i64)
    );
    let older = host
        .reload(&mut runtime, &config, &g_version(dir.path(), "0.1.5"))
        .unwrap_err();
    assert!(older.to_string().contains("not newer"), "{older}");
}

#[test]
fn cep_run_reloads_a_wasm_plugin_and_replay_reproduces_it() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = g_version(dir.path(), "0.1.0");
    let v2 = g_version(dir.path(), "0.2.0");
    let cfg = dir.path().join("cep.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{:?}]\nwasm_cache_dir = \"\"\n[grants]\ng = [\"write:/data/g\"]\n",
            v1.display().to_string()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let reload = format!("4={}", v2.display());
    let out = std::process::Command::new(cep_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--beats", "8", "--reload", &reload, "--data-dir"])
        .arg(&data)
        .output()
        .expect("cep runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect = std::process::Command::new(cep_bin())
        .arg("inspect")
        .arg(&data)
        .arg("/sys/plugins/g")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&inspect.stdout);
    assert!(shown.contains("active = \"0.2.0\""), "{shown}");
    let replay = std::process::Command::new(cep_bin())
        .args(["replay", "--verify"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(
        replay.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
}

// ---------------------------------------------------------------------------
// Determinism.

/// Per-beat hashes of a scenario: tally adds, keeps and burns (the burn
/// runs out of fuel every fifth beat), ping pongs and checks NaN.
fn scenario(backend: &Config) -> Vec<Hash> {
    let mut config = config(vec![tally(), ping_wat()]);
    config.executor = backend.executor;
    config.workers = backend.workers;
    config.wasm_limits.insert(
        "tally".into(),
        cep_host::config::WasmLimit {
            fuel: Some(400_000),
            memory_max: None,
        },
    );
    let (mut runtime, _host) = boot(&config);
    let mut out = Vec::new();
    for beat in 0..40i64 {
        inject(&runtime, "tally/add", Some(Value::I64(beat % 7)));
        inject(&runtime, "tally/keep", None);
        let rounds = if beat % 5 == 4 {
            5_000_000
        } else {
            1_000 * beat
        };
        inject(&runtime, "tally/burn", Some(Value::I64(rounds)));
        inject(&runtime, "ping/pong", Some(Value::I64(beat)));
        if beat % 3 == 0 {
            inject(&runtime, "ping/nan", None);
        }
        out.push(runtime.step().unwrap().state_hash);
    }
    assert!(
        facts(&runtime, "wasm:fuel").len() >= 5,
        "the scenario must run out of fuel on some beats"
    );
    out.push(runtime.shutdown().unwrap().state_hash);
    out
}

#[test]
fn wasm_scenarios_give_the_same_hashes_on_every_run_and_executor() {
    let reference = scenario(&Config::default());
    assert_eq!(scenario(&Config::default()), reference, "second run");
    for (name, backend) in backends() {
        assert_eq!(scenario(&backend), reference, "{name}");
    }
}

// ---------------------------------------------------------------------------
// The same code, two targets.

/// The values tally leaves under /data/tally after a fixed input stream.
fn tally_values(module: PathBuf) -> Vec<(String, Option<i64>)> {
    let (mut runtime, _host) = boot(&config(vec![module]));
    runtime.run(6).unwrap();
    for beat in 0..12i64 {
        inject(&runtime, "tally/add", Some(Value::I64(beat * 3 % 11)));
        inject(&runtime, "tally/burn", Some(Value::I64(100 + beat)));
        runtime.run(1).unwrap();
    }
    runtime.run(1).unwrap();
    ["count", "beat", "burn"]
        .iter()
        .map(|cell| {
            let path = format!("/data/tally/{cell}");
            (path.clone(), int(&runtime, &path))
        })
        .collect()
}

#[test]
fn the_rust_example_gives_the_same_results_built_native_and_built_for_wasm() {
    let native = cep_tests::plugins::cdylib("cep-plugin-tally");
    let as_native = tally_values(native);
    assert!(as_native.iter().all(|(_, v)| v.is_some()), "{as_native:?}");
    assert_eq!(tally_values(tally()), as_native);
}

#[test]
fn a_wasm_enzyme_runs_an_episode_through_the_guest_sdk() {
    let (mut runtime, _host) = boot(&config(vec![tally()]));
    runtime.run(6).unwrap();
    inject(&runtime, "tally/job", None);
    runtime.run(8).unwrap();
    let eid = text(&runtime, "/data/tally/job/eid").expect("episode started");
    assert_eq!(int(&runtime, "/data/tally/job/steps"), Some(3));
    assert_eq!(
        text(&runtime, &format!("/rt/ops/{eid}/close/status")).as_deref(),
        Some("sts:ok")
    );
    assert_eq!(
        text(&runtime, &format!("/rt/ops/{eid}/close/summary")).as_deref(),
        Some("3 steps")
    );
    assert!(
        read(&runtime, &format!("/rt/ops/{eid}/snaps/half")).is_some(),
        "the labelled snapshot was taken"
    );
    let cells = text(&runtime, "/data/tally/job/cells").unwrap_or_default();
    assert!(cells.contains("count") && cells.contains("job"), "{cells}");
}

/// Host work is charged to the caller's fuel: a module with no
/// capabilities calling `cep.exists` and `cep.log` with 16 MiB arguments
/// in a loop runs out of fuel within its budget instead of stalling the
/// beat, and the host goes on.
#[test]
fn host_calls_with_huge_arguments_are_charged_to_the_callers_fuel() {
    let dir = tempfile::tempdir().unwrap();
    let imports = r#"(import "cep" "exists" (func $exists (param i32 i32) (result i32)))
  (import "cep" "log" (func $log (param i32 i32 i32 i32)))"#;
    let body = r#"(drop (memory.grow (i32.const 256)))
    (loop $l
      (drop (call $exists (i32.const 0) (i32.const 16777216)))
      (call $log (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 16777216))
      (br $l))
    (i64.const 0)"#;
    let file = module(dir.path(), "g", &guest(&descriptor(&[]), imports, body, ""));
    let config = config(vec![file, ping_wat()]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut runtime, _host) = boot(&config);
        inject(&runtime, "g/run", None);
        inject(&runtime, "ping/pong", None);
        runtime.run(2).unwrap();
        let _ = tx.send((
            facts(&runtime, "wasm:fuel").len(),
            int(&runtime, "/data/ping/count"),
        ));
    });
    let (fuel, ping) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the beat ends: host work is paid for with fuel");
    assert_eq!(fuel, 1);
    assert_eq!(ping, Some(1), "the other plugin ran");
}
