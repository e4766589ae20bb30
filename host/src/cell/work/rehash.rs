//! The commit's rehash: every stale cell, list and chunk, depth by depth,
//! in SIMD batches, with a helper thread where it pays.

use super::*;

/// Recomputes the hashes of `nodes` (cells that changed, none inside
/// another) and of their stale descendants; returns the cell hashes in
/// order.
///
/// The work goes depth by depth, so that every hash of one kind at one
/// level is computed in one [`Batch`]: first every stale cell one level
/// down (recursively), then each list's re-cut, then its chunk tree level
/// by level (chunks of all lists together, then their groups, …), then the
/// cell hashes. A commit that changed many cells side by side (a beat's
/// dossiers, a thousand scattered writes) thus hashes in SIMD lanes.
///
/// `par` says what may go to a helper thread: the stale cells one level
/// down when there are many ([`Par::cells`]), and a long list's lower
/// levels when the commit changed many cells ([`Par::wide`]).
pub(super) fn rehash_cells(nodes: &mut [&mut Node], par: Par) -> Vec<Hash> {
    let wide = par.wide;
    let mut digests: Vec<Option<Hash>> = vec![None; nodes.len()];
    // Rounds of log links: one per stale link of a log (each needs the one
    // before), every log's round in one batch.
    let mut rounds = 0;
    {
        let mut stale: Vec<&mut Entry> = Vec::new();
        for (node, digest) in nodes.iter_mut().zip(digests.iter_mut()) {
            rounds = rounds.max(node.children.relinks());
            *digest = node.children.clean_log_digest();
            if wide && node.children.len() >= WorkTree::WIDE_LIST_MIN {
                node.children.stale_entries_wide(&mut stale);
            } else {
                node.children.stale_entries(&mut stale);
            }
        }
        if !stale.is_empty() {
            let mut below: Vec<&mut Node> = stale.iter_mut().map(|e| &mut e.node).collect();
            let hashes = if par.cells && below.len() >= WorkTree::PAR_CELLS_MIN {
                // Disjoint subtrees: each half hashed on its own thread
                // (and no further helpers), the same hashes either way.
                let mid = below.len() / 2;
                let (low, high) = below.split_at_mut(mid);
                let (mut hashes, high) = crate::cell::node::children::both_halves(
                    || rehash_cells(low, Par::NONE),
                    || rehash_cells(high, Par::NONE),
                );
                hashes.extend(high);
                hashes
            } else {
                rehash_cells(&mut below, par)
            };
            drop(below);
            for (entry, hash) in stale.iter_mut().zip(hashes) {
                entry.hash = hash;
            }
        }
    }
    // The re-cuts go with the first round: one walk over the cells.
    let mut height = None;
    for round in 0..rounds.max(1) {
        let mut batch = Batch::new(Role::Link);
        for (node, digest) in nodes.iter_mut().zip(digests.iter_mut()) {
            if round == 0 {
                node.children.recut();
                height = height.max(node.children.height());
            }
            node.children.link_job(round, &mut batch, digest);
        }
        batch.finish();
    }
    if let Some(height) = height {
        for level in 0..=height {
            // One batch per level: its hashes are the next level's inputs.
            let role = if level == 0 { Role::Chunk } else { Role::Group };
            let mut batch = Batch::new(role);
            for (node, digest) in nodes.iter_mut().zip(digests.iter_mut()) {
                if wide && node.children.len() >= WorkTree::WIDE_LIST_MIN {
                    node.children.hash_jobs_wide(level, digest, &mut batch);
                } else {
                    node.children.hash_jobs(level, digest, &mut batch);
                }
            }
            batch.finish();
        }
    }
    let mut hashes = vec![STALE; nodes.len()];
    let mut batch = Batch::new(Role::Cell);
    for ((node, digest), slot) in nodes.iter().zip(&digests).zip(hashes.iter_mut()) {
        batch.push(Dest::Hash(slot), |buf| {
            hash::put_cell(
                buf,
                node.hashed_flags(),
                node.value.as_ref(),
                node.children.len() as u64,
                digest.as_ref(),
            )
        });
    }
    batch.finish();
    hashes
}

/// Children visited by [`CellMut::each_existing_child`] are hashed this
/// many at a time, right after their visits, instead of by the commit: a
/// beat's walk over a thousand dossiers writes more than the core's cache
/// holds, so the commit's rehash found each dossier evicted again.
/// Measured on 1k yielding episodes (`example beat_spread`, 16
/// alternating runs): 64 at a time 4–5 % faster per slice than all at
/// the end, 32 at a time 2 %.
pub(super) const HASH_AHEAD: usize = 64;

/// Hashes `entries` (changed cells, none inside another) now, as the
/// commit would, and empties the list. A later change below one of them
/// marks it stale again on its way down.
pub(super) fn hash_now(entries: &mut Vec<&mut Entry>) {
    let inline: Vec<bool> = entries.iter().map(|e| is_inline(&e.node)).collect();
    let hashes = {
        let mut nodes: Vec<&mut Node> = entries
            .iter_mut()
            .zip(&inline)
            .filter(|(_, &inline)| !inline)
            .map(|(e, _)| &mut e.node)
            .collect();
        rehash_cells(&mut nodes, Par::NONE)
    };
    let mut hashes = hashes.into_iter();
    for (entry, inline) in entries.drain(..).zip(inline) {
        entry.hash = match inline {
            true => super::hash::INLINE,
            false => hashes.next().expect("one hash per hashed cell"),
        };
    }
}

/// What [`rehash_cells`] may hand to a helper thread.
#[derive(Clone, Copy)]
pub(super) struct Par {
    /// Half of many stale cells at one depth (once: not again inside).
    pub(super) cells: bool,
    /// Half of a long list's lower levels.
    pub(super) wide: bool,
}

impl Par {
    const NONE: Par = Par {
        cells: false,
        wide: false,
    };
}
