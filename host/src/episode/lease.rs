//! Leases: which episode owns which subtree, and the rule every change at
//! commit is checked against ([`Episodes::check_change`]).

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use cep_sdk::{Name, Path, Value};

use super::{Episode, Profile};
use crate::cell::{TreeError, WorkTree};

/// A lease: exclusive ownership of a subtree across beats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub path: Path,
    /// Locks the structure (creating and deleting cells).
    pub lock_store: bool,
    /// Locks the values.
    pub lock_data: bool,
    pub include_descendants: bool,
}

impl Lease {
    pub(crate) fn covers(&self, path: &Path) -> bool {
        if self.include_descendants {
            path.starts_with(&self.path)
        } else {
            path == &self.path
        }
    }
}

/// The live episodes and their leases.
///
/// Found by id through a hash map, which is only ever looked up, never
/// iterated: every slice looks its episode up at capture (and at commit
/// when an episode ended in between, [`Episodes::ended`]), and a search of
/// an ordered map of 1,000 names cost ≈ 9 % of a slice. What must go in
/// canonical (id) order, the lease checks, walks `holders`: the episodes
/// holding a lease, usually few, so a write is checked against them and
/// not against every live episode.
#[derive(Default)]
pub(crate) struct Episodes {
    // determinism: lookup only, never iterated.
    live: FxHashMap<Name, Episode>,
    holders: BTreeSet<Name>,
    /// Episodes removed so far.
    ended: u64,
}

/// Why a change was refused by the lease rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseRefusal {
    /// Another episode holds a lease over the path.
    HeldBy(Name),
    /// An RW slice changed a path outside its own leases.
    NotLeased,
}

impl Episodes {
    pub fn get(&self, eid: &Name) -> Option<&Episode> {
        self.live.get(eid)
    }

    /// The episode for its counters; its leases change only through the
    /// methods below, which keep `holders` right.
    pub fn get_mut(&mut self, eid: &Name) -> Option<&mut Episode> {
        self.live.get_mut(eid)
    }

    pub fn contains(&self, eid: &Name) -> bool {
        self.live.contains_key(eid)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn insert(&mut self, eid: Name, episode: Episode) {
        self.live.insert(eid.clone(), episode);
        self.note_leases(&eid);
    }

    pub fn remove(&mut self, eid: &Name) {
        if self.live.remove(eid).is_some() {
            self.ended += 1;
        }
        self.holders.remove(eid);
    }

    /// How many episodes were removed so far: while it stays the same, an
    /// episode seen live is still live, without a lookup.
    pub fn ended(&self) -> u64 {
        self.ended
    }

    /// Keeps `holders` in step with `eid`'s leases.
    fn note_leases(&mut self, eid: &Name) {
        match self.live.get(eid) {
            Some(ep) if !ep.leases.is_empty() => {
                self.holders.insert(eid.clone());
            }
            _ => {
                self.holders.remove(eid);
            }
        }
    }

    /// The lease holders with their episodes, in id order.
    fn holding(&self) -> impl Iterator<Item = (&Name, &Episode)> {
        self.holders
            .iter()
            .filter_map(|eid| self.live.get(eid).map(|ep| (eid, ep)))
    }

    /// Checks a change at `path` by `writer` (the episode of the slice that
    /// staged it, if any). `structural` is a create/delete/append.
    pub fn check_change(
        &self,
        path: &Path,
        writer: Option<(&Name, Profile)>,
        structural: bool,
    ) -> Result<(), LeaseRefusal> {
        for (eid, ep) in self.holding() {
            for lease in &ep.leases {
                let locks = if structural {
                    lease.lock_store || lease.lock_data
                } else {
                    lease.lock_data
                };
                if locks && lease.covers(path) && writer.map(|(w, _)| w) != Some(eid) {
                    return Err(LeaseRefusal::HeldBy(eid.clone()));
                }
            }
        }
        if let Some((eid, Profile::Rw)) = writer {
            let own = self.live.get(eid).is_some_and(|ep| {
                ep.suspended.is_none() && ep.leases.iter().any(|l| l.covers(path))
            });
            if !own {
                return Err(LeaseRefusal::NotLeased);
            }
        }
        Ok(())
    }

    /// Grants `lease` to `eid` unless another episode holds an overlapping one.
    pub fn grant(&mut self, eid: &Name, lease: Lease) -> Result<(), Name> {
        for (other, ep) in self.holding() {
            if other == eid {
                continue;
            }
            let overlaps = ep
                .leases
                .iter()
                .any(|l| l.covers(&lease.path) || lease.covers(&l.path));
            if overlaps {
                return Err(other.clone());
            }
        }
        if let Some(ep) = self.live.get_mut(eid) {
            if !ep.leases.contains(&lease) {
                ep.leases.push(lease);
            }
        }
        self.note_leases(eid);
        debug_assert!(
            self.holding()
                .all(|(a, x)| self.holding().all(|(b, y)| a == b
                    || !x.leases.iter().any(|l| y
                        .leases
                        .iter()
                        .any(|m| l.covers(&m.path) || m.covers(&l.path))))),
            "two episodes hold overlapping leases"
        );
        Ok(())
    }

    /// `suspend_rw`: the episode stops mutating; with `drop_leases` its
    /// leases are released and remembered for `resume_rw`.
    pub fn suspend(&mut self, eid: &Name, drop_leases: bool) {
        if let Some(ep) = self.live.get_mut(eid) {
            if ep.suspended.is_none() {
                ep.suspended = Some(if drop_leases {
                    std::mem::take(&mut ep.leases)
                } else {
                    Vec::new()
                });
            }
        }
        self.note_leases(eid);
    }

    /// `resume_rw`: re-acquires the dropped leases in their original order.
    /// Returns the episode that took one meanwhile, if any (then the caller
    /// cancels this episode).
    pub fn resume(&mut self, eid: &Name) -> Result<(), Name> {
        let Some(dropped) = self.live.get_mut(eid).and_then(|ep| ep.suspended.take()) else {
            return Ok(());
        };
        for lease in dropped {
            self.grant(eid, lease)?;
        }
        Ok(())
    }

    pub fn release(&mut self, eid: &Name, path: &Path) {
        if let Some(ep) = self.live.get_mut(eid) {
            ep.leases.retain(|l| &l.path != path);
        }
        self.note_leases(eid);
    }
}

/// Mirrors an episode's leases into its dossier (`leases/<i>` = path).
pub(crate) fn record_leases(
    tree: &mut WorkTree,
    eid: &Name,
    leases: &[Lease],
) -> Result<(), TreeError> {
    let at = crate::ops::dossier(eid).child(Name::new("leases").expect("static name"));
    if tree.node(&at).is_some() {
        tree.delete(&at)?;
    }
    for lease in leases {
        tree.append(&at, Value::from(lease.path.to_string()))?;
    }
    Ok(())
}
