//! No flag, configuration value, plugin file or number from a plugin makes
//! the host panic: each is refused with a typed error naming what and
//! where, and what a plugin may put into the tree or the queues in one call
//! is bounded.

use std::path::{Path, PathBuf};
use std::process::Command;

use cep_host::plugin::load_file;
use cep_host::{Config, Runtime};
use cep_tests::world::{self, read, text};
use cep_tests::{facts, p};

use cep_tests::plugins::{printed as said, run_cep as cep};

/// Exit 2 with `expect` in the message, and no panic.
fn refused(args: &[&str], expect: &str) {
    let out = cep(args);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
    assert!(!text.contains("panicked"), "{args:?}: {text}");
    assert!(text.contains(expect), "{args:?}: {text}");
}

#[test]
fn every_numeric_flag_is_validated_at_parse_time() {
    for (args, expect) in [
        (&["run", "--rate", "1e-300"][..], "out of range"),
        (&["run", "--rate", "NaN"], "out of range"),
        (&["run", "--rate", "inf"], "out of range"),
        (&["run", "--rate=-5"], "out of range"),
        (&["run", "--rate", "fast"], "not a number"),
        (&["run", "--workers", "1000000"], "--workers"),
        (&["run", "--workers=-1"], "--workers"),
        (&["run", "--beats", "0"], "--beats"),
        (&["run", "--beats=-3"], "--beats"),
        (&["run", "--reload", "5="], "the FILE after '=' is missing"),
        (&["run", "--reload", "x=f.lua"], "is not a beat number"),
        (&["run", "--reload", "f.lua"], "expected BEAT=FILE"),
        (&["run", "--fsync", "0"], "expected beat, never or a number"),
        (&["run", "--checkpoint-every", "x"], "--checkpoint-every"),
    ] {
        refused(args, expect);
    }
}

/// Configured limits outside their range are refused naming the key and
/// the range.
#[test]
fn configured_limits_are_validated_naming_the_key_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    for line in [
        "lua_memory_max = 0",
        "history_snapshots = 0",
        "inject_queue_max = 0",
        "impulses_per_beat_max = 0",
        "lua_budget = 0",
        "lua_gc_step_kb = 0",
        "wasm_fuel = 0",
        "cei_facts_max = 0",
        "ops_history_max = 0",
        "plugin_note_bytes_max = 1",
        "plugin_emits_per_call_max = 0",
        "wasm_memory_max = 10",
    ] {
        let cfg = dir.path().join("cep.toml");
        std::fs::write(&cfg, format!("{line}\n")).unwrap();
        let key = line.split(' ').next().unwrap();
        refused(&["run", "--config", cfg.to_str().unwrap()], key);
        let out = cep(&["run", "--config", cfg.to_str().unwrap()]);
        let text = said(&out);
        assert!(text.contains("out of range"), "{line}: {text}");
    }
}

fn lua(dir: &Path, name: &str, source: &str) -> PathBuf {
    let file = dir.join(format!("{name}.lua"));
    std::fs::write(&file, source).unwrap();
    file
}

/// A valid semantic version longer than a cell name is refused by the one
/// validation every plugin kind goes through — at load, by `cep plugin
/// check`, in a configuration and through a reload — never a panic.
#[test]
fn a_version_longer_than_a_cell_name_is_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let version = format!("1.0.0-{}", "a".repeat(70));
    let long = lua(
        dir.path(),
        "long",
        &format!("return {{ name = \"long\", version = \"{version}\" }}\n"),
    );
    let err = load_file(&long).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("cell name"), "{err}");
    refused(&["plugin", "check", long.to_str().unwrap()], "cell name");
    // In a configuration: rejected, the host runs on.
    let cfg = dir.path().join("cep.toml");
    std::fs::write(
        &cfg,
        format!("plugins = [{:?}]\n", long.display().to_string()),
    )
    .unwrap();
    let out = cep(&["run", "--config", cfg.to_str().unwrap(), "--beats", "3"]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("1 rejected") && text.contains("cell name"),
        "{text}"
    );
    // Through a reload of an installed plugin.
    let v1 = lua(
        dir.path(),
        "long1",
        "return { name = \"long\", version = \"0.1.0\" }\n",
    );
    let cfg = dir.path().join("reload.toml");
    std::fs::write(
        &cfg,
        format!("plugins = [{:?}]\n", v1.display().to_string()),
    )
    .unwrap();
    let spec = format!("2={}", long.display());
    let out = cep(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--beats",
        "4",
        "--reload",
        &spec,
    ]);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("reload refused") && text.contains("cell name"),
        "{text}"
    );
    // A wasm plugin with the same version.
    let json = format!(
        r#"{{"name":"w","version":"{version}","abi":{{"major":1,"minor":0}},"kind":"wasm"}}"#
    );
    let wat = format!(
        r#"(module (memory (export "memory") 1) (data (i32.const 0) "{}")
  (func (export "cep_abi_1_0"))
  (func (export "cep_describe") (result i64) (i64.shl (i64.const {}) (i64.const 32)))
  (func (export "cep_call") (param i32) (result i64) (i64.const 0)))"#,
        json.replace('"', "\\\""),
        json.len()
    );
    let wasm = dir.path().join("w.wat");
    std::fs::write(&wasm, wat).unwrap();
    refused(&["plugin", "check", wasm.to_str().unwrap()], "cell name");
}

/// A FIFO named like a plugin is refused without being opened (opening it
/// would block the host forever).
#[test]
fn a_fifo_named_like_a_plugin_is_refused_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["fifo.lua", "fifo.wasm", "libfifo.so"] {
        let fifo = dir.path().join(name);
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(cep(&["plugin", "check", path.to_str().unwrap()]));
        });
        let out = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name}: cep plugin check blocks on a FIFO"));
        let text = said(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("not a regular file"), "{name}: {text}");
    }
}

/// A shared library that is not a plugin is named so, whatever its
/// versioned file name.
#[test]
fn a_system_library_is_not_a_cep_plugin() {
    let Some(libm) = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/usr/lib/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file()) else {
        eprintln!("no libm.so.6 on this machine; skipped");
        return;
    };
    refused(&["plugin", "check", libm], "not a cep plugin");
}

fn config(plugins: Vec<PathBuf>) -> Config {
    let mut config = Config {
        plugins,
        plugin_emits_per_call_max: 10,
        plugin_facts_per_call_max: 5,
        plugin_logs_per_call_max: 5,
        ..Config::default()
    };
    config
        .grants
        .insert("*".into(), vec!["write:/data".into(), "emit:*".into()]);
    config
}

/// A plugin `t` with one enzyme per `(signal, body)`.
fn plugin(dir: &Path, enzymes: &[(&str, &str)]) -> PathBuf {
    let list: Vec<String> = enzymes
        .iter()
        .map(|(signal, body)| {
            format!(
                "{{ name = \"t.{signal}\", signal = \"go/{signal}\", run = function(payload)\n{body}\nend }}"
            )
        })
        .collect();
    lua(
        dir,
        "t",
        &format!(
            "return {{ name = \"t\", version = \"0.1.0\", capabilities = {{ \"write:/data/t\", \"emit:*\" }},\n enzymes = {{ {} }} }}\n",
            list.join(",\n")
        ),
    )
}

fn go(runtime: &mut Runtime, signal: &str) {
    world::inject(runtime, &format!("go/{signal}"), None, None);
    runtime.run(2).unwrap();
}

/// One call may emit, record facts and log only so much: past a limit the
/// call fails `fatal` (nothing it staged is applied) with one `crit` fact
/// naming the limit; within it everything goes through.
#[test]
fn one_call_cannot_flood_the_queues_the_mailbox_or_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = plugin(
        dir.path(),
        &[
            ("emit10", "for i = 1, 10 do cep.emit('x/y') end cep.write('/data/t/emit10', 1)"),
            ("emit11", "for i = 1, 11 do pcall(cep.emit, 'x/y') end cep.write('/data/t/emit11', 1)"),
            ("facts", "for i = 1, 6 do pcall(cep.cei, 'warn', 't', 'n') end cep.write('/data/t/facts', 1)"),
            ("logs", "for i = 1, 1000 do pcall(cep.log, 'debug', 'line') end cep.write('/data/t/logs', 1)"),
        ],
    );
    let (mut runtime, host) = world::boot(&config(vec![file]));
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    go(&mut runtime, "emit10");
    assert!(read(&runtime, "/data/t/emit10").is_some());
    for signal in ["emit11", "facts", "logs"] {
        go(&mut runtime, signal);
        assert!(
            read(&runtime, &format!("/data/t/{signal}")).is_none(),
            "{signal}: a failed call commits nothing"
        );
    }
    let limits = facts(&runtime, "plugin:limit");
    assert_eq!(limits.len(), 3, "{limits:?}");
    for (fact, key) in limits.iter().zip([
        "plugin_emits_per_call_max",
        "plugin_facts_per_call_max",
        "plugin_logs_per_call_max",
    ]) {
        assert!(fact.note.contains(key), "{}", fact.note);
    }
}

/// Text a plugin hands the host is capped before it reaches the tree: fact
/// notes, operation summaries and failure messages.
#[test]
fn notes_summaries_and_failure_messages_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let file = plugin(
        dir.path(),
        &[
            ("note", "cep.cei('warn', 'big', ('x'):rep(8e6))"),
            ("fail", "return false, ('y'):rep(4e6)"),
            ("topic", "local ok, e = pcall(cep.cei, 'warn', ('t'):rep(100), 'n') cep.write('/data/t/topic', e)"),
        ],
    );
    let mut config = config(vec![file]);
    config.lua_budget = 10_000_000;
    let (mut runtime, _host) = world::boot(&config);
    go(&mut runtime, "note");
    let big = facts(&runtime, "big");
    assert_eq!(big.len(), 1);
    assert!(
        big[0].note.len() < 4096 + 200,
        "{} bytes",
        big[0].note.len()
    );
    assert!(big[0].note.contains("cut from 8000000 bytes"));
    go(&mut runtime, "fail");
    let fail = facts(&runtime, "lua:error");
    assert_eq!(fail.len(), 1);
    assert!(
        fail[0].note.len() <= (64 << 10) + 200,
        "{} bytes",
        fail[0].note.len()
    );
    go(&mut runtime, "topic");
    assert!(text(&runtime, "/data/t/topic").unwrap().contains("topic"));
}

/// Numbers from plugins are checked at the API boundary: a time-to-live of
/// 1.8e19 beats is refused, not stored negative.
#[test]
fn out_of_range_numbers_from_plugins_are_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let file = plugin(
        dir.path(),
        &[(
            "ttl",
            r#"
local oid = cep.op_start({ verb = "x/op" })
local ok, e = pcall(cep.op_await, oid, { want = "ist:ok", cont = "x/cont", ttl = 1.8e19 })
cep.write("/data/t/await", e)
local ok2, e2 = pcall(cep.op_start, { verb = "x/op", ttl = 1.8e19 })
cep.write("/data/t/start", e2)
local ok3, e3 = pcall(cep.op_start, { verb = "x/op", ttl = -1 })
cep.write("/data/t/negative", tostring(ok3))
"#,
        )],
    );
    let (mut runtime, _host) = world::boot(&config(vec![file]));
    go(&mut runtime, "ttl");
    let await_err = text(&runtime, "/data/t/await").unwrap();
    assert!(
        await_err.contains("ttl") && await_err.contains("at most"),
        "{await_err}"
    );
    let start_err = text(&runtime, "/data/t/start").unwrap();
    assert!(start_err.contains("ttl"), "{start_err}");
    assert_eq!(text(&runtime, "/data/t/negative").as_deref(), Some("false"));
    // Nothing negative was stored anywhere under the operations.
    let rendered = runtime.snapshot().render(&p("/rt/ops")).unwrap_or_default();
    assert!(!rendered.contains("-1"), "{rendered}");
}

/// A descriptor is bounded: a Lua script declaring a hundred thousand
/// enzymes is refused, not registered.
#[test]
fn a_descriptor_with_too_many_entries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let many = lua(
        dir.path(),
        "many",
        "local e = {}\nfor i = 1, 100000 do e[i] = { name = 'm.e' .. i, signal = 'm/e', run = function() end } end\nreturn { name = 'many', version = '0.1.0', enzymes = e }\n",
    );
    refused(
        &["plugin", "check", many.to_str().unwrap()],
        "over the limit of 4096",
    );
}
