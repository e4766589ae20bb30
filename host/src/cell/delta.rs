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

use super::hash::Hash;
use super::node::children::{self, Entry};
use super::node::{Node, TreeError};
use super::snapshot::Snapshot;
use super::work::WorkTree;
use cep_sdk::{Path, Value};

/// One change of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The cell and its whole subtree are gone.
    Remove(Path),
    /// The cell exists (created when absent) with this value and seal.
    /// Its children are listed separately. `log`: the cell is a log, whose
    /// chain starts at this base when the change creates it (a log that
    /// exists already keeps its own, which its trims advance).
    Put {
        path: Path,
        value: Option<Value>,
        sealed: bool,
        log: Option<Hash>,
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
        log: node.children.log_base().copied(),
    }
}

fn diff_node(old: &Node, new: &Node, path: &Path, out: &mut Vec<Change>) {
    // A log that does not follow from the old cell by trims, in-place
    // changes and appends (it became or stopped being a log, or was made
    // again) is listed anew: removes and puts could not rebuild its base.
    let logs = old.is_log() || new.is_log();
    if logs && !path.is_root() && !children::log_continues(&old.children, &new.children) {
        out.push(Change::Remove(path.clone()));
        added(path, new, out);
        return;
    }
    if old.value() != new.value() || old.is_sealed() != new.is_sealed() {
        out.push(put(path, new));
    }
    children::diff(&old.children, &new.children, &mut |x, y| match (x, y) {
        (Some(x), None) => out.push(Change::Remove(path.child(x.name.clone()))),
        (None, Some(y)) => added(&path.child(y.name.clone()), &y.node, out),
        (Some(x), Some(y)) => diff_node(&x.node, &y.node, &path.child(x.name.clone()), out),
        (None, None) => {}
    });
}

/// Lists a new subtree, parents first.
fn added(path: &Path, node: &Node, out: &mut Vec<Change>) {
    out.push(put(path, node));
    node.children
        .for_each(&mut |child: &Entry| added(&path.child(child.name.clone()), &child.node, out));
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
                log,
            } => {
                let node = self
                    .node_mut_unchecked(path, true)
                    .expect("created when absent");
                node.set_value(value.clone());
                match log {
                    Some(base) => node.children.make_log(*base),
                    None => node.children.unlog(),
                }
                if *sealed {
                    node.mark_sealed();
                    self.mark_holds_sealed(path);
                }
            }
        }
        Ok(())
    }
}
