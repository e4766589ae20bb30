//! The episode engine: what the commit does with episode changes.
//!
//! Owns the live episodes, the changes decided outside any call (applied
//! first at the next commit), the yields of one commit, slices cancelled
//! by ticket, and the record of nondeterministic decisions. Continuations
//! it schedules are handed to the heartbeat ([`Engine::take_scheduled`]),
//! which queues them for the next beat. A live run and a replay take the
//! same path here; the only difference is where a CPU-budget decision
//! comes from (measured, or read from the record).

use std::collections::{BTreeMap, BTreeSet};

use cep_sdk::{Name, Path, Value};

use super::{
    cont_signal, cont_signal_path, record_leases, Decision, DecisionKind, Episode, EpisodeOp,
    Episodes, SliceEnd, SliceInfo, SliceTicket,
};
use crate::cei::{Fact, Facts, Severity};
use crate::cell::WorkTree;
use crate::impulse::Impulse;
use crate::ops::{self, AwaitSpec, OpSpec, OpStatus, Ops, OpsIntent};

/// Decisions a runtime keeps in memory once nothing will take them (see
/// [`Engine::decisions`]); a journal records every decision as it is made.
pub const DECISIONS_KEPT: usize = 1024;

/// What capture makes of an impulse, as far as episodes go.
pub(crate) enum Captured<T> {
    /// Not a continuation of a live episode: resolve it as usual.
    Other,
    /// A continuation: the slice to run, if the episode can run one.
    Slice(Option<(T, SliceInfo)>),
}

/// A slice that yielded with nothing else to account, as its commit finds
/// it ([`Engine::slice_yielded`]).
pub(crate) struct YieldedSlice {
    pub eid: Name,
    /// The slice impulse's target: the episode's dossier.
    pub dossier: Option<Path>,
    /// [`Episodes::ended`] at the slice's capture.
    pub ended: u64,
}

#[derive(Default)]
pub(crate) struct Engine {
    episodes: Episodes,
    /// Episode changes decided outside any enzyme call (timeouts, host
    /// cancellations, callbacks gone), applied first at the next commit.
    pending: Vec<EpisodeOp>,
    /// Episodes whose plain yield this commit has taken but whose
    /// `ist:yield` transition waits for [`Engine::flush_yields`] (before
    /// any other change of the beat), kept between beats for its buffer.
    yields: Vec<Name>,
    /// Slices cancelled by ticket before they ran, by (beat, episode): the
    /// capture of that beat runs them cancelled. Entries of beats already
    /// captured are dropped then (their episode ran no slice that beat).
    cancelled_slices: BTreeMap<u64, BTreeSet<Name>>,
    /// Tickets of slices running in the beat being committed, cancelled by
    /// an enzyme of that beat: applied after every intent, so the result
    /// does not depend on agenda order. Empty between beats.
    running_cancels: Vec<(SliceTicket, String)>,
    /// Continuations to queue for the next beat, in the order scheduled.
    scheduled: Vec<Impulse>,
    /// The nondeterministic decisions taken, in order: the newest
    /// [`DECISIONS_KEPT`] that were taken (journaled) or, without a journal,
    /// made; and every one not yet taken.
    decisions: Vec<Decision>,
    /// How many of `decisions` [`Engine::take_decisions`] returned.
    decisions_taken: usize,
    /// Whether a journal takes the decisions.
    recording: bool,
    /// When replaying: the recorded decisions to apply instead of measuring.
    replay: Option<Vec<Decision>>,
}

impl Engine {
    pub fn episodes(&self) -> &Episodes {
        &self.episodes
    }

    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }

    /// Queues a change decided outside any call for the next commit.
    pub fn queue(&mut self, op: EpisodeOp) {
        self.pending.push(op);
    }

    /// The changes queued for this commit.
    pub fn take_pending(&mut self) -> Vec<EpisodeOp> {
        std::mem::take(&mut self.pending)
    }

    /// The continuations scheduled since the last call, for the next beat.
    pub fn take_scheduled(&mut self) -> std::vec::Drain<'_, Impulse> {
        self.scheduled.drain(..)
    }

    /// Runs episode `eid`'s slice of `beat` cancelled (a ticket was used).
    pub fn cancel_queued_slice(&mut self, beat: u64, eid: Name) {
        self.cancelled_slices.entry(beat).or_default().insert(eid);
    }

    /// This beat's slices cancelled by ticket; earlier beats' (whose
    /// episode ran no slice then) are dropped, later ones stay.
    pub fn take_cancelled(&mut self, beat: u64) -> Option<BTreeSet<Name>> {
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
        cancelled
    }

    /// The episode id an impulse with `signal` targets (`/rt/ops/<eid>`),
    /// if any episode is live.
    pub fn target<'i>(&self, impulse: &'i Impulse, signal: &Path) -> Option<&'i Name> {
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

    /// Whether `impulse` is the continuation that runs a slice of `eid`.
    pub fn is_slice_of(&self, impulse: &Impulse, eid: &Name) -> bool {
        self.target(impulse, cont_signal_path()) == Some(eid)
    }

    /// Capture of one impulse of `beat`: an `ep/cont` targeted at a live
    /// episode's dossier becomes one slice of that episode (its callback,
    /// found by `callback_id`, nothing else); an `op/timeout` at one
    /// cancels it. `cancelled` holds the beat's slices cancelled by ticket.
    pub fn capture<T>(
        &mut self,
        impulse: &Impulse,
        beat: u64,
        cancelled: &mut Option<BTreeSet<Name>>,
        callback_id: impl Fn(&str) -> Option<T>,
    ) -> Captured<T> {
        if self.episodes.is_empty() {
            return Captured::Other;
        }
        if let Some(eid) = self.target(impulse, cont_signal_path()) {
            let by_ticket = cancelled.as_mut().is_some_and(|c| c.remove(eid));
            if by_ticket {
                // Queued before the slice is looked at, so it starts
                // cancelled, as for `ep_cancel`.
                self.pending.push(EpisodeOp::Cancel {
                    eid: eid.clone(),
                    topic: "ep:cancel/ticket".to_owned(),
                    reason: format!(
                        "slice {} was cancelled by its ticket",
                        SliceTicket::new(eid.clone(), beat)
                    ),
                });
            }
            return Captured::Slice(self.slice_of(eid, beat, callback_id));
        }
        let timed_out = self
            .target(impulse, ops::timeout_signal())
            .filter(|eid| self.episodes.contains(eid));
        if let Some(eid) = timed_out {
            self.pending.push(EpisodeOp::Cancel {
                eid: eid.clone(),
                topic: "ep:await/timeout".to_owned(),
                reason: "the awaited operation did not reach its state in time".to_owned(),
            });
        }
        Captured::Other
    }

    /// The callback to run as the next slice of the live episode `eid`,
    /// with the slice's context; `None` (and a cancellation queued) when
    /// the episode cannot run one.
    fn slice_of<T>(
        &mut self,
        eid: &Name,
        beat: u64,
        callback_id: impl Fn(&str) -> Option<T>,
    ) -> Option<(T, SliceInfo)> {
        let ep = self.episodes.get(eid)?;
        let (topic, reason) = if ep.spec.max_beats > 0 && beat - ep.started > ep.spec.max_beats {
            (
                "ep:max/beats",
                format!("episode {eid} ran past max_beats = {}", ep.spec.max_beats),
            )
        } else if let Some(id) = callback_id(ep.spec.callback.as_str()) {
            let cancel_requested = self
                .pending
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
        self.pending.push(EpisodeOp::Cancel {
            eid: eid.clone(),
            topic: topic.to_owned(),
            reason,
        });
        None
    }

    /// A slice of `eid` yielded with nothing else to account
    /// (a plain `Yielded` intent): its next slice is scheduled now, in
    /// agenda order, and its `ist:yield` transition joins the others of the
    /// run, applied in one walk down `/rt/ops` ([`Engine::flush_yields`]).
    /// A replay takes this path too: a slice with a CPU budget, whose
    /// recorded decision may cancel it, never yields plainly.
    pub fn slice_yielded(&mut self, slice: YieldedSlice) {
        let YieldedSlice {
            eid,
            dossier,
            ended,
        } = slice;
        // No episode ended since the capture found this one live: it still
        // is, and its dossier is the slice's target; no lookup.
        let dossier = match dossier {
            Some(dossier) if ended == self.episodes.ended() => dossier,
            _ => match self.episodes.get(&eid) {
                Some(ep) => ep.dossier.clone(),
                None => return,
            },
        };
        self.yields.push(eid);
        self.scheduled
            .push(Impulse::targeted(cont_signal(), dossier));
    }

    /// Applies the gathered yields' transitions ([`Engine::slice_yielded`]).
    pub fn flush_yields(&mut self, ops: &mut Ops, tree: &mut WorkTree, beat: u64) {
        if self.yields.is_empty() {
            return;
        }
        ops.transition_all(tree, beat, &self.yields, "ist:yield");
        self.yields.clear();
    }

    /// Applies one episode change at the commit of `beat`.
    pub fn apply(
        &mut self,
        ops: &mut Ops,
        tree: &mut WorkTree,
        beat: u64,
        op: EpisodeOp,
        origin: &str,
        facts: &mut Facts,
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
                // is, so they are sealed in its envelope (docs/decisions.md).
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
                if let Err(e) = ops.apply(tree, beat, start) {
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
                self.scheduled
                    .push(Impulse::targeted(cont_signal(), ops::dossier(&eid)));
            }
            done @ EpisodeOp::SliceDone { .. } => {
                self.slice_done(ops, tree, beat, done, origin, facts)
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
                    let reason = "a lease was taken while suspended";
                    self.cancel(ops, tree, beat, &eid, fact, reason, facts);
                }
            },
            EpisodeOp::CancelTicket { ticket } => {
                if ticket.beat > beat {
                    // Queued (or not yet): its beat's capture decides.
                    self.cancel_queued_slice(ticket.beat, ticket.eid);
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
                    self.cancel(ops, tree, beat, &eid, fact, &reason, facts);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// A slice ended: accounts its IO and CPU, then ends, cancels, yields
    /// or parks the episode as the slice asked and its budgets allow.
    fn slice_done(
        &mut self,
        ops: &mut Ops,
        tree: &mut WorkTree,
        beat: u64,
        done: EpisodeOp,
        origin: &str,
        facts: &mut Facts,
    ) {
        let EpisodeOp::SliceDone {
            eid,
            end,
            io_bytes,
            cpu_ns,
            cancelled,
            failed,
        } = done
        else {
            unreachable!("called with a slice's end only")
        };
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
        // The slice ran in `ist:run`, but it began and ended inside this
        // beat: no committed snapshot can show that state, and the entry of
        // the state it ended in records the slice. So the history gets one
        // entry per slice (see semantics.md).
        let over_cpu = cpu_budget > 0 && cpu_used > cpu_budget;
        if let Some(message) = failed {
            self.finish(ops, tree, beat, &eid, OpStatus::Fail, &message, facts);
        } else if cancelled {
            let summary = "over its IO budget";
            self.finish(ops, tree, beat, &eid, OpStatus::Cancel, summary, facts);
        } else if self.cpu_decision(beat, &eid, over_cpu, cpu_used) {
            let note =
                format!("episode {eid} used more CPU time than its budget of {cpu_budget} ns");
            let fact = Fact::new(Severity::Usage, "ep:bud/cpu", note);
            let reason = "over its CPU budget";
            self.cancel(ops, tree, beat, &eid, fact, reason, facts);
        } else {
            match end {
                None => self.finish(ops, tree, beat, &eid, OpStatus::Ok, "", facts),
                Some(SliceEnd::Close(status, summary)) => {
                    self.finish(ops, tree, beat, &eid, status, &summary, facts)
                }
                Some(SliceEnd::Yield) => {
                    let _ = ops.transition(tree, beat, &eid, "ist:yield", 0, "");
                    self.scheduled
                        .push(Impulse::targeted(cont_signal(), dossier));
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
                    let _ = ops.apply(tree, beat, state);
                    let watch = OpsIntent::Await {
                        oid,
                        spec: AwaitSpec {
                            want,
                            ttl_beats,
                            cont: cont_signal(),
                            payload: None,
                            reply_to: Some(dossier),
                        },
                    };
                    if let Err(e) = ops.apply(tree, beat, watch) {
                        let fact = Fact::new(Severity::Usage, e.topic(), e.to_string());
                        facts.push((fact.origin(origin), None));
                        let summary = e.to_string();
                        self.finish(ops, tree, beat, &eid, OpStatus::Fail, &summary, facts);
                    }
                }
            }
        }
    }

    /// Cancels the episodes whose slice of this beat an enzyme of this beat
    /// cancelled by ticket. Applied after every intent of the beat, so the
    /// outcome does not depend on where the cancelling call stood in the
    /// agenda relative to the slice: the slice's own end is recorded, then
    /// the cancellation (unless the slice already ended its episode).
    /// `running` names the episodes that ran a slice this beat.
    pub fn cancel_running_slices<'a>(
        &mut self,
        ops: &mut Ops,
        tree: &mut WorkTree,
        beat: u64,
        running: impl Iterator<Item = &'a Name>,
        facts: &mut Facts,
    ) {
        if self.running_cancels.is_empty() {
            return;
        }
        // One look at the beat's slices, however many are cancelled.
        let running: BTreeSet<&Name> = running.collect();
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
                let reason = "its running slice was cancelled by ticket";
                self.cancel(ops, tree, beat, &ticket.eid, fact, reason, facts);
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
        let _ = record_leases(tree, eid, &leases);
    }

    /// Records `fact` about the episode and cancels it (`sts:cnl`).
    #[allow(clippy::too_many_arguments)]
    fn cancel(
        &mut self,
        ops: &mut Ops,
        tree: &mut WorkTree,
        beat: u64,
        eid: &Name,
        fact: Fact,
        reason: &str,
        facts: &mut Facts,
    ) {
        facts.push((fact.subject(Some(ops::dossier(eid))), None));
        self.finish(ops, tree, beat, eid, OpStatus::Cancel, reason, facts);
    }

    /// Closes an episode's dossier and releases its leases.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        ops: &mut Ops,
        tree: &mut WorkTree,
        beat: u64,
        eid: &Name,
        status: OpStatus,
        summary: &str,
        facts: &mut Facts,
    ) {
        let close = OpsIntent::Close {
            oid: eid.clone(),
            status,
            summary: summary.to_owned(),
        };
        if let Err(e) = ops.apply(tree, beat, close) {
            facts.push((Fact::new(Severity::Usage, e.topic(), e.to_string()), None));
        }
        self.episodes.remove(eid);
        let _ = record_leases(tree, eid, &[]);
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

    /// Whether a journal takes the decisions (then every untaken one is
    /// kept until it is taken).
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    /// Drops decisions beyond the newest [`DECISIONS_KEPT`] that nothing
    /// will take any more: taken ones, or any when no journal records.
    /// Memory stays bounded on a run of any length.
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
}
