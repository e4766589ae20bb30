//! What an enzyme call ends with, and how bad a diagnostic is: the two small
//! vocabularies every plugin kind shares with the host.

use std::fmt;
use std::str::FromStr;

/// What one enzyme call ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; its staged intents are committed.
    Ok,
    /// Not now: its intents are dropped and it runs again for the same
    /// impulse next beat, up to the configured retry limit.
    Retry,
    /// Failed: its intents are dropped and a `crit` CEI fact records why.
    Fatal(String),
}

/// How bad a fact is, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Fatal,
    Crit,
    Usage,
    Warn,
    Debug,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Crit => "crit",
            Severity::Usage => "usage",
            Severity::Warn => "warn",
            Severity::Debug => "debug",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.strip_prefix("sev:").unwrap_or(s) {
            "fatal" => Severity::Fatal,
            "crit" => Severity::Crit,
            "usage" => Severity::Usage,
            "warn" => Severity::Warn,
            "debug" => Severity::Debug,
            other => {
                return Err(format!(
                    "unknown severity {other:?}: expected fatal, crit, usage, warn or debug"
                ))
            }
        })
    }
}
