//! Native plugins end to end: real `cdylib`s built from `plugins/`, loaded
//! with abi_stable, their organs booted through `op/boot`, and every kind
//! of bad plugin rejected or contained.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cep_host::plugin::validate::DescriptorError;
use cep_host::plugin::{LoadError, PluginError, PluginHost};
use cep_host::{ops, Config, Runtime, Value};
use cep_tests::plugins::{cdylib, fixture};
use cep_tests::world::{boot, grants, hashes, inject, int, text};
use cep_tests::{backends, facts, p};

fn store() -> PathBuf {
    cdylib("cep-plugin-store")
}

fn index() -> PathBuf {
    cdylib("cep-plugin-index")
}

/// The demo plugins' configuration, plus the fixture's usual grants.
fn config(plugins: Vec<PathBuf>) -> Config {
    Config {
        plugins,
        grants: grants(&[
            ("store", &["write:/data/store", "emit:*"]),
            ("index", &["write:/data/index"]),
            ("fx", &["write:/data/fx", "emit:fx", "threads"]),
            ("dup", &["write:/data/fx"]),
        ]),
        ..Config::default()
    }
}

#[test]
fn organs_construct_in_dependency_order_then_validate() {
    // The index is listed first; its organ depends on the store's.
    let (mut runtime, host) = boot(&config(vec![index(), store()]));
    assert_eq!(
        host.installed(),
        [
            ("index".into(), "0.1.0".into()),
            ("store".into(), "0.1.0".into())
        ]
    );
    runtime.run(12).unwrap();
    assert!(runtime.booted());
    for kind in ["store", "index"] {
        assert_eq!(
            text(&runtime, &format!("/rt/organs/{kind}/0.1.0/state")).as_deref(),
            Some("ready"),
            "{kind}"
        );
    }
    // The index constructor saw what the store constructor wrote.
    let created = int(&runtime, "/data/store/meta/created").unwrap();
    assert_eq!(int(&runtime, "/data/index/meta/built_on"), Some(created));
    let boot = ops::history(runtime.snapshot(), &cep_host::Name::new("boot").unwrap());
    let states: Vec<&str> = boot.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        [
            "ist:run",
            "ist:kernel",
            "ist:store",
            "ist:plugins",
            "ist:ctor",
            "ist:ctor",
            "ist:vald",
            "ist:ok"
        ]
    );
    // A history entry is named by its beat.
    let notes: Vec<Option<String>> = boot[4..6]
        .iter()
        .map(|(_, beat)| text(&runtime, &format!("/rt/ops/boot/history/{beat:010}/note")))
        .collect();
    assert_eq!(notes, [Some("store".into()), Some("index".into())]);
    // Bound enzyme, before/after and the clock are running.
    assert!(int(&runtime, "/data/store/meta/count").unwrap() > 0);
    assert!(int(&runtime, "/data/store/audit/seen").unwrap() > 0);
    assert!(int(&runtime, "/data/index/size").unwrap() > 0);
}

#[test]
fn load_order_and_executor_do_not_change_any_beat_hash() {
    let reference = hashes(&config(vec![store(), index()]), 120);
    assert_eq!(hashes(&config(vec![index(), store()]), 120), reference);
    let dir = tempfile::tempdir().unwrap();
    for lib in [store(), index()] {
        std::fs::copy(&lib, dir.path().join(lib.file_name().unwrap())).unwrap();
    }
    let from_dir = Config {
        plugin_dirs: vec![dir.path().to_owned()],
        ..config(Vec::new())
    };
    assert_eq!(hashes(&from_dir, 120), reference, "loaded from a directory");
    for (name, backend) in backends() {
        let c = Config {
            executor: backend.executor,
            workers: backend.workers,
            ..config(vec![store(), index()])
        };
        assert_eq!(hashes(&c, 120), reference, "{name}");
    }
}

#[test]
fn the_rebuild_episode_runs_over_several_beats_and_closes() {
    let (mut runtime, _host) = boot(&config(vec![store(), index()]));
    // Rebuilds start at beats 25 and 50; the second has closed by 70.
    runtime.run(70).unwrap();
    let eid = text(&runtime, "/data/index/rebuild/eid").expect("an episode started");
    let dossier = format!("/rt/ops/{eid}");
    assert_eq!(
        text(&runtime, &format!("{dossier}/close/status")).as_deref(),
        Some("sts:ok")
    );
    let yields = ops::history(runtime.snapshot(), &cep_host::Name::new(&eid).unwrap())
        .iter()
        .filter(|(s, _)| s == "ist:yield")
        .count();
    assert!(yields >= 2, "the scan yields between slices ({yields})");
    assert_eq!(
        int(&runtime, "/data/index/rebuild/last_total"),
        int(&runtime, "/data/index/rebuild/cursor")
    );
}

#[test]
fn an_organ_whose_dependency_no_plugin_provides_is_quarantined() {
    let (mut runtime, _host) = boot(&config(vec![index()]));
    runtime.run(10).unwrap();
    let base = "/rt/organs/index/0.1.0";
    assert_eq!(
        text(&runtime, &format!("{base}/state")).as_deref(),
        Some("quarantined")
    );
    assert_eq!(
        text(&runtime, &format!("{base}/failure/stage")).as_deref(),
        Some("deps")
    );
    let message = text(&runtime, &format!("{base}/failure/message")).unwrap();
    assert!(message.contains("store"), "{message}");
    assert!(!facts(&runtime, "organ:quarantined").is_empty());
    // The index constructor never ran, and the host keeps beating.
    assert_eq!(int(&runtime, "/data/index/meta/built_on"), None);
    assert!(runtime.booted());
    runtime.run(5).unwrap();
}

#[test]
fn shutdown_runs_destructors_in_reverse_dependency_order() {
    let (mut runtime, _host) = boot(&config(vec![store(), index()]));
    runtime.run(10).unwrap();
    runtime.shutdown().unwrap();
    assert!(runtime.is_down());
    let shdn = cep_host::Name::new("shdn").unwrap();
    let history = ops::history(runtime.snapshot(), &shdn);
    let states: Vec<&str> = history.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        [
            "ist:run",
            "ist:dtor",
            "ist:dtor",
            "ist:stop",
            "ist:flush",
            "ist:halt",
            "ist:ok"
        ]
    );
    // History entries are named by their beat.
    let note = |i: usize| {
        let beat = history[i].1;
        text(&runtime, &format!("/rt/ops/shdn/history/{beat:010}/note"))
    };
    assert_eq!(note(1).as_deref(), Some("index"));
    assert_eq!(note(2).as_deref(), Some("store"));
    assert!(int(&runtime, "/data/store/meta/closed").is_some());
    for kind in ["store", "index"] {
        assert_eq!(
            text(&runtime, &format!("/rt/organs/{kind}/0.1.0/state")).as_deref(),
            Some("destroyed")
        );
    }
}

#[test]
fn descriptors_are_published_sealed_and_organ_registration_is_idempotent() {
    let (mut runtime, _host) = boot(&config(vec![store(), index()]));
    let organ = runtime
        .organs()
        .get("store", "0.1.0")
        .unwrap()
        .descriptor
        .clone();
    use cep_host::organ::{OrganError, Registration};
    assert_eq!(
        runtime.register_organ(&organ, "store", "0.1.0"),
        Ok(Registration::Same)
    );
    let changed = organ.clone().label("something else");
    assert!(matches!(
        runtime.register_organ(&changed, "other", "0.1.0"),
        Err(OrganError::Conflict { .. })
    ));
    assert_eq!(
        runtime.register_organ(&changed, "other", "0.2.0"),
        Ok(Registration::New)
    );
    runtime.run(3).unwrap();
    let snapshot = runtime.snapshot();
    for path in [
        "/sys/plugins/store/0.1.0",
        "/sys/organs/store/0.1.0",
        "/sys/organs/store/0.2.0",
    ] {
        assert!(
            snapshot.node(&p(path)).unwrap().is_sealed(),
            "{path} sealed"
        );
    }
    assert_eq!(
        text(&runtime, "/sys/plugins/store/active").as_deref(),
        Some("0.1.0")
    );
    assert_eq!(
        text(&runtime, "/sys/plugins/store/0.1.0/kind").as_deref(),
        Some("native")
    );
    assert_eq!(
        text(&runtime, "/sys/plugins/store/0.1.0/file").as_deref(),
        Some(store().file_name().unwrap().to_str().unwrap())
    );
}

/// Loads `bad` beside the store plugin: leniently the store still boots
/// and the rejection is recorded; strictly bootstrap fails naming the file.
/// Returns the lenient rejection's cause.
fn rejected(bad: Vec<PathBuf>) -> LoadError {
    let culprit = bad.last().unwrap().clone();
    let mut files = vec![store()];
    files.extend(bad);
    let lenient = config(files);
    let (mut runtime, host) = boot(&lenient);
    assert!(
        host.installed().iter().any(|(n, _)| n == "store"),
        "the rest loads"
    );
    let [PluginError { file, error }] = host.rejected() else {
        panic!("one rejection expected, got {:?}", host.rejected());
    };
    assert_eq!(file, &culprit);
    runtime.run(10).unwrap();
    assert_eq!(
        text(&runtime, "/rt/plugins/rejected/0/file").as_deref(),
        Some(culprit.display().to_string().as_str())
    );
    let recorded = facts(&runtime, "plugin:rejected");
    assert!(
        recorded[0].note.contains(&culprit.display().to_string()),
        "{}",
        recorded[0].note
    );
    assert_eq!(
        text(&runtime, "/rt/organs/store/0.1.0/state").as_deref(),
        Some("ready")
    );

    let strict = Config {
        strict: true,
        ..lenient
    };
    let mut runtime = Runtime::new(strict.clone()).unwrap();
    let err = PluginHost::bootstrap(&mut runtime, &strict)
        .err()
        .expect("strict bootstrap stops");
    assert_eq!(err.file, culprit);
    assert!(err.to_string().contains(&culprit.display().to_string()));
    error.clone()
}

#[test]
fn a_library_that_is_not_a_cep_plugin_is_rejected() {
    let error = rejected(vec![cdylib("cep-fixture-noroot")]);
    assert!(matches!(error, LoadError::NotAPlugin(_)), "{error}");
}

#[test]
fn a_plugin_built_against_a_changed_sdk_type_fails_the_layout_check() {
    let error = rejected(vec![cdylib("cep-fixture-badlayout")]);
    let LoadError::Layout(detail) = &error else {
        panic!("{error}");
    };
    assert!(
        detail.contains("PluginMod") || detail.contains("cep_plugin"),
        "{detail}"
    );
}

#[test]
fn a_cep_abi_major_mismatch_is_rejected_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(vec![fixture(dir.path(), "fx", "abi2")]);
    assert!(
        matches!(error, LoadError::Invalid(DescriptorError::Abi { .. })),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains("2.0") && text.contains("1.1"), "{text}");
}

#[test]
fn a_descriptor_with_a_bad_word_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(vec![fixture(dir.path(), "fx", "badword")]);
    assert!(
        matches!(error, LoadError::Invalid(DescriptorError::BadWord { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("\"FX\""), "{error}");
}

#[test]
fn a_descriptor_with_a_bad_semver_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(vec![fixture(dir.path(), "fx", "badsemver")]);
    assert!(
        matches!(error, LoadError::Invalid(DescriptorError::BadSemver { .. })),
        "{error}"
    );
}

#[test]
fn a_descriptor_referencing_an_unknown_enzyme_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(vec![fixture(dir.path(), "fx", "unknownenz")]);
    assert!(
        matches!(error, LoadError::Invalid(DescriptorError::UnknownEnzyme { ref enzyme, .. }) if enzyme == "fx.nowhere"),
        "{error}"
    );
}

#[test]
fn a_duplicate_plugin_name_is_rejected_naming_the_first_file() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Same name and version: the file that sorts first is kept.
    let mut copies = [
        fixture(a.path(), "dup", "ok"),
        fixture(b.path(), "dup", "ok"),
    ];
    copies.sort();
    let [first, second] = copies;
    let error = rejected(vec![first.clone(), second]);
    let LoadError::Duplicate { name, first: named } = &error else {
        panic!("{error}");
    };
    assert_eq!(name, "dup");
    assert_eq!(named, &first.display().to_string());
}

#[test]
fn an_organ_dependency_cycle_is_rejected_naming_the_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let error = rejected(vec![fixture(dir.path(), "fx", "cycle")]);
    assert!(error.to_string().contains("fxa → fxb → fxa"), "{error}");
}

#[test]
fn a_panicking_enzyme_is_a_fatal_outcome_naming_plugin_and_enzyme() {
    let dir = tempfile::tempdir().unwrap();
    let (mut runtime, _host) = boot(&config(vec![fixture(dir.path(), "fx", "ok")]));
    runtime.run(8).unwrap();
    inject(&runtime, "fx/panic", None, None);
    inject(
        &runtime,
        "fx/write",
        Some("/data/fx/after"),
        Some(Value::I64(7)),
    );
    runtime.run(2).unwrap();
    let fatal = facts(&runtime, "enzyme:fatal");
    let note = &fatal.last().expect("a fatal fact").note;
    for part in [
        "fx.panic",
        "plugin fx",
        "panicked",
        "enzyme exploded on purpose",
    ] {
        assert!(note.contains(part), "{note:?} lacks {part:?}");
    }
    // The host, and the same plugin's other enzymes, keep working.
    assert_eq!(int(&runtime, "/data/fx/after"), Some(7));
    runtime.run(3).unwrap();
}

fn quarantined_by(mode: &str, stage: &str, enzyme: &str, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut runtime, _host) = boot(&config(vec![store(), fixture(dir.path(), "fx", mode)]));
    runtime.run(12).unwrap();
    let base = "/rt/organs/fx/1.0.0";
    assert_eq!(
        text(&runtime, &format!("{base}/state")).as_deref(),
        Some("quarantined")
    );
    assert_eq!(
        text(&runtime, &format!("{base}/failure/stage")).as_deref(),
        Some(stage)
    );
    assert_eq!(
        text(&runtime, &format!("{base}/failure/enzyme")).as_deref(),
        Some(enzyme)
    );
    let got = text(&runtime, &format!("{base}/failure/message")).unwrap();
    assert!(got.contains(message), "{got}");
    assert!(int(&runtime, &format!("{base}/failure/beat")).is_some());
    // The other organ is unaffected and the host keeps running.
    assert_eq!(
        text(&runtime, "/rt/organs/store/0.1.0/state").as_deref(),
        Some("ready")
    );
    assert!(runtime.booted());
    runtime.run(3).unwrap();
}

#[test]
fn a_panicking_constructor_quarantines_its_organ() {
    quarantined_by(
        "panicctor",
        "ctor",
        "fx.ctor",
        "constructor exploded on purpose",
    );
}

#[test]
fn a_panicking_validator_quarantines_its_organ() {
    quarantined_by(
        "panicvald",
        "vald",
        "fx.vald",
        "validator exploded on purpose",
    );
}

#[test]
fn a_call_beyond_the_granted_capabilities_fails_with_a_usage_fact() {
    let dir = tempfile::tempdir().unwrap();
    let lib = fixture(dir.path(), "fx", "ok");
    // fx requests write:/data/fx; grant it, and see a write elsewhere refused.
    let (mut runtime, _host) = boot(&config(vec![lib.clone()]));
    runtime.run(8).unwrap();
    inject(
        &runtime,
        "fx/write",
        Some("/data/elsewhere"),
        Some(Value::I64(1)),
    );
    inject(
        &runtime,
        "fx/write",
        Some("/data/fx/inside"),
        Some(Value::I64(2)),
    );
    runtime.run(2).unwrap();
    assert_eq!(runtime.snapshot().read(&p("/data/elsewhere")), None);
    assert_eq!(int(&runtime, "/data/fx/inside"), Some(2));
    let usage = facts(&runtime, "plugin:capability");
    let note = &usage.last().expect("a usage fact").note;
    assert!(
        note.contains("plugin fx") && note.contains("write:/data/elsewhere"),
        "{note}"
    );

    // Requested but not granted: the plugin holds nothing, and says so.
    let ungranted = Config {
        grants: BTreeMap::new(),
        ..config(vec![lib])
    };
    let (mut runtime, _host) = boot(&ungranted);
    runtime.run(8).unwrap();
    assert_eq!(
        text(&runtime, "/sys/plugins/fx/1.0.0/refused/0").as_deref(),
        Some("write:/data/fx")
    );
    inject(
        &runtime,
        "fx/write",
        Some("/data/fx/inside"),
        Some(Value::I64(3)),
    );
    runtime.run(2).unwrap();
    assert_eq!(runtime.snapshot().read(&p("/data/fx/inside")), None);
    assert!(facts(&runtime, "plugin:capability")
        .iter()
        .any(|f| f.note.contains("write:/data/fx/inside")));
}

#[test]
fn adapter_inputs_are_captured_without_loss_and_dropped_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (mut runtime, host) = boot(&config(vec![fixture(dir.path(), "fx", "adapter")]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime.snapshot().children(&p("/data/fx/in")).len() < 2_000 {
        assert!(Instant::now() < deadline, "the adapter delivers inputs");
        runtime.step().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    runtime.shutdown().unwrap();
    // Shutdown closed the inputs; the adapter's next offers are dropped.
    while host.adapter_stats()[0].dropped == 0 {
        assert!(
            Instant::now() < deadline,
            "inputs after shutdown are dropped and counted"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    host.stop_adapters();
    let stats = &host.adapter_stats()[0];
    let captured = runtime.snapshot().children(&p("/data/fx/in")).len() as u64;
    assert_eq!(stats.accepted, captured, "count in = count captured");
    assert!(stats.dropped > 0);
}

#[test]
fn an_adapter_without_the_threads_capability_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let no_threads = Config {
        grants: grants(&[("fx", &["write:/data/fx"])]),
        ..config(vec![fixture(dir.path(), "fx", "adapter")])
    };
    let (mut runtime, host) = boot(&no_threads);
    runtime.run(10).unwrap();
    assert!(host.adapter_stats().is_empty());
    assert!(facts(&runtime, "plugin:capability")
        .iter()
        .any(|f| f.note.contains("threads")));
    assert!(runtime.snapshot().children(&p("/data/fx/in")).is_empty());
}

fn cep(args: &[&str]) -> std::process::Output {
    std::process::Command::new(cep_tests::plugins::cep_bin())
        .args(args)
        .output()
        .expect("cep runs")
}

#[test]
fn cep_plugin_check_prints_the_descriptor_or_the_typed_error_with_exit_2() {
    let good = cep(&["plugin", "check", store().to_str().unwrap()]);
    assert_eq!(good.status.code(), Some(0));
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(out.contains("\"name\": \"store\""), "{out}");
    assert!(
        out.contains("ok: store 0.1.0 (native plugin, ABI 1.1)"),
        "{out}"
    );

    let noroot = cdylib("cep-fixture-noroot");
    let bad = cep(&["plugin", "check", noroot.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(noroot.to_str().unwrap()) && err.contains("not a cep plugin"),
        "{err}"
    );
}

#[test]
fn cep_run_loads_the_configured_plugins_and_strict_mode_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let toml = |strict: bool, extra: &str| {
        format!(
            "strict = {strict}\nplugins = [{:?}, {:?}{extra}]\n[grants]\nstore = [\"write:/data/store\", \"emit:*\"]\nindex = [\"write:/data/index\"]\n",
            store().display().to_string(),
            index().display().to_string(),
        )
    };
    let cfg = dir.path().join("cep.toml");
    std::fs::write(&cfg, toml(false, "")).unwrap();
    let run = cep(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--beats",
        "40",
        "--shutdown",
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        out.contains("2 plugins loaded (index 0.1.0, store 0.1.0), 0 rejected"),
        "{out}"
    );

    let noroot = cdylib("cep-fixture-noroot");
    let extra = format!(", {:?}", noroot.display().to_string());
    std::fs::write(&cfg, toml(false, &extra)).unwrap();
    let lenient = cep(&["run", "--config", cfg.to_str().unwrap(), "--beats", "20"]);
    assert_eq!(lenient.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&lenient.stdout).contains("1 rejected"));

    std::fs::write(&cfg, toml(true, &extra)).unwrap();
    let strict = cep(&["run", "--config", cfg.to_str().unwrap(), "--beats", "20"]);
    assert_eq!(strict.status.code(), Some(2));
    let err = String::from_utf8_lossy(&strict.stderr);
    assert!(
        err.contains(noroot.to_str().unwrap()) && err.contains("not a cep plugin"),
        "{err}"
    );
}
