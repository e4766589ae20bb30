//! `cep run --data-dir DIR` (journaling) and `cep replay --verify DIR`.

use std::path::{Path as FsPath, PathBuf};

use anyhow::{Context, Result};

use super::{default_world, write_stdout, UsageError};
use crate::beat::{BeatReport, Runtime};
use crate::cell::{self, hash, Change, Name, Path, Snapshot, WorkTree};
use crate::config::Config;
use crate::episode;
use crate::journal::exec::{ExecLog, Retention};
use crate::journal::{
    self, checkpoint, state, BeatEntry, Decision, Journal, JournalConfig, PluginRecord, RunHeader,
};
use crate::plugin::PluginHost;

/// Journals a running world, beat by beat, and checkpoints its tree.
pub(super) struct Recorder {
    journal: Journal,
    data_dir: PathBuf,
    pending: Vec<Decision>,
    /// The tree of the last journaled beat (what the next beat's changes
    /// are computed against).
    prev: Snapshot,
    checkpoint_every: u64,
    last_checkpoint: Option<u64>,
    exec: ExecLog,
}

/// The journal directory of a data directory.
fn journal_dir(data_dir: &FsPath) -> PathBuf {
    data_dir.join("journal")
}

/// Checkpoints kept in a data directory (older ones are deleted; the
/// journal alone rebuilds any beat after the oldest kept one).
const CHECKPOINTS_KEPT: usize = 4;

/// A data directory as recovery found it.
pub(super) struct Recovered {
    /// The tree of its last complete beat (`None`: a new data directory).
    pub tree: Option<Snapshot>,
    /// The runs its journal holds (the next run's number).
    pub runs: u64,
}

/// Recovers the data directory of a previous run, if there is one: cuts a
/// torn journal tail, refuses corruption (or, with `truncate_corrupt`, cuts
/// at it and keeps what it removed beside the data directory), sets aside
/// checkpoints the journal does not reach, then rebuilds the tree of the
/// last complete beat (newest checkpoint + recorded changes, checked
/// against every recorded hash).
pub(super) fn recover(data_dir: &FsPath, truncate_corrupt: bool) -> Result<Recovered> {
    let dir = journal_dir(data_dir);
    let on_corrupt = if truncate_corrupt {
        journal::OnCorrupt::Cut {
            keep_in: cut_dir(data_dir)?,
        }
    } else {
        journal::OnCorrupt::Refuse
    };
    let (recovery, contents) = match journal::recover_and_read(&dir, &on_corrupt) {
        Ok(ok) => ok,
        Err(journal::JournalError::Corrupt(damage)) => {
            return Err(UsageError(format!(
                "{}: the journal is damaged, so the run cannot resume: {damage}.\n  \
                 This is not a torn tail (a crash leaves only an incomplete last frame), so cep cuts nothing on its own. \
                 Restore the segment from a copy if you have one; or run again with --truncate-corrupt to resume after {}, \
                 deleting the {} intact beats after the damage (what is cut is kept in a directory beside {}).",
                data_dir.display(),
                damage
                    .last_beat
                    .map_or("an empty journal".to_owned(), |b| format!("beat {b}")),
                damage.beats_after,
                data_dir.display()
            ))
            .into())
        }
        Err(e) => return Err(UsageError(format!("recovering the journal: {e}")).into()),
    };
    if let Some((path, offset, cut, why)) = &recovery.truncated {
        eprintln!(
            "cep: journal: cut a torn tail of {cut} bytes from {} at byte {offset} ({why}); the last complete beat is kept",
            path.display()
        );
    }
    if let Some((damage, kept)) = &recovery.cut {
        eprintln!(
            "cep: journal: --truncate-corrupt: cut at the damage ({damage}); {} intact beats deleted from the journal, the removed bytes kept in {}",
            damage.beats_after,
            kept.display()
        );
    }
    let keep_in = recovery.cut.as_ref().map(|(_, kept)| kept.as_path());
    set_aside_checkpoints(data_dir, recovery.last_beat, keep_in)?;
    let runs = contents.runs.len() as u64;
    if recovery.last_beat.is_none() {
        return Ok(Recovered { tree: None, runs });
    }
    let rebuilt = state::tree_at(data_dir, &contents, None).map_err(|e| {
        UsageError(format!(
            "{}: cannot recover the last beat: {e}",
            data_dir.display()
        ))
    })?;
    for why in &rebuilt.skipped {
        eprintln!("cep: checkpoint skipped: {why}");
    }
    eprintln!(
        "cep: recovered beat {} ({}) from {} and {} journaled beats",
        rebuilt.snapshot.beat(),
        rebuilt.snapshot.hash_hex(),
        rebuilt
            .checkpoint
            .map_or("the first beat".to_owned(), |b| format!(
                "the checkpoint of beat {b}"
            )),
        rebuilt.beats_applied
    );
    Ok(Recovered {
        tree: Some(rebuilt.snapshot),
        runs,
    })
}

/// A new directory beside `data_dir` for what `--truncate-corrupt` cuts:
/// `<name>.cut-<n>`, the first `n` not taken.
fn cut_dir(data_dir: &FsPath) -> Result<PathBuf> {
    let full = std::fs::canonicalize(data_dir)
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".to_owned());
    let parent = full.parent().unwrap_or(&full);
    (1..)
        .map(|n| parent.join(format!("{name}.cut-{n}")))
        .find(|p| !p.exists())
        .context("no free name for the cut directory")
}

/// Start-up hygiene for checkpoints: removes leftover `.tmp` files (a crash
/// mid-write), and sets aside every checkpoint of a beat after the last
/// journaled one (it describes a state the journal does not reach, so it
/// is never used): into `keep_in` when a cut made one, else renamed to
/// `<name>.stale`.
fn set_aside_checkpoints(
    data_dir: &FsPath,
    last_beat: Option<u64>,
    keep_in: Option<&FsPath>,
) -> Result<()> {
    let dir = checkpoint::dir(data_dir);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                eprintln!(
                    "cep: removed {}, a checkpoint left unfinished by a crash",
                    path.display()
                );
            }
        }
    }
    for (beat, path) in checkpoint::list(data_dir) {
        if last_beat.is_some_and(|last| beat <= last) {
            continue;
        }
        let to = match keep_in {
            Some(kept) => {
                let into = kept.join("checkpoints");
                std::fs::create_dir_all(&into)
                    .with_context(|| format!("creating {}", into.display()))?;
                into.join(path.file_name().unwrap_or_default())
            }
            None => path.with_extension("ckpt.stale"),
        };
        journal::recover::move_file(&path, &to)?;
        eprintln!(
            "cep: checkpoint of beat {beat} is newer than the journal's last beat ({}); set aside as {}, never used",
            last_beat.map_or("none".to_owned(), |b| b.to_string()),
            to.display()
        );
    }
    Ok(())
}

impl Recorder {
    /// Starts a run in the journal under `data_dir` (after [`recover`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        data_dir: &FsPath,
        fsync: journal::Fsync,
        checkpoint_every: u64,
        retention: Retention,
        config_file: Option<&FsPath>,
        runtime: &mut Runtime,
        plugins: Option<&PluginHost>,
        resumed: bool,
        run: u64,
    ) -> Result<Self> {
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
        let genesis = runtime.snapshot().clone();
        let header = RunHeader {
            config,
            config_dir,
            first_beat: runtime.next_beat(),
            plugin_set_hash: RunHeader::plugin_set_hash_of(&plugins),
            plugins,
            genesis: resumed.then(|| (genesis.beat(), genesis.hash())),
            run: Some(run),
            ..RunHeader::default()
        };
        let config = JournalConfig {
            fsync,
            ..JournalConfig::default()
        };
        let journal = Journal::open(&journal_dir(data_dir), config, &header)
            .context("opening the journal")?;
        runtime.record_inputs(true);
        let exec = ExecLog::open(data_dir, retention).context("opening the execution documents")?;
        Ok(Recorder {
            exec,
            journal,
            data_dir: data_dir.to_owned(),
            pending: Vec::new(),
            prev: genesis,
            checkpoint_every,
            last_checkpoint: None,
        })
    }

    /// Notes a decision applied before the next beat.
    pub fn decide(&mut self, decision: Decision) {
        self.pending.push(decision);
    }

    /// Journals the beat just run; checkpoints every `checkpoint_every`
    /// beats.
    pub fn beat(&mut self, runtime: &mut Runtime, report: &BeatReport) -> Result<()> {
        let now = runtime.snapshot().clone();
        let mut decisions = std::mem::take(&mut self.pending);
        decisions.extend(runtime.take_decisions().iter().map(journal_decision));
        let entry = BeatEntry {
            beat: report.beat,
            decisions,
            inputs: runtime.take_inputs(),
            changes: cell::diff(&self.prev, &now),
            state_hash: report.state_hash,
        };
        self.journal
            .append(&entry)
            .context("appending to the journal")?;
        self.exec
            .beat(entry.beat, &entry.changes, &now)
            .context("writing the execution documents")?;
        self.prev = now;
        if self.checkpoint_every > 0 && report.beat.is_multiple_of(self.checkpoint_every) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Checkpoints the tree of the last journaled beat (the journal is
    /// synced first: a checkpoint never runs ahead of it).
    fn checkpoint(&mut self) -> Result<()> {
        let beat = self.prev.beat();
        if self.last_checkpoint == Some(beat) {
            return Ok(());
        }
        self.journal.sync().context("syncing the journal")?;
        checkpoint::write(&self.data_dir, beat, &self.prev).context("writing a checkpoint")?;
        checkpoint::prune(&self.data_dir, CHECKPOINTS_KEPT);
        self.last_checkpoint = Some(beat);
        Ok(())
    }

    /// A clean stop: syncs the journal and checkpoints the last beat.
    pub fn finish(mut self) -> Result<()> {
        self.checkpoint()?;
        self.journal.sync().context("syncing the journal")
    }
}

/// The journal's form of a kernel decision.
fn journal_decision(d: &episode::Decision) -> Decision {
    match &d.kind {
        episode::DecisionKind::CancelEpisodeCpu { eid, used_ns } => Decision::CpuCancel {
            eid: eid.to_string(),
            used_ns: *used_ns,
        },
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

/// A world as a recorded run started it: the recorded configuration, the
/// same plugins (refused when they differ), from the empty tree or, for a
/// run that resumed after a restart, from the tree it resumed from.
fn world_of(
    data_dir: &FsPath,
    contents: &journal::Contents,
    run: usize,
) -> Result<(Runtime, Option<PluginHost>, Config)> {
    let header = &contents.runs[run].0;
    let config = if header.config.is_empty() {
        Config::default()
    } else {
        Config::parse_at(&header.config, FsPath::new(&header.config_dir))
            .map_err(|e| UsageError(format!("run {run}: the recorded configuration: {e}")))?
    };
    let mut runtime = match header.genesis {
        None => Runtime::new(config.clone()).context("starting the runtime")?,
        Some((beat, hash)) => {
            let rebuilt = state::tree_at(data_dir, contents, Some(beat)).map_err(|e| {
                UsageError(format!(
                    "run {run} resumed from beat {beat}, whose tree cannot be rebuilt: {e}"
                ))
            })?;
            if rebuilt.snapshot.hash() != hash {
                return Err(UsageError(format!(
                    "run {run} resumed from beat {beat} with hash {}, but the journal's tree hashes to {}",
                    cell::hash::hex(&hash),
                    rebuilt.snapshot.hash_hex()
                ))
                .into());
            }
            Runtime::resume(config.clone(), rebuilt.snapshot).context("starting the runtime")?
        }
    };
    let plugins = if config.has_plugins() {
        let host = PluginHost::bootstrap_for_replay(&mut runtime, &config)
            .map_err(|e| UsageError(e.to_string()))?;
        let changes = plugin_changes(&header.plugins, host.records());
        if !changes.is_empty() {
            return Err(UsageError(format!(
                "run {run}: the plugin set differs from the recorded one, so a replay would prove nothing:\n  {}",
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
    Ok((runtime, plugins, config))
}

/// `cep replay --verify <data-dir>`: runs every recorded run again with the
/// recorded inputs and decisions, comparing each beat's state hash. With
/// `from_checkpoint`, starts at the newest checkpoint the journal's later
/// beats can be replayed from (a restart's resume point) instead of the
/// first beat. Exit 0 when all match, 1 at the first divergence (naming
/// the beat, the differing cells and both values), 2 when the journal or
/// the plugins make a replay impossible.
pub(super) fn replay(data_dir: &FsPath, from_checkpoint: bool) -> Result<i32> {
    let dir = journal_dir(data_dir);
    let contents = journal::read_until_damage(&dir)
        .map_err(|e| UsageError(format!("cannot read the journal: {e}")))?;
    if let Some((path, offset, why)) = &contents.torn {
        eprintln!(
            "cep: journal: ignoring a torn tail in {} at byte {offset} ({why})",
            path.display()
        );
    }
    if let Some(damage) = &contents.corrupt {
        eprintln!(
            "cep: journal: damaged (not a torn tail): {damage}; replaying the beats before it, then failing"
        );
    }
    if contents.runs.is_empty() {
        if let Some(damage) = &contents.corrupt {
            write_stdout(&format!(
                "cep: replay verified nothing: the journal is damaged before its first run header: {damage}\n"
            ))?;
            return Ok(1);
        }
        return Err(UsageError(format!("{}: no journal to replay", dir.display())).into());
    }
    // Runs start from the empty tree or from the tree they resumed from;
    // `--from-checkpoint` skips the runs before the last resume point.
    let first_run = if from_checkpoint {
        contents
            .runs
            .iter()
            .rposition(|(h, _)| h.genesis.is_some())
            .unwrap_or(0)
    } else {
        0
    };
    let total: usize = contents.beats.len() - contents.runs[first_run].1;
    let progress = indicatif::ProgressBar::new(total as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} beats {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if total < 10_000 {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let mut verified = 0usize;
    let mut last = None;
    for n in first_run..contents.runs.len() {
        let start = contents.runs[n].1;
        let end = contents
            .runs
            .get(n + 1)
            .map(|(_, s)| *s)
            .unwrap_or(contents.beats.len());
        let (mut runtime, mut plugins, config) = world_of(data_dir, &contents, n)?;
        let cpu: Vec<episode::Decision> = contents.beats[start..end]
            .iter()
            .flat_map(|e| {
                e.decisions.iter().filter_map(move |d| match d {
                    Decision::CpuCancel { eid, used_ns } => Some(episode::Decision {
                        beat: e.beat,
                        kind: episode::DecisionKind::CancelEpisodeCpu {
                            eid: Name::new(eid).ok()?,
                            used_ns: *used_ns,
                        },
                    }),
                    _ => None,
                })
            })
            .collect();
        // Never measure: a CPU-budget cancellation happens where recorded.
        runtime.replay_decisions(cpu);
        for entry in &contents.beats[start..end] {
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
                    Decision::CpuCancel { .. } => {}
                }
            }
            let before = runtime.snapshot().clone();
            if let Err(why) = recorded_changes_hold(&before, entry) {
                progress.finish_and_clear();
                write_stdout(&format!(
                    "cep: replay stopped at beat {}: the journal's change records are inconsistent: {why}\n",
                    entry.beat
                ))?;
                return Ok(1);
            }
            let report = runtime.step()?;
            if report.beat != entry.beat || report.state_hash != entry.state_hash {
                progress.finish_and_clear();
                let mut text = format!(
                    "cep: replay diverged at beat {}: recorded hash {}, replayed beat {} hash {}\n",
                    entry.beat,
                    hash::hex(&entry.state_hash),
                    report.beat,
                    hash::hex(&report.state_hash)
                );
                text.push_str(&differing_cells(
                    &before,
                    &entry.changes,
                    runtime.snapshot(),
                ));
                write_stdout(&text)?;
                return Ok(1);
            }
            verified += 1;
            progress.inc(1);
            last = Some(report);
        }
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let last = last.map(|r| r.summary_line()).unwrap_or_default();
    if let Some(damage) = &contents.corrupt {
        write_stdout(&format!(
            "cep: replay verified the {verified} beats before the damage ({last}), but the journal is damaged: {damage}\n"
        ))?;
        return Ok(1);
    }
    write_stdout(&format!(
        "cep: replay verified {verified} beats in {} runs in {seconds:.2} s: every state hash matches ({last})\n",
        contents.runs.len() - first_run
    ))?;
    Ok(0)
}

/// Whether a beat's recorded changes, applied to the tree before it, give
/// its recorded state hash: the change records are what rebuilds any
/// beat's tree, so a replay proves them too, not only the hash it
/// recomputes.
fn recorded_changes_hold(before: &Snapshot, entry: &BeatEntry) -> Result<(), String> {
    let mut tree = WorkTree::new(before);
    for change in &entry.changes {
        tree.apply(change)
            .map_err(|e| format!("change {} cannot be applied: {e}", change.path()))?;
    }
    let rebuilt = tree.commit(entry.beat);
    if rebuilt.hash() == entry.state_hash {
        Ok(())
    } else {
        Err(format!(
            "applied to beat {}'s tree they give hash {}, the recorded hash is {}",
            before.beat(),
            rebuilt.hash_hex(),
            hash::hex(&entry.state_hash)
        ))
    }
}

/// Cells shown in a divergence report.
const DIFF_SHOWN: usize = 20;

/// The cells where the replayed tree differs from the recorded one, with
/// both values: the recorded tree is the beat before (which matched) with
/// the recorded changes applied.
fn differing_cells(before: &Snapshot, recorded: &[Change], replayed: &Snapshot) -> String {
    let mut tree = WorkTree::new(before);
    for change in recorded {
        if tree.apply(change).is_err() {
            return "  (the recorded changes of this beat cannot be applied)\n".to_owned();
        }
    }
    let recorded = tree.commit(replayed.beat());
    let changes = cell::diff(&recorded, replayed);
    let show = |tree: &Snapshot, path: &Path| match tree.node(path) {
        None => "(no cell)".to_owned(),
        Some(node) => node
            .value()
            .map_or_else(|| "(no value)".to_owned(), |v| v.to_string()),
    };
    let mut out = format!("  {} cells differ (recorded vs replayed):\n", changes.len());
    for change in changes.iter().take(DIFF_SHOWN) {
        let path = change.path();
        out.push_str(&format!(
            "  {path}: recorded {}, replayed {}\n",
            show(&recorded, path),
            show(replayed, path)
        ));
    }
    if changes.len() > DIFF_SHOWN {
        out.push_str(&format!("  … and {} more\n", changes.len() - DIFF_SHOWN));
    }
    out
}

/// `cep inspect <data-dir> [path] [--beat N]`: the subtree at `path` of a
/// journaled beat's tree, rebuilt from checkpoints and the journal.
pub(super) fn inspect(data_dir: &FsPath, path: &Path, beat: Option<u64>) -> Result<()> {
    let contents = journal::read_until_damage(&journal_dir(data_dir))
        .map_err(|e| UsageError(format!("cannot read the journal: {e}")))?;
    if let Some(damage) = &contents.corrupt {
        eprintln!(
            "cep: the journal is damaged: {damage}; beats after {} cannot be shown{}",
            damage
                .last_beat
                .map_or("the start".to_owned(), |b| format!("beat {b}")),
            if beat.is_none() {
                damage.last_beat.map_or(String::new(), |b| {
                    format!(": showing beat {b}, the last before the damage")
                })
            } else {
                String::new()
            }
        );
    }
    let rebuilt = state::tree_at(data_dir, &contents, beat)
        .map_err(|e| UsageError(format!("{}: {e}", data_dir.display())))?;
    let s = &rebuilt.snapshot;
    let text = s
        .render(path)
        .unwrap_or_else(|| format!("{path}: no such cell at beat {}\n", s.beat()));
    write_stdout(&format!("{text}beat={} hash={}\n", s.beat(), s.hash_hex()))
}
