//! Reading a journal back, and telling a torn tail from corruption.
//!
//! A journal is read frame by frame, and every frame must both decode
//! (magic, sizes, CRC, records) and follow its predecessor: a run header
//! names its run (0, 1, 2, …) and starts at the beat after the last one
//! journaled, from that beat's tree; a beat is the one after the last; a
//! segment's first frame is the beat its file is named for. The first frame
//! that does not is where the journal is damaged, and what is there decides
//! what it is:
//!
//! - a **torn tail**: in the last segment, bytes that cannot start a frame or
//!   a frame whose length runs past the end of the file, with no intact
//!   frame anywhere after them. A crash mid-append leaves exactly this;
//!   recovery cuts it and loses nothing that was complete.
//! - **corruption**: anything else — a complete frame that fails its CRC or
//!   its structure, a frame out of order or repeated, a bad run header, or
//!   damage of any kind that intact frames follow. Nothing is cut without
//!   the user's word ([`super::recover::OnCorrupt`]).
//!
//! Nothing here writes.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path as FsPath, PathBuf};

use cep_sdk::flat::{self, Frame, FrameError, Limits};

use super::codec;
use super::{io, segments, Contents, JournalError, RunHeader};

/// Where a journal is damaged, what is wrong there, and what intact data
/// follows the damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// The byte of that file where the damage starts.
    pub offset: u64,
    /// The last intact beat before the damage (none: no beat before it).
    pub last_beat: Option<u64>,
    /// What is wrong there.
    pub what: String,
    /// Intact (CRC-valid) beat frames after the damage, which cutting the
    /// journal there would delete.
    pub beats_after: u64,
    /// The lowest and highest of those beats.
    pub beat_range_after: Option<(u64, u64)>,
    /// Bytes from the damage to the end of the journal (its segment's rest
    /// and every later segment).
    pub bytes_after: u64,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} at byte {}, ",
            self.segment.display(),
            self.offset
        )?;
        match self.last_beat {
            Some(beat) => write!(f, "after beat {beat}")?,
            None => write!(f, "before any beat")?,
        }
        write!(f, ": {}", self.what)?;
        match self.beat_range_after {
            Some((first, last)) => write!(
                f,
                "; {} intact beats ({first}..={last}) follow it in {} bytes",
                self.beats_after, self.bytes_after
            ),
            None => write!(
                f,
                "; {} bytes follow it, none an intact beat",
                self.bytes_after
            ),
        }
    }
}

/// Reads every frame of the journal in `dir` up to its end or its first
/// damage. A torn tail is reported in [`Contents::torn`], corruption in
/// [`Contents::corrupt`]; everything before either is returned. Errors are
/// only what makes the journal unreadable as a whole: I/O, and a journal of
/// another state-hash format.
pub fn read_until_damage(dir: &FsPath) -> Result<Contents, JournalError> {
    read_segments(&segments(dir)?, &read_file)
}

/// [`read_until_damage`] over segments named `files` (in order), whose bytes
/// `load` gives; one segment is held at a time.
pub fn read_segments(
    files: &[PathBuf],
    load: &dyn Fn(&FsPath) -> Result<Vec<u8>, JournalError>,
) -> Result<Contents, JournalError> {
    let limits = Limits::default();
    let mut contents = Contents::default();
    for (n, path) in files.iter().enumerate() {
        let bytes = load(path)?;
        let named = segment_beat(path);
        let mut at = 0usize;
        while at < bytes.len() {
            let problem = match next_frame(&bytes[at..], &limits) {
                Ok((frame, len)) => {
                    let first_of_segment = (at == 0).then_some(named);
                    match accept(&mut contents, &frame, first_of_segment) {
                        Ok(()) => {
                            at += len;
                            continue;
                        }
                        Err(Refusal::HashFormat(found)) => {
                            return Err(JournalError::HashFormat {
                                path: path.clone(),
                                found,
                                expected: crate::cell::hash::FORMAT_VERSION,
                            })
                        }
                        Err(Refusal::Corrupt(what)) => Problem {
                            what,
                            incomplete: false,
                        },
                    }
                }
                Err(problem) => problem,
            };
            let after = intact_after(&bytes[at..], &files[n + 1..], load, &limits)?;
            let last_segment = n + 1 == files.len();
            if last_segment && problem.incomplete && after.frames == 0 {
                contents.torn = Some((path.clone(), at as u64, problem.what));
            } else {
                contents.corrupt = Some(Damage {
                    segment: path.clone(),
                    offset: at as u64,
                    last_beat: contents.beats.last().map(|b| b.beat),
                    what: problem.what,
                    beats_after: after.beats,
                    beat_range_after: after.beat_range,
                    bytes_after: after.bytes,
                });
            }
            return Ok(contents);
        }
    }
    Ok(contents)
}

/// [`read_until_damage`], refusing a corrupt journal
/// ([`JournalError::Corrupt`]); a torn tail is reported, not refused.
pub fn read(dir: &FsPath) -> Result<Contents, JournalError> {
    let mut contents = read_until_damage(dir)?;
    match contents.corrupt.take() {
        Some(damage) => Err(JournalError::Corrupt(Box::new(damage))),
        None => Ok(contents),
    }
}

fn read_file(path: &FsPath) -> Result<Vec<u8>, JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    Ok(bytes)
}

/// The beat a segment file is named for (`<20 digits>.seg`).
fn segment_beat(path: &FsPath) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Why the bytes at some offset are not the next frame.
struct Problem {
    what: String,
    /// Whether a crash mid-append could have left them: too few bytes for a
    /// header, a length past the end, or bytes that cannot start a frame.
    /// A complete frame that fails its CRC or structure is not.
    incomplete: bool,
}

/// The frame at the start of `rest` and its length.
fn next_frame(rest: &[u8], limits: &Limits) -> Result<(Frame, usize), Problem> {
    let incomplete = |what: String| Problem {
        what,
        incomplete: true,
    };
    match flat::frame_len(rest, limits) {
        Ok(None) => Err(incomplete(
            FrameError::Truncated {
                needed: flat::HEADER_LEN,
                have: rest.len(),
            }
            .to_string(),
        )),
        Ok(Some(len)) if len > rest.len() => Err(incomplete(
            FrameError::Truncated {
                needed: len,
                have: rest.len(),
            }
            .to_string(),
        )),
        Ok(Some(len)) => flat::decode(&rest[..len], limits)
            .map(|frame| (frame, len))
            .map_err(|e| Problem {
                what: e.to_string(),
                incomplete: false,
            }),
        Err(e) => Err(incomplete(format!("cannot start a frame: {e}"))),
    }
}

enum Refusal {
    Corrupt(String),
    HashFormat(u8),
}

/// Adds `frame` to `contents` if it follows what is there.
/// `segment_first` is the beat the segment is named for when `frame` is
/// its first frame.
fn accept(
    contents: &mut Contents,
    frame: &Frame,
    segment_first: Option<Option<u64>>,
) -> Result<(), Refusal> {
    match segment_first {
        Some(None) => {
            return Err(Refusal::Corrupt(
                "the segment's name is not a beat number (<20 digits>.seg)".into(),
            ))
        }
        Some(Some(named)) if named != frame.beat => {
            return Err(Refusal::Corrupt(format!(
                "the segment is named for beat {named}, but its first frame is for beat {}",
                frame.beat
            )))
        }
        _ => {}
    }
    let corrupt = |what: String| Refusal::Corrupt(what);
    match frame.kind {
        codec::FRAME_HEADER => {
            let header = codec::read_header(frame).map_err(|e| corrupt(e.to_string()))?;
            if header.hash_format != crate::cell::hash::FORMAT_VERSION {
                return Err(Refusal::HashFormat(header.hash_format));
            }
            follows(contents, &header).map_err(corrupt)?;
            contents.runs.push((header, contents.beats.len()));
        }
        codec::FRAME_BEAT => {
            let Some((header, start)) = contents.runs.last() else {
                return Err(corrupt("a beat frame before any run header".into()));
            };
            let expected = match contents.beats.last() {
                Some(last) if contents.beats.len() > *start => last.beat + 1,
                _ => header.first_beat,
            };
            if frame.beat != expected {
                return Err(corrupt(format!(
                    "beat {} where beat {expected} must follow",
                    frame.beat
                )));
            }
            if let (Some(run), Some(current)) = (codec::beat_run(frame), header.run) {
                if run != current {
                    return Err(corrupt(format!(
                        "beat {} of run {run} in run {current}",
                        frame.beat
                    )));
                }
            }
            let entry = codec::read_beat(frame).map_err(|e| corrupt(e.to_string()))?;
            contents.beats.push(entry);
        }
        kind => return Err(corrupt(format!("unexpected frame type {kind}"))),
    }
    Ok(())
}

/// Whether a run header follows the runs and beats before it: the next run
/// id, the beat after the last one, resuming from that beat's tree.
fn follows(contents: &Contents, header: &RunHeader) -> Result<(), String> {
    let runs = contents.runs.len() as u64;
    if let Some(run) = header.run {
        if run != runs {
            return Err(format!(
                "a run header for run {run} where run {runs} must follow"
            ));
        }
    }
    match (contents.beats.last(), contents.runs.last()) {
        (Some(last), _) => {
            if header.first_beat != last.beat + 1 {
                return Err(format!(
                    "a run header starting at beat {} after beat {}",
                    header.first_beat, last.beat
                ));
            }
            if header.genesis != Some((last.beat, last.state_hash)) {
                return Err(format!(
                    "a run header that does not resume from beat {} (the last one journaled) and its hash",
                    last.beat
                ));
            }
        }
        (None, Some((previous, _))) if header.first_beat != previous.first_beat => {
            return Err(format!(
                "a run header starting at beat {} after a run that journaled no beat from {}",
                header.first_beat, previous.first_beat
            ))
        }
        _ => {}
    }
    Ok(())
}

/// Intact frames found after some damage.
#[derive(Default)]
struct After {
    frames: u64,
    beats: u64,
    beat_range: Option<(u64, u64)>,
    bytes: u64,
}

/// Scans `rest` (from the damage to the end of its segment) and the later
/// segment files for intact frames, at any byte offset.
fn intact_after(
    rest: &[u8],
    later: &[PathBuf],
    load: &dyn Fn(&FsPath) -> Result<Vec<u8>, JournalError>,
    limits: &Limits,
) -> Result<After, JournalError> {
    let mut after = After::default();
    scan(rest, limits, &mut after);
    for path in later {
        let bytes = load(path)?;
        scan(&bytes, limits, &mut after);
    }
    Ok(after)
}

fn scan(bytes: &[u8], limits: &Limits, after: &mut After) {
    after.bytes += bytes.len() as u64;
    let mut at = 0usize;
    while let Some(found) = find_magic(&bytes[at..]) {
        at += found;
        match next_frame(&bytes[at..], limits) {
            Ok((frame, len)) => {
                after.frames += 1;
                if frame.kind == codec::FRAME_BEAT {
                    after.beats += 1;
                    let (lo, hi) = after.beat_range.unwrap_or((frame.beat, frame.beat));
                    after.beat_range = Some((lo.min(frame.beat), hi.max(frame.beat)));
                }
                at += len;
            }
            Err(_) => at += 1,
        }
    }
}

fn find_magic(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(flat::MAGIC.len())
        .position(|w| w == flat::MAGIC)
}
