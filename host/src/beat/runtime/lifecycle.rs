//! The runtime's life: the `op/boot` and `op/shdn` dossiers, and the organ
//! lifecycle they drive.
//!
//! Boot walks `BOOT_STATES` one per beat; with organs registered it then
//! runs one `ist:ctor` step per dependency level (constructors of a level
//! run in the same beat and see everything lower levels wrote), then one
//! `ist:vald` step (every validator), then closes. Shutdown starts with
//! `ist:run`, runs one `ist:dtor` step per level from the deepest down, then
//! walks the rest of `SHUTDOWN_STATES` and closes.
//!
//! A lifecycle call is an ordinary impulse addressed to the one lifecycle
//! enzyme, so it runs on every executor like any other call; its outcome is
//! settled at the commit of the beat it ran in.

use cep_sdk::{Name, OrganDescriptor, Path, Value};

use super::{Phase, Runtime, BOOT_OID, BOOT_STATES, SHUTDOWN_OID, SHUTDOWN_STATES};
use crate::beat::impulse::Queued;
use crate::cei::{Fact, Severity};
use crate::cell::WorkTree;
use crate::ops::{OpSpec, OpStatus, OpsIntent};
use crate::organ::{self, Failure, OrganError, OrganKey, OrganState, Registration, Stage};

/// One step of the boot or shutdown dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    State(&'static str),
    Organs(Stage, usize),
}

/// A lifecycle call waiting for its outcome.
#[derive(Debug, Clone)]
pub(super) struct PendingCall {
    key: OrganKey,
    stage: Stage,
    enzyme: String,
    due: u64,
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
        let done = self.organs.register(descriptor, plugin, version)?;
        if done == Registration::New {
            let key = (descriptor.kind.clone(), version.to_owned());
            let organ = self.organs.get(&key.0, &key.1).expect("just registered");
            let cells = organ::descriptor_cells(organ);
            self.publish(organ::descriptor_path(&key), cells, true);
            let state = vec![(
                "state".to_owned(),
                Value::text(OrganState::Registered.as_str()),
            )];
            self.publish(organ::state_path(&key), state, false);
            self.organ_levels = None;
        }
        Ok(done)
    }

    /// The organs and their states.
    pub fn organs(&self) -> &organ::Organs {
        &self.organs
    }

    /// Writes `cells` (paths relative to `at`) at the next commit, then
    /// seals `at` when asked: how the host publishes descriptors.
    pub fn publish(&mut self, at: Path, cells: Vec<(String, Value)>, seal: bool) {
        self.publications.push(Publication { at, cells, seal });
    }

    pub(super) fn apply_publications(
        &mut self,
        tree: &mut WorkTree,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
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
        let levels = if self.organs.is_empty() {
            0
        } else {
            self.organ_levels
                .get_or_insert_with(|| self.organs.levels())
                .0
                .len()
        };
        let mut steps = Vec::new();
        if booting {
            steps.extend(BOOT_STATES.iter().map(|s| Step::State(s)));
            if !self.organs.is_empty() {
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
    pub(super) fn advance_lifecycle(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
        let (oid, verb, step, booting) = match self.phase {
            Phase::Booting(step) => (self.lifecycle_oid(BOOT_OID), "op/boot", step, true),
            Phase::ShuttingDown(step) => (self.lifecycle_oid(SHUTDOWN_OID), "op/shdn", step, false),
            Phase::Running | Phase::Down => return,
        };
        // Lifecycle calls still out: wait for their outcomes.
        if !self.lifecycle_pending.is_empty() {
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
                let kinds = self.start_stage(tree, beat, stage, level, facts);
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

    /// The organs of one stage and level: queues their lifecycle calls for
    /// the next beat (or settles them at once when there is nothing to
    /// run). Returns the kinds involved, for the dossier's history.
    fn start_stage(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        stage: Stage,
        level: usize,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) -> String {
        let (levels, unordered) = self
            .organ_levels
            .get_or_insert_with(|| self.organs.levels())
            .clone();
        let mut keys: Vec<OrganKey> = match stage {
            Stage::Validate => levels.iter().flatten().cloned().collect(),
            _ => levels.get(level).cloned().unwrap_or_default(),
        };
        if stage == Stage::Construct && level == 0 {
            for (key, reason) in &unordered {
                let failure = Failure {
                    stage: "deps".to_owned(),
                    enzyme: String::new(),
                    beat,
                    message: reason.clone(),
                };
                self.quarantine(tree, key, failure, facts);
            }
        }
        keys.sort();
        let mut involved = Vec::new();
        for key in keys {
            let Some(organ) = self.organs.get(&key.0, &key.1) else {
                continue;
            };
            let runs = match stage {
                Stage::Construct => organ.state == OrganState::Registered,
                Stage::Validate => organ.state == OrganState::Constructed,
                Stage::Destruct => {
                    matches!(organ.state, OrganState::Ready | OrganState::Constructed)
                }
            };
            if !runs {
                continue;
            }
            if stage == Stage::Construct {
                if let Some(dep) = self.organs.quarantined_dependency(&key) {
                    let failure = Failure {
                        stage: "deps".to_owned(),
                        enzyme: String::new(),
                        beat,
                        message: format!("its dependency {dep} is quarantined"),
                    };
                    self.quarantine(tree, &key, failure, facts);
                    continue;
                }
            }
            involved.push(key.0.clone());
            let Some(enzyme) = organ.enzyme(stage).map(str::to_owned) else {
                self.stage_done(tree, &key, stage);
                continue;
            };
            let Some(id) = self.registry.id(&enzyme) else {
                let failure = Failure {
                    stage: stage.as_str().to_owned(),
                    enzyme: enzyme.clone(),
                    beat,
                    message: format!("lifecycle enzyme {enzyme} is not registered"),
                };
                self.quarantine(tree, &key, failure, facts);
                continue;
            };
            let impulse = organ::lifecycle_impulse(organ, stage);
            let mut full = false;
            self.enqueue(beat + 1, Queued::retry(impulse, id, 0), facts, &mut full);
            let running = match stage {
                Stage::Construct => OrganState::Constructing,
                Stage::Validate => OrganState::Validating,
                Stage::Destruct => OrganState::Destructing,
            };
            self.set_organ_state(tree, &key, running);
            self.lifecycle_pending.push(PendingCall {
                key,
                stage,
                enzyme,
                due: beat + 1,
            });
        }
        involved.join(" ")
    }

    /// Settles the lifecycle calls due in `beat`: `failed` holds the
    /// outcome of each lifecycle call that failed (by organ and stage),
    /// `ran` the calls that ran at all.
    pub(super) fn settle_lifecycle(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        failed: &[(OrganKey, Stage, String)],
        ran: &[(OrganKey, Stage)],
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
        let pending = std::mem::take(&mut self.lifecycle_pending);
        for call in pending {
            if call.due > beat {
                self.lifecycle_pending.push(call);
                continue;
            }
            let failure = failed
                .iter()
                .find(|(k, s, _)| *k == call.key && *s == call.stage)
                .map(|(_, _, m)| m.clone())
                .or_else(|| {
                    (!ran.iter().any(|(k, s)| *k == call.key && *s == call.stage))
                        .then(|| "the lifecycle call did not run".to_owned())
                });
            match failure {
                Some(message) => {
                    let failure = Failure {
                        stage: call.stage.as_str().to_owned(),
                        enzyme: call.enzyme,
                        beat,
                        message,
                    };
                    self.quarantine(tree, &call.key, failure, facts);
                }
                None => self.stage_done(tree, &call.key, call.stage),
            }
        }
    }

    fn stage_done(&mut self, tree: &mut WorkTree, key: &OrganKey, stage: Stage) {
        let state = match stage {
            Stage::Construct => OrganState::Constructed,
            Stage::Validate => OrganState::Ready,
            Stage::Destruct => OrganState::Destroyed,
        };
        self.set_organ_state(tree, key, state);
    }

    fn set_organ_state(&mut self, tree: &mut WorkTree, key: &OrganKey, state: OrganState) {
        if let Some(organ) = self.organs.get_mut(key) {
            organ.state = state;
        }
        let at = organ::state_path(key).child(Name::new("state").expect("static name"));
        // /rt/organs is never sealed.
        let _ = tree.write(&at, Value::text(state.as_str()));
    }

    /// Marks an organ quarantined with its structured failure, and records a
    /// `crit` fact; the host keeps running.
    fn quarantine(
        &mut self,
        tree: &mut WorkTree,
        key: &OrganKey,
        failure: Failure,
        facts: &mut Vec<(Fact, Option<u32>)>,
    ) {
        self.set_organ_state(tree, key, OrganState::Quarantined);
        let base = organ::state_path(key);
        let name = |s: &str| Name::new(s).expect("static name");
        let at = base.child(name("failure"));
        let cells = [
            ("stage", Value::text(&failure.stage)),
            ("enzyme", Value::text(&failure.enzyme)),
            ("beat", Value::I64(failure.beat as i64)),
            ("message", Value::text(&failure.message)),
        ];
        for (field, value) in cells {
            let _ = tree.write(&at.child(name(field)), value);
        }
        let plugin = self
            .organs
            .get(&key.0, &key.1)
            .map(|o| o.plugin.clone())
            .unwrap_or_default();
        let note = format!(
            "organ {} {} (plugin {plugin}) is quarantined: {} {}: {}",
            key.0,
            key.1,
            failure.stage,
            if failure.enzyme.is_empty() {
                "-"
            } else {
                &failure.enzyme
            },
            failure.message
        );
        facts.push((
            Fact::new(Severity::Crit, "organ:quarantined", note)
                .origin(plugin)
                .subject(Some(base)),
            None,
        ));
        if let Some(organ) = self.organs.get_mut(key) {
            organ.failure = Some(failure);
        }
    }
}
