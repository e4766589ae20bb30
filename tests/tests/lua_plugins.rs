//! Lua plugins end to end: real Lua 5.4 (mlua, vendored) running scripts
//! in the world's sandboxed VM, beside Rust and C plugins.

use std::path::{Path, PathBuf};

use cep_host::plugin::{LoadError, PluginHost};
use cep_host::{Config, EnzymeDescriptor, Hash, Runtime, Value};
use cep_tests::plugins::{c_plugin, cdylib, workspace};
use cep_tests::world::{self, hashes, int, read, text};
use cep_tests::{backends, facts, p, CallLog};

/// Writes `source` as `dir/<name>.lua`.
fn script(dir: &Path, name: &str, source: &str) -> PathBuf {
    let file = dir.join(format!("{name}.lua"));
    std::fs::write(&file, source).unwrap();
    file
}

fn config(plugins: Vec<PathBuf>) -> Config {
    let mut config = Config {
        plugins,
        ..Config::default()
    };
    for (name, caps) in [
        ("t", &["write:/data/t", "emit:*"][..]),
        ("watch", &["write:/data/watch", "emit:watch"]),
        ("store", &["write:/data/store", "emit:*"]),
        ("index", &["write:/data/index"]),
        ("thermo", &["write:/data/thermo", "emit:thermo"]),
    ] {
        config
            .grants
            .insert(name.into(), caps.iter().map(|c| c.to_string()).collect());
    }
    config
}

/// [`world::boot`], every plugin loaded.
fn boot(config: &Config) -> (Runtime, PluginHost) {
    let (runtime, host) = world::boot(config);
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    (runtime, host)
}

fn inject(runtime: &Runtime, signal: &str, payload: Option<Value>) {
    world::inject(runtime, signal, None, payload);
}

/// A plugin `t` with one enzyme on `signal` whose body is `body`.
fn one_enzyme(dir: &Path, signal: &str, body: &str) -> PathBuf {
    script(
        dir,
        "t",
        &format!(
            "return {{ name = \"t\", version = \"0.1.0\", capabilities = {{ \"write:/data/t\", \"emit:*\" }},\n  enzymes = {{ {{ name = \"t.run\", signal = \"{signal}\", run = function(payload, target)\n{body}\nend }} }} }}\n"
        ),
    )
}

#[test]
fn a_script_enzyme_writes_and_emits_an_impulse_a_rust_enzyme_handles_next_beat() {
    let dir = tempfile::tempdir().unwrap();
    let lua = one_enzyme(
        dir.path(),
        "go/lua",
        "cep.write(\"/data/t/seen\", payload)\n cep.write(\"/data/t/at\", cep.beat())\n cep.emit(\"go/rust\", nil, payload * 2)",
    );
    let config = config(vec![lua]);
    let mut runtime = Runtime::new(config.clone()).unwrap();
    let log = CallLog::default();
    let rust_log = log.clone();
    runtime
        .register(
            &EnzymeDescriptor::new("rust.handler", "go/rust"),
            move |cx: &mut cep_host::EnzymeCx<'_>| {
                let payload = cx.payload().and_then(Value::as_i64).unwrap_or(-1);
                rust_log.push(cx.beat(), &format!("rust got {payload}"));
                cep_host::Outcome::Ok
            },
        )
        .unwrap();
    let _host = PluginHost::bootstrap(&mut runtime, &config).unwrap();
    runtime.run(3).unwrap();
    inject(&runtime, "go/lua", Some(Value::I64(21)));
    runtime.run(3).unwrap();
    assert_eq!(int(&runtime, "/data/t/seen"), Some(21));
    let lua_beat = int(&runtime, "/data/t/at").unwrap() as u64;
    assert_eq!(log.entries(), [(lua_beat + 1, "rust got 42".to_owned())]);
}

/// Per-beat hashes of a run of `beats` beats with `go/delay` injected at
/// beat 5, plus what the callback recorded.
fn delay_run(config: &Config, beats: u64) -> (Vec<Hash>, Option<i64>, Option<i64>) {
    let (mut runtime, _host) = boot(config);
    let mut hashes = Vec::new();
    for beat in 0..beats {
        if beat == 5 {
            inject(&runtime, "go/delay", None);
        }
        hashes.push(runtime.step().unwrap().state_hash);
    }
    (
        hashes,
        int(&runtime, "/data/t/asked"),
        int(&runtime, "/data/t/ran"),
    )
}

#[test]
fn cep_delay_runs_the_callback_exactly_n_beats_later_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let lua = one_enzyme(
        dir.path(),
        "go/delay",
        "local asked = cep.beat()\n cep.write(\"/data/t/asked\", asked)\n cep.delay(3, function() cep.write(\"/data/t/ran\", cep.beat()) end)",
    );
    let (reference, asked, ran) = delay_run(&config(vec![lua.clone()]), 20);
    let asked = asked.expect("the enzyme ran");
    assert_eq!(ran, Some(asked + 3), "exactly 3 beats later");
    // The same inputs again, on every executor: the same beats, the same
    // hashes.
    for (name, backend) in backends() {
        let config = Config {
            executor: backend.executor,
            workers: backend.workers,
            ..config(vec![lua.clone()])
        };
        let (hashes, again_asked, again_ran) = delay_run(&config, 20);
        assert_eq!(
            (again_asked, again_ran),
            (Some(asked), Some(asked + 3)),
            "{name}"
        );
        assert_eq!(hashes, reference, "{name}");
    }
}

#[test]
fn the_sandbox_has_none_of_the_forbidden_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let forbidden = [
        "io",
        "os",
        "debug",
        "package",
        "require",
        "dofile",
        "loadfile",
        "load",
        "loadstring",
        "collectgarbage",
        "print",
        "next",
        "string.dump",
        "math.randomseed",
    ];
    let checks: Vec<String> = forbidden
        .iter()
        .map(|name| {
            let key = name.replace('.', "_");
            format!("cep.write(\"/data/t/type/{key}\", type({name}))")
        })
        .collect();
    let body = format!(
        "{}\n cep.write(\"/data/t/tostring\", tostring({{}}))\n cep.write(\"/data/t/dumpvia\", type((\"\").dump))\n local ok, err = pcall(string.format, \"%p\", {{}})\n cep.write(\"/data/t/format_p\", ok)",
        checks.join("\n ")
    );
    let lua = one_enzyme(dir.path(), "go/check", &body);
    let (mut runtime, _host) = boot(&config(vec![lua]));
    inject(&runtime, "go/check", None);
    runtime.run(3).unwrap();
    assert!(
        facts(&runtime, "enzyme:fatal").is_empty(),
        "{:?}",
        facts(&runtime, "enzyme:fatal")
    );
    for name in forbidden {
        let key = name.replace('.', "_");
        assert_eq!(
            text(&runtime, &format!("/data/t/type/{key}")).as_deref(),
            Some("nil"),
            "{name} must be absent"
        );
    }
    // No addresses can reach the state.
    assert_eq!(text(&runtime, "/data/t/tostring").as_deref(), Some("table"));
    assert_eq!(text(&runtime, "/data/t/dumpvia").as_deref(), Some("nil"));
    assert_eq!(read(&runtime, "/data/t/format_p"), Some(Value::Bool(false)));
}

#[test]
fn pairs_order_and_math_random_are_the_same_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let lua = one_enzyme(
        dir.path(),
        "go/order",
        "local t = { zeta = 1, alpha = 2, [3] = 'c', [1] = 'a', mid = 3, [true] = 't', [false] = 'f' }\n local keys = {}\n for k in pairs(t) do keys[#keys + 1] = tostring(k) end\n cep.write(\"/data/t/order\", table.concat(keys, \",\"))\n cep.write(\"/data/t/random\", math.random(1, 1000000))",
    );
    let run = || {
        let (mut runtime, _host) = boot(&config(vec![lua.clone()]));
        runtime.run(2).unwrap();
        inject(&runtime, "go/order", None);
        runtime.run(2).unwrap();
        (
            text(&runtime, "/data/t/order"),
            int(&runtime, "/data/t/random"),
        )
    };
    let (order, random) = run();
    assert_eq!(order.as_deref(), Some("1,3,alpha,mid,zeta,false,true"));
    assert!(random.is_some());
    for _ in 0..3 {
        assert_eq!(run(), (order.clone(), random), "a fresh VM draws the same");
    }
}

#[test]
fn an_infinite_loop_hits_the_budget_and_the_vm_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let lua = script(
        dir.path(),
        "t",
        r#"return { name = "t", version = "0.1.0", capabilities = { "write:/data/t" },
  enzymes = {
    { name = "t.spin", signal = "go/spin", run = function() while true do end end },
    { name = "t.catch", signal = "go/catch", run = function()
        -- Catching the budget error does not buy more instructions.
        pcall(function() while true do end end)
        cep.write("/data/t/caught", true)
      end },
    { name = "t.loop", signal = "go/loop", run = function()
        -- Nor does catching it again and again.
        while true do pcall(function() while true do end end) end
      end },
    { name = "t.ok", signal = "go/ok", run = function() cep.write("/data/t/ok", cep.beat()) end },
  } }"#,
    );
    let config = Config {
        lua_budget: 200_000,
        ..config(vec![lua])
    };
    let (mut runtime, _host) = boot(&config);
    inject(&runtime, "go/spin", None);
    inject(&runtime, "go/catch", None);
    inject(&runtime, "go/loop", None);
    runtime.run(2).unwrap();
    let budget = facts(&runtime, "lua:budget");
    assert_eq!(budget.len(), 3, "{budget:?}");
    assert!(budget[0]
        .note
        .contains("plugin t: enzyme t.spin: more than 200000 instructions"));
    assert!(
        read(&runtime, "/data/t/caught").is_none(),
        "a fatal call commits nothing"
    );
    inject(&runtime, "go/ok", None);
    runtime.run(2).unwrap();
    assert!(int(&runtime, "/data/t/ok").is_some());
}

#[test]
fn a_memory_hog_hits_the_limit_and_the_vm_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let lua = script(
        dir.path(),
        "t",
        r#"return { name = "t", version = "0.1.0", capabilities = { "write:/data/t" },
  enzymes = {
    { name = "t.hog", signal = "go/hog", run = function()
        local t = {}
        for i = 1, 100000000 do t[i] = string.rep("x", 1000) .. i end
      end },
    { name = "t.ok", signal = "go/ok", run = function() cep.write("/data/t/ok", string.rep("y", 10)) end },
  } }"#,
    );
    let config = Config {
        lua_memory_max: 16 << 20,
        lua_budget: 1 << 40, // the largest budget a configuration may give
        ..config(vec![lua])
    };
    let (mut runtime, _host) = boot(&config);
    inject(&runtime, "go/hog", None);
    runtime.run(2).unwrap();
    let memory = facts(&runtime, "lua:memory");
    assert_eq!(memory.len(), 1, "{memory:?}");
    assert!(memory[0].note.contains("plugin t: enzyme t.hog"));
    inject(&runtime, "go/ok", None);
    runtime.run(2).unwrap();
    assert_eq!(text(&runtime, "/data/t/ok").as_deref(), Some("yyyyyyyyyy"));
}

#[test]
fn a_lua_error_is_fatal_naming_script_line_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let lua = script(
        dir.path(),
        "t",
        "return { name = \"t\", version = \"0.1.0\", capabilities = { \"write:/data/t\" },\n  enzymes = {\n    { name = \"t.boom\", signal = \"go/boom\", run = function()\n        error(\"the sensor is gone\")\n      end },\n    { name = \"t.deny\", signal = \"go/deny\", run = function() cep.write(\"/data/other\", 1) end },\n    { name = \"t.ok\", signal = \"go/ok\", run = function() cep.write(\"/data/t/ok\", true) end },\n  } }\n",
    );
    let (mut runtime, _host) = boot(&config(vec![lua]));
    inject(&runtime, "go/boom", None);
    inject(&runtime, "go/deny", None);
    runtime.run(2).unwrap();
    let errors = facts(&runtime, "lua:error");
    assert!(
        errors.iter().any(|f| f
            .note
            .contains("enzyme t.boom: t.lua:4: the sensor is gone")),
        "{errors:?}"
    );
    // A refused host call is a Lua error carrying the host's message.
    assert!(
        errors.iter().any(|f| f
            .note
            .contains("plugin t lacks capability write:/data/other")),
        "{errors:?}"
    );
    assert!(!facts(&runtime, "plugin:capability").is_empty());
    inject(&runtime, "go/ok", None);
    runtime.run(2).unwrap();
    assert_eq!(read(&runtime, "/data/t/ok"), Some(Value::Bool(true)));
}

#[test]
fn a_syntax_error_is_a_typed_load_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = script(
        dir.path(),
        "broken",
        "return {\n  name = \"broken\",\n  version = = \"0.1.0\",\n}\n",
    );
    let err = cep_host::plugin::load_file(&bad).err().expect("refused");
    assert_eq!(err.file, bad);
    match &err.error {
        LoadError::Syntax { script, line, .. } => {
            assert_eq!((script.as_str(), *line), ("broken.lua", 3), "{err}");
        }
        other => panic!("expected a syntax error, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("syntax error in broken.lua at line 3"),
        "{err}"
    );
    // Lenient bootstrap loads the rest; strict stops.
    let good = one_enzyme(dir.path(), "go/x", "");
    let lenient = config(vec![bad.clone(), good]);
    let mut runtime = Runtime::new(lenient.clone()).unwrap();
    let host = PluginHost::bootstrap(&mut runtime, &lenient).unwrap();
    assert_eq!(host.installed(), [("t".into(), "0.1.0".into())]);
    assert_eq!(host.rejected().len(), 1);
    let strict = Config {
        strict: true,
        ..lenient
    };
    let mut runtime = Runtime::new(strict.clone()).unwrap();
    assert!(PluginHost::bootstrap(&mut runtime, &strict).is_err());
}

#[test]
fn a_folder_with_init_lua_is_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("t");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("init.lua"),
        "return { name = \"t\", version = \"0.2.0\", capabilities = { \"write:/data/t\" },\n  enzymes = { { name = \"t.x\", signal = \"go/x\", run = function() error(\"from the folder\") end } } }\n",
    )
    .unwrap();
    // Found by directory discovery too.
    let config = Config {
        plugin_dirs: vec![dir.path().to_owned()],
        ..config(Vec::new())
    };
    let (mut runtime, host) = boot(&config);
    assert_eq!(host.installed(), [("t".into(), "0.2.0".into())]);
    inject(&runtime, "go/x", None);
    runtime.run(2).unwrap();
    assert!(facts(&runtime, "lua:error")
        .iter()
        .any(|f| f.note.contains("t/init.lua:2: from the folder")));
}

/// A script keeping state between calls: its calls must run in agenda
/// order on every executor for the state to come out the same.
#[test]
fn lua_calls_run_in_agenda_order_on_every_executor() {
    let dir = tempfile::tempdir().unwrap();
    let lua = one_enzyme(
        dir.path(),
        "go/n",
        "n = (n or 0) + 1\n cep.write(\"/data/t/n/\" .. payload, n)",
    );
    let run = |backend: Config| {
        let config = Config {
            executor: backend.executor,
            workers: backend.workers,
            ..config(vec![lua.clone()])
        };
        let (mut runtime, _host) = boot(&config);
        let mut hashes = Vec::new();
        for beat in 0..6 {
            for i in 0..300 {
                inject(&runtime, "go/n", Some(Value::I64(beat * 1000 + i)));
            }
            hashes.push(runtime.step().unwrap().state_hash);
        }
        hashes
    };
    let mut all = backends().into_iter();
    let (_, first) = all.next().unwrap();
    let reference = run(first);
    for (name, backend) in all {
        assert_eq!(run(backend), reference, "{name}");
    }
}

fn mixed() -> Vec<PathBuf> {
    vec![
        workspace().join("plugins/watch/watch.lua"),
        cdylib("cep-plugin-store"),
        cdylib("cep-plugin-index"),
        c_plugin("thermo"),
    ]
}

#[test]
fn lua_native_and_c_plugins_give_the_same_hashes_on_every_run_and_executor() {
    let reference = hashes(&config(mixed()), 80);
    assert_eq!(hashes(&config(mixed()), 80), reference, "second run");
    for (name, backend) in backends() {
        let config = Config {
            executor: backend.executor,
            workers: backend.workers,
            ..config(mixed())
        };
        assert_eq!(hashes(&config, 80), reference, "{name}");
    }
    // The Lua organ ran its lifecycle and its delayed follow-up.
    let (mut runtime, _host) = boot(&config(mixed()));
    runtime.run(40).unwrap();
    assert_eq!(
        text(&runtime, "/rt/organs/watch/0.1.0/state").as_deref(),
        Some("ready")
    );
    assert_eq!(
        text(&runtime, "/sys/plugins/watch/0.1.0/kind").as_deref(),
        Some("lua")
    );
    assert!(text(&runtime, "/data/watch/followed_up").is_some());
}

/// Version `version` of plugin `t`: `go/v` writes the version; `go/later`
/// schedules a write 3 beats later with `cep.delay`.
fn version_of_t(dir: &Path, version: &str) -> PathBuf {
    script(
        dir,
        &format!("t-{version}"),
        &format!(
            r#"return {{ name = "t", version = "{version}", capabilities = {{ "write:/data/t" }},
  enzymes = {{
    {{ name = "t.v", signal = "go/v", run = function() cep.write("/data/t/v", "{version}") end }},
    {{ name = "t.later", signal = "go/later", run = function()
        cep.delay(3, function() cep.write("/data/t/later", "scheduled by {version}") end)
      end }},
  }} }}"#
        ),
    )
}

/// Boots 0.1.0, uses it, schedules a delayed write, reloads 0.2.0 at beat
/// 6, uses it. Returns the runtime, the host and the per-beat hashes.
fn reload_scenario(backend: Config, dir: &Path) -> (Runtime, PluginHost, Vec<Hash>) {
    let config = Config {
        executor: backend.executor,
        workers: backend.workers,
        ..config(vec![version_of_t(dir, "0.1.0")])
    };
    let (mut runtime, mut host) = boot(&config);
    let mut hashes = Vec::new();
    for beat in 0..14 {
        match beat {
            2 => inject(&runtime, "go/v", None),
            5 => inject(&runtime, "go/later", None),
            6 => host
                .reload(&mut runtime, &config, &version_of_t(dir, "0.2.0"))
                .expect("reload"),
            8 => inject(&runtime, "go/v", None),
            _ => {}
        }
        hashes.push(runtime.step().unwrap().state_hash);
        if beat == 4 {
            assert_eq!(text(&runtime, "/data/t/v").as_deref(), Some("0.1.0"));
        }
    }
    (runtime, host, hashes)
}

#[test]
fn a_lua_plugin_reloads_at_a_beat_boundary_as_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, host, reference) = reload_scenario(Config::default(), dir.path());
    assert_eq!(text(&runtime, "/data/t/v").as_deref(), Some("0.2.0"));
    // The callback scheduled by 0.1.0 ran after the reload, on time.
    assert_eq!(
        text(&runtime, "/data/t/later").as_deref(),
        Some("scheduled by 0.1.0")
    );
    // Both versions are on record; the new one is active.
    assert_eq!(
        text(&runtime, "/sys/plugins/t/0.1.0/kind").as_deref(),
        Some("lua")
    );
    assert_eq!(
        text(&runtime, "/sys/plugins/t/0.2.0/kind").as_deref(),
        Some("lua")
    );
    assert_eq!(
        text(&runtime, "/sys/plugins/t/active").as_deref(),
        Some("0.2.0")
    );
    assert_eq!(
        text(&runtime, "/sys/plugins/t/reloads/0/from").as_deref(),
        Some("0.1.0")
    );
    assert_eq!(
        text(&runtime, "/sys/plugins/t/reloads/0/to").as_deref(),
        Some("0.2.0")
    );
    assert_eq!(int(&runtime, "/sys/plugins/t/reloads/0/beat"), Some(6));
    assert_eq!(host.installed(), [("t".into(), "0.2.0".into())]);
    assert_eq!(facts(&runtime, "plugin:reload").len(), 1);
    // The same scenario again, on every executor: the same hashes.
    for (name, backend) in backends() {
        let (_, _, hashes) = reload_scenario(backend, dir.path());
        assert_eq!(hashes, reference, "{name}");
    }
}

#[test]
fn a_reload_that_is_not_newer_or_not_lua_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(vec![
        version_of_t(dir.path(), "0.2.0"),
        cdylib("cep-plugin-store"),
    ]);
    let (mut runtime, mut host) = boot(&config);
    runtime.run(3).unwrap();
    let older = host
        .reload(&mut runtime, &config, &version_of_t(dir.path(), "0.1.0"))
        .unwrap_err();
    assert!(
        older
            .to_string()
            .contains("version 0.1.0 is not newer than the installed 0.2.0"),
        "{older}"
    );
    let native = host
        .reload(&mut runtime, &config, &cdylib("cep-plugin-store"))
        .unwrap_err();
    assert!(
        native
            .to_string()
            .contains("only Lua and wasm plugins reload"),
        "{native}"
    );
    inject(&runtime, "go/v", None);
    runtime.run(2).unwrap();
    assert_eq!(text(&runtime, "/data/t/v").as_deref(), Some("0.2.0"));
    let recorded = runtime.snapshot().children(&p("/sys/plugins/t"));
    assert!(
        recorded.iter().all(|n| n.as_str() != "reloads"),
        "{recorded:?}"
    );
}

#[test]
fn cep_run_reloads_a_lua_plugin_at_the_beat_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = version_of_t(dir.path(), "0.1.0");
    let v2 = version_of_t(dir.path(), "0.2.0");
    let cfg = dir.path().join("cep.toml");
    std::fs::write(
        &cfg,
        format!(
            "plugins = [{:?}]\n[grants]\nt = [\"write:/data/t\"]\n",
            v1.display().to_string()
        ),
    )
    .unwrap();
    let reload = format!("6={}", v2.display());
    let out = std::process::Command::new(cep_tests::plugins::cep_bin())
        .args(["inspect", "/sys/plugins/t", "--config"])
        .arg(&cfg)
        .args(["--beats", "10", "--reload", &reload])
        .output()
        .expect("cep runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("reloaded") && stdout.contains("before beat 6"),
        "{stdout}"
    );
    assert!(stdout.contains("active = \"0.2.0\""), "{stdout}");
    assert!(stdout.contains("from = \"0.1.0\""), "{stdout}");
}

#[test]
fn enzymes_can_be_declared_with_cep_enzyme_while_the_script_loads() {
    let dir = tempfile::tempdir().unwrap();
    let lua = script(
        dir.path(),
        "t",
        r#"cep.enzyme { name = "t.a", signal = "go/a", run = function() cep.write("/data/t/a", 1) end }
cep.enzyme { name = "t.late", signal = "go/late", run = function()
  cep.enzyme { name = "t.x", signal = "go/x", run = function() end }
end }
return { name = "t", version = "0.1.0", capabilities = { "write:/data/t" } }"#,
    );
    let loaded = cep_host::plugin::load_file(&lua).unwrap();
    let names: Vec<&str> = loaded
        .descriptor
        .enzymes
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["t.a", "t.late", "lua:t:delay"]);
    let (mut runtime, _host) = boot(&config(vec![lua]));
    inject(&runtime, "go/a", None);
    inject(&runtime, "go/late", None);
    runtime.run(2).unwrap();
    assert_eq!(int(&runtime, "/data/t/a"), Some(1));
    assert!(facts(&runtime, "lua:error").iter().any(|f| f
        .note
        .contains("cep.enzyme works only while the script loads")));
}
