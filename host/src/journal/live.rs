//! A live run: a world started (or resumed from its data directory after
//! recovery), its beats run with reloads and pacing, each beat journaled
//! when a data directory is given, then an optional clean shutdown. The
//! replay driver (`replay.rs`) runs the same beats from the record.

use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::exec::Retention;
use super::{Console, Fsync, Refused};
use crate::beat::{BeatReport, Runtime};
use crate::config::{Config, ExecutorKind};
use crate::default_world;
use crate::plugin::PluginHost;

/// What a live run does (the `cep run` flags).
pub struct LiveRun<'a> {
    pub config: &'a Config,
    /// The configuration file, recorded in the journal's run header.
    pub config_file: Option<&'a FsPath>,
    /// Beats to run (at least 1).
    pub beats: u64,
    /// Stop early once nothing is queued.
    pub until_idle: bool,
    /// The period between beats, if paced.
    pub rate: Option<Duration>,
    /// Lua or wasm plugin files to reload just before the given beats.
    pub reload: &'a [(u64, PathBuf)],
    /// After the beats, run `op/shdn` and stop the adapters.
    pub shutdown: bool,
    /// Journal into this data directory (recovered first).
    pub data_dir: Option<&'a FsPath>,
    pub checkpoint_every: u64,
    pub retention: Retention,
    /// Cut a damaged journal at the damage instead of refusing it.
    pub truncate_corrupt: bool,
    pub fsync: Fsync,
}

/// Runs `live`, reporting through `console`; returns the runtime and the
/// last beat's report.
pub fn run_live(live: &LiveRun<'_>, console: &mut dyn Console) -> Result<(Runtime, BeatReport)> {
    let config = live.config;
    let recovered = match &live.data_dir {
        Some(dir) => Some(super::recover_data_dir(
            dir,
            live.truncate_corrupt,
            console,
        )?),
        None => None,
    };
    let run_number = recovered.as_ref().map_or(0, |r| r.runs);
    let genesis = recovered.and_then(|r| r.tree);
    let resumed = genesis.is_some();
    let mut runtime = match genesis {
        Some(tree) => Runtime::resume(config.clone(), tree),
        None => Runtime::new(config.clone()),
    }
    .context("starting the runtime")?;
    let plugins = if config.has_plugins() {
        let host = PluginHost::bootstrap(&mut runtime, config)
            .map_err(|e| Refused(format!("{e} (strict mode)")))?;
        for e in host.rejected() {
            console.note(&format!("cep: rejected {e}"));
        }
        console.out(&format!(
            "cep: {} plugins loaded ({}), {} rejected\n",
            host.installed().len(),
            host.installed()
                .iter()
                .map(|(n, v)| format!("{n} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            host.rejected().len()
        ))?;
        Some(host)
    } else {
        default_world::install(&mut runtime).context("installing the default world")?;
        None
    };
    // determinism: pacing and the printed duration only; a beat never sees it.
    let started = Instant::now();
    let period = live.rate;
    let reloads = &live.reload;
    let mut plugins = plugins;
    let mut recorder = match &live.data_dir {
        Some(dir) => Some(super::Recorder::start(
            dir,
            live.fsync,
            live.checkpoint_every,
            live.retention,
            live.config_file,
            &mut runtime,
            plugins.as_ref(),
            resumed,
            run_number,
        )?),
        None => None,
    };
    let mut last = None;
    let (mut impulses, mut calls, mut facts) = (0usize, 0usize, 0usize);
    for i in 0..live.beats {
        let next = runtime.next_beat();
        for (_, file) in reloads.iter().filter(|(b, _)| *b == next) {
            let Some(host) = plugins.as_mut() else {
                return Err(Refused("--reload needs plugins (--config)".into()).into());
            };
            match host.reload(&mut runtime, config, file) {
                Ok(()) => {
                    if let Some(recorder) = recorder.as_mut() {
                        recorder.decide(super::Decision::Reload {
                            file: file.display().to_string(),
                        });
                    }
                    console.out(&format!(
                        "cep: reloaded {} before beat {}\n",
                        file.display(),
                        runtime.next_beat()
                    ))?
                }
                Err(e) if config.strict => return Err(Refused(format!("{e} (strict mode)")).into()),
                Err(e) => console.note(&format!("cep: reload refused: {e}")),
            }
        }
        if live.until_idle && last.is_some() && !runtime.has_pending() {
            break;
        }
        if let Some(period) = period {
            let due = period
                .checked_mul(u32::try_from(i).unwrap_or(u32::MAX))
                .and_then(|after| started.checked_add(after))
                .unwrap_or_else(Instant::now);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let report = runtime.step()?;
        if let Some(recorder) = recorder.as_mut() {
            recorder.beat(&mut runtime, &report)?;
        }
        impulses += report.impulses;
        calls += report.calls;
        facts += report.facts;
        last = Some(report);
    }
    let Some(mut report) = last else {
        return Err(Refused("--beats must be at least 1".into()).into());
    };
    if live.shutdown {
        report = match recorder.as_mut() {
            // Beat by beat, so that each shutdown beat is journaled.
            Some(recorder) => {
                recorder.decide(super::Decision::Shutdown);
                runtime.close_inputs();
                runtime.begin_shutdown();
                while !runtime.is_down() {
                    report = runtime.step()?;
                    recorder.beat(&mut runtime, &report)?;
                }
                report
            }
            None => runtime.shutdown()?,
        };
    }
    if let Some(recorder) = recorder {
        recorder.finish()?;
    }
    if let Some(host) = &plugins {
        host.stop_adapters();
        for s in host.adapter_stats() {
            console.out(&format!(
                "cep: adapter {}/{}: {} inputs captured, {} dropped after shutdown began\n",
                s.plugin, s.adapter, s.accepted, s.dropped
            ))?;
        }
    }
    console.out(&format!(
        "cep: ran {} beats on {:?}{} in {:.1} ms: {impulses} impulses, {calls} enzyme calls, {facts} CEI facts\n",
        report.beat + 1,
        config.executor,
        if config.executor == ExecutorKind::Threaded {
            format!(" ({} workers)", config.effective_workers())
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64() * 1e3,
    ))?;
    Ok((runtime, report))
}
