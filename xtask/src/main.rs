//! `cargo run -p xtask -- <task>`: builds cep and runs the demo.
//!
//! Tasks:
//! - `demo [--beats N]`: builds the `cep` binary in release mode, runs the
//!   demo world on both executors, then prints part of its final state and
//!   the dossier of its episode.

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
        Some(other) => bail!("unknown task {other:?}; known tasks: demo"),
        None => bail!("usage: cargo run -p xtask -- demo [--beats N]"),
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

fn demo(args: &[String]) -> Result<()> {
    let beats = match args {
        [] => "2000".to_owned(),
        [flag, n] if flag == "--beats" => n.clone(),
        _ => bail!("usage: cargo run -p xtask -- demo [--beats N]"),
    };
    println!("== building cep (release)");
    status(cargo().args(["build", "--release", "-p", "cep-host", "--bin", "cep"]))?;
    let cep = workspace_root().join("target/release/cep");
    println!("== cep run --beats {beats} (cooperative)");
    status(Command::new(&cep).args(["run", "--beats", &beats]))?;
    println!("== cep run --beats {beats} --workers 2 (threaded: the last line must match)");
    status(Command::new(&cep).args(["run", "--beats", &beats, "--workers", "2"]))?;
    println!("== cep inspect /data/demo --beats {beats}");
    status(Command::new(&cep).args(["inspect", "/data/demo", "--beats", &beats]))?;
    // The demo's episode (started first after the gate operation, so its id
    // is 0-h1): it yields, awaits the gate, and closes.
    println!("== the demo episode's dossier: cep inspect /rt/ops/0-h1 --beats {beats}");
    status(Command::new(&cep).args(["inspect", "/rt/ops/0-h1", "--beats", &beats]))?;
    Ok(())
}
