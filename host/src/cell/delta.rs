//! What changed between two snapshots, as a list a journal can store and a
//! recovery can apply again.
//!
//! [`diff`] walks both trees together and descends only where the cached
//! hashes differ (whole chunks and groups of children included), so it costs O(changed cells × depth), not the size
//! of the tree. Against [`Snapshot::empty`] it lists the whole tree: that is
//! what a checkpoint holds.
//!
//! [`WorkTree::apply`] replays a change without the seal rules: a change
//! list records what the runtime already decided, sealed cells included.

use super::children::{self, Entry};
use super::node::{Node, TreeError, WorkTree};
use super::snapshot::Snapshot;
use cep_sdk::{Path, Value};

/// One change of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The cell and its whole subtree are gone.
    Remove(Path),
    /// The cell exists (created when absent) with this value and seal.
    /// Its children are listed separately.
    Put {
        path: Path,
        value: Option<Value>,
        sealed: bool,
    },
}

impl Change {
    pub fn path(&self) -> &Path {
        match self {
            Change::Remove(path) | Change::Put { path, .. } => path,
        }
    }
}

/// The changes that turn `old` into `new`, parents before children,
/// children in name order.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Change> {
    let mut out = Vec::new();
    if old.hash() != new.hash() {
        diff_node(old.root(), new.root(), &Path::root(), &mut out);
    }
    out
}

fn put(path: &Path, node: &Node) -> Change {
    Change::Put {
        path: path.clone(),
        value: node.value().cloned(),
        sealed: node.is_sealed(),
    }
}

fn diff_node(old: &Node, new: &Node, path: &Path, out: &mut Vec<Change>) {
    if old.value() != new.value() || old.is_sealed() != new.is_sealed() {
        out.push(put(path, new));
    }
    children::diff(&old.children, &new.children, &mut |x, y| match (x, y) {
        (Some(x), None) => out.push(Change::Remove(path.child(x.name.clone()))),
        (None, Some(y)) => added(y, path, out),
        (Some(x), Some(y)) => diff_node(&x.node, &y.node, &path.child(x.name.clone()), out),
        (None, None) => {}
    });
}

/// Lists a new subtree, parents first.
fn added(entry: &Entry, parent: &Path, out: &mut Vec<Change>) {
    let path = parent.child(entry.name.clone());
    out.push(put(&path, &entry.node));
    entry
        .node
        .children
        .for_each(&mut |child| added(child, &path, out));
}

impl WorkTree {
    /// Applies a recorded change, seals notwithstanding. Applying
    /// [`diff`]`(a, b)` to a tree equal to `a` yields a tree equal to `b`.
    pub fn apply(&mut self, change: &Change) -> Result<(), TreeError> {
        match change {
            Change::Remove(path) => {
                let (Some(parent), Some(name)) = (path.parent(), path.last()) else {
                    return Err(TreeError::DeleteRoot);
                };
                if let Some(node) = self.node_mut_unchecked(&parent, false) {
                    node.children.remove(name.as_str());
                }
            }
            Change::Put {
                path,
                value,
                sealed,
            } => {
                let node = self
                    .node_mut_unchecked(path, true)
                    .expect("created when absent");
                node.set_value(value.clone());
                if *sealed {
                    node.mark_sealed();
                    self.mark_holds_sealed(path);
                }
            }
        }
        Ok(())
    }
}
