//! The copy-on-write batch that turns one snapshot into the next.

use triomphe::Arc;

use super::hash::{self, Batch, Dest, Hash, Role, STALE};
use super::node::children::{Children, Entry};
use super::node::{is_inline, Node, TreeError, HOLDS_SEALED, SEALED};
use super::snapshot::Snapshot;
use cep_sdk::{Name, Path, Value};

mod cell_mut;
mod fanout;
mod rehash;

pub use cell_mut::{CellMut, NameOrder};
use rehash::*;

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
    pub(in crate::cell) fn node_mut_unchecked(
        &mut self,
        path: &Path,
        create: bool,
    ) -> Option<&mut Node> {
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
    pub(in crate::cell) fn mark_holds_sealed(&mut self, path: &Path) {
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
        debug_assert!(!node.is_sealed(), "{path} written under a seal");
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
    pub(in crate::cell) fn write_all_above(
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

fn sealed_error(path: &Path, depth: usize) -> TreeError {
    TreeError::Sealed {
        path: path.clone(),
        sealed_at: Path::from_names(path.names()[..depth].to_vec()),
    }
}
