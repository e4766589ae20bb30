//! The enzyme registry, the binding trie and agenda ordering.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cep_sdk::{EnzymeDescriptor, EnzymeFlags, MatchKind, Name, Path};

use super::{Enzyme, SignalPattern};

/// An enzyme's index in its registry. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnzymeId(pub u32);

/// A validated enzyme descriptor.
#[derive(Debug, Clone)]
pub struct EnzymeSpec {
    pub name: Name,
    pub label: String,
    pub signal: SignalPattern,
    pub match_kind: MatchKind,
    pub before: Vec<Name>,
    pub after: Vec<Name>,
    pub flags: EnzymeFlags,
    pub writes: Vec<Path>,
}

/// Why a registration was refused. Nothing was registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("enzyme {name:?}: invalid {field}: {reason}")]
    Invalid {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("enzyme {name:?} is already registered")]
    Duplicate { name: String },
    #[error("enzyme {name:?} would close an ordering cycle: {}", cycle.join(" runs before "))]
    Cycle { name: String, cycle: Vec<String> },
}

impl EnzymeSpec {
    /// Validates a descriptor: the name, the signal pattern, the names in
    /// `before`/`after` and the scopes must all parse.
    pub fn from_descriptor(d: &EnzymeDescriptor) -> Result<Self, RegisterError> {
        let invalid = |field: &'static str, reason: String| RegisterError::Invalid {
            name: d.name.clone(),
            field,
            reason,
        };
        let name = Name::new(&d.name).map_err(|e| invalid("name", e.to_string()))?;
        let signal =
            SignalPattern::parse(&d.signal).map_err(|e| invalid("signal", e.to_string()))?;
        let names = |field, list: &[String]| -> Result<Vec<Name>, RegisterError> {
            list.iter()
                .map(|n| Name::new(n).map_err(|e| invalid(field, e.to_string())))
                .collect()
        };
        let paths = |field, list: &[String]| -> Result<Vec<Path>, RegisterError> {
            list.iter()
                .map(|p| Path::parse(p).map_err(|e| invalid(field, e.to_string())))
                .collect()
        };
        // Declared reads are checked to be paths and go no further: the
        // kernel neither needs nor enforces them (docs/decisions.md).
        paths("reads", &d.reads)?;
        Ok(EnzymeSpec {
            name,
            label: d.label.clone(),
            signal,
            match_kind: d.match_kind,
            before: names("before", &d.before)?,
            after: names("after", &d.after)?,
            flags: d.flags,
            writes: paths("writes", &d.writes)?,
        })
    }

    /// Whether a change at `path` lies inside the declared `writes` scopes
    /// (always, when none are declared).
    pub fn may_write(&self, path: &Path) -> bool {
        self.writes.is_empty() || self.writes.iter().any(|scope| path.starts_with(scope))
    }
}

pub(crate) struct Registered {
    pub spec: Arc<EnzymeSpec>,
    pub callback: Arc<dyn Enzyme>,
    /// Registration order, the last tie-break.
    pub seq: u64,
    /// Retired (its plugin was reloaded): it matches nothing, and its name
    /// is free for the new version's enzyme.
    pub retired: bool,
}

/// A binding (or the tombstone an unbind leaves) on one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub enzyme: Name,
    pub propagate: bool,
    pub tombstone: bool,
}

/// Bindings, stored in a trie shaped like the cell paths that carry them.
#[derive(Clone, Default)]
struct BindNode {
    id: u32,
    entries: Vec<Binding>,
    kids: BTreeMap<Name, BindNode>,
}

/// What, besides the signal, decides an impulse's agenda: the deepest
/// binding-trie node on its target's path and whether that node is the
/// target itself. Impulses with equal signals and keys get equal agendas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolveKey {
    /// No target: broadcast.
    Broadcast,
    Target {
        node: u32,
        at_target: bool,
    },
}

/// Every registered enzyme and every binding.
#[derive(Clone, Default)]
pub struct Registry {
    enzymes: Vec<Registered>,
    by_name: BTreeMap<Name, EnzymeId>,
    binds: BindNode,
    /// How many binding entries (tombstones included) name each enzyme; an
    /// enzyme named by none is *free* and joins targeted impulses by signal.
    bind_refs: BTreeMap<Name, u32>,
    next_bind_id: u32,
    /// Bumped on every change; resolution caches key on it.
    epoch: u64,
}

impl Clone for Registered {
    fn clone(&self) -> Self {
        Registered {
            spec: self.spec.clone(),
            callback: self.callback.clone(),
            seq: self.seq,
            retired: self.retired,
        }
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry {
            next_bind_id: 1,
            ..Default::default()
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn len(&self) -> usize {
        self.enzymes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.enzymes.is_empty()
    }

    pub fn id(&self, name: &str) -> Option<EnzymeId> {
        self.by_name.get(name).copied()
    }

    pub fn spec(&self, id: EnzymeId) -> &Arc<EnzymeSpec> {
        &self.enzymes[id.0 as usize].spec
    }

    pub(crate) fn get(&self, id: EnzymeId) -> &Registered {
        &self.enzymes[id.0 as usize]
    }

    /// Registers an enzyme. Refuses an invalid descriptor, a duplicate name,
    /// and an ordering cycle (the error names every enzyme on it).
    pub fn register(
        &mut self,
        descriptor: &EnzymeDescriptor,
        callback: Arc<dyn Enzyme>,
    ) -> Result<EnzymeId, RegisterError> {
        let spec = EnzymeSpec::from_descriptor(descriptor)?;
        self.register_spec(spec, callback)
    }

    pub fn register_spec(
        &mut self,
        spec: EnzymeSpec,
        callback: Arc<dyn Enzyme>,
    ) -> Result<EnzymeId, RegisterError> {
        if self.by_name.contains_key(&spec.name) {
            return Err(RegisterError::Duplicate {
                name: spec.name.to_string(),
            });
        }
        if let Some(cycle) = self.cycle_through(&spec) {
            return Err(RegisterError::Cycle {
                name: spec.name.to_string(),
                cycle,
            });
        }
        let id = EnzymeId(self.enzymes.len() as u32);
        self.by_name.insert(spec.name.clone(), id);
        self.enzymes.push(Registered {
            spec: Arc::new(spec),
            callback,
            seq: id.0 as u64,
            retired: false,
        });
        self.epoch += 1;
        Ok(id)
    }

    /// Retires the enzyme named `name`: from the next beat on it matches no
    /// impulse, and its name may be registered again (a reloaded plugin's
    /// new version). Its id stays valid. Returns it, if there was one.
    pub fn retire(&mut self, name: &str) -> Option<EnzymeId> {
        let id = self.by_name.remove(name)?;
        self.enzymes[id.0 as usize].retired = true;
        self.epoch += 1;
        Some(id)
    }

    pub fn is_retired(&self, id: EnzymeId) -> bool {
        self.enzymes[id.0 as usize].retired
    }

    /// The ordering edges "x runs before y" among registered enzymes plus
    /// `new`, and a cycle through `new` if one exists.
    fn cycle_through(&self, new: &EnzymeSpec) -> Option<Vec<String>> {
        let mut runs_before: BTreeMap<&Name, BTreeSet<&Name>> = BTreeMap::new();
        let specs = self
            .enzymes
            .iter()
            .filter(|r| !r.retired)
            .map(|r| r.spec.as_ref())
            .chain(std::iter::once(new));
        let known: BTreeSet<&Name> = specs.clone().map(|s| &s.name).collect();
        for spec in specs {
            for later in spec.before.iter().filter(|n| known.contains(n)) {
                runs_before.entry(&spec.name).or_default().insert(later);
            }
            for earlier in spec.after.iter().filter(|n| known.contains(n)) {
                runs_before.entry(earlier).or_default().insert(&spec.name);
            }
        }
        // Depth-first search from `new` back to itself; the stack is the cycle.
        let mut stack: Vec<(&Name, Vec<&Name>)> = vec![(&new.name, Vec::new())];
        let mut seen: BTreeSet<&Name> = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            let mut path = path;
            path.push(at);
            for &next in runs_before.get(at).into_iter().flatten() {
                if next == &new.name {
                    let mut cycle: Vec<String> = path.iter().map(|n| n.to_string()).collect();
                    cycle.push(new.name.to_string());
                    return Some(cycle);
                }
                if seen.insert(next) {
                    stack.push((next, path.clone()));
                }
            }
        }
        None
    }

    /// Binds `enzyme` to the cell at `path`. A propagating binding also
    /// applies to every descendant. Rebinding replaces a tombstone there.
    pub fn bind(&mut self, path: &Path, enzyme: &Name, propagate: bool) {
        self.put_entry(path, enzyme, propagate, false);
    }

    /// Unbinds `enzyme` at `path`, leaving a tombstone that also masks the
    /// bindings it inherits from ancestors, for this cell and its descendants.
    pub fn unbind(&mut self, path: &Path, enzyme: &Name) {
        self.put_entry(path, enzyme, true, true);
    }

    fn put_entry(&mut self, path: &Path, enzyme: &Name, propagate: bool, tombstone: bool) {
        let mut node = &mut self.binds;
        for name in path.names() {
            let next_id = &mut self.next_bind_id;
            node = node.kids.entry(name.clone()).or_insert_with(|| {
                *next_id += 1;
                BindNode {
                    id: *next_id,
                    ..Default::default()
                }
            });
        }
        let before = node.entries.len();
        node.entries.retain(|b| &b.enzyme != enzyme);
        let removed = before - node.entries.len();
        node.entries.push(Binding {
            enzyme: enzyme.clone(),
            propagate,
            tombstone,
        });
        let refs = self.bind_refs.entry(enzyme.clone()).or_default();
        *refs = *refs + 1 - removed as u32;
        self.epoch += 1;
    }

    /// The bindings (and tombstones) recorded on exactly `path`.
    pub fn bindings_at(&self, path: &Path) -> Vec<Binding> {
        let mut node = &self.binds;
        for name in path.names() {
            match node.kids.get(name) {
                Some(n) => node = n,
                None => return Vec::new(),
            }
        }
        node.entries.clone()
    }

    /// The part of an impulse's target that decides its agenda.
    pub fn resolve_key(&self, target: Option<&Path>) -> ResolveKey {
        let Some(target) = target else {
            return ResolveKey::Broadcast;
        };
        let mut node = &self.binds;
        for name in target.names() {
            match node.kids.get(name) {
                Some(next) => node = next,
                None => {
                    return ResolveKey::Target {
                        node: node.id,
                        at_target: false,
                    }
                }
            }
        }
        ResolveKey::Target {
            node: node.id,
            at_target: true,
        }
    }

    /// The enzymes that run for an impulse, in run order.
    ///
    /// - No target, or no binding entry anywhere on the target's path:
    ///   every enzyme whose signal pattern matches (broadcast).
    /// - Otherwise: the bound enzymes (target's own bindings plus ancestors'
    ///   propagating ones, minus tombstoned names) whose signal matches —
    ///   *target+signal* matches — together with the *free* enzymes (bound
    ///   nowhere) whose signal matches — *signal-only* matches.
    ///
    /// Order: topological over before/after within the set; ties by
    /// target+signal before signal-only, more specific pattern, exact before
    /// prefix, name, registration order.
    pub fn resolve(&self, signal: &Path, target: Option<&Path>) -> Vec<EnzymeId> {
        let members = self.members(signal, target);
        self.order(members)
    }

    fn matches(&self, id: EnzymeId, signal: &Path) -> bool {
        let registered = &self.enzymes[id.0 as usize];
        let spec = &registered.spec;
        !registered.retired && spec.signal.matches(signal, spec.match_kind)
    }

    fn broadcast(&self, signal: &Path) -> Vec<(EnzymeId, bool)> {
        (0..self.enzymes.len() as u32)
            .map(EnzymeId)
            .filter(|&id| self.matches(id, signal))
            .map(|id| (id, false))
            .collect()
    }

    fn members(&self, signal: &Path, target: Option<&Path>) -> Vec<(EnzymeId, bool)> {
        let Some(target) = target else {
            return self.broadcast(signal);
        };
        fn apply<'r>(
            node: &'r BindNode,
            at_target: bool,
            bound: &mut Vec<&'r Name>,
            saw_entry: &mut bool,
        ) {
            for b in &node.entries {
                *saw_entry = true;
                if b.tombstone {
                    bound.retain(|n| *n != &b.enzyme);
                } else if (b.propagate || at_target) && !bound.contains(&&b.enzyme) {
                    bound.push(&b.enzyme);
                }
            }
        }
        let mut bound: Vec<&Name> = Vec::new();
        let mut saw_entry = false;
        let mut node = &self.binds;
        apply(node, target.is_root(), &mut bound, &mut saw_entry);
        for (depth, name) in target.names().iter().enumerate() {
            match node.kids.get(name) {
                Some(next) => node = next,
                None => break,
            }
            apply(node, depth + 1 == target.len(), &mut bound, &mut saw_entry);
        }
        if !saw_entry {
            return self.broadcast(signal);
        }
        let mut members: Vec<(EnzymeId, bool)> = bound
            .iter()
            .filter_map(|name| self.id(name.as_str()))
            .filter(|&id| self.matches(id, signal))
            .map(|id| (id, true))
            .collect();
        for (id, r) in self.enzymes.iter().enumerate() {
            let id = EnzymeId(id as u32);
            let free = self.bind_refs.get(&r.spec.name).is_none_or(|&n| n == 0);
            if free && self.matches(id, signal) {
                members.push((id, false));
            }
        }
        members
    }

    /// Kahn's algorithm over the before/after edges inside `members`, the
    /// ready set ordered by the tie-break key.
    fn order(&self, members: Vec<(EnzymeId, bool)>) -> Vec<EnzymeId> {
        let n = members.len();
        if n <= 1 {
            return members.into_iter().map(|(id, _)| id).collect();
        }
        let local = |name: &Name| {
            members
                .iter()
                .position(|(id, _)| &self.spec(*id).name == name)
        };
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut indegree = vec![0usize; n];
        for (i, (id, _)) in members.iter().enumerate() {
            let spec = self.spec(*id);
            for j in spec.before.iter().filter_map(local) {
                edges[i].push(j);
                indegree[j] += 1;
            }
            for j in spec.after.iter().filter_map(local) {
                edges[j].push(i);
                indegree[i] += 1;
            }
        }
        let key = |i: usize| {
            let (id, dual) = members[i];
            let r = self.get(id);
            let (literals, ones) = r.spec.signal.specificity();
            (
                !dual,
                std::cmp::Reverse(literals),
                std::cmp::Reverse(ones),
                r.spec.match_kind,
                r.spec.name.clone(),
                r.seq,
                i,
            )
        };
        let mut ready: BTreeSet<_> = (0..n).filter(|&i| indegree[i] == 0).map(key).collect();
        let mut out = Vec::with_capacity(n);
        while let Some(first) = ready.pop_first() {
            let i = first.6;
            out.push(members[i].0);
            for &j in &edges[i] {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(key(j));
                }
            }
        }
        debug_assert_eq!(out.len(), n, "cycles are refused at registration");
        out
    }
}
