//! Capabilities: what a plugin may do beyond reading the tree.
//!
//! A plugin asks for capabilities in its descriptor; the configuration
//! grants them per plugin. It holds what it asked for *and* was granted —
//! a request is granted when a configured grant covers it (a grant of
//! `write:/data` covers a request of `write:/data/store`).
//!
//! Syntax (checked by descriptor validation):
//!
//! | capability       | allows                                              |
//! |------------------|-----------------------------------------------------|
//! | `write:<path>`   | write, delete, append and bind at or below `<path>` (`write:/` is everything) |
//! | `emit:<signal>`  | emitting signals at or below `<signal>` (`emit:*` is every signal) |
//! | `net`            | opening network connections (transports)            |
//! | `fs:<dir>`       | files under `<dir>`                                 |
//! | `threads`        | adapters running threads of their own               |

use std::fmt;

use cep_sdk::Path;

/// One parsed capability.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    Write(Path),
    /// A signal prefix; `None` is every signal.
    Emit(Option<Path>),
    Net,
    Fs(String),
    Threads,
}

impl Capability {
    /// Parses one capability, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, arg) = match text.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (text, None),
        };
        let path = |arg: &str| Path::parse(arg).map_err(|e| e.to_string());
        match (kind, arg) {
            ("write", Some(arg)) if arg.starts_with('/') => Ok(Capability::Write(path(arg)?)),
            ("write", _) => Err("write needs an absolute path: write:/data/<organ>".to_owned()),
            ("emit", Some("*")) => Ok(Capability::Emit(None)),
            ("emit", Some(arg)) if !arg.is_empty() && !arg.starts_with('/') => {
                Ok(Capability::Emit(Some(path(arg)?)))
            }
            ("emit", _) => Err("emit needs a signal prefix (emit:store) or emit:*".to_owned()),
            ("net", None) => Ok(Capability::Net),
            ("threads", None) => Ok(Capability::Threads),
            ("fs", Some(dir)) if !dir.is_empty() => Ok(Capability::Fs(dir.to_owned())),
            ("fs", _) => Err("fs needs a directory: fs:<dir>".to_owned()),
            ("net" | "threads", Some(_)) => Err(format!("{kind} takes no argument")),
            _ => Err(format!(
                "unknown capability kind {kind:?}: expected write, emit, net, fs or threads"
            )),
        }
    }

    /// Whether holding `self` allows what `other` allows.
    pub fn covers(&self, other: &Capability) -> bool {
        match (self, other) {
            (Capability::Write(g), Capability::Write(r)) => r.starts_with(g),
            (Capability::Emit(None), Capability::Emit(_)) => true,
            (Capability::Emit(Some(g)), Capability::Emit(Some(r))) => r.starts_with(g),
            (Capability::Fs(g), Capability::Fs(r)) => {
                r == g || r.starts_with(&format!("{}/", g.trim_end_matches('/')))
            }
            (Capability::Net, Capability::Net) | (Capability::Threads, Capability::Threads) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Write(p) => write!(f, "write:{p}"),
            Capability::Emit(None) => f.write_str("emit:*"),
            Capability::Emit(Some(p)) => write!(f, "emit:{}", &p.to_string()[1..]),
            Capability::Net => f.write_str("net"),
            Capability::Fs(d) => write!(f, "fs:{d}"),
            Capability::Threads => f.write_str("threads"),
        }
    }
}

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
