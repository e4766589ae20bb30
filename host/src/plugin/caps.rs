//! Grants: the capabilities ([`Capability`], declared in `cep-sdk`) one
//! plugin holds. It holds what it asked for *and* was granted — a request
//! is granted when a configured grant covers it (a grant of `write:/data`
//! covers a request of `write:/data/store`).

use cep_sdk::Path;

pub use cep_sdk::caps::Capability;

/// The capabilities one plugin holds, and the requests it was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    held: Vec<Capability>,
    refused: Vec<String>,
}

impl Grants {
    /// What a plugin holds: each request covered by a configured grant.
    /// Requests and grants are assumed valid (validation parses them).
    pub fn resolve(requested: &[String], granted: &[String]) -> Self {
        let granted: Vec<Capability> = granted
            .iter()
            .filter_map(|g| Capability::parse(g).ok())
            .collect();
        let mut grants = Grants::default();
        for text in requested {
            match Capability::parse(text) {
                Ok(cap) if granted.iter().any(|g| g.covers(&cap)) => grants.held.push(cap),
                _ => grants.refused.push(text.clone()),
            }
        }
        grants.held.sort();
        grants.held.dedup();
        grants
    }

    /// Everything (for code compiled into the host).
    pub fn all() -> Self {
        Grants {
            held: vec![
                Capability::Write(Path::root()),
                Capability::Emit(None),
                Capability::Net,
                Capability::Threads,
            ],
            refused: Vec::new(),
        }
    }

    pub fn held(&self) -> &[Capability] {
        &self.held
    }

    /// Requests the configuration did not grant.
    pub fn refused(&self) -> &[String] {
        &self.refused
    }

    pub fn allows(&self, wanted: &Capability) -> bool {
        self.held.iter().any(|c| c.covers(wanted))
    }

    pub fn may_write(&self, path: &Path) -> bool {
        self.held
            .iter()
            .any(|c| matches!(c, Capability::Write(g) if path.starts_with(g)))
    }

    pub fn may_emit(&self, signal: &Path) -> bool {
        self.held.iter().any(|c| match c {
            Capability::Emit(None) => true,
            Capability::Emit(Some(g)) => signal.starts_with(g),
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn syntax() {
        for ok in [
            "write:/",
            "write:/data/x",
            "emit:*",
            "emit:store/put",
            "net",
            "threads",
            "fs:/tmp",
        ] {
            let cap = Capability::parse(ok).unwrap();
            assert_eq!(cap.to_string(), ok);
        }
        for bad in [
            "write",
            "write:data",
            "emit:",
            "emit:/x",
            "net:1",
            "fs:",
            "clock",
            "write:/a//b",
        ] {
            assert!(Capability::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn requested_and_granted() {
        let g = Grants::resolve(
            &strings(&["write:/data/store", "emit:store", "net"]),
            &strings(&["write:/data", "emit:*"]),
        );
        assert!(g.may_write(&Path::parse("/data/store/items/1").unwrap()));
        assert!(!g.may_write(&Path::parse("/data/other").unwrap()));
        assert!(g.may_emit(&Path::parse("store/put").unwrap()));
        assert!(!g.may_emit(&Path::parse("other").unwrap()));
        assert!(!g.allows(&Capability::Net));
        assert_eq!(g.refused(), &["net".to_owned()]);
    }
}
