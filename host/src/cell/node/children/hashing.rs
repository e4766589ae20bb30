//! What changed in a batch, handed to the commit's hash batches level
//! by level.

use super::*;

impl Children {
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

/// Collects the stale entries below `link` that have a hash of their own;
/// the others (small leaves, hashed in their chunk) are marked [`INLINE`]
/// on the way, so a list of leaves is walked once.
pub(super) fn collect_stale<'a>(link: &'a mut Link, out: &mut Vec<&'a mut Entry>) {
    pub(super) fn take<'a>(
        entries: impl Iterator<Item = &'a mut Entry>,
        out: &mut Vec<&'a mut Entry>,
    ) {
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

/// Adds the stale nodes at `level` below `link` (a group at `link_level`).
pub(super) fn stale_at<'a>(
    link: &'a mut Link,
    link_level: usize,
    level: usize,
    batch: &mut Batch<'a>,
) {
    let Link::Group(kids) = link else {
        unreachable!("a node above level 0 is a group")
    };
    if !kids.iter().any(|k| k.hash == STALE) {
        return;
    }
    stale_in(own(kids), link_level, level, batch);
}

/// [`stale_at`] over the kids of a group at `link_level` (already owned).
pub(super) fn stale_in<'a>(
    kids: &'a mut [Kid],
    link_level: usize,
    level: usize,
    batch: &mut Batch<'a>,
) {
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
pub(super) fn push_hash_input<'a>(
    link: &Link,
    level: usize,
    dest: Dest<'a>,
    batch: &mut Batch<'a>,
) {
    match link {
        Link::Group(kids) => batch.push(dest, |buf| {
            hash::put_group(buf, level as u8, kids.iter().map(|k| &k.hash))
        }),
        chunk => batch.push(dest, |buf| {
            hash::put_chunk(buf, chunk.entries().iter().map(|e| (&e.name, e.item())))
        }),
    }
}
