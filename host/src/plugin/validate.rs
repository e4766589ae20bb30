//! Descriptor validation: one function for every plugin kind, run before
//! anything of the plugin runs.

use std::collections::{BTreeMap, BTreeSet};

use cep_sdk::name::excerpt;
use cep_sdk::{AbiVersion, Name, Path, PluginDescriptor, Word};

use super::caps::Capability;
use crate::enzyme::EnzymeSpec;
use crate::organ::find_cycle;

/// What is wrong with a descriptor. Each names the field and the offending
/// text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("{field} {value:?} is not a word (1–11 characters of a-z 0-9 : _ - .)")]
    BadWord { field: String, value: String },
    #[error("version {value:?} is not a semantic version (major.minor.patch): {reason}")]
    BadSemver { value: String, reason: String },
    #[error("built for cep plugin ABI {found}, the host speaks {host}: {reason}")]
    Abi {
        found: AbiVersion,
        host: AbiVersion,
        reason: &'static str,
    },
    #[error("the descriptor says kind {found}, but the file was loaded as a {loaded} plugin")]
    Kind { found: String, loaded: String },
    #[error("{what} {name:?} is declared twice")]
    Duplicate { what: &'static str, name: String },
    #[error("{0}")]
    Enzyme(String),
    #[error("organ {organ}: {field} names enzyme {enzyme:?}, which the plugin does not declare")]
    UnknownEnzyme {
        organ: String,
        field: &'static str,
        enzyme: String,
    },
    #[error("organ {organ}: root {root:?} is not an absolute cell path: {reason}")]
    BadRoot {
        organ: String,
        root: String,
        reason: String,
    },
    #[error("organ dependency cycle: {}", cycle.join(" → "))]
    OrganCycle { cycle: Vec<String> },
    #[error("capability {capability:?}: {reason}")]
    BadCapability { capability: String, reason: String },
    #[error("version {value:?} is {len} bytes; a version becomes a cell name, which holds at most {max} bytes")]
    VersionTooLong {
        value: String,
        len: usize,
        max: usize,
    },
    #[error("{field} lists {count} entries, over the limit of {max}")]
    TooMany {
        field: String,
        count: usize,
        max: usize,
    },
    #[error("{field} is {len} bytes, over the limit of {max}")]
    TooLong {
        field: String,
        len: usize,
        max: usize,
    },
}

/// The most enzymes, organs, transports, adapters or capabilities one
/// descriptor may declare, and the most names in one list of an enzyme
/// (`before`, `after`, `reads`, `writes`) or organ (`depends_on`): a
/// descriptor is data from a possibly hostile plugin, and each entry costs
/// the host work and memory.
pub const DECLARED_MAX: usize = 4096;

fn count(field: impl Into<String>, n: usize) -> Result<(), DescriptorError> {
    if n <= DECLARED_MAX {
        Ok(())
    } else {
        Err(DescriptorError::TooMany {
            field: field.into(),
            count: n,
            max: DECLARED_MAX,
        })
    }
}

/// The longest label a descriptor may give an enzyme, organ, transport or
/// adapter, in bytes (labels are sealed into the tree).
pub const LABEL_BYTES_MAX: usize = 1024;

fn label(field: impl Into<String>, text: &str) -> Result<(), DescriptorError> {
    if text.len() <= LABEL_BYTES_MAX {
        Ok(())
    } else {
        Err(DescriptorError::TooLong {
            field: field.into(),
            len: text.len(),
            max: LABEL_BYTES_MAX,
        })
    }
}

fn word(field: impl Into<String>, value: &str) -> Result<(), DescriptorError> {
    if Word::is_valid(value) {
        Ok(())
    } else {
        Err(DescriptorError::BadWord {
            field: field.into(),
            value: excerpt(value),
        })
    }
}

fn unique<'a>(
    what: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), DescriptorError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(DescriptorError::Duplicate {
                what,
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// Checks a descriptor: words, semantic version, ABI compatibility (same
/// major, minor no newer than the host's), unique names, enzyme
/// descriptors, organ references and dependency cycles, capability syntax.
/// Returns the first problem found, in that order.
pub fn validate(d: &PluginDescriptor, host: AbiVersion) -> Result<(), DescriptorError> {
    word("plugin name", &d.name)?;
    semver::Version::parse(&d.version).map_err(|e| DescriptorError::BadSemver {
        value: excerpt(&d.version),
        reason: e.to_string(),
    })?;
    if !Name::is_valid(&d.version) {
        return Err(DescriptorError::VersionTooLong {
            value: excerpt(&d.version),
            len: d.version.len(),
            max: Name::BYTES_MAX,
        });
    }
    if d.abi.major != host.major {
        return Err(DescriptorError::Abi {
            found: d.abi,
            host,
            reason: "the major versions differ",
        });
    }
    if d.abi.minor > host.minor {
        return Err(DescriptorError::Abi {
            found: d.abi,
            host,
            reason: "the plugin needs a newer minor version than the host's",
        });
    }

    count("enzymes", d.enzymes.len())?;
    count("organs", d.organs.len())?;
    count("transports", d.transports.len())?;
    count("adapters", d.adapters.len())?;
    count("capabilities", d.capabilities.len())?;
    for e in &d.enzymes {
        for (field, list) in [
            ("before", &e.before),
            ("after", &e.after),
            ("reads", &e.reads),
            ("writes", &e.writes),
        ] {
            count(format!("enzyme {} {field}", excerpt(&e.name)), list.len())?;
        }
    }
    for o in &d.organs {
        count(
            format!("organ {} depends_on", excerpt(&o.kind)),
            o.depends_on.len(),
        )?;
    }
    unique("enzyme", d.enzymes.iter().map(|e| e.name.as_str()))?;
    for enzyme in &d.enzymes {
        label(
            format!("enzyme {} label", excerpt(&enzyme.name)),
            &enzyme.label,
        )?;
        EnzymeSpec::from_descriptor(enzyme).map_err(|e| DescriptorError::Enzyme(e.to_string()))?;
    }
    let enzymes: BTreeSet<&str> = d.enzymes.iter().map(|e| e.name.as_str()).collect();

    unique("organ kind", d.organs.iter().map(|o| o.kind.as_str()))?;
    for organ in &d.organs {
        word("organ kind", &organ.kind)?;
        label(format!("organ {} label", organ.kind), &organ.label)?;
        if !organ.root.starts_with('/') {
            return Err(DescriptorError::BadRoot {
                organ: organ.kind.clone(),
                root: organ.root.clone(),
                reason: "it must start with '/'".to_owned(),
            });
        }
        Path::parse(&organ.root).map_err(|e| DescriptorError::BadRoot {
            organ: organ.kind.clone(),
            root: organ.root.clone(),
            reason: e.to_string(),
        })?;
        let lifecycle = [
            ("constructor", &organ.constructor),
            ("validator", &organ.validator),
            ("destructor", &organ.destructor),
        ];
        for (field, enzyme) in lifecycle {
            if let Some(enzyme) = enzyme {
                if !enzymes.contains(enzyme.as_str()) {
                    return Err(DescriptorError::UnknownEnzyme {
                        organ: organ.kind.clone(),
                        field,
                        enzyme: enzyme.clone(),
                    });
                }
            }
        }
        for dep in &organ.depends_on {
            word(format!("organ {} depends_on", organ.kind), dep)?;
        }
    }
    let edges: BTreeMap<&str, Vec<&str>> = d
        .organs
        .iter()
        .map(|o| {
            let deps = o.depends_on.iter().map(String::as_str).collect();
            (o.kind.as_str(), deps)
        })
        .collect();
    if let Some(cycle) = find_cycle(&edges) {
        return Err(DescriptorError::OrganCycle { cycle });
    }

    unique("transport", d.transports.iter().map(|t| t.name.as_str()))?;
    for t in &d.transports {
        word("transport name", &t.name)?;
        word(format!("transport {} scheme", t.name), &t.scheme)?;
        label(format!("transport {} label", t.name), &t.label)?;
    }
    unique("adapter", d.adapters.iter().map(|a| a.name.as_str()))?;
    for a in &d.adapters {
        word("adapter name", &a.name)?;
        label(format!("adapter {} label", a.name), &a.label)?;
    }
    for cap in &d.capabilities {
        Capability::parse(cap).map_err(|reason| DescriptorError::BadCapability {
            capability: cap.clone(),
            reason,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cep_sdk::{EnzymeDescriptor, OrganDescriptor, PluginKind};

    fn good() -> PluginDescriptor {
        let mut d = PluginDescriptor::new("store", "1.2.3", PluginKind::Native);
        d.enzymes
            .push(EnzymeDescriptor::new("store.ctor", "organ/store/ctor"));
        d.organs
            .push(OrganDescriptor::new("store", "/data/store").constructor("store.ctor"));
        d.capabilities.push("write:/data/store".to_owned());
        d
    }

    #[test]
    fn accepts_a_good_descriptor() {
        validate(&good(), AbiVersion::CURRENT).unwrap();
    }

    #[test]
    fn rejects_each_kind_of_mistake() {
        let host = AbiVersion::CURRENT;
        let check = |edit: &dyn Fn(&mut PluginDescriptor), want: &str| {
            let mut d = good();
            edit(&mut d);
            let err = validate(&d, host).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        };
        check(&|d| d.name = "Bad Name".into(), "not a word");
        check(&|d| d.version = "1.2".into(), "not a semantic version");
        check(&|d| d.abi.major = 2, "major versions differ");
        check(&|d| d.abi.minor = host.minor + 1, "newer minor");
        check(
            &|d| d.enzymes.push(EnzymeDescriptor::new("store.ctor", "x")),
            "declared twice",
        );
        check(
            &|d| d.organs[0].constructor = Some("nope".into()),
            "\"nope\"",
        );
        check(&|d| d.organs[0].root = "data".into(), "absolute");
        check(&|d| d.capabilities.push("clock".into()), "clock");
        check(
            &|d| d.enzymes.push(EnzymeDescriptor::new("a", "bad//signal")),
            "signal",
        );
        check(
            &|d| {
                d.organs[0].depends_on.push("index".into());
                d.organs
                    .push(OrganDescriptor::new("index", "/data/index").depends_on(&["store"]));
            },
            "index → store → index",
        );
    }
}
