//! Large batches of writes that fan out below one cell: looked up in one
//! walk, then shared with a helper thread when the subtree is large.

use super::*;

impl WorkTree {
    /// Whether [`WorkTree::write_all`] may take `count` writes of which
    /// `sample` are some paths (spread over the batch; `write_all` checks
    /// every path again) as one batch. `false`: it would write them one by
    /// one, and a caller may as well do so itself, without gathering the
    /// batch.
    pub fn may_batch(&self, sample: &[&Path], count: usize) -> bool {
        self.fan_out_of(sample, count, Self::SPLIT_CELLS_MIN)
            .is_some()
    }

    /// Where [`WorkTree::write_all`] takes writes to `paths` apart: see
    /// [`WorkTree::fan_out_of`], checked on a sample first (a beat of a
    /// million writes that will not fan out is turned down in
    /// microseconds).
    pub(in crate::cell) fn fan_out(&self, paths: &[&Path], cells_min: usize) -> Option<Fan> {
        let step = (paths.len() / 64).max(1);
        let sample: Vec<&Path> = paths.iter().step_by(step).copied().collect();
        self.fan_out_of(&sample, paths.len(), cells_min)?;
        self.fan_out_of(paths, paths.len(), cells_min)
    }

    /// The deepest cell that every one of `paths` goes below, if a batch of
    /// `count` writes to them is large, fans out there and nothing on the
    /// way to it is sealed (then no write fails above it). It is split
    /// between two threads there when also:
    /// - they go on average more than a level and a half below it (a write
    ///   just below it copies nothing the other thread would not have to
    ///   fetch back);
    /// - the subtree has about `cells_min` cells or more.
    pub(super) fn fan_out_of(
        &self,
        paths: &[&Path],
        count: usize,
        cells_min: usize,
    ) -> Option<Fan> {
        if count < Self::SPLIT_WRITES_MIN || paths.is_empty() {
            return None;
        }
        let first = paths[0].names();
        let (mut common, mut shortest, mut names_in_all) = (first.len(), first.len(), 0);
        for path in paths {
            let names = path.names();
            shortest = shortest.min(names.len());
            names_in_all += names.len();
            common = first[..common]
                .iter()
                .zip(names)
                .take_while(|(a, b)| a == b)
                .count();
        }
        let depth = common.min(shortest.checked_sub(1)?);
        let below = names_in_all - depth * paths.len();
        let fanned = paths.iter().any(|p| p.names()[depth] != first[depth]);
        let batch = fanned
            && self
                .check_unsealed(&Path::from_names(first[..depth].to_vec()))
                .is_ok();
        let wide = batch && self.cells_below(first, depth) >= cells_min;
        let split = wide && 2 * below > 3 * paths.len();
        batch.then_some(Fan { depth, split, wide })
    }

    /// About how many cells lie below the cell at `depth` of `path`: the
    /// product of the child counts along the path (exact in a tree of even
    /// fanout). Splitting pays only on a tree several times the size of a
    /// core's cache: on a smaller one the helper first pulls every node it
    /// writes from the other core's cache, and the rehash pulls them back.
    pub(super) fn cells_below(&self, path: &[Name], depth: usize) -> usize {
        let Some(mut node) = self.root.descend(&path[..depth]) else {
            return 0;
        };
        let mut cells = 1usize;
        for name in &path[depth..] {
            cells = cells.saturating_mul(node.child_count().max(1));
            match node.child(name.as_str()) {
                Some(child) => node = child,
                None => break,
            }
        }
        cells
    }

    /// Writes `writes`, which all go below the cell at `fan.depth` and fan
    /// out there: the children there are looked up (created, copied if
    /// shared) in one walk of its list, then each write goes on from its
    /// child, on this thread or, when `fan.split`, shared with a helper.
    pub(super) fn write_fanned(
        &mut self,
        writes: Vec<(&Path, Value)>,
        fan: Fan,
    ) -> Vec<Result<bool, TreeError>> {
        let Fan { depth, split, wide } = fan;
        let count = writes.len();
        self.root_hash = STALE;
        self.changes += count;
        let names: Vec<&Name> = writes.iter().map(|(p, _)| &p.names()[depth]).collect();
        // The writes in name order (batch order within a name); empty when
        // the batch is in name order already (a beat of targets usually is).
        let mut order: Vec<usize> = Vec::new();
        if !names.is_sorted() {
            order = (0..count).collect();
            order.sort_by(|&a, &b| names[a].cmp(names[b]));
        }
        let in_order = |i: usize| if order.is_empty() { i } else { order[i] };
        let mut distinct: Vec<&Name> = Vec::new();
        // Where each child's writes start in name order, and one past the end.
        let mut starts: Vec<usize> = Vec::new();
        for i in 0..count {
            let name = names[in_order(i)];
            if distinct.last() != Some(&name) {
                distinct.push(name);
                starts.push(i);
            }
        }
        starts.push(count);
        let keys: Vec<&str> = distinct.iter().map(|n| n.as_str()).collect();
        let at = Path::from_names(writes[0].0.names()[..depth].to_vec());
        let node = walk_mut(&mut self.root, &at).expect("unsealed: checked by fan_out");
        if !split {
            return write_walked(node, &keys, &distinct, &order, &starts, writes, depth, wide);
        }
        let order: Vec<usize> = if order.is_empty() {
            (0..count).collect()
        } else {
            order
        };
        let mut entries = match node.children.entries_mut(&keys) {
            Ok(entries) => entries,
            Err(absent) => {
                // Created in name order rather than batch order: the
                // commit's re-cut gives the same list either way.
                for i in absent {
                    node.children.entry_mut(distinct[i], true);
                }
                node.children.entries_mut(&keys).expect("all present now")
            }
        };
        // Each write numbered by the child it goes through.
        let mut child = vec![0; count];
        for (c, span) in starts.windows(2).enumerate() {
            for &w in &order[span[0]..span[1]] {
                child[w] = c;
            }
        }
        // The second half starts at the child of the middle write (never
        // the first child: the paths fan out, so there are two or more).
        let split = child[order[count / 2]].max(1);
        let (mut left, mut right): (Share, Share) = (Vec::new(), Vec::new());
        for (at, (path, value)) in writes.into_iter().enumerate() {
            let share = if child[at] < split {
                &mut left
            } else {
                &mut right
            };
            share.push((at, child[at], path, value));
        }
        let (low, high) = entries.split_at_mut(split);
        let (mut done, other) = crate::cell::node::children::both_halves(
            || write_share(low, 0, left, depth),
            move || write_share(high, split, right, depth),
        );
        done.extend(other);
        let mut results: Vec<Option<Result<bool, TreeError>>> = (0..count).map(|_| None).collect();
        for (at, result) in done {
            results[at] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every write done once"))
            .collect()
    }
}

/// Where [`WorkTree::write_all`] takes a batch apart: the depth of the
/// cell its paths fan out at, and whether it shares the writes out with a
/// helper thread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(in crate::cell) struct Fan {
    pub depth: usize,
    /// The writes are shared between two threads after one walk down the
    /// list at `depth`.
    pub split: bool,
    /// The subtree is large: when the writes are not split, the walk down
    /// the list (which copies its shared nodes) is.
    pub wide: bool,
}

/// The writes of [`WorkTree::write_fanned`] that are not split: each
/// child's writes (positions `starts[c]..starts[c + 1]` in name order, for
/// the child named `keys[c]`; `order` maps them to batch positions, or is
/// empty when they are the same) as the walk down the list at `node`
/// reaches it (its chunk just copied, still in cache); absent children
/// after, created in name order (the commit's re-cut gives the same list
/// either way). When `wide`, the walk is on two threads, each writing its
/// children.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_walked(
    node: &mut Node,
    keys: &[&str],
    distinct: &[&Name],
    order: &[usize],
    starts: &[usize],
    mut writes: Vec<(&Path, Value)>,
    depth: usize,
    wide: bool,
) -> Vec<Result<bool, TreeError>> {
    let count = writes.len();
    // Writes and results in name order: the two halves of the walk take
    // two halves of each.
    let mut sorted: Vec<(&Path, Value)> = if order.is_empty() {
        writes
    } else {
        order
            .iter()
            .map(|&w| {
                (
                    writes[w].0,
                    std::mem::replace(&mut writes[w].1, Value::Null),
                )
            })
            .collect()
    };
    let mut done: Vec<Result<bool, TreeError>> = (0..count).map(|_| Ok(false)).collect();
    /// The visitor for children numbered from `first`, whose writes start
    /// at `starts[first]` in `sorted` and `done`.
    pub(super) fn writer<'s, 'p: 's>(
        first: usize,
        starts: &'s [usize],
        sorted: &'s mut [(&'p Path, Value)],
        done: &'s mut [Result<bool, TreeError>],
        depth: usize,
    ) -> impl FnMut(usize, &mut Entry) + Send + use<'s, 'p> {
        let base = starts[first];
        move |c, entry| {
            for i in starts[c] - base..starts[c + 1] - base {
                let (path, value) = &mut sorted[i];
                let value = std::mem::replace(value, Value::Null);
                done[i] = write_below(entry, path, depth, value);
            }
        }
    }
    let absent = {
        let (sorted, done) = (&mut sorted[..], &mut done[..]);
        let halves = wide.then(|| {
            node.children.each_named_mut_split(keys, |at| {
                let (low_writes, high_writes) = sorted.split_at_mut(starts[at]);
                let (low_done, high_done) = done.split_at_mut(starts[at]);
                (
                    writer(0, starts, low_writes, low_done, depth),
                    writer(at, starts, high_writes, high_done, depth),
                )
            })
        });
        match halves.flatten() {
            Some(absent) => absent,
            None => {
                let mut write = writer(0, starts, sorted, done, depth);
                node.children.each_named_mut(keys, &mut write)
            }
        }
    };
    for c in absent {
        let entry = node.children.entry_mut(distinct[c], true).expect("created");
        writer(0, starts, &mut sorted, &mut done, depth)(c, entry);
    }
    if order.is_empty() {
        return done;
    }
    let mut results: Vec<Result<bool, TreeError>> = (0..count).map(|_| Ok(false)).collect();
    for (&w, result) in order.iter().zip(done) {
        results[w] = result;
    }
    results
}

/// One write of [`WorkTree::write_fanned`] below `entry`, the child it goes
/// through at `depth` of its path.
pub(super) fn write_below(
    entry: &mut Entry,
    path: &Path,
    depth: usize,
    value: Value,
) -> Result<bool, TreeError> {
    let touched = entry.hash == STALE;
    entry.hash = STALE;
    let (node, touched) = walk_on(&mut entry.node, path, depth + 1, touched)?;
    node.value = Some(value);
    Ok(touched)
}

/// A share of [`WorkTree::write_fanned`]'s writes: (position in the batch,
/// the child it goes through, path, value), in batch order.
type Share<'p> = Vec<(usize, usize, &'p Path, Value)>;

/// Applies `share` to `entries` (the children numbered from `first`).
pub(super) fn write_share(
    entries: &mut [&mut Entry],
    first: usize,
    share: Share<'_>,
    depth: usize,
) -> Vec<(usize, Result<bool, TreeError>)> {
    share
        .into_iter()
        .map(|(at, child, path, value)| {
            (at, write_below(entries[child - first], path, depth, value))
        })
        .collect()
}
