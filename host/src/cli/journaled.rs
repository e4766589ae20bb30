//! `cep run --data-dir DIR` (journaling) and `cep replay --verify DIR`.

use std::path::{Path as FsPath, PathBuf};

use anyhow::{Context, Result};

use super::{default_world, write_stdout, UsageError};
use crate::beat::{BeatReport, Runtime};
use crate::cell::hash;
use crate::config::Config;
use crate::journal::{self, BeatEntry, Decision, Journal, JournalConfig, PluginRecord, RunHeader};
use crate::plugin::PluginHost;

/// Journals a running world, beat by beat.
pub(super) struct Recorder {
    journal: Journal,
    pending: Vec<Decision>,
}

/// The journal directory of a data directory.
fn journal_dir(data_dir: &FsPath) -> PathBuf {
    data_dir.join("journal")
}

impl Recorder {
    /// Recovers the journal under `data_dir` (cutting a torn tail) and
    /// starts a run in it.
    pub fn start(
        data_dir: &FsPath,
        fsync: journal::Fsync,
        config_file: Option<&FsPath>,
        runtime: &mut Runtime,
        plugins: Option<&PluginHost>,
    ) -> Result<Self> {
        let dir = journal_dir(data_dir);
        let recovery = journal::recover(&dir).context("recovering the journal")?;
        if let Some((path, offset, cut, why)) = &recovery.truncated {
            eprintln!(
                "cep: journal: cut a torn tail of {cut} bytes from {} at byte {offset} ({why}); the last complete beat is kept",
                path.display()
            );
        }
        let (config, config_dir) = match config_file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let dir = std::fs::canonicalize(file)
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.display().to_string()))
                    .unwrap_or_else(|| ".".to_owned());
                (text, dir)
            }
            None => (String::new(), String::new()),
        };
        let plugins: Vec<PluginRecord> = plugins.map(|h| h.records().to_vec()).unwrap_or_default();
        let header = RunHeader {
            config,
            config_dir,
            first_beat: runtime.next_beat(),
            plugin_set_hash: RunHeader::plugin_set_hash_of(&plugins),
            plugins,
        };
        let config = JournalConfig {
            fsync,
            ..JournalConfig::default()
        };
        let journal = Journal::open(&dir, config, &header).context("opening the journal")?;
        runtime.record_inputs(true);
        Ok(Recorder {
            journal,
            pending: Vec::new(),
        })
    }

    /// Notes a decision applied before the next beat.
    pub fn decide(&mut self, decision: Decision) {
        self.pending.push(decision);
    }

    /// Journals the beat just run.
    pub fn beat(&mut self, runtime: &mut Runtime, report: &BeatReport) -> Result<()> {
        let entry = BeatEntry {
            beat: report.beat,
            decisions: std::mem::take(&mut self.pending),
            inputs: runtime.take_inputs(),
            state_hash: report.state_hash,
        };
        self.journal
            .append(&entry)
            .context("appending to the journal")
    }

    pub fn finish(mut self) -> Result<()> {
        self.journal.sync().context("syncing the journal")
    }
}

/// Parses `--fsync`: `beat`, `never`, or a number of beats.
pub(super) fn parse_fsync(text: &str) -> Result<journal::Fsync, UsageError> {
    match text {
        "beat" => Ok(journal::Fsync::EveryBeat),
        "never" => Ok(journal::Fsync::Never),
        n => n
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .map(journal::Fsync::Every)
            .ok_or_else(|| {
                UsageError(format!(
                    "--fsync {n:?}: expected beat, never or a number of beats"
                ))
            }),
    }
}

/// What differs between the recorded plugin set and the one loaded now.
fn plugin_changes(recorded: &[PluginRecord], now: &[PluginRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for r in recorded {
        match now.iter().find(|n| n.name == r.name) {
            None => out.push(format!("plugin {} {} ({}) is not loaded now", r.name, r.version, r.file)),
            Some(n) if n.version != r.version || n.file_hash != r.file_hash => out.push(format!(
                "plugin {} changed: recorded {} from {} (file hash {}), now {} from {} (file hash {})",
                r.name,
                r.version,
                r.file,
                &hash::hex(&r.file_hash)[..16],
                n.version,
                n.file,
                &hash::hex(&n.file_hash)[..16]
            )),
            Some(_) => {}
        }
    }
    for n in now {
        if !recorded.iter().any(|r| r.name == n.name) {
            out.push(format!(
                "plugin {} {} ({}) was not in the recorded run",
                n.name, n.version, n.file
            ));
        }
    }
    out
}

/// `cep replay --verify <data-dir>`: runs every recorded run again from its
/// first beat with the recorded inputs and decisions, comparing each beat's
/// state hash. Exit 0 when all match, 1 at the first divergence, 2 when the
/// journal or the plugins make a replay impossible.
pub(super) fn replay(data_dir: &FsPath) -> Result<i32> {
    let dir = journal_dir(data_dir);
    let contents =
        journal::read(&dir).map_err(|e| UsageError(format!("cannot read the journal: {e}")))?;
    if let Some((path, offset, why)) = &contents.torn {
        eprintln!(
            "cep: journal: ignoring a torn tail in {} at byte {offset} ({why})",
            path.display()
        );
    }
    if contents.runs.is_empty() {
        return Err(UsageError(format!("{}: no journal to replay", dir.display())).into());
    }
    let mut verified = 0usize;
    let mut last = None;
    for (n, (header, start)) in contents.runs.iter().enumerate() {
        let end = contents
            .runs
            .get(n + 1)
            .map(|(_, s)| *s)
            .unwrap_or(contents.beats.len());
        let config = if header.config.is_empty() {
            Config::default()
        } else {
            Config::parse_at(&header.config, FsPath::new(&header.config_dir))
                .map_err(|e| UsageError(format!("run {n}: the recorded configuration: {e}")))?
        };
        let mut runtime = Runtime::new(config.clone()).context("starting the runtime")?;
        let mut plugins = if config.has_plugins() {
            let host = PluginHost::bootstrap_for_replay(&mut runtime, &config)
                .map_err(|e| UsageError(e.to_string()))?;
            let changes = plugin_changes(&header.plugins, host.records());
            if !changes.is_empty() {
                return Err(UsageError(format!(
                    "run {n}: the plugin set differs from the recorded one, so a replay would prove nothing:\n  {}",
                    changes.join("\n  ")
                ))
                .into());
            }
            Some(host)
        } else {
            default_world::install(&mut runtime).context("installing the default world")?;
            None
        };
        runtime.discard_pending_inputs();
        for entry in &contents.beats[*start..end] {
            // The inputs first: those accepted before shutdown began were
            // captured by its first beat.
            let injector = runtime.injector();
            for input in &entry.inputs {
                injector
                    .inject_with_seq(&input.source, input.seq, input.impulse.clone())
                    .map_err(|e| {
                        UsageError(format!("replaying the inputs of beat {}: {e}", entry.beat))
                    })?;
            }
            for decision in &entry.decisions {
                match decision {
                    Decision::Reload { file } => {
                        let host = plugins.as_mut().ok_or_else(|| {
                            UsageError("a recorded reload without plugins".into())
                        })?;
                        host.reload(&mut runtime, &config, FsPath::new(file))
                            .map_err(|e| {
                                UsageError(format!(
                                    "replaying the reload before beat {}: {e}",
                                    entry.beat
                                ))
                            })?;
                    }
                    Decision::Shutdown => {
                        runtime.close_inputs();
                        runtime.begin_shutdown();
                    }
                }
            }
            let report = runtime.step()?;
            if report.beat != entry.beat || report.state_hash != entry.state_hash {
                write_stdout(&format!(
                    "cep: replay diverged at beat {}: recorded hash {}, replayed beat {} hash {}\n",
                    entry.beat,
                    hash::hex(&entry.state_hash),
                    report.beat,
                    hash::hex(&report.state_hash)
                ))?;
                return Ok(1);
            }
            verified += 1;
            last = Some(report);
        }
    }
    let last = last.map(|r| r.summary_line()).unwrap_or_default();
    write_stdout(&format!(
        "cep: replay verified {verified} beats in {} runs: every state hash matches ({last})\n",
        contents.runs.len()
    ))?;
    Ok(0)
}
