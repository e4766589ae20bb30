//! A journaled run: recovering a data directory a previous run left (a
//! torn tail cut, corruption refused or cut on request, stale checkpoints
//! set aside), and the recorder that journals each beat and checkpoints
//! the tree.

use std::path::{Path as FsPath, PathBuf};

use anyhow::{Context, Result};

use super::exec::{ExecLog, Retention};
use super::{
    checkpoint, state, BeatEntry, Console, Decision, Journal, JournalConfig, PluginRecord, Refused,
    RunHeader,
};
use crate::beat::{BeatReport, Runtime};
use crate::cell::{self, Snapshot};
use crate::episode;
use crate::plugin::PluginHost;

/// Journals a running world, beat by beat, and checkpoints its tree.
pub struct Recorder {
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
pub fn journal_dir(data_dir: &FsPath) -> PathBuf {
    data_dir.join("journal")
}

/// Checkpoints kept in a data directory (older ones are deleted; the
/// journal alone rebuilds any beat after the oldest kept one).
const CHECKPOINTS_KEPT: usize = 4;

/// A data directory as recovery found it.
pub struct Recovered {
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
pub fn recover_data_dir(
    data_dir: &FsPath,
    truncate_corrupt: bool,
    console: &mut dyn Console,
) -> Result<Recovered> {
    let dir = journal_dir(data_dir);
    let on_corrupt = if truncate_corrupt {
        super::OnCorrupt::Cut {
            keep_in: cut_dir(data_dir)?,
        }
    } else {
        super::OnCorrupt::Refuse
    };
    let (recovery, contents) = match super::recover_and_read(&dir, &on_corrupt) {
        Ok(ok) => ok,
        Err(super::JournalError::Corrupt(damage)) => {
            return Err(Refused(format!(
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
        Err(e) => return Err(Refused(format!("recovering the journal: {e}")).into()),
    };
    if let Some((path, offset, cut, why)) = &recovery.truncated {
        console.note(&format!(
            "cep: journal: cut a torn tail of {cut} bytes from {} at byte {offset} ({why}); the last complete beat is kept",
            path.display()
        ));
    }
    if let Some((damage, kept)) = &recovery.cut {
        console.note(&format!(
            "cep: journal: --truncate-corrupt: cut at the damage ({damage}); {} intact beats deleted from the journal, the removed bytes kept in {}",
            damage.beats_after,
            kept.display()
        ));
    }
    let keep_in = recovery.cut.as_ref().map(|(_, kept)| kept.as_path());
    set_aside_checkpoints(data_dir, recovery.last_beat, keep_in, console)?;
    let runs = contents.runs.len() as u64;
    if recovery.last_beat.is_none() {
        return Ok(Recovered { tree: None, runs });
    }
    let rebuilt = state::tree_at(data_dir, &contents, None).map_err(|e| {
        Refused(format!(
            "{}: cannot recover the last beat: {e}",
            data_dir.display()
        ))
    })?;
    for why in &rebuilt.skipped {
        console.note(&format!("cep: checkpoint skipped: {why}"));
    }
    console.note(&format!(
        "cep: recovered beat {} ({}) from {} and {} journaled beats",
        rebuilt.snapshot.beat(),
        rebuilt.snapshot.hash_hex(),
        rebuilt
            .checkpoint
            .map_or("the first beat".to_owned(), |b| format!(
                "the checkpoint of beat {b}"
            )),
        rebuilt.beats_applied
    ));
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
    console: &mut dyn Console,
) -> Result<()> {
    let dir = checkpoint::dir(data_dir);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                console.note(&format!(
                    "cep: removed {}, a checkpoint left unfinished by a crash",
                    path.display()
                ));
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
        super::recover::move_file(&path, &to)?;
        console.note(&format!(
            "cep: checkpoint of beat {beat} is newer than the journal's last beat ({}); set aside as {}, never used",
            last_beat.map_or("none".to_owned(), |b| b.to_string()),
            to.display()
        ));
    }
    Ok(())
}

impl Recorder {
    /// Starts a run in the journal under `data_dir` (after [`recover_data_dir`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        data_dir: &FsPath,
        fsync: super::Fsync,
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
