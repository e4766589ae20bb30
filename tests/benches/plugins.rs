//! Plugin benchmarks: the cost of calling an enzyme in a native plugin, a C
//! plugin, a Lua script and a wasm module against the same enzyme compiled
//! into the host, measured in one run; loading a cached wasm module and
//! making a fresh instance; bootstrapping 50 native plugins; a C adapter's inputs
//! captured per second. Figures: docs/BENCHMARKS.md.
//!
//! The plugin libraries are release builds (`cargo bench` builds them
//! through `cep-tests`' helpers; the C ones with `cc -O2`).

use std::time::{Duration, Instant};

use cep_host::plugin::PluginHost;
use cep_host::{Config, EnzymeCx, EnzymeDescriptor, Impulse, Outcome, Path, Runtime, Value, Word};
use cep_tests::plugins::{c_fixture, cdylib_in, patch_fixture};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Calls per measured beat.
const CALLS: usize = 1_000;

fn p(text: &str) -> Path {
    Path::parse(text).unwrap()
}

fn config(plugins: Vec<std::path::PathBuf>) -> Config {
    let mut config = Config {
        plugins,
        ledger_beats: 0,
        cei_signal: false,
        ..Config::default()
    };
    config.grants.insert(
        "*".into(),
        vec![
            "write:/data/fx".into(),
            "write:/data/cfx".into(),
            "write:/data/lx".into(),
            "write:/data/wx".into(),
            "emit:*".into(),
            "threads".into(),
        ],
    );
    config
}

/// A wasm plugin in WebAssembly text: `wx.empty` returns at once;
/// `wx.write` writes the payload to the target, as the other kinds' do.
const WX: &str = r#"(module
  (import "cep" "target" (func $target (param i32 i32) (result i32)))
  (import "cep" "payload" (func $payload (param i32 i32) (result i32)))
  (import "cep" "write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\"name\":\"wx\",\"version\":\"0.1.0\",\"abi\":{\"major\":1,\"minor\":0},\"kind\":\"wasm\",\"capabilities\":[\"write:/data/wx\"],\"enzymes\":[{\"name\":\"wx.empty\",\"signal\":\"wx/empty\"},{\"name\":\"wx.write\",\"signal\":\"wx/write\"}]}")
  (func (export "cep_abi_1_0"))
  (func (export "cep_describe") (result i64)
    (i64.or (i64.const 1024) (i64.shl (i64.const 199) (i64.const 32))))
  (func (export "cep_call") (param $e i32) (result i64) (local $t i32) (local $v i32)
    (if (i32.eq (local.get $e) (i32.const 1))
      (then
        (local.set $t (call $target (i32.const 4096) (i32.const 256)))
        (local.set $v (call $payload (i32.const 8192) (i32.const 256)))
        (drop (call $write (i32.const 4096) (local.get $t) (i32.const 8192) (local.get $v)))))
    (i64.const 0))
)"#;

fn native_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let lib = patch_fixture(
        &cdylib_in("cep-plugin-fixture", true),
        dir.path(),
        "fx",
        "ok",
    );
    let c_lib = c_fixture(dir.path(), "cfx", &[]);
    let lua = dir.path().join("lx.lua");
    std::fs::write(
        &lua,
        r#"return { name = "lx", version = "0.1.0", capabilities = { "write:/data/lx" },
  enzymes = {
    { name = "lx.empty", signal = "lx/empty", run = function() end },
    { name = "lx.write", signal = "lx/write", run = function(payload, target) cep.write(target, payload) end },
  } }"#,
    )
    .unwrap();
    let wasm = dir.path().join("wx.wat");
    std::fs::write(&wasm, WX).unwrap();
    let mut config = config(vec![lib, c_lib, lua, wasm]);
    config.wasm_cache_dir = Some(std::path::PathBuf::new());
    let mut rt = Runtime::new(config.clone()).unwrap();
    let _host = PluginHost::bootstrap(&mut rt, &config).unwrap();
    // The same two enzymes compiled into the host.
    rt.register(
        &EnzymeDescriptor::new("host.empty", "hx/empty"),
        |_: &mut EnzymeCx<'_>| Outcome::Ok,
    )
    .unwrap();
    rt.register(
        &EnzymeDescriptor::new("host.write", "hx/write"),
        |cx: &mut EnzymeCx<'_>| {
            let target = cx.target().cloned();
            let value = cx.payload().cloned().unwrap_or(Value::Null);
            if let Some(target) = target {
                cx.write(&target, value).ok();
            }
            Outcome::Ok
        },
    )
    .unwrap();
    while !rt.booted() {
        rt.step().unwrap();
    }
    let source = Word::new("bench").unwrap();
    let targets = |organ: &str| -> Vec<Path> {
        (0..CALLS)
            .map(|i| p(&format!("/data/{organ}/c{i}")))
            .collect()
    };
    let (fx, cfx, lx, wx) = (targets("fx"), targets("cfx"), targets("lx"), targets("wx"));
    let mut group = c.benchmark_group("plugin_call");
    group.throughput(Throughput::Elements(CALLS as u64));
    for (label, signal, targeted, targets) in [
        ("host_empty", "hx/empty", false, &fx),
        ("native_empty", "fx/empty", false, &fx),
        ("c_empty", "cfx/empty", false, &cfx),
        ("lua_empty", "lx/empty", false, &lx),
        ("wasm_empty", "wx/empty", false, &wx),
        ("host_write", "hx/write", true, &fx),
        ("native_write", "fx/write", true, &fx),
        ("c_write", "cfx/write", true, &cfx),
        ("lua_write", "lx/write", true, &lx),
        ("wasm_write", "wx/write", true, &wx),
    ] {
        let signal = p(signal);
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let impulses = targets.iter().map(|t| {
                        let impulse = if targeted {
                            Impulse::targeted(signal.clone(), t.clone())
                        } else {
                            Impulse::signal(signal.clone())
                        };
                        impulse.with_payload(Value::I64(1))
                    });
                    rt.injector().inject_batch(&source, impulses).unwrap();
                    let start = Instant::now();
                    let report = rt.step().unwrap();
                    total += start.elapsed();
                    assert_eq!(report.calls, CALLS);
                }
                total
            })
        });
    }
    group.finish();
}

fn bootstrap_50(c: &mut Criterion) {
    let release = cdylib_in("cep-plugin-fixture", true);
    let mut group = c.benchmark_group("plugin_bootstrap");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("50_native", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Fresh copies each time: a library already loaded would
                // not be loaded again.
                let dir = tempfile::tempdir().unwrap();
                let files: Vec<_> = (0..50)
                    .map(|i| patch_fixture(&release, dir.path(), &format!("p{i:02}"), "ok"))
                    .collect();
                let config = config(files);
                let mut rt = Runtime::new(config.clone()).unwrap();
                let start = Instant::now();
                let host = PluginHost::bootstrap(&mut rt, &config).unwrap();
                while !rt.booted() {
                    rt.step().unwrap();
                }
                total += start.elapsed();
                assert_eq!(host.installed().len(), 50);
                // The libraries stay loaded (never unloaded); the files may go.
                drop(dir);
            }
            total
        })
    });
    group.finish();
}

/// A C adapter offering `INPUTS` small inputs as fast as the host takes
/// them, captured by beats run back to back: the time from bootstrap until
/// every input has been captured (count in = count captured).
fn adapter_capture(c: &mut Criterion) {
    const INPUTS: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let lib = c_fixture(
        dir.path(),
        "cfx",
        &["CFX_ADAPTER", &format!("CFX_INPUTS={INPUTS}")],
    );
    let mut group = c.benchmark_group("adapter_capture");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(INPUTS));
    for (label, queue) in [("queue_1M", 1usize << 20), ("queue_64k", 1 << 16)] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let config = Config {
                        inject_queue_max: queue,
                        ..config(vec![lib.clone()])
                    };
                    let mut rt = Runtime::new(config.clone()).unwrap();
                    let injector = rt.injector();
                    let start = Instant::now();
                    let host = PluginHost::bootstrap(&mut rt, &config).unwrap();
                    let mut captured = 0;
                    while host.adapter_stats()[0].accepted < INPUTS || injector.pending() > 0 {
                        captured += rt.step().unwrap().impulses as u64;
                    }
                    total += start.elapsed();
                    host.stop_adapters();
                    assert_eq!(host.adapter_stats()[0].accepted, INPUTS);
                    assert!(captured >= INPUTS);
                }
                total
            })
        });
    }
    group.finish();
}

/// Loading the Rust-built wasm example from a warm module cache (read,
/// checksum, deserialize, check, describe in a throwaway instance), and
/// making a fresh instance from its `InstancePre`.
fn wasm_module(c: &mut Criterion) {
    use cep_host::plugin::caps::Grants;
    use cep_host::plugin::wasm::WasmLimits;
    use cep_host::plugin::{api::PluginCtx, load_file_with, PluginCode};
    let cache = tempfile::tempdir().unwrap();
    let file = cep_tests::plugins::wasm_module("cep-plugin-tally");
    let config = Config {
        wasm_cache_dir: Some(cache.path().to_owned()),
        ..Config::default()
    };
    load_file_with(&file, &config).unwrap();
    let mut group = c.benchmark_group("wasm_module");
    group.bench_function("load_cached", |b| {
        b.iter(|| {
            let loaded = load_file_with(&file, &config).unwrap();
            match &loaded.code {
                PluginCode::Wasm(module) => assert!(module.from_cache()),
                _ => unreachable!(),
            }
            loaded
        })
    });
    let loaded = load_file_with(&file, &config).unwrap();
    let PluginCode::Wasm(module) = &loaded.code else {
        unreachable!()
    };
    let ctx = std::sync::Arc::new(PluginCtx::new("tally", Grants::all()));
    let instance = module
        .instantiate(ctx, &Grants::all(), WasmLimits::of(&config, "tally"))
        .unwrap();
    group.bench_function("instantiate", |b| b.iter(|| instance.reset().unwrap()));
    group.finish();
}

/// The bound on an untrusted call with the default limits: one beat whose
/// only call spends its whole budget — a Lua `while true do end`, a Lua
/// loop of `string.rep` (library work charged), a wasm `(loop br)`.
fn spent_budget(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("lx.lua");
    std::fs::write(
        &lua,
        r#"return { name = "lx", version = "0.1.0", enzymes = {
    { name = "lx.spin", signal = "lx/spin", run = function() while true do end end },
    { name = "lx.rep", signal = "lx/rep", run = function() while true do local s = string.rep("x", 1e5) end end },
  } }"#,
    )
    .unwrap();
    let wasm = dir.path().join("wx.wat");
    std::fs::write(
        &wasm,
        WX.replace("(i64.const 0))\n)", "(loop $l (br $l)) (i64.const 0))\n)"),
    )
    .unwrap();
    let mut config = config(vec![lua, wasm]);
    config.wasm_cache_dir = Some(std::path::PathBuf::new());
    let mut rt = Runtime::new(config.clone()).unwrap();
    let _host = PluginHost::bootstrap(&mut rt, &config).unwrap();
    while !rt.booted() {
        rt.step().unwrap();
    }
    let source = Word::new("bench").unwrap();
    let mut group = c.benchmark_group("spent_budget");
    group.sample_size(10);
    for (label, signal) in [
        ("lua_spin", "lx/spin"),
        ("lua_rep", "lx/rep"),
        ("wasm_spin", "wx/empty"),
    ] {
        let signal = p(signal);
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    rt.injector()
                        .inject_batch(&source, [Impulse::signal(signal.clone())])
                        .unwrap();
                    let start = Instant::now();
                    let report = rt.step().unwrap();
                    total += start.elapsed();
                    assert_eq!(report.calls, 1);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    native_call,
    spent_budget,
    wasm_module,
    bootstrap_50,
    adapter_capture
);
criterion_main!(benches);
