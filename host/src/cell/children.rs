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

use super::hash::{self, Batch, ChunkItem, Dest, Hash, INLINE, NODE_ITEMS_MAX, STALE};
use super::log::Log;
use super::node::{is_inline, Node};
use cep_sdk::Name;

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
        let mut node = Node::default();
        node.cut = hash::cut_level(name.as_str());
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

    pub(super) fn item(&self) -> ChunkItem<'_> {
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

/// The node made unique for mutation: copied when shared. The check is a
/// plain load (`triomphe::Arc` has no weak count); `std`'s `make_mut`
/// spends a compare-and-swap on every call, shared or not, and a write
/// takes one per level it descends.
fn own<T: Clone>(node: &mut Arc<[T]>) -> &mut [T] {
    if !node.is_unique() {
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
            None => kids.to_vec(),
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

/// A name's sort key: its first 16 bytes as two big-endian words,
/// zero-padded. Names hold no NUL byte, so comparing keys orders names as
/// `str` does as far as the keys reach, and names shorter than 16 bytes
/// are equal exactly when their keys are. A search compares keys (two
/// integer comparisons, no call) and looks at the names only on a tie.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SortKey([u64; 2]);

impl SortKey {
    pub fn of(name: &str) -> SortKey {
        /// Up to 8 bytes as a big-endian word, zero-padded.
        fn word(bytes: &[u8]) -> u64 {
            match bytes.first_chunk::<8>() {
                Some(eight) => u64::from_be_bytes(*eight),
                None => bytes
                    .iter()
                    .enumerate()
                    .fold(0, |w, (i, &b)| w | u64::from(b) << (56 - 8 * i)),
            }
        }
        let bytes = name.as_bytes();
        SortKey([word(bytes), word(bytes.get(8..).unwrap_or_default())])
    }

    /// The key as one number (kept as two words so that it does not
    /// raise the alignment of the entries that hold it).
    pub(super) fn wide(self) -> u128 {
        u128::from(self.0[0]) << 64 | u128::from(self.0[1])
    }
}

/// A name being searched for, with its sort key.
struct Needle<'a> {
    key: SortKey,
    name: &'a str,
}

impl<'a> Needle<'a> {
    fn new(name: &'a str) -> Self {
        Needle {
            key: SortKey::of(name),
            name,
        }
    }
}

/// Where `needle` is among `len` names in order: `Ok` at its position,
/// `Err` with the position it would take. Compares keys only, unless the
/// needle is 16 bytes or longer and names share its key (then their order
/// is decided by the names). Halves the range down to a few items and
/// scans the rest: chunks hold about 8, and a short scan costs less than
/// the branches it replaces.
#[inline(always)]
fn search_by<'a>(
    len: usize,
    needle: &Needle,
    key_at: impl Fn(usize) -> SortKey,
    name_at: impl Fn(usize) -> &'a str,
) -> Result<usize, usize> {
    let key = needle.key.wide();
    // Every item before `lo` sorts before the key, none from `hi` on.
    let (mut lo, mut hi) = (0, len);
    while hi - lo > 8 {
        let mid = lo + (hi - lo) / 2;
        if key_at(mid).wide() < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    while lo < hi && key_at(lo).wide() < key {
        lo += 1;
    }
    if needle.name.len() < 16 {
        // The key ends in a zero byte, so only the needle itself has it.
        return if lo < len && key_at(lo).wide() == key {
            Ok(lo)
        } else {
            Err(lo)
        };
    }
    while lo < len && key_at(lo).wide() == key {
        match name_at(lo).cmp(needle.name) {
            std::cmp::Ordering::Less => lo += 1,
            std::cmp::Ordering::Equal => return Ok(lo),
            std::cmp::Ordering::Greater => break,
        }
    }
    Err(lo)
}

/// The kid whose range holds `name`: the last one starting at or before it,
/// or the first.
fn kid_for(kids: &[Kid], needle: &Needle) -> usize {
    match search_by(
        kids.len(),
        needle,
        |i| kids[i].first_key,
        |i| kids[i].first.as_str(),
    ) {
        Ok(k) => k,
        Err(k) => k.saturating_sub(1),
    }
}

fn entry_search(entries: &[Entry], needle: &Needle) -> Result<usize, usize> {
    search_by(
        entries.len(),
        needle,
        |i| entries[i].key,
        |i| entries[i].name.as_str(),
    )
}

/// Where a name is, or would go: the kid taken at each level, then the
/// chunk position.
struct Route {
    kids: [u8; HEIGHT_MAX],
    depth: usize,
    at: Result<usize, usize>,
    /// A node on the way holds [`OPEN_ITEMS_MAX`] items: an insert must
    /// split it first.
    crowded: bool,
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
    /// The children of a new log cell: none yet, the chain starting at
    /// `base`.
    pub fn new_log(base: Hash) -> Self {
        Children(Some(Link::Log(Arc::new(Log::new(base)))))
    }

    pub fn is_log(&self) -> bool {
        matches!(self.0, Some(Link::Log(_)))
    }

    fn log(&self) -> Option<&Log> {
        match &self.0 {
            Some(Link::Log(log)) => Some(log),
            _ => None,
        }
    }

    /// The log, made unique for mutation (its segments stay shared).
    fn log_mut(&mut self) -> Option<&mut Log> {
        match &mut self.0 {
            Some(Link::Log(log)) => Some(Arc::make_mut(log)),
            _ => None,
        }
    }

    /// A log's base: the link before its first retained entry.
    pub fn log_base(&self) -> Option<&Hash> {
        self.log().map(Log::base)
    }

    /// Makes a log a plain list of the same entries (it took a change a
    /// log cannot: an insert before its last entry, a removal after its
    /// first). A plain list stays as it is.
    pub fn unlog(&mut self) {
        if !self.is_log() {
            return;
        }
        let Some(Link::Log(log)) = self.0.take() else {
            unreachable!("checked above")
        };
        let mut entries = Vec::with_capacity(log.len());
        log.for_each(&mut |e| entries.push(e.clone()));
        let mut builder = Builder::default();
        builder.push_entries(entries);
        self.0 = builder.finish().map(|root| root.link);
    }

    /// Makes the list a log of the same entries (which are in name order,
    /// so in an order a log can hold) whose chain starts at `base`.
    pub fn make_log(&mut self, base: Hash) {
        if self.is_log() {
            return;
        }
        let mut log = Log::new(base);
        self.for_each(&mut |e| {
            let entry = log.append(e.name.clone());
            *entry = e.clone();
        });
        self.0 = Some(Link::Log(Arc::new(log)));
    }

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

    /// The first `count` entries in name order (fewer if there are fewer).
    pub fn first_n(&self, count: usize) -> Vec<&Entry> {
        fn walk<'a>(link: &'a Link, out: &mut Vec<&'a Entry>, count: usize) {
            match link {
                Link::Group(kids) => {
                    for kid in kids.iter() {
                        if out.len() == count {
                            return;
                        }
                        walk(&kid.link, out, count);
                    }
                }
                chunk => {
                    let room = count - out.len();
                    out.extend(chunk.entries().iter().take(room));
                }
            }
        }
        let mut out = Vec::with_capacity(count.min(self.len()));
        if let Some(log) = self.log() {
            out.extend((0..count.min(log.len())).map(|i| log.entry(i)));
        } else if let Some(link) = &self.0 {
            walk(link, &mut out, count);
        }
        out
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

    /// How many of the first `count` entries fill whole chunks: what
    /// [`Children::remove_front`] of that many drops without copying a
    /// chunk. A list that is one chunk has no whole chunk to spare.
    pub fn whole_chunks_within(&self, count: usize) -> usize {
        if let Some(log) = self.log() {
            return log.whole_segments_within(count);
        }
        let Some(Link::Group(_)) = &self.0 else {
            return 0;
        };
        let mut taken = 0;
        let mut link = self.0.as_ref();
        while let Some(Link::Group(kids)) = link {
            let mut next = None;
            for kid in kids.iter() {
                if taken + kid.len as usize <= count {
                    taken += kid.len as usize;
                } else {
                    next = Some(&kid.link);
                    break;
                }
            }
            link = next;
        }
        taken
    }

    /// Removes the first `count` entries (all, if fewer). Whole nodes
    /// before the cut go without being copied.
    pub fn remove_front(&mut self, count: usize) {
        /// Whether `link` is now empty.
        fn trim(link: &mut Link, count: usize, root: bool) -> bool {
            let Link::Group(kids) = link else {
                if root {
                    let open = link.open();
                    open.drain(..count);
                    return open.is_empty();
                }
                return link.edit(Edit::RemoveFront(count));
            };
            let mut left = count;
            let mut whole = 0;
            while whole < kids.len() && kids[whole].len as usize <= left {
                left -= kids[whole].len as usize;
                whole += 1;
            }
            if whole == kids.len() {
                return true;
            }
            if whole > 0 {
                let mut rest = Kid::drain(std::mem::replace(kids, Arc::from(Vec::new())));
                rest.drain(..whole);
                *kids = Arc::from(rest);
            }
            let kid = &mut own(kids)[0];
            // Re-cut from the new first node: the group lost its front.
            kid.reshaped = true;
            if left > 0 {
                kid.hash = STALE;
                kid.len -= left as u32;
                trim(&mut kid.link, left, false);
            }
            false
        }
        let count = count.min(self.len());
        if count == 0 {
            return;
        }
        if let Some(log) = self.log_mut() {
            // The log stays, empty or not: its base now ends the chain.
            log.remove_front(count);
            return;
        }
        if let Some(root) = self.0.as_mut() {
            if trim(root, count, true) {
                self.0 = None;
            }
        }
    }

    /// Collects the stale entries that have a hash of their own (their
    /// chunks made unique), which the caller brings up to date before
    /// [`Children::recut`]; marks the stale inline ones [`INLINE`].
    pub fn stale_entries<'a>(&'a mut self, out: &mut Vec<&'a mut Entry>) {
        if self.relinks() > 0 {
            // A log that changed was made unique by the change (copied
            // again here, should anything have shared it since).
            self.log_mut().expect("only logs relink").stale_entries(out);
        } else if let Some(root) = self.0.as_mut().filter(|r| !matches!(r, Link::Log(_))) {
            collect_stale(root, out);
        }
    }

    /// Re-cuts the nodes where entries were inserted or removed, so the
    /// list is cut exactly as the format says. Hashes are left to
    /// [`Children::hash_jobs`]: every node that changed or is new is
    /// [`STALE`].
    pub fn recut(&mut self) {
        let Some(root) = self.0.as_mut() else { return };
        if let Link::Log(_) = root {
            return;
        }
        if !root.reshaped() {
            return;
        }
        let height = root.height();
        if still_cut(root, height) {
            finish_in_place(root);
            return;
        }
        let old = self.0.take().expect("checked above");
        let mut builder = Builder::default();
        builder.feed_all(old, height);
        self.0 = builder.finish().map(|root| root.link);
    }

    /// Levels of the chunk tree (0: one chunk), `None` without children.
    /// A log has no chunk tree: `None`, as without children.
    pub fn height(&self) -> Option<usize> {
        match &self.0 {
            Some(Link::Log(_)) | None => None,
            Some(root) => Some(root.height()),
        }
    }

    /// Rounds of [`Children::link_job`] a log needs at commit (0 for a
    /// plain list or a log that did not change).
    pub fn relinks(&self) -> usize {
        self.log().map_or(0, Log::relinks)
    }

    /// Adds to `batch` a log's `round`-th stale link, after its stale
    /// entries are hashed and the earlier rounds are done; the last one
    /// settles the log and puts its children digest in `digest`.
    pub fn link_job<'a>(
        &'a mut self,
        round: usize,
        batch: &mut Batch<'a>,
        digest: &'a mut Option<Hash>,
    ) {
        if let Some(Link::Log(log)) = &mut self.0 {
            if log.relinks() > round {
                Arc::make_mut(log).link_job(round, batch, digest);
            }
        }
    }

    /// A log's children digest when nothing in it changed ([`None`] for a
    /// plain list, or a log with stale links).
    pub fn clean_log_digest(&self) -> Option<Hash> {
        let log = self.log()?;
        (log.relinks() == 0).then(|| log.digest())
    }

    /// Adds to `batch` the hash input of every stale node at `level` of a
    /// re-cut list whose lower levels are hashed: chunks at level 0, groups
    /// above. At the list's own height that is the root, whose hash (the
    /// children digest) goes to `digest`.
    pub fn hash_jobs<'a>(
        &'a mut self,
        level: usize,
        digest: &'a mut Option<Hash>,
        batch: &mut Batch<'a>,
    ) {
        let Some(root) = self.0.as_mut() else { return };
        if let Link::Log(_) = root {
            // Hashed by its chain (`link_job`), not by levels.
            return;
        }
        let height = root.height();
        if level == height {
            push_hash_input(root, level, Dest::Digest(digest), batch);
        } else if level < height {
            stale_at(root, height, level, batch);
        }
    }

    /// [`Children::hash_jobs`] for a list below which many nodes may be
    /// stale: when the level is three or more below the top and two or
    /// more of the top's nodes are stale, the second half of them is
    /// hashed on a helper thread (in a batch of its own), the first half
    /// goes to `batch`.
    pub fn hash_jobs_wide<'a>(
        &'a mut self,
        level: usize,
        digest: &'a mut Option<Hash>,
        batch: &mut Batch<'a>,
    ) {
        let deep = self
            .0
            .as_ref()
            .is_some_and(|root| level + 3 <= root.height());
        let Some(at) = stale_half(self.0.as_ref()).filter(|_| deep) else {
            return self.hash_jobs(level, digest, batch);
        };
        let root = self.0.as_mut().expect("a group");
        let height = root.height();
        let (low, high) = kids_cut_at(root, at);
        let role = batch.role();
        both_halves(
            || stale_in(low, height, level, batch),
            move || {
                let mut own_batch = Batch::new(role);
                stale_in(high, height, level, &mut own_batch);
                own_batch.finish();
            },
        );
    }

    /// [`Children::stale_entries`] for a long list of which many entries
    /// may be stale: the top's stale nodes are walked in two halves, the
    /// second on a helper thread.
    pub fn stale_entries_wide<'a>(&'a mut self, out: &mut Vec<&'a mut Entry>) {
        let Some(at) = stale_half(self.0.as_ref()) else {
            return self.stale_entries(out);
        };
        let (low, high) = kids_cut_at(self.0.as_mut().expect("a group"), at);
        let collect = |kids: &'a mut [Kid], out: &mut Vec<&'a mut Entry>| {
            for kid in kids.iter_mut().filter(|k| k.hash == STALE) {
                collect_stale(&mut kid.link, out);
            }
        };
        let (_, more) = both_halves(
            || collect(low, out),
            move || {
                let mut more = Vec::new();
                collect(high, &mut more);
                more
            },
        );
        out.extend(more);
    }
}

/// Where a group's kids are cut in two for [`both_halves`]: at the kid
/// that starts the second half of its stale kids; `None` when fewer than
/// two are stale (or the list is not a group).
fn stale_half(root: Option<&Link>) -> Option<usize> {
    let Some(Link::Group(kids)) = root else {
        return None;
    };
    let stale = kids.iter().filter(|k| k.hash == STALE).count();
    if stale < 2 {
        return None;
    }
    kids.iter()
        .enumerate()
        .filter(|(_, k)| k.hash == STALE)
        .nth(stale / 2)
        .map(|(i, _)| i)
}

/// The kids of the group at `root` (copied if shared), cut at `at`.
fn kids_cut_at(root: &mut Link, at: usize) -> (&mut [Kid], &mut [Kid]) {
    let Link::Group(kids) = root else {
        unreachable!("cut where stale_half said")
    };
    own(kids).split_at_mut(at)
}

/// Runs `low` on this thread and `high` on a helper, and returns both
/// results; a panic on the helper goes on here. When no thread can be
/// started (the process is at its limit), `high` runs here after `low`:
/// slower, same result.
pub(super) fn both_halves<A, B: Send>(
    low: impl FnOnce() -> A,
    high: impl FnOnce() -> B + Send,
) -> (A, B) {
    // `high` waits here until the helper takes it, so that it is still at
    // hand if the helper cannot be started.
    let waiting = std::sync::Mutex::new(Some(high));
    let take = || waiting.lock().map(|mut high| high.take()).ok().flatten();
    std::thread::scope(|scope| {
        let helper = if helpers_refused() {
            None
        } else {
            std::thread::Builder::new()
                .name("cep-commit".into())
                .spawn_scoped(scope, || take().map(|high| high()))
                .ok()
        };
        let a = low();
        let b = match helper.map(|h| h.join()) {
            Some(Ok(Some(b))) => Some(b),
            Some(Ok(None)) | None => None,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        };
        match b {
            Some(b) => (a, b),
            None => (a, take().expect("the helper did not run it")()),
        }
    })
}

#[cfg(test)]
thread_local! {
    /// Tests: act as if no helper thread could be started.
    pub(super) static REFUSE_HELPERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn helpers_refused() -> bool {
    #[cfg(test)]
    return REFUSE_HELPERS.with(|refuse| refuse.get());
    #[cfg(not(test))]
    false
}

/// Collects the stale entries below `link` that have a hash of their own;
/// the others (small leaves, hashed in their chunk) are marked [`INLINE`]
/// on the way, so a list of leaves is walked once.
fn collect_stale<'a>(link: &'a mut Link, out: &mut Vec<&'a mut Entry>) {
    fn take<'a>(entries: impl Iterator<Item = &'a mut Entry>, out: &mut Vec<&'a mut Entry>) {
        for entry in entries.filter(|e| e.hash == STALE) {
            if is_inline(&entry.node) {
                entry.hash = INLINE;
            } else {
                out.push(entry);
            }
        }
    }
    match link {
        Link::Chunk(e) => {
            if e.iter().any(|e| e.hash == STALE) {
                take(own(e).iter_mut(), out);
            }
        }
        Link::Open(v) => take(v.iter_mut(), out),
        Link::Log(_) => unreachable!("a log collects its own"),
        Link::Group(kids) => {
            if kids.iter().any(|k| k.hash == STALE) {
                own(kids)
                    .iter_mut()
                    .filter(|k| k.hash == STALE)
                    .for_each(|k| collect_stale(&mut k.link, out));
            }
        }
    }
}

/// How an entry or kid whose name is `name` (with its `key`) sorts
/// against `needle`: keys first, names only on a tie of long names.
#[inline(always)]
fn order_of(key: SortKey, name: &str, needle: &Needle) -> std::cmp::Ordering {
    match key.wide().cmp(&needle.key.wide()) {
        std::cmp::Ordering::Equal if needle.name.len() >= 16 => name.cmp(needle.name),
        order => order,
    }
}

/// Calls `visit(offset + i, entry)` for the entry named by each of
/// `needles` (distinct, in name order) below `link`, in name order, copying
/// shared nodes on the way down and marking them for rehash; the positions
/// of absent names go to `absent`.
fn visit_named<'a>(
    link: &'a mut Link,
    needles: &[Needle],
    offset: usize,
    visit: &mut dyn FnMut(usize, &'a mut Entry),
    absent: &mut Vec<usize>,
) {
    match link {
        Link::Group(kids) => {
            let ends = kid_ends(kids, needles);
            visit_kids(own(kids), &ends, needles, offset, visit, absent);
        }
        chunk => {
            let entries: &mut [Entry] = match chunk {
                Link::Chunk(e) => own(e),
                Link::Open(v) => v,
                Link::Group(_) | Link::Log(_) => unreachable!("matched above"),
            };
            let mut next = 0;
            for entry in entries.iter_mut() {
                let Some(needle) = needles.get(next) else {
                    return;
                };
                let mut order = order_of(entry.key, entry.name.as_str(), needle);
                while order.is_gt() {
                    absent.push(offset + next);
                    next += 1;
                    let Some(needle) = needles.get(next) else {
                        return;
                    };
                    order = order_of(entry.key, entry.name.as_str(), needle);
                }
                if order.is_eq() {
                    visit(offset + next, entry);
                    next += 1;
                }
            }
            absent.extend((next..needles.len()).map(|i| offset + i));
        }
    }
}

/// Where each of `kids`' needles end: a kid takes the names before the
/// next kid's first one (the first kid also those before its own), as
/// `kid_for` routes.
fn kid_ends(kids: &[Kid], needles: &[Needle]) -> Vec<usize> {
    let mut start = 0;
    kids[1..]
        .iter()
        .map(|next| {
            start += needles[start..].partition_point(|needle| {
                order_of(next.first_key, next.first.as_str(), needle).is_gt()
            });
            start
        })
        .chain([needles.len()])
        .collect()
}

/// [`visit_named`] over the kids of a group (already owned), the needles
/// of kid `k` ending at `ends[k]`.
fn visit_kids<'a>(
    kids: &'a mut [Kid],
    ends: &[usize],
    needles: &[Needle],
    offset: usize,
    visit: &mut dyn FnMut(usize, &'a mut Entry),
    absent: &mut Vec<usize>,
) {
    let mut start = 0;
    for (kid, &end) in kids.iter_mut().zip(ends) {
        if end > start {
            kid.hash = STALE;
            visit_named(
                &mut kid.link,
                &needles[start..end],
                offset + start,
                visit,
                absent,
            );
        }
        start = end;
    }
}

/// Adds the stale nodes at `level` below `link` (a group at `link_level`).
fn stale_at<'a>(link: &'a mut Link, link_level: usize, level: usize, batch: &mut Batch<'a>) {
    let Link::Group(kids) = link else {
        unreachable!("a node above level 0 is a group")
    };
    if !kids.iter().any(|k| k.hash == STALE) {
        return;
    }
    stale_in(own(kids), link_level, level, batch);
}

/// [`stale_at`] over the kids of a group at `link_level` (already owned).
fn stale_in<'a>(kids: &'a mut [Kid], link_level: usize, level: usize, batch: &mut Batch<'a>) {
    for kid in kids.iter_mut().filter(|k| k.hash == STALE) {
        let Kid { hash, link, .. } = kid;
        if link_level - 1 == level {
            push_hash_input(link, level, Dest::Hash(hash), batch);
        } else {
            stale_at(link, link_level - 1, level, batch);
        }
    }
}

/// Adds the hash input of one node at `level` (its items are hashed).
fn push_hash_input<'a>(link: &Link, level: usize, dest: Dest<'a>, batch: &mut Batch<'a>) {
    match link {
        Link::Group(kids) => batch.push(dest, |buf| {
            hash::put_group(buf, level as u8, kids.iter().map(|k| &k.hash))
        }),
        chunk => batch.push(dest, |buf| {
            hash::put_chunk(buf, chunk.entries().iter().map(|e| (&e.name, e.item())))
        }),
    }
}

/// Whether a reshaped list is still cut exactly as the format says, so it
/// can be finished in place instead of rebuilt: the usual case for an
/// append at the end or a trim at the front. Only reshaped nodes are
/// looked into; the others were cut correctly and did not change.
fn still_cut(root: &Link, height: usize) -> bool {
    /// `last`: the node ends the whole list (it may end without a cut).
    fn node_ok(link: &Link, level: usize, last: bool) -> bool {
        match link {
            Link::Group(kids) => {
                let n = kids.len();
                n > 0
                    && n <= NODE_ITEMS_MAX
                    && kids.iter().enumerate().all(|(i, kid)| {
                        let cut = if kid.reshaped {
                            kid.link.last().cut()
                        } else {
                            kid.last_cut
                        };
                        let end_ok = if i + 1 < n {
                            !hash::ends_at(level, cut)
                        } else {
                            last || n == NODE_ITEMS_MAX || hash::ends_at(level, cut)
                        };
                        end_ok
                            && (!kid.reshaped || node_ok(&kid.link, level - 1, last && i + 1 == n))
                    })
            }
            chunk => {
                let entries = chunk.entries();
                let n = entries.len();
                n > 0
                    && n <= NODE_ITEMS_MAX
                    && entries[..n - 1].iter().all(|e| !hash::ends_at(0, e.cut()))
                    && (last || n == NODE_ITEMS_MAX || hash::ends_at(0, entries[n - 1].cut()))
            }
        }
    }
    match root {
        // A group over one node is not a root the format knows.
        Link::Group(kids) if kids.len() < 2 => false,
        root => node_ok(root, height, true),
    }
}

/// Finishes a list that [`still_cut`] accepted: open chunks become chunks,
/// reshaped kids get their exact first name, last cut and no flag.
fn finish_in_place(link: &mut Link) {
    match link {
        Link::Group(kids) => {
            for kid in own(kids).iter_mut().filter(|k| k.reshaped) {
                finish_in_place(&mut kid.link);
                let first = kid.link.first();
                kid.first_key = first.key;
                kid.first = first.name.clone();
                kid.last_cut = kid.link.last().cut();
                kid.reshaped = false;
            }
        }
        Link::Open(v) => *link = Link::Chunk(Arc::from(std::mem::take(&mut **v))),
        Link::Chunk(_) => {}
        Link::Log(_) => unreachable!("a log is never re-cut"),
    }
}

/// Cuts a stream of entries (and of whole, already cut subtrees) into the
/// chunk tree of the hash format, bottom up, as they arrive.
#[derive(Default)]
struct Builder {
    /// The open chunk.
    entries: Vec<Entry>,
    /// `levels[k]`: the open run of finished level-k nodes.
    levels: Vec<Vec<Kid>>,
}

impl Builder {
    /// Whether a finished node of `level` may be added whole: nothing below
    /// its level is open.
    fn aligned(&self, level: usize) -> bool {
        self.entries.is_empty() && self.levels.iter().take(level).all(Vec::is_empty)
    }

    /// Adds everything below a root node of `level`.
    fn feed_all(&mut self, root: Link, level: usize) {
        match root {
            Link::Group(kids) => Kid::drain(kids)
                .into_iter()
                .for_each(|k| self.feed(k, level - 1)),
            Link::Open(v) => self.push_entries(*v),
            Link::Chunk(mut e) => match Arc::get_mut(&mut e) {
                Some(own) => own.iter_mut().for_each(|e| self.push_entry(Entry::take(e))),
                None => e.iter().for_each(|e| self.push_entry(e.clone())),
            },
            Link::Log(log) => log.for_each(&mut |e| self.push_entry(e.clone())),
        }
    }

    /// Adds a node of `level` in order: whole when it was not reshaped and
    /// the cuts so far line up with its start, else what is below it.
    fn feed(&mut self, kid: Kid, level: usize) {
        if !kid.reshaped && self.aligned(level) {
            self.push_kid(level, kid);
            return;
        }
        self.feed_all(kid.link, level);
    }

    /// Adds a reshaped chunk's entries; when they form one correctly cut
    /// chunk by themselves (the usual case), they become it in one copy.
    fn push_entries(&mut self, entries: Vec<Entry>) {
        let n = entries.len();
        let uncut = n > 0
            && n <= NODE_ITEMS_MAX
            && entries[..n - 1].iter().all(|e| !hash::ends_at(0, e.cut()));
        if !(self.entries.is_empty() && uncut) {
            entries.into_iter().for_each(|e| self.push_entry(e));
            return;
        }
        if hash::ends_at(0, entries[n - 1].cut()) || n == NODE_ITEMS_MAX {
            self.push_kid(0, Kid::chunk(Arc::from(entries)));
        } else {
            self.entries = entries;
        }
    }

    fn push_entry(&mut self, entry: Entry) {
        let cut = entry.cut();
        self.entries.push(entry);
        if hash::ends_at(0, cut) || self.entries.len() == NODE_ITEMS_MAX {
            let chunk: Arc<[Entry]> = self.entries.drain(..).collect();
            self.push_kid(0, Kid::chunk(chunk));
        }
    }

    /// Adds a finished node of `level`, closing the group above when its
    /// last name or the cap says so.
    fn push_kid(&mut self, level: usize, kid: Kid) {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        let cut = kid.last_cut;
        self.levels[level].push(kid);
        let above = level + 1;
        if hash::ends_at(above, cut) || self.levels[level].len() == NODE_ITEMS_MAX {
            let kids: Arc<[Kid]> = self.levels[level].drain(..).collect();
            self.push_kid(above, Kid::group(kids));
        }
    }

    /// Closes everything still open; the root, or `None` for no entries.
    fn finish(mut self) -> Option<Kid> {
        if !self.entries.is_empty() {
            let chunk = Kid::chunk(Arc::from(std::mem::take(&mut self.entries)));
            if self.levels.is_empty() {
                self.levels.push(Vec::new());
            }
            self.levels[0].push(chunk);
        }
        let mut level = 0;
        while level < self.levels.len() {
            let run = std::mem::take(&mut self.levels[level]);
            level += 1;
            if run.is_empty() {
                continue;
            }
            let higher = self.levels[level..].iter().any(|l| !l.is_empty());
            if !higher && run.len() == 1 {
                // Names may have closed groups above the last node eagerly;
                // the format stops at the first level with one node.
                let mut root = run.into_iter().next()?;
                while let Link::Group(kids) = &root.link {
                    if kids.len() > 1 {
                        break;
                    }
                    root = kids[0].clone();
                }
                return Some(root);
            }
            let group = Kid::group(run.into());
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(group);
        }
        None
    }
}
/// Walks two committed lists side by side and calls `on(old, new)` for
/// every name whose entry may differ: `(Some, None)` removed, `(None, Some)`
/// added, `(Some, Some)` present in both but not provably equal. Subtrees
/// with equal hashes are skipped whole; since cuts follow the names,
/// unchanged stretches of the two lists line up.
pub(crate) fn diff<'a>(
    old: &'a Children,
    new: &'a Children,
    on: &mut dyn FnMut(Option<&'a Entry>, Option<&'a Entry>),
) {
    if old.is_log() || new.is_log() {
        return diff_logs(old, new, on);
    }
    /// A node still to visit: its link, level, and hash (none for a root).
    type Pending<'a> = (&'a Link, usize, Option<&'a Hash>);
    struct Stream<'a> {
        /// Nodes still to visit; the next one last.
        stack: Vec<Pending<'a>>,
        /// What is left of the chunk being read.
        entries: &'a [Entry],
    }
    impl<'a> Stream<'a> {
        fn new(children: &'a Children) -> Self {
            Stream {
                stack: children.0.iter().map(|l| (l, l.height(), None)).collect(),
                entries: &[],
            }
        }
        fn node(&self) -> Option<Pending<'a>> {
            if self.entries.is_empty() {
                self.stack.last().copied()
            } else {
                None
            }
        }
        fn expand(&mut self) {
            match self.stack.pop() {
                Some((Link::Group(kids), level, _)) => self.stack.extend(
                    kids.iter()
                        .rev()
                        .map(|k| (&k.link, level - 1, Some(&k.hash))),
                ),
                Some((Link::Chunk(e), ..)) => self.entries = e,
                Some((Link::Open(v), ..)) => self.entries = v,
                Some((Link::Log(_), ..)) => unreachable!("logs are diffed apart"),
                None => {}
            }
        }
        fn entry(&mut self) -> Option<&'a Entry> {
            while self.entries.is_empty() && !self.stack.is_empty() {
                self.expand();
            }
            self.entries.first()
        }
        fn advance(&mut self) {
            self.entries = &self.entries[1..];
        }
    }
    let mut a = Stream::new(old);
    let mut b = Stream::new(new);
    loop {
        if let (Some((x, lx, hx)), Some((y, ly, hy))) = (a.node(), b.node()) {
            let same = x.same_node(y) || (lx == ly && hx.is_some() && hx == hy);
            if same {
                a.stack.pop();
                b.stack.pop();
            } else {
                if lx >= ly {
                    a.expand();
                }
                if ly >= lx {
                    b.expand();
                }
            }
            continue;
        }
        let (x, y) = (a.entry(), b.entry());
        if x.is_none() && y.is_none() {
            return;
        }
        let (next_x, next_y) = merge_step(x, y, on);
        if next_x {
            a.advance();
        }
        if next_y {
            b.advance();
        }
    }
}

/// One step of a merge of two lists of entries in name order: reports
/// the first of `x` and `y` (both, when they have one name and differ) to
/// `on`, and says which side(s) to move past.
fn merge_step<'a>(
    x: Option<&'a Entry>,
    y: Option<&'a Entry>,
    on: &mut dyn FnMut(Option<&'a Entry>, Option<&'a Entry>),
) -> (bool, bool) {
    let order = match (x, y) {
        (None, None) => return (false, false),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.name.cmp(&y.name),
    };
    match order {
        std::cmp::Ordering::Less => {
            on(x, None);
            (true, false)
        }
        std::cmp::Ordering::Greater => {
            on(None, y);
            (false, true)
        }
        std::cmp::Ordering::Equal => {
            let (x, y) = (x.expect("equal names"), y.expect("equal names"));
            if !same_entry(x, y) {
                on(Some(x), Some(y));
            }
            (true, true)
        }
    }
}

/// [`diff`] where one side or both are logs: entries trimmed from a log's
/// front and entries with equal links are skipped without a look; the
/// rest (usually an entry or two at the end) are merged by name.
fn diff_logs<'a>(
    old: &'a Children,
    new: &'a Children,
    on: &mut dyn FnMut(Option<&'a Entry>, Option<&'a Entry>),
) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    match (old.log(), new.log()) {
        (Some(x), Some(y)) if let Some((trimmed, same)) = x.continued_by(y) => {
            (0..trimmed).for_each(|i| on(Some(x.entry(i)), None));
            xs.extend((trimmed + same..x.len()).map(|i| x.entry(i)));
            ys.extend((same..y.len()).map(|i| y.entry(i)));
        }
        _ => {
            old.for_each(&mut |e| xs.push(e));
            new.for_each(&mut |e| ys.push(e));
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < xs.len() || j < ys.len() {
        let (next_x, next_y) = merge_step(xs.get(i).copied(), ys.get(j).copied(), on);
        i += usize::from(next_x);
        j += usize::from(next_y);
    }
}

/// Whether `new`, a later state of the log `old`, follows from it by
/// trims, in-place changes and appends (see `Log::continued_by`): a
/// change list of removes and puts then turns one into the other.
pub(crate) fn log_continues(old: &Children, new: &Children) -> bool {
    match (old.log(), new.log()) {
        (Some(x), Some(y)) => x.continued_by(y).is_some(),
        _ => false,
    }
}

/// Whether two committed entries of one name are provably equal.
fn same_entry(x: &Entry, y: &Entry) -> bool {
    if x.hash == INLINE || y.hash == INLINE {
        x.hash == y.hash
            && x.node.hashed_flags() == y.node.hashed_flags()
            && x.node.value() == y.node.value()
    } else {
        x.hash == y.hash
    }
}

/// The node shapes below a list, for tests: (level, items) per node, in
/// order, depth first.
#[cfg(test)]
pub(crate) fn shape(children: &Children) -> Vec<(usize, usize)> {
    fn walk(link: &Link, level: usize, out: &mut Vec<(usize, usize)>) {
        match link {
            Link::Chunk(e) => out.push((0, e.len())),
            Link::Open(v) => out.push((0, v.len())),
            Link::Log(log) => out.push((0, log.len())),
            Link::Group(kids) => {
                out.push((level, kids.len()));
                kids.iter().for_each(|k| walk(&k.link, level - 1, out));
            }
        }
    }
    let mut out = Vec::new();
    if let Some(link) = &children.0 {
        walk(link, link.height(), &mut out);
    }
    out
}

impl Children {
    /// The segments a log's list holds, for tests.
    #[cfg(test)]
    pub(crate) fn log_segments_held(&self) -> Option<usize> {
        self.log().map(Log::segments_held)
    }

    /// A log's base and the link that ends at its entry `name`, for tests.
    #[cfg(test)]
    pub(crate) fn log_base_and_link(&self, name: &str) -> Option<(Hash, Option<Hash>)> {
        let log = self.log()?;
        Some((*log.base(), log.search(name).ok().map(|i| log.link(i))))
    }

    /// Whether two logs share a segment, for tests.
    #[cfg(test)]
    pub(crate) fn shares_segment_with(&self, other: &Children) -> bool {
        match (self.log(), other.log()) {
            (Some(a), Some(b)) => a.shares_segment_with(b),
            _ => false,
        }
    }
}

/// How many nodes of `new` are shared (the same allocation) with `old`,
/// for tests of how much a change copies.
#[cfg(test)]
pub(crate) fn shared_nodes(old: &Children, new: &Children) -> usize {
    fn collect(link: &Link, out: &mut Vec<*const u8>) {
        match link {
            Link::Chunk(e) => out.push(Arc::as_ptr(e) as *const u8),
            Link::Open(v) => out.push(v.as_ptr() as *const u8),
            Link::Log(log) => out.push(Arc::as_ptr(log) as *const u8),
            Link::Group(kids) => {
                out.push(Arc::as_ptr(kids) as *const u8);
                kids.iter().for_each(|k| collect(&k.link, out));
            }
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    old.0.iter().for_each(|l| collect(l, &mut a));
    new.0.iter().for_each(|l| collect(l, &mut b));
    let a: std::collections::BTreeSet<_> = a.into_iter().collect();
    b.iter().filter(|p| a.contains(p)).count()
}

/// Checks what a committed list caches against what it holds, for tests:
/// no open chunk, no reshaped flag, and every kid's first name, length and
/// last cut exact.
#[cfg(test)]
pub(crate) fn check_cached(children: &Children) {
    fn walk(link: &Link) {
        match link {
            Link::Open(_) => panic!("an open chunk in a committed list"),
            Link::Chunk(e) => assert!(!e.is_empty(), "an empty chunk"),
            Link::Log(log) => {
                for i in 0..log.len() {
                    assert_ne!(log.link(i), STALE, "a stale link after commit");
                }
            }
            Link::Group(kids) => {
                assert!(!kids.is_empty(), "an empty group");
                for kid in kids.iter() {
                    assert!(!kid.reshaped, "a reshaped kid after commit");
                    assert_ne!(kid.hash, STALE, "a stale kid after commit");
                    assert_eq!(kid.first, kid.link.first().name, "first name");
                    assert_eq!(kid.len as usize, kid.link.len(), "length");
                    assert_eq!(kid.last_cut, kid.link.last().cut(), "last cut");
                    walk(&kid.link);
                }
            }
        }
    }
    if let Some(link) = &children.0 {
        walk(link);
    }
}
