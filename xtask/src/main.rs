//! `cargo run -p xtask -- <task>`: builds cep and runs the demo.
//!
//! Tasks:
//! - `demo [--beats N]`: builds the `cep` binary and the example plugins in
//!   release mode (the Rust ones with cargo, the C ones with the system C
//!   compiler against `include/cep.h`), writes `target/demo/cep.toml`, runs
//!   the plugin world (Rust, C, Lua and wasm organs) on both executors
//!   (their final hashes must match) and prints its organs, its index, the
//!   thermostat, the Lua watcher (whose follow-ups use `cep.delay`), the
//!   wasm tally (Rust built for wasm32) and ping (WebAssembly text) and its
//!   boot dossier; runs the same world live with the C sensor adapter,
//!   journaled into `target/demo/data`, and verifies it with
//!   `cep replay --verify`; then runs the embedded kernel world on both
//!   executors.
//! - `header`: regenerates `include/cep.h` from `ffi/` with cbindgen.

#[path = "../../tests/src/cc.rs"]
mod cc;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("header") => status(
            cargo()
                .args(["test", "-q", "-p", "cep-ffi", "--test", "header"])
                .env("CEP_BLESS_HEADER", "1"),
        ),
        Some(other) => bail!("unknown task {other:?}; known tasks: demo, header"),
        None => bail!("usage: cargo run -p xtask -- demo [--beats N] | header"),
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{shown} failed with {}", out.status);
    }
    Ok(stdout)
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or_default().to_owned()
}

/// The native plugins the demo loads, by package.
const DEMO_PLUGINS: [&str; 2] = ["cep-plugin-store", "cep-plugin-index"];

/// The C plugins the demo compiles (`plugins/<name>/<name>.c`): the
/// thermostat organ, and the sensor adapter (loaded in the live run only).
const C_PLUGINS: [&str; 2] = ["thermo", "sensor"];

fn demo(args: &[String]) -> Result<()> {
    let beats = match args {
        [] => "2000".to_owned(),
        [flag, n] if flag == "--beats" => n.clone(),
        _ => bail!("usage: cargo run -p xtask -- demo [--beats N]"),
    };
    println!("== building cep and the plugins (release)");
    status(cargo().args(["build", "--release", "-p", "cep-host", "--bin", "cep"]))?;
    let mut build = cargo();
    build.args(["build", "--release", "--lib"]);
    for package in DEMO_PLUGINS {
        build.args(["-p", package]);
    }
    status(&mut build)?;
    // The Rust wasm organ: the same SDK, built for wasm32.
    println!("== building the wasm organ tally (--target wasm32-unknown-unknown)");
    if Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| !String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false)
    {
        status(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    status(cargo().args([
        "build",
        "--release",
        "-p",
        "cep-plugin-tally",
        "--target",
        "wasm32-unknown-unknown",
    ]))?;
    let release = workspace_root().join("target/release");
    let cep = release.join("cep");
    let c_dir = release.join("c-plugins");
    std::fs::create_dir_all(&c_dir)?;
    let mut c_libs = Vec::new();
    for name in C_PLUGINS {
        let source = format!("plugins/{name}/{name}.c");
        println!("== cc {source} (against include/cep.h)");
        let lib = cc::compile_c(&workspace_root(), &source, &c_dir, name, &[])
            .map_err(anyhow::Error::msg)?;
        c_libs.push(format!("{:?}", lib.display().to_string()));
    }

    // The plugin world: two native organs, the index depending on the store.
    let demo_dir = workspace_root().join("target/demo");
    std::fs::create_dir_all(&demo_dir)?;
    let mut libs: Vec<String> = DEMO_PLUGINS
        .iter()
        .map(|p| {
            let file = format!(
                "{}{}{}",
                std::env::consts::DLL_PREFIX,
                p.replace('-', "_"),
                std::env::consts::DLL_SUFFIX
            );
            format!("{:?}", release.join(file).display().to_string())
        })
        .collect();
    libs.push(c_libs[0].clone());
    // The Lua organ: a script, loaded as it is.
    let watch = workspace_root().join("plugins/watch/watch.lua");
    libs.push(format!("{:?}", watch.display().to_string()));
    // The wasm organs: tally (Rust) sums the store's puts and pings ping
    // (WebAssembly text, compiled on load) at every tenth.
    let tally =
        workspace_root().join("target/wasm32-unknown-unknown/release/cep_plugin_tally.wasm");
    let ping = workspace_root().join("plugins/ping/ping.wat");
    for module in [tally, ping] {
        libs.push(format!("{:?}", module.display().to_string()));
    }
    let grants = "[grants]\nstore = [\"write:/data/store\", \"emit:store\", \"emit:index\"]\nindex = [\"write:/data/index\"]\nthermo = [\"write:/data/thermo\", \"emit:thermo\"]\nsensor = [\"threads\", \"emit:sensor\"]\nwatch = [\"write:/data/watch\", \"emit:watch\"]\ntally = [\"write:/data/tally\", \"emit:ping\"]\nping = [\"write:/data/ping\"]\n";
    let config = demo_dir.join("cep.toml");
    std::fs::write(
        &config,
        format!(
            "# Written by `cargo xtask demo`: the Rust organs, the C thermostat, the Lua watcher and the wasm tally (Rust) and ping (WebAssembly text).\nplugins = [{}]\n\n{grants}",
            libs.join(", ")
        ),
    )?;
    // The live world adds the C sensor adapter, whose readings arrive when
    // its thread produces them: the only nondeterministic input, so this
    // run is not compared across executors (the journal will record it).
    let live = demo_dir.join("cep-live.toml");
    libs.push(c_libs[1].clone());
    std::fs::write(
        &live,
        format!(
            "# Written by `cargo xtask demo`: the same world with the C sensor adapter.\nplugins = [{}]\n\n{grants}",
            libs.join(", ")
        ),
    )?;
    let config = config.display().to_string();
    let with_config = |extra: &[&str]| {
        let mut cmd = Command::new(&cep);
        cmd.args(["run", "--config", &config, "--beats", &beats, "--shutdown"]);
        cmd.args(extra);
        cmd
    };
    println!("== cep run --config {config} --beats {beats} --shutdown (cooperative)");
    let one = output(&mut with_config(&[]))?;
    let loaded = format!("{} plugins loaded", DEMO_PLUGINS.len() + 4);
    if !one.contains(&loaded) || !one.contains(", 0 rejected") {
        bail!("the demo plugins did not all load");
    }
    println!("== the same on the threaded executor with 2 workers (the last line must match)");
    let two = output(&mut with_config(&["--workers", "2"]))?;
    if last_line(&one) != last_line(&two) {
        bail!(
            "the executors disagree: {:?} vs {:?}",
            last_line(&one),
            last_line(&two)
        );
    }
    for path in [
        "/rt/organs",
        "/data/index",
        "/data/thermo",
        "/data/watch",
        "/data/tally",
        "/data/ping",
        "/rt/ops/boot/history",
    ] {
        println!("== cep inspect {path} (plugin world)");
        let mut cmd = Command::new(&cep);
        cmd.args([
            "inspect",
            path,
            "--config",
            &config,
            "--beats",
            &beats,
            "--shutdown",
        ]);
        status(&mut cmd)?;
    }

    let live = live.display().to_string();
    // The live run is journaled: its adapter inputs are the only thing a
    // replay needs besides the plugins.
    let data = demo_dir.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    let data = data.display().to_string();
    println!("== cep run --config {live} --beats {beats} --rate 2000 --shutdown --data-dir {data} (live: the C sensor adapter feeds the C thermostat; journaled)");
    let out = output(Command::new(&cep).args([
        "run",
        "--config",
        &live,
        "--beats",
        &beats,
        "--rate",
        "2000",
        "--shutdown",
        "--data-dir",
        &data,
    ]))?;
    if !out.contains("adapter sensor/probe:") || !out.contains(", 0 rejected") {
        bail!("the live world did not run the sensor adapter");
    }
    println!("== cep replay --verify {data} (every beat of the live run, hash for hash)");
    let verified = output(Command::new(&cep).args(["replay", "--verify", &data]))?;
    if !verified.contains("every state hash matches") {
        bail!("the live run did not replay");
    }

    // The embedded kernel world (no plugins): broadcast and bound enzymes,
    // retries, conflicts and an episode.
    println!("== cep run --beats {beats} (embedded kernel world, cooperative)");
    let one = output(Command::new(&cep).args(["run", "--beats", &beats]))?;
    println!("== cep run --beats {beats} --workers 2 (threaded: the last line must match)");
    let two = output(Command::new(&cep).args(["run", "--beats", &beats, "--workers", "2"]))?;
    if last_line(&one) != last_line(&two) {
        bail!(
            "the executors disagree: {:?} vs {:?}",
            last_line(&one),
            last_line(&two)
        );
    }
    // The demo's episode (started first after the gate operation, so its id
    // is 0-h1): it yields, awaits the gate, and closes.
    println!("== the kernel world's episode: cep inspect /rt/ops/0-h1 --beats {beats}");
    status(Command::new(&cep).args(["inspect", "/rt/ops/0-h1", "--beats", &beats]))?;
    Ok(())
}
