//! Cells and the copy-on-write batch that turns one snapshot into the next.

use std::sync::Arc;

use super::children::{Children, Entry};
use super::hash::{self, Hash, STALE};
use super::snapshot::Snapshot;
use cep_sdk::{Name, Path, Value};

const SEALED: u8 = 1;
/// Set on every ancestor of a sealed cell, so a delete can refuse to remove
/// sealed content without scanning the subtree. Derived, so not hashed.
const HOLDS_SEALED: u8 = 2;

/// One cell: an optional value, a sealed flag and ordered, named children.
/// Nodes are shared between snapshots; a commit copies only changed paths.
#[derive(Clone, Default)]
pub struct Node {
    value: Option<Value>,
    flags: u8,
    pub(crate) children: Children,
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
        self.children.find(name).map(|e| e.node.as_ref())
    }

    /// The hash of child `name` as of the last commit.
    pub fn child_hash(&self, name: &str) -> Option<Hash> {
        self.children.find(name).map(|e| e.hash)
    }

    /// The last child in name order.
    pub fn last_child(&self) -> Option<&Node> {
        self.children.last().map(|e| e.node.as_ref())
    }

    /// The first child's name in name order.
    pub fn first_child_name(&self) -> Option<&Name> {
        (self.children.len() > 0).then(|| &self.children.at(0).name)
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

    /// Like [`Node::rehash`], but with `parallel` the first cell with several
    /// stale children (in a flat list) splits them between this thread and
    /// one helper. The result is the same either way.
    fn rehash_top(&mut self, parallel: bool) -> Hash {
        if parallel {
            if let Children::Wide(_) = &self.children {
                self.children
                    .rehash_parallel(&|entries: &mut [Entry]| rehash_entries(entries));
            }
            if let Children::Flat(entries) = &mut self.children {
                let stale = entries.iter().filter(|e| e.hash == STALE).count();
                if stale == 1 && entries.len() <= hash::CHUNK_ENTRIES {
                    // Descend through the single changed child.
                    if let Some(entry) = entries.iter_mut().find(|e| e.hash == STALE) {
                        entry.hash = Arc::make_mut(&mut entry.node).rehash_top(true);
                    }
                } else if stale > 1 {
                    let mid = entries.len() / 2;
                    let (left, right) = entries.split_at_mut(mid);
                    std::thread::scope(|scope| {
                        scope.spawn(|| rehash_entries(left));
                        rehash_entries(right);
                    });
                }
            }
        }
        self.rehash()
    }

    /// Recomputes this cell's hash, rehashing only stale descendants.
    fn rehash(&mut self) -> Hash {
        let digest = self.children.rehash(&mut |entry: &mut Entry| {
            entry.hash = Arc::make_mut(&mut entry.node).rehash();
        });
        let count = self.children.len() as u64;
        hash::cell(
            self.flags & SEALED,
            self.value.as_ref(),
            count,
            digest.as_ref(),
        )
    }
}

/// A batch of mutations on top of a committed snapshot. Unchanged subtrees
/// stay shared with the snapshot; [`WorkTree::commit`] rehashes only what the
/// batch touched and yields the next snapshot.
pub struct WorkTree {
    root: Arc<Node>,
    root_hash: Hash,
    /// Cells changed in this batch (a hint for parallel rehash).
    changes: usize,
}

/// Batches with at least this many changes rehash on two threads: below it
/// the thread start-up costs more than it saves.
pub(crate) const PARALLEL_REHASH_CHANGES_MIN: usize = 256;

impl WorkTree {
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
            let index = node.children.find_or_insert(name);
            let entry = node.children.at_mut(index);
            entry.hash = STALE;
            node = Arc::make_mut(&mut entry.node);
        }
        Some(node)
    }

    /// Marks `path` and its ancestors as holding a sealed cell.
    pub(super) fn mark_holds_sealed(&mut self, path: &Path) {
        let mut node = Arc::make_mut(&mut self.root);
        node.flags |= HOLDS_SEALED;
        for name in path.names() {
            let Ok(index) = node.children.search(name.as_str()) else {
                return;
            };
            node = Arc::make_mut(&mut node.children.at_mut(index).node);
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
        self.node_mut(path)?.value = Some(value);
        Ok(())
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
        let parent = self.node_mut(&parent)?;
        if let Ok(index) = parent.children.search(name.as_str()) {
            parent.children.remove(index);
        }
        Ok(true)
    }

    /// Adds a child under `path` named by the next index (`0000000000`,
    /// `0000000001`, …: one more than the last index-named child) holding
    /// `value`. Returns the new child's name.
    pub fn append(&mut self, path: &Path, value: Value) -> Result<Name, TreeError> {
        let node = self.node_mut(path)?;
        let next = node
            .children
            .last()
            .and_then(|e| e.name.as_str().parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        let name = Name::from_index(next);
        let index = node.children.find_or_insert(&name);
        let entry = node.children.at_mut(index);
        Arc::make_mut(&mut entry.node).value = Some(value);
        Ok(name)
    }

    /// Seals the cell at `path` (creating it when absent): from now on it and
    /// everything below it are immutable.
    pub fn seal(&mut self, path: &Path) -> Result<(), TreeError> {
        self.check_unsealed(path)?;
        self.node_mut(path)?.flags |= SEALED;
        // Mark the ancestors; re-walking is cheap and keeps node_mut simple.
        let mut node = Arc::make_mut(&mut self.root);
        node.flags |= HOLDS_SEALED;
        for name in path.names() {
            let index = node.children.search(name.as_str()).expect("just created");
            node = Arc::make_mut(&mut node.children.at_mut(index).node);
            node.flags |= HOLDS_SEALED;
        }
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
        self.root_hash = STALE;
        let mut node = Arc::make_mut(&mut self.root);
        for (depth, name) in path.names().iter().enumerate() {
            if node.is_sealed() {
                return Err(sealed_error(path, depth));
            }
            let Ok(index) = node.children.search(name.as_str()) else {
                return Ok(None);
            };
            let entry = node.children.at_mut(index);
            entry.hash = STALE;
            node = Arc::make_mut(&mut entry.node);
        }
        if node.is_sealed() {
            return Err(sealed_error(path, path.len()));
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
        for i in 0..excess {
            let entry = node.children.at(i);
            if entry.node.flags & (SEALED | HOLDS_SEALED) != 0 {
                return Err(TreeError::HoldsSealed {
                    path: path.child(entry.name.clone()),
                });
            }
        }
        self.node_mut(path)?.children.remove_front(excess);
        Ok(())
    }

    /// Rehashes what changed and returns the new snapshot for `beat`.
    pub fn commit(mut self, beat: u64) -> Snapshot {
        if self.root_hash == STALE {
            let parallel = self.changes >= PARALLEL_REHASH_CHANGES_MIN;
            self.root_hash = Arc::make_mut(&mut self.root).rehash_top(parallel);
        }
        Snapshot::new(self.root, self.root_hash, beat)
    }
}

/// The node at `path` below `root`, made unique and created when absent,
/// with the path marked stale; refused (before creating anything) when it or
/// an ancestor is sealed.
fn walk_mut<'a>(root: &'a mut Arc<Node>, path: &Path) -> Result<&'a mut Node, TreeError> {
    let mut node = Arc::make_mut(root);
    for (depth, name) in path.names().iter().enumerate() {
        if node.is_sealed() {
            return Err(sealed_error(path, depth));
        }
        let index = node.children.find_or_insert(name);
        let entry = node.children.at_mut(index);
        entry.hash = STALE;
        node = Arc::make_mut(&mut entry.node);
    }
    if node.is_sealed() {
        return Err(sealed_error(path, path.len()));
    }
    Ok(node)
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

    /// The child `name` (created when absent), for mutation. Errors name
    /// paths relative to this cell (the caller knows where it is).
    pub fn child(&mut self, name: &Name) -> Result<CellMut<'_>, TreeError> {
        if self.node.is_sealed() {
            return Err(TreeError::Sealed {
                path: Path::from_names(vec![name.clone()]),
                sealed_at: Path::from_names(Vec::new()),
            });
        }
        *self.changes += 1;
        let index = self.node.children.find_or_insert(name);
        let entry = self.node.children.at_mut(index);
        entry.hash = STALE;
        Ok(CellMut {
            node: Arc::make_mut(&mut entry.node),
            changes: &mut *self.changes,
        })
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
        let next = self
            .node
            .children
            .last()
            .and_then(|e| e.name.as_str().parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        let child = self.child(&Name::from_index(next))?;
        child.node.value = Some(value);
        Ok(child)
    }

    /// As [`WorkTree::append`] followed by [`CellMut::keep_newest`]`(keep)`,
    /// but the oldest children go first, so a full window that was just
    /// copied (a clone has no spare capacity) never grows its list.
    pub fn append_bounded(&mut self, value: Value, keep: usize) -> Result<CellMut<'_>, TreeError> {
        self.trim_front(keep.max(1) - 1)?;
        self.append(value)
    }

    /// Removes the first children until at most `keep` remain.
    fn trim_front(&mut self, keep: usize) -> Result<(), TreeError> {
        let excess = self.node.child_count().saturating_sub(keep);
        for i in 0..excess {
            let entry = self.node.children.at(i);
            if entry.node.flags & (SEALED | HOLDS_SEALED) != 0 {
                return Err(TreeError::HoldsSealed {
                    path: Path::from_names(vec![entry.name.clone()]),
                });
            }
        }
        if excess > 0 {
            self.node.children.remove_front(excess);
        }
        Ok(())
    }
}

pub(crate) fn rehash_entries(entries: &mut [Entry]) {
    for entry in entries.iter_mut().filter(|e| e.hash == STALE) {
        entry.hash = Arc::make_mut(&mut entry.node).rehash();
    }
}

fn sealed_error(path: &Path, depth: usize) -> TreeError {
    TreeError::Sealed {
        path: path.clone(),
        sealed_at: Path::from_names(path.names()[..depth].to_vec()),
    }
}

/// The hash of a tree computed from scratch, ignoring every cache: the
/// reference the incremental hash is tested against.
pub fn full_hash(node: &Node) -> Hash {
    let mut child_hashes: Vec<(Name, Hash)> = Vec::new();
    node.for_each_child(&mut |name, child| child_hashes.push((name.clone(), full_hash(child))));
    let digest = if child_hashes.is_empty() {
        None
    } else {
        let chunk_size = hash::CHUNK_ENTRIES;
        let mut level: Vec<Hash> = child_hashes
            .chunks(chunk_size)
            .map(|c| hash::chunk(c.iter().map(|(n, h)| (n, h))))
            .collect();
        let mut height = 0u8;
        while level.len() > 1 {
            height += 1;
            level = level
                .chunks(chunk_size)
                .map(|g| hash::group(height, g.iter()))
                .collect();
        }
        Some(level[0])
    };
    hash::cell(
        node.flags & SEALED,
        node.value(),
        child_hashes.len() as u64,
        digest.as_ref(),
    )
}
