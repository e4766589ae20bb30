//! Windowed lists: whole chunks taken off the front, the first entries
//! read without walking the rest.

use super::*;

impl Children {
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
}
