//! Committed snapshots and the window of recent ones.

use std::collections::VecDeque;
use triomphe::Arc;

use super::hash::{self, Hash};
use super::node::Node;
use cep_sdk::{Name, Path, Value};

/// The committed tree of one beat: immutable, shareable across threads
/// without locks, cloned in O(1).
#[derive(Clone)]
pub struct Snapshot {
    root: Arc<Node>,
    hash: Hash,
    beat: u64,
}

impl Snapshot {
    pub(crate) fn new(root: Arc<Node>, hash: Hash, beat: u64) -> Self {
        Snapshot { root, hash, beat }
    }

    /// The empty tree (the state before beat 0).
    pub fn empty() -> Self {
        let root = Node::default();
        let hash = super::node::full_hash(&root);
        Snapshot::new(Arc::new(root), hash, 0)
    }

    pub fn root(&self) -> &Node {
        &self.root
    }

    pub(crate) fn root_arc(&self) -> &Arc<Node> {
        &self.root
    }

    /// The Merkle state hash of this tree.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// Lowercase hex of [`Snapshot::hash`].
    pub fn hash_hex(&self) -> String {
        hash::hex(&self.hash)
    }

    /// The beat whose commit produced this snapshot.
    pub fn beat(&self) -> u64 {
        self.beat
    }

    pub fn node(&self, path: &Path) -> Option<&Node> {
        self.root.descend(path.names())
    }

    pub fn read(&self, path: &Path) -> Option<&Value> {
        self.node(path)?.value()
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.node(path).is_some()
    }

    pub fn children(&self, path: &Path) -> Vec<Name> {
        self.node(path).map(Node::child_names).unwrap_or_default()
    }

    /// The hash recomputed from scratch (slow; for tests and audits).
    pub fn recompute_hash(&self) -> Hash {
        super::node::full_hash(&self.root)
    }

    /// Renders the subtree at `path` as indented text, one cell per line.
    pub fn render(&self, path: &Path) -> Option<String> {
        fn walk(out: &mut String, name: &str, node: &Node, depth: usize) {
            out.push_str(&"  ".repeat(depth));
            out.push_str(name);
            if let Some(v) = node.value() {
                out.push_str(" = ");
                out.push_str(&v.to_string());
            }
            if node.is_sealed() {
                out.push_str(" [sealed]");
            }
            if node.is_log() {
                out.push_str(" [log]");
            }
            out.push('\n');
            node.for_each_child(&mut |n, c| walk(out, n.as_str(), c, depth + 1));
        }
        let node = self.node(path)?;
        let mut out = String::new();
        walk(&mut out, &path.to_string(), node, 0);
        Some(out)
    }
}

/// The last `capacity` snapshots, oldest first, for `read_at(path, beat)`.
pub struct History {
    snapshots: VecDeque<Snapshot>,
    capacity: usize,
}

impl History {
    /// `capacity` is clamped to at least 1 (the latest snapshot is always
    /// kept).
    pub fn new(capacity: usize) -> Self {
        History {
            snapshots: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Adds the newest snapshot; returns the one that left the window, so
    /// the caller decides where its memory is freed.
    pub fn push(&mut self, snapshot: Snapshot) -> Option<Snapshot> {
        let evicted = if self.snapshots.len() == self.capacity {
            self.snapshots.pop_front()
        } else {
            None
        };
        self.snapshots.push_back(snapshot);
        evicted
    }

    pub fn latest(&self) -> Option<&Snapshot> {
        self.snapshots.back()
    }

    /// The snapshot committed by `beat`, if still retained.
    pub fn at(&self, beat: u64) -> Option<&Snapshot> {
        let first = self.snapshots.front()?.beat();
        let index = usize::try_from(beat.checked_sub(first)?).ok()?;
        self.snapshots.get(index).filter(|s| s.beat() == beat)
    }

    pub fn read_at(&self, path: &Path, beat: u64) -> Option<&Value> {
        self.at(beat)?.read(path)
    }

    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }
}
