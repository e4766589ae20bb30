//! C plugins end to end: libraries compiled from C with the system compiler
//! against `include/cep.h`, loaded with libloading, running in the same
//! beats as the Rust plugins; the C adapter's inputs captured at beat
//! boundaries; every kind of bad C plugin rejected with a typed error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cep_host::plugin::validate::DescriptorError;
use cep_host::plugin::{LoadError, PluginError, PluginHost};
use cep_host::{Config, Runtime, Value};
use cep_tests::plugins::{c_fixture, c_plugin, cdylib, cep_bin};
use cep_tests::world::{boot, hashes, inject, int, read, text};
use cep_tests::{backends, facts, p};

fn grants() -> BTreeMap<String, Vec<String>> {
    let list: [(&str, &[&str]); 6] = [
        ("thermo", &["write:/data/thermo", "emit:thermo"]),
        ("sensor", &["threads", "emit:sensor"]),
        ("cfx", &["write:/data/cfx", "emit:cfx", "threads"]),
        ("store", &["write:/data/store", "emit:*"]),
        ("index", &["write:/data/index"]),
        // The rest of the grants stay unused: requests beyond them are refused.
        ("*", &[]),
    ];
    list.iter()
        .map(|(name, caps)| {
            (
                name.to_string(),
                caps.iter().map(|c| c.to_string()).collect(),
            )
        })
        .collect()
}

fn config(plugins: Vec<PathBuf>) -> Config {
    Config {
        plugins,
        grants: grants(),
        ..Config::default()
    }
}

fn rust_and_c() -> Vec<PathBuf> {
    vec![
        c_plugin("thermo"),
        cdylib("cep-plugin-store"),
        cdylib("cep-plugin-index"),
    ]
}

#[test]
fn a_c_organ_boots_runs_and_shuts_down_beside_the_rust_organs() {
    let (mut runtime, host) = boot(&config(rust_and_c()));
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    assert_eq!(
        host.installed(),
        [
            ("index".into(), "0.1.0".into()),
            ("store".into(), "0.1.0".into()),
            ("thermo".into(), "0.1.0".into())
        ]
    );
    runtime.run(60).unwrap();
    for kind in ["store", "index", "thermo"] {
        assert_eq!(
            text(&runtime, &format!("/rt/organs/{kind}/0.1.0/state")).as_deref(),
            Some("ready"),
            "{kind}"
        );
    }
    assert_eq!(
        text(&runtime, "/sys/plugins/thermo/0.1.0/kind").as_deref(),
        Some("c")
    );
    assert!(int(&runtime, "/data/thermo/meta/created").is_some());
    // The clock runs: the heater decision is written, the setpoint moved at
    // beat 50, and the Rust organs kept running in the same beats.
    assert!(matches!(
        read(&runtime, "/data/thermo/heater"),
        Some(Value::Bool(_))
    ));
    assert_eq!(int(&runtime, "/data/thermo/setpoint"), Some(190));
    assert!(int(&runtime, "/data/store/meta/count").unwrap() > 0);
    runtime.shutdown().unwrap();
    assert!(int(&runtime, "/data/thermo/meta/closed").is_some());
}

#[test]
fn c_readings_flow_from_an_injected_impulse_to_the_tree() {
    let (mut runtime, _host) = boot(&config(vec![c_plugin("thermo")]));
    runtime.run(5).unwrap();
    for reading in [200, 210, 220] {
        inject(&runtime, "sensor/reading", None, Some(Value::I64(reading)));
    }
    runtime.run(2).unwrap();
    assert_eq!(int(&runtime, "/data/thermo/temp"), Some(210));
    assert_eq!(int(&runtime, "/data/thermo/count"), Some(3));
    assert!(runtime
        .snapshot()
        .children(&p("/data/thermo/readings"))
        .is_empty());
    // An out-of-range reading fails the enzyme with the plugin's message.
    inject(&runtime, "sensor/reading", None, Some(Value::I64(9999)));
    runtime.run(1).unwrap();
    let fatal = facts(&runtime, "enzyme:fatal");
    assert!(
        fatal
            .iter()
            .any(|f| f.note.contains("thermo.reading: reading out of range")),
        "{fatal:?}"
    );
}

#[test]
fn c_and_rust_plugins_give_the_same_hashes_on_every_run_and_executor() {
    let reference = hashes(&config(rust_and_c()), 120);
    assert_eq!(hashes(&config(rust_and_c()), 120), reference, "second run");
    for (name, backend) in backends() {
        let config = Config {
            plugins: rust_and_c(),
            grants: grants(),
            ..backend
        };
        assert_eq!(hashes(&config, 120), reference, "{name}");
    }
}

#[test]
fn every_value_kind_crosses_the_c_boundary_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut runtime, _host) = boot(&config(vec![c_fixture(dir.path(), "cfx", &[])]));
    let values = [
        Value::Null,
        Value::Bool(true),
        Value::I64(-42),
        Value::F64(2.5),
        Value::text("héllo"),
        Value::bytes(&[0, 1, 2, 255]),
    ];
    for (i, value) in values.iter().enumerate() {
        let target = format!("/data/cfx/v{i}");
        inject(&runtime, "cfx/write", Some(&target), Some(value.clone()));
    }
    runtime.run(2).unwrap();
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            read(&runtime, &format!("/data/cfx/v{i}")).as_ref(),
            Some(value)
        );
    }
}

#[test]
fn an_enzyme_error_code_is_a_fatal_outcome_with_the_plugins_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut runtime, _host) = boot(&config(vec![c_fixture(dir.path(), "cfx", &[])]));
    inject(&runtime, "cfx/fail", None, None);
    runtime.run(2).unwrap();
    let fatal = facts(&runtime, "enzyme:fatal");
    assert!(
        fatal.iter().any(|f| f
            .note
            .contains("plugin cfx: enzyme cfx.fail: the probe is unplugged (status -7)")),
        "{fatal:?}"
    );
    // The host keeps going: the next impulse is handled.
    inject(
        &runtime,
        "cfx/write",
        Some("/data/cfx/after"),
        Some(Value::I64(1)),
    );
    runtime.run(2).unwrap();
    assert_eq!(int(&runtime, "/data/cfx/after"), Some(1));
}

#[test]
fn a_call_beyond_the_grant_returns_denied_with_a_message_and_a_fact() {
    let dir = tempfile::tempdir().unwrap();
    let (mut runtime, _host) = boot(&config(vec![c_fixture(dir.path(), "cfx", &[])]));
    inject(&runtime, "cfx/deny", None, None);
    runtime.run(2).unwrap();
    assert_eq!(
        int(&runtime, "/data/cfx/deny/code"),
        Some(cep_ffi::CEP_ERR_DENIED as i64)
    );
    let message = text(&runtime, "/data/cfx/deny/message").unwrap();
    assert!(
        message.contains("plugin cfx lacks capability write:/data/other/x"),
        "{message}"
    );
    assert!(read(&runtime, "/data/other/x").is_none());
    let usage = facts(&runtime, "plugin:capability");
    assert!(
        usage.iter().any(|f| f.note.contains("write:/data/other/x")),
        "{usage:?}"
    );
}

/// Each bad C plugin: the expected error, the good plugin beside it still
/// loads (lenient), and strict bootstrap stops with the same error.
#[test]
fn bad_c_plugins_are_rejected_with_a_typed_error_naming_file_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    type Check = fn(&LoadError) -> bool;
    let cases: [(&str, &[&str], Check); 6] = [
        (
            "noentry",
            &["CFX_NO_ENTRY"],
            |e| matches!(e, LoadError::NotAPlugin(m) if m.contains("cep_plugin_v1")),
        ),
        (
            "null",
            &["CFX_NULL"],
            |e| matches!(e, LoadError::Init(m) if m.contains("cep_plugin_v1 returned NULL")),
        ),
        ("abi2", &["CFX_ABI_MAJOR=2"], |e| {
            matches!(e, LoadError::Invalid(DescriptorError::Abi { found, .. }) if found.major == 2)
                && e.to_string().contains("ABI 2.0, the host speaks 1.1")
        }),
        (
            "small",
            &["CFX_SMALL"],
            |e| matches!(e, LoadError::Layout(m) if m.contains("cep_plugin_desc.struct_size is 16 bytes")),
        ),
        (
            "badword",
            &["CFX_BAD_WORD"],
            |e| matches!(e, LoadError::Invalid(DescriptorError::BadWord { value, .. }) if value == "Not A Word"),
        ),
        (
            "nul",
            &["CFX_NUL"],
            |e| matches!(e, LoadError::Descriptor(m) if m.contains("cep_plugin_desc.name: contains a NUL byte")),
        ),
    ];
    for (name, defines, check) in cases {
        let bad = c_fixture(dir.path(), name, defines);
        let lenient = config(vec![bad.clone(), c_plugin("thermo")]);
        let (mut runtime, host) = boot(&lenient);
        let [PluginError { file, error }] = host.rejected() else {
            panic!("{name}: expected one rejection, got {:?}", host.rejected());
        };
        assert_eq!(file, &bad, "{name}");
        assert!(check(error), "{name}: unexpected error {error}");
        assert_eq!(
            host.installed(),
            [("thermo".into(), "0.1.0".into())],
            "{name}"
        );
        runtime.run(3).unwrap();
        assert_eq!(
            facts(&runtime, "plugin:rejected").len(),
            1,
            "{name}: the rejection is a CEI fact"
        );
        let strict = Config {
            strict: true,
            ..lenient
        };
        let mut runtime = Runtime::new(strict.clone()).unwrap();
        let err = PluginHost::bootstrap(&mut runtime, &strict)
            .err()
            .unwrap_or_else(|| panic!("{name}: strict bootstrap must fail"));
        assert_eq!(err.file, bad, "{name}");
        assert!(check(&err.error), "{name}: {}", err.error);
    }
}

/// Steps `runtime` until `done` or the deadline; returns the impulses
/// captured meanwhile.
fn step_until(
    runtime: &mut Runtime,
    secs: u64,
    mut done: impl FnMut(&Runtime, u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut captured = 0;
    while !done(runtime, captured) {
        assert!(
            Instant::now() < deadline,
            "deadline passed ({captured} captured)"
        );
        captured += runtime.step().unwrap().impulses as u64;
    }
    captured
}

#[test]
fn the_c_adapter_feeds_readings_that_drive_the_thermostat() {
    let (mut runtime, host) = boot(&config(vec![c_plugin("thermo"), c_plugin("sensor")]));
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    step_until(&mut runtime, 30, |rt, _| {
        int(rt, "/data/thermo/count").unwrap_or(0) >= 20
    });
    // The simulated room starts at 18°, below the setpoint: the heater is on.
    assert!(int(&runtime, "/data/thermo/temp").unwrap() < 215);
    assert_eq!(
        read(&runtime, "/data/thermo/heater"),
        Some(Value::Bool(true))
    );
    runtime.shutdown().unwrap();
    host.stop_adapters();
    let stats = &host.adapter_stats()[0];
    assert_eq!(
        (stats.plugin.as_str(), stats.adapter.as_str()),
        ("sensor", "probe")
    );
    assert!(stats.accepted >= 20);
}

#[test]
fn adapter_inputs_are_captured_without_loss_under_back_pressure() {
    const INPUTS: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let lib = c_fixture(
        dir.path(),
        "cfx",
        &["CFX_ADAPTER", &format!("CFX_INPUTS={INPUTS}")],
    );
    let config = Config {
        // A small queue: the adapter must wait for the beats to drain it.
        inject_queue_max: 1024,
        ..config(vec![lib])
    };
    let (mut runtime, host) = boot(&config);
    let injector = runtime.injector();
    let mut peak = 0;
    // Every accepted input leaves the queue only by being captured.
    let captured = step_until(&mut runtime, 60, |_, _| {
        peak = peak.max(injector.pending());
        host.adapter_stats()[0].accepted == INPUTS && injector.pending() == 0
    });
    host.stop_adapters();
    let stats = &host.adapter_stats()[0];
    assert_eq!(stats.accepted, INPUTS, "count in");
    assert!(captured >= INPUTS, "count captured: {captured}");
    assert!(stats.full > 0, "the queue filled and pushed back");
    assert!(peak <= 1024, "memory stays bounded by the queue");
    assert_eq!(stats.dropped, 0);
}

#[test]
fn inputs_offered_after_shutdown_began_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_fixture(dir.path(), "cfx", &["CFX_ADAPTER"]);
    let (mut runtime, host) = boot(&config(vec![lib]));
    step_until(&mut runtime, 30, |_, captured| captured > 100);
    runtime.shutdown().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while host.adapter_stats()[0].dropped == 0 {
        assert!(Instant::now() < deadline, "the adapter keeps offering");
        std::thread::sleep(Duration::from_millis(1));
    }
    host.stop_adapters();
    let stats = &host.adapter_stats()[0];
    assert!(stats.dropped > 0 && stats.accepted > 100, "{stats:?}");
    // Stopping twice (and dropping the host) is harmless.
    host.stop_adapters();
}

#[test]
fn cep_run_loads_c_plugins_and_strict_mode_exits_2_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = c_fixture(dir.path(), "abi2", &["CFX_ABI_MAJOR=2"]);
    let write = |strict: bool, files: &[&Path]| {
        let cfg = dir.path().join("cep.toml");
        let list: Vec<String> = files
            .iter()
            .map(|f| format!("{:?}", f.display().to_string()))
            .collect();
        std::fs::write(
            &cfg,
            format!(
                "strict = {strict}\nplugins = [{}]\n[grants]\nthermo = [\"write:/data/thermo\", \"emit:thermo\"]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        cfg
    };
    let run = |cfg: &Path| {
        std::process::Command::new(cep_bin())
            .args([
                "run",
                "--config",
                cfg.to_str().unwrap(),
                "--beats",
                "30",
                "--shutdown",
            ])
            .output()
            .expect("cep runs")
    };
    let thermo = c_plugin("thermo");
    let ok = run(&write(false, &[&thermo, &bad]));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("1 plugins loaded (thermo 0.1.0), 1 rejected"),
        "{out}"
    );
    let strict = run(&write(true, &[&thermo, &bad]));
    assert_eq!(strict.status.code(), Some(2));
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("the major versions differ"),
        "{err}"
    );
}

#[test]
fn a_config_beside_its_plugin_names_it_by_file_name() {
    // The guide's layout (docs/guide-c.md): cep.toml and libthermo.so in
    // one directory, `cep run --config cep.toml` from there.
    let dir = tempfile::tempdir().unwrap();
    cep_tests::plugins::compile_c("plugins/thermo/thermo.c", dir.path(), "thermo", &[]);
    let lib = format!(
        "{}thermo{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    std::fs::write(
        dir.path().join("cep.toml"),
        format!(
            "plugins = [{lib:?}]\n[grants]\nthermo = [\"write:/data/thermo\", \"emit:thermo\"]\n"
        ),
    )
    .unwrap();
    let run = std::process::Command::new(cep_bin())
        .current_dir(dir.path())
        .args(["run", "--config", "cep.toml", "--beats", "10"])
        .output()
        .expect("cep runs");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        out.contains("1 plugins loaded (thermo 0.1.0), 0 rejected"),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn the_c_guide_example_compiles_loads_and_greets() {
    // docs/guide-c.md must stay true: its C source is compiled and run.
    let guide = std::fs::read_to_string(cep_tests::plugins::workspace().join("docs/guide-c.md"))
        .expect("docs/guide-c.md");
    let source = guide
        .split("```c\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the guide has a C block");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.c");
    std::fs::write(&file, source).unwrap();
    let lib = cep_tests::plugins::compile_c(file.to_str().unwrap(), dir.path(), "hello", &[]);
    let mut config = config(vec![lib]);
    config.grants.insert(
        "hello".into(),
        vec!["write:/data/hello".into(), "emit:hello".into()],
    );
    let (mut runtime, host) = boot(&config);
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    runtime.run(10).unwrap();
    assert_eq!(int(&runtime, "/data/hello/greetings"), Some(1));
    assert_eq!(text(&runtime, "/data/hello/last").as_deref(), Some("world"));
}
