//! Recovery before a run resumes: a torn tail is cut (a crash left it, and
//! it holds nothing complete); corruption is refused unless the user asked
//! to cut at it, and then what is cut is kept as a copy.

use std::fs::OpenOptions;
use std::path::{Path as FsPath, PathBuf};

use super::read::{read_until_damage, Damage};
use super::{io, segments, Contents, JournalError};

/// What recovery does with a corrupt journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Refuse it ([`JournalError::Corrupt`]): nothing is cut.
    Refuse,
    /// Cut the journal at the damage, moving everything from there on (the
    /// damaged segment's rest and every later segment) into this directory.
    Cut { keep_in: PathBuf },
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Complete frames kept.
    pub frames: u64,
    /// The last complete beat, if any.
    pub last_beat: Option<u64>,
    /// A torn tail that was cut: segment, offset, bytes cut and why.
    pub truncated: Option<(PathBuf, u64, u64, String)>,
    /// Corruption cut at the user's word ([`OnCorrupt::Cut`]), and where
    /// the removed bytes were kept.
    pub cut: Option<(Damage, PathBuf)>,
}

/// Cuts a torn tail off the journal in `dir` (after a crash), so appending
/// continues after the last complete frame; refuses a corrupt journal.
pub fn recover(dir: &FsPath) -> Result<Recovery, JournalError> {
    recover_and_read(dir, &OnCorrupt::Refuse).map(|(recovery, _)| recovery)
}

/// [`recover`] with a choice for corruption, also returning what was read
/// (everything before the cut), so a start-up reads the journal once.
pub fn recover_and_read(
    dir: &FsPath,
    on_corrupt: &OnCorrupt,
) -> Result<(Recovery, Contents), JournalError> {
    if !dir.exists() {
        return Ok(Default::default());
    }
    let mut contents = read_until_damage(dir)?;
    let mut recovery = Recovery::default();
    if let Some(damage) = contents.corrupt.take() {
        let OnCorrupt::Cut { keep_in } = on_corrupt else {
            return Err(JournalError::Corrupt(Box::new(damage)));
        };
        cut_keeping(dir, &damage, keep_in)?;
        tracing::warn!(
            "journal: cut at the damage in {}: {} intact beats removed, kept in {}",
            damage.segment.display(),
            damage.beats_after,
            keep_in.display()
        );
        recovery.cut = Some((damage, keep_in.clone()));
    }
    if let Some((path, offset, why)) = contents.torn.take() {
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        file.set_len(offset).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        tracing::warn!(
            "journal: cut a torn tail of {} bytes from {} at byte {offset}: {why}",
            len - offset,
            path.display()
        );
        recovery.truncated = Some((path, offset, len - offset, why));
    }
    recovery.frames = (contents.runs.len() + contents.beats.len()) as u64;
    recovery.last_beat = contents.beats.last().map(|b| b.beat);
    Ok((recovery, contents))
}

/// Moves everything from `damage` on into `keep_in`: the damaged segment's
/// bytes from the damage (as a file of the segment's name) and every later
/// segment; the damaged segment keeps what came before.
fn cut_keeping(dir: &FsPath, damage: &Damage, keep_in: &FsPath) -> Result<(), JournalError> {
    std::fs::create_dir_all(keep_in).map_err(io(keep_in))?;
    let all = segments(dir)?;
    let from = all
        .iter()
        .position(|p| *p == damage.segment)
        .unwrap_or(all.len());
    for (i, path) in all.iter().enumerate().skip(from) {
        let name = path.file_name().unwrap_or_default();
        let kept = keep_in.join(name);
        if i == from && damage.offset > 0 {
            let bytes = std::fs::read(path).map_err(io(path))?;
            let at = (damage.offset as usize).min(bytes.len());
            std::fs::write(&kept, &bytes[at..]).map_err(io(&kept))?;
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io(path))?;
            file.set_len(damage.offset).map_err(io(path))?;
            file.sync_all().map_err(io(path))?;
        } else {
            move_file(path, &kept)?;
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Renames `from` to `to`, copying across file systems.
pub(crate) fn move_file(from: &FsPath, to: &FsPath) -> Result<(), JournalError> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(io(to))?;
    std::fs::remove_file(from).map_err(io(from))
}
