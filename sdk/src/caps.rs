//! Capabilities: what a plugin may do beyond reading the tree.
//!
//! A plugin asks for capabilities in its descriptor; the host's
//! configuration grants them per plugin. Each host operation names the
//! capability it needs in [`crate::api`].
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

use crate::Path;

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
