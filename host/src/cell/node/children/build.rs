//! The re-cut at commit: a list whose nodes a batch reshaped is cut
//! again exactly where the hash format says, reusing untouched subtrees.

use super::*;

impl Children {
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
}

/// Whether a reshaped list is still cut exactly as the format says, so it
/// can be finished in place instead of rebuilt: the usual case for an
/// append at the end or a trim at the front. Only reshaped nodes are
/// looked into; the others were cut correctly and did not change.
pub(super) fn still_cut(root: &Link, height: usize) -> bool {
    /// `last`: the node ends the whole list (it may end without a cut).
    pub(super) fn node_ok(link: &Link, level: usize, last: bool) -> bool {
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
pub(super) fn finish_in_place(link: &mut Link) {
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
pub(super) struct Builder {
    /// The open chunk.
    pub(super) entries: Vec<Entry>,
    /// `levels[k]`: the open run of finished level-k nodes.
    pub(super) levels: Vec<Vec<Kid>>,
}

impl Builder {
    /// Whether a finished node of `level` may be added whole: nothing below
    /// its level is open.
    pub(super) fn aligned(&self, level: usize) -> bool {
        self.entries.is_empty() && self.levels.iter().take(level).all(Vec::is_empty)
    }

    /// Adds everything below a root node of `level`.
    pub(super) fn feed_all(&mut self, root: Link, level: usize) {
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
    pub(super) fn feed(&mut self, kid: Kid, level: usize) {
        if !kid.reshaped && self.aligned(level) {
            self.push_kid(level, kid);
            return;
        }
        self.feed_all(kid.link, level);
    }

    /// Adds a reshaped chunk's entries; when they form one correctly cut
    /// chunk by themselves (the usual case), they become it in one copy.
    pub(super) fn push_entries(&mut self, entries: Vec<Entry>) {
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

    pub(super) fn push_entry(&mut self, entry: Entry) {
        let cut = entry.cut();
        self.entries.push(entry);
        if hash::ends_at(0, cut) || self.entries.len() == NODE_ITEMS_MAX {
            let chunk: Arc<[Entry]> = self.entries.drain(..).collect();
            self.push_kid(0, Kid::chunk(chunk));
        }
    }

    /// Adds a finished node of `level`, closing the group above when its
    /// last name or the cap says so.
    pub(super) fn push_kid(&mut self, level: usize, kid: Kid) {
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
    pub(super) fn finish(mut self) -> Option<Kid> {
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
