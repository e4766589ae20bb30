//! Phase 2 of the commit: the beat's staged intents, applied in agenda
//! order. Leases and seals may refuse a change; a cell changed twice is a
//! conflict the later change wins.

use std::collections::BTreeSet;

use cep_sdk::Path;

use super::commit::Pass;
use super::executor::BeatWork;
use super::Runtime;
use crate::cei::{Fact, Severity};
use crate::cell::{TreeError, WorkTree};
use crate::enzyme::{Op, Staged};
use crate::episode::{LeaseRefusal, YieldedSlice};
use crate::impulse::Queued;
use crate::organ;

impl Runtime {
    /// Applies `staged` (in agenda order) to `tree`.
    pub(super) fn apply_intents(
        &mut self,
        tree: &mut WorkTree,
        work: &BeatWork,
        mut staged: Vec<Staged>,
        pass: &mut Pass,
    ) {
        let beat = work.beat;
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
        let mut conflicts = 0usize;
        // Slices already reported for a lease violation (one fact per slice).
        let mut lease_reported: BTreeSet<u32> = BTreeSet::new();
        let mut written_ahead = self.write_ahead(tree, &staged);

        let mut last_pos = 0;
        for Staged { pos, op } in staged.drain(..) {
            // Canonical order: intents come in agenda order, each call's in
            // the order it staged them.
            debug_assert!(pos >= last_pos, "intent of #{pos} after one of #{last_pos}");
            last_pos = pos;
            // Plain yields gather; anything else sees their transitions.
            if !matches!(op, Op::Yielded(_)) {
                self.episodes.flush_yields(&mut self.ops, tree, beat);
            }
            let change = match op {
                Op::Write(path, _)
                    if self.lease_refused(work, pos, &path, false, &mut lease_reported, pass) =>
                {
                    None
                }
                Op::Delete(path) | Op::Append(path, _)
                    if self.lease_refused(work, pos, &path, true, &mut lease_reported, pass) =>
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
                    if let Err(e) = tree.append(&path, value) {
                        pass.facts.push(sealed(work, pos, e, path));
                    }
                    None
                }
                Op::Emit(emission) => {
                    let (impulse, delay) = *emission;
                    let due = beat + 1 + delay as u64;
                    let queued = Queued::new(impulse);
                    self.queue
                        .push(due, queued, &mut pass.facts, &mut pass.queue_full);
                    None
                }
                Op::Cei(fact) => {
                    pass.facts.push((*fact, Some(pos)));
                    None
                }
                Op::Retry => {
                    self.retry(work, pos, pass);
                    None
                }
                Op::Fatal(message) => {
                    self.fatal(work, pos, &message, pass);
                    None
                }
                Op::Episode(op) => {
                    let origin = work.enzyme_name(pos);
                    self.episodes
                        .apply(&mut self.ops, tree, beat, *op, origin, &mut pass.facts);
                    self.schedule_continuations(beat, pass);
                    None
                }
                Op::Yielded(eid) => {
                    // The slice's impulse is targeted at its dossier.
                    let slot = work.agenda[pos as usize];
                    let dossier = work.impulses[slot.impulse as usize].impulse.target.clone();
                    self.episodes.slice_yielded(YieldedSlice {
                        eid,
                        dossier,
                        ended: work.episodes_ended,
                    });
                    self.schedule_continuations(beat, pass);
                    None
                }
                Op::Ops(intent) => {
                    if let Err(e) = self.ops.apply(tree, beat, *intent) {
                        let fact = Fact::new(Severity::Usage, e.topic(), e.to_string())
                            .origin(work.enzyme_name(pos));
                        pass.facts.push((fact, Some(pos)));
                    }
                    None
                }
                op @ (Op::Register(_) | Op::Bind(_) | Op::Unbind(_)) => {
                    pass.registry_ops.push((pos, op));
                    None
                }
            };
            let Some((result, path)) = change else {
                continue;
            };
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
                            work.enzyme_name(previous),
                            work.enzyme_name(pos)
                        );
                        let fact = Fact::new(Severity::Warn, "cell:conflict", note)
                            .origin(work.enzyme_name(pos))
                            .subject(Some(path.clone()));
                        pass.facts.push((fact, Some(pos)));
                    }
                }
            }
            if let Err(e) = result {
                pass.facts.push(sealed(work, pos, e, path));
            }
        }

        self.episodes.flush_yields(&mut self.ops, tree, beat);
        self.written = written;
        self.changed_log = changed;
        self.staged_buf = staged;
        if conflicts > self.config.conflict_facts_max {
            let note = format!(
                "{} more same-cell conflicts in beat {beat} were not recorded one by one (conflict_facts_max = {})",
                conflicts - self.config.conflict_facts_max,
                self.config.conflict_facts_max
            );
            pass.facts
                .push((Fact::new(Severity::Warn, "cell:conflict", note), None));
        }
    }

    /// A call asked to run again: queued for the next beat, for that
    /// enzyme alone, up to `retry_max` times. Lifecycle calls run once.
    fn retry(&mut self, work: &BeatWork, pos: u32, pass: &mut Pass) {
        let slot = work.agenda[pos as usize];
        let queued = &work.impulses[slot.impulse as usize];
        let attempt = queued.attempt + 1;
        let lifecycle = pass
            .lifecycle_beat
            .then(|| organ::lifecycle_of(&queued.impulse))
            .flatten();
        if let Some((key, stage)) = lifecycle {
            let message = "asked to retry; lifecycle calls run once".to_owned();
            pass.lifecycle_failed.push((key, stage, message));
        } else if attempt > self.config.retry_max {
            let name = work.enzyme_name(pos);
            let note = format!(
                "enzyme {name} asked to retry {} {attempt} times (retry_max = {}); the impulse is dropped for it",
                queued.impulse.signal, self.config.retry_max
            );
            let fact = Fact::new(Severity::Crit, "enzyme:retry/limit", note)
                .origin(name)
                .subject(queued.impulse.target.clone());
            pass.facts.push((fact, Some(pos)));
        } else {
            let retry = Queued::retry(queued.impulse.clone(), slot.enzyme.0, attempt);
            self.queue
                .push(work.beat + 1, retry, &mut pass.facts, &mut pass.queue_full);
        }
    }

    /// A call failed: a `crit` fact, and the beat's first failure is the
    /// reason a `stop_on_fatal` runtime halts.
    fn fatal(&mut self, work: &BeatWork, pos: u32, message: &str, pass: &mut Pass) {
        let slot = work.agenda[pos as usize];
        let impulse = &work.impulses[slot.impulse as usize].impulse;
        let name = work.enzyme_name(pos);
        let note = format!("enzyme {name} failed on {}: {message}", impulse.signal);
        if pass.lifecycle_beat {
            if let Some((key, stage)) = organ::lifecycle_of(impulse) {
                pass.lifecycle_failed
                    .push((key, stage, message.to_string()));
            }
        }
        pass.fatal.get_or_insert_with(|| note.clone());
        let fact = Fact::new(Severity::Crit, "enzyme:fatal", note)
            .origin(name)
            .subject(impulse.target.clone());
        pass.facts.push((fact, Some(pos)));
    }

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

    /// Refuses a change that breaks a lease (see
    /// [`crate::episode::Episodes::check_change`]), with one
    /// `ep:lease/missing` fact per offending slice.
    fn lease_refused(
        &self,
        work: &BeatWork,
        pos: u32,
        path: &Path,
        structural: bool,
        reported: &mut BTreeSet<u32>,
        pass: &mut Pass,
    ) -> bool {
        if self.episodes.is_empty() {
            return false;
        }
        let writer = work.slices.get(&pos).map(|s| (&s.eid, s.profile));
        let Err(refusal) = self
            .episodes
            .episodes()
            .check_change(path, writer, structural)
        else {
            return false;
        };
        if reported.insert(pos) {
            let who = work.enzyme_name(pos);
            let note = match refusal {
                LeaseRefusal::HeldBy(owner) => format!("{who} may not change {path}: episode {owner} holds a lease over it"),
                LeaseRefusal::NotLeased => format!("{who} (an ep:rw slice) may not change {path}: its episode holds no lease over it"),
            };
            let fact = Fact::new(Severity::Usage, "ep:lease/missing", note)
                .origin(who)
                .subject(Some(path.clone()));
            pass.facts.push((fact, Some(pos)));
        }
        true
    }
}

/// The `cell:sealed` fact of a change refused by a seal.
fn sealed(work: &BeatWork, pos: u32, error: TreeError, path: Path) -> (Fact, Option<u32>) {
    let fact = Fact::new(Severity::Usage, "cell:sealed", error.to_string())
        .origin(work.enzyme_name(pos))
        .subject(Some(path));
    (fact, Some(pos))
}
