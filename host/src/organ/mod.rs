//! Organs: the registry of organ descriptors and the state of each organ's
//! lifecycle.
//!
//! Owns which organs exist (by kind and version), their dependency levels,
//! and their lifecycle state. Must not run anything: the heartbeat runs the
//! lifecycle enzymes as ordinary impulses (`organ/<kind>/<stage>`, targeted
//! at the organ's root, addressed to the one lifecycle enzyme) during the
//! `op/boot` and `op/shdn` dossiers, and reports each outcome back here.
//!
//! In the tree:
//!
//! ```text
//! /sys/organs/<kind>/<version>/            sealed descriptor: label, root, plugin,
//!                                          constructor, validator, destructor, depends_on/<i>
//! /rt/organs/<kind>/<version>/state        registered | constructing | constructed | validating
//!                                          | ready | destructing | destroyed | quarantined
//! /rt/organs/<kind>/<version>/failure/     stage, enzyme, beat, message (when quarantined)
//! ```

use std::collections::BTreeMap;

use cep_sdk::{Name, OrganDescriptor, Path, Value};

mod graph;
mod lifecycle;

use crate::impulse::Impulse;

pub use graph::find_cycle;
pub(crate) use lifecycle::Lifecycle;

/// The first segment of lifecycle signals.
pub const SIGNAL_ROOT: &str = "organ";

/// A lifecycle stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Construct,
    Validate,
    Destruct,
}

impl Stage {
    /// The signal segment: `ctor`, `vald`, `dtor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Construct => "ctor",
            Stage::Validate => "vald",
            Stage::Destruct => "dtor",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "ctor" => Some(Stage::Construct),
            "vald" => Some(Stage::Validate),
            "dtor" => Some(Stage::Destruct),
            _ => None,
        }
    }

    /// The boot or shutdown dossier state while this stage runs.
    pub fn dossier_state(self) -> &'static str {
        match self {
            Stage::Construct => "ist:ctor",
            Stage::Validate => "ist:vald",
            Stage::Destruct => "ist:dtor",
        }
    }
}

/// Where an organ is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganState {
    Registered,
    Constructing,
    Constructed,
    Validating,
    Ready,
    Destructing,
    Destroyed,
    Quarantined,
}

impl OrganState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrganState::Registered => "registered",
            OrganState::Constructing => "constructing",
            OrganState::Constructed => "constructed",
            OrganState::Validating => "validating",
            OrganState::Ready => "ready",
            OrganState::Destructing => "destructing",
            OrganState::Destroyed => "destroyed",
            OrganState::Quarantined => "quarantined",
        }
    }
}

/// Why an organ was quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `ctor`, `vald`, `dtor` or `deps`.
    pub stage: String,
    /// The lifecycle enzyme that failed ("" when none ran).
    pub enzyme: String,
    pub beat: u64,
    pub message: String,
}

/// One registered organ.
#[derive(Debug, Clone)]
pub struct Organ {
    pub descriptor: OrganDescriptor,
    pub plugin: String,
    pub version: String,
    pub root: Path,
    pub state: OrganState,
    pub failure: Option<Failure>,
}

impl Organ {
    /// The lifecycle enzyme of `stage`, if the descriptor names one.
    pub fn enzyme(&self, stage: Stage) -> Option<&str> {
        match stage {
            Stage::Construct => self.descriptor.constructor.as_deref(),
            Stage::Validate => self.descriptor.validator.as_deref(),
            Stage::Destruct => self.descriptor.destructor.as_deref(),
        }
        .filter(|s| !s.is_empty())
    }
}

/// What registering a descriptor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    New,
    /// The same descriptor was already registered: nothing changed.
    Same,
}

/// Why an organ could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganError {
    #[error("organ {kind} {version} (plugin {plugin}) differs from the one already registered under that kind and version (plugin {existing}); a changed organ needs a new version")]
    Conflict {
        kind: String,
        version: String,
        plugin: String,
        existing: String,
    },
    #[error("organ {kind}: root {root:?} is not a cell path")]
    BadRoot { kind: String, root: String },
    #[error(
        "organ {kind} {version}: organs are registered before bootstrap runs their constructors"
    )]
    TooLate { kind: String, version: String },
}

/// Every organ, by (kind, version).
#[derive(Debug, Clone, Default)]
pub struct Organs {
    entries: BTreeMap<(String, String), Organ>,
}

/// The key of one organ: (kind, version).
pub type OrganKey = (String, String);

/// Dependency levels, and the organs that cannot be ordered with why.
pub type Levels = (Vec<Vec<OrganKey>>, Vec<(OrganKey, String)>);

impl Organs {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, kind: &str, version: &str) -> Option<&Organ> {
        self.entries.get(&(kind.to_owned(), version.to_owned()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OrganKey, &Organ)> {
        self.entries.iter()
    }

    pub(crate) fn get_mut(&mut self, key: &OrganKey) -> Option<&mut Organ> {
        self.entries.get_mut(key)
    }

    /// Registers an organ of `plugin` at the plugin's `version`. The same
    /// descriptor again is a no-op; a different one under the same kind and
    /// version is refused.
    pub fn register(
        &mut self,
        descriptor: &OrganDescriptor,
        plugin: &str,
        version: &str,
    ) -> Result<Registration, OrganError> {
        let key = (descriptor.kind.clone(), version.to_owned());
        if let Some(existing) = self.entries.get(&key) {
            if existing.descriptor == *descriptor {
                return Ok(Registration::Same);
            }
            return Err(OrganError::Conflict {
                kind: key.0,
                version: key.1,
                plugin: plugin.to_owned(),
                existing: existing.plugin.clone(),
            });
        }
        let root = Path::parse(&descriptor.root).map_err(|_| OrganError::BadRoot {
            kind: descriptor.kind.clone(),
            root: descriptor.root.clone(),
        })?;
        self.entries.insert(
            key,
            Organ {
                descriptor: descriptor.clone(),
                plugin: plugin.to_owned(),
                version: version.to_owned(),
                root,
                state: OrganState::Registered,
                failure: None,
            },
        );
        Ok(Registration::New)
    }

    /// Dependency levels: level 0 depends on nothing, level n on organs of
    /// lower levels only. Organs that cannot be ordered — on a dependency
    /// cycle, or depending on a kind no plugin provides — are returned
    /// apart with the reason.
    pub fn levels(&self) -> Levels {
        let mut by_kind: BTreeMap<&str, Vec<&OrganKey>> = BTreeMap::new();
        for key in self.entries.keys() {
            by_kind.entry(key.0.as_str()).or_default().push(key);
        }
        let deps = |kind: &str| -> Vec<&str> {
            let mut all: Vec<&str> = by_kind[kind]
                .iter()
                .flat_map(|k| self.entries[*k].descriptor.depends_on.iter())
                .map(String::as_str)
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        };
        let edges: BTreeMap<&str, Vec<&str>> =
            by_kind.keys().map(|&kind| (kind, deps(kind))).collect();
        let mut unordered: BTreeMap<&str, String> = BTreeMap::new();
        // Cycles: every kind on one is unordered; repeat until none is left.
        let mut remaining = edges.clone();
        while let Some(cycle) = find_cycle(&remaining) {
            let text = cycle.join(" → ");
            for kind in &cycle {
                if let Some((&k, _)) = remaining.get_key_value(kind.as_str()) {
                    unordered.insert(k, format!("dependency cycle {text}"));
                    remaining.remove(k);
                }
            }
        }
        // Depth by relaxation (the graph left is acyclic).
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        let mut changed = true;
        while changed {
            changed = false;
            for (&kind, kind_deps) in &remaining {
                if unordered.contains_key(kind) || depth.contains_key(kind) {
                    continue;
                }
                let mut level = 0;
                let mut ready = true;
                for &dep in kind_deps {
                    if unordered.contains_key(dep) {
                        unordered.insert(
                            kind,
                            format!("depends on organ {dep}, which cannot be ordered"),
                        );
                        ready = false;
                        changed = true;
                        break;
                    }
                    if !edges.contains_key(dep) {
                        unordered.insert(
                            kind,
                            format!("depends on organ kind {dep}, which no plugin provides"),
                        );
                        ready = false;
                        changed = true;
                        break;
                    }
                    match depth.get(dep) {
                        Some(d) => level = level.max(d + 1),
                        None => ready = false,
                    }
                }
                if ready {
                    depth.insert(kind, level);
                    changed = true;
                }
            }
        }
        let mut levels: Vec<Vec<OrganKey>> = Vec::new();
        for (kind, level) in depth {
            if levels.len() <= level {
                levels.resize(level + 1, Vec::new());
            }
            levels[level].extend(by_kind[kind].iter().map(|k| (*k).clone()));
        }
        let unordered = unordered
            .into_iter()
            .flat_map(|(kind, reason)| {
                by_kind[kind]
                    .iter()
                    .map(move |k| ((*k).clone(), reason.clone()))
            })
            .collect();
        (levels, unordered)
    }

    /// The kinds `key` depends on whose organs are all quarantined, if any.
    pub fn quarantined_dependency(&self, key: &OrganKey) -> Option<String> {
        let organ = self.entries.get(key)?;
        organ.descriptor.depends_on.iter().find_map(|dep| {
            let mut of_kind = self
                .entries
                .iter()
                .filter(|((k, _), _)| k == dep)
                .peekable();
            of_kind.peek()?;
            of_kind
                .all(|(_, o)| o.state == OrganState::Quarantined)
                .then(|| dep.clone())
        })
    }
}

/// The impulse that runs `organ`'s `stage` enzyme: `organ/<kind>/<stage>`
/// targeted at its root, the version as payload.
pub fn lifecycle_impulse(organ: &Organ, stage: Stage) -> Impulse {
    let signal = Path::parse(&format!(
        "{SIGNAL_ROOT}/{}/{}",
        organ.descriptor.kind,
        stage.as_str()
    ))
    .expect("organ kinds are words");
    Impulse::targeted(signal, organ.root.clone()).with_payload(Value::text(&organ.version))
}

/// Which organ and stage a lifecycle impulse is for.
pub fn lifecycle_of(impulse: &Impulse) -> Option<(OrganKey, Stage)> {
    let names = impulse.signal.names();
    if names.len() != 3 || names[0].as_str() != SIGNAL_ROOT {
        return None;
    }
    let stage = Stage::parse(names[2].as_str())?;
    let version = impulse.payload.as_ref()?.as_text()?;
    Some(((names[1].to_string(), version.to_owned()), stage))
}

/// `/sys/organs/<kind>/<version>`.
pub fn descriptor_path(key: &OrganKey) -> Path {
    organ_path("sys", key)
}

/// `/rt/organs/<kind>/<version>`.
pub fn state_path(key: &OrganKey) -> Path {
    organ_path("rt", key)
}

fn organ_path(top: &str, key: &OrganKey) -> Path {
    let name = |s: &str| Name::new(s).expect("kinds are words and versions semver");
    Path::from_names(vec![name(top), name("organs"), name(&key.0), name(&key.1)])
}

/// The cells of an organ's sealed descriptor, relative to its path.
pub fn descriptor_cells(organ: &Organ) -> Vec<(String, Value)> {
    let d = &organ.descriptor;
    let mut cells = vec![
        ("label".to_owned(), Value::text(&d.label)),
        ("root".to_owned(), Value::text(&d.root)),
        ("plugin".to_owned(), Value::text(&organ.plugin)),
    ];
    for (field, v) in [
        ("constructor", &d.constructor),
        ("validator", &d.validator),
        ("destructor", &d.destructor),
    ] {
        cells.push((field.to_owned(), Value::text(v.as_deref().unwrap_or(""))));
    }
    for (i, dep) in d.depends_on.iter().enumerate() {
        cells.push((format!("depends_on/{i}"), Value::text(dep)));
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organ(kind: &str, deps: &[&str]) -> OrganDescriptor {
        OrganDescriptor::new(kind, &format!("/data/{kind}")).depends_on(deps)
    }

    #[test]
    fn registration_is_idempotent_and_versioned() {
        let mut organs = Organs::default();
        let a = organ("store", &[]);
        assert_eq!(organs.register(&a, "p", "1.0.0"), Ok(Registration::New));
        assert_eq!(organs.register(&a, "p", "1.0.0"), Ok(Registration::Same));
        let changed = a.clone().label("other");
        assert!(matches!(
            organs.register(&changed, "q", "1.0.0"),
            Err(OrganError::Conflict { .. })
        ));
        assert_eq!(
            organs.register(&changed, "q", "1.1.0"),
            Ok(Registration::New)
        );
    }

    #[test]
    fn levels_follow_dependencies() {
        let mut organs = Organs::default();
        for (kind, deps) in [
            ("index", vec!["store"]),
            ("store", vec![]),
            ("view", vec!["index", "store"]),
            ("a", vec!["b"]),
            ("b", vec!["a"]),
            ("lost", vec!["nowhere"]),
            ("after", vec!["a"]),
        ] {
            organs.register(&organ(kind, &deps), "p", "1.0.0").unwrap();
        }
        let (levels, unordered) = organs.levels();
        let kinds = |l: &Vec<OrganKey>| l.iter().map(|k| k.0.clone()).collect::<Vec<_>>();
        assert_eq!(
            levels.iter().map(kinds).collect::<Vec<_>>(),
            [vec!["store"], vec!["index"], vec!["view"]]
        );
        let reasons: BTreeMap<String, String> =
            unordered.into_iter().map(|(k, r)| (k.0, r)).collect();
        assert!(reasons["a"].contains("cycle a → b → a"));
        assert!(reasons["b"].contains("cycle"));
        assert!(reasons["lost"].contains("no plugin provides"));
        assert!(reasons["after"].contains("cannot be ordered"));
    }
}
