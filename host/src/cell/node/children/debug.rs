//! What tests look at: node shapes, sharing and cached facts.

use super::*;

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
