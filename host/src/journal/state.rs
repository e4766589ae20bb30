//! Rebuilding the tree of any journaled beat without running anything: the
//! newest checkpoint at or before it, then each later beat's recorded
//! changes, every step checked against the recorded state hash.

use std::path::Path as FsPath;

use super::{checkpoint, Contents};
use crate::cell::{hash, Hash, Snapshot, WorkTree};

/// A rebuilt tree and how it was obtained.
pub struct Rebuilt {
    pub snapshot: Snapshot,
    /// The checkpoint it started from, if any (else the empty tree).
    pub checkpoint: Option<u64>,
    /// Beats whose recorded changes were applied.
    pub beats_applied: usize,
    /// Checkpoints that could not be used, with why (newest first).
    pub skipped: Vec<String>,
}

/// Why a beat's tree cannot be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("beat {beat} is not in the journal (it holds beats {first}..={last})")]
    NoSuchBeat { beat: u64, first: u64, last: u64 },
    #[error("the journal holds no beats")]
    Empty,
    #[error("beat {beat} is not retained: the journal starts after a restart at beat {genesis} and no checkpoint covers it")]
    NotRetained { beat: u64, genesis: u64 },
    #[error("the recorded changes of beat {beat} give state hash {rebuilt}, the journal records {recorded}")]
    Mismatch {
        beat: u64,
        rebuilt: String,
        recorded: String,
    },
    #[error("a recorded change of beat {beat} cannot be applied: {reason}")]
    BadChange { beat: u64, reason: String },
    #[error("run {run} resumes from beat {beat} with hash {recorded}, but the journal's tree there hashes to {rebuilt}")]
    Genesis {
        run: usize,
        beat: u64,
        rebuilt: String,
        recorded: String,
    },
}

/// The index in `contents.beats` of `beat` (beats increase through a
/// journal).
pub fn index_of(contents: &Contents, beat: u64) -> Option<usize> {
    contents.beats.binary_search_by_key(&beat, |b| b.beat).ok()
}

/// The tree of `beat` (the last journaled beat when `None`).
pub fn tree_at(
    data_dir: &FsPath,
    contents: &Contents,
    beat: Option<u64>,
) -> Result<Rebuilt, RebuildError> {
    let (first, last) = match (contents.beats.first(), contents.beats.last()) {
        (Some(f), Some(l)) => (f.beat, l.beat),
        _ => return Err(RebuildError::Empty),
    };
    let beat = beat.unwrap_or(last);
    let target = index_of(contents, beat).ok_or(RebuildError::NoSuchBeat { beat, first, last })?;
    let mut skipped = Vec::new();
    let mut start = None;
    for (ckpt_beat, path) in checkpoint::list(data_dir).into_iter().rev() {
        if ckpt_beat > beat {
            continue;
        }
        let Some(at) = index_of(contents, ckpt_beat) else {
            skipped.push(format!(
                "{}: beat {ckpt_beat} is not in the journal",
                path.display()
            ));
            continue;
        };
        match checkpoint::read(&path) {
            Ok(s) if s.hash() == contents.beats[at].state_hash => {
                start = Some((s, at + 1, ckpt_beat));
                break;
            }
            Ok(_) => skipped.push(format!(
                "{}: its tree differs from the journal's at beat {ckpt_beat}",
                path.display()
            )),
            Err(e) => skipped.push(e.to_string()),
        }
    }
    let (mut snapshot, from, checkpoint) = match start {
        Some((s, from, b)) => (s, from, Some(b)),
        None => {
            if let Some((run, _)) = contents.runs.first() {
                if let Some((genesis, _)) = run.genesis {
                    return Err(RebuildError::NotRetained { beat, genesis });
                }
            }
            (Snapshot::empty(), 0, None)
        }
    };
    for (i, entry) in contents.beats[from..=target].iter().enumerate() {
        let at = from + i;
        if let Some((run, (header, _))) = contents
            .runs
            .iter()
            .enumerate()
            .find(|(_, (_, s))| *s == at)
        {
            match header.genesis {
                None => snapshot = Snapshot::empty(),
                Some((g, h)) => check_genesis(run, g, &h, &snapshot)?,
            }
        }
        let mut tree = WorkTree::new(&snapshot);
        for change in &entry.changes {
            tree.apply(change).map_err(|e| RebuildError::BadChange {
                beat: entry.beat,
                reason: e.to_string(),
            })?;
        }
        snapshot = tree.commit(entry.beat);
        if snapshot.hash() != entry.state_hash {
            return Err(RebuildError::Mismatch {
                beat: entry.beat,
                rebuilt: hash::hex(&snapshot.hash()),
                recorded: hash::hex(&entry.state_hash),
            });
        }
    }
    Ok(Rebuilt {
        snapshot,
        checkpoint,
        beats_applied: target + 1 - from,
        skipped,
    })
}

fn check_genesis(
    run: usize,
    beat: u64,
    recorded: &Hash,
    tree: &Snapshot,
) -> Result<(), RebuildError> {
    if tree.beat() == beat && tree.hash() == *recorded {
        Ok(())
    } else {
        Err(RebuildError::Genesis {
            run,
            beat,
            rebuilt: format!("{} (beat {})", hash::hex(&tree.hash()), tree.beat()),
            recorded: hash::hex(recorded),
        })
    }
}
