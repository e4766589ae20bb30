//! Checkpoints: the whole tree of one beat, so that rebuilding a beat's tree
//! starts from the nearest checkpoint instead of the first beat.
//!
//! A checkpoint is the file `<data>/checkpoints/<beat, 20 digits>.ckpt`: a
//! sequence of deflated flat frames, a header (type 3: the beat, the state
//! hash, the number of cells) then parts (type 4) of up to
//! [`CELLS_PER_PART`] cells each, as the journal's change records (`c/<i>`).
//! It is written to a `.tmp` file, fsynced, renamed, and the directory
//! fsynced: a crash leaves either the old set of checkpoints or the new one.
//! Reading rebuilds the tree and checks its Merkle hash against the
//! header's; a checkpoint that does not verify is skipped, not trusted.

use std::fs::File;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use cep_sdk::flat::{self, Encoding, Frame, Limits, Record};

use super::codec::{self, RecordError};
use crate::cell::{self, Hash, Snapshot, WorkTree};

/// Frame type of a checkpoint's header.
pub const FRAME_CHECKPOINT: u16 = 3;
/// Frame type of a part of a checkpoint's cells.
pub const FRAME_CHECKPOINT_PART: u16 = 4;
/// Cells per part frame.
pub const CELLS_PER_PART: usize = 4096;

/// Why a checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} at byte {offset}: {error}")]
    Frame {
        path: PathBuf,
        offset: usize,
        error: flat::FrameError,
    },
    #[error("checkpoint {path}: {error}")]
    Record { path: PathBuf, error: RecordError },
    #[error("checkpoint {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The checkpoint directory of a data directory.
pub fn dir(data_dir: &FsPath) -> PathBuf {
    data_dir.join("checkpoints")
}

fn file_name(beat: u64) -> String {
    format!("{beat:020}.ckpt")
}

/// The checkpoints under `data_dir`, as (beat, file), oldest first. Files
/// whose names are not checkpoint names are ignored.
pub fn list(data_dir: &FsPath) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    out.sort();
    out
}

/// Writes the checkpoint of `snapshot` (the tree of `beat`) atomically.
/// Returns the file written.
pub fn write(
    data_dir: &FsPath,
    beat: u64,
    snapshot: &Snapshot,
) -> Result<PathBuf, CheckpointError> {
    let dir = dir(data_dir);
    let io = |path: &FsPath| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let cells = cell::diff(&Snapshot::empty(), snapshot);
    let deflate = Encoding { deflate: true };
    let mut bytes = Vec::new();
    let header = Frame {
        kind: FRAME_CHECKPOINT,
        beat,
        records: vec![
            Record::new("cells", (cells.len() as u64).to_le_bytes()),
            Record::new("h", snapshot.hash().to_vec()),
        ],
    };
    flat::encode_into(&header, deflate, &mut bytes);
    for (part, chunk) in cells.chunks(CELLS_PER_PART).enumerate() {
        let first = part * CELLS_PER_PART;
        let records = chunk
            .iter()
            .enumerate()
            .map(|(i, c)| Record::new(format!("c/{:012}", first + i), codec::change_body(c)))
            .collect();
        let frame = Frame {
            kind: FRAME_CHECKPOINT_PART,
            beat,
            records,
        };
        flat::encode_into(&frame, deflate, &mut bytes);
    }
    let path = dir.join(file_name(beat));
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    Ok(path)
}

/// Reads a checkpoint back: the tree of its beat, verified against the
/// state hash it records.
pub fn read(path: &FsPath) -> Result<Snapshot, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })?;
    decode(&bytes, path)
}

/// A checkpoint's bytes read back (`path` names it in errors).
pub fn decode(bytes: &[u8], path: &FsPath) -> Result<Snapshot, CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let limits = Limits::default();
    let mut at = 0usize;
    let mut frames = Vec::new();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let frame_err = |error| CheckpointError::Frame {
            path: path.to_owned(),
            offset: at,
            error,
        };
        let len = flat::frame_len(rest, &limits)
            .map_err(frame_err)?
            .filter(|&len| len <= rest.len())
            .ok_or_else(|| invalid(format!("truncated at byte {at}")))?;
        frames.push(flat::decode(&rest[..len], &limits).map_err(frame_err)?);
        at += len;
    }
    let mut frames = frames.into_iter();
    let header = frames
        .next()
        .filter(|f| f.kind == FRAME_CHECKPOINT)
        .ok_or_else(|| invalid("does not start with a checkpoint header".into()))?;
    let field = |key: &[u8]| {
        header
            .records
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.body.as_slice())
    };
    let cells = field(b"cells")
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| invalid("no cell count".into()))?;
    let hash: Hash = field(b"h")
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("no state hash".into()))?;
    let mut tree = WorkTree::new(&Snapshot::empty());
    let mut seen = 0u64;
    for frame in frames {
        if frame.kind != FRAME_CHECKPOINT_PART || frame.beat != header.beat {
            return Err(invalid(format!(
                "unexpected frame type {} for beat {}",
                frame.kind, frame.beat
            )));
        }
        for record in &frame.records {
            let change =
                codec::read_change_record(record).map_err(|error| CheckpointError::Record {
                    path: path.to_owned(),
                    error,
                })?;
            tree.apply(&change)
                .map_err(|e| invalid(format!("cell {seen}: {e}")))?;
            seen += 1;
        }
    }
    if seen != cells {
        return Err(invalid(format!(
            "holds {seen} cells, its header says {cells}"
        )));
    }
    let snapshot = tree.commit(header.beat);
    if snapshot.hash() != hash {
        return Err(invalid(format!(
            "the rebuilt tree hashes to {}, the checkpoint records {}",
            cell::hash::hex(&snapshot.hash()),
            cell::hash::hex(&hash)
        )));
    }
    Ok(snapshot)
}

/// Deletes all but the newest `keep` checkpoints (at least one is kept).
pub fn prune(data_dir: &FsPath, keep: usize) {
    let all = list(data_dir);
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, path) in &all[..excess] {
        let _ = std::fs::remove_file(path);
    }
}
