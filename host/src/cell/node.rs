//! Cells and the copy-on-write batch that turns one snapshot into the next.

use triomphe::Arc;

use super::children::{Children, Entry};
use super::hash::{self, Batch, Dest, Hash, Role, STALE};
use super::snapshot::Snapshot;
use cep_sdk::{Name, Path, Value};

const SEALED: u8 = 1;
/// Set on every ancestor of a sealed cell, so a delete can refuse to remove
/// sealed content without scanning the subtree. Derived, so not hashed.
const HOLDS_SEALED: u8 = 2;

/// One cell: an optional value, a sealed flag and ordered, named children.
/// A cell is stored in place in its parent's list of children; the lists
/// are shared between snapshots, and a commit copies only changed paths.
#[derive(Clone, Default)]
pub struct Node {
    value: Option<Value>,
    pub(crate) children: Children,
    flags: u8,
    /// The cut level of this cell's name in its parent's list (see
    /// `hash::cut_level`), cached where the layout has room for it. Not part
    /// of the cell; meaningless for the root.
    pub(super) cut: u8,
}

/// Why a mutation of the tree was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TreeError {
    #[error("cannot change {path}: {sealed_at} is sealed")]
    Sealed { path: Path, sealed_at: Path },
    #[error("cannot delete {path}: it holds sealed cells")]
    HoldsSealed { path: Path },
    #[error("the root cell cannot be deleted")]
    DeleteRoot,
}

impl Node {
    pub fn value(&self) -> Option<&Value> {
        self.value.as_ref()
    }

    pub fn is_sealed(&self) -> bool {
        self.flags & SEALED != 0
    }

    /// The flags that are part of the hash: sealed, and whether the cell
    /// is a log.
    pub(crate) fn hashed_flags(&self) -> u8 {
        let log = if self.children.is_log() {
            hash::LOG_FLAG
        } else {
            0
        };
        (self.flags & SEALED) | log
    }

    /// Whether the cell is a log: its children only grow at the end and
    /// shrink at the front, and are hashed as a chain (`docs/formats.md`).
    pub fn is_log(&self) -> bool {
        self.children.is_log()
    }

    pub(super) fn set_value(&mut self, value: Option<Value>) {
        self.value = value;
    }

    pub(super) fn mark_sealed(&mut self) {
        self.flags |= SEALED;
    }

    pub fn child_count(&self) -> usize {
        self.children.len()
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.find(name).map(|e| &e.node)
    }

    /// The last child in name order.
    pub fn last_child(&self) -> Option<&Node> {
        self.children.last().map(|e| &e.node)
    }

    /// The last child in name order, with its name.
    pub fn last_child_named(&self) -> Option<(&Name, &Node)> {
        self.children.last().map(|e| (&e.name, &e.node))
    }

    /// The first child's name in name order.
    pub fn first_child_name(&self) -> Option<&Name> {
        self.children.first().map(|e| &e.name)
    }

    /// Child names in name order.
    pub fn child_names(&self) -> Vec<Name> {
        let mut out = Vec::with_capacity(self.children.len());
        self.children.for_each(&mut |e| out.push(e.name.clone()));
        out
    }

    /// Calls `f(name, child)` for every child in name order.
    pub fn for_each_child<'a>(&'a self, f: &mut dyn FnMut(&'a Name, &'a Node)) {
        self.children.for_each(&mut |e| f(&e.name, &e.node));
    }

    /// The node at `path` below this one.
    pub fn descend(&self, path: &[Name]) -> Option<&Node> {
        let mut node = self;
        for name in path {
            node = node.child(name.as_str())?;
        }
        Some(node)
    }
}

/// Whether a cell is hashed in place in its parent's chunk (never a log:
/// its base must be hashed).
pub(super) fn is_inline(node: &Node) -> bool {
    node.children.is_bare() && hash::inline_leaf(node.value.as_ref())
}

/// Recomputes the hashes of `nodes` (cells that changed, none inside
/// another) and of their stale descendants; returns the cell hashes in
/// order.
///
/// The work goes depth by depth, so that every hash of one kind at one
/// level is computed in one [`Batch`]: first every stale cell one level
/// down (recursively), then each list's re-cut, then its chunk tree level
/// by level (chunks of all lists together, then their groups, …), then the
/// cell hashes. A commit that changed many cells side by side (a beat's
/// dossiers, a thousand scattered writes) thus hashes in SIMD lanes.
///
/// `par` says what may go to a helper thread: the stale cells one level
/// down when there are many ([`Par::cells`]), and a long list's lower
/// levels when the commit changed many cells ([`Par::wide`]).
fn rehash_cells(nodes: &mut [&mut Node], par: Par) -> Vec<Hash> {
    let wide = par.wide;
    let mut digests: Vec<Option<Hash>> = vec![None; nodes.len()];
    // Rounds of log links: one per stale link of a log (each needs the one
    // before), every log's round in one batch.
    let mut rounds = 0;
    {
        let mut stale: Vec<&mut Entry> = Vec::new();
        for (node, digest) in nodes.iter_mut().zip(digests.iter_mut()) {
            rounds = rounds.max(node.children.relinks());
            *digest = node.children.clean_log_digest();
            if wide && node.children.len() >= WorkTree::WIDE_LIST_MIN {
                node.children.stale_entries_wide(&mut stale);
            } else {
                node.children.stale_entries(&mut stale);
            }
        }
        if !stale.is_empty() {
            let mut below: Vec<&mut Node> = stale.iter_mut().map(|e| &mut e.node).collect();
            let hashes = if par.cells && below.len() >= WorkTree::PAR_CELLS_MIN {
                // Disjoint subtrees: each half hashed on its own thread
                // (and no further helpers), the same hashes either way.
                let mid = below.len() / 2;
                let (low, high) = below.split_at_mut(mid);
                let (mut hashes, high) = super::children::both_halves(
                    || rehash_cells(low, Par::NONE),
                    || rehash_cells(high, Par::NONE),
                );
                hashes.extend(high);
                hashes
            } else {
                rehash_cells(&mut below, par)
            };
            drop(below);
            for (entry, hash) in stale.iter_mut().zip(hashes) {
                entry.hash = hash;
            }
        }
    }
    // The re-cuts go with the first round: one walk over the cells.
    let mut height = None;
    for round in 0..rounds.max(1) {
        let mut batch = Batch::new(Role::Link);
        for (node, digest) in nodes.iter_mut().zip(digests.iter_mut()) {
            if round == 0 {
                node.children.recut();
                height = height.max(node.children.height());
            }
            node.children.link_job(round, &mut batch, digest);
        }
        batch.finish();
    }
    if let Some(height) = height {
        for level in 0..=height {
            // One batch per level: its hashes are the next level's inputs.
            let role = if level == 0 { Role::Chunk } else { Role::Group };
            let mut batch = Batch::new(role);
            for (node, digest) in nodes.iter_mut().zip(digests.iter_mut()) {
                if wide && node.children.len() >= WorkTree::WIDE_LIST_MIN {
                    node.children.hash_jobs_wide(level, digest, &mut batch);
                } else {
                    node.children.hash_jobs(level, digest, &mut batch);
                }
            }
            batch.finish();
        }
    }
    let mut hashes = vec![STALE; nodes.len()];
    let mut batch = Batch::new(Role::Cell);
    for ((node, digest), slot) in nodes.iter().zip(&digests).zip(hashes.iter_mut()) {
        batch.push(Dest::Hash(slot), |buf| {
            hash::put_cell(
                buf,
                node.hashed_flags(),
                node.value.as_ref(),
                node.children.len() as u64,
                digest.as_ref(),
            )
        });
    }
    batch.finish();
    hashes
}

/// Children visited by [`CellMut::each_existing_child`] are hashed this
/// many at a time, right after their visits, instead of by the commit: a
/// beat's walk over a thousand dossiers writes more than the core's cache
/// holds, so the commit's rehash found each dossier evicted again.
/// Measured on 1k yielding episodes (`example beat_spread`, 16
/// alternating runs): 64 at a time 4–5 % faster per slice than all at
/// the end, 32 at a time 2 %.
const HASH_AHEAD: usize = 64;

/// Hashes `entries` (changed cells, none inside another) now, as the
/// commit would, and empties the list. A later change below one of them
/// marks it stale again on its way down.
fn hash_now(entries: &mut Vec<&mut Entry>) {
    let inline: Vec<bool> = entries.iter().map(|e| is_inline(&e.node)).collect();
    let hashes = {
        let mut nodes: Vec<&mut Node> = entries
            .iter_mut()
            .zip(&inline)
            .filter(|(_, &inline)| !inline)
            .map(|(e, _)| &mut e.node)
            .collect();
        rehash_cells(&mut nodes, Par::NONE)
    };
    let mut hashes = hashes.into_iter();
    for (entry, inline) in entries.drain(..).zip(inline) {
        entry.hash = match inline {
            true => super::hash::INLINE,
            false => hashes.next().expect("one hash per hashed cell"),
        };
    }
}

/// What [`rehash_cells`] may hand to a helper thread.
#[derive(Clone, Copy)]
struct Par {
    /// Half of many stale cells at one depth (once: not again inside).
    cells: bool,
    /// Half of a long list's lower levels.
    wide: bool,
}

impl Par {
    const NONE: Par = Par {
        cells: false,
        wide: false,
    };
}

/// A batch of mutations on top of a committed snapshot. Unchanged subtrees
/// stay shared with the snapshot; [`WorkTree::commit`] rehashes only what the
/// batch touched and yields the next snapshot.
pub struct WorkTree {
    root: Arc<Node>,
    root_hash: Hash,
    /// Cells changed in this batch (a hint for how much the commit frees).
    changes: usize,
}

impl WorkTree {
    /// [`WorkTree::write_all`] writes smaller batches one by one: sorting
    /// a batch by child costs more than it saves on a few writes, and
    /// starting a helper thread costs tens of microseconds.
    pub const SPLIT_WRITES_MIN: usize = 512;
    /// ... and batches into subtrees of fewer cells than this (see
    /// `cells_below`): 64k cells of ≈ 150 bytes are several times a 2 MiB
    /// L2 cache.
    pub const SPLIT_CELLS_MIN: usize = 65_536;
    /// A commit of this many changes or more hashes the lower levels of
    /// lists of [`WorkTree::WIDE_LIST_MIN`] children or more on two
    /// threads: thousands of chunks to hash outweigh starting a thread.
    pub const WIDE_CHANGES_MIN: usize = 16_384;
    pub const WIDE_LIST_MIN: usize = 16_384;
    /// A commit that changed this many cells side by side (stale at one
    /// depth, each with a hash of its own) hashes them in two halves on two
    /// threads: a beat's dossiers, say. Measured: 10k dossiers gain 12 %,
    /// 100k 18 %; 1k lose 5 % (the helper fetches what this thread just
    /// wrote, and shares the other core with the reclaimer).
    pub const PAR_CELLS_MIN: usize = 2_048;

    pub fn new(base: &Snapshot) -> Self {
        WorkTree {
            root: base.root_arc().clone(),
            root_hash: base.hash(),
            changes: 0,
        }
    }

    /// The current (uncommitted) node at `path`.
    pub fn node(&self, path: &Path) -> Option<&Node> {
        self.root.descend(path.names())
    }

    pub fn read(&self, path: &Path) -> Option<&Value> {
        self.node(path)?.value()
    }

    /// The node at `path`, made unique for mutation and created (with every
    /// missing ancestor) when absent. Marks the path for rehash.
    ///
    /// Seals are checked on the way down before anything is created, so a
    /// refused change creates nothing; at worst it copied some unchanged
    /// ancestors, which rehash to the same hashes.
    fn node_mut(&mut self, path: &Path) -> Result<&mut Node, TreeError> {
        self.root_hash = STALE;
        self.changes += 1;
        walk_mut(&mut self.root, path)
    }

    /// The node at `path` made unique for mutation, without the seal rules;
    /// created with its ancestors when `create`, else `None` when absent.
    pub(super) fn node_mut_unchecked(&mut self, path: &Path, create: bool) -> Option<&mut Node> {
        if !create && self.node(path).is_none() {
            return None;
        }
        self.root_hash = STALE;
        self.changes += 1;
        let mut node = Arc::make_mut(&mut self.root);
        for name in path.names() {
            let entry = node.children.entry_mut(name, true).expect("created");
            entry.hash = STALE;
            node = &mut entry.node;
        }
        Some(node)
    }

    /// Marks `path` and its ancestors as holding a sealed cell.
    pub(super) fn mark_holds_sealed(&mut self, path: &Path) {
        let mut node = Arc::make_mut(&mut self.root);
        node.flags |= HOLDS_SEALED;
        for name in path.names() {
            let Some(entry) = node.children.entry_mut(name, false) else {
                return;
            };
            entry.hash = STALE;
            node = &mut entry.node;
            node.flags |= HOLDS_SEALED;
        }
    }

    /// Refuses a change at `path` when it or an ancestor is sealed, before
    /// anything is copied.
    fn check_unsealed(&self, path: &Path) -> Result<(), TreeError> {
        let mut node = self.root.as_ref();
        if node.is_sealed() {
            return Err(sealed_error(path, 0));
        }
        for (depth, name) in path.names().iter().enumerate() {
            match node.child(name.as_str()) {
                None => return Ok(()),
                Some(child) if child.is_sealed() => return Err(sealed_error(path, depth + 1)),
                Some(child) => node = child,
            }
        }
        Ok(())
    }

    /// Sets the value of the cell at `path`, creating it and its ancestors.
    pub fn write(&mut self, path: &Path, value: Value) -> Result<(), TreeError> {
        self.write_noting(path, value).map(|_| ())
    }

    /// [`WorkTree::write`], saying whether the cell may already have been
    /// changed in this batch (it, or something below it, was; or it is the
    /// root). `false` is certain: nothing touched it before.
    pub fn write_noting(&mut self, path: &Path, value: Value) -> Result<bool, TreeError> {
        self.root_hash = STALE;
        self.changes += 1;
        let (node, touched) = walk_mut_noting(&mut self.root, path)?;
        node.value = Some(value);
        Ok(touched)
    }

    /// Writes `writes` as [`WorkTree::write_noting`] would one after
    /// another: the same tree, the same results in the same order. Writes
    /// below different children of one cell commute, so a large batch is
    /// taken apart at the first cell where its paths fan out: the children
    /// there are found in one walk of that cell's list (not one search
    /// each), and each child's writes are made in batch order as the walk
    /// reaches it. Into a large subtree, the batch is also split between
    /// this thread and a helper, each half written to its own children's
    /// subtrees (copying the shared nodes on the way down is most of a
    /// write, and it is what the two threads share out).
    pub fn write_all(&mut self, writes: Vec<(&Path, Value)>) -> Vec<Result<bool, TreeError>> {
        self.write_all_above(writes, Self::SPLIT_CELLS_MIN)
    }

    /// [`WorkTree::write_all`], splitting where the writes fan out over
    /// about `cells_min` cells or more (tests split small trees).
    pub(super) fn write_all_above(
        &mut self,
        writes: Vec<(&Path, Value)>,
        cells_min: usize,
    ) -> Vec<Result<bool, TreeError>> {
        let paths: Vec<&Path> = writes.iter().map(|(path, _)| *path).collect();
        match self.fan_out(&paths, cells_min) {
            Some(fan) => self.write_fanned(writes, fan),
            None => writes
                .into_iter()
                .map(|(path, value)| self.write_noting(path, value))
                .collect(),
        }
    }

    /// Whether [`WorkTree::write_all`] may take `count` writes of which
    /// `sample` are some paths (spread over the batch; `write_all` checks
    /// every path again) as one batch. `false`: it would write them one by
    /// one, and a caller may as well do so itself, without gathering the
    /// batch.
    pub fn may_batch(&self, sample: &[&Path], count: usize) -> bool {
        self.fan_out_of(sample, count, Self::SPLIT_CELLS_MIN)
            .is_some()
    }

    /// Where [`WorkTree::write_all`] takes writes to `paths` apart: see
    /// [`WorkTree::fan_out_of`], checked on a sample first (a beat of a
    /// million writes that will not fan out is turned down in
    /// microseconds).
    pub(super) fn fan_out(&self, paths: &[&Path], cells_min: usize) -> Option<Fan> {
        let step = (paths.len() / 64).max(1);
        let sample: Vec<&Path> = paths.iter().step_by(step).copied().collect();
        self.fan_out_of(&sample, paths.len(), cells_min)?;
        self.fan_out_of(paths, paths.len(), cells_min)
    }

    /// The deepest cell that every one of `paths` goes below, if a batch of
    /// `count` writes to them is large, fans out there and nothing on the
    /// way to it is sealed (then no write fails above it). It is split
    /// between two threads there when also:
    /// - they go on average more than a level and a half below it (a write
    ///   just below it copies nothing the other thread would not have to
    ///   fetch back);
    /// - the subtree has about `cells_min` cells or more.
    fn fan_out_of(&self, paths: &[&Path], count: usize, cells_min: usize) -> Option<Fan> {
        if count < Self::SPLIT_WRITES_MIN || paths.is_empty() {
            return None;
        }
        let first = paths[0].names();
        let (mut common, mut shortest, mut names_in_all) = (first.len(), first.len(), 0);
        for path in paths {
            let names = path.names();
            shortest = shortest.min(names.len());
            names_in_all += names.len();
            common = first[..common]
                .iter()
                .zip(names)
                .take_while(|(a, b)| a == b)
                .count();
        }
        let depth = common.min(shortest.checked_sub(1)?);
        let below = names_in_all - depth * paths.len();
        let fanned = paths.iter().any(|p| p.names()[depth] != first[depth]);
        let batch = fanned
            && self
                .check_unsealed(&Path::from_names(first[..depth].to_vec()))
                .is_ok();
        let wide = batch && self.cells_below(first, depth) >= cells_min;
        let split = wide && 2 * below > 3 * paths.len();
        batch.then_some(Fan { depth, split, wide })
    }

    /// About how many cells lie below the cell at `depth` of `path`: the
    /// product of the child counts along the path (exact in a tree of even
    /// fanout). Splitting pays only on a tree several times the size of a
    /// core's cache: on a smaller one the helper first pulls every node it
    /// writes from the other core's cache, and the rehash pulls them back.
    fn cells_below(&self, path: &[Name], depth: usize) -> usize {
        let Some(mut node) = self.root.descend(&path[..depth]) else {
            return 0;
        };
        let mut cells = 1usize;
        for name in &path[depth..] {
            cells = cells.saturating_mul(node.child_count().max(1));
            match node.child(name.as_str()) {
                Some(child) => node = child,
                None => break,
            }
        }
        cells
    }

    /// Writes `writes`, which all go below the cell at `fan.depth` and fan
    /// out there: the children there are looked up (created, copied if
    /// shared) in one walk of its list, then each write goes on from its
    /// child, on this thread or, when `fan.split`, shared with a helper.
    fn write_fanned(
        &mut self,
        writes: Vec<(&Path, Value)>,
        fan: Fan,
    ) -> Vec<Result<bool, TreeError>> {
        let Fan { depth, split, wide } = fan;
        let count = writes.len();
        self.root_hash = STALE;
        self.changes += count;
        let names: Vec<&Name> = writes.iter().map(|(p, _)| &p.names()[depth]).collect();
        // The writes in name order (batch order within a name); empty when
        // the batch is in name order already (a beat of targets usually is).
        let mut order: Vec<usize> = Vec::new();
        if !names.is_sorted() {
            order = (0..count).collect();
            order.sort_by(|&a, &b| names[a].cmp(names[b]));
        }
        let in_order = |i: usize| if order.is_empty() { i } else { order[i] };
        let mut distinct: Vec<&Name> = Vec::new();
        // Where each child's writes start in name order, and one past the end.
        let mut starts: Vec<usize> = Vec::new();
        for i in 0..count {
            let name = names[in_order(i)];
            if distinct.last() != Some(&name) {
                distinct.push(name);
                starts.push(i);
            }
        }
        starts.push(count);
        let keys: Vec<&str> = distinct.iter().map(|n| n.as_str()).collect();
        let at = Path::from_names(writes[0].0.names()[..depth].to_vec());
        let node = walk_mut(&mut self.root, &at).expect("unsealed: checked by fan_out");
        if !split {
            return write_walked(node, &keys, &distinct, &order, &starts, writes, depth, wide);
        }
        let order: Vec<usize> = if order.is_empty() {
            (0..count).collect()
        } else {
            order
        };
        let mut entries = match node.children.entries_mut(&keys) {
            Ok(entries) => entries,
            Err(absent) => {
                // Created in name order rather than batch order: the
                // commit's re-cut gives the same list either way.
                for i in absent {
                    node.children.entry_mut(distinct[i], true);
                }
                node.children.entries_mut(&keys).expect("all present now")
            }
        };
        // Each write numbered by the child it goes through.
        let mut child = vec![0; count];
        for (c, span) in starts.windows(2).enumerate() {
            for &w in &order[span[0]..span[1]] {
                child[w] = c;
            }
        }
        // The second half starts at the child of the middle write (never
        // the first child: the paths fan out, so there are two or more).
        let split = child[order[count / 2]].max(1);
        let (mut left, mut right): (Share, Share) = (Vec::new(), Vec::new());
        for (at, (path, value)) in writes.into_iter().enumerate() {
            let share = if child[at] < split {
                &mut left
            } else {
                &mut right
            };
            share.push((at, child[at], path, value));
        }
        let (low, high) = entries.split_at_mut(split);
        let (mut done, other) = super::children::both_halves(
            || write_share(low, 0, left, depth),
            move || write_share(high, split, right, depth),
        );
        done.extend(other);
        let mut results: Vec<Option<Result<bool, TreeError>>> = (0..count).map(|_| None).collect();
        for (at, result) in done {
            results[at] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every write done once"))
            .collect()
    }

    /// Removes the value of the cell at `path` (keeps its children).
    pub fn clear_value(&mut self, path: &Path) -> Result<(), TreeError> {
        self.check_unsealed(path)?;
        if self.node(path).is_some_and(|n| n.value.is_some()) {
            self.node_mut(path)?.value = None;
        }
        Ok(())
    }

    /// Deletes the cell at `path` with its subtree. Returns whether it
    /// existed. A subtree holding sealed cells cannot be deleted.
    pub fn delete(&mut self, path: &Path) -> Result<bool, TreeError> {
        let (parent, name) = match (path.parent(), path.last()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(TreeError::DeleteRoot),
        };
        self.check_unsealed(path)?;
        match self.node(path) {
            None => return Ok(false),
            Some(node) if node.flags & HOLDS_SEALED != 0 => {
                return Err(TreeError::HoldsSealed { path: path.clone() })
            }
            Some(_) => {}
        }
        self.node_mut(&parent)?.children.remove(name.as_str());
        Ok(true)
    }

    /// Adds a child under `path` named by the next index (`0000000000`,
    /// `0000000001`, …: one more than the last index-named child) holding
    /// `value`. Returns the new child's name.
    pub fn append(&mut self, path: &Path, value: Value) -> Result<Name, TreeError> {
        let node = self.node_mut(path)?;
        let name = next_index(node);
        let entry = node.children.entry_mut(&name, true).expect("created");
        entry.hash = STALE;
        entry.node.value = Some(value);
        Ok(name)
    }

    /// Seals the cell at `path` (creating it when absent): from now on it and
    /// everything below it are immutable.
    pub fn seal(&mut self, path: &Path) -> Result<(), TreeError> {
        self.check_unsealed(path)?;
        self.node_mut(path)?.flags |= SEALED;
        self.mark_holds_sealed(path);
        Ok(())
    }

    /// A cursor on the cell at `path` (created with its ancestors when
    /// absent), for several changes below one cell with one walk from the
    /// root. The seal rules are those of [`WorkTree::write`].
    pub fn cell_mut(&mut self, path: &Path) -> Result<CellMut<'_>, TreeError> {
        self.root_hash = STALE;
        self.changes += 1;
        Ok(CellMut {
            node: walk_mut(&mut self.root, path)?,
            changes: &mut self.changes,
        })
    }

    /// A cursor on the cell at `path` if it exists (`None` otherwise), in
    /// one walk from the root. When it does not exist, the ancestors that
    /// do were copied and marked for rehash: harmless (they rehash to the
    /// same hashes), and cheaper for the common case than a read walk first.
    pub fn existing_mut(&mut self, path: &Path) -> Result<Option<CellMut<'_>>, TreeError> {
        self.existing_mut_at(path.names())
    }

    /// [`WorkTree::existing_mut`] for a path given as its names (which the
    /// caller may hold on the stack: no path is allocated).
    pub fn existing_mut_at(&mut self, names: &[Name]) -> Result<Option<CellMut<'_>>, TreeError> {
        let path = || Path::from_names(names.to_vec());
        self.root_hash = STALE;
        let mut node = Arc::make_mut(&mut self.root);
        for (depth, name) in names.iter().enumerate() {
            if node.is_sealed() {
                return Err(sealed_error(&path(), depth));
            }
            let Some(entry) = node.children.entry_mut(name, false) else {
                return Ok(None);
            };
            entry.hash = STALE;
            node = &mut entry.node;
        }
        if node.is_sealed() {
            return Err(sealed_error(&path(), names.len()));
        }
        self.changes += 1;
        Ok(Some(CellMut {
            node,
            changes: &mut self.changes,
        }))
    }

    /// Cells changed so far in this batch.
    pub fn changes(&self) -> usize {
        self.changes
    }

    /// Deletes the first children of `path` (in name order) until at most
    /// `keep` remain (at least 1): the retention of index-named logs. One walk
    /// down, whatever the number removed. Children holding sealed cells are
    /// never removed (the call fails, nothing changed).
    pub fn keep_newest(&mut self, path: &Path, keep: usize) -> Result<(), TreeError> {
        let Some(node) = self.node(path) else {
            return Ok(());
        };
        let excess = node.child_count().saturating_sub(keep.max(1));
        if excess == 0 {
            return Ok(());
        }
        if let Some(entry) = held_sealed(node, excess) {
            return Err(TreeError::HoldsSealed {
                path: path.child(entry.clone()),
            });
        }
        self.node_mut(path)?.children.remove_front(excess);
        Ok(())
    }

    /// Rehashes what changed and returns the new snapshot for `beat`.
    pub fn commit(mut self, beat: u64) -> Snapshot {
        if self.root_hash == STALE {
            let par = Par {
                cells: true,
                wide: self.changes >= Self::WIDE_CHANGES_MIN,
            };
            self.root_hash = rehash_cells(&mut [Arc::make_mut(&mut self.root)], par)[0];
        }
        Snapshot::new(self.root, self.root_hash, beat)
    }
}

/// The name of the first of the first `count` children of `node` that is
/// or holds a sealed cell.
fn held_sealed(node: &Node, count: usize) -> Option<&Name> {
    // Sealing marks every ancestor (`mark_holds_sealed`): a cell without
    // the mark has no sealed child to find, and its children (a log's
    // oldest segment, often out of cache) need not be read.
    if node.flags & HOLDS_SEALED == 0 {
        return None;
    }
    node.children
        .first_n(count)
        .into_iter()
        .find(|e| e.node.flags & (SEALED | HOLDS_SEALED) != 0)
        .map(|e| &e.name)
}

/// The next index name under `node`: one more than its last index-named
/// child, or `0000000000`.
fn next_index(node: &Node) -> Name {
    let next = node
        .children
        .last()
        .and_then(|e| e.name.as_str().parse::<u64>().ok())
        .map_or(0, |n| n + 1);
    Name::from_index(next)
}

/// The node at `path` below `root`, made unique and created when absent,
/// with the path marked stale; refused (before creating anything) when it or
/// an ancestor is sealed.
fn walk_mut<'a>(root: &'a mut Arc<Node>, path: &Path) -> Result<&'a mut Node, TreeError> {
    walk_mut_noting(root, path).map(|(node, _)| node)
}

/// [`walk_mut`], also saying whether the cell was marked for rehash
/// before (changed, created or walked through earlier in this batch).
fn walk_mut_noting<'a>(
    root: &'a mut Arc<Node>,
    path: &Path,
) -> Result<(&'a mut Node, bool), TreeError> {
    walk_on(Arc::make_mut(root), path, 0, true)
}

/// [`walk_mut_noting`] from `node`, the cell at `depth` of `path` (already
/// marked; `touched`: whether it was before).
fn walk_on<'a>(
    mut node: &'a mut Node,
    path: &Path,
    depth: usize,
    mut touched: bool,
) -> Result<(&'a mut Node, bool), TreeError> {
    for (depth, name) in path.names().iter().enumerate().skip(depth) {
        if node.is_sealed() {
            return Err(sealed_error(path, depth));
        }
        let entry = node.children.entry_mut(name, true).expect("created");
        touched = entry.hash == STALE;
        entry.hash = STALE;
        node = &mut entry.node;
    }
    if node.is_sealed() {
        return Err(sealed_error(path, path.len()));
    }
    Ok((node, touched))
}

/// Where [`WorkTree::write_all`] takes a batch apart: the depth of the
/// cell its paths fan out at, and whether it shares the writes out with a
/// helper thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Fan {
    pub depth: usize,
    /// The writes are shared between two threads after one walk down the
    /// list at `depth`.
    pub split: bool,
    /// The subtree is large: when the writes are not split, the walk down
    /// the list (which copies its shared nodes) is.
    pub wide: bool,
}

/// The writes of [`WorkTree::write_fanned`] that are not split: each
/// child's writes (positions `starts[c]..starts[c + 1]` in name order, for
/// the child named `keys[c]`; `order` maps them to batch positions, or is
/// empty when they are the same) as the walk down the list at `node`
/// reaches it (its chunk just copied, still in cache); absent children
/// after, created in name order (the commit's re-cut gives the same list
/// either way). When `wide`, the walk is on two threads, each writing its
/// children.
#[allow(clippy::too_many_arguments)]
fn write_walked(
    node: &mut Node,
    keys: &[&str],
    distinct: &[&Name],
    order: &[usize],
    starts: &[usize],
    mut writes: Vec<(&Path, Value)>,
    depth: usize,
    wide: bool,
) -> Vec<Result<bool, TreeError>> {
    let count = writes.len();
    // Writes and results in name order: the two halves of the walk take
    // two halves of each.
    let mut sorted: Vec<(&Path, Value)> = if order.is_empty() {
        writes
    } else {
        order
            .iter()
            .map(|&w| {
                (
                    writes[w].0,
                    std::mem::replace(&mut writes[w].1, Value::Null),
                )
            })
            .collect()
    };
    let mut done: Vec<Result<bool, TreeError>> = (0..count).map(|_| Ok(false)).collect();
    /// The visitor for children numbered from `first`, whose writes start
    /// at `starts[first]` in `sorted` and `done`.
    fn writer<'s, 'p: 's>(
        first: usize,
        starts: &'s [usize],
        sorted: &'s mut [(&'p Path, Value)],
        done: &'s mut [Result<bool, TreeError>],
        depth: usize,
    ) -> impl FnMut(usize, &mut Entry) + Send + use<'s, 'p> {
        let base = starts[first];
        move |c, entry| {
            for i in starts[c] - base..starts[c + 1] - base {
                let (path, value) = &mut sorted[i];
                let value = std::mem::replace(value, Value::Null);
                done[i] = write_below(entry, path, depth, value);
            }
        }
    }
    let absent = {
        let (sorted, done) = (&mut sorted[..], &mut done[..]);
        let halves = wide.then(|| {
            node.children.each_named_mut_split(keys, |at| {
                let (low_writes, high_writes) = sorted.split_at_mut(starts[at]);
                let (low_done, high_done) = done.split_at_mut(starts[at]);
                (
                    writer(0, starts, low_writes, low_done, depth),
                    writer(at, starts, high_writes, high_done, depth),
                )
            })
        });
        match halves.flatten() {
            Some(absent) => absent,
            None => {
                let mut write = writer(0, starts, sorted, done, depth);
                node.children.each_named_mut(keys, &mut write)
            }
        }
    };
    for c in absent {
        let entry = node.children.entry_mut(distinct[c], true).expect("created");
        writer(0, starts, &mut sorted, &mut done, depth)(c, entry);
    }
    if order.is_empty() {
        return done;
    }
    let mut results: Vec<Result<bool, TreeError>> = (0..count).map(|_| Ok(false)).collect();
    for (&w, result) in order.iter().zip(done) {
        results[w] = result;
    }
    results
}

/// One write of [`WorkTree::write_fanned`] below `entry`, the child it goes
/// through at `depth` of its path.
fn write_below(
    entry: &mut Entry,
    path: &Path,
    depth: usize,
    value: Value,
) -> Result<bool, TreeError> {
    let touched = entry.hash == STALE;
    entry.hash = STALE;
    let (node, touched) = walk_on(&mut entry.node, path, depth + 1, touched)?;
    node.value = Some(value);
    Ok(touched)
}

/// A share of [`WorkTree::write_fanned`]'s writes: (position in the batch,
/// the child it goes through, path, value), in batch order.
type Share<'p> = Vec<(usize, usize, &'p Path, Value)>;

/// Applies `share` to `entries` (the children numbered from `first`).
fn write_share(
    entries: &mut [&mut Entry],
    first: usize,
    share: Share<'_>,
    depth: usize,
) -> Vec<(usize, Result<bool, TreeError>)> {
    share
        .into_iter()
        .map(|(at, child, path, value)| {
            (at, write_below(entries[child - first], path, depth, value))
        })
        .collect()
}

/// The distinct names of a list in name order, as positions in it: what
/// [`CellMut::each_existing_child`] walks by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameOrder(Vec<u32>);

impl NameOrder {
    pub fn of(names: &[Name]) -> Self {
        NameOrder(Children::name_order(names))
    }
}

/// A cell of a [`WorkTree`] reached once from the root, changed in place
/// through relative steps (see [`WorkTree::cell_mut`]): the dossier code
/// changes several cells of one operation without searching `/rt/ops` for
/// each. Every step marks what it touches for rehash; reads through
/// [`CellMut::node`] copy nothing.
pub struct CellMut<'t> {
    node: &'t mut Node,
    changes: &'t mut usize,
}

impl CellMut<'_> {
    /// The cell as it is now.
    pub fn node(&self) -> &Node {
        self.node
    }

    /// Each child named in `names` (any order; repeats count once) that
    /// exists and is not sealed, for mutation, in name order: one walk
    /// down this cell's list instead of a search from its top per name,
    /// each child visited as the walk reaches it (still in cache). Absent
    /// and sealed children are skipped; the number visited is returned.
    /// `order` is [`NameOrder::of`] `names`, which a caller that passes the
    /// same names beat after beat keeps instead of sorting them again.
    pub fn each_existing_child(
        &mut self,
        names: &[Name],
        order: &NameOrder,
        visit: &mut dyn FnMut(CellMut<'_>),
    ) -> Result<usize, TreeError> {
        if self.node.is_sealed() {
            return Err(TreeError::Sealed {
                path: Path::from_names(names.first().cloned().into_iter().collect()),
                sealed_at: Path::from_names(Vec::new()),
            });
        }
        let keys: Vec<&str> = order
            .0
            .iter()
            .map(|&at| names[at as usize].as_str())
            .collect();
        let changes = &mut *self.changes;
        let mut visited = 0;
        let mut unhashed: Vec<&mut Entry> = Vec::with_capacity(HASH_AHEAD);
        self.node.children.each_named_mut(&keys, &mut |_, entry| {
            if entry.node.is_sealed() {
                return;
            }
            entry.hash = STALE;
            *changes += 1;
            visited += 1;
            visit(CellMut {
                node: &mut entry.node,
                changes: &mut *changes,
            });
            unhashed.push(entry);
            if unhashed.len() == HASH_AHEAD {
                hash_now(&mut unhashed);
            }
        });
        hash_now(&mut unhashed);
        Ok(visited)
    }

    /// The child `name` (created when absent), for mutation. Errors name
    /// paths relative to this cell (the caller knows where it is).
    pub fn child(&mut self, name: &Name) -> Result<CellMut<'_>, TreeError> {
        self.child_noting(name).map(|(child, _)| child)
    }

    /// [`CellMut::child`], and whether it was created now.
    fn child_noting(&mut self, name: &Name) -> Result<(CellMut<'_>, bool), TreeError> {
        if self.node.is_sealed() {
            return Err(TreeError::Sealed {
                path: Path::from_names(vec![name.clone()]),
                sealed_at: Path::from_names(Vec::new()),
            });
        }
        *self.changes += 1;
        let (entry, created) = self
            .node
            .children
            .entry_mut_noting(name, true)
            .expect("created");
        entry.hash = STALE;
        let child = CellMut {
            node: &mut entry.node,
            changes: &mut *self.changes,
        };
        Ok((child, created))
    }

    /// The child `name`, as [`CellMut::child`], made an empty log when it
    /// is created here (an existing cell stays as it is): a list that
    /// only grows at the end and shrinks at the front, where an append
    /// costs one hash block and writes its entry in place.
    pub fn log_child(&mut self, name: &Name) -> Result<CellMut<'_>, TreeError> {
        let (child, created) = self.child_noting(name)?;
        if created {
            child.node.children = Children::new_log(hash::log_genesis());
        }
        Ok(child)
    }

    /// Sets the value of child `name`, creating it.
    pub fn write(&mut self, name: &Name, value: Value) -> Result<(), TreeError> {
        let child = self.child(name)?;
        if child.node.is_sealed() {
            return Err(TreeError::Sealed {
                path: Path::from_names(vec![name.clone()]),
                sealed_at: Path::from_names(vec![name.clone()]),
            });
        }
        child.node.value = Some(value);
        Ok(())
    }

    /// Adds a child named by the next index holding `value` (as
    /// [`WorkTree::append`]) and returns a cursor on it.
    pub fn append(&mut self, value: Value) -> Result<CellMut<'_>, TreeError> {
        let name = next_index(self.node);
        let child = self.child(&name)?;
        child.node.value = Some(value);
        Ok(child)
    }

    /// Removes the child `name` and its subtree, if there is one and it
    /// holds no sealed cell.
    pub fn remove_child(&mut self, name: &Name) -> Result<(), TreeError> {
        let Some(child) = self.node.child(name.as_str()) else {
            return Ok(());
        };
        if child.flags & (SEALED | HOLDS_SEALED) != 0 {
            return Err(TreeError::HoldsSealed {
                path: Path::from_names(vec![name.clone()]),
            });
        }
        *self.changes += 1;
        self.node.children.remove(name.as_str());
        Ok(())
    }

    /// Sets this cell's value (the seal rules were checked on the way here).
    pub fn set_value(&mut self, value: Value) {
        self.node.value = Some(value);
    }

    /// As [`WorkTree::append`] followed by [`WorkTree::keep_newest`]`(keep)`,
    /// but the oldest children go first, so the list never grows past
    /// `keep`.
    pub fn append_bounded(&mut self, value: Value, keep: usize) -> Result<CellMut<'_>, TreeError> {
        self.trim_front(keep.max(1) - 1)?;
        self.append(value)
    }

    /// The child `name` (created when absent; for a new name, one that
    /// sorts after every other) in a window of an ordered log that keeps at
    /// least its newest `keep` children: older ones are dropped a whole
    /// chunk at a time (so the window holds fewer than `keep` +
    /// [`hash::NODE_ITEMS_MAX`], about 4 more on average), which leaves
    /// the chunks of the oldest entries untouched until they go; in a log
    /// ([`CellMut::log_child`]), a whole published segment at a time
    /// (fewer than `keep` + 8 once the entries of this batch are
    /// published), which only moves the log's base.
    pub fn push_windowed(&mut self, name: &Name, keep: usize) -> Result<CellMut<'_>, TreeError> {
        // A name after the last (every new history entry) is new without a
        // search; only another name needs one.
        let fresh = match self.node.children.last() {
            None => true,
            Some(last) if last.name < *name => true,
            Some(_) => self.node.child(name.as_str()).is_none(),
        };
        if fresh {
            let excess = (self.node.child_count() + 1).saturating_sub(keep.max(1));
            let whole = self.node.children.whole_chunks_within(excess);
            self.remove_first(whole)?;
        }
        self.child(name)
    }

    /// Removes the first children until at most `keep` remain.
    fn trim_front(&mut self, keep: usize) -> Result<(), TreeError> {
        let excess = self.node.child_count().saturating_sub(keep);
        self.remove_first(excess)
    }

    /// Removes the first `excess` children, unless one of them holds a
    /// sealed cell (then nothing).
    fn remove_first(&mut self, excess: usize) -> Result<(), TreeError> {
        if excess == 0 {
            return Ok(());
        }
        if let Some(name) = held_sealed(self.node, excess) {
            return Err(TreeError::HoldsSealed {
                path: Path::from_names(vec![name.clone()]),
            });
        }
        self.node.children.remove_front(excess);
        Ok(())
    }
}

fn sealed_error(path: &Path, depth: usize) -> TreeError {
    TreeError::Sealed {
        path: path.clone(),
        sealed_at: Path::from_names(path.names()[..depth].to_vec()),
    }
}

/// The hash of a tree computed from scratch, ignoring every cache and every
/// stored chunk: the reference the incremental hash is tested against. It
/// implements the cut rules of `docs/formats.md` on its own.
pub fn full_hash(node: &Node) -> Hash {
    enum Item {
        Inline(u8, Option<Value>),
        Hashed(Hash),
    }
    impl Item {
        fn chunk_item(&self) -> hash::ChunkItem<'_> {
            match self {
                Item::Inline(flags, value) => hash::ChunkItem::Inline {
                    flags: *flags,
                    value: value.as_ref(),
                },
                Item::Hashed(h) => hash::ChunkItem::Hashed(h),
            }
        }
    }
    let mut items: Vec<(Name, Item)> = Vec::new();
    node.for_each_child(&mut |name, child| {
        let item = if is_inline(child) {
            Item::Inline(child.hashed_flags(), child.value().cloned())
        } else {
            Item::Hashed(full_hash(child))
        };
        items.push((name.clone(), item));
    });
    if let Some(base) = node.children.log_base() {
        // A log: the chain from its base through every entry.
        let digest = items.iter().fold(*base, |link, (name, item)| {
            hash::link(&link, name, item.chunk_item())
        });
        return hash::cell(
            node.hashed_flags(),
            node.value(),
            items.len() as u64,
            Some(&digest),
        );
    }
    let digest = (!items.is_empty()).then(|| {
        // Level 0: cut after a name that ends a chunk, or at the cap.
        let mut level: Vec<(Hash, u8)> = Vec::new();
        let mut start = 0;
        for i in 0..items.len() {
            let cut = hash::cut_level(items[i].0.as_str());
            let full = i + 1 - start == hash::NODE_ITEMS_MAX;
            if hash::ends_at(0, cut) || full || i + 1 == items.len() {
                let chunk = hash::chunk(
                    items[start..=i]
                        .iter()
                        .map(|(name, item)| (name, item.chunk_item())),
                );
                level.push((chunk, cut));
                start = i + 1;
            }
        }
        // Level k: cut after a node whose last name ends a level-k group.
        let mut height = 0u8;
        while level.len() > 1 {
            height += 1;
            let mut next = Vec::new();
            let mut start = 0;
            for i in 0..level.len() {
                let cut = level[i].1;
                let full = i + 1 - start == hash::NODE_ITEMS_MAX;
                if hash::ends_at(height as usize, cut) || full || i + 1 == level.len() {
                    let group = hash::group(height, level[start..=i].iter().map(|(h, _)| h));
                    next.push((group, cut));
                    start = i + 1;
                }
            }
            level = next;
        }
        level[0].0
    });
    hash::cell(
        node.hashed_flags(),
        node.value(),
        items.len() as u64,
        digest.as_ref(),
    )
}
