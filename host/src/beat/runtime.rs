//! The runtime: one world's registry, tree, queues and executor, stepped
//! beat by beat.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use cep_sdk::{EnzymeDescriptor, Name, Path, Value, Word};

use super::context::{EpisodeOp, Op, Staged};
use super::executor::{BeatWork, Executor, Pool, Slices, Slot};
use super::impulse::{Impulse, InjectError, Injector, Input, Queued};
use crate::cei::{self, Fact, Severity};
use crate::cell::{hash, Hash, History, Snapshot, TreeError, WorkTree};
use crate::config::{Config, ExecutorKind};
use crate::enzyme::{Enzyme, EnzymeId, RegisterError, Registry, ResolveKey};
use crate::episode::{
    self, Decision, DecisionKind, Episode, EpisodeSpec, Episodes, LeaseRefusal, SliceEnd,
    SliceInfo, SliceTicket, TicketError,
};
use crate::ops::{self, AwaitSpec, OpSpec, OpStatus, Ops, OpsIntent};
use crate::organ::{self, Organs};

mod lifecycle;

use lifecycle::{PendingCall, Publication};

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

/// Where the runtime is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next commit applies boot step `n`.
    Booting(usize),
    Running,
    /// The next commit applies shutdown step `n`.
    ShuttingDown(usize),
    Down,
}

/// Distinct (signal, binding context) pairs whose agenda is cached; the cache
/// is cleared when full and whenever the registry changes.
const RESOLVE_CACHE_MAX: usize = 1 << 16;

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

/// Caches agendas by (signal, binding context).
#[derive(Default)]
struct Resolver {
    epoch: u64,
    // determinism: lookup only, never iterated.
    cache: FxHashMap<(Path, ResolveKey), Arc<[EnzymeId]>>,
    last: Option<(Path, ResolveKey, Arc<[EnzymeId]>)>,
}

impl Resolver {
    /// Appends the agenda entries of impulse number `index` to `agenda`.
    fn extend_agenda(
        &mut self,
        registry: &Registry,
        impulse: &Impulse,
        index: u32,
        agenda: &mut Vec<Slot>,
    ) {
        if self.epoch != registry.epoch() {
            self.cache.clear();
            self.last = None;
            self.epoch = registry.epoch();
        }
        let key = registry.resolve_key(impulse.target.as_ref());
        let hit = matches!(&self.last, Some((signal, last_key, _)) if *last_key == key && *signal == impulse.signal);
        if !hit {
            if self.cache.len() >= RESOLVE_CACHE_MAX {
                self.cache.clear();
            }
            let ids = self
                .cache
                .entry((impulse.signal.clone(), key))
                .or_insert_with(|| {
                    registry
                        .resolve(&impulse.signal, impulse.target.as_ref())
                        .into()
                })
                .clone();
            self.last = Some((impulse.signal.clone(), key, ids));
        }
        if let Some((_, _, ids)) = &self.last {
            agenda.extend(ids.iter().map(|&enzyme| Slot {
                impulse: index,
                enzyme,
            }));
        }
    }
}

/// A callback run after every commit.
type Observer = Box<dyn FnMut(&BeatReport, &Snapshot) + Send>;

/// Decisions a runtime keeps in memory once nothing will take them (see
/// [`Runtime::decisions`]); a journal records every decision as it is made.
pub const DECISIONS_KEPT: usize = 1024;

/// One world: a cell tree driven by a heartbeat.
pub struct Runtime {
    config: Config,
    registry: Arc<Registry>,
    resolver: Resolver,
    current: Snapshot,
    history: History,
    next_beat: u64,
    /// Emitted impulses by the beat they are due, each list in canonical
    /// order (emitting beat, agenda position, emission index).
    queue: BTreeMap<u64, Vec<Queued>>,
    injector: Injector,
    /// Whether capture keeps the beat's injected inputs (for a journal).
    recording: bool,
    /// The inputs the last beat captured, when recording.
    captured: Vec<Input>,
    executor: Executor,
    ledger_beats: VecDeque<u64>,
    halted: Option<String>,
    reclaimer: Reclaimer,
    ops: Ops,
    /// OPS intents from the embedding program, applied first at the next
    /// commit.
    /// OPS calls from outside the beat, taken out as they are applied.
    host_ops: Vec<Option<OpsIntent>>,
    /// The order `Ops::apply_all` applies them in (kept between beats).
    host_ops_order: Vec<u32>,
    host_op_seq: u64,
    phase: Phase,
    episodes: Episodes,
    /// Buffers reused from beat to beat for their allocations only.
    staged_buf: Vec<Staged>,
    agenda_buf: Vec<Slot>,
    /// Last beat's impulse list, emptied, for the next beat's queue: a
    /// list grown from empty every beat meant fresh pages every beat.
    impulses_buf: Vec<Queued>,
    slices_buf: Slices,
    /// Which agenda position changed each cell this beat (conflict
    /// detection); kept between beats only for its allocation.
    // determinism: lookup only, never iterated.
    written: FxHashMap<Path, u32>,
    /// The cells a beat changed while no conflict was possible; kept
    /// between beats only for its allocation.
    changed_log: Vec<(u32, Path)>,
    /// Episode changes decided outside any enzyme call (timeouts, host
    /// cancellations, callbacks gone), applied first at the next commit.
    pending_episode_ops: Vec<EpisodeOp>,
    /// Episodes whose plain yield this commit has taken but whose
    /// `ist:yield` transition waits for [`Runtime::flush_yields`] (before
    /// any other change of the beat), kept between beats for its buffer.
    yields: Vec<Name>,
    /// Slices cancelled by ticket before they ran, by (beat, episode): the
    /// capture of that beat runs them cancelled. Entries of beats already
    /// captured are dropped then (their episode ran no slice that beat).
    cancelled_slices: BTreeMap<u64, std::collections::BTreeSet<Name>>,
    /// Tickets of slices running in the beat being committed, cancelled by
    /// an enzyme of that beat: applied after every intent, so the result
    /// does not depend on agenda order. Empty between beats.
    running_cancels: Vec<(SliceTicket, String)>,
    /// The nondeterministic decisions taken, in order: the newest
    /// [`DECISIONS_KEPT`] that were taken (journaled) or, without a journal,
    /// made; and every one not yet taken.
    decisions: Vec<Decision>,
    /// The first beat of a world resumed from a previous process's tree.
    resumed_at: Option<u64>,
    /// How many of `decisions` [`Runtime::take_decisions`] returned.
    decisions_taken: usize,
    /// When replaying: the recorded decisions to apply instead of measuring.
    replay: Option<Vec<Decision>>,
    organs: Organs,
    /// The organs' dependency levels, computed when boot first needs them.
    organ_levels: Option<organ::Levels>,
    /// Lifecycle calls queued and not yet settled.
    lifecycle_pending: Vec<PendingCall>,
    /// Cells the host publishes at the next commit.
    publications: Vec<Publication>,
    /// Facts the embedding program reported, recorded at the next commit.
    host_facts: Vec<Fact>,
    /// Called after every commit with the beat's report and snapshot.
    observers: Vec<Observer>,
}

/// A slice that yielded with nothing else to account, as its commit finds
/// it ([`Runtime::slice_yielded`]).
struct YieldedSlice {
    eid: Name,
    /// The slice impulse's target: the episode's dossier.
    dossier: Option<Path>,
    /// [`BeatWork::episodes_ended`] of the slice's beat.
    ended: u64,
}

/// Frees snapshots that left the history window on a background thread:
/// dropping one frees every node no newer snapshot shares, which would
/// otherwise cost the heartbeat thread ~20-30 ns per changed cell.
///
/// A snapshot evicted by a commit is held until the next commit starts, and
/// freed then: with the threaded backend that is when the helper workers sit
/// idle (the commit runs on the heartbeat thread alone), so the background
/// thread does not compete with the compute phase for a core.
struct Reclaimer {
    tx: Option<crossbeam::channel::Sender<Snapshot>>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// The snapshot the last commit evicted, and whether that beat was big.
    evicted: Option<(Snapshot, bool)>,
}

/// Snapshots waiting to be freed; when the reclaimer falls behind, the
/// heartbeat thread frees them itself (back-pressure, bounded memory).
const RECLAIM_QUEUE_MAX: usize = 4;
/// Beats changing fewer cells than this free evicted snapshots inline: what
/// they free is still in this core's cache, and mimalloc frees its own
/// pages cheapest. Measured on slices (2026-12-05, alternating best-of
/// runs): at 1k yielding episodes a beat the reclaimer is 6–9 % faster, at
/// 400 inline is 7 % faster, at 700 they tie (docs/decisions.md).
const RECLAIM_CHANGES_MIN: usize = 2048;

impl Reclaimer {
    fn new() -> Self {
        let (tx, rx) = crossbeam::channel::bounded::<Snapshot>(RECLAIM_QUEUE_MAX);
        let handle = std::thread::Builder::new()
            .name("cep-reclaim".into())
            .spawn(move || while rx.recv().is_ok() {})
            .ok();
        Reclaimer {
            tx: handle.as_ref().map(|_| tx),
            handle,
            evicted: None,
        }
    }

    /// Holds `snapshot`, evicted by this commit, until [`Self::release`].
    fn defer(&mut self, snapshot: Snapshot, big_beat: bool) {
        self.release(false);
        self.evicted = Some((snapshot, big_beat));
    }

    /// Frees the held snapshot: on the background thread when its beat was
    /// big or `offload` (another core is idle now), here otherwise.
    fn release(&mut self, offload: bool) {
        let Some((snapshot, big_beat)) = self.evicted.take() else {
            return;
        };
        if big_beat || offload {
            if let Some(tx) = &self.tx {
                // Full or gone: dropped right here instead.
                let _ = tx.try_send(snapshot);
            }
        }
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
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
            queue: BTreeMap::new(),
            executor,
            ledger_beats: VecDeque::new(),
            halted: None,
            reclaimer: Reclaimer::new(),
            ops: Ops::new(config.ops_history_max),
            host_ops: Vec::new(),
            host_ops_order: Vec::new(),
            host_op_seq: 0,
            phase: Phase::Booting(0),
            episodes: Episodes::default(),
            written: Default::default(),
            changed_log: Vec::new(),
            staged_buf: Vec::new(),
            agenda_buf: Vec::new(),
            impulses_buf: Vec::new(),
            slices_buf: Slices::default(),
            pending_episode_ops: Vec::new(),
            yields: Vec::new(),
            cancelled_slices: Default::default(),
            running_cancels: Vec::new(),
            decisions: Vec::new(),
            decisions_taken: 0,
            resumed_at: None,
            replay: None,
            organs: Organs::default(),
            organ_levels: None,
            lifecycle_pending: Vec::new(),
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
            || !self.pending_episode_ops.is_empty()
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
        self.pending_episode_ops.push(EpisodeOp::Start {
            eid: eid.clone(),
            spec,
            parent: None,
        });
        eid
    }

    /// Cancels an episode at the next commit (`sts:cnl`, leases released).
    pub fn ep_cancel(&mut self, eid: &Name) {
        self.pending_episode_ops.push(EpisodeOp::Cancel {
            eid: eid.clone(),
            topic: "ep:cancel".to_owned(),
            reason: "cancelled from outside".to_owned(),
        });
    }

    /// The ticket of episode `eid`'s next queued slice, if one is queued
    /// (not while it awaits another operation, nor once it ended).
    pub fn slice_ticket(&self, eid: &Name) -> Option<SliceTicket> {
        if !self.episodes.contains(eid) {
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
        queued.only().is_none()
            && self.episode_target(&queued.impulse, episode::cont_signal_path()) == Some(eid)
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
        if !self.episodes.contains(&ticket.eid) {
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
            .get(&ticket.beat)
            .is_some_and(|list| list.iter().any(|q| self.is_slice_of(q, &ticket.eid)));
        if !queued {
            return Err(TicketError::NotQueued {
                ticket: ticket.clone(),
            });
        }
        self.cancelled_slices
            .entry(ticket.beat)
            .or_default()
            .insert(ticket.eid.clone());
        Ok(())
    }

    /// Live episodes.
    pub fn episodes_live(&self) -> usize {
        self.episodes.len()
    }

    /// The nondeterministic decisions taken so far (CPU-budget
    /// cancellations), in the order they were applied: the newest
    /// [`DECISIONS_KEPT`] (a journal keeps them all).
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The decisions taken since the last call (a journal records them
    /// with the beat that applied them).
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        let taken = self.decisions[self.decisions_taken..].to_vec();
        self.decisions_taken = self.decisions.len();
        self.forget_old_decisions();
        taken
    }

    /// Drops decisions beyond the newest [`DECISIONS_KEPT`] that nothing
    /// will take any more: taken ones, or any when no journal records
    /// (`record_inputs` off). Memory stays bounded on a run of any length.
    fn forget_old_decisions(&mut self) {
        let keep_from = if self.recording {
            self.decisions_taken
        } else {
            self.decisions.len()
        };
        let excess = keep_from.saturating_sub(DECISIONS_KEPT);
        if excess > 0 {
            self.decisions.drain(..excess);
            self.decisions_taken = self.decisions_taken.saturating_sub(excess);
        }
    }

    /// Replays `decisions` instead of measuring: from now on a CPU-budget
    /// cancellation happens exactly where the record says, and nowhere else.
    pub fn replay_decisions(&mut self, decisions: Vec<Decision>) {
        self.replay = Some(decisions);
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
        let bound = 2 * (SHUTDOWN_STATES.len() + self.organs.iter().count() + 2);
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
            let mut impulses = work.impulses;
            impulses.clear();
            if impulses.capacity() > self.impulses_buf.capacity() {
                self.impulses_buf = impulses;
            }
        }
        self.next_beat += 1;
        Ok(report)
    }

    /// Capture: injected impulses by (source, sequence), then impulses
    /// emitted for this beat in emission order; then the agenda. An
    /// `ep/cont` impulse targeted at a live episode's dossier becomes one
    /// slice of that episode (its callback enzyme, nothing else).
    fn capture(&mut self, beat: u64) -> BeatWork {
        let mut impulses: Vec<Queued> = if self.recording {
            let (queued, inputs) = self.injector.drain_recorded();
            self.captured = inputs;
            queued
        } else {
            self.injector.drain()
        };
        if let Some(emitted) = self.queue.remove(&beat) {
            if impulses.is_empty() {
                impulses = emitted;
            } else {
                impulses.extend(emitted);
            }
        }
        let mut agenda = std::mem::take(&mut self.agenda_buf);
        agenda.clear();
        agenda.reserve(impulses.len());
        let mut slices = std::mem::take(&mut self.slices_buf);
        slices.clear();
        // This beat's cancelled slices; earlier beats' (whose episode ran
        // no slice then) are dropped, later ones stay.
        let mut cancelled = None;
        while let Some(entry) = self.cancelled_slices.first_entry() {
            if *entry.key() > beat {
                break;
            }
            let (due, eids) = entry.remove_entry();
            if due == beat {
                cancelled = Some(eids);
            }
        }
        for (index, queued) in impulses.iter().enumerate() {
            let index = index as u32;
            if let Some(only) = queued.only() {
                // A retry of a retired enzyme has nobody left to run it.
                if !self.registry.is_retired(only) {
                    agenda.push(Slot {
                        impulse: index,
                        enzyme: only,
                    });
                }
                continue;
            }
            // Episode impulses need a live episode: skip the checks without one.
            if !self.episodes.is_empty() {
                if let Some(eid) = self.episode_target(&queued.impulse, episode::cont_signal_path())
                {
                    let by_ticket = cancelled.as_mut().is_some_and(|c| c.remove(eid));
                    if by_ticket {
                        // Queued before the slice is looked at, so it starts
                        // cancelled, as for `ep_cancel`.
                        self.pending_episode_ops.push(EpisodeOp::Cancel {
                            eid: eid.clone(),
                            topic: "ep:cancel/ticket".to_owned(),
                            reason: format!(
                                "slice {} was cancelled by its ticket",
                                SliceTicket::new(eid.clone(), beat)
                            ),
                        });
                    }
                    if let Some((enzyme, info)) = self.slice_of(eid, beat) {
                        slices.push(agenda.len() as u32, info);
                        agenda.push(Slot {
                            impulse: index,
                            enzyme,
                        });
                    }
                    continue;
                }
                let timed_out = self
                    .episode_target(&queued.impulse, ops::timeout_signal())
                    .filter(|eid| self.episodes.contains(eid));
                if let Some(eid) = timed_out {
                    self.pending_episode_ops.push(EpisodeOp::Cancel {
                        eid: eid.clone(),
                        topic: "ep:await/timeout".to_owned(),
                        reason: "the awaited operation did not reach its state in time".to_owned(),
                    });
                }
            }
            self.resolver
                .extend_agenda(&self.registry, &queued.impulse, index, &mut agenda);
        }
        BeatWork {
            slices,
            beat,
            snapshot: self.current.clone(),
            impulses,
            agenda,
            registry: self.registry.clone(),
            episodes_ended: self.episodes.ended(),
        }
    }

    /// The episode id an impulse with `signal` targets (`/rt/ops/<eid>`),
    /// if any episode is live.
    fn episode_target<'i>(&self, impulse: &'i Impulse, signal: &Path) -> Option<&'i Name> {
        if self.episodes.is_empty() {
            return None;
        }
        let target = impulse.target.as_ref()?;
        let names = target.names();
        let under_ops = names.len() == 3 && names[0].as_str() == "rt" && names[1].as_str() == "ops";
        if !under_ops || impulse.signal != *signal {
            return None;
        }
        Some(&names[2])
    }

    /// The callback to run as the next slice of the live episode `eid`,
    /// with the slice's context; `None` (and a cancellation queued) when
    /// the episode cannot run one.
    fn slice_of(&mut self, eid: &Name, beat: u64) -> Option<(EnzymeId, SliceInfo)> {
        let ep = self.episodes.get(eid)?;
        let (topic, reason) = if ep.spec.max_beats > 0 && beat - ep.started > ep.spec.max_beats {
            (
                "ep:max/beats",
                format!("episode {eid} ran past max_beats = {}", ep.spec.max_beats),
            )
        } else if let Some(id) = self.registry.id(ep.spec.callback.as_str()) {
            let cancel_requested = !self.pending_episode_ops.is_empty()
                && self
                    .pending_episode_ops
                    .iter()
                    .any(|op| matches!(op, EpisodeOp::Cancel { eid: e, .. } if e == eid));
            return Some((id, ep.slice_info(eid, cancel_requested)));
        } else {
            (
                "ep:callback",
                format!(
                    "episode {eid}: callback enzyme {} is not registered",
                    ep.spec.callback
                ),
            )
        };
        self.pending_episode_ops.push(EpisodeOp::Cancel {
            eid: eid.clone(),
            topic: topic.to_owned(),
            reason,
        });
        None
    }

    fn enqueue(
        &mut self,
        due: u64,
        queued: Queued,
        facts: &mut Vec<(Fact, Option<u32>)>,
        full_reported: &mut bool,
    ) {
        let spare = &mut self.impulses_buf;
        let list = self
            .queue
            .entry(due)
            .or_insert_with(|| std::mem::take(spare));
        if list.len() >= self.config.impulses_per_beat_max {
            if !*full_reported {
                *full_reported = true;
                let note = format!(
                    "beat {due} already has {} impulses queued (impulses_per_beat_max); later emissions are dropped",
                    list.len()
                );
                facts.push((Fact::new(Severity::Crit, "beat:queue/full", note), None));
            }
            return;
        }
        list.push(queued);
    }

    /// Commit: apply intents in agenda order, record the ledger and the CEI
    /// facts, rehash.
    fn commit(&mut self, work: &BeatWork, mut staged: Vec<Staged>) -> BeatReport {
        let beat = work.beat;
        let registry = work.registry.clone();
        let name_at = |pos: u32| {
            registry
                .spec(work.agenda[pos as usize].enzyme)
                .name
                .to_string()
        };
        let origin_at = |pos: u32| {
            registry
                .spec(work.agenda[pos as usize].enzyme)
                .name
                .as_str()
        };
        // The helpers idle through the commit: free last beat's evicted
        // snapshot on the background thread now.
        let helpers_idle = matches!(&self.executor, Executor::Threaded(pool) if pool.workers() > 1);
        self.reclaimer.release(helpers_idle);
        let mut tree = WorkTree::new(&work.snapshot);
        // Each fact with the agenda position that raised it (None: the host).
        let mut facts: Vec<(Fact, Option<u32>)> = Vec::new();
        // Reused across beats: a fresh table per beat meant fresh pages
        // (mapped, zeroed by the kernel, unmapped) for every large beat.
        let mut written = std::mem::take(&mut self.written);
        written.clear();
        // The cells changed so far, in agenda order, while no two changes
        // could have met (see `written_exact`).
        let mut changed = std::mem::take(&mut self.changed_log);
        changed.clear();
        // Set at the first change to a cell already changed in this beat
        // (or any delete): from then on every change goes through
        // `written`, which names the previous writer.
        let mut written_exact = false;
        let mut registry_ops: Vec<(u32, Op)> = Vec::new();
        let mut queue_full = false;
        let mut conflicts = 0usize;
        self.apply_publications(&mut tree, &mut facts);
        facts.extend(self.host_facts.drain(..).map(|f| (f, None)));
        // Lifecycle calls that failed, and those that ran, this beat.
        let lifecycle_beat = !self.lifecycle_pending.is_empty();
        let mut lifecycle_failed: Vec<(organ::OrganKey, organ::Stage, String)> = Vec::new();
        // Emptied in place: the list keeps its allocation for the next beat.
        let refused = self.ops.apply_all(
            &mut tree,
            beat,
            &mut self.host_ops,
            &mut self.host_ops_order,
        );
        self.host_ops.clear();
        for (_, e) in refused {
            facts.push((Fact::new(Severity::Usage, e.topic(), e.to_string()), None));
        }
        let mut fatal: Option<String> = None;
        for op in std::mem::take(&mut self.pending_episode_ops) {
            self.apply_episode_op(&mut tree, beat, op, "host", &mut facts, &mut queue_full);
        }
        // Slices already reported for a lease violation (one fact per slice).
        let mut lease_reported: std::collections::BTreeSet<u32> = Default::default();
        let mut written_ahead = self.write_ahead(&mut tree, &staged);

        for Staged { pos, op } in staged.drain(..) {
            // Plain yields gather; anything else sees their transitions.
            if !matches!(op, Op::Yielded(_)) {
                self.flush_yields(&mut tree, beat);
            }
            let change = match op {
                Op::Write(path, _)
                    if self.lease_refused(
                        work,
                        pos,
                        &path,
                        false,
                        &mut lease_reported,
                        &mut facts,
                    ) =>
                {
                    None
                }
                Op::Delete(path) | Op::Append(path, _)
                    if self.lease_refused(
                        work,
                        pos,
                        &path,
                        true,
                        &mut lease_reported,
                        &mut facts,
                    ) =>
                {
                    None
                }
                // Whether the cell was already changed in this batch: only
                // then can this be a conflict (deletes always check).
                Op::Write(path, value) => {
                    let result = match written_ahead.as_mut() {
                        Some(results) => results.next().expect("a result per write"),
                        None => tree.write_noting(&path, value),
                    };
                    Some((result, path))
                }
                Op::Delete(path) => Some((tree.delete(&path).map(|_| true), path)),
                Op::Append(path, value) => {
                    let result = tree.append(&path, value).map(|_| ());
                    if let Err(e) = result {
                        facts.push((
                            Fact::new(Severity::Usage, "cell:sealed", e.to_string())
                                .origin(name_at(pos))
                                .subject(Some(path)),
                            Some(pos),
                        ));
                    }
                    None
                }
                Op::Emit(emission) => {
                    let (impulse, delay) = *emission;
                    self.enqueue(
                        beat + 1 + delay as u64,
                        Queued::new(impulse),
                        &mut facts,
                        &mut queue_full,
                    );
                    None
                }
                Op::Cei(fact) => {
                    facts.push((*fact, Some(pos)));
                    None
                }
                Op::Retry => {
                    let slot = work.agenda[pos as usize];
                    let queued = &work.impulses[slot.impulse as usize];
                    let attempt = queued.attempt + 1;
                    let lifecycle = lifecycle_beat
                        .then(|| organ::lifecycle_of(&queued.impulse))
                        .flatten();
                    if let Some((key, stage)) = lifecycle {
                        let message = "asked to retry; lifecycle calls run once".to_owned();
                        lifecycle_failed.push((key, stage, message));
                    } else if attempt > self.config.retry_max {
                        facts.push((
                            Fact::new(
                                Severity::Crit,
                                "enzyme:retry/limit",
                                format!(
                                    "enzyme {} asked to retry {} {attempt} times (retry_max = {}); the impulse is dropped for it",
                                    name_at(pos),
                                    queued.impulse.signal,
                                    self.config.retry_max
                                ),
                            )
                            .origin(name_at(pos))
                            .subject(queued.impulse.target.clone()),
                            Some(pos),
                        ));
                    } else {
                        let retry = Queued::retry(queued.impulse.clone(), slot.enzyme, attempt);
                        self.enqueue(beat + 1, retry, &mut facts, &mut queue_full);
                    }
                    None
                }
                Op::Fatal(message) => {
                    let slot = work.agenda[pos as usize];
                    let impulse = &work.impulses[slot.impulse as usize].impulse;
                    let note = format!(
                        "enzyme {} failed on {}: {message}",
                        name_at(pos),
                        impulse.signal
                    );
                    if lifecycle_beat {
                        if let Some((key, stage)) = organ::lifecycle_of(impulse) {
                            lifecycle_failed.push((key, stage, message.to_string()));
                        }
                    }
                    fatal.get_or_insert_with(|| note.clone());
                    facts.push((
                        Fact::new(Severity::Crit, "enzyme:fatal", note)
                            .origin(name_at(pos))
                            .subject(impulse.target.clone()),
                        Some(pos),
                    ));
                    None
                }
                Op::Episode(op) => {
                    self.apply_episode_op(
                        &mut tree,
                        beat,
                        *op,
                        origin_at(pos),
                        &mut facts,
                        &mut queue_full,
                    );
                    None
                }
                Op::Yielded(eid) => {
                    // The slice's impulse is targeted at its dossier.
                    let slot = work.agenda[pos as usize];
                    let dossier = work.impulses[slot.impulse as usize].impulse.target.clone();
                    let slice = YieldedSlice {
                        eid,
                        dossier,
                        ended: work.episodes_ended,
                    };
                    self.slice_yielded(
                        &mut tree,
                        beat,
                        slice,
                        origin_at(pos),
                        &mut facts,
                        &mut queue_full,
                    );
                    None
                }
                Op::Ops(intent) => {
                    if let Err(e) = self.ops.apply(&mut tree, beat, *intent) {
                        let fact = Fact::new(Severity::Usage, e.topic(), e.to_string())
                            .origin(name_at(pos));
                        facts.push((fact, Some(pos)));
                    }
                    None
                }
                op @ (Op::Register(_) | Op::Bind(_) | Op::Unbind(_)) => {
                    registry_ops.push((pos, op));
                    None
                }
            };
            if let Some((result, path)) = change {
                // A fresh cell of a beat without deletes cannot conflict:
                // log it (moved, no reference count touched) and go on.
                if !written_exact && matches!(result, Ok(false)) {
                    changed.push((pos, path));
                    continue;
                }
                if !written_exact {
                    written_exact = true;
                    written.extend(changed.drain(..).map(|(pos, path)| (path, pos)));
                }
                if let Some(previous) = written.insert(path.clone(), pos) {
                    if previous != pos {
                        conflicts += 1;
                        if conflicts <= self.config.conflict_facts_max {
                            let note = format!(
                                "{path} was changed by {} (agenda #{previous}) and then by {} (agenda #{pos}) in beat {beat}; the later one wins",
                                name_at(previous),
                                name_at(pos)
                            );
                            let fact = Fact::new(Severity::Warn, "cell:conflict", note)
                                .origin(name_at(pos))
                                .subject(Some(path.clone()));
                            facts.push((fact, Some(pos)));
                        }
                    }
                }
                if let Err(e) = result {
                    facts.push((
                        Fact::new(Severity::Usage, "cell:sealed", e.to_string())
                            .origin(name_at(pos))
                            .subject(Some(path)),
                        Some(pos),
                    ));
                }
            }
        }

        self.flush_yields(&mut tree, beat);
        self.written = written;
        self.changed_log = changed;
        self.staged_buf = staged;
        self.cancel_running_slices(&mut tree, work, &mut facts);
        if conflicts > self.config.conflict_facts_max {
            let note = format!(
                "{} more same-cell conflicts in beat {beat} were not recorded one by one (conflict_facts_max = {})",
                conflicts - self.config.conflict_facts_max,
                self.config.conflict_facts_max
            );
            facts.push((Fact::new(Severity::Warn, "cell:conflict", note), None));
        }
        self.apply_registry_ops(registry_ops, &name_at, &mut facts);
        if lifecycle_beat {
            let ran: Vec<(organ::OrganKey, organ::Stage)> = work
                .agenda
                .iter()
                .filter_map(|slot| {
                    let queued = &work.impulses[slot.impulse as usize];
                    queued.only()?;
                    organ::lifecycle_of(&queued.impulse)
                })
                .collect();
            self.settle_lifecycle(&mut tree, beat, &lifecycle_failed, &ran, &mut facts);
        }
        self.escalate(&mut tree, beat, &facts);
        self.advance_lifecycle(&mut tree, beat, &mut facts);
        for firing in self.ops.fire(&mut tree, beat) {
            if let Some(fact) = firing.fact {
                facts.push((fact, None));
            }
            self.enqueue(
                beat + 1,
                Queued::new(firing.impulse),
                &mut facts,
                &mut queue_full,
            );
        }
        self.write_ledger(&mut tree, work);

        let fact_count = facts.len();
        // A fact raised while handling a CEI signal emits no further signal:
        // an enzyme reacting to facts must not be able to feed itself.
        let from_cei = |by: Option<u32>| {
            by.is_some_and(|pos| {
                let slot = work.agenda[pos as usize];
                let signal = &work.impulses[slot.impulse as usize].impulse.signal;
                signal
                    .names()
                    .first()
                    .is_some_and(|n| n.as_str() == CEI_SIGNAL_ROOT)
            })
        };
        for (fact, by) in &facts {
            match cei::record(&mut tree, fact, beat, self.config.cei_facts_max) {
                Ok(at) if self.config.cei_signal && !from_cei(*by) => {
                    let signal = Path::parse(&format!("{CEI_SIGNAL_ROOT}/{}", fact.severity))
                        .expect("severity names are valid");
                    self.enqueue(
                        beat + 1,
                        Queued::new(Impulse::targeted(signal, at)),
                        &mut Vec::new(),
                        &mut queue_full,
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(beat, "cannot record CEI fact {:?}: {e}", fact.topic),
            }
        }
        if let (Some(reason), true) = (fatal, self.config.stop_on_fatal) {
            self.halted = Some(reason);
        }

        // Beats that changed little leave little to free: waking the
        // reclaimer would cost more than dropping here.
        let big_beat = tree.changes() >= RECLAIM_CHANGES_MIN;
        let snapshot = tree.commit(beat);
        let state_hash = snapshot.hash();
        self.current = snapshot.clone();
        if let Some(evicted) = self.history.push(snapshot) {
            self.reclaimer.defer(evicted, big_beat);
        }
        BeatReport {
            beat,
            state_hash,
            beat_hash: hash::beat(beat, &state_hash),
            impulses: work.impulses.len(),
            calls: work.agenda.len(),
            facts: fact_count,
        }
    }

    /// Refuses a change that breaks a lease (see `Episodes::check_change`),
    /// with one `ep:lease/missing` fact per offending slice.
    /// Writes a beat's writes in one batch ([`WorkTree::write_all`]) when it
    /// would take them apart (they fan out below one cell), nothing else in
    /// the beat changes the tree and no lease is held: then no write can be
    /// refused by a lease or depend on another kind of change, and the
    /// commit loop takes each write's result in agenda order (its facts and
    /// conflicts come out as they would one by one). `None`: the loop
    /// writes them itself.
    fn write_ahead(
        &self,
        tree: &mut WorkTree,
        staged: &[Staged],
    ) -> Option<std::vec::IntoIter<Result<bool, TreeError>>> {
        if !self.episodes.is_empty() || staged.len() < WorkTree::SPLIT_WRITES_MIN {
            return None;
        }
        // Some 64 intents spread over the beat (picked by index, nothing
        // else read) say whether its writes fan out: most beats stop
        // here, before the scan below reads every intent.
        let sample: Vec<&Path> = staged
            .iter()
            .step_by((staged.len() / 64).max(1))
            .filter_map(|Staged { op, .. }| match op {
                Op::Write(path, _) => Some(path),
                _ => None,
            })
            .collect();
        if !tree.may_batch(&sample, staged.len()) {
            return None;
        }
        // One pass: the writes with their values (cloned: a beat that turns
        // out to hold another kind of change leaves `staged` as it was).
        let mut batch = Vec::with_capacity(staged.len());
        for Staged { op, .. } in staged.iter() {
            match op {
                Op::Write(path, value) => batch.push((path, value.clone())),
                Op::Delete(_) | Op::Append(..) | Op::Ops(_) | Op::Episode(_) | Op::Yielded(_) => {
                    return None
                }
                Op::Emit(_)
                | Op::Cei(_)
                | Op::Register(_)
                | Op::Bind(_)
                | Op::Unbind(_)
                | Op::Retry
                | Op::Fatal(_) => {}
            }
        }
        if batch.len() < WorkTree::SPLIT_WRITES_MIN {
            return None;
        }
        Some(tree.write_all(batch).into_iter())
    }

    fn lease_refused(
        &self,
        work: &BeatWork,
        pos: u32,
        path: &Path,
        structural: bool,
        reported: &mut std::collections::BTreeSet<u32>,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) -> bool {
        if self.episodes.is_empty() {
            return false;
        }
        let writer = work.slices.get(&pos).map(|s| (&s.eid, s.profile));
        let Err(refusal) = self.episodes.check_change(path, writer, structural) else {
            return false;
        };
        if reported.insert(pos) {
            let who = work
                .registry
                .spec(work.agenda[pos as usize].enzyme)
                .name
                .to_string();
            let note = match refusal {
                LeaseRefusal::HeldBy(owner) => format!("{who} may not change {path}: episode {owner} holds a lease over it"),
                LeaseRefusal::NotLeased => format!("{who} (an ep:rw slice) may not change {path}: its episode holds no lease over it"),
            };
            facts.push((
                Fact::new(Severity::Usage, "ep:lease/missing", note)
                    .origin(who)
                    .subject(Some(path.clone())),
                Some(pos),
            ));
        }
        true
    }

    /// A slice of `eid` yielded with nothing else to account
    /// ([`Op::Yielded`]): its next slice is queued now, in agenda order,
    /// and its `ist:yield` transition joins [`Runtime::yields`], applied
    /// with the others of the run in one walk down `/rt/ops`
    /// ([`Runtime::flush_yields`]). A replay takes the general path: a
    /// recorded decision may cancel the episode instead.
    fn slice_yielded(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        slice: YieldedSlice,
        origin: &str,
        facts: &mut Vec<(Fact, Option<u32>)>,
        queue_full: &mut bool,
    ) {
        let YieldedSlice {
            eid,
            dossier,
            ended,
        } = slice;
        if self.replay.is_some() {
            self.flush_yields(tree, beat);
            let done = EpisodeOp::SliceDone {
                eid,
                end: Some(SliceEnd::Yield),
                io_bytes: 0,
                cpu_ns: None,
                cancelled: false,
                failed: None,
            };
            self.apply_episode_op(tree, beat, done, origin, facts, queue_full);
            return;
        }
        // No episode ended since the capture found this one live: it still
        // is, and its dossier is the slice's target; no lookup.
        let dossier = match dossier {
            Some(dossier) if ended == self.episodes.ended() => dossier,
            _ => match self.episodes.get(&eid) {
                Some(ep) => ep.dossier.clone(),
                None => return,
            },
        };
        let cont = Impulse::targeted(episode::cont_signal(), dossier);
        self.yields.push(eid);
        self.enqueue(beat + 1, Queued::new(cont), facts, queue_full);
    }

    /// Applies the gathered yields' transitions ([`Runtime::slice_yielded`]).
    fn flush_yields(&mut self, tree: &mut WorkTree, beat: u64) {
        if self.yields.is_empty() {
            return;
        }
        self.ops
            .transition_all(tree, beat, &self.yields, "ist:yield");
        self.yields.clear();
    }

    /// Applies one episode change at the commit of `beat`.
    fn apply_episode_op(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        op: EpisodeOp,
        origin: &str,
        facts: &mut Vec<(Fact, Option<u32>)>,
        queue_full: &mut bool,
    ) {
        let usage = |topic: &str, note: String| {
            (Fact::new(Severity::Usage, topic, note).origin(origin), None)
        };
        match op {
            EpisodeOp::Start { eid, spec, parent } => {
                let mut op_spec = OpSpec::new(Path::parse("op/ep").expect("static path"));
                op_spec.target = spec.target.clone();
                op_spec.mode = spec.profile.as_str().to_owned();
                op_spec.parent = parent;
                // The episode's parameters are part of what the operation
                // is, so they are sealed in its envelope. A dossier child
                // of their own made every slice copy and hash one more
                // entry of the dossier's list (docs/decisions.md).
                let details = vec![
                    ("callback", Value::text(spec.callback.as_str())),
                    ("signal", Value::from(spec.signal.to_string())),
                    ("max_beats", Value::I64(spec.max_beats as i64)),
                    ("io_budget", Value::I64(spec.budgets.io_budget_bytes as i64)),
                    (
                        "cpu_budget_ns",
                        Value::I64(spec.budgets.cpu_budget_ns as i64),
                    ),
                ];
                let start = OpsIntent::Start {
                    oid: eid.clone(),
                    spec: op_spec,
                    state: "ist:plan".to_owned(),
                    details,
                };
                if let Err(e) = self.ops.apply(tree, beat, start) {
                    facts.push(usage(e.topic(), e.to_string()));
                    return;
                }
                self.episodes.insert(
                    eid.clone(),
                    Episode {
                        dossier: ops::dossier(&eid),
                        spec,
                        started: beat,
                        io_used: 0,
                        cpu_used_ns: 0,
                        leases: Vec::new(),
                        suspended: None,
                    },
                );
                let cont = Impulse::targeted(episode::cont_signal(), ops::dossier(&eid));
                self.enqueue(beat + 1, Queued::new(cont), facts, queue_full);
            }
            EpisodeOp::SliceDone {
                eid,
                end,
                io_bytes,
                cpu_ns,
                cancelled,
                failed,
            } => {
                let Some(ep) = self.episodes.get_mut(&eid) else {
                    return;
                };
                let dossier = ep.dossier.clone();
                ep.io_used += io_bytes;
                let io_used = ep.io_used;
                let cpu_budget = ep.spec.budgets.cpu_budget_ns;
                if let Some(ns) = cpu_ns {
                    ep.cpu_used_ns = ep.cpu_used_ns.saturating_add(ns);
                }
                let cpu_used = ep.cpu_used_ns;
                if io_bytes > 0 {
                    // Absent until the first byte is accounted.
                    let _ = tree.write(
                        &ops::io_used(&eid),
                        Value::I64(i64::try_from(io_used).unwrap_or(i64::MAX)),
                    );
                }
                // The slice ran in `ist:run`, but it began and ended inside
                // this beat: no committed snapshot can show that state, and
                // the entry of the state it ended in records the slice. So
                // the history gets one entry per slice (see semantics.md).
                let over_cpu = cpu_budget > 0 && cpu_used > cpu_budget;
                if let Some(message) = failed {
                    self.finish_episode(tree, beat, &eid, OpStatus::Fail, &message, facts);
                } else if cancelled {
                    self.finish_episode(
                        tree,
                        beat,
                        &eid,
                        OpStatus::Cancel,
                        "over its IO budget",
                        facts,
                    );
                } else if self.cpu_decision(beat, &eid, over_cpu, cpu_used) {
                    let note = format!(
                        "episode {eid} used more CPU time than its budget of {cpu_budget} ns"
                    );
                    let fact = Fact::new(Severity::Usage, "ep:bud/cpu", note);
                    self.cancel_episode(tree, beat, &eid, fact, "over its CPU budget", facts);
                } else {
                    match end {
                        None => self.finish_episode(tree, beat, &eid, OpStatus::Ok, "", facts),
                        Some(SliceEnd::Close(status, summary)) => {
                            self.finish_episode(tree, beat, &eid, status, &summary, facts)
                        }
                        Some(SliceEnd::Yield) => {
                            let _ = self.ops.transition(tree, beat, &eid, "ist:yield", 0, "");
                            let cont = Impulse::targeted(episode::cont_signal(), dossier);
                            self.enqueue(beat + 1, Queued::new(cont), facts, queue_full);
                        }
                        Some(SliceEnd::Await {
                            oid,
                            want,
                            ttl_beats,
                        }) => {
                            let state = OpsIntent::State {
                                oid: eid.clone(),
                                state: "ist:await".to_owned(),
                                code: 0,
                                note: format!("awaiting {want} on {oid}"),
                            };
                            let _ = self.ops.apply(tree, beat, state);
                            let watch = OpsIntent::Await {
                                oid,
                                spec: AwaitSpec {
                                    want,
                                    ttl_beats,
                                    cont: episode::cont_signal(),
                                    payload: None,
                                    reply_to: Some(dossier),
                                },
                            };
                            if let Err(e) = self.ops.apply(tree, beat, watch) {
                                facts.push(usage(e.topic(), e.to_string()));
                                self.finish_episode(
                                    tree,
                                    beat,
                                    &eid,
                                    OpStatus::Fail,
                                    &e.to_string(),
                                    facts,
                                );
                            }
                        }
                    }
                }
            }
            EpisodeOp::Lease { eid, lease } => {
                if !self.episodes.contains(&eid) {
                    return;
                }
                match self.episodes.grant(&eid, lease.clone()) {
                    Err(owner) => facts.push(usage(
                        "ep:lease/busy",
                        format!(
                            "episode {eid} cannot lease {}: episode {owner} holds it",
                            lease.path
                        ),
                    )),
                    Ok(()) => self.record_leases(tree, &eid),
                }
            }
            EpisodeOp::Release { eid, path } => {
                self.episodes.release(&eid, &path);
                self.record_leases(tree, &eid);
            }
            EpisodeOp::Suspend { eid, drop_leases } => {
                self.episodes.suspend(&eid, drop_leases);
                self.record_leases(tree, &eid);
            }
            EpisodeOp::Resume { eid } => match self.episodes.resume(&eid) {
                Ok(()) => self.record_leases(tree, &eid),
                Err(owner) => {
                    let note = format!("episode {eid} cannot resume: episode {owner} took one of its leases meanwhile");
                    let fact = Fact::new(Severity::Usage, "ep:lease/lost", note).origin(origin);
                    self.cancel_episode(
                        tree,
                        beat,
                        &eid,
                        fact,
                        "a lease was taken while suspended",
                        facts,
                    );
                }
            },
            EpisodeOp::CancelTicket { ticket } => {
                if ticket.beat > beat {
                    // Queued (or not yet): its beat's capture decides.
                    self.cancelled_slices
                        .entry(ticket.beat)
                        .or_default()
                        .insert(ticket.eid);
                } else if ticket.beat == beat {
                    self.running_cancels.push((ticket, origin.to_owned()));
                } else {
                    facts.push(usage(
                        "ep:ticket/stale",
                        format!("slice {ticket} already ran (this is beat {beat}); nothing was cancelled"),
                    ));
                }
            }
            EpisodeOp::Cancel { eid, topic, reason } => {
                if self.episodes.contains(&eid) {
                    let fact =
                        Fact::new(Severity::Warn, &topic, format!("episode {eid}: {reason}"))
                            .origin(origin);
                    self.cancel_episode(tree, beat, &eid, fact, &reason, facts);
                }
            }
        }
    }

    /// Cancels the episodes whose slice of this beat an enzyme of this beat
    /// cancelled by ticket. Applied after every intent of the beat, so the
    /// outcome does not depend on where the cancelling call stood in the
    /// agenda relative to the slice: the slice's own end is recorded, then
    /// the cancellation (unless the slice already ended its episode).
    fn cancel_running_slices(
        &mut self,
        tree: &mut WorkTree,
        work: &BeatWork,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
        if self.running_cancels.is_empty() {
            return;
        }
        let beat = work.beat;
        // One look at the beat's slices, however many are cancelled.
        let running: std::collections::BTreeSet<&Name> = work.slices.episodes().collect();
        let mut cancels = std::mem::take(&mut self.running_cancels);
        for (ticket, origin) in cancels.drain(..) {
            if !running.contains(&ticket.eid) {
                let note = format!(
                    "no slice of episode {} ran at beat {beat}; ticket {ticket} cancelled nothing",
                    ticket.eid
                );
                facts.push((
                    Fact::new(Severity::Usage, "ep:ticket/stale", note).origin(origin),
                    None,
                ));
            } else if self.episodes.contains(&ticket.eid) {
                let note = format!("slice {ticket} was cancelled while it ran");
                let fact = Fact::new(Severity::Warn, "ep:cancel/ticket", note).origin(origin);
                self.cancel_episode(
                    tree,
                    beat,
                    &ticket.eid,
                    fact,
                    "its running slice was cancelled by ticket",
                    facts,
                );
            }
        }
        self.running_cancels = cancels;
    }

    /// Whether the episode is cancelled for CPU time at this beat: measured
    /// in a live run (and recorded), read from the record in a replay.
    fn cpu_decision(&mut self, beat: u64, eid: &Name, measured_over: bool, used_ns: u64) -> bool {
        let recorded = match &self.replay {
            Some(record) => record.iter().find(|d| d.beat == beat && matches!(&d.kind, DecisionKind::CancelEpisodeCpu { eid: e, .. } if e == eid)).cloned(),
            None => measured_over.then(|| Decision {
                beat,
                kind: DecisionKind::CancelEpisodeCpu { eid: eid.clone(), used_ns },
            }),
        };
        match recorded {
            Some(decision) => {
                self.decisions.push(decision);
                self.forget_old_decisions();
                true
            }
            None => false,
        }
    }

    fn record_leases(&self, tree: &mut WorkTree, eid: &Name) {
        let leases = self
            .episodes
            .get(eid)
            .map(|e| e.leases.clone())
            .unwrap_or_default();
        let _ = episode::record_leases(tree, eid, &leases);
    }

    /// Records `fact` about the episode and cancels it (`sts:cnl`).
    fn cancel_episode(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        eid: &Name,
        fact: Fact,
        reason: &str,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
        facts.push((fact.subject(Some(ops::dossier(eid))), None));
        self.finish_episode(tree, beat, eid, OpStatus::Cancel, reason, facts);
    }

    /// Closes an episode's dossier and releases its leases.
    fn finish_episode(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        eid: &Name,
        status: OpStatus,
        summary: &str,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
        let close = OpsIntent::Close {
            oid: eid.clone(),
            status,
            summary: summary.to_owned(),
        };
        if let Err(e) = self.ops.apply(tree, beat, close) {
            facts.push((Fact::new(Severity::Usage, e.topic(), e.to_string()), None));
        }
        self.episodes.remove(eid);
        let _ = episode::record_leases(tree, eid, &[]);
    }

    /// CEI escalation: a `crit` or `usage` fact about an operation closes it
    /// `sts:fail`; a `fatal` fact starts the shutdown.
    fn escalate(&mut self, tree: &mut WorkTree, beat: u64, facts: &[(Fact, Option<u32>)]) {
        for (fact, _) in facts {
            match (fact.severity, &fact.op) {
                (Severity::Fatal, _) => self.begin_shutdown(),
                (Severity::Crit | Severity::Usage, Some(oid)) => {
                    let close = OpsIntent::Close {
                        oid: oid.clone(),
                        status: OpStatus::Fail,
                        summary: format!("{}: {}", fact.topic, fact.note),
                    };
                    // Already closed, or gone: the fact is recorded anyway.
                    let _ = self.ops.apply(tree, beat, close);
                }
                _ => {}
            }
        }
    }

    fn apply_registry_ops(
        &mut self,
        ops: Vec<(u32, Op)>,
        name_at: &dyn Fn(u32) -> String,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
        if ops.is_empty() {
            return;
        }
        let registry = Arc::make_mut(&mut self.registry);
        for (pos, op) in ops {
            match op {
                Op::Register(registration) => {
                    let (descriptor, callback) = *registration;
                    if let Err(e) = registry.register(&descriptor, callback) {
                        facts.push((
                            Fact::new(Severity::Usage, "enzyme:register", e.to_string())
                                .origin(name_at(pos)),
                            Some(pos),
                        ));
                    }
                }
                Op::Bind(binding) => {
                    let (path, enzyme, propagate) = *binding;
                    registry.bind(&path, &enzyme, propagate);
                }
                Op::Unbind(binding) => {
                    let (path, enzyme) = *binding;
                    registry.unbind(&path, &enzyme);
                }
                _ => unreachable!("only registry operations are collected"),
            }
        }
    }

    /// Records `/rt/beat/<N>` for a beat that captured anything, and drops the
    /// ledger of beats that left the retention window. Empty beats write
    /// nothing.
    fn write_ledger(&mut self, tree: &mut WorkTree, work: &BeatWork) {
        if self.config.ledger_beats == 0 || work.impulses.is_empty() {
            return;
        }
        let base = ledger_path(work.beat);
        let field =
            |parent: &Path, name: &str| parent.child(Name::new(name).expect("static field name"));
        let rows = self.config.ledger_rows_max;
        let mut writes: Vec<(Path, Value)> = vec![
            (
                field(&base, "impulse_count"),
                Value::I64(work.impulses.len() as i64),
            ),
            (
                field(&base, "agenda_count"),
                Value::I64(work.agenda.len() as i64),
            ),
        ];
        let impulses = field(&base, "impulses");
        for (i, queued) in work.impulses.iter().take(rows).enumerate() {
            let target = queued
                .impulse
                .target
                .as_ref()
                .map_or("-".to_owned(), Path::to_string);
            let row = format!("{} -> {target}", queued.impulse.signal);
            writes.push((impulses.child(Name::from_index(i as u64)), Value::from(row)));
        }
        let agenda = field(&base, "agenda");
        for (i, slot) in work.agenda.iter().take(rows).enumerate() {
            let row = format!("{} #{}", work.registry.spec(slot.enzyme).name, slot.impulse);
            writes.push((agenda.child(Name::from_index(i as u64)), Value::from(row)));
        }
        for (path, value) in writes {
            if let Err(e) = tree.write(&path, value) {
                tracing::error!(beat = work.beat, "cannot write the ledger: {e}");
            }
        }
        self.ledger_beats.push_back(work.beat);
        while self.ledger_beats.len() as u64 > self.config.ledger_beats {
            if let Some(old) = self.ledger_beats.pop_front() {
                let _ = tree.delete(&ledger_path(old));
            }
        }
    }
}

/// `/rt/beat/<N>`.
pub fn ledger_path(beat: u64) -> Path {
    Path::parse(&format!("/rt/beat/{beat}")).expect("decimal beat numbers are valid names")
}
