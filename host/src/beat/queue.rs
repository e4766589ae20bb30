//! The impulse queue: emitted impulses by the beat they are due.

use std::collections::BTreeMap;

use crate::cei::{Fact, Facts, Severity};
use crate::impulse::Queued;

/// Emitted impulses by the beat they are due, each list in canonical order
/// (emitting beat, agenda position, emission index).
pub(super) struct Queue {
    due: BTreeMap<u64, Vec<Queued>>,
    /// Last beat's impulse list, emptied, for the next list made: a list
    /// grown from empty every beat meant fresh pages every beat.
    spare: Vec<Queued>,
    /// `impulses_per_beat_max`.
    per_beat_max: usize,
}

impl Queue {
    pub fn new(per_beat_max: usize) -> Self {
        Queue {
            due: BTreeMap::new(),
            spare: Vec::new(),
            per_beat_max,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// The impulses due at `beat`, taken out.
    pub fn take(&mut self, beat: u64) -> Option<Vec<Queued>> {
        self.due.remove(&beat)
    }

    /// The lists by due beat, in beat order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Vec<Queued>)> {
        self.due.iter()
    }

    pub fn get(&self, beat: u64) -> Option<&Vec<Queued>> {
        self.due.get(&beat)
    }

    /// Keeps an emptied impulse list for its allocation, if it is the
    /// biggest seen.
    pub fn recycle(&mut self, mut list: Vec<Queued>) {
        list.clear();
        if list.capacity() > self.spare.capacity() {
            self.spare = list;
        }
    }

    /// Queues `queued` for beat `due`. A beat already holding
    /// `impulses_per_beat_max` drops it; the first drop of a commit
    /// (`full_reported` still false) records a `beat:queue/full` fact.
    pub fn push(&mut self, due: u64, queued: Queued, facts: &mut Facts, full_reported: &mut bool) {
        let spare = &mut self.spare;
        let list = self.due.entry(due).or_insert_with(|| std::mem::take(spare));
        if list.len() >= self.per_beat_max {
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
}
