//! Plugin benchmarks (issue 5): the cost of calling an enzyme in a native
//! plugin against the same enzyme compiled into the host, measured in one
//! run; and bootstrapping 50 native plugins. Figures: docs/BENCHMARKS.md.
//!
//! The plugin libraries are release builds (`cargo bench` builds them
//! through `cep-tests`' helper).

use std::time::{Duration, Instant};

use cep_host::plugin::PluginHost;
use cep_host::{Config, EnzymeCx, EnzymeDescriptor, Impulse, Outcome, Path, Runtime, Value, Word};
use cep_tests::plugins::{cdylib_in, patch_fixture};
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
    config
        .grants
        .insert("*".into(), vec!["write:/data/fx".into(), "emit:*".into()]);
    config
}

fn native_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let lib = patch_fixture(
        &cdylib_in("cep-plugin-fixture", true),
        dir.path(),
        "fx",
        "ok",
    );
    let config = config(vec![lib]);
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
    let targets: Vec<Path> = (0..CALLS).map(|i| p(&format!("/data/fx/c{i}"))).collect();
    let mut group = c.benchmark_group("plugin_call");
    group.throughput(Throughput::Elements(CALLS as u64));
    for (label, signal, targeted) in [
        ("host_empty", "hx/empty", false),
        ("native_empty", "fx/empty", false),
        ("host_write", "hx/write", true),
        ("native_write", "fx/write", true),
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

criterion_group!(benches, native_call, bootstrap_50);
criterion_main!(benches);
