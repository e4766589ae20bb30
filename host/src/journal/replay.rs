//! Replaying a journal: `cep replay --verify` runs every recorded run
//! again from its recorded inputs and decisions and compares each beat's
//! state hash; `cep inspect` rebuilds the tree of any journaled beat.

use std::path::Path as FsPath;

use anyhow::{Context, Result};

use super::recorder::journal_dir;
use super::{state, BeatEntry, Console, Decision, PluginRecord, Refused};
use crate::beat::Runtime;
use crate::cell::{self, hash, Change, Name, Path, Snapshot, WorkTree};
use crate::config::Config;
use crate::default_world;
use crate::episode;
use crate::plugin::PluginHost;

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
    contents: &super::Contents,
    run: usize,
) -> Result<(Runtime, Option<PluginHost>, Config)> {
    let header = &contents.runs[run].0;
    let config = if header.config.is_empty() {
        Config::default()
    } else {
        Config::parse_at(&header.config, FsPath::new(&header.config_dir))
            .map_err(|e| Refused(format!("run {run}: the recorded configuration: {e}")))?
    };
    let mut runtime = match header.genesis {
        None => Runtime::new(config.clone()).context("starting the runtime")?,
        Some((beat, hash)) => {
            let rebuilt = state::tree_at(data_dir, contents, Some(beat)).map_err(|e| {
                Refused(format!(
                    "run {run} resumed from beat {beat}, whose tree cannot be rebuilt: {e}"
                ))
            })?;
            if rebuilt.snapshot.hash() != hash {
                return Err(Refused(format!(
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
            .map_err(|e| Refused(e.to_string()))?;
        let changes = plugin_changes(&header.plugins, host.records());
        if !changes.is_empty() {
            return Err(Refused(format!(
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
pub fn replay(data_dir: &FsPath, from_checkpoint: bool, console: &mut dyn Console) -> Result<i32> {
    let dir = journal_dir(data_dir);
    let contents = super::read_until_damage(&dir)
        .map_err(|e| Refused(format!("cannot read the journal: {e}")))?;
    if let Some((path, offset, why)) = &contents.torn {
        console.note(&format!(
            "cep: journal: ignoring a torn tail in {} at byte {offset} ({why})",
            path.display()
        ));
    }
    if let Some(damage) = &contents.corrupt {
        console.note(&format!(
            "cep: journal: damaged (not a torn tail): {damage}; replaying the beats before it, then failing"
        ));
    }
    if contents.runs.is_empty() {
        if let Some(damage) = &contents.corrupt {
            console.out(&format!(
                "cep: replay verified nothing: the journal is damaged before its first run header: {damage}\n"
            ))?;
            return Ok(1);
        }
        return Err(Refused(format!("{}: no journal to replay", dir.display())).into());
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
    // determinism: the printed duration only.
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
                        Refused(format!("replaying the inputs of beat {}: {e}", entry.beat))
                    })?;
            }
            for decision in &entry.decisions {
                match decision {
                    Decision::Reload { file } => {
                        let host = plugins
                            .as_mut()
                            .ok_or_else(|| Refused("a recorded reload without plugins".into()))?;
                        host.reload(&mut runtime, &config, FsPath::new(file))
                            .map_err(|e| {
                                Refused(format!(
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
                console.out(&format!(
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
                console.out(&text)?;
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
        console.out(&format!(
            "cep: replay verified the {verified} beats before the damage ({last}), but the journal is damaged: {damage}\n"
        ))?;
        return Ok(1);
    }
    console.out(&format!(
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
pub fn inspect(
    data_dir: &FsPath,
    path: &Path,
    beat: Option<u64>,
    console: &mut dyn Console,
) -> Result<()> {
    let contents = super::read_until_damage(&journal_dir(data_dir))
        .map_err(|e| Refused(format!("cannot read the journal: {e}")))?;
    if let Some(damage) = &contents.corrupt {
        console.note(&format!(
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
        ));
    }
    let rebuilt = state::tree_at(data_dir, &contents, beat)
        .map_err(|e| Refused(format!("{}: {e}", data_dir.display())))?;
    let s = &rebuilt.snapshot;
    let text = s
        .render(path)
        .unwrap_or_else(|| format!("{path}: no such cell at beat {}\n", s.beat()));
    console.out(&format!("{text}beat={} hash={}\n", s.beat(), s.hash_hex()))
}
