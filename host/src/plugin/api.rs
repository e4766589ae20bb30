//! The host API, implemented once: every plugin binding (native Rust, C,
//! wasm, Lua) converts its arguments to plain Rust data and calls these
//! methods, so parsing, capability checks and errors are the same whatever
//! the plugin is written in.
//!
//! A [`Call`] wraps the kernel's [`EnzymeCx`] for one call of one plugin's
//! enzyme, with that plugin's [`Grants`]. A refusal is an [`ApiError`]; a
//! refusal for lack of a capability also records a CEI `usage` fact naming
//! the plugin and the capability.

use cep_sdk::{Name, Path, Value};

use super::caps::{Capability, Grants};
use crate::cei::Severity;
use crate::enzyme::EnzymeCx;
use crate::episode::{Budgets, EpisodeSpec, Lease, Profile};
use crate::ops::{AwaitSpec, OpSpec, OpStatus};
use crate::Impulse;

/// What one call of a plugin's enzyme may do through the host API, so
/// that no plugin can flood the tree, the queues or the log from one call.
/// Set from the configuration (`docs/config.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Impulses one call may emit (`plugin_emits_per_call_max`).
    pub emits: u32,
    /// CEI facts one call may record (`plugin_facts_per_call_max`).
    pub facts: u32,
    /// Log lines one call may write (`plugin_logs_per_call_max`).
    pub logs: u32,
    /// Bytes of a fact's note, a log line or a summary a plugin gives;
    /// longer text is cut to this (`plugin_note_bytes_max`).
    pub note_bytes: usize,
}

impl Default for CallLimits {
    /// The configuration's defaults (`config.rs` is their one definition).
    fn default() -> Self {
        Self::of(&crate::config::Config::default())
    }
}

impl CallLimits {
    pub fn of(config: &crate::config::Config) -> Self {
        CallLimits {
            emits: config.plugin_emits_per_call_max,
            facts: config.plugin_facts_per_call_max,
            logs: config.plugin_logs_per_call_max,
            note_bytes: config.plugin_note_bytes_max,
        }
    }
}

/// The largest count of beats (a time-to-live, a deadline, a beat limit)
/// the host API accepts: 2^48, about 9 years at a million beats a second.
/// Larger numbers are refused, never wrapped.
pub const BEATS_MAX: u64 = 1 << 48;

/// Who is calling: one loaded plugin.
#[derive(Debug, Clone)]
pub struct PluginCtx {
    pub name: String,
    pub grants: Grants,
    pub limits: CallLimits,
}

impl PluginCtx {
    pub fn new(name: &str, grants: Grants) -> Self {
        PluginCtx {
            name: name.to_owned(),
            grants,
            limits: CallLimits::default(),
        }
    }

    pub fn with_limits(mut self, limits: CallLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// Why a host call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{what} {value:?} is invalid: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("plugin {plugin} lacks capability {capability} (needed for {action})")]
    Denied {
        plugin: String,
        capability: String,
        action: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error(
        "plugin {plugin}: {what} in one call is over the limit of {max} ({key}); the call fails"
    )]
    Limit {
        plugin: String,
        what: &'static str,
        max: u32,
        key: &'static str,
    },
}

pub use crate::cei::capped;

/// The largest byte or nanosecond count (a budget, bytes accounted) the
/// host API accepts: 2^62, so sums of them still fit the tree's i64.
pub const AMOUNT_MAX: u64 = 1 << 62;

/// Checks an amount from a plugin against [`AMOUNT_MAX`].
fn amount(what: &'static str, n: u64) -> Result<u64, ApiError> {
    if n <= AMOUNT_MAX {
        Ok(n)
    } else {
        Err(invalid(
            what,
            &n.to_string(),
            format!("at most {AMOUNT_MAX}"),
        ))
    }
}

/// Checks a count of beats from a plugin against [`BEATS_MAX`].
fn beats(what: &'static str, n: u64) -> Result<u64, ApiError> {
    if n <= BEATS_MAX {
        Ok(n)
    } else {
        Err(invalid(
            what,
            &n.to_string(),
            format!("at most {BEATS_MAX} beats"),
        ))
    }
}

fn invalid(what: &'static str, value: &str, reason: impl ToString) -> ApiError {
    ApiError::Invalid {
        what,
        value: cep_sdk::name::excerpt(value),
        reason: reason.to_string(),
    }
}

/// Parses a cell path (absolute).
pub fn cell_path(text: &str) -> Result<Path, ApiError> {
    if !text.starts_with('/') {
        return Err(invalid("path", text, "cell paths start with '/'"));
    }
    Path::parse(text).map_err(|e| invalid("path", text, e))
}

/// Parses a signal (relative, no leading '/').
pub fn signal(text: &str) -> Result<Path, ApiError> {
    if text.is_empty() || text.starts_with('/') {
        return Err(invalid(
            "signal",
            text,
            "signals are relative paths like store/put",
        ));
    }
    Path::parse(text).map_err(|e| invalid("signal", text, e))
}

fn name(what: &'static str, text: &str) -> Result<Name, ApiError> {
    Name::new(text).map_err(|e| invalid(what, text, e))
}

/// Parses `sts:ok`, `sts:fail`, `sts:cnl` (the `sts:` is optional).
pub fn status(text: &str) -> Result<OpStatus, ApiError> {
    match text.strip_prefix("sts:").unwrap_or(text) {
        "ok" => Ok(OpStatus::Ok),
        "fail" => Ok(OpStatus::Fail),
        "cnl" => Ok(OpStatus::Cancel),
        _ => Err(invalid(
            "status",
            text,
            "expected sts:ok, sts:fail or sts:cnl",
        )),
    }
}

/// One call of one plugin's enzyme.
pub struct Call<'c, 'a> {
    pub cx: &'c mut EnzymeCx<'a>,
    pub plugin: &'c PluginCtx,
    /// Impulses, facts and log lines this call made so far.
    emits: u32,
    facts: u32,
    logs: u32,
}

impl<'c, 'a> Call<'c, 'a> {
    pub fn new(cx: &'c mut EnzymeCx<'a>, plugin: &'c PluginCtx) -> Self {
        Call {
            cx,
            plugin,
            emits: 0,
            facts: 0,
            logs: 0,
        }
    }

    /// Counts one more of `what`; past `max` the call fails, with a `crit`
    /// fact naming the limit (once).
    fn count(
        &mut self,
        counter: fn(&mut Self) -> &mut u32,
        max: u32,
        what: &'static str,
        key: &'static str,
    ) -> Result<(), ApiError> {
        let n = counter(self);
        *n = n.saturating_add(1);
        let n = *n;
        if n <= max {
            return Ok(());
        }
        let err = ApiError::Limit {
            plugin: self.plugin.name.clone(),
            what,
            max,
            key,
        };
        if n == max + 1 {
            let message = format!("enzyme {}: {err}", self.enzyme());
            self.cx.cei(Severity::Crit, "plugin:limit", &message, None);
            self.cx.fail_call(message);
        }
        Err(err)
    }

    fn deny(&mut self, capability: Capability, action: String, subject: Option<&Path>) -> ApiError {
        let err = ApiError::Denied {
            plugin: self.plugin.name.clone(),
            capability: capability.to_string(),
            action,
        };
        self.cx.cei(
            Severity::Usage,
            "plugin:capability",
            &err.to_string(),
            subject,
        );
        err
    }

    fn check_write(&mut self, path: &Path, action: &str) -> Result<(), ApiError> {
        if self.plugin.grants.may_write(path) {
            return Ok(());
        }
        Err(self.deny(
            Capability::Write(path.clone()),
            format!("{action} {path}"),
            Some(path),
        ))
    }

    fn check_emit(&mut self, signal: &Path) -> Result<(), ApiError> {
        if self.plugin.grants.may_emit(signal) {
            return Ok(());
        }
        Err(self.deny(
            Capability::Emit(Some(signal.clone())),
            format!("emit {}", &signal.to_string()[1..]),
            None,
        ))
    }

    pub fn beat(&self) -> u64 {
        self.cx.beat()
    }

    /// The impulse's signal, relative (`store/put`).
    pub fn signal(&self) -> String {
        self.cx.signal().to_string()[1..].to_owned()
    }

    pub fn target(&self) -> Option<String> {
        self.cx.target().map(Path::to_string)
    }

    pub fn payload(&self) -> Option<&Value> {
        self.cx.payload()
    }

    pub fn enzyme(&self) -> &str {
        self.cx.enzyme().as_str()
    }

    pub fn read(&self, path: &str) -> Result<Option<Value>, ApiError> {
        Ok(self.cx.read(&cell_path(path)?).cloned())
    }

    pub fn children(&self, path: &str) -> Result<Vec<Name>, ApiError> {
        Ok(self.cx.children(&cell_path(path)?))
    }

    pub fn exists(&self, path: &str) -> Result<bool, ApiError> {
        Ok(self.cx.exists(&cell_path(path)?))
    }

    pub fn write(&mut self, path: &str, value: Value) -> Result<(), ApiError> {
        let path = cell_path(path)?;
        self.check_write(&path, "write")?;
        self.cx
            .write(&path, value)
            .map_err(|e| ApiError::Refused(e.to_string()))
    }

    pub fn delete(&mut self, path: &str) -> Result<(), ApiError> {
        let path = cell_path(path)?;
        self.check_write(&path, "delete")?;
        self.cx
            .delete(&path)
            .map_err(|e| ApiError::Refused(e.to_string()))
    }

    pub fn append(&mut self, path: &str, value: Value) -> Result<(), ApiError> {
        let path = cell_path(path)?;
        self.check_write(&path, "append to")?;
        self.cx
            .append(&path, value)
            .map_err(|e| ApiError::Refused(e.to_string()))
    }

    pub fn emit(
        &mut self,
        signal_text: &str,
        target: Option<&str>,
        payload: Option<Value>,
        delay: u32,
    ) -> Result<(), ApiError> {
        let signal = signal(signal_text)?;
        let target = target.map(cell_path).transpose()?;
        self.check_emit(&signal)?;
        self.count(
            |c| &mut c.emits,
            self.plugin.limits.emits,
            "impulses emitted",
            "plugin_emits_per_call_max",
        )?;
        let mut impulse = match target {
            Some(target) => Impulse::targeted(signal, target),
            None => Impulse::signal(signal),
        };
        impulse.payload = payload;
        self.cx.emit_after(delay, impulse);
        Ok(())
    }

    pub fn bind(&mut self, path: &str, enzyme: &str, propagate: bool) -> Result<(), ApiError> {
        let path = cell_path(path)?;
        let enzyme = name("enzyme", enzyme)?;
        self.check_write(&path, "bind at")?;
        self.cx.bind(&path, &enzyme, propagate);
        Ok(())
    }

    pub fn unbind(&mut self, path: &str, enzyme: &str) -> Result<(), ApiError> {
        let path = cell_path(path)?;
        let enzyme = name("enzyme", enzyme)?;
        self.check_write(&path, "unbind at")?;
        self.cx.unbind(&path, &enzyme);
        Ok(())
    }

    /// Records a CEI fact; `subject` may be empty.
    pub fn cei(
        &mut self,
        severity: &str,
        topic: &str,
        note: &str,
        subject: &str,
    ) -> Result<(), ApiError> {
        let severity: Severity = severity
            .parse()
            .map_err(|e| invalid("severity", severity, e))?;
        let subject = if subject.is_empty() {
            None
        } else {
            Some(cell_path(subject)?)
        };
        if topic.is_empty() || topic.len() > Name::BYTES_MAX {
            return Err(invalid(
                "fact topic",
                topic,
                format!("a topic is 1 to {} bytes", Name::BYTES_MAX),
            ));
        }
        self.count(
            |c| &mut c.facts,
            self.plugin.limits.facts,
            "CEI facts recorded",
            "plugin_facts_per_call_max",
        )?;
        let note = format!(
            "{} (plugin {})",
            capped(note, self.plugin.limits.note_bytes),
            self.plugin.name
        );
        self.cx.cei(severity, topic, &note, subject.as_ref());
        Ok(())
    }

    /// A log line for the operator; never part of the state. Past
    /// `plugin_logs_per_call_max` lines the call fails.
    pub fn log(&mut self, level: &str, message: &str) -> Result<(), ApiError> {
        self.count(
            |c| &mut c.logs,
            self.plugin.limits.logs,
            "log lines written",
            "plugin_logs_per_call_max",
        )?;
        let message = capped(message, self.plugin.limits.note_bytes);
        let (plugin, enzyme, beat) = (&self.plugin.name, self.enzyme(), self.beat());
        match level {
            "error" => tracing::error!(plugin, enzyme, beat, "{message}"),
            "warn" => tracing::warn!(plugin, enzyme, beat, "{message}"),
            "debug" => tracing::debug!(plugin, enzyme, beat, "{message}"),
            _ => tracing::info!(plugin, enzyme, beat, "{message}"),
        }
        Ok(())
    }

    pub fn op_start(
        &mut self,
        verb: &str,
        target: Option<&str>,
        mode: &str,
        payload: Option<Value>,
        ttl_beats: u64,
    ) -> Result<Name, ApiError> {
        let mut spec = OpSpec::new(signal(verb)?);
        spec.target = target.map(cell_path).transpose()?;
        if !mode.is_empty() {
            spec.mode = mode.to_owned();
        }
        spec.payload = payload;
        spec.ttl_beats = beats("ttl", ttl_beats)?;
        Ok(self.cx.op_start(spec))
    }

    pub fn op_state(&mut self, oid: &str, state: &str) -> Result<(), ApiError> {
        let oid = name("operation id", oid)?;
        self.cx.op_state(&oid, state);
        Ok(())
    }

    pub fn op_await(
        &mut self,
        oid: &str,
        want: &str,
        ttl_beats: u64,
        cont: &str,
        payload: Option<Value>,
    ) -> Result<(), ApiError> {
        let oid = name("operation id", oid)?;
        let cont = signal(cont)?;
        let ttl_beats = beats("ttl", ttl_beats)?;
        self.check_emit(&cont)?;
        self.cx.op_await(
            &oid,
            AwaitSpec {
                want: want.to_owned(),
                ttl_beats,
                cont,
                payload,
                reply_to: None,
            },
        );
        Ok(())
    }

    pub fn op_close(
        &mut self,
        oid: &str,
        status_text: &str,
        summary: &str,
    ) -> Result<(), ApiError> {
        let oid = name("operation id", oid)?;
        let status = status(status_text)?;
        let summary = capped(summary, self.plugin.limits.note_bytes);
        self.cx.op_close(&oid, status, &summary);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn ep_start(
        &mut self,
        signal_text: &str,
        target: Option<&str>,
        callback: &str,
        rw: bool,
        cpu_budget_ns: u64,
        io_budget_bytes: u64,
        max_beats: u64,
    ) -> Result<Name, ApiError> {
        let callback = name("callback", callback)?;
        let profile = if rw { Profile::Rw } else { Profile::Ro };
        let mut spec = EpisodeSpec::new(callback.as_str(), profile);
        spec.signal = signal(signal_text)?;
        spec.target = target.map(cell_path).transpose()?;
        spec.budgets = Budgets {
            cpu_budget_ns: amount("cpu_budget_ns", cpu_budget_ns)?,
            io_budget_bytes: amount("io_budget_bytes", io_budget_bytes)?,
        };
        spec.max_beats = beats("max_beats", max_beats)?;
        Ok(self.cx.ep_start(spec))
    }

    pub fn ep_yield(&mut self) -> Result<(), ApiError> {
        self.cx.ep_yield().map_err(refused)
    }

    pub fn ep_await(&mut self, oid: &str, want: &str, ttl_beats: u64) -> Result<(), ApiError> {
        let oid = name("operation id", oid)?;
        let ttl_beats = beats("ttl", ttl_beats)?;
        self.cx.ep_await(&oid, want, ttl_beats).map_err(refused)
    }

    pub fn ep_close(&mut self, status_text: &str, summary: &str) -> Result<(), ApiError> {
        let status = status(status_text)?;
        let summary = capped(summary, self.plugin.limits.note_bytes);
        self.cx.ep_close(status, &summary).map_err(refused)
    }

    /// A labelled snapshot of operation `oid`'s execution document; an
    /// empty `oid` means the episode this call is a slice of.
    pub fn op_snapshot(&mut self, oid: &str, label: &str) -> Result<(), ApiError> {
        let label = name("snapshot label", label)?;
        if oid.is_empty() {
            return self.cx.ep_snapshot(&label).map_err(refused);
        }
        let oid = name("operation id", oid)?;
        self.cx.op_snapshot(&oid, &label);
        Ok(())
    }

    pub fn ep_cancel(&mut self, eid: &str, reason: &str) -> Result<(), ApiError> {
        let eid = name("episode id", eid)?;
        let reason = capped(reason, self.plugin.limits.note_bytes);
        self.cx.ep_cancel(&eid, &reason);
        Ok(())
    }

    /// Requests a lease; `flags` are the ABI's `LEASE_*` bits.
    pub fn ep_lease(&mut self, path: &str, flags: u8) -> Result<(), ApiError> {
        use cep_sdk::abi::{LEASE_DATA, LEASE_DESCENDANTS, LEASE_STORE};
        let path = cell_path(path)?;
        self.check_write(&path, "lease")?;
        let lease = Lease {
            path,
            lock_store: flags & LEASE_STORE != 0,
            lock_data: flags & LEASE_DATA != 0,
            include_descendants: flags & LEASE_DESCENDANTS != 0,
        };
        self.cx.ep_request_lease(lease).map_err(refused)
    }

    /// Gives up a lease: like taking one, it needs a write capability over
    /// the path (`cep_sdk::api`).
    pub fn ep_release(&mut self, path: &str) -> Result<(), ApiError> {
        let path = cell_path(path)?;
        self.check_write(&path, "release")?;
        self.cx.ep_release_lease(&path).map_err(refused)
    }

    pub fn check_cancel(&self) -> bool {
        self.cx.check_cancel()
    }

    pub fn account_io(&mut self, bytes: u64) -> Result<(), ApiError> {
        let bytes = amount("bytes", bytes)?;
        self.cx.account_io(bytes).map_err(refused)
    }
}

fn refused(e: impl ToString) -> ApiError {
    ApiError::Refused(e.to_string())
}
