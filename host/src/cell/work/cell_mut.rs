//! A cell reached once from the root and changed in place, and the name
//! order its children are walked in.

use super::*;

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
    pub(super) node: &'t mut Node,
    pub(super) changes: &'t mut usize,
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
    pub(super) fn child_noting(&mut self, name: &Name) -> Result<(CellMut<'_>, bool), TreeError> {
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
    pub(super) fn trim_front(&mut self, keep: usize) -> Result<(), TreeError> {
        let excess = self.node.child_count().saturating_sub(keep);
        self.remove_first(excess)
    }

    /// Removes the first `excess` children, unless one of them holds a
    /// sealed cell (then nothing).
    pub(super) fn remove_first(&mut self, excess: usize) -> Result<(), TreeError> {
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
