//! Cells: a value, a sealed flag and ordered children (`children/`), stored
//! in place in the parent's list; and the from-scratch reference hash.

pub(crate) mod children;

use self::children::Children;
use super::hash::{self, Hash};
use cep_sdk::{Name, Path, Value};

pub(super) const SEALED: u8 = 1;
/// Set on every ancestor of a sealed cell, so a delete can refuse to remove
/// sealed content without scanning the subtree. Derived, so not hashed.
pub(super) const HOLDS_SEALED: u8 = 2;

/// One cell: an optional value, a sealed flag and ordered, named children.
/// A cell is stored in place in its parent's list of children; the lists
/// are shared between snapshots, and a commit copies only changed paths.
#[derive(Clone, Default)]
pub struct Node {
    pub(super) value: Option<Value>,
    pub(crate) children: Children,
    pub(super) flags: u8,
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
