//! The runtime's life: the `op/boot` and `op/shdn` dossiers.
//!
//! Boot walks [`BOOT_STATES`] one per beat; with organs registered it then
//! runs one `ist:ctor` step per dependency level (constructors of a level
//! run in the same beat and see everything lower levels wrote), then one
//! `ist:vald` step (every validator), then closes. Shutdown starts with
//! `ist:run`, runs one `ist:dtor` step per level from the deepest down, then
//! walks the rest of [`SHUTDOWN_STATES`] and closes. The organ side of each
//! stage is [`crate::organ::Lifecycle`].

use cep_sdk::{Name, OrganDescriptor, Path, Value};

use super::{Runtime, BOOT_OID, BOOT_STATES, SHUTDOWN_OID, SHUTDOWN_STATES};
use crate::cei::{Fact, Facts, Severity};
use crate::cell::WorkTree;
use crate::impulse::Queued;
use crate::ops::{OpSpec, OpStatus, OpsIntent};
use crate::organ::{OrganError, Organs, Registration, Stage};

/// Where the runtime is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// The next commit applies boot step `n`.
    Booting(usize),
    Running,
    /// The next commit applies shutdown step `n`.
    ShuttingDown(usize),
    Down,
}

/// One step of the boot or shutdown dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    State(&'static str),
    Organs(Stage, usize),
}

/// Cells waiting to be published at the next commit.
pub(super) struct Publication {
    at: Path,
    cells: Vec<(String, Value)>,
    seal: bool,
}

impl Runtime {
    /// Registers an organ of `plugin` (at the plugin's `version`); its
    /// constructor runs during boot. The same descriptor again is a no-op;
    /// a different one under the same kind and version is refused; so is
    /// any registration once boot has passed the plugin stage.
    pub fn register_organ(
        &mut self,
        descriptor: &OrganDescriptor,
        plugin: &str,
        version: &str,
    ) -> Result<Registration, OrganError> {
        let early = matches!(self.phase, Phase::Booting(step) if step < BOOT_STATES.len());
        if !early {
            return Err(OrganError::TooLate {
                kind: descriptor.kind.clone(),
                version: version.to_owned(),
            });
        }
        let (done, publish) = self.lifecycle.register(descriptor, plugin, version)?;
        for (at, cells, seal) in publish {
            self.publish(at, cells, seal);
        }
        Ok(done)
    }

    /// The organs and their states.
    pub fn organs(&self) -> &Organs {
        self.lifecycle.organs()
    }

    /// Writes `cells` (paths relative to `at`) at the next commit, then
    /// seals `at` when asked: how the host publishes descriptors.
    pub fn publish(&mut self, at: Path, cells: Vec<(String, Value)>, seal: bool) {
        self.publications.push(Publication { at, cells, seal });
    }

    pub(super) fn apply_publications(&mut self, tree: &mut WorkTree, facts: &mut Facts) {
        for p in self.publications.drain(..) {
            let mut result = Ok(());
            for (rel, value) in p.cells {
                let path = Path::parse(&format!("{}/{rel}", p.at))
                    .unwrap_or_else(|_| p.at.child(Name::from_index(0)));
                result = result.and(tree.write(&path, value));
            }
            if p.seal {
                result = result.and(tree.seal(&p.at));
            }
            if let Err(e) = result {
                facts.push((
                    Fact::new(Severity::Crit, "host:publish", e.to_string()).subject(Some(p.at)),
                    None,
                ));
            }
        }
    }

    fn steps(&mut self, booting: bool) -> Vec<Step> {
        let levels = self.lifecycle.level_count();
        let organs = !self.lifecycle.organs().is_empty();
        let mut steps = Vec::new();
        if booting {
            steps.extend(BOOT_STATES.iter().map(|s| Step::State(s)));
            if organs {
                // Level 0 always runs: it also quarantines the organs that
                // cannot be ordered.
                steps.extend((0..levels.max(1)).map(|l| Step::Organs(Stage::Construct, l)));
                steps.push(Step::Organs(Stage::Validate, 0));
            }
        } else {
            steps.push(Step::State(SHUTDOWN_STATES[0]));
            steps.extend((0..levels).rev().map(|l| Step::Organs(Stage::Destruct, l)));
            steps.extend(SHUTDOWN_STATES[1..].iter().map(|s| Step::State(s)));
        }
        steps
    }

    /// The dossier id of `op/boot` or `op/shdn`: `boot` / `shdn` for a
    /// world started from the empty tree; a resumed world's tree holds
    /// those already, so its ids carry the first beat it ran
    /// (`<beat>-boot`).
    fn lifecycle_oid(&self, base: &str) -> String {
        match self.resumed_at {
            None => base.to_owned(),
            Some(beat) => format!("{beat}-{base}"),
        }
    }

    /// Advances `op/boot` or `op/shdn` by one step.
    pub(super) fn advance_lifecycle(&mut self, tree: &mut WorkTree, beat: u64, facts: &mut Facts) {
        let (oid, verb, step, booting) = match self.phase {
            Phase::Booting(step) => (self.lifecycle_oid(BOOT_OID), "op/boot", step, true),
            Phase::ShuttingDown(step) => (self.lifecycle_oid(SHUTDOWN_OID), "op/shdn", step, false),
            Phase::Running | Phase::Down => return,
        };
        // Lifecycle calls still out: wait for their outcomes.
        if self.lifecycle.calls_out() {
            return;
        }
        let steps = self.steps(booting);
        let oid = Name::new(&oid).expect("a beat number and a word form a name");
        let intent = match steps.get(step) {
            Some(&Step::State(state)) if step == 0 => OpsIntent::Start {
                oid: oid.clone(),
                spec: OpSpec::new(Path::parse(verb).expect("static path")),
                state: state.to_owned(),
                details: Vec::new(),
            },
            Some(&Step::State(state)) => OpsIntent::State {
                oid: oid.clone(),
                state: state.to_owned(),
                code: 0,
                note: String::new(),
            },
            Some(&Step::Organs(stage, level)) => {
                let registry = &self.registry;
                let queue = &mut self.queue;
                let kinds = self.lifecycle.start_stage(
                    tree,
                    beat,
                    (stage, level),
                    |enzyme| registry.id(enzyme).map(|id| id.0),
                    &mut |impulse, id, facts| {
                        // Each call reports a full beat on its own.
                        let mut full = false;
                        queue.push(beat + 1, Queued::retry(impulse, id, 0), facts, &mut full);
                    },
                    facts,
                );
                OpsIntent::State {
                    oid: oid.clone(),
                    state: stage.dossier_state().to_owned(),
                    code: level as i64,
                    note: kinds,
                }
            }
            None => OpsIntent::Close {
                oid: oid.clone(),
                status: OpStatus::Ok,
                summary: String::new(),
            },
        };
        if let Err(e) = self.ops.apply(tree, beat, intent) {
            facts.push((Fact::new(Severity::Crit, e.topic(), e.to_string()), None));
        }
        if step == 0 && booting {
            let at = Path::parse("/sys/state/boot_oid").expect("static path");
            if let Err(e) = tree.write(&at, Value::text(oid.as_str())) {
                facts.push((
                    Fact::new(Severity::Crit, "cell:sealed", e.to_string()),
                    None,
                ));
            }
        }
        self.phase = match (step >= steps.len(), booting) {
            (true, true) => Phase::Running,
            (true, false) => Phase::Down,
            (false, true) => Phase::Booting(step + 1),
            (false, false) => Phase::ShuttingDown(step + 1),
        };
    }
}
