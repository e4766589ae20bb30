//! OPS dossiers: the record of every long-lived operation in the tree.
//!
//! Owns the dossier layout under `/rt/ops/<oid>`, the state machine of one
//! operation (start → states → close), its history, and its watchers. Every
//! change arrives as an [`OpsIntent`] applied at commit in canonical order;
//! watchers are evaluated at the end of every commit, after all intents.
//!
//! ```text
//! /rt/ops/<oid>/envelope/   [sealed] verb, target, mode, ttl, issued, payload?, parent?
//!                           an episode's too: callback, signal, max_beats,
//!                           io_budget, cpu_budget_ns
//!              /state       "ist:…"
//!              /io_used     an episode's accounted bytes, once it has any
//!              /history/    [log] <beat>[.<n>] = "<state>"   code, note when set
//!              /watchers/<w>             with want, cont, deadline, armed
//!              /close/      [sealed] status, beat, summary
//! ```
//!
//! Must not touch: what an operation *does* — enzymes and episodes drive it
//! through intents; this module only keeps its record consistent.

use std::collections::BTreeMap;

use cep_sdk::{Name, Path, Value};

use crate::cei::{Fact, Severity};
use crate::cell::{CellMut, NameOrder, Node, Snapshot, TreeError, WorkTree};
use crate::impulse::Impulse;

/// Where dossiers live.
pub const OPS_ROOT: &str = "/rt/ops";
/// The signal an expired watcher emits, targeted at its dossier.
pub const TIMEOUT_SIGNAL: &str = "op/tmo";

/// [`TIMEOUT_SIGNAL`] as a path, parsed once.
pub(crate) fn timeout_signal() -> &'static Path {
    static TMO: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
    TMO.get_or_init(|| Path::parse(TIMEOUT_SIGNAL).expect("static path"))
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    Ok,
    Fail,
    Cancel,
}

impl OpStatus {
    /// `sts:ok`, `sts:fail`, `sts:cnl`.
    pub fn sts(self) -> &'static str {
        match self {
            OpStatus::Ok => "sts:ok",
            OpStatus::Fail => "sts:fail",
            OpStatus::Cancel => "sts:cnl",
        }
    }

    /// The final state a close sets: `ist:ok`, `ist:fail`, `ist:cxl`.
    pub fn ist(self) -> &'static str {
        match self {
            OpStatus::Ok => "ist:ok",
            OpStatus::Fail => "ist:fail",
            OpStatus::Cancel => "ist:cxl",
        }
    }
}

/// What starts an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OpSpec {
    /// What the operation is, as a signal-like path (`op/boot`, `op/ep`, …).
    pub verb: Path,
    pub target: Option<Path>,
    /// Free text, e.g. `opm:states`.
    pub mode: String,
    pub payload: Option<Value>,
    /// Beats the operation is expected to live; 0 = unbounded. Recorded only.
    pub ttl_beats: u64,
    /// The operation or episode this one was started for: set by the
    /// kernel when an enzyme starts it from an episode slice or from an
    /// impulse aimed at a dossier. Execution documents carry it as
    /// `parent_uid`, so nested operations form a tree.
    pub parent: Option<Name>,
}

impl OpSpec {
    pub fn new(verb: Path) -> Self {
        OpSpec {
            verb,
            target: None,
            mode: "opm:states".to_owned(),
            payload: None,
            ttl_beats: 0,
            parent: None,
        }
    }
}

/// A watcher: when the dossier's state equals `want`, `cont` is emitted at the
/// dossier for the next beat; when `ttl_beats` pass first, `op/tmo` is.
#[derive(Debug, Clone, PartialEq)]
pub struct AwaitSpec {
    pub want: String,
    /// 0 = never expires.
    pub ttl_beats: u64,
    pub cont: Path,
    pub payload: Option<Value>,
    /// Where `cont` (or `op/tmo`) is targeted; `None`: the watched dossier.
    /// Episodes awaiting another dossier are woken at their own.
    pub reply_to: Option<Path>,
}

/// One change to the dossiers, applied at commit.
#[derive(Debug, Clone, PartialEq)]
pub enum OpsIntent {
    Start {
        oid: Name,
        spec: OpSpec,
        state: String,
        /// More envelope fields, sealed with it: an episode's callback,
        /// signal and budgets.
        details: Vec<(&'static str, Value)>,
    },
    State {
        oid: Name,
        state: String,
        code: i64,
        note: String,
    },
    Await {
        oid: Name,
        spec: AwaitSpec,
    },
    Close {
        oid: Name,
        status: OpStatus,
        summary: String,
    },
    /// A labelled snapshot of the dossier for its execution document:
    /// `snaps/<label>` records the beat (taking the same label again
    /// moves it).
    Snapshot {
        oid: Name,
        label: Name,
    },
}

/// Why an OPS intent was refused. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpsError {
    #[error("operation {oid} does not exist")]
    Unknown { oid: Name },
    #[error("operation {oid} already exists")]
    Exists { oid: Name },
    #[error("operation {oid} is closed ({status}); its state cannot change")]
    Closed { oid: Name, status: String },
    #[error("operation {oid} is already closed {had}; it cannot be closed {asked}")]
    CloseConflict {
        oid: Name,
        had: String,
        asked: String,
    },
    #[error("operation {oid}: {source}")]
    Tree { oid: Name, source: TreeError },
}

impl OpsError {
    /// The CEI topic a refused intent is reported under.
    pub fn topic(&self) -> &'static str {
        match self {
            OpsError::Unknown { .. } => "ops:unknown",
            OpsError::Exists { .. } => "ops:exists",
            OpsError::Closed { .. } => "ops:closed",
            OpsError::CloseConflict { .. } => "ops:close/conflict",
            OpsError::Tree { .. } => "ops:tree",
        }
    }
}

fn name(text: &str) -> Name {
    Name::new(text).expect("static field name")
}

/// The field names of a dossier, made once.
struct Fields {
    state: Name,
    history: Name,
    code: Name,
    note: Name,
    close: Name,
    status: Name,
}

fn fields() -> &'static Fields {
    static FIELDS: std::sync::OnceLock<Fields> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| Fields {
        state: name("state"),
        history: name("history"),
        code: name("code"),
        note: name("note"),
        close: name("close"),
        status: name("status"),
    })
}

/// `/rt/ops/<oid>`.
pub fn dossier(oid: &Name) -> Path {
    field(oid, &[])
}

/// `/rt/ops/<eid>/io_used`: the bytes an episode has accounted, written
/// from its first accounted byte on (absent: none).
pub(crate) fn io_used(eid: &Name) -> Path {
    field(eid, &["io_used"])
}

/// The names of `/rt/ops/<oid>`, on the stack.
fn dossier_names(oid: &Name) -> [Name; 3] {
    let [rt, ops] = ops_root();
    [rt.clone(), ops.clone(), oid.clone()]
}

fn ops_root() -> &'static [Name; 2] {
    static ROOT: std::sync::OnceLock<[Name; 2]> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| [name("rt"), name("ops")])
}

/// `/rt/ops/<oid>/<parts…>`, built in one allocation.
fn field(oid: &Name, parts: &[&str]) -> Path {
    let root = ops_root();
    let mut names = Vec::with_capacity(3 + parts.len());
    names.extend(root.iter().cloned());
    names.push(oid.clone());
    names.extend(parts.iter().map(|p| name(p)));
    Path::from_names(names)
}

/// The current state of `oid` in a snapshot.
pub fn state(snapshot: &Snapshot, oid: &Name) -> Option<String> {
    snapshot
        .read(&field(oid, &["state"]))
        .and_then(Value::as_text)
        .map(str::to_owned)
}

/// The history of `oid` as (state, beat) pairs, oldest first.
pub fn history(snapshot: &Snapshot, oid: &Name) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Some(node) = snapshot.node(&field(oid, &["history"])) {
        node.for_each_child(&mut |name, entry| {
            let state = entry.value().and_then(Value::as_text).unwrap_or_default();
            let beat = history_entry_beat(name).unwrap_or(0);
            out.push((state.to_owned(), beat));
        });
    }
    out
}

/// Transitions of one dossier in one beat that get an entry of their own;
/// later ones in that beat replace the last entry.
pub const HISTORY_PER_BEAT_MAX: u32 = 1000;

/// The name of a history entry: the beat (10 digits, as index names), then
/// `.001`, `.002`, … for the second, third, … transition in that beat.
fn history_entry_name(beat: u64, rank: u32) -> Name {
    if rank == 0 {
        Name::from_index(beat)
    } else {
        Name::new(&format!("{beat:010}.{rank:03}")).expect("digits and a dot")
    }
}

/// A history entry name's beat digits and rank digits ("" for rank 0).
/// Split at the dot, not at fixed places: past beat 9,999,999,999 the beat
/// has more than 10 digits.
fn history_entry_parts(name: &Name) -> (&str, &str) {
    let text = name.as_str();
    text.split_once('.').unwrap_or((text, ""))
}

/// The beat a history entry records.
pub fn history_entry_beat(name: &Name) -> Option<u64> {
    history_entry_parts(name).0.parse().ok()
}

fn history_entry_rank(name: &Name) -> u32 {
    history_entry_parts(name).1.parse().unwrap_or(0)
}

/// Whether `name` is an entry of the beat whose first entry is `first`
/// (`first` itself or a later rank), without parsing either.
fn history_entry_of(name: &Name, first: &Name) -> bool {
    let (name, first) = (name.as_str().as_bytes(), first.as_str().as_bytes());
    name.starts_with(first) && name.get(first.len()).is_none_or(|&b| b == b'.')
}

#[derive(Debug, Clone)]
struct Watcher {
    want: String,
    cont: Path,
    reply_to: Option<Path>,
    /// The beat whose commit expires it; `None` never.
    deadline: Option<u64>,
    payload: Option<Value>,
}

/// A watcher that fired or expired at commit.
pub(crate) struct Firing {
    pub impulse: Impulse,
    pub fact: Option<Fact>,
}

/// The live watchers, indexed (the tree holds the same data; this index only
/// saves scanning every dossier at every commit). Ordered, so firing order is
/// canonical: by dossier id, then watcher id.
#[derive(Clone)]
pub(crate) struct Ops {
    watchers: BTreeMap<(Name, Name), Watcher>,
    next_watcher: u64,
    history_max: usize,
    /// The last `oids` of [`Ops::transition_all`] and their dossier order.
    transition_order: (Vec<Name>, NameOrder),
}

fn tree_err(oid: &Name) -> impl Fn(TreeError) -> OpsError + '_ {
    move |source| OpsError::Tree {
        oid: oid.clone(),
        source,
    }
}

fn current_state(tree: &WorkTree, oid: &Name) -> Option<String> {
    tree.read(&field(oid, &["state"]))
        .and_then(Value::as_text)
        .map(str::to_owned)
}

/// A beat with the name of its first history entry, made once for all the
/// transitions of a beat that go together ([`Ops::transition_all`]).
struct Stamp {
    beat: u64,
    first: Name,
}

impl Stamp {
    fn new(beat: u64) -> Self {
        Stamp {
            beat,
            first: history_entry_name(beat, 0),
        }
    }
}

/// Sets the state of the dossier under `cell` and records the transition in
/// its history, unless the newest entry is of this beat with the same state.
/// An entry is one cell (see [`history_entry_name`]) whose value is the
/// state; it holds `code` and `note` only when they are set (0 and ""
/// otherwise), so a transition usually costs one leaf. An unchanged state
/// value is not rewritten. `value` is `state` as a text value, made once
/// by a caller that sets many dossiers.
fn set_state(
    cell: &mut CellMut<'_>,
    state: &str,
    value: &Value,
    stamp: &Stamp,
    code: i64,
    note: &str,
    history_max: usize,
) -> Result<(), TreeError> {
    let beat = stamp.beat;
    fn text(node: Option<&Node>) -> Option<&str> {
        node.and_then(Node::value).and_then(Value::as_text)
    }
    let f = fields();
    if text(cell.node().child(f.state.as_str())) != Some(state) {
        cell.write(&f.state, value.clone())?;
    }
    // A log: an entry is appended in place and hashed in one block.
    let mut history = cell.log_child(&f.history)?;
    let mut later = None;
    if let Some((last_name, last)) = history.node().last_child_named() {
        if history_entry_of(last_name, &stamp.first) {
            if text(Some(last)) == Some(state) {
                return Ok(());
            }
            let rank = (history_entry_rank(last_name) + 1).min(HISTORY_PER_BEAT_MAX - 1);
            later = Some(history_entry_name(beat, rank));
        }
    }
    // Keep at least the newest `history_max` entries (older ones go a
    // segment at a time): the tree holds a recent window, the journal and
    // the execution documents hold the whole record.
    let name = later.as_ref().unwrap_or(&stamp.first);
    let mut entry = history.push_windowed(name, history_max)?;
    entry.set_value(value.clone());
    // Past HISTORY_PER_BEAT_MAX the entry is a replaced one: drop its fields.
    if entry.node().child_count() > 0 {
        for (field, set) in [(&f.code, code != 0), (&f.note, !note.is_empty())] {
            if !set {
                entry.remove_child(field)?;
            }
        }
    }
    if code != 0 {
        entry.write(&f.code, Value::I64(code))?;
    }
    if !note.is_empty() {
        entry.write(&f.note, Value::text(note))?;
    }
    Ok(())
}

/// The status a dossier was closed with, if it was.
fn closed_in(dossier: &Node) -> Option<String> {
    let f = fields();
    dossier
        .child(f.close.as_str())?
        .child(f.status.as_str())?
        .value()
        .and_then(Value::as_text)
        .map(str::to_owned)
}

impl Ops {
    /// `history_max`: history entries kept per dossier.
    pub(crate) fn new(history_max: usize) -> Self {
        Ops {
            watchers: BTreeMap::new(),
            next_watcher: 0,
            history_max,
            transition_order: Default::default(),
        }
    }

    /// Applies one intent at the commit of `beat`.
    /// Applies `intents` (taking each out), as [`Ops::apply`] one after
    /// another would, and returns the refusals with the position of the
    /// intent refused, in order. Each run of consecutive state changes goes
    /// in dossier order (stable: one dossier's changes keep their order):
    /// they commute, each touching only its own dossier, and in name order
    /// the walk down `/rt/ops` finds most of the next dossier's path still
    /// in cache (a beat of 100k `op_state`s in the order they were started
    /// costs ≈ 10 % more). `order` is a buffer kept between beats.
    pub(crate) fn apply_all(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        intents: &mut [Option<OpsIntent>],
        order: &mut Vec<u32>,
    ) -> Vec<(usize, OpsError)> {
        fn state_oid(intent: &Option<OpsIntent>) -> Option<&Name> {
            match intent {
                Some(OpsIntent::State { oid, .. }) => Some(oid),
                _ => None,
            }
        }
        order.clear();
        order.extend(0..intents.len() as u32);
        let mut start = 0;
        while start < intents.len() {
            let run = intents[start..]
                .iter()
                .take_while(|i| state_oid(i).is_some())
                .count();
            if run > 1 {
                // Stable, and quick on calls already nearly in order (a
                // merge sort finds the runs; `sort_unstable` measured 5 %
                // slower per op here).
                order[start..start + run].sort_by(|&a, &b| {
                    state_oid(&intents[a as usize]).cmp(&state_oid(&intents[b as usize]))
                });
            }
            start += run.max(1);
        }
        let mut refused = Vec::new();
        for &at in order.iter() {
            let intent = intents[at as usize].take().expect("each intent once");
            if let Err(e) = self.apply(tree, beat, intent) {
                refused.push((at as usize, e));
            }
        }
        refused.sort_by_key(|&(at, _)| at);
        refused
    }

    pub(crate) fn apply(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        intent: OpsIntent,
    ) -> Result<(), OpsError> {
        match intent {
            OpsIntent::Start {
                oid,
                spec,
                state,
                details,
            } => {
                if tree.node(&dossier(&oid)).is_some() {
                    return Err(OpsError::Exists { oid });
                }
                let err = tree_err(&oid);
                let envelope = |f: &str| field(&oid, &["envelope", f]);
                tree.write(&envelope("verb"), Value::from(spec.verb.to_string()))
                    .map_err(&err)?;
                let target = spec
                    .target
                    .as_ref()
                    .map(Path::to_string)
                    .unwrap_or_default();
                tree.write(&envelope("target"), Value::from(target))
                    .map_err(&err)?;
                tree.write(&envelope("mode"), Value::from(spec.mode))
                    .map_err(&err)?;
                tree.write(&envelope("ttl"), Value::I64(spec.ttl_beats as i64))
                    .map_err(&err)?;
                tree.write(&envelope("issued"), Value::I64(beat as i64))
                    .map_err(&err)?;
                if let Some(payload) = spec.payload {
                    tree.write(&envelope("payload"), payload).map_err(&err)?;
                }
                if let Some(parent) = &spec.parent {
                    tree.write(&envelope("parent"), Value::text(parent.as_str()))
                        .map_err(&err)?;
                }
                for (name, value) in details {
                    tree.write(&envelope(name), value).map_err(&err)?;
                }
                tree.seal(&field(&oid, &["envelope"])).map_err(&err)?;
                let mut cell = tree.cell_mut(&dossier(&oid)).map_err(&err)?;
                set_state(
                    &mut cell,
                    &state,
                    &Value::text(&state),
                    &Stamp::new(beat),
                    0,
                    "",
                    self.history_max,
                )
                .map_err(&err)
            }
            OpsIntent::State {
                oid,
                state,
                code,
                note,
            } => self.transition(tree, beat, &oid, &state, code, &note),
            OpsIntent::Snapshot { oid, label } => {
                match tree.node(&dossier(&oid)) {
                    None => return Err(OpsError::Unknown { oid }),
                    Some(node) => {
                        if let Some(status) = closed_in(node) {
                            return Err(OpsError::Closed { oid, status });
                        }
                    }
                }
                tree.write(
                    &field(&oid, &["snaps", label.as_str()]),
                    Value::I64(beat as i64),
                )
                .map_err(tree_err(&oid))
            }
            OpsIntent::Await { oid, spec } => {
                if tree.node(&dossier(&oid)).is_none() {
                    return Err(OpsError::Unknown { oid });
                }
                let wid = Name::from_index(self.next_watcher);
                self.next_watcher += 1;
                let armed = current_state(tree, &oid).as_deref() == Some(spec.want.as_str());
                let deadline = (spec.ttl_beats > 0).then(|| beat + spec.ttl_beats);
                let at = |f: &str| field(&oid, &["watchers", wid.as_str(), f]);
                let err = tree_err(&oid);
                tree.write(&at("want"), Value::text(&spec.want))
                    .map_err(&err)?;
                tree.write(&at("cont"), Value::from(spec.cont.to_string()))
                    .map_err(&err)?;
                tree.write(
                    &at("deadline"),
                    Value::I64(deadline.map_or(-1, |d| d as i64)),
                )
                .map_err(&err)?;
                tree.write(&at("armed"), Value::Bool(armed)).map_err(&err)?;
                let watcher = Watcher {
                    want: spec.want,
                    cont: spec.cont,
                    reply_to: spec.reply_to,
                    deadline,
                    payload: spec.payload,
                };
                drop(err);
                self.watchers.insert((oid, wid), watcher);
                Ok(())
            }
            OpsIntent::Close {
                oid,
                status,
                summary,
            } => {
                let Some(node) = tree.node(&dossier(&oid)) else {
                    return Err(OpsError::Unknown { oid });
                };
                if let Some(had) = closed_in(node) {
                    return if had == status.sts() {
                        Ok(())
                    } else {
                        Err(OpsError::CloseConflict {
                            oid,
                            had,
                            asked: status.sts().to_owned(),
                        })
                    };
                }
                let err = tree_err(&oid);
                tree.write(
                    &field(&oid, &["close", "status"]),
                    Value::text(status.sts()),
                )
                .map_err(&err)?;
                tree.write(&field(&oid, &["close", "beat"]), Value::I64(beat as i64))
                    .map_err(&err)?;
                tree.write(&field(&oid, &["close", "summary"]), Value::from(summary))
                    .map_err(&err)?;
                tree.seal(&field(&oid, &["close"])).map_err(&err)?;
                let mut cell = tree.cell_mut(&dossier(&oid)).map_err(&err)?;
                set_state(
                    &mut cell,
                    status.ist(),
                    &Value::text(status.ist()),
                    &Stamp::new(beat),
                    0,
                    "",
                    self.history_max,
                )
                .map_err(&err)
            }
        }
    }

    /// Applies `OpsIntent::State` (without building one): sets the state of
    /// `oid` and records the transition.
    pub(crate) fn transition(
        &self,
        tree: &mut WorkTree,
        beat: u64,
        oid: &Name,
        state: &str,
        code: i64,
        note: &str,
    ) -> Result<(), OpsError> {
        let Some(mut cell) = tree
            .existing_mut_at(&dossier_names(oid))
            .map_err(tree_err(oid))?
        else {
            return Err(OpsError::Unknown { oid: oid.clone() });
        };
        if let Some(status) = closed_in(cell.node()) {
            return Err(OpsError::Closed {
                oid: oid.clone(),
                status,
            });
        }
        set_state(
            &mut cell,
            state,
            &Value::text(state),
            &Stamp::new(beat),
            code,
            note,
            self.history_max,
        )
        .map_err(tree_err(oid))
    }

    /// [`Ops::transition`] of every dossier in `oids` to `state` (no code,
    /// no note), in one walk down `/rt/ops` in dossier order
    /// ([`CellMut::each_existing_child`]): transitions of different dossiers commute, and
    /// one dossier's are the same transition, whose repeats collapse.
    /// Dossiers that are missing or closed are left alone, as are those
    /// the tree refuses (the episode engine, the one caller, drops those
    /// refusals one by one too).
    ///
    /// The dossier order of the last call's `oids` is kept: episodes that
    /// yield beat after beat come in the same agenda order every beat, and
    /// comparing the list costs a tenth of sorting it again.
    pub(crate) fn transition_all(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        oids: &[Name],
        state: &str,
    ) {
        let Ok(Some(mut list)) = tree.existing_mut_at(ops_root()) else {
            return;
        };
        let (last, order) = &mut self.transition_order;
        if last.as_slice() != oids {
            *order = NameOrder::of(oids);
            last.clear();
            last.extend_from_slice(oids);
        }
        let (stamp, history_max) = (Stamp::new(beat), self.history_max);
        // One value for every dossier: a new text per dossier cost 41 of
        // a yielding slice's ≈ 8,200 instructions (callgrind).
        let value = Value::text(state);
        let _ = list.each_existing_child(oids, order, &mut |mut cell| {
            if closed_in(cell.node()).is_none() {
                let _ = set_state(&mut cell, state, &value, &stamp, 0, "", history_max);
            }
        });
    }

    /// Evaluates every watcher at the end of the commit of `beat`: a matched
    /// one emits its continuation, an expired one `op/tmo` and a `warn` fact;
    /// both are removed.
    pub(crate) fn fire(&mut self, tree: &mut WorkTree, beat: u64) -> Vec<Firing> {
        let mut firings = Vec::new();
        let mut done = Vec::new();
        for ((oid, wid), watcher) in &self.watchers {
            let matched = current_state(tree, oid).as_deref() == Some(watcher.want.as_str());
            let expired = watcher.deadline.is_some_and(|d| beat >= d);
            if !matched && !expired {
                continue;
            }
            let target = watcher.reply_to.clone().unwrap_or_else(|| dossier(oid));
            let firing = if matched {
                let mut impulse = Impulse::targeted(watcher.cont.clone(), target);
                impulse.payload = watcher.payload.clone();
                Firing {
                    impulse,
                    fact: None,
                }
            } else {
                let note = format!(
                    "watcher {wid} on {oid} waiting for {} expired at beat {beat}",
                    watcher.want
                );
                Firing {
                    impulse: Impulse::targeted(timeout_signal().clone(), target.clone()),
                    fact: Some(
                        Fact::new(Severity::Warn, "ops:await/timeout", note).subject(Some(target)),
                    ),
                }
            };
            firings.push(firing);
            done.push((oid.clone(), wid.clone()));
        }
        for key in done {
            self.watchers.remove(&key);
            let _ = tree.delete(&field(&key.0, &["watchers", key.1.as_str()]));
        }
        firings
    }

    /// Watchers still waiting.
    pub(crate) fn waiting(&self) -> usize {
        self.watchers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entry names read back as the beat and rank they were made from, and
    /// a beat's entries are told from the next beat's, also past ten digits
    /// (where the first ten digits of two beats can agree).
    #[test]
    fn history_entry_names_keep_beat_and_rank_at_every_width() {
        for beat in [0, 7, 9_999_999_999, 12_345_678_901, u64::MAX / 2] {
            let first = history_entry_name(beat, 0);
            for rank in [0, 1, 5, HISTORY_PER_BEAT_MAX - 1] {
                let name = history_entry_name(beat, rank);
                assert_eq!(history_entry_beat(&name), Some(beat), "{name}");
                assert_eq!(history_entry_rank(&name), rank, "{name}");
                assert!(history_entry_of(&name, &first), "{name} of {first}");
                let next = history_entry_name(beat + 1, 0);
                assert!(!history_entry_of(&name, &next), "{name} not of {next}");
                assert!(!history_entry_of(&next, &first), "{next} not of {first}");
            }
        }
    }
}
