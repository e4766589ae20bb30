//! The beat journal: what a run received from outside, beat by beat, so
//! that `cep replay --verify` can run it again and prove every state hash.
//!
//! A journal is a directory of segment files `<first beat, 20 digits>.seg`,
//! each a sequence of flat frames (`cep_sdk::flat`): a run header (the
//! configuration text, the plugin set with file hashes, the first beat),
//! then one frame per beat holding the inputs captured from outside
//! (injections and adapter inputs, with their sources and sequence
//! numbers), the decisions taken between beats (plugin reloads), and the
//! resulting state hash. Everything a beat computes from these is
//! deterministic, so this is all a replay needs.
//!
//! Durability: frames are appended; `fsync` runs every beat, every N
//! beats, or never ([`Fsync`]). A segment rolls over at `segment_bytes`.
//! A crash can leave a torn last frame: [`recover`] cuts it and reports it;
//! nothing before it is lost. Damage that is not a torn tail (a bad frame
//! that intact frames follow, a frame out of order) is corruption, which
//! is refused, never cut silently ([`read`] says which is which).
//!
//! Each beat also records the changes it made to the tree, so the tree of
//! any journaled beat can be rebuilt from the nearest [`checkpoint`]
//! without running a plugin ([`state::tree_at`]), and a replay that
//! diverges can name the cells it got wrong.

pub mod checkpoint;
pub mod codec;
pub mod exec;
mod live;
pub mod read;
pub mod recorder;
pub mod recover;
pub mod replay;
pub mod state;

pub use live::{run_live, LiveRun};
pub use read::{read, read_segments, read_until_damage, Damage};
pub use recorder::{recover_data_dir, Recorder, Recovered};
pub use recover::{recover, recover_and_read, OnCorrupt, Recovery};
pub use replay::{inspect, replay};

pub use crate::plugin::PluginRecord;

/// Where the journal's drivers report: `cep` prints `out` on standard
/// output and `note` on standard error.
pub trait Console {
    fn out(&mut self, text: &str) -> anyhow::Result<()>;
    fn note(&mut self, text: &str);
}

/// A journal, data directory or plugin set that makes the request
/// impossible as asked (`cep` exits 2 on it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use cep_sdk::flat::{self, Encoding};

use crate::cell::{Change, Hash};
use crate::impulse::Input;

/// When appended frames are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every beat: a crash loses nothing committed (slowest).
    EveryBeat,
    /// After every N beats: a crash loses at most the last N beats.
    Every(u64),
    /// Never explicitly: the OS decides (a power loss can lose more than
    /// the last beats; a process crash loses nothing written).
    Never,
}

/// Journal settings.
#[derive(Debug, Clone, Copy)]
pub struct JournalConfig {
    pub fsync: Fsync,
    /// A new segment starts once the current one is this large.
    pub segment_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            fsync: Fsync::Every(64),
            segment_bytes: 64 << 20,
        }
    }
}

/// What a run started from. The default is an empty run of the current
/// state-hash format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHeader {
    /// The configuration file's text (empty: the embedded default world).
    pub config: String,
    /// The directory relative plugin paths in it are relative to.
    pub config_dir: String,
    /// The first beat the run computes.
    pub first_beat: u64,
    /// The run's number in its journal (0, 1, 2, …: one more per restart),
    /// so that a repeated or missing run is seen; `None` in journals
    /// written before headers recorded it.
    pub run: Option<u64>,
    pub plugins: Vec<PluginRecord>,
    /// BLAKE3 over the plugins' names, versions and file hashes.
    pub plugin_set_hash: [u8; 32],
    /// A run that resumed after a restart starts from the tree of this
    /// beat (with this state hash), rebuilt from the data directory; a run
    /// without it starts from the empty tree.
    pub genesis: Option<(u64, Hash)>,
    /// The state-hash format its hashes were computed with
    /// ([`crate::cell::hash::FORMAT_VERSION`]; 1 for journals written
    /// before the header said).
    pub hash_format: u8,
}

impl Default for RunHeader {
    fn default() -> Self {
        RunHeader {
            config: String::new(),
            config_dir: String::new(),
            first_beat: 0,
            run: Some(0),
            plugins: Vec::new(),
            plugin_set_hash: [0; 32],
            genesis: None,
            hash_format: crate::cell::hash::FORMAT_VERSION,
        }
    }
}

impl RunHeader {
    /// The plugin-set hash of `plugins`.
    pub fn plugin_set_hash_of(plugins: &[PluginRecord]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for p in plugins {
            for part in [p.name.as_bytes(), p.version.as_bytes(), &p.file_hash] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        *h.finalize().as_bytes()
    }
}

/// A decision taken between beats, applied before the beat it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A plugin reload from this file.
    Reload { file: String },
    /// Shutdown began (inputs closed, `op/shdn` started).
    Shutdown,
    /// The episode was cancelled for exceeding its CPU budget (measured
    /// time, so recorded; applied by the beat's commit).
    CpuCancel { eid: String, used_ns: u64 },
}

/// One beat as journaled.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BeatEntry {
    pub beat: u64,
    /// Decisions applied before the beat ran.
    pub decisions: Vec<Decision>,
    /// Inputs captured from outside, in capture order.
    pub inputs: Vec<Input>,
    /// What the beat changed in the tree (parents first): enough to rebuild
    /// any beat's tree from a checkpoint without running anything, and to
    /// name the cells a replay got wrong.
    pub changes: Vec<Change>,
    pub state_hash: Hash,
}

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the journal is damaged (not a torn tail): {0}")]
    Corrupt(Box<Damage>),
    #[error("journal segment {path}: recorded with state-hash format v{found}, but this cep computes v{expected} (docs/formats.md); its hashes cannot be verified or resumed here: use the cep that wrote it, or start a new data directory")]
    HashFormat {
        path: PathBuf,
        found: u8,
        expected: u8,
    },
}

pub(crate) fn io(path: &FsPath) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An open journal, appending.
pub struct Journal {
    dir: PathBuf,
    config: JournalConfig,
    file: File,
    path: PathBuf,
    size: u64,
    unsynced: u64,
    buf: Vec<u8>,
    /// The run its beats belong to (from the header it was opened with).
    run: Option<u64>,
}

fn segment_name(first_beat: u64) -> String {
    format!("{first_beat:020}.seg")
}

/// The segment files of `dir`, in order.
pub fn segments(dir: &FsPath) -> Result<Vec<PathBuf>, JournalError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    Ok(out)
}

impl Journal {
    /// Starts a journal in `dir` (created if needed) with a run header;
    /// appends after what is there (run [`recover`] first).
    pub fn open(
        dir: &FsPath,
        config: JournalConfig,
        header: &RunHeader,
    ) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = match segments(dir)?.pop() {
            Some(last) => last,
            None => dir.join(segment_name(header.first_beat)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        let mut journal = Journal {
            dir: dir.to_owned(),
            config,
            file,
            path,
            size,
            unsynced: 0,
            buf: Vec::new(),
            run: header.run,
        };
        journal.write_frame(&codec::header_frame(header))?;
        journal.sync()?;
        Ok(journal)
    }

    fn write_frame(&mut self, frame: &flat::Frame) -> Result<(), JournalError> {
        self.buf.clear();
        flat::encode_into(frame, Encoding::default(), &mut self.buf);
        self.file.write_all(&self.buf).map_err(io(&self.path))?;
        self.size += self.buf.len() as u64;
        Ok(())
    }

    /// Appends one beat, syncing and rolling as configured.
    pub fn append(&mut self, entry: &BeatEntry) -> Result<(), JournalError> {
        if self.size >= self.config.segment_bytes {
            self.roll(entry.beat)?;
        }
        self.write_frame(&codec::beat_frame(entry, self.run))?;
        self.unsynced += 1;
        match self.config.fsync {
            Fsync::EveryBeat => self.sync()?,
            Fsync::Every(n) if self.unsynced >= n.max(1) => self.sync()?,
            _ => {}
        }
        Ok(())
    }

    /// Forces what was appended to disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io(&self.path))?;
        self.unsynced = 0;
        Ok(())
    }

    fn roll(&mut self, first_beat: u64) -> Result<(), JournalError> {
        self.sync()?;
        let path = self.dir.join(segment_name(first_beat));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.path = path;
        self.size = 0;
        // The directory entry of the new segment must survive a crash too.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// A journal read back.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Each run's header, with the index in `beats` of its first beat.
    pub runs: Vec<(RunHeader, usize)>,
    pub beats: Vec<BeatEntry>,
    /// A torn tail that was not read: segment, offset and why.
    pub torn: Option<(PathBuf, u64, String)>,
    /// Where the journal is corrupt, when it is ([`read_until_damage`]);
    /// `runs` and `beats` hold what precedes it.
    pub corrupt: Option<Damage>,
}
