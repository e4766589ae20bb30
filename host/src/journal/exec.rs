//! Execution documents: every operation dossier (episodes, boot and
//! shutdown included) as plain JSON files a person or another tool can read
//! without cep.
//!
//! Under `<data>/exec/`:
//! - `<protocol>/<uid>/start.json` when the dossier is created,
//!   `end.json` when it closes, `snap-<label>.json` for each labelled
//!   snapshot (`op_snapshot` / `ep_snapshot`). Each is the document
//!   `{uid, protocol, context, parent_uid, beat, status, config, input,
//!   result}` as of that beat, written to a temp file and renamed into
//!   place. Documents hold beats, never wall-clock times, so the same run
//!   writes the same bytes.
//! - `log.jsonl`: one line per creation, state change, snapshot and close
//!   (`{uid, protocol, parent_uid, beat, event, status}`), so the log alone
//!   holds the tree of operations.
//!
//! The documents are derived from each beat's recorded tree changes: the
//! dossiers in `/rt/ops` are the truth, the files their readable copy.
//! Retention removes the oldest closed executions (their directories and
//! their log lines, rewriting the log atomically); open ones are kept.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use serde_json::{json, Map, Value as Json};

use crate::cell::{Change, Name, Path, Snapshot, Value};

/// How many closed executions the documents keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many closed executions (the newest).
    pub executions: Option<usize>,
    /// Keep closed executions only while they closed less than this many
    /// beats ago.
    pub beats: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            executions: Some(10_000),
            beats: None,
        }
    }
}

/// The execution documents of a data directory, being written.
pub struct ExecLog {
    dir: PathBuf,
    log: File,
    retention: Retention,
    /// Closed executions, oldest first: (closed beat, protocol, uid).
    closed: VecDeque<(u64, String, String)>,
}

/// What a beat did to one dossier, in the order it is logged.
#[derive(Default)]
struct Touched {
    start: bool,
    state: bool,
    snaps: BTreeSet<String>,
    end: bool,
}

fn io_err(path: &FsPath) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl ExecLog {
    /// Opens `<data>/exec/`, cutting a torn last line off the log (a crash
    /// in the middle of a write) and reading which executions are closed.
    pub fn open(data_dir: &FsPath, retention: Retention) -> std::io::Result<Self> {
        let dir = data_dir.join("exec");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join("log.jsonl");
        let text = std::fs::read(&path).unwrap_or_default();
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            file.set_len(complete as u64).map_err(io_err(&path))?;
        }
        let mut closed = VecDeque::new();
        for line in String::from_utf8_lossy(&text[..complete]).lines() {
            let Ok(entry) = serde_json::from_str::<Json>(line) else {
                continue;
            };
            if entry["event"] == "end" {
                if let (Some(beat), Some(protocol), Some(uid)) = (
                    entry["beat"].as_u64(),
                    entry["protocol"].as_str(),
                    entry["uid"].as_str(),
                ) {
                    closed.push_back((beat, protocol.to_owned(), uid.to_owned()));
                }
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(ExecLog {
            dir,
            log,
            retention,
            closed,
        })
    }

    /// Writes the documents and log lines of one committed beat.
    pub fn beat(&mut self, beat: u64, changes: &[Change], tree: &Snapshot) -> std::io::Result<()> {
        let mut touched: BTreeMap<Name, Touched> = BTreeMap::new();
        for change in changes {
            let Change::Put { path, .. } = change else {
                continue;
            };
            let names = path.names();
            if names.len() < 4 || names[0].as_str() != "rt" || names[1].as_str() != "ops" {
                continue;
            }
            let t = touched.entry(names[2].clone()).or_default();
            match (names[3].as_str(), names.get(4)) {
                ("envelope", None) => t.start = true,
                ("state", None) => t.state = true,
                ("close", None) => t.end = true,
                ("snaps", Some(label)) if names.len() == 5 => {
                    t.snaps.insert(label.to_string());
                }
                _ => {}
            }
        }
        let mut lines = String::new();
        for (oid, t) in &touched {
            let Some(doc) = document(tree, oid, beat) else {
                continue;
            };
            let protocol = doc["protocol"].as_str().unwrap_or("op").to_owned();
            let at = self.doc_dir(&protocol, oid.as_str());
            let mut events: Vec<(&str, Option<String>)> = Vec::new();
            if t.start {
                write_atomic(&at, "start.json", &doc)?;
                events.push(("start", None));
            } else if t.state {
                events.push(("state", None));
            }
            for label in &t.snaps {
                write_atomic(&at, &format!("snap-{label}.json"), &doc)?;
                events.push(("snapshot", Some(label.clone())));
            }
            if t.end {
                write_atomic(&at, "end.json", &doc)?;
                events.push(("end", None));
                self.closed
                    .push_back((beat, protocol.clone(), oid.to_string()));
            }
            for (event, label) in events {
                let mut line = json!({
                    "uid": oid.as_str(),
                    "protocol": protocol,
                    "parent_uid": doc["parent_uid"],
                    "beat": beat,
                    "event": event,
                    "status": if event == "end" { doc["result"]["status"].clone() } else { doc["status"].clone() },
                });
                if let Some(label) = label {
                    line["label"] = Json::from(label);
                }
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
        }
        if !lines.is_empty() {
            let path = self.dir.join("log.jsonl");
            self.log
                .write_all(lines.as_bytes())
                .map_err(io_err(&path))?;
        }
        self.retain(beat)
    }

    fn doc_dir(&self, protocol: &str, uid: &str) -> PathBuf {
        let mut at = self.dir.clone();
        for part in protocol.split('/').filter(|p| !p.is_empty()) {
            at.push(part);
        }
        at.push(uid);
        at
    }

    /// Removes the closed executions the retention no longer keeps, and
    /// their log lines. To keep compaction cheap it waits until N/8 (at
    /// least 1) executions are due with a count limit N, 16 with only a
    /// beat window: between compactions up to that many more are kept.
    fn retain(&mut self, beat: u64) -> std::io::Result<()> {
        let mut due = 0;
        let mut batch = 16;
        if let Some(keep) = self.retention.executions {
            due = self.closed.len().saturating_sub(keep);
            batch = (keep / 8).max(1);
        }
        if let Some(window) = self.retention.beats {
            let old = self
                .closed
                .iter()
                .take_while(|(closed, ..)| closed + window < beat)
                .count();
            due = due.max(old);
        }
        if due < batch {
            return Ok(());
        }
        let drained: Vec<_> = self.closed.drain(..due).collect();
        let mut gone = BTreeSet::new();
        for (_, protocol, uid) in drained {
            let _ = std::fs::remove_dir_all(self.doc_dir(&protocol, &uid));
            gone.insert(uid);
        }
        let path = self.dir.join("log.jsonl");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<Json>(line)
                    .ok()
                    .and_then(|l| l["uid"].as_str().map(|u| !gone.contains(u)))
                    .unwrap_or(false)
            })
            .flat_map(|l| [l, "\n"])
            .collect();
        let tmp = self.dir.join("log.jsonl.tmp");
        std::fs::write(&tmp, kept).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.log = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(())
    }
}

/// Writes `doc` to `dir/name` through a temp file and a rename.
fn write_atomic(dir: &FsPath, name: &str, doc: &Json) -> std::io::Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut text = serde_json::to_string_pretty(doc).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// A cell value as JSON: bytes as `{"bytes": "<hex>"}`, a non-finite float
/// as its text.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::from(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) if f.is_finite() => Json::from(*f),
        Value::F64(f) => Json::from(f.to_string()),
        Value::Text(t) => Json::from(t.as_str()),
        Value::Bytes(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            json!({ "bytes": hex })
        }
    }
}

/// The execution document of dossier `oid` as of `beat`.
pub fn document(tree: &Snapshot, oid: &Name, beat: u64) -> Option<Json> {
    let base = Path::parse("/rt/ops").ok()?.child(oid.clone());
    let node = tree.node(&base)?;
    let field = |parts: &[&str]| {
        let mut n = node;
        for p in parts {
            n = n.child(p)?;
        }
        n.value().map(value_json)
    };
    let text = |parts: &[&str]| field(parts).unwrap_or(Json::Null);
    let protocol = field(&["envelope", "verb"])
        .and_then(|v| v.as_str().map(|s| s.trim_start_matches('/').to_owned()))
        .unwrap_or_else(|| "op".to_owned());
    let result = if node.child("close").is_some() {
        json!({
            "status": text(&["close", "status"]),
            "summary": text(&["close", "summary"]),
            "beat": text(&["close", "beat"]),
        })
    } else {
        Json::Null
    };
    let mut snaps = Map::new();
    if let Some(s) = node.child("snaps") {
        s.for_each_child(&mut |label, n| {
            snaps.insert(
                label.to_string(),
                n.value().map(value_json).unwrap_or(Json::Null),
            );
        });
    }
    Some(json!({
        "uid": oid.as_str(),
        "protocol": protocol,
        "context": {
            "target": text(&["envelope", "target"]),
            "issued": text(&["envelope", "issued"]),
            "snapshots": snaps,
        },
        "parent_uid": text(&["envelope", "parent"]),
        "beat": beat,
        "status": text(&["state"]),
        "config": {
            "mode": text(&["envelope", "mode"]),
            "ttl": text(&["envelope", "ttl"]),
        },
        "input": text(&["envelope", "payload"]),
        "result": result,
    }))
}
