//! Capture: the beat's impulses (injected, then emitted for it) and its
//! agenda, the enzyme calls to run in order.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use cep_sdk::Path;

use super::executor::{BeatWork, Slot};
use super::Runtime;
use crate::enzyme::{EnzymeId, Registry, ResolveKey};
use crate::episode::Captured;
use crate::impulse::{Impulse, Queued};

/// Distinct (signal, binding context) pairs whose agenda is cached; the cache
/// is cleared when full and whenever the registry changes.
const RESOLVE_CACHE_MAX: usize = 1 << 16;

impl Runtime {
    /// Capture: injected impulses by (source, sequence), then impulses
    /// emitted for this beat in emission order; then the agenda. An
    /// `ep/cont` impulse targeted at a live episode's dossier becomes one
    /// slice of that episode (its callback enzyme, nothing else).
    pub(super) fn capture(&mut self, beat: u64) -> BeatWork {
        let mut impulses: Vec<Queued> = if self.recording {
            let (queued, inputs) = self.injector.drain_recorded();
            self.captured = inputs;
            queued
        } else {
            self.injector.drain()
        };
        if let Some(emitted) = self.queue.take(beat) {
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
        let mut cancelled = self.episodes.take_cancelled(beat);
        for (index, queued) in impulses.iter().enumerate() {
            let index = index as u32;
            if let Some(only) = queued.only() {
                // A retry of a retired enzyme has nobody left to run it.
                let only = EnzymeId(only);
                if !self.registry.is_retired(only) {
                    agenda.push(Slot {
                        impulse: index,
                        enzyme: only,
                    });
                }
                continue;
            }
            let registry = &self.registry;
            let captured =
                self.episodes
                    .capture(&queued.impulse, beat, &mut cancelled, |callback| {
                        registry.id(callback)
                    });
            match captured {
                Captured::Slice(slice) => {
                    if let Some((enzyme, info)) = slice {
                        slices.push(agenda.len() as u32, info);
                        agenda.push(Slot {
                            impulse: index,
                            enzyme,
                        });
                    }
                }
                Captured::Other => {
                    self.resolver
                        .extend_agenda(&self.registry, &queued.impulse, index, &mut agenda)
                }
            }
        }
        BeatWork {
            slices,
            beat,
            snapshot: self.current.clone(),
            impulses,
            agenda,
            registry: self.registry.clone(),
            episodes_ended: self.episodes.episodes().ended(),
        }
    }
}

/// Caches agendas by (signal, binding context).
#[derive(Default)]
pub(super) struct Resolver {
    epoch: u64,
    // determinism: lookup only, never iterated.
    cache: FxHashMap<(Path, ResolveKey), Arc<[EnzymeId]>>,
    last: Option<(Path, ResolveKey, Arc<[EnzymeId]>)>,
}

impl Resolver {
    /// Appends the agenda entries of impulse number `index` to `agenda`.
    pub fn extend_agenda(
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
