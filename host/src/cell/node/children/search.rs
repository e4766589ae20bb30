//! Finding names: sort keys, the search within a node, the route down
//! the chunk tree, and visiting many named entries in one walk.

use super::*;

/// A name's sort key: its first 16 bytes as two big-endian words,
/// zero-padded. Names hold no NUL byte, so comparing keys orders names as
/// `str` does as far as the keys reach, and names shorter than 16 bytes
/// are equal exactly when their keys are. A search compares keys (two
/// integer comparisons, no call) and looks at the names only on a tie.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct SortKey(pub(super) [u64; 2]);

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
    pub(in crate::cell) fn wide(self) -> u128 {
        u128::from(self.0[0]) << 64 | u128::from(self.0[1])
    }
}

/// A name being searched for, with its sort key.
pub(super) struct Needle<'a> {
    pub(super) key: SortKey,
    pub(super) name: &'a str,
}

impl<'a> Needle<'a> {
    pub(super) fn new(name: &'a str) -> Self {
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
pub(super) fn search_by<'a>(
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
pub(super) fn kid_for(kids: &[Kid], needle: &Needle) -> usize {
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

pub(super) fn entry_search(entries: &[Entry], needle: &Needle) -> Result<usize, usize> {
    search_by(
        entries.len(),
        needle,
        |i| entries[i].key,
        |i| entries[i].name.as_str(),
    )
}

/// Where a name is, or would go: the kid taken at each level, then the
/// chunk position.
pub(super) struct Route {
    pub(super) kids: [u8; HEIGHT_MAX],
    pub(super) depth: usize,
    pub(super) at: Result<usize, usize>,
    /// A node on the way holds [`OPEN_ITEMS_MAX`] items: an insert must
    /// split it first.
    pub(super) crowded: bool,
}

/// How an entry or kid whose name is `name` (with its `key`) sorts
/// against `needle`: keys first, names only on a tie of long names.
#[inline(always)]
pub(super) fn order_of(key: SortKey, name: &str, needle: &Needle) -> std::cmp::Ordering {
    match key.wide().cmp(&needle.key.wide()) {
        std::cmp::Ordering::Equal if needle.name.len() >= 16 => name.cmp(needle.name),
        order => order,
    }
}

/// Calls `visit(offset + i, entry)` for the entry named by each of
/// `needles` (distinct, in name order) below `link`, in name order, copying
/// shared nodes on the way down and marking them for rehash; the positions
/// of absent names go to `absent`.
pub(super) fn visit_named<'a>(
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
pub(super) fn kid_ends(kids: &[Kid], needles: &[Needle]) -> Vec<usize> {
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
pub(super) fn visit_kids<'a>(
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
