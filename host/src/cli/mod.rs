//! The `cep` command line. Owns argument parsing, exit codes and output;
//! everything it runs lives in the library.
//!
//! Exit codes: 0 success, 1 the runtime failed or stopped, 2 bad usage or
//! configuration.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::beat::{BeatReport, Runtime};
use crate::cell::Path;
use crate::config::{Config, ExecutorKind};
use crate::default_world;
use crate::journal::{self, Console, Refused};

pub use default_world::install as install_default_world;

#[derive(Parser)]
#[command(name = "cep", version, about = "cep: a deterministic plugin host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the runtime: the configured world, or the embedded default one.
    /// The last line printed is `beat=<N> hash=<64 hex>`.
    Run(RunArgs),
    /// Print a subtree: `cep inspect DATA_DIR [PATH] [--beat N]` shows a
    /// journaled beat (the last by default), rebuilt from checkpoints and
    /// the journal; `cep inspect [PATH] <run options>` runs like `cep run`
    /// and shows the final state.
    Inspect {
        /// A data directory written by `cep run --data-dir`, then the
        /// subtree to print (default `/`); or only the subtree.
        #[arg(num_args = 0..=2)]
        targets: Vec<String>,
        /// The journaled beat to show (with a data directory).
        #[arg(long)]
        beat: Option<u64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Work with plugin files.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a journaled world again from its first beat with the recorded
    /// inputs and decisions (`cep run --data-dir DIR` writes the journal).
    Replay {
        /// Compare every beat's state hash with the recorded one (exit 1
        /// at the first divergence).
        #[arg(long)]
        verify: bool,
        /// Start at the last restart's resume point (a tree rebuilt from
        /// the newest checkpoint and the journal) instead of the first beat.
        #[arg(long)]
        from_checkpoint: bool,
        /// The data directory of the recorded run.
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load and validate one plugin file of any supported kind and print its
    /// descriptor; on a bad plugin print the typed error and exit with 2.
    Check {
        /// The plugin file.
        file: PathBuf,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Configuration file (`cep.toml`); without it the embedded default runs.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Beats to run (at least 1).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    beats: u64,
    /// Stop early once nothing is queued.
    #[arg(long)]
    until_idle: bool,
    /// Pace the beats to at most this many per second (for live adapters;
    /// by default beats run back to back). Pacing changes which beat an
    /// adapter input lands in, never what a beat computes from its inputs.
    #[arg(long, value_name = "HZ", value_parser = parse_rate)]
    rate: Option<std::time::Duration>,
    /// Reload a Lua plugin from FILE just before beat BEAT runs (a newer
    /// version of an installed plugin; repeatable). A refused reload is
    /// reported and the run goes on (strict mode: exit 2).
    #[arg(long, value_name = "BEAT=FILE", value_parser = parse_reload)]
    reload: Vec<(u64, PathBuf)>,
    /// Executor backend (overrides the configuration).
    #[arg(long)]
    executor: Option<ExecutorKind>,
    /// Worker threads of the threaded executor (overrides the configuration;
    /// implies `--executor threaded` when no executor is given).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=Config::WORKERS_MAX as i64))]
    workers: Option<u16>,
    /// After the beats, shut down cleanly: `op/shdn` runs the organs'
    /// destructors, then adapters are stopped.
    #[arg(long)]
    shutdown: bool,
    /// Journal the run into DIR (for `cep replay --verify DIR`). A DIR
    /// holding an earlier run is recovered first and the run resumes after
    /// its last complete beat.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// With --data-dir: checkpoint the whole tree every N beats (0: only
    /// when the run ends).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    checkpoint_every: u64,
    /// With --data-dir: keep the execution documents of at most N closed
    /// operations (the newest; 0: no limit).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    exec_keep: usize,
    /// With --data-dir: keep the execution documents of operations closed
    /// within the last M beats only.
    #[arg(long, value_name = "M")]
    exec_keep_beats: Option<u64>,
    /// With --data-dir: when the journal is damaged (not merely a torn
    /// tail), cut it at the damage and resume after the last intact beat,
    /// deleting the intact beats after the damage; what is cut is moved to
    /// `<DIR>.cut-<n>` beside the data directory. Without it, `cep run`
    /// refuses a damaged journal (exit 2) and cuts nothing.
    #[arg(long)]
    truncate_corrupt: bool,
    /// When the journal is forced to disk: `beat` (every beat), a number of
    /// beats, or `never` (the OS decides).
    #[arg(long, default_value = "64", value_parser = parse_fsync)]
    fsync: crate::journal::Fsync,
}

/// Slowest pace `--rate` accepts: one beat an hour.
const RATE_HZ_MIN: f64 = 1.0 / 3600.0;
/// Fastest pace `--rate` accepts (faster is no pacing at all).
const RATE_HZ_MAX: f64 = 1e9;

/// `--rate HZ`: the period between beats.
fn parse_rate(text: &str) -> Result<std::time::Duration, String> {
    let hz: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of beats per second"))?;
    if !(RATE_HZ_MIN..=RATE_HZ_MAX).contains(&hz) {
        return Err(format!(
            "{text} beats per second is out of range: allowed {RATE_HZ_MIN:.6} (one an hour) to {RATE_HZ_MAX:e}"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(1.0 / hz))
}

/// `--reload BEAT=FILE`.
fn parse_reload(spec: &str) -> Result<(u64, PathBuf), String> {
    let (beat, file) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?}: expected BEAT=FILE"))?;
    let beat = beat
        .parse::<u64>()
        .map_err(|_| format!("{spec:?}: {beat:?} is not a beat number"))?;
    if file.is_empty() {
        return Err(format!("{spec:?}: the FILE after '=' is missing"));
    }
    Ok((beat, PathBuf::from(file)))
}

/// Entry point of the `cep` binary; returns the process exit code.
pub fn main() -> i32 {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Run(args) => {
            run(&args).and_then(|(_, report)| write_stdout(&format!("{}\n", report.summary_line())))
        }
        Command::Inspect {
            targets,
            beat,
            run: args,
        } => inspect(&targets, beat, &args),
        Command::Plugin(PluginCommand::Check { file }) => plugin_check(&file),
        Command::Replay {
            verify,
            from_checkpoint,
            data_dir,
        } => {
            if !verify {
                eprintln!("cep: replay runs with --verify (the only mode so far)");
                return 2;
            }
            match journal::replay(&data_dir, from_checkpoint, &mut Terminal) {
                Ok(code) => return code,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cep: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<Refused>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// Parses `--fsync`: `beat`, `never`, or a number of beats.
pub(super) fn parse_fsync(text: &str) -> Result<journal::Fsync, String> {
    match text {
        "beat" => Ok(journal::Fsync::EveryBeat),
        "never" => Ok(journal::Fsync::Never),
        n => n
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .map(journal::Fsync::Every)
            .ok_or_else(|| format!("{n:?}: expected beat, never or a number of beats")),
    }
}

/// `cep`'s console: results on standard output, notes on standard error.
struct Terminal;

impl Console for Terminal {
    fn out(&mut self, text: &str) -> Result<()> {
        write_stdout(text)
    }

    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// A mistake in what the user asked for (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// Writes to standard output; a closed pipe (`cep … | head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn load_config(args: &RunArgs) -> Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| UsageError(e.to_string()))?,
        None => Config::default(),
    };
    if let Some(workers) = args.workers {
        config.workers = workers.into();
        if args.executor.is_none() {
            config.executor = ExecutorKind::Threaded;
        }
    }
    if let Some(executor) = args.executor {
        config.executor = executor;
    }
    config.validate().map_err(UsageError)?;
    Ok(config)
}

fn run(args: &RunArgs) -> Result<(Runtime, BeatReport)> {
    let config = load_config(args)?;
    let live = journal::LiveRun {
        config: &config,
        config_file: args.config.as_deref(),
        beats: args.beats,
        until_idle: args.until_idle,
        rate: args.rate,
        reload: &args.reload,
        shutdown: args.shutdown,
        data_dir: args.data_dir.as_deref(),
        checkpoint_every: args.checkpoint_every,
        retention: journal::exec::Retention {
            executions: (args.exec_keep > 0).then_some(args.exec_keep),
            beats: args.exec_keep_beats,
        },
        truncate_corrupt: args.truncate_corrupt,
        fsync: args.fsync,
    };
    journal::run_live(&live, &mut Terminal)
}

fn inspect(targets: &[String], beat: Option<u64>, args: &RunArgs) -> Result<()> {
    let parse = |p: &str| Path::parse(p).map_err(|e| UsageError(e.to_string()));
    if let Some(first) = targets.first() {
        let dir = std::path::Path::new(first);
        if dir.join("journal").is_dir() {
            let path = parse(targets.get(1).map_or("/", String::as_str))?;
            return journal::inspect(dir, &path, beat, &mut Terminal);
        }
    }
    if targets.len() > 1 || beat.is_some() {
        return Err(UsageError(format!(
            "{}: not a data directory (no journal/ in it); --beat and a path need one",
            targets.first().map_or("(none given)", String::as_str)
        ))
        .into());
    }
    let path = parse(targets.first().map_or("/", String::as_str))?;
    let (runtime, report) = run(args)?;
    let text = match runtime.snapshot().render(&path) {
        Some(text) => text,
        None => format!("{path}: no such cell at beat {}\n", report.beat),
    };
    write_stdout(&format!("{text}{}\n", report.summary_line()))
}

fn plugin_check(file: &std::path::Path) -> Result<()> {
    let loaded = crate::plugin::load_file(file).map_err(|e| UsageError(e.to_string()))?;
    let d = &loaded.descriptor;
    let json = serde_json::to_string_pretty(d).context("printing the descriptor")?;
    write_stdout(&format!(
        "{json}\nok: {} {} ({} plugin, ABI {}): {} enzymes, {} organs, {} adapters\n",
        d.name,
        d.version,
        d.kind.as_str(),
        d.abi,
        d.enzymes.len(),
        d.organs.len(),
        d.adapters.len()
    ))
}
