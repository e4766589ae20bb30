//! The enzyme context: the host API as an enzyme sees it during compute.
//!
//! Reads go to the committed snapshot of the previous beat. Writes, deletes,
//! appends, emissions, CEI facts and registrations are *staged* as intents,
//! tagged with the caller's agenda position, and applied only at commit.

use std::sync::Arc;

use cep_sdk::{EnzymeDescriptor, Name, Path, Value};

use super::{Enzyme, EnzymeSpec};
use crate::cei::{Fact, Severity};
use crate::cell::{Node, Snapshot};
use crate::episode::{
    self, EpisodeOp, EpisodeSpec, GuardError, Lease, SliceEnd, SliceInfo, SliceTicket,
};
use crate::impulse::Impulse;
use crate::ops::{AwaitSpec, OpSpec, OpStatus, OpsIntent};

/// One staged intent, tagged with the agenda position that produced it.
pub(crate) struct Staged {
    pub pos: u32,
    pub op: Op,
}

pub(crate) enum Op {
    Write(Path, Value),
    Delete(Path),
    Append(Path, Value),
    Emit(Box<(Impulse, u32)>),
    Cei(Box<Fact>),
    Register(Box<(EnzymeDescriptor, Arc<dyn Enzyme>)>),
    Bind(Box<(Path, Name, bool)>),
    Unbind(Box<(Path, Name)>),
    Ops(Box<OpsIntent>),
    Episode(Box<EpisodeOp>),
    /// A slice of episode `eid` yielded, with no IO accounted, no CPU
    /// measured, no cancellation and no failure: the `SliceDone` of almost
    /// every slice, staged without an allocation.
    Yielded(Name),
    /// The call asked to run again next beat.
    Retry,
    /// The call failed (returned fatal or panicked); the message says why.
    Fatal(Box<str>),
}

/// Why a host call made by an enzyme was refused. A CEI `usage` fact has
/// been staged too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("enzyme {enzyme} may not change {path}: outside its writes scopes {scopes}")]
    OutOfScope {
        enzyme: String,
        path: String,
        scopes: String,
    },
}

/// What an enzyme call can see and do.
pub struct EnzymeCx<'a> {
    pub(crate) beat: u64,
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) impulse: &'a Impulse,
    pub(crate) spec: &'a EnzymeSpec,
    pub(crate) pos: u32,
    pub(crate) out: &'a mut Vec<Staged>,
    /// Operations this call started, for their ids.
    pub(crate) ops_started: u32,
    /// Set when this call is a slice of an episode.
    pub(crate) slice: Option<&'a SliceInfo>,
    /// Set when the host failed the call (a plugin limit was hit): the
    /// call ends `fatal` with this message whatever it returns.
    pub(crate) failed: Option<String>,
}

impl<'a> EnzymeCx<'a> {
    /// The beat being computed.
    pub fn beat(&self) -> u64 {
        self.beat
    }

    pub fn impulse(&self) -> &Impulse {
        self.impulse
    }

    pub fn signal(&self) -> &Path {
        &self.impulse.signal
    }

    pub fn target(&self) -> Option<&Path> {
        self.impulse.target.as_ref()
    }

    pub fn payload(&self) -> Option<&Value> {
        self.impulse.payload.as_ref()
    }

    /// The name of the enzyme being run.
    pub fn enzyme(&self) -> &Name {
        &self.spec.name
    }

    /// The committed snapshot of the previous beat.
    pub fn snapshot(&self) -> &'a Snapshot {
        self.snapshot
    }

    pub fn read(&self, path: &Path) -> Option<&'a Value> {
        self.snapshot.read(path)
    }

    pub fn node(&self, path: &Path) -> Option<&'a Node> {
        self.snapshot.node(path)
    }

    pub fn exists(&self, path: &Path) -> bool {
        self.snapshot.exists(path)
    }

    pub fn children(&self, path: &Path) -> Vec<Name> {
        self.snapshot.children(path)
    }

    fn stage(&mut self, op: Op) {
        self.out.push(Staged { pos: self.pos, op });
    }

    fn check_scope(&mut self, path: &Path) -> Result<(), HostError> {
        if self.spec.may_write(path) {
            return Ok(());
        }
        let scopes = self
            .spec
            .writes
            .iter()
            .map(Path::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let err = HostError::OutOfScope {
            enzyme: self.spec.name.to_string(),
            path: path.to_string(),
            scopes,
        };
        self.cei_fact(
            Fact::new(Severity::Usage, "enzyme:scope", err.to_string())
                .origin(self.spec.name.to_string())
                .subject(Some(path.clone())),
        );
        Err(err)
    }

    /// Stages setting the value of the cell at `path` (created with its
    /// ancestors when absent).
    pub fn write(&mut self, path: &Path, value: impl Into<Value>) -> Result<(), HostError> {
        self.check_scope(path)?;
        self.stage(Op::Write(path.clone(), value.into()));
        Ok(())
    }

    /// Stages deleting the cell at `path` and its subtree.
    pub fn delete(&mut self, path: &Path) -> Result<(), HostError> {
        self.check_scope(path)?;
        self.stage(Op::Delete(path.clone()));
        Ok(())
    }

    /// Stages adding an index-named child holding `value` under `path`.
    pub fn append(&mut self, path: &Path, value: impl Into<Value>) -> Result<(), HostError> {
        self.check_scope(path)?;
        self.stage(Op::Append(path.clone(), value.into()));
        Ok(())
    }

    /// Emits an impulse for the next beat.
    pub fn emit(&mut self, impulse: Impulse) {
        self.emit_after(0, impulse);
    }

    /// Emits an impulse for `delay` beats after the next one.
    pub fn emit_after(&mut self, delay: u32, impulse: Impulse) {
        self.stage(Op::Emit(Box::new((impulse, delay))));
    }

    /// Fails this call: it ends `fatal` with `message` whatever its enzyme
    /// returns (the first failure wins). Used by the host API when a
    /// plugin hits a limit.
    pub fn fail_call(&mut self, message: String) {
        self.failed.get_or_insert(message);
    }

    /// Records a CEI fact at commit, with this enzyme as its origin.
    pub fn cei(&mut self, severity: Severity, topic: &str, note: &str, subject: Option<&Path>) {
        let note = crate::cei::capped(note, crate::cei::OUTCOME_MESSAGE_BYTES_MAX);
        let fact = Fact::new(severity, topic, note.into_owned())
            .origin(self.spec.name.to_string())
            .subject(subject.cloned());
        self.cei_fact(fact);
    }

    fn cei_fact(&mut self, fact: Fact) {
        self.stage(Op::Cei(Box::new(fact)));
    }

    /// The id of the next operation or episode this call starts:
    /// `<beat>-<agenda position>-<n>`, the same on every executor.
    fn next_id(&mut self) -> Name {
        let id = Name::new(&format!("{}-{}-{}", self.beat, self.pos, self.ops_started))
            .expect("digits and dashes form a valid name");
        self.ops_started += 1;
        id
    }

    /// Starts an operation; its dossier `/rt/ops/<oid>` exists from the next
    /// beat on, in state `ist:run`. The id is derived from the beat, this
    /// call's agenda position and a per-call count, so it is the same on every
    /// executor.
    pub fn op_start(&mut self, spec: OpSpec) -> Name {
        self.op_start_in(spec, "ist:run")
    }

    pub(crate) fn op_start_in(&mut self, mut spec: OpSpec, state: &str) -> Name {
        let oid = self.next_id();
        if spec.parent.is_none() {
            spec.parent = self.parent();
        }
        let intent = OpsIntent::Start {
            oid: oid.clone(),
            spec,
            state: state.to_owned(),
            details: Vec::new(),
        };
        self.stage(Op::Ops(Box::new(intent)));
        oid
    }

    /// Moves an operation to `state` (refused after close, at commit, with an
    /// `ops:closed` usage fact).
    pub fn op_state(&mut self, oid: &Name, state: &str) {
        self.op_state_with(oid, state, 0, "");
    }

    /// [`EnzymeCx::op_state`] with a code and a note for the history entry.
    pub fn op_state_with(&mut self, oid: &Name, state: &str, code: i64, note: &str) {
        let intent = OpsIntent::State {
            oid: oid.clone(),
            state: state.to_owned(),
            code,
            note: note.to_owned(),
        };
        self.stage(Op::Ops(Box::new(intent)));
    }

    /// Arms a watcher on an operation's state.
    pub fn op_await(&mut self, oid: &Name, spec: AwaitSpec) {
        self.stage(Op::Ops(Box::new(OpsIntent::Await {
            oid: oid.clone(),
            spec,
        })));
    }

    /// Closes an operation (again with the same status: accepted; with
    /// another: refused with an `ops:close/conflict` usage fact).
    pub fn op_close(&mut self, oid: &Name, status: OpStatus, summary: &str) {
        let intent = OpsIntent::Close {
            oid: oid.clone(),
            status,
            summary: summary.to_owned(),
        };
        self.stage(Op::Ops(Box::new(intent)));
    }

    /// Takes a labelled snapshot of an operation's execution document
    /// (`<data>/exec/<protocol>/<uid>/snap-<label>.json` when journaling).
    pub fn op_snapshot(&mut self, oid: &Name, label: &Name) {
        let intent = OpsIntent::Snapshot {
            oid: oid.clone(),
            label: label.clone(),
        };
        self.stage(Op::Ops(Box::new(intent)));
    }

    /// [`EnzymeCx::op_snapshot`] of the episode this call is a slice of.
    pub fn ep_snapshot(&mut self, label: &Name) -> Result<(), GuardError> {
        let eid = self.slice_eid()?;
        self.op_snapshot(&eid, label);
        Ok(())
    }

    /// Records a CEI fact about an operation: `crit` or `usage` closes it
    /// `sts:fail`, `fatal` starts the shutdown.
    pub fn cei_op(&mut self, oid: &Name, severity: Severity, topic: &str, note: &str) {
        let fact = Fact::new(severity, topic, note)
            .origin(self.spec.name.to_string())
            .subject(Some(crate::ops::dossier(oid)))
            .about_op(oid.clone());
        self.cei_fact(fact);
    }

    /// Starts an episode; its dossier appears at commit (`ist:plan`) and its
    /// first slice runs the beat after.
    pub fn ep_start(&mut self, spec: EpisodeSpec) -> Name {
        let eid = self.next_id();
        let parent = self.parent();
        self.stage(Op::Episode(Box::new(EpisodeOp::Start {
            eid: eid.clone(),
            spec,
            parent,
        })));
        eid
    }

    /// The operation this call works for: the episode it is a slice of, or
    /// the dossier its impulse is aimed at (`/rt/ops/<oid>/…`).
    pub fn parent(&self) -> Option<Name> {
        if let Some(slice) = self.slice {
            return Some(slice.eid.clone());
        }
        match self.impulse.target.as_ref()?.names() {
            [rt, ops, oid, ..] if rt.as_str() == "rt" && ops.as_str() == "ops" => Some(oid.clone()),
            _ => None,
        }
    }

    /// The episode this call is a slice of.
    pub fn episode(&self) -> Option<&Name> {
        self.slice.map(|s| &s.eid)
    }

    fn slice_eid(&self) -> Result<Name, GuardError> {
        self.slice
            .map(|s| s.eid.clone())
            .ok_or(GuardError::NoEpisode)
    }

    /// Ends this slice; the next one runs next beat.
    pub fn ep_yield(&mut self) -> Result<(), GuardError> {
        episode::set_end(SliceEnd::Yield)
    }

    /// Ends this slice; the next one runs when `oid` reaches `want`, and the
    /// episode is cancelled if `ttl_beats` pass first (0 = never).
    pub fn ep_await(&mut self, oid: &Name, want: &str, ttl_beats: u64) -> Result<(), GuardError> {
        episode::set_end(SliceEnd::Await {
            oid: oid.clone(),
            want: want.to_owned(),
            ttl_beats,
        })
    }

    /// Ends the episode with `status`.
    pub fn ep_close(&mut self, status: OpStatus, summary: &str) -> Result<(), GuardError> {
        episode::set_end(SliceEnd::Close(status, summary.to_owned()))
    }

    /// Requests a lease for this slice's episode, granted at commit unless
    /// another episode holds an overlapping one (then an `ep:lease/busy`
    /// fact). An RW episode may change cells only under its leases.
    pub fn ep_request_lease(&mut self, lease: Lease) -> Result<(), GuardError> {
        let eid = self.slice_eid()?;
        self.stage(Op::Episode(Box::new(EpisodeOp::Lease { eid, lease })));
        Ok(())
    }

    /// Releases this episode's lease on `path` at commit.
    pub fn ep_release_lease(&mut self, path: &Path) -> Result<(), GuardError> {
        let eid = self.slice_eid()?;
        self.stage(Op::Episode(Box::new(EpisodeOp::Release {
            eid,
            path: path.clone(),
        })));
        Ok(())
    }

    /// Stops this RW episode mutating (from the next commit on), optionally
    /// releasing its leases so others may take them meanwhile.
    pub fn suspend_rw(&mut self, drop_leases: bool) -> Result<(), GuardError> {
        let eid = self.slice_eid()?;
        self.stage(Op::Episode(Box::new(EpisodeOp::Suspend {
            eid,
            drop_leases,
        })));
        Ok(())
    }

    /// Resumes mutating at the next commit, re-acquiring the leases
    /// `suspend_rw` dropped, in their original order; if another episode
    /// took one meanwhile, this episode is cancelled (`ep:lease/lost`).
    pub fn resume_rw(&mut self) -> Result<(), GuardError> {
        let eid = self.slice_eid()?;
        self.stage(Op::Episode(Box::new(EpisodeOp::Resume { eid })));
        Ok(())
    }

    /// Cancels episode `eid` at commit (`sts:cnl`, with `reason` in its
    /// history and an `ep:cancel` fact).
    pub fn ep_cancel(&mut self, eid: &Name, reason: &str) {
        self.stage(Op::Episode(Box::new(EpisodeOp::Cancel {
            eid: eid.clone(),
            topic: "ep:cancel".to_owned(),
            reason: reason.to_owned(),
        })));
    }

    /// Cancels one slice, named by its ticket, at commit: a slice of a
    /// later beat runs with [`EnzymeCx::check_cancel`] true from its start
    /// and its episode ends `sts:cnl`; a slice of this beat (running now)
    /// has its episode cancelled at this commit, whatever the agenda order;
    /// a ticket of an earlier beat is stale and only raises an
    /// `ep:ticket/stale` usage fact. Either cancellation records an
    /// `ep:cancel/ticket` fact naming the ticket.
    pub fn ep_cancel_ticket(&mut self, ticket: &SliceTicket) {
        self.stage(Op::Episode(Box::new(EpisodeOp::CancelTicket {
            ticket: ticket.clone(),
        })));
    }

    /// The ticket of this slice (`None` outside a slice). After a yield the
    /// episode's next slice is `beat + 1`'s: `SliceTicket::new(eid, beat + 1)`.
    pub fn slice_ticket(&self) -> Option<SliceTicket> {
        self.slice
            .map(|s| SliceTicket::new(s.eid.clone(), self.beat))
    }

    /// Whether this slice should stop (cancelled, or over its IO budget).
    pub fn check_cancel(&self) -> bool {
        episode::check_cancel()
    }

    /// Accounts IO to this slice's episode (see [`episode::account_io`]).
    pub fn account_io(&mut self, bytes: u64) -> Result<(), GuardError> {
        episode::account_io(bytes)
    }

    /// Fails unless this call is a slice of an RW episode.
    pub fn require_rw(&self) -> Result<(), GuardError> {
        episode::require_rw()
    }

    /// Registers an enzyme; it takes part from the next beat on. A refused
    /// registration is reported as a `usage` fact at commit.
    pub fn register(&mut self, descriptor: EnzymeDescriptor, callback: Arc<dyn Enzyme>) {
        self.stage(Op::Register(Box::new((descriptor, callback))));
    }

    /// Binds an enzyme to a cell from the next beat on.
    pub fn bind(&mut self, path: &Path, enzyme: &Name, propagate: bool) {
        self.stage(Op::Bind(Box::new((
            path.clone(),
            enzyme.clone(),
            propagate,
        ))));
    }

    /// Unbinds an enzyme from a cell from the next beat on.
    pub fn unbind(&mut self, path: &Path, enzyme: &Name) {
        self.stage(Op::Unbind(Box::new((path.clone(), enzyme.clone()))));
    }
}
