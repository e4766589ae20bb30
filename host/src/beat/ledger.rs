//! The ledger: `/rt/beat/<N>`, what each beat captured and ran, kept for
//! the last `ledger_beats` beats.

use cep_sdk::{Name, Path, Value};

use super::executor::BeatWork;
use super::Runtime;
use crate::cell::WorkTree;

impl Runtime {
    /// Records `/rt/beat/<N>` for a beat that captured anything, and drops the
    /// ledger of beats that left the retention window. Empty beats write
    /// nothing.
    pub(super) fn write_ledger(&mut self, tree: &mut WorkTree, work: &BeatWork) {
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
