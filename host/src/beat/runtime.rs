//! The runtime: one world's registry, tree, queues and executor, stepped
//! beat by beat.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use cep_sdk::{EnzymeDescriptor, Name, Path, Value, Word};

use super::capture::Resolver;
use super::executor::{Executor, Pool, Slices, Slot};
use super::life::{Phase, Publication};
use super::queue::Queue;
use super::reclaim::Reclaimer;
use crate::cei::Fact;
use crate::cell::{hash, Hash, History, Snapshot};
use crate::config::{Config, ExecutorKind};
use crate::enzyme::{Enzyme, EnzymeId, RegisterError, Registry, Staged};
use crate::episode::{self, Decision, EpisodeOp, EpisodeSpec, SliceTicket, TicketError};
use crate::impulse::{Impulse, InjectError, Injector, Input, Queued};
use crate::ops::{AwaitSpec, OpSpec, OpStatus, Ops, OpsIntent};
use crate::organ::Lifecycle;

/// The states `op/boot` walks through, one per beat from beat 0; the beat
/// after the last it closes `sts:ok`.
pub const BOOT_STATES: [&str; 4] = ["ist:run", "ist:kernel", "ist:store", "ist:plugins"];
/// The states `op/shdn` walks through, one per beat once shutdown begins;
/// the beat after the last it closes `sts:ok` and the runtime is down.
pub const SHUTDOWN_STATES: [&str; 4] = ["ist:run", "ist:stop", "ist:flush", "ist:halt"];
/// The dossier id of the boot operation (published at `/sys/state/boot_oid`).
pub const BOOT_OID: &str = "boot";
/// The dossier id of the shutdown operation.
pub const SHUTDOWN_OID: &str = "shdn";

/// The first segment of the signals CEI facts emit (`sig_cei/<sev>`).
pub const CEI_SIGNAL_ROOT: &str = "sig_cei";

/// What one beat did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeatReport {
    pub beat: u64,
    /// The Merkle hash of the tree this beat committed.
    pub state_hash: Hash,
    /// The hash of (beat number, state hash).
    pub beat_hash: Hash,
    /// Impulses captured.
    pub impulses: usize,
    /// Enzyme calls run.
    pub calls: usize,
    /// CEI facts recorded.
    pub facts: usize,
}

impl BeatReport {
    /// The line `cep run` ends with: `beat=<N> hash=<64 hex>`.
    pub fn summary_line(&self) -> String {
        format!("beat={} hash={}", self.beat, hash::hex(&self.state_hash))
    }
}

/// Why the runtime refused to go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("the runtime stopped at beat {beat}: {reason} (stop_on_fatal is set)")]
    Halted { beat: u64, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the runtime has shut down (op/shdn closed at beat {beat})")]
    ShutDown { beat: u64 },
}

/// A callback run after every commit.
type Observer = Box<dyn FnMut(&BeatReport, &Snapshot) + Send>;

/// One world: a cell tree driven by a heartbeat.
pub struct Runtime {
    pub(super) config: Config,
    pub(super) registry: Arc<Registry>,
    pub(super) resolver: Resolver,
    pub(super) current: Snapshot,
    pub(super) history: History,
    pub(super) next_beat: u64,
    pub(super) queue: Queue,
    pub(super) injector: Injector,
    /// Whether capture keeps the beat's injected inputs (for a journal).
    pub(super) recording: bool,
    /// The inputs the last beat captured, when recording.
    pub(super) captured: Vec<Input>,
    pub(super) executor: Executor,
    pub(super) ledger_beats: VecDeque<u64>,
    pub(super) halted: Option<String>,
    pub(super) reclaimer: Reclaimer,
    pub(super) ops: Ops,
    /// OPS calls from outside the beat, applied first at the next commit,
    /// taken out as they are applied.
    pub(super) host_ops: Vec<Option<OpsIntent>>,
    /// The order `Ops::apply_all` applies them in (kept between beats).
    pub(super) host_ops_order: Vec<u32>,
    pub(super) host_op_seq: u64,
    pub(super) phase: Phase,
    /// The episode engine: live episodes, leases, recorded decisions.
    pub(super) episodes: episode::Engine,
    /// Buffers reused from beat to beat for their allocations only.
    pub(super) staged_buf: Vec<Staged>,
    pub(super) agenda_buf: Vec<Slot>,
    pub(super) slices_buf: Slices,
    /// Which agenda position changed each cell this beat (conflict
    /// detection); kept between beats only for its allocation.
    // determinism: lookup only, never iterated.
    pub(super) written: FxHashMap<Path, u32>,
    /// The cells a beat changed while no conflict was possible; kept
    /// between beats only for its allocation.
    pub(super) changed_log: Vec<(u32, Path)>,
    /// The first beat of a world resumed from a previous process's tree.
    pub(super) resumed_at: Option<u64>,
    /// The organs and their lifecycle calls.
    pub(super) lifecycle: Lifecycle,
    /// Cells the host publishes at the next commit.
    pub(super) publications: Vec<Publication>,
    /// Facts the embedding program reported, recorded at the next commit.
    pub(super) host_facts: Vec<Fact>,
    /// Called after every commit with the beat's report and snapshot.
    pub(super) observers: Vec<Observer>,
}

impl Runtime {
    /// A runtime over the empty tree.
    pub fn new(config: Config) -> Result<Self, RuntimeError> {
        Self::with_genesis(config, Snapshot::empty())
    }

    /// A runtime whose beat 0 starts from `genesis`.
    pub fn with_genesis(config: Config, genesis: Snapshot) -> Result<Self, RuntimeError> {
        config.validate().map_err(RuntimeError::Config)?;
        let executor = match config.executor {
            ExecutorKind::Cooperative => Executor::Cooperative,
            ExecutorKind::Threaded => Executor::Threaded(Pool::new(config.effective_workers())),
        };
        let history = History::new(config.history_snapshots);
        Ok(Runtime {
            injector: Injector::new(config.inject_queue_max),
            recording: false,
            captured: Vec::new(),
            registry: Arc::new(Registry::new()),
            resolver: Resolver::default(),
            current: genesis,
            history,
            next_beat: 0,
            queue: Queue::new(config.impulses_per_beat_max),
            executor,
            ledger_beats: VecDeque::new(),
            halted: None,
            reclaimer: Reclaimer::new(),
            ops: Ops::new(config.ops_history_max),
            host_ops: Vec::new(),
            host_ops_order: Vec::new(),
            host_op_seq: 0,
            phase: Phase::Booting(0),
            episodes: episode::Engine::default(),
            written: Default::default(),
            changed_log: Vec::new(),
            staged_buf: Vec::new(),
            agenda_buf: Vec::new(),
            slices_buf: Slices::default(),
            resumed_at: None,
            lifecycle: Lifecycle::default(),
            publications: Vec::new(),
            observers: Vec::new(),
            host_facts: Vec::new(),
            config,
        })
    }

    /// A runtime that continues from `genesis`, the tree of the last beat a
    /// previous process committed (rebuilt from its data directory): the
    /// next beat is the one after it. What lived outside the tree is gone
    /// with that process: impulses queued for later beats, armed watchers,
    /// running episodes. So the first commit closes every dossier left open
    /// `sts:cnl` (a restart interrupts operations, as a database aborts the
    /// transactions in flight at a crash), and the world boots again
    /// (`op/boot`), its organs finding their cells where they left them.
    /// A replay that resumes from the same tree does exactly the same.
    pub fn resume(config: Config, genesis: Snapshot) -> Result<Self, RuntimeError> {
        let beat = genesis.beat();
        let mut runtime = Self::with_genesis(config, genesis)?;
        runtime.next_beat = beat + 1;
        runtime.resumed_at = Some(beat + 1);
        let mut ledger: Vec<u64> = runtime
            .current
            .children(&Path::parse("/rt/beat").expect("static path"))
            .iter()
            .filter_map(|n| n.as_str().parse().ok())
            .collect();
        ledger.sort_unstable();
        runtime.ledger_beats = ledger.into();
        let ops = Path::parse("/rt/ops").expect("static path");
        for oid in runtime.current.children(&ops) {
            let dossier = ops.child(oid.clone());
            if !runtime
                .current
                .exists(&dossier.child(Name::new("close").expect("word")))
            {
                runtime.op_close(
                    &oid,
                    OpStatus::Cancel,
                    &format!("interrupted: the runtime restarted after beat {beat}"),
                );
            }
        }
        Ok(runtime)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest committed snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.current
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// The value at `path` as committed by `beat`, if that snapshot is still
    /// retained.
    pub fn read_at(&self, path: &Path, beat: u64) -> Option<&Value> {
        self.history.read_at(path, beat)
    }

    /// The number of the next beat to run.
    pub fn next_beat(&self) -> u64 {
        self.next_beat
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers an enzyme; it takes part from the next beat on.
    pub fn register(
        &mut self,
        descriptor: &EnzymeDescriptor,
        callback: impl Enzyme,
    ) -> Result<EnzymeId, RegisterError> {
        self.register_shared(descriptor, Arc::new(callback))
    }

    /// [`Runtime::register`] for a callback already shared.
    pub fn register_shared(
        &mut self,
        descriptor: &EnzymeDescriptor,
        callback: Arc<dyn Enzyme>,
    ) -> Result<EnzymeId, RegisterError> {
        Arc::make_mut(&mut self.registry).register(descriptor, callback)
    }

    /// Retires the enzymes named `retire` and registers `add` in their
    /// place, all or none, from the next beat on (a plugin reload).
    pub fn replace_enzymes(
        &mut self,
        retire: &[String],
        add: &[(EnzymeDescriptor, Arc<dyn Enzyme>)],
    ) -> Result<(), RegisterError> {
        let mut trial = (*self.registry).clone();
        for name in retire {
            trial.retire(name);
        }
        for (descriptor, callback) in add {
            trial.register(descriptor, callback.clone())?;
        }
        self.registry = Arc::new(trial);
        Ok(())
    }

    /// Binds an enzyme to a cell from the next beat on.
    pub fn bind(&mut self, path: &Path, enzyme: &Name, propagate: bool) {
        Arc::make_mut(&mut self.registry).bind(path, enzyme, propagate);
    }

    /// Unbinds an enzyme from a cell (leaving a tombstone) from the next
    /// beat on.
    pub fn unbind(&mut self, path: &Path, enzyme: &Name) {
        Arc::make_mut(&mut self.registry).unbind(path, enzyme);
    }

    /// A handle through which other threads inject impulses.
    pub fn injector(&self) -> Injector {
        self.injector.clone()
    }

    /// Queues an impulse from `source` for the next beat.
    pub fn inject(&self, source: &Word, impulse: Impulse) -> Result<u64, InjectError> {
        self.injector.inject(source, impulse)
    }

    /// Whether anything is waiting to run: queued or injected impulses,
    /// pending operation changes, or armed watchers.
    pub fn has_pending(&self) -> bool {
        !self.queue.is_empty()
            || self.injector.pending() > 0
            || !self.host_ops.is_empty()
            || self.ops.waiting() > 0
            || !self.episodes.is_empty()
    }

    /// Refuses further injections. Later beats still run what is queued.
    pub fn close_inputs(&self) {
        self.injector.close();
    }

    /// The id of the next operation or episode started from outside the
    /// beat: `<next beat>-h<seq>`.
    fn next_host_id(&mut self) -> Name {
        let id = Name::new(&format!("{}-h{}", self.next_beat, self.host_op_seq))
            .expect("digits, dash and h form a valid name");
        self.host_op_seq += 1;
        id
    }

    /// Starts an operation from outside the beat; its dossier appears at the
    /// next commit. Returns its id (`<beat>-h<seq>`).
    pub fn op_start(&mut self, spec: OpSpec) -> Name {
        let oid = self.next_host_id();
        self.host_ops.push(Some(OpsIntent::Start {
            oid: oid.clone(),
            spec,
            state: "ist:run".to_owned(),
            details: Vec::new(),
        }));
        oid
    }

    /// Moves an operation to `state` at the next commit.
    pub fn op_state(&mut self, oid: &Name, state: &str) {
        self.host_ops.push(Some(OpsIntent::State {
            oid: oid.clone(),
            state: state.to_owned(),
            code: 0,
            note: String::new(),
        }));
    }

    /// Arms a watcher at the next commit.
    pub fn op_await(&mut self, oid: &Name, spec: AwaitSpec) {
        self.host_ops.push(Some(OpsIntent::Await {
            oid: oid.clone(),
            spec,
        }));
    }

    /// Closes an operation at the next commit.
    pub fn op_close(&mut self, oid: &Name, status: OpStatus, summary: &str) {
        self.host_ops.push(Some(OpsIntent::Close {
            oid: oid.clone(),
            status,
            summary: summary.to_owned(),
        }));
    }

    /// Starts an episode from outside the beat (applied at the next commit);
    /// returns its id.
    pub fn ep_start(&mut self, spec: EpisodeSpec) -> Name {
        let eid = self.next_host_id();
        self.episodes.queue(EpisodeOp::Start {
            eid: eid.clone(),
            spec,
            parent: None,
        });
        eid
    }

    /// Cancels an episode at the next commit (`sts:cnl`, leases released).
    pub fn ep_cancel(&mut self, eid: &Name) {
        self.episodes.queue(EpisodeOp::Cancel {
            eid: eid.clone(),
            topic: "ep:cancel".to_owned(),
            reason: "cancelled from outside".to_owned(),
        });
    }

    /// The ticket of episode `eid`'s next queued slice, if one is queued
    /// (not while it awaits another operation, nor once it ended).
    pub fn slice_ticket(&self, eid: &Name) -> Option<SliceTicket> {
        if !self.episodes.episodes().contains(eid) {
            return None;
        }
        self.queue.iter().find_map(|(&due, list)| {
            list.iter()
                .any(|queued| self.is_slice_of(queued, eid))
                .then(|| SliceTicket::new(eid.clone(), due))
        })
    }

    /// Whether `queued` is the continuation that runs a slice of `eid`.
    fn is_slice_of(&self, queued: &Queued, eid: &Name) -> bool {
        queued.only().is_none() && self.episodes.is_slice_of(&queued.impulse, eid)
    }

    /// Cancels the queued slice `ticket` names: it runs with
    /// `check_cancel()` true from its start and its episode ends `sts:cnl`
    /// (an `ep:cancel/ticket` fact names the ticket). Refused, changing
    /// nothing, when the episode is not running, the slice already ran
    /// (stale), or no slice of the episode is queued for that beat. Like
    /// [`Runtime::ep_cancel`], a call from the embedding program, not a
    /// journaled input: a journaled world cancels through an enzyme
    /// ([`EnzymeCx::ep_cancel_ticket`]).
    pub fn cancel_ticket(&mut self, ticket: &SliceTicket) -> Result<(), TicketError> {
        if !self.episodes.episodes().contains(&ticket.eid) {
            return Err(TicketError::NotLive {
                ticket: ticket.clone(),
            });
        }
        if ticket.beat < self.next_beat {
            return Err(TicketError::Stale {
                ticket: ticket.clone(),
                next_beat: self.next_beat,
            });
        }
        let queued = self
            .queue
            .get(ticket.beat)
            .is_some_and(|list| list.iter().any(|q| self.is_slice_of(q, &ticket.eid)));
        if !queued {
            return Err(TicketError::NotQueued {
                ticket: ticket.clone(),
            });
        }
        self.episodes
            .cancel_queued_slice(ticket.beat, ticket.eid.clone());
        Ok(())
    }

    /// Live episodes.
    pub fn episodes_live(&self) -> usize {
        self.episodes.episodes().len()
    }

    /// The nondeterministic decisions taken so far (CPU-budget
    /// cancellations), in the order they were applied: the newest
    /// [`DECISIONS_KEPT`](crate::episode::DECISIONS_KEPT) (a journal keeps them all).
    pub fn decisions(&self) -> &[Decision] {
        self.episodes.decisions()
    }

    /// The decisions taken since the last call (a journal records them
    /// with the beat that applied them).
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        self.episodes.take_decisions()
    }

    /// Replays `decisions` instead of measuring: from now on a CPU-budget
    /// cancellation happens exactly where the record says, and nowhere else.
    pub fn replay_decisions(&mut self, decisions: Vec<Decision>) {
        self.episodes.replay_decisions(decisions);
    }

    /// Calls `observer` after every commit, on the heartbeat thread, with
    /// the beat's report and the snapshot it committed (adapters observe
    /// state this way).
    pub fn on_commit(&mut self, observer: impl FnMut(&BeatReport, &Snapshot) + Send + 'static) {
        self.observers.push(Box::new(observer));
    }

    /// Records a CEI fact from the embedding program at the next commit.
    pub fn report(&mut self, fact: Fact) {
        self.host_facts.push(fact);
    }

    /// Whether `op/boot` has closed.
    pub fn booted(&self) -> bool {
        !matches!(self.phase, Phase::Booting(_))
    }

    /// Whether `op/shdn` has closed.
    pub fn is_down(&self) -> bool {
        self.phase == Phase::Down
    }

    /// Starts `op/shdn` at the next commit (no effect once started).
    pub fn begin_shutdown(&mut self) {
        if matches!(self.phase, Phase::Booting(_) | Phase::Running) {
            self.phase = Phase::ShuttingDown(0);
        }
    }

    /// Refuses further injections, then runs beats until `op/shdn` closes.
    /// Returns the report of the last beat.
    pub fn shutdown(&mut self) -> Result<BeatReport, RuntimeError> {
        self.close_inputs();
        self.begin_shutdown();
        let mut last = None;
        // Each shutdown step takes a beat or two (lifecycle calls run the
        // beat after their step); the bound is a safety net.
        let bound = 2 * (SHUTDOWN_STATES.len() + self.organs().iter().count() + 2);
        for _ in 0..bound {
            if self.is_down() {
                break;
            }
            last = Some(self.step()?);
        }
        last.ok_or(RuntimeError::ShutDown {
            beat: self.next_beat.saturating_sub(1),
        })
    }

    /// Runs `beats` beats; returns the report of the last one.
    pub fn run(&mut self, beats: u64) -> Result<Option<BeatReport>, RuntimeError> {
        let mut last = None;
        for _ in 0..beats {
            last = Some(self.step()?);
        }
        Ok(last)
    }

    /// Keeps, from the next beat on, the inputs each beat captures from
    /// outside (injections and adapter inputs) for [`Runtime::take_inputs`].
    pub fn record_inputs(&mut self, on: bool) {
        self.recording = on;
        self.episodes.set_recording(on);
    }

    /// The inputs the last beat captured, with their sources and sequence
    /// numbers, in capture order (empty unless recording).
    pub fn take_inputs(&mut self) -> Vec<Input> {
        std::mem::take(&mut self.captured)
    }

    /// Drops every input queued for the next beat and not yet captured.
    /// A replay calls it after setting the world up: whatever the setup
    /// injected is in the journal already, with the rest of the beat's
    /// inputs.
    pub fn discard_pending_inputs(&mut self) {
        drop(self.injector.drain());
    }

    /// Runs one beat: capture, compute, commit.
    pub fn step(&mut self) -> Result<BeatReport, RuntimeError> {
        if self.phase == Phase::Down {
            return Err(RuntimeError::ShutDown {
                beat: self.next_beat.saturating_sub(1),
            });
        }
        if let Some(reason) = &self.halted {
            return Err(RuntimeError::Halted {
                beat: self.next_beat.saturating_sub(1),
                reason: reason.clone(),
            });
        }
        let beat = self.next_beat;
        let work = Arc::new(self.capture(beat));
        let staged = self
            .executor
            .compute(&work, std::mem::take(&mut self.staged_buf));
        let report = self.commit(&work, staged);
        for observer in &mut self.observers {
            observer(&report, &self.current);
        }
        // Keep the agenda's allocation for the next beat when no worker still
        // holds the beat (large beats otherwise map fresh pages every beat).
        if let Ok(work) = Arc::try_unwrap(work) {
            self.agenda_buf = work.agenda;
            self.slices_buf = work.slices;
            self.queue.recycle(work.impulses);
        }
        self.next_beat += 1;
        Ok(report)
    }
}
