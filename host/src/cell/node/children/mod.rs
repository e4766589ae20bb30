//! A cell's ordered children: a persistent tree of chunks whose shape is
//! exactly the shape of the hash format (`docs/formats.md`).
//!
//! Entries live in *chunks* (level 0) of about 8 entries, chunks in *groups*
//! (level 1) of about 8 chunks, and so on; every node caches its hash. Where
//! a node ends is decided by the names ([`hash::ends_at`]) and a cap
//! ([`NODE_ITEMS_MAX`]), never by positions, so inserting or removing a child
//! changes only the nodes around it: one change copies and rehashes a chunk
//! and one node per level.
//!
//! During a batch, inserts and removes keep the tree sorted and searchable
//! but may leave it cut in the wrong places (a chunk grown past the cap, a
//! cut name in the middle of a chunk, a chunk that no longer ends on a cut).
//! [`Children::recut`] re-cuts only the nodes marked `reshaped`, reusing
//! every untouched subtree as it is; [`Children::hash_jobs`] then hands
//! what changed to the commit's hash batches, one level at a time.
//!
//! Must not touch: what the children are (the caller decides); values and
//! seals of the cells themselves ([`Node`]).

use triomphe::Arc;

use super::{is_inline, Node};
use crate::cell::hash::{self, Batch, ChunkItem, Dest, Hash, INLINE, NODE_ITEMS_MAX, STALE};
use cep_sdk::Name;

mod build;
#[cfg(test)]
mod debug;
mod diff;
pub(in crate::cell) mod halves;
mod hashing;
mod log;
mod search;
mod trim;

use build::*;
#[cfg(test)]
pub(crate) use debug::*;
pub(crate) use diff::{diff, log_continues};
pub(in crate::cell) use halves::both_halves;
use halves::*;
pub(crate) use log::Log;
#[cfg(test)]
pub(crate) use log::SEGMENT_SLOTS;
pub(crate) use search::SortKey;
use search::*;

/// Deepest chunk tree a list can have (levels decided by names, then caps).
const HEIGHT_MAX: usize = 64;

/// Items an open chunk (or a group) may reach during a batch before an
/// insert splits it in two, so that inserts in any order cost O(log n)
/// until the commit re-cuts the list.
const OPEN_ITEMS_MAX: usize = 2 * NODE_ITEMS_MAX;

/// One child: its name, its cached hash and the cell itself, stored in place.
#[derive(Clone)]
pub(crate) struct Entry {
    pub name: Name,
    /// `name`'s sort key, so a search compares integers.
    key: SortKey,
    /// The child's cell hash; [`INLINE`] when it is hashed in place in the
    /// chunk; [`STALE`] when it changed in this batch.
    pub hash: Hash,
    pub node: Node,
}

impl Entry {
    pub fn new(name: Name) -> Self {
        let node = Node {
            cut: hash::cut_level(name.as_str()),
            ..Node::default()
        };
        Entry {
            key: SortKey::of(name.as_str()),
            name,
            hash: STALE,
            node,
        }
    }

    fn cut(&self) -> u8 {
        self.node.cut
    }

    pub(in crate::cell) fn item(&self) -> ChunkItem<'_> {
        debug_assert!(self.hash != STALE, "entry {} hashed while stale", self.name);
        if self.hash == INLINE {
            ChunkItem::Inline {
                flags: self.node.hashed_flags(),
                value: self.node.value(),
            }
        } else {
            ChunkItem::Hashed(&self.hash)
        }
    }

    /// Moves the entry out of `slot`, leaving an empty cell of the same name.
    fn take(slot: &mut Entry) -> Entry {
        Entry {
            name: slot.name.clone(),
            key: slot.key,
            hash: slot.hash,
            node: std::mem::take(&mut slot.node),
        }
    }
}

/// The children of one cell: the root node of its chunk tree (none: no
/// allocation at all). The root's own digest is not kept; the cell's hash,
/// cached by its parent, is.
#[derive(Clone, Default)]
pub(crate) struct Children(Option<Link>);

/// A node of the chunk tree, one allocation each.
#[derive(Clone)]
enum Link {
    /// Level 0: up to [`NODE_ITEMS_MAX`] entries.
    Chunk(Arc<[Entry]>),
    /// Level k: up to [`NODE_ITEMS_MAX`] level-(k-1) nodes.
    Group(Arc<[Kid]>),
    /// A chunk that took several inserts or removes in this batch, until
    /// the commit re-cuts it. Never in a committed snapshot. Boxed so that a
    /// link (and so every cell) stays 8 bytes smaller.
    #[allow(clippy::box_collection)]
    Open(Box<Vec<Entry>>),
    /// The whole list of a log cell (only ever the root): entries in
    /// append order, hashed as a chain (`log.rs`).
    Log(Arc<Log>),
}

/// A node as its parent group holds it, with what the parent needs to know
/// about it without following the link.
#[derive(Clone)]
struct Kid {
    /// The first name below the kid, so a search descends once. During a
    /// batch it may be a name removed since: still a correct lower bound,
    /// and the re-cut at commit makes it exact again.
    first: Name,
    /// `first`'s sort key.
    first_key: SortKey,
    /// [`STALE`] when something below changed in this batch.
    hash: Hash,
    /// Entries below.
    len: u32,
    /// The cut level of the last name below (exact unless `reshaped`).
    last_cut: u8,
    /// Entries were inserted or removed below since the last re-cut.
    reshaped: bool,
    link: Link,
}

/// Copy-on-write of a shared node clones every item, and an item with
/// children bumps the reference count of its child node: a locked
/// increment on a line of another allocation, usually not in cache, and
/// x86 runs locked increments one after another, each waiting for its
/// line. Reading every count first (plain loads, which the CPU overlaps)
/// brings the lines in together: the commit of 1,000 writes on a 1M-cell
/// tree takes ≈ 38 % less time with it (docs/decisions.md).
trait Links {
    fn touch_links(&self);
}

/// Reads the reference count of `arc`, to bring its line into cache.
#[inline(always)]
fn touch_count<T: ?Sized>(arc: &Arc<T>) {
    std::hint::black_box(Arc::count(arc));
}

impl Links for Link {
    #[inline(always)]
    fn touch_links(&self) {
        match self {
            Link::Chunk(e) => touch_count(e),
            Link::Group(k) => touch_count(k),
            Link::Log(log) => touch_count(log),
            Link::Open(_) => {}
        }
    }
}

impl Links for Entry {
    #[inline(always)]
    fn touch_links(&self) {
        if let Some(link) = &self.node.children.0 {
            link.touch_links();
        }
    }
}

impl Links for Kid {
    #[inline(always)]
    fn touch_links(&self) {
        self.link.touch_links();
    }
}

/// The node made unique for mutation: copied when shared, its items'
/// counts read first ([`Links`]). The check is a
/// plain load (`triomphe::Arc` has no weak count); `std`'s `make_mut`
/// spends a compare-and-swap on every call, shared or not, and a write
/// takes one per level it descends.
fn own<T: Links + Clone>(node: &mut Arc<[T]>) -> &mut [T] {
    if !node.is_unique() {
        node.iter().for_each(Links::touch_links);
        *node = node.iter().cloned().collect();
    }
    Arc::get_mut(node).expect("unique: checked, or just copied")
}

impl Kid {
    /// Moves the kid out of `slot` (its link replaced by an empty chunk).
    fn take(slot: &mut Kid) -> Kid {
        Kid {
            first: slot.first.clone(),
            first_key: slot.first_key,
            hash: slot.hash,
            len: slot.len,
            last_cut: slot.last_cut,
            reshaped: slot.reshaped,
            link: Link::take(&mut slot.link),
        }
    }

    /// The kids of a group, moved out when the group is not shared (then
    /// no open chunk below is copied), cloned otherwise.
    fn drain(mut kids: Arc<[Kid]>) -> Vec<Kid> {
        match Arc::get_mut(&mut kids) {
            Some(own) => own.iter_mut().map(Kid::take).collect(),
            None => {
                kids.iter().for_each(Links::touch_links);
                kids.to_vec()
            }
        }
    }

    /// A finished chunk, to be hashed.
    fn chunk(entries: Arc<[Entry]>) -> Self {
        Kid {
            first: entries[0].name.clone(),
            first_key: entries[0].key,
            hash: STALE,
            len: entries.len() as u32,
            last_cut: entries[entries.len() - 1].cut(),
            reshaped: false,
            link: Link::Chunk(entries),
        }
    }

    /// A finished group, to be hashed.
    fn group(kids: Arc<[Kid]>) -> Self {
        Kid {
            first: kids[0].first.clone(),
            first_key: kids[0].first_key,
            hash: STALE,
            len: kids.iter().map(|k| k.len).sum(),
            last_cut: kids[kids.len() - 1].last_cut,
            reshaped: false,
            link: Link::Group(kids),
        }
    }

    /// An unfinished node, to be re-cut at commit.
    fn pending(link: Link) -> Self {
        Kid {
            first: link.first().name.clone(),
            first_key: link.first().key,
            hash: STALE,
            len: link.len() as u32,
            last_cut: link.last().cut(),
            reshaped: true,
            link,
        }
    }
}

impl Link {
    fn len(&self) -> usize {
        match self {
            Link::Chunk(e) => e.len(),
            Link::Open(v) => v.len(),
            Link::Group(kids) => kids.iter().map(|k| k.len as usize).sum(),
            Link::Log(log) => log.len(),
        }
    }

    /// Levels below this node (0 for a chunk). Every chunk of a list is at
    /// the same depth.
    fn height(&self) -> usize {
        match self {
            Link::Chunk(_) | Link::Open(_) | Link::Log(_) => 0,
            Link::Group(kids) => 1 + kids[0].link.height(),
        }
    }

    /// Whether entries were inserted or removed below (for the root, which
    /// has no [`Kid`] to say so).
    fn reshaped(&self) -> bool {
        match self {
            Link::Chunk(_) | Link::Log(_) => false,
            Link::Open(_) => true,
            Link::Group(kids) => kids.iter().any(|k| k.reshaped),
        }
    }

    /// Nodes in a tree are never empty: removing the last entry of a node
    /// removes the node.
    fn first(&self) -> &Entry {
        match self {
            Link::Chunk(e) => &e[0],
            Link::Open(v) => &v[0],
            Link::Group(kids) => kids[0].link.first(),
            Link::Log(log) => log.entry(0),
        }
    }

    fn last(&self) -> &Entry {
        match self {
            Link::Chunk(e) => &e[e.len() - 1],
            Link::Open(v) => &v[v.len() - 1],
            Link::Group(kids) => kids[kids.len() - 1].link.last(),
            Link::Log(log) => log.last().expect("nodes are never empty"),
        }
    }

    fn entries(&self) -> &[Entry] {
        match self {
            Link::Chunk(e) => e,
            Link::Open(v) => v,
            Link::Group(_) | Link::Log(_) => &[],
        }
    }

    fn for_each<'a>(&'a self, f: &mut dyn FnMut(&'a Entry)) {
        match self {
            Link::Group(kids) => kids.iter().for_each(|k| k.link.for_each(f)),
            Link::Log(log) => log.for_each(f),
            chunk => chunk.entries().iter().for_each(f),
        }
    }

    /// The entries of a chunk, opened for inserts and removes (moved out of
    /// an unshared chunk, copied out of a shared one with room for one more).
    fn open(&mut self) -> &mut Vec<Entry> {
        if let Link::Chunk(entries) = self {
            let open = match Arc::get_mut(entries) {
                Some(own) => own.iter_mut().map(Entry::take).collect(),
                None => {
                    entries.iter().for_each(Links::touch_links);
                    let mut copy = Vec::with_capacity(entries.len() + 1);
                    copy.extend_from_slice(entries);
                    copy
                }
            };
            *self = Link::Open(Box::new(open));
        }
        match self {
            Link::Open(v) => v,
            _ => unreachable!("only chunks open"),
        }
    }

    /// Replaces a shared chunk by `edit` of its entries in one new
    /// allocation; opens an unshared one. Either way the chunk ends up
    /// holding the edited entries. Returns whether it is now empty.
    fn edit(&mut self, edit: Edit) -> bool {
        if let Link::Chunk(entries) = self {
            if Arc::get_mut(entries).is_none() {
                entries.iter().for_each(Links::touch_links);
                let rebuilt: Arc<[Entry]> = match edit {
                    Edit::Insert(i, entry) => Arc::from_header_and_iter(
                        (),
                        Spliced {
                            items: entries,
                            at: i,
                            inserted: Some(entry),
                            next: 0,
                        },
                    )
                    .into(),
                    Edit::Remove(i) => entries[..i]
                        .iter()
                        .chain(&entries[i + 1..])
                        .cloned()
                        .collect(),
                    Edit::RemoveFront(n) => entries[n..].iter().cloned().collect(),
                };
                let empty = rebuilt.is_empty();
                *self = Link::Chunk(rebuilt);
                return empty;
            }
        }
        let open = self.open();
        match edit {
            Edit::Insert(i, entry) => open.insert(i, entry),
            Edit::Remove(i) => drop(open.remove(i)),
            Edit::RemoveFront(n) => drop(open.drain(..n)),
        }
        open.is_empty()
    }

    /// The entry at `i` of a chunk, for mutation.
    fn entry_mut(&mut self, i: usize) -> &mut Entry {
        match self {
            Link::Chunk(e) => &mut own(e)[i],
            Link::Open(v) => &mut v[i],
            Link::Group(_) | Link::Log(_) => unreachable!("entries live in chunks"),
        }
    }

    /// Takes the link out of `slot`, leaving an empty chunk (shared, no
    /// allocation) in its place.
    fn take(slot: &mut Link) -> Link {
        static EMPTY: std::sync::LazyLock<Arc<[Entry]>> =
            std::sync::LazyLock::new(|| Arc::from(Vec::new()));
        std::mem::replace(slot, Link::Chunk(EMPTY.clone()))
    }

    fn same_node(&self, other: &Link) -> bool {
        match (self, other) {
            (Link::Chunk(a), Link::Chunk(b)) => Arc::ptr_eq(a, b),
            (Link::Group(a), Link::Group(b)) => Arc::ptr_eq(a, b),
            (Link::Log(a), Link::Log(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The items of a shared slice with one new item at `at`, cloned in
/// order: an exact-size iterator, so a copy-on-write insert builds its new
/// chunk in one pass (a `Chain` of three iterators tested which part it was
/// in for every item, ~250 instructions per entry copied).
struct Spliced<'a, T> {
    items: &'a [T],
    at: usize,
    inserted: Option<T>,
    next: usize,
}

impl<T: Clone> Iterator for Spliced<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.next == self.at {
            if let Some(item) = self.inserted.take() {
                return Some(item);
            }
        }
        let item = self.items.get(self.next)?.clone();
        self.next += 1;
        Some(item)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.items.len() - self.next + usize::from(self.inserted.is_some());
        (left, Some(left))
    }
}

impl<T: Clone> ExactSizeIterator for Spliced<'_, T> {}

/// A structural change to one chunk.
enum Edit {
    Insert(usize, Entry),
    Remove(usize),
    RemoveFront(usize),
}

/// Whether a node must be split before it takes another item.
fn crowded(link: &Link) -> bool {
    match link {
        Link::Open(v) => v.len() >= OPEN_ITEMS_MAX,
        Link::Group(kids) => kids.len() >= OPEN_ITEMS_MAX,
        Link::Chunk(e) => e.len() >= OPEN_ITEMS_MAX,
        Link::Log(_) => unreachable!("a log is not a chunk tree"),
    }
}

/// Splits a crowded node into two halves of the same level, as kids to
/// re-cut at commit.
fn halves(link: Link) -> [Kid; 2] {
    match link {
        Link::Group(kids) => {
            let mut left = Kid::drain(kids);
            let right = left.split_off(left.len() / 2);
            [
                Kid::pending(Link::Group(Arc::from(left))),
                Kid::pending(Link::Group(Arc::from(right))),
            ]
        }
        mut chunk => {
            let mut left = std::mem::take(chunk.open());
            let right = left.split_off(left.len() / 2);
            [
                Kid::pending(Link::Open(Box::new(left))),
                Kid::pending(Link::Open(Box::new(right))),
            ]
        }
    }
}

impl Children {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, Link::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No list at all: no children and not a log (an empty log still has
    /// a base to hash).
    pub fn is_bare(&self) -> bool {
        self.0.is_none()
    }

    pub fn find(&self, name: &str) -> Option<&Entry> {
        if let Some(log) = self.log() {
            return log.search(name).ok().map(|i| log.entry(i));
        }
        let mut link = self.0.as_ref()?;
        let needle = &Needle::new(name);
        loop {
            match link {
                Link::Group(kids) => link = &kids[kid_for(kids, needle)].link,
                chunk => {
                    let entries = chunk.entries();
                    return entry_search(entries, needle).ok().map(|i| &entries[i]);
                }
            }
        }
    }

    pub fn first(&self) -> Option<&Entry> {
        if self.is_empty() {
            return None;
        }
        self.0.as_ref().map(Link::first)
    }

    pub fn last(&self) -> Option<&Entry> {
        if self.is_empty() {
            return None;
        }
        self.0.as_ref().map(Link::last)
    }

    /// Calls `f` on every entry in name order.
    pub fn for_each<'a>(&'a self, f: &mut dyn FnMut(&'a Entry)) {
        if let Some(link) = &self.0 {
            link.for_each(f);
        }
    }

    fn route(&self, name: &str) -> Option<Route> {
        let mut link = self.0.as_ref()?;
        let needle = &Needle::new(name);
        let mut route = Route {
            kids: [0; HEIGHT_MAX],
            depth: 0,
            at: Err(0),
            crowded: crowded(link),
        };
        loop {
            match link {
                Link::Group(kids) => {
                    let k = kid_for(kids, needle);
                    route.kids[route.depth] = k as u8;
                    route.depth += 1;
                    link = &kids[k].link;
                    route.crowded |= crowded(link);
                }
                chunk => {
                    route.at = entry_search(chunk.entries(), needle);
                    return Some(route);
                }
            }
        }
    }

    /// The entry `name`, for mutation (inserted empty when absent and
    /// `create`). The nodes above it are copied if shared and marked for
    /// rehash; a miss without `create` changes nothing.
    /// In a log, a new name must sort after every other: an insert
    /// anywhere else makes it a plain list first ([`Children::unlog`]).
    pub fn entry_mut(&mut self, name: &Name, create: bool) -> Option<&mut Entry> {
        self.entry_mut_noting(name, create).map(|(entry, _)| entry)
    }

    /// [`Children::entry_mut`], and whether the entry was inserted now.
    pub fn entry_mut_noting(&mut self, name: &Name, create: bool) -> Option<(&mut Entry, bool)> {
        if let Some(log) = self.log() {
            // Appends and changes of the newest entry first, unsearched.
            let at = match log.last() {
                Some(last) if last.name < *name => Err(log.len()),
                Some(last) if last.name == *name => Ok(log.len() - 1),
                _ => log.search(name.as_str()),
            };
            match at {
                Ok(i) => return Some((self.log_mut().expect("a log").entry_mut(i), false)),
                Err(i) if i == log.len() => {
                    return create
                        .then(|| (self.log_mut().expect("a log").append(name.clone()), true))
                }
                Err(_) if !create => return None,
                Err(_) => self.unlog(),
            }
        }
        // A read-only search first, so a miss copies nothing and an insert
        // can count itself into every group on the way down.
        let Some(route) = self.route(name.as_str()) else {
            if !create {
                return None;
            }
            let root = self
                .0
                .insert(Link::Open(Box::new(vec![Entry::new(name.clone())])));
            return root.open().first_mut().map(|entry| (entry, true));
        };
        let insert = route.at.is_err();
        if insert && !create {
            return None;
        }
        let route = if insert && route.crowded {
            self.make_room(name.as_str());
            self.route(name.as_str()).expect("not empty")
        } else {
            route
        };
        let mut link = self.0.as_mut().expect("routed, so not empty");
        for &k in &route.kids[..route.depth] {
            let Link::Group(kids) = link else {
                unreachable!("the route descends through groups")
            };
            let kid = &mut own(kids)[k as usize];
            kid.hash = STALE;
            if insert {
                kid.len += 1;
                kid.reshaped = true;
            }
            link = &mut kid.link;
        }
        match route.at {
            Ok(i) => Some((link.entry_mut(i), false)),
            Err(i) => {
                if route.depth == 0 {
                    // The root says it was reshaped only by being open.
                    link.open().insert(i, Entry::new(name.clone()));
                } else {
                    link.edit(Edit::Insert(i, Entry::new(name.clone())));
                }
                Some((link.entry_mut(i), true))
            }
        }
    }

    /// The entries named `names` (distinct, in name order), for mutation,
    /// all at once so that different threads can change different ones;
    /// the nodes above them are copied if shared and marked for rehash, as
    /// [`Children::entry_mut`] does for one. `Err` with the names that are
    /// absent (positions in `names`) when there are any; create them and
    /// ask again.
    pub fn entries_mut<'a>(&'a mut self, names: &[&str]) -> Result<Vec<&'a mut Entry>, Vec<usize>> {
        let mut found = Vec::with_capacity(names.len());
        let absent = self.each_named_mut(names, &mut |_, entry| found.push(entry));
        if absent.is_empty() {
            Ok(found)
        } else {
            Err(absent)
        }
    }

    /// The positions in `names` of its distinct names, in name order (as
    /// [`Children::each_named_mut`] takes them): sorted by sort key, names
    /// compared only on a tie.
    pub fn name_order(names: &[Name]) -> Vec<u32> {
        let mut keyed: Vec<(u128, &str, u32)> = names
            .iter()
            .zip(0..)
            .map(|(name, at)| (SortKey::of(name.as_str()).wide(), name.as_str(), at))
            .collect();
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        keyed.dedup_by(|a, b| a.1 == b.1);
        keyed.into_iter().map(|(_, _, at)| at).collect()
    }

    /// Calls `visit(i, entry)` for the entry named `names[i]` (distinct, in
    /// name order), in name order, as soon as the walk down the list
    /// reaches it (so a change made there finds the entry still in
    /// cache); the nodes above are copied if shared and marked for rehash,
    /// as [`Children::entry_mut`] does for one. Returns the positions of
    /// the names that are absent (no call for them).
    pub fn each_named_mut<'a>(
        &'a mut self,
        names: &[&str],
        visit: &mut dyn FnMut(usize, &'a mut Entry),
    ) -> Vec<usize> {
        if self.is_log() {
            return self.log_mut().expect("a log").each_named_mut(names, visit);
        }
        let mut absent = Vec::new();
        match self.0.as_mut() {
            Some(root) => {
                let needles: Vec<Needle> = names.iter().map(|name| Needle::new(name)).collect();
                visit_named(root, &needles, 0, visit, &mut absent);
            }
            None => absent.extend(0..names.len()),
        }
        absent
    }

    /// [`Children::each_named_mut`] on two threads, when the list is a
    /// group of two or more nodes with names in more than one: the top
    /// nodes are split where the names cross their middle, at the first
    /// name `at` of a node, and `prepare(at)` gives a visitor for the names
    /// before `at` (this thread) and one for the rest (a helper). Each
    /// half copies the shared nodes it walks through, so the copying is
    /// shared too. `None` (and `prepare` not called): not split.
    pub fn each_named_mut_split<'a, L, H>(
        &'a mut self,
        names: &[&str],
        prepare: impl FnOnce(usize) -> (L, H),
    ) -> Option<Vec<usize>>
    where
        L: FnMut(usize, &'a mut Entry) + Send,
        H: FnMut(usize, &'a mut Entry) + Send,
    {
        let Some(Link::Group(kids)) = self.0.as_mut() else {
            return None;
        };
        let needles: Vec<Needle> = names.iter().map(|name| Needle::new(name)).collect();
        let ends = kid_ends(kids, &needles);
        // The first node whose names start at or after the middle name.
        let half = needles.len() / 2;
        let split = ends.partition_point(|&end| end <= half).max(1);
        let at = ends[split - 1];
        if split >= kids.len() || at == 0 || at == needles.len() {
            return None;
        }
        let (mut low, mut high) = prepare(at);
        let (low_kids, high_kids) = own(kids).split_at_mut(split);
        let (low_ends, high_ends) = ends.split_at(split);
        let high_ends: Vec<usize> = high_ends.iter().map(|end| end - at).collect();
        let (low_needles, high_needles) = needles.split_at(at);
        let mut absent = Vec::new();
        let (_, high_absent) = both_halves(
            || visit_kids(low_kids, low_ends, low_needles, 0, &mut low, &mut absent),
            move || {
                let mut absent = Vec::new();
                visit_kids(
                    high_kids,
                    &high_ends,
                    high_needles,
                    at,
                    &mut high,
                    &mut absent,
                );
                absent
            },
        );
        absent.extend(high_absent);
        Some(absent)
    }

    /// Splits every crowded node on the way to `name`, the root first (a
    /// root split makes the list one level higher).
    fn make_room(&mut self, name: &str) {
        let Some(root) = self.0.as_mut() else { return };
        let needle = &Needle::new(name);
        if crowded(root) {
            let [left, right] = halves(Link::take(root));
            *root = Link::Group(Arc::from(vec![left, right]));
        }
        let mut link = root;
        while let Link::Group(kids) = link {
            let k = kid_for(kids, needle);
            if crowded(&kids[k].link) {
                let mut all = Kid::drain(std::mem::replace(kids, Arc::from(Vec::new())));
                let split = all.remove(k);
                all.splice(k..k, halves(split.link));
                *kids = Arc::from(all);
            }
            let k = kid_for(kids, needle);
            let kid = &mut own(kids)[k];
            kid.hash = STALE;
            kid.reshaped = true;
            link = &mut kid.link;
        }
    }

    /// Removes the entry `name`; false (and nothing changed) when absent.
    /// A log's first entry goes as by [`Children::remove_front`]; any
    /// other makes the log a plain list first ([`Children::unlog`]).
    pub fn remove(&mut self, name: &str) -> bool {
        if let Some(log) = self.log() {
            match log.search(name) {
                Err(_) => return false,
                Ok(0) => {
                    self.remove_front(1);
                    return true;
                }
                Ok(_) => self.unlog(),
            }
        }
        let Some(route) = self.route(name) else {
            return false;
        };
        let Ok(at) = route.at else {
            return false;
        };
        /// Whether `link` is now empty.
        fn remove_at(link: &mut Link, route: &[u8], at: usize, root: bool) -> bool {
            let Link::Group(kids) = link else {
                if root {
                    let open = link.open();
                    open.remove(at);
                    return open.is_empty();
                }
                return link.edit(Edit::Remove(at));
            };
            let k = route[0] as usize;
            let kid = &mut own(kids)[k];
            kid.hash = STALE;
            kid.reshaped = true;
            kid.len -= 1;
            if remove_at(&mut kid.link, &route[1..], at, false) {
                let mut rest = Kid::drain(std::mem::replace(kids, Arc::from(Vec::new())));
                rest.remove(k);
                // The group lost a node: it must be re-cut at commit, and
                // a root group says so only through its kids.
                if let Some(next) = rest.get_mut(k.saturating_sub(1)) {
                    next.reshaped = true;
                }
                *kids = Arc::from(rest);
            }
            kids.is_empty()
        }
        let root = self.0.as_mut().expect("routed, so not empty");
        if remove_at(root, &route.kids[..route.depth], at, true) {
            self.0 = None;
        }
        true
    }
}
