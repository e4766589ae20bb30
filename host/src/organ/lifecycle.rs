//! The organ lifecycle: constructors, validators and destructors run as
//! ordinary calls, one stage and dependency level at a time, and an organ
//! whose call fails is quarantined. The boot and shutdown dossiers that
//! drive the stages belong to the heartbeat (`beat/life.rs`).
//!
//! A lifecycle call is an impulse addressed to the one lifecycle enzyme,
//! so it runs on every executor like any other call; its outcome is
//! settled at the commit of the beat it ran in.

use cep_sdk::{Name, OrganDescriptor, Value};

use super::{
    descriptor_cells, descriptor_path, lifecycle_impulse, state_path, Failure, Levels, OrganError,
    OrganKey, OrganState, Organs, Registration, Stage,
};
use crate::cei::{Fact, Facts, Severity};
use crate::cell::WorkTree;
use crate::impulse::Impulse;

/// A lifecycle call waiting for its outcome.
#[derive(Debug, Clone)]
struct PendingCall {
    key: OrganKey,
    stage: Stage,
    enzyme: String,
    due: u64,
}

/// The organs, their dependency levels and the lifecycle calls out.
#[derive(Default)]
pub(crate) struct Lifecycle {
    organs: Organs,
    /// The dependency levels, computed when boot first needs them.
    levels: Option<Levels>,
    /// Lifecycle calls queued and not yet settled.
    pending: Vec<PendingCall>,
}

impl Lifecycle {
    pub fn organs(&self) -> &Organs {
        &self.organs
    }

    /// Whether lifecycle calls are out (their outcomes not yet settled).
    pub fn calls_out(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Registers an organ of `plugin` at `version`; for a new one, returns
    /// the cells to publish: its sealed descriptor, and its state.
    #[allow(clippy::type_complexity)]
    pub fn register(
        &mut self,
        descriptor: &OrganDescriptor,
        plugin: &str,
        version: &str,
    ) -> Result<
        (
            Registration,
            Vec<(cep_sdk::Path, Vec<(String, Value)>, bool)>,
        ),
        OrganError,
    > {
        let done = self.organs.register(descriptor, plugin, version)?;
        let mut publish = Vec::new();
        if done == Registration::New {
            let key = (descriptor.kind.clone(), version.to_owned());
            let organ = self.organs.get(&key.0, &key.1).expect("just registered");
            publish.push((descriptor_path(&key), descriptor_cells(organ), true));
            let state = vec![(
                "state".to_owned(),
                Value::text(OrganState::Registered.as_str()),
            )];
            publish.push((state_path(&key), state, false));
            self.levels = None;
        }
        Ok((done, publish))
    }

    /// The dependency levels, computed once per set of organs.
    pub fn levels(&mut self) -> &Levels {
        self.levels.get_or_insert_with(|| self.organs.levels())
    }

    /// How many dependency levels the organs form (0 without organs).
    pub fn level_count(&mut self) -> usize {
        if self.organs.is_empty() {
            0
        } else {
            self.levels().0.len()
        }
    }

    /// The organs of one stage and level: queues their lifecycle calls for
    /// the next beat (or settles them at once when there is nothing to
    /// run). Returns the kinds involved, for the dossier's history.
    /// `enzyme_id` finds a lifecycle enzyme's registry index; `queue`
    /// queues a call (an impulse for that enzyme alone) for the next beat.
    pub fn start_stage(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        (stage, level): (Stage, usize),
        enzyme_id: impl Fn(&str) -> Option<u32>,
        queue: &mut dyn FnMut(Impulse, u32, &mut Facts),
        facts: &mut Facts,
    ) -> String {
        let (levels, unordered) = self.levels().clone();
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
            let Some(id) = enzyme_id(&enzyme) else {
                let failure = Failure {
                    stage: stage.as_str().to_owned(),
                    enzyme: enzyme.clone(),
                    beat,
                    message: format!("lifecycle enzyme {enzyme} is not registered"),
                };
                self.quarantine(tree, &key, failure, facts);
                continue;
            };
            let impulse = lifecycle_impulse(organ, stage);
            queue(impulse, id, facts);
            let running = match stage {
                Stage::Construct => OrganState::Constructing,
                Stage::Validate => OrganState::Validating,
                Stage::Destruct => OrganState::Destructing,
            };
            self.set_organ_state(tree, &key, running);
            self.pending.push(PendingCall {
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
    pub fn settle(
        &mut self,
        tree: &mut WorkTree,
        beat: u64,
        failed: &[(OrganKey, Stage, String)],
        ran: &[(OrganKey, Stage)],
        facts: &mut Facts,
    ) {
        let pending = std::mem::take(&mut self.pending);
        for call in pending {
            if call.due > beat {
                self.pending.push(call);
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
        let at = state_path(key).child(Name::new("state").expect("static name"));
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
        facts: &mut Facts,
    ) {
        self.set_organ_state(tree, key, OrganState::Quarantined);
        let base = state_path(key);
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
