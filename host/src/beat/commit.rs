//! Commit: the one place a beat's changes reach the tree, in a fixed order
//! of phases (see [`Runtime::commit`]).

use std::sync::Arc;

use cep_sdk::Path;

use super::executor::{BeatWork, Executor};
use super::reclaim::RECLAIM_CHANGES_MIN;
use super::runtime::CEI_SIGNAL_ROOT;
use super::{BeatReport, Runtime};
use crate::cei::{self, Fact, Facts, Severity};
use crate::cell::{hash, WorkTree};
use crate::enzyme::{Op, Staged};
use crate::impulse::{Impulse, Queued};
use crate::ops::OpsIntent;
use crate::organ::{self, OrganKey, Stage};

/// What the phases of one commit gather for the later ones.
#[derive(Default)]
pub(super) struct Pass {
    /// Each fact with the agenda position that raised it (`None`: the host).
    pub facts: Facts,
    /// Whether a full beat was reported this commit (one fact per commit).
    pub queue_full: bool,
    /// The first fatal outcome of the beat.
    pub fatal: Option<String>,
    /// Registrations, bindings and unbindings, applied after the intents.
    pub registry_ops: Vec<(u32, Op)>,
    /// Whether lifecycle calls were out when the beat began.
    pub lifecycle_beat: bool,
    /// Lifecycle calls of this beat that failed, by organ and stage.
    pub lifecycle_failed: Vec<(OrganKey, Stage, String)>,
}

impl Runtime {
    /// Commit, phase by phase:
    /// 1. what the host asked for between beats (publications, facts, OPS
    ///    calls, episode changes);
    /// 2. the beat's intents, in agenda order (a later change to a cell
    ///    wins; leases and seals may refuse one);
    /// 3. slices cancelled by ticket while they ran;
    /// 4. registrations and bindings staged by the beat's calls;
    /// 5. the outcomes of lifecycle calls;
    /// 6. CEI escalation, the next boot or shutdown step, watchers firing;
    /// 7. the ledger;
    /// 8. the CEI facts (each with its signal for the next beat);
    /// 9. the new snapshot: hashed, kept in the history.
    pub(super) fn commit(&mut self, work: &BeatWork, staged: Vec<Staged>) -> BeatReport {
        let beat = work.beat;
        // The helpers idle through the commit: free last beat's evicted
        // snapshot on the background thread now.
        let helpers_idle = matches!(&self.executor, Executor::Threaded(pool) if pool.workers() > 1);
        self.reclaimer.release(helpers_idle);
        let mut tree = WorkTree::new(&work.snapshot);
        let mut pass = Pass::default();

        self.apply_host_changes(&mut tree, beat, &mut pass);
        self.apply_intents(&mut tree, work, staged, &mut pass);
        self.episodes.cancel_running_slices(
            &mut self.ops,
            &mut tree,
            beat,
            work.slices.episodes(),
            &mut pass.facts,
        );
        self.apply_registry_ops(work, &mut pass);
        if pass.lifecycle_beat {
            self.settle_lifecycle_calls(&mut tree, work, &mut pass);
        }
        self.escalate(&mut tree, beat, &pass.facts);
        self.advance_lifecycle(&mut tree, beat, &mut pass.facts);
        for firing in self.ops.fire(&mut tree, beat) {
            if let Some(fact) = firing.fact {
                pass.facts.push((fact, None));
            }
            let queued = Queued::new(firing.impulse);
            self.queue
                .push(beat + 1, queued, &mut pass.facts, &mut pass.queue_full);
        }
        self.write_ledger(&mut tree, work);
        let facts = pass.facts.len();
        self.record_facts(&mut tree, work, &mut pass);
        if let (Some(reason), true) = (pass.fatal, self.config.stop_on_fatal) {
            self.halted = Some(reason);
        }
        self.seal(tree, work, facts)
    }

    /// Phase 1: publications, facts the embedding program reported, its
    /// OPS calls, and episode changes decided outside any call.
    fn apply_host_changes(&mut self, tree: &mut WorkTree, beat: u64, pass: &mut Pass) {
        self.apply_publications(tree, &mut pass.facts);
        pass.facts
            .extend(self.host_facts.drain(..).map(|f| (f, None)));
        pass.lifecycle_beat = self.lifecycle.calls_out();
        // Emptied in place: the list keeps its allocation for the next beat.
        let refused = self
            .ops
            .apply_all(tree, beat, &mut self.host_ops, &mut self.host_ops_order);
        self.host_ops.clear();
        for (_, e) in refused {
            let fact = Fact::new(Severity::Usage, e.topic(), e.to_string());
            pass.facts.push((fact, None));
        }
        for op in self.episodes.take_pending() {
            self.episodes
                .apply(&mut self.ops, tree, beat, op, "host", &mut pass.facts);
            self.schedule_continuations(beat, pass);
        }
    }

    /// Queues the continuations the episode engine scheduled, for the next
    /// beat.
    pub(super) fn schedule_continuations(&mut self, beat: u64, pass: &mut Pass) {
        for impulse in self.episodes.take_scheduled() {
            let queued = Queued::new(impulse);
            self.queue
                .push(beat + 1, queued, &mut pass.facts, &mut pass.queue_full);
        }
    }

    /// Phase 4: registrations and bindings staged by the beat's calls.
    fn apply_registry_ops(&mut self, work: &BeatWork, pass: &mut Pass) {
        if pass.registry_ops.is_empty() {
            return;
        }
        let registry = Arc::make_mut(&mut self.registry);
        for (pos, op) in pass.registry_ops.drain(..) {
            match op {
                Op::Register(registration) => {
                    let (descriptor, callback) = *registration;
                    if let Err(e) = registry.register(&descriptor, callback) {
                        let fact = Fact::new(Severity::Usage, "enzyme:register", e.to_string())
                            .origin(work.enzyme_name(pos));
                        pass.facts.push((fact, Some(pos)));
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

    /// Phase 5: the lifecycle calls that ran this beat, and those that
    /// failed, settle their organs.
    fn settle_lifecycle_calls(&mut self, tree: &mut WorkTree, work: &BeatWork, pass: &mut Pass) {
        let ran: Vec<(OrganKey, Stage)> = work
            .agenda
            .iter()
            .filter_map(|slot| {
                let queued = &work.impulses[slot.impulse as usize];
                queued.only()?;
                organ::lifecycle_of(&queued.impulse)
            })
            .collect();
        self.lifecycle.settle(
            tree,
            work.beat,
            &pass.lifecycle_failed,
            &ran,
            &mut pass.facts,
        );
    }

    /// Phase 6, CEI escalation: a `crit` or `usage` fact about an operation
    /// closes it `sts:fail`; a `fatal` fact starts the shutdown.
    fn escalate(&mut self, tree: &mut WorkTree, beat: u64, facts: &Facts) {
        for (fact, _) in facts {
            match (fact.severity, &fact.op) {
                (Severity::Fatal, _) => self.begin_shutdown(),
                (Severity::Crit | Severity::Usage, Some(oid)) => {
                    let close = OpsIntent::Close {
                        oid: oid.clone(),
                        status: crate::ops::OpStatus::Fail,
                        summary: format!("{}: {}", fact.topic, fact.note),
                    };
                    // Already closed, or gone: the fact is recorded anyway.
                    let _ = self.ops.apply(tree, beat, close);
                }
                _ => {}
            }
        }
    }

    /// Phase 8: records the facts under `/rt/cei` and queues their signals
    /// (`sig_cei/<severity>`) for the next beat. A fact raised while
    /// handling a CEI signal emits no further signal: an enzyme reacting to
    /// facts must not be able to feed itself.
    fn record_facts(&mut self, tree: &mut WorkTree, work: &BeatWork, pass: &mut Pass) {
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
        let beat = work.beat;
        for (fact, by) in &pass.facts {
            match cei::record(tree, fact, beat, self.config.cei_facts_max) {
                Ok(at) if self.config.cei_signal && !from_cei(*by) => {
                    let signal = Path::parse(&format!("{CEI_SIGNAL_ROOT}/{}", fact.severity))
                        .expect("severity names are valid");
                    let queued = Queued::new(Impulse::targeted(signal, at));
                    self.queue
                        .push(beat + 1, queued, &mut Vec::new(), &mut pass.queue_full);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(beat, "cannot record CEI fact {:?}: {e}", fact.topic),
            }
        }
    }

    /// Phase 9: the tree becomes the beat's snapshot, hashed and kept in
    /// the history; the snapshot it evicts is freed later.
    fn seal(&mut self, tree: WorkTree, work: &BeatWork, facts: usize) -> BeatReport {
        let beat = work.beat;
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
            facts,
        }
    }
}
