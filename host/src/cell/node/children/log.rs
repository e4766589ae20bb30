//! A log: the children of a cell that only grows at its end and shrinks
//! at its front (a dossier's history), stored so that an append writes one
//! slot in place instead of copying a chunk and its group.
//!
//! Entries live in *segments* of [`SEGMENT_SLOTS`] slots, shared between
//! the snapshots and work trees that see them. Each slot is written once
//! ([`OnceLock`]): a log sees the slots `start .. start + published` of its
//! segments and nothing after, so a work tree appends by setting the next
//! slot of the shared tail segment, which the snapshot it came from never
//! reads. When two logs from one snapshot append (a speculative tree, a
//! test), the first takes the slot; the second finds it set and copies the
//! segment's slots it sees into a fresh segment. A change to a published
//! entry copies its segment first, the usual copy-on-write.
//!
//! Entries appended in the current batch wait in `pending` (they may still
//! change: a cursor writes their fields) and go to their slots at commit,
//! once hashed ([`Log::settle`]).
//!
//! The hash is a chain (`docs/formats.md`, "Log cells"): entry i's link
//! hashes link i-1 (the `base` for the first) and the entry; the last link
//! is the children digest. Dropping the first k entries makes link k-1 the
//! base, so a trim hashes nothing and the digest still commits to every
//! entry ever appended.
//!
//! Must not touch: what the entries are or when the log is trimmed (the
//! kernel decides); hashing the entries' own cells (the commit does).

use std::sync::OnceLock;

use triomphe::Arc;

use super::{Builder, Children, Entry, Link};
use crate::cell::hash::{self, Batch, ChunkItem, Dest, Hash, INLINE, STALE};
use crate::cell::node::{full_hash, is_inline};
use cep_sdk::Name;

/// Slots per segment: a trim drops whole segments, so a window of the
/// newest `keep` entries holds fewer than `keep + SEGMENT_SLOTS`.
pub(crate) const SEGMENT_SLOTS: usize = 8;

/// No link is stale.
const CLEAN: usize = usize::MAX;

/// One entry and the link of the chain that ends at it.
#[derive(Clone)]
pub(crate) struct Slot {
    pub entry: Entry,
    /// [`STALE`] until the commit that publishes the slot hashes it.
    link: Hash,
}

/// Write-once slots ([`SEGMENT_SLOTS`] of them), shared by every log that
/// sees some of them.
type Segment = [OnceLock<Slot>];

/// A segment of empty slots.
fn empty_segment() -> Arc<Segment> {
    (0..SEGMENT_SLOTS).map(|_| OnceLock::new()).collect()
}

/// A new segment whose first slot holds `slot`. Built in place from an
/// iterator, it writes its count, `slot` and each empty slot's state:
/// `Arc::new` of an array built the segment on the stack and copied all
/// 1.3 KB of it, a line of freshly allocated memory after another.
fn segment_opened_by(slot: Slot) -> Arc<Segment> {
    let rest = (1..SEGMENT_SLOTS).map(|_| OnceLock::new());
    std::iter::once(OnceLock::from(slot)).chain(rest).collect()
}

/// A segment as a log's list holds it, with the link its last slot ends
/// (once the segment is full): a trim of whole segments takes its new base
/// from here, not from a slot written dozens of beats before, which no
/// cache holds any more (the trim's beat, 1 in 8, took ≈ 100 ns per slice
/// more than the others; ≈ 25 ns since).
#[derive(Clone)]
struct Held {
    slots: Arc<Segment>,
    /// [`STALE`] until the next segment opens; then the link of the last
    /// slot, kept equal to it ([`Log::settle`]).
    end: Hash,
}

/// The slice made unique for mutation (copied when shared).
fn unique<T: Clone>(slice: &mut Arc<[T]>) -> &mut [T] {
    if !slice.is_unique() {
        *slice = slice.iter().cloned().collect();
    }
    Arc::get_mut(slice).expect("unique: checked, or just copied")
}

/// The children of a log cell.
#[derive(Clone)]
pub(crate) struct Log {
    /// Shared as a whole too: a log copied for a batch copies no list of
    /// segments until a segment is added, dropped or copied.
    segments: Arc<[Held]>,
    /// The first slot this log sees, counted from the start of
    /// `segments[0]`. A trim only moves it forward: the segments it passes
    /// leave the list when the next segment joins it, which rebuilds the
    /// list anyway (a rebuild at the trim too counted each kept segment
    /// once more, a cache miss each: ≈ 2 % of a yielding slice).
    start: usize,
    /// Entries in `segments` (from `start`), each hashed and linked.
    published: usize,
    /// Entries appended in this batch, after the published ones.
    pending: Vec<Slot>,
    /// The link before the first retained entry.
    base: Hash,
    /// The link of the last published entry (`base` when none), kept here
    /// so an append and the digest read no segment. Valid while the
    /// published links are (`dirty >= published`).
    tail: Hash,
    /// The first entry whose link must be recomputed ([`CLEAN`]: none).
    dirty: usize,
}

impl Log {
    /// An empty log whose chain starts at `base`.
    pub fn new(base: Hash) -> Self {
        Log {
            segments: Arc::from(Vec::new()),
            start: 0,
            published: 0,
            pending: Vec::new(),
            base,
            tail: base,
            dirty: CLEAN,
        }
    }

    pub fn base(&self) -> &Hash {
        &self.base
    }

    pub fn len(&self) -> usize {
        self.published + self.pending.len()
    }

    /// Segment and slot of published entry `i`.
    fn place(&self, i: usize) -> (usize, usize) {
        let at = self.start + i;
        (at / SEGMENT_SLOTS, at % SEGMENT_SLOTS)
    }

    /// The first segment this log sees.
    fn first_segment(&self) -> usize {
        self.start / SEGMENT_SLOTS
    }

    /// The slots of segment `s` (`first_segment()` or later) this log
    /// sees.
    fn visible(&self, s: usize) -> std::ops::Range<usize> {
        let low = match s == self.first_segment() {
            true => self.start % SEGMENT_SLOTS,
            false => 0,
        };
        let end = self.start + self.published - s * SEGMENT_SLOTS;
        low..end.min(SEGMENT_SLOTS)
    }

    fn slot(&self, i: usize) -> &Slot {
        if i < self.published {
            let (s, o) = self.place(i);
            self.segments[s].slots[o]
                .get()
                .expect("a published slot is set")
        } else {
            &self.pending[i - self.published]
        }
    }

    pub fn entry(&self, i: usize) -> &Entry {
        &self.slot(i).entry
    }

    pub fn last(&self) -> Option<&Entry> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Where `name` is (`Err`: where it would go), by binary search: the
    /// names of a log increase.
    pub fn search(&self, name: &str) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.entry(mid).name.as_str().cmp(name) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    pub fn for_each<'a>(&'a self, f: &mut dyn FnMut(&'a Entry)) {
        for s in self.first_segment()..self.segments.len() {
            for o in self.visible(s) {
                f(&self.segments[s].slots[o].get().expect("published").entry);
            }
        }
        for slot in &self.pending {
            f(&slot.entry);
        }
    }

    /// Adds an empty entry `name`, which must sort after every other.
    pub fn append(&mut self, name: Name) -> &mut Entry {
        debug_assert!(
            self.last().is_none_or(|last| last.name < name),
            "{name} appended out of order"
        );
        self.dirty = self.dirty.min(self.len());
        self.pending.push(Slot {
            entry: Entry::new(name),
            link: STALE,
        });
        &mut self.pending.last_mut().expect("pushed").entry
    }

    /// Entry `i` for mutation: its segment is copied if shared, and its
    /// link and every later one will be recomputed.
    pub fn entry_mut(&mut self, i: usize) -> &mut Entry {
        self.dirty = self.dirty.min(i);
        &mut self.slot_mut(i).entry
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot {
        if i >= self.published {
            return &mut self.pending[i - self.published];
        }
        let (s, o) = self.place(i);
        self.own(s);
        Arc::get_mut(&mut unique(&mut self.segments)[s].slots).expect("owned")[o]
            .get_mut()
            .expect("a published slot is set")
    }

    /// Makes segment `s` this log's own: a copy of the slots it sees when
    /// another log shares it.
    fn own(&mut self, s: usize) {
        // A segment's count says how many lists of segments hold it, so
        // the list must be this log's first.
        if unique(&mut self.segments)[s].slots.is_unique() {
            return;
        }
        let mut copy = empty_segment();
        let fresh = Arc::get_mut(&mut copy).expect("new");
        for o in self.visible(s) {
            let slot = self.segments[s].slots[o].get().expect("published");
            fresh[o] = OnceLock::from(slot.clone());
        }
        unique(&mut self.segments)[s].slots = copy;
    }

    /// Calls `visit(i, entry)` for the entry named `names[i]` (distinct, in
    /// name order), in name order, each for mutation as by
    /// [`Log::entry_mut`]; returns the positions of the absent names.
    pub fn each_named_mut<'a>(
        &'a mut self,
        names: &[&str],
        visit: &mut dyn FnMut(usize, &'a mut Entry),
    ) -> Vec<usize> {
        let mut absent = Vec::new();
        // (entry, position in `names`), in entry order.
        let mut found = Vec::new();
        for (n, name) in names.iter().enumerate() {
            match self.search(name) {
                Ok(i) => found.push((i, n)),
                Err(_) => absent.push(n),
            }
        }
        let Some(&(first, _)) = found.first() else {
            return absent;
        };
        self.dirty = self.dirty.min(first);
        for &(i, _) in &found {
            if i < self.published {
                self.own(self.place(i).0);
            }
        }
        let (start, published) = (self.start, self.published);
        let mut wanted = found.into_iter().peekable();
        let segments = match first < published {
            true => unique(&mut self.segments),
            false => &mut [],
        };
        for (s, segment) in segments.iter_mut().enumerate() {
            let Some(&(i, _)) = wanted.peek() else { break };
            let low = s * SEGMENT_SLOTS;
            if i >= published || start + i >= low + SEGMENT_SLOTS {
                // Done with the published entries, or none wanted here
                // (and the segment may be shared).
                if i >= published {
                    break;
                }
                continue;
            }
            let owned = Arc::get_mut(&mut segment.slots).expect("owned above");
            for (o, slot) in owned.iter_mut().enumerate() {
                if wanted
                    .peek()
                    .is_some_and(|&(i, _)| i < published && start + i == low + o)
                {
                    let (_, n) = wanted.next().expect("peeked");
                    visit(n, &mut slot.get_mut().expect("published").entry);
                }
            }
        }
        for (k, slot) in self.pending.iter_mut().enumerate() {
            if wanted.peek().is_some_and(|&(i, _)| i == published + k) {
                let (_, n) = wanted.next().expect("peeked");
                visit(n, &mut slot.entry);
            }
        }
        debug_assert!(wanted.next().is_none(), "every found entry visited");
        absent
    }

    /// How many of the first `count` entries fill whole published
    /// segments: what [`Log::remove_front`] of that many drops without
    /// touching a slot.
    pub fn whole_segments_within(&self, count: usize) -> usize {
        let mut taken = 0;
        for s in self.first_segment()..self.segments.len() {
            let slots = self.visible(s);
            if slots.end < SEGMENT_SLOTS || taken + slots.len() > count {
                break;
            }
            taken += slots.len();
        }
        taken
    }

    /// Removes the first `count` entries (all, if fewer): the base becomes
    /// the link of the last one removed.
    pub fn remove_front(&mut self, count: usize) {
        let count = count.min(self.len());
        if count == 0 {
            return;
        }
        self.base = self.link_through(count - 1);
        if count >= self.published {
            let from_pending = count - self.published;
            self.segments = Arc::from(Vec::new());
            self.start = 0;
            self.published = 0;
            self.tail = self.base;
            self.pending.drain(..from_pending);
        } else {
            self.start += count;
            self.published -= count;
        }
        if self.dirty != CLEAN {
            self.dirty = self.dirty.saturating_sub(count);
            if self.dirty >= self.len() {
                // Every stale link went with the trimmed entries.
                self.dirty = CLEAN;
            }
        }
    }

    /// The link that ends at entry `i`, computed on the spot (with the
    /// entries' own hashes from scratch) where the cached one is stale: a
    /// batch that changes an entry and then trims it, which the kernel
    /// never does.
    fn link_through(&self, i: usize) -> Hash {
        if i < self.dirty {
            return self.cached_link(i);
        }
        let mut link = match self.dirty {
            0 => self.base,
            d => self.slot(d - 1).link,
        };
        for j in self.dirty..=i {
            let entry = self.entry(j);
            let own;
            let item = if entry.hash != STALE {
                entry.item()
            } else if is_inline(&entry.node) {
                ChunkItem::Inline {
                    flags: entry.node.hashed_flags(),
                    value: entry.node.value(),
                }
            } else {
                own = full_hash(&entry.node);
                ChunkItem::Hashed(&own)
            };
            link = hash::link(&link, &entry.name, item);
        }
        link
    }

    /// Link `i`, published and not stale: from the list when it ends a
    /// full segment (the slot is not read), from its slot otherwise.
    fn cached_link(&self, i: usize) -> Hash {
        let (s, o) = self.place(i);
        match self.segments.get(s) {
            Some(held) if o == SEGMENT_SLOTS - 1 && held.end != STALE => held.end,
            _ => self.slot(i).link,
        }
    }

    /// Collects the stale entries that have a hash of their own (the
    /// others are marked [`INLINE`]), as `Children::stale_entries`.
    pub fn stale_entries<'a>(&'a mut self, out: &mut Vec<&'a mut Entry>) {
        if self.dirty == CLEAN {
            return;
        }
        let mut take = |entry: &'a mut Entry| {
            if entry.hash == STALE {
                if is_inline(&entry.node) {
                    entry.hash = INLINE;
                } else {
                    out.push(entry);
                }
            }
        };
        let (start, published, dirty) = (self.start, self.published, self.dirty);
        // Usually only appended entries changed: the segments stay shared.
        let segments = match dirty < published {
            true => unique(&mut self.segments),
            false => &mut [],
        };
        for (s, segment) in segments.iter_mut().enumerate() {
            // Entries before `dirty` are hashed; a shared segment holds no
            // changed entry (changing one makes its segment this log's).
            if start + published <= s * SEGMENT_SLOTS || (s + 1) * SEGMENT_SLOTS <= start + dirty {
                continue;
            }
            let Some(owned) = Arc::get_mut(&mut segment.slots) else {
                continue;
            };
            for (o, slot) in owned.iter_mut().enumerate() {
                let at = s * SEGMENT_SLOTS + o;
                if at >= start + dirty && at < start + published {
                    take(&mut slot.get_mut().expect("published").entry);
                }
            }
        }
        for slot in &mut self.pending {
            take(&mut slot.entry);
        }
    }

    /// Links to recompute at commit, one per round of
    /// [`Log::link_job`].
    pub fn relinks(&self) -> usize {
        if self.dirty == CLEAN {
            0
        } else {
            self.len() - self.dirty
        }
    }

    /// Adds to `batch` the input of the `round`-th stale link (the rounds
    /// before it hashed, so its previous link is known; the entries are
    /// hashed). The last one settles the log when it is hashed and is its
    /// children digest, which goes to `digest`.
    pub fn link_job<'a>(
        &'a mut self,
        round: usize,
        batch: &mut Batch<'a>,
        digest: &'a mut Option<Hash>,
    ) {
        if self.dirty == CLEAN || self.dirty + round >= self.len() {
            return;
        }
        let i = self.dirty + round;
        let previous = match i {
            0 => self.base,
            // The first stale link after the published ones (an append).
            i if i == self.published && round == 0 => self.tail,
            i => self.slot(i - 1).link,
        };
        if i + 1 == self.len() {
            let (start, buf) = batch.input();
            let entry = self.entry(i);
            hash::put_link(buf, &previous, &entry.name, entry.item());
            batch.end_input(start, Dest::Log(self, digest));
            return;
        }
        let Slot { entry, link } = self.slot_mut(i);
        let entry = &*entry;
        batch.push(Dest::Hash(link), |buf| {
            hash::put_link(buf, &previous, &entry.name, entry.item())
        });
    }

    /// After the links are hashed: the pending entries go to their slots.
    /// Each is moved from `pending` straight into its slot (a slot is 160
    /// bytes: `OnceLock::set` moved it three times more on the way). An
    /// entry that opens a segment records the link the previous segment
    /// ends with in the rebuilt list ([`Held::end`]).
    fn settle(&mut self) {
        // The link before the first pending entry: the tail, unless
        // published links were hashed again in this batch.
        let relinked = self.dirty < self.published;
        let mut previous = match self.published {
            0 => self.base,
            p if relinked => self.slot(p - 1).link,
            _ => self.tail,
        };
        if relinked {
            self.refresh_ends();
        }
        self.dirty = CLEAN;
        let mut pending = std::mem::take(&mut self.pending).into_iter();
        while let Some(link) = pending.as_slice().first().map(|slot| slot.link) {
            debug_assert!(link != STALE, "an entry settled unhashed");
            let next = |pending: &mut std::vec::IntoIter<Slot>| pending.next().expect("one left");
            let (s, o) = self.place(self.published);
            if s == self.segments.len() {
                // The entry opens a segment, and the list is rebuilt:
                // without the segments trimmed away, the full one last
                // with the link it ends with.
                debug_assert_eq!(o, 0, "a segment opens with its first slot");
                let first = self.first_segment();
                let full = self.segments.len().checked_sub(1);
                let kept = self.segments.iter().enumerate().skip(first);
                let kept = kept.map(|(k, held)| match Some(k) == full {
                    true => Held {
                        slots: held.slots.clone(),
                        end: previous,
                    },
                    false => held.clone(),
                });
                let opened = Held {
                    slots: segment_opened_by(next(&mut pending)),
                    end: STALE,
                };
                self.segments = kept.chain([opened]).collect();
                self.start -= first * SEGMENT_SLOTS;
            } else {
                let mut settled = false;
                self.segments[s].slots[o].get_or_init(|| {
                    settled = true;
                    next(&mut pending)
                });
                if !settled {
                    // Another log from the same snapshot appended here
                    // first (or one that was dropped since).
                    self.own(s);
                    let held = &mut unique(&mut self.segments)[s];
                    let owned = Arc::get_mut(&mut held.slots).expect("owned");
                    owned[o] = OnceLock::from(next(&mut pending));
                }
            }
            previous = link;
            self.published += 1;
        }
    }

    /// Sets every full segment's [`Held::end`] from its last slot again,
    /// after published entries were changed and their links rehashed.
    fn refresh_ends(&mut self) {
        let full = self.segments.len().saturating_sub(1);
        let ends: Vec<Hash> = (0..full)
            .map(|s| match self.segments[s].end == STALE {
                true => STALE,
                false => {
                    self.segments[s].slots[SEGMENT_SLOTS - 1]
                        .get()
                        .expect("a full segment")
                        .link
                }
            })
            .collect();
        for (held, end) in unique(&mut self.segments).iter_mut().zip(ends) {
            held.end = end;
        }
    }

    /// The children digest: the last link (the base when empty). Valid
    /// after [`Log::settle`].
    pub fn digest(&self) -> Hash {
        debug_assert!(self.dirty == CLEAN, "digest of a log with stale links");
        debug_assert!(self.pending.is_empty(), "digest of an unsettled log");
        self.tail
    }

    /// Link `i` as cached.
    pub fn link(&self, i: usize) -> Hash {
        self.slot(i).link
    }

    /// Segments in the list, the ones trimmed away included (tests).
    #[cfg(test)]
    pub fn segments_held(&self) -> usize {
        self.segments.len()
    }

    /// Whether `self` and `other` share a segment (tests of appends in
    /// place).
    #[cfg(test)]
    pub fn shares_segment_with(&self, other: &Log) -> bool {
        self.segments.iter().any(|s| {
            other
                .segments
                .iter()
                .any(|o| Arc::ptr_eq(&s.slots, &o.slots))
        })
    }

    /// How `newer`, a later state of this log (both committed), follows
    /// from it: `Some((k, m))` when it is this log with its first `k`
    /// entries trimmed, the next `m` entries the very same (equal links),
    /// and every other entry this log retains still there under the same
    /// name, in place (changed or not), then new ones appended. `None`:
    /// `newer` is another log (deleted and made again, or trimmed to a
    /// base this log never had).
    pub fn continued_by(&self, newer: &Log) -> Option<(usize, usize)> {
        let k = if newer.base == self.base {
            0
        } else {
            // The entry whose link became the base is the last one trimmed:
            // the one just before `newer`'s first, or the last of all.
            let k = match newer.len() {
                0 => self.len(),
                _ => self
                    .search(newer.entry(0).name.as_str())
                    .unwrap_or_else(|i| i),
            };
            if k == 0 || self.link(k - 1) != newer.base {
                return None;
            }
            k
        };
        let kept = self.len() - k;
        if newer.len() < kept {
            return None;
        }
        // Links agree on a prefix and never again (each commits to all
        // before it): find where they part.
        let (mut same, mut differ) = (0, kept);
        while same < differ {
            let mid = same + (differ - same) / 2;
            if self.link(k + mid) == newer.link(mid) {
                same = mid + 1;
            } else {
                differ = mid;
            }
        }
        let in_place = (same..kept).all(|m| self.entry(k + m).name == newer.entry(m).name);
        in_place.then_some((k, same))
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

    pub(super) fn log(&self) -> Option<&Log> {
        match &self.0 {
            Some(Link::Log(log)) => Some(log),
            _ => None,
        }
    }

    /// The log, made unique for mutation (its segments stay shared).
    pub(super) fn log_mut(&mut self) -> Option<&mut Log> {
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
}

impl hash::Chain for Log {
    /// The last link, just hashed: the log settles ([`Log::settle`]).
    fn settle_with_last_link(&mut self, link: Hash) {
        let last = self.len() - 1;
        self.slot_mut(last).link = link;
        self.settle();
        self.tail = link;
    }
}
