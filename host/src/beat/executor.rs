//! The compute phase on either backend.
//!
//! Both backends call [`run_slot`] on the same agenda and return the same
//! list of staged intents in agenda order, so a beat's result cannot depend on
//! the backend, the worker count or the OS scheduler:
//!
//! - `cooperative` runs the agenda in order on the heartbeat thread.
//! - `threaded` splits the agenda into tasks taken by a fixed pool of
//!   crossbeam workers; the heartbeat thread merges task outputs by agenda
//!   position. Calls of a *stateful* enzyme form one lane that a single
//!   worker runs in agenda order, so such an enzyme never runs twice at once;
//!   so do the calls of every enzyme naming the same [`Enzyme::lane`] (the
//!   enzymes of one Lua VM).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};

use crate::cell::Snapshot;
use crate::enzyme::{EnzymeCx, Op, Staged};
use crate::enzyme::{EnzymeId, Outcome, Registry};
use crate::episode::EpisodeOp;
use crate::episode::{self, Profile, SliceEnd, SliceInfo};
use crate::impulse::Queued;

/// One agenda entry: an impulse and an enzyme to run for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub impulse: u32,
    pub enzyme: EnzymeId,
}

/// The agenda positions that are episode slices, in increasing order, with
/// their context.
#[derive(Default)]
pub(crate) struct Slices(Vec<(u32, SliceInfo)>);

impl Slices {
    /// Adds the slice at `pos`, which follows every position added before.
    pub fn push(&mut self, pos: u32, info: SliceInfo) {
        debug_assert!(self.0.last().is_none_or(|(p, _)| *p < pos));
        self.0.push((pos, info));
    }

    pub fn get(&self, pos: &u32) -> Option<&SliceInfo> {
        // Positions are distinct and increasing, so the slice at `pos` is
        // at index `pos` or before; at `pos` exactly when every agenda
        // entry up to it is a slice (a beat of episodes): no search then.
        if let Some((p, info)) = self.0.get(*pos as usize) {
            if p == pos {
                return Some(info);
            }
        }
        let i = self.0.binary_search_by_key(pos, |(p, _)| *p).ok()?;
        Some(&self.0[i].1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The episodes with a slice in this beat.
    pub fn episodes(&self) -> impl Iterator<Item = &cep_sdk::Name> {
        self.0.iter().map(|(_, info)| &info.eid)
    }

    /// Empties the list, keeping its allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Everything the compute phase of one beat reads. Immutable while it runs.
pub(crate) struct BeatWork {
    /// Agenda positions that are episode slices, with their context.
    pub slices: Slices,
    pub beat: u64,
    pub snapshot: Snapshot,
    pub impulses: Vec<Queued>,
    pub agenda: Vec<Slot>,
    pub registry: Arc<Registry>,
    /// [`Episodes::ended`](crate::episode::Episodes::ended) after the
    /// capture, which found every slice's episode live.
    pub episodes_ended: u64,
}

impl BeatWork {
    /// The name of the enzyme at agenda position `pos`.
    pub fn enzyme_name(&self, pos: u32) -> &str {
        self.registry
            .spec(self.agenda[pos as usize].enzyme)
            .name
            .as_str()
    }
}

/// Agendas shorter than this run on the heartbeat thread even on the
/// threaded backend: handing them to workers costs more than it saves. The
/// output is the same either way.
const PARALLEL_SLOTS_MIN: usize = 64;
/// Guided scheduling: each task takes this fraction (1 / (workers × this))
/// of the agenda still unassigned, so tasks start large (little overhead)
/// and end small (the last one to finish leaves the others idle briefly).
const GUIDED_SHARE: usize = 2;
/// The smallest task, in agenda entries.
const TASK_SLOTS_MIN: usize = 4;

/// Cuts `0..n` into the ranges of guided scheduling, in order.
fn guided_ranges(n: usize, workers: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= n {
            return None;
        }
        let size = (n - start)
            .div_ceil(workers * GUIDED_SHARE)
            .max(TASK_SLOTS_MIN);
        let range = (start, (start + size).min(n));
        start = range.1;
        Some(range)
    })
}

/// Runs the call at agenda position `pos`, appending its intents (or its
/// retry / fatal record) to `out`. A panic becomes a fatal outcome. A slice
/// runs inside its episode's thread-local context and ends with a
/// `SliceDone` record.
/// Drops the intents a failed call staged from `mark` on, except its CEI
/// facts: the diagnostics that explain a failure must survive it.
fn drop_intents(out: &mut Vec<Staged>, mark: usize) {
    let mut keep = mark;
    for i in mark..out.len() {
        if matches!(out[i].op, Op::Cei(_)) {
            out.swap(keep, i);
            keep += 1;
        }
    }
    out.truncate(keep);
}

pub(crate) fn run_slot(work: &BeatWork, pos: usize, out: &mut Vec<Staged>) {
    let slot = work.agenda[pos];
    let registered = work.registry.get(slot.enzyme);
    let slice = if work.slices.is_empty() {
        None
    } else {
        work.slices.get(&(pos as u32))
    };
    let mark = out.len();
    let mut cx = EnzymeCx {
        beat: work.beat,
        snapshot: &work.snapshot,
        impulse: &work.impulses[slot.impulse as usize].impulse,
        spec: &registered.spec,
        pos: pos as u32,
        out,
        ops_started: 0,
        slice,
        failed: None,
    };
    let Some(info) = slice else {
        let outcome = catch_unwind(AssertUnwindSafe(|| registered.callback.call(&mut cx)));
        let outcome = failed_by_host(outcome, cx.failed);
        let failure = match outcome {
            Ok(Outcome::Ok) => return,
            Ok(Outcome::Retry) => Op::Retry,
            Ok(Outcome::Fatal(message)) => Op::Fatal(capped_outcome(message).into()),
            Err(panic) => Op::Fatal(format!("panicked: {}", panic_message(panic.as_ref())).into()),
        };
        drop_intents(out, mark);
        out.push(Staged {
            pos: pos as u32,
            op: failure,
        });
        return;
    };
    let measured = episode::measure_if(info.cpu_left_ns.is_some(), || {
        episode::with_slice(info, || {
            catch_unwind(AssertUnwindSafe(|| registered.callback.call(&mut cx)))
        })
    });
    let ((outcome, end, io_bytes, facts), cpu_ns) = measured;
    let outcome = failed_by_host(outcome, cx.failed);
    // A slice that asks to retry simply runs again next beat.
    let end = match outcome {
        Ok(Outcome::Retry) => end.or(Some(SliceEnd::Yield)),
        _ => end,
    };
    let failed = match outcome {
        Ok(Outcome::Ok | Outcome::Retry) => None,
        Ok(Outcome::Fatal(message)) => Some(capped_outcome(message)),
        Err(panic) => {
            episode::clear_slice();
            Some(format!("panicked: {}", panic_message(panic.as_ref())))
        }
    };
    if let Some(message) = &failed {
        drop_intents(out, mark);
        out.push(Staged {
            pos: pos as u32,
            op: Op::Fatal(message.clone().into()),
        });
    }
    for fact in facts {
        let fact = fact.origin(registered.spec.name.to_string());
        out.push(Staged {
            pos: pos as u32,
            op: Op::Cei(Box::new(fact)),
        });
    }
    let budget = info.io_budget;
    let cancelled = budget > 0 && info.io_used + io_bytes > budget;
    let plain = failed.is_none() && !cancelled && io_bytes == 0 && cpu_ns.is_none();
    if plain && end == Some(SliceEnd::Yield) {
        out.push(Staged {
            pos: pos as u32,
            op: Op::Yielded(info.eid.clone()),
        });
        return;
    }
    out.push(Staged {
        pos: pos as u32,
        op: Op::Episode(Box::new(EpisodeOp::SliceDone {
            eid: info.eid.clone(),
            end,
            io_bytes,
            cpu_ns,
            cancelled,
            failed,
        })),
    });
}

/// A failed call's message, cut to [`crate::cei::OUTCOME_MESSAGE_BYTES_MAX`]: a
/// plugin's text never enters the tree unbounded.
fn capped_outcome(message: String) -> String {
    if message.len() <= crate::cei::OUTCOME_MESSAGE_BYTES_MAX {
        return message;
    }
    crate::cei::capped(&message, crate::cei::OUTCOME_MESSAGE_BYTES_MAX).into_owned()
}

/// A call the host failed (a plugin limit) is `fatal` whatever it
/// returned.
fn failed_by_host<P>(outcome: Result<Outcome, P>, failed: Option<String>) -> Result<Outcome, P> {
    match (outcome, failed) {
        (Ok(_), Some(message)) => Ok(Outcome::Fatal(message)),
        (outcome, _) => outcome,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic with a non-text payload)".to_owned()
    }
}

/// Which lane runs an agenda entry, if it is not free to run anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LaneKey {
    /// The calls of one stateful enzyme.
    Enzyme(EnzymeId),
    /// The calls of every enzyme sharing a named lane.
    Named(&'static str),
}

fn lane_of(work: &BeatWork, pos: usize) -> Option<LaneKey> {
    let id = work.agenda[pos].enzyme;
    let registered = work.registry.get(id);
    if let Some(name) = registered.callback.lane() {
        Some(LaneKey::Named(name))
    } else if registered.spec.flags.stateful {
        Some(LaneKey::Enzyme(id))
    } else {
        None
    }
}

/// RW slices run on the heartbeat thread only.
fn is_heartbeat_only(work: &BeatWork, pos: usize) -> bool {
    !work.slices.is_empty()
        && work
            .slices
            .get(&(pos as u32))
            .is_some_and(|s| s.profile == Profile::Rw)
}

enum Task {
    /// Agenda positions `start..end`, skipping calls that belong to a lane.
    Range(usize, usize),
    /// The calls of one lane, in agenda order.
    Lane(Vec<u32>),
}

struct Batch {
    work: Arc<BeatWork>,
    tasks: Vec<Task>,
    next: AtomicUsize,
    /// Each task's output, or the message of a panic in host code (enzyme
    /// panics are caught per call and never get here).
    results: Sender<(usize, Result<Vec<Staged>, String>)>,
}

impl Batch {
    fn run(&self) {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(task) = self.tasks.get(index) else {
                return;
            };
            // Every task reports, even if host code panics, so the heartbeat
            // thread never waits for a task that died.
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut out = Vec::new();
                match task {
                    Task::Range(start, end) => {
                        for pos in *start..*end {
                            if lane_of(&self.work, pos).is_none()
                                && !is_heartbeat_only(&self.work, pos)
                            {
                                run_slot(&self.work, pos, &mut out);
                            }
                        }
                    }
                    Task::Lane(positions) => {
                        for &pos in positions {
                            run_slot(&self.work, pos as usize, &mut out);
                        }
                    }
                }
                out
            }))
            .map_err(|panic| panic_message(panic.as_ref()));
            // The receiver outlives every batch it is waiting for.
            let _ = self.results.send((index, result));
        }
    }
}

/// A fixed pool of compute threads: the heartbeat thread plus `workers - 1`
/// helpers (the heartbeat thread would otherwise sit idle while the others
/// compute). Dropping it closes the job channel and joins every helper.
pub(crate) struct Pool {
    jobs: Option<Sender<Arc<Batch>>>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn new(workers: usize) -> Self {
        let (jobs, queue): (Sender<Arc<Batch>>, Receiver<Arc<Batch>>) = channel::unbounded();
        let handles = (1..workers.max(1))
            .map(|i| {
                let queue = queue.clone();
                std::thread::Builder::new()
                    .name(format!("cep-worker-{i}"))
                    .spawn(move || {
                        while let Ok(batch) = queue.recv() {
                            batch.run();
                        }
                    })
                    .expect("spawning a worker thread")
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            handles,
        }
    }

    /// Compute threads, the heartbeat thread included.
    pub fn workers(&self) -> usize {
        self.handles.len() + 1
    }

    fn compute(&self, work: &Arc<BeatWork>, buf: Vec<Staged>) -> Vec<Staged> {
        let n = work.agenda.len();
        let workers = self.workers();
        if n < PARALLEL_SLOTS_MIN {
            return compute_inline(work, buf);
        }
        let mut lanes: std::collections::BTreeMap<LaneKey, Vec<u32>> = Default::default();
        let mut heartbeat_only = Vec::new();
        for pos in 0..n {
            if is_heartbeat_only(work, pos) {
                heartbeat_only.push(pos);
            } else if let Some(lane) = lane_of(work, pos) {
                lanes.entry(lane).or_default().push(pos as u32);
            }
        }
        let mut tasks: Vec<Task> = lanes.into_values().map(Task::Lane).collect();
        let has_lanes = !tasks.is_empty() || !heartbeat_only.is_empty();
        tasks.extend(guided_ranges(n, workers).map(|(s, e)| Task::Range(s, e)));
        let task_count = tasks.len();
        let (results, received) = channel::unbounded();
        let batch = Arc::new(Batch {
            work: work.clone(),
            tasks,
            next: AtomicUsize::new(0),
            results,
        });
        let jobs = self.jobs.as_ref().expect("pool is open until dropped");
        for _ in 0..self.handles.len() {
            jobs.send(batch.clone())
                .expect("helpers live as long as the pool");
        }
        batch.run();
        drop(batch);
        let mut outputs: Vec<Option<Vec<Staged>>> = (0..task_count).map(|_| None).collect();
        for _ in 0..task_count {
            let (index, result) = received.recv().expect("every task reports exactly once");
            match result {
                Ok(out) => outputs[index] = Some(out),
                // A bug in the host, not in a plugin: fail loudly on the
                // heartbeat thread rather than commit a partial beat.
                Err(message) => panic!("a compute task panicked in host code: {message}"),
            }
        }
        let mut outputs: Vec<Vec<Staged>> =
            outputs.into_iter().map(Option::unwrap_or_default).collect();
        let mut own = Vec::new();
        for pos in heartbeat_only {
            run_slot(work, pos, &mut own);
        }
        outputs.push(own);
        if has_lanes {
            merge_by_position(outputs)
        } else {
            outputs.into_iter().flatten().collect()
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Merges task outputs, each already in agenda order, into one list in
/// agenda order. Positions never repeat across tasks, so the merge is total.
fn merge_by_position(outputs: Vec<Vec<Staged>>) -> Vec<Staged> {
    let mut all: Vec<Staged> = Vec::with_capacity(outputs.iter().map(Vec::len).sum());
    for out in outputs {
        all.extend(out);
    }
    // Stable: the intents of one call keep their staging order.
    all.sort_by_key(|s| s.pos);
    all
}

/// Runs the whole agenda on this thread into `out` (cleared first; passing
/// last beat's buffer keeps its allocation).
fn compute_inline(work: &BeatWork, mut out: Vec<Staged>) -> Vec<Staged> {
    out.clear();
    for pos in 0..work.agenda.len() {
        run_slot(work, pos, &mut out);
    }
    out
}

/// The compute backend of a runtime.
pub(crate) enum Executor {
    Cooperative,
    Threaded(Pool),
}

impl Executor {
    /// Computes the beat; `buf` is a buffer to reuse for the result.
    pub fn compute(&self, work: &Arc<BeatWork>, buf: Vec<Staged>) -> Vec<Staged> {
        match self {
            Executor::Cooperative => compute_inline(work, buf),
            Executor::Threaded(pool) => pool.compute(work, buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guided_ranges_cover_the_agenda_in_shrinking_tasks() {
        for (n, workers) in [(1, 2), (64, 2), (128, 2), (1000, 8), (100_000, 2)] {
            let ranges: Vec<_> = guided_ranges(n, workers).collect();
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges.last().unwrap().1, n);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "contiguous");
                let (a, b) = (pair[0].1 - pair[0].0, pair[1].1 - pair[1].0);
                assert!(b <= a, "sizes never grow: {ranges:?}");
            }
            // Only the last task may be cut short by the end of the agenda.
            let but_last = &ranges[..ranges.len() - 1];
            assert!(but_last.iter().all(|(s, e)| e - s >= TASK_SLOTS_MIN));
            // Few tasks even for a long agenda: about workers × share × ln n.
            assert!(
                ranges.len() <= 4 * workers * GUIDED_SHARE * 12,
                "{}",
                ranges.len()
            );
        }
    }
}
