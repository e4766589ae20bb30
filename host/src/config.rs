//! The host configuration (`cep.toml`). Every key, its default and its limit
//! are listed in `docs/config.md`; this struct is the one definition.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The most linear memory any wasm instance may have (the pooling
/// allocator reserves this much address space per slot).
pub const WASM_MEMORY_MAX: usize = 1 << 30;

/// Which executor runs the compute phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Everything on the heartbeat thread.
    #[default]
    Cooperative,
    /// Agenda entries run on a pool of worker threads.
    Threaded,
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cooperative" => Ok(ExecutorKind::Cooperative),
            "threaded" => Ok(ExecutorKind::Threaded),
            other => Err(format!(
                "unknown executor {other:?}: expected cooperative or threaded"
            )),
        }
    }
}

/// Runtime configuration. Unknown keys are an error, so a typo never passes
/// silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the runtime keeps its files. Default `./cep-data`.
    pub data_dir: PathBuf,
    /// Default `cooperative`.
    pub executor: ExecutorKind,
    /// Worker threads of the threaded executor; 0 means one per CPU.
    /// Default 0, at most [`Config::WORKERS_MAX`].
    pub workers: usize,
    /// How many times one enzyme may retry one impulse before the impulse is
    /// dropped with a `crit` fact. Default 8.
    pub retry_max: u32,
    /// Beats whose ledger (`/rt/beat/<N>`) is kept; 0 turns the ledger off.
    /// Default 16.
    pub ledger_beats: u64,
    /// Impulse and agenda rows recorded per beat in the ledger (the counts
    /// are always recorded). Default 64.
    pub ledger_rows_max: usize,
    /// Committed snapshots kept in memory for `read_at`. Default 16, at
    /// least 1.
    pub history_snapshots: usize,
    /// Facts kept in the CEI mailbox. Default 1024.
    pub cei_facts_max: usize,
    /// Whether each CEI fact emits `sig_cei/<sev>` for the next beat.
    /// Default true.
    pub cei_signal: bool,
    /// History entries kept per OPS dossier (the oldest are dropped; the
    /// journal keeps the whole record). Default 32.
    pub ops_history_max: usize,
    /// `cell:conflict` facts recorded per beat; further conflicts of the
    /// beat are counted in one summary fact. Default 16.
    pub conflict_facts_max: usize,
    /// Impulses one beat may capture; emissions beyond it are dropped with a
    /// `crit` fact (`beat:queue/full`). Default 4,194,304.
    pub impulses_per_beat_max: usize,
    /// Impulses waiting to be injected from outside; `inject` fails when
    /// full (back-pressure). Default 1,048,576.
    pub inject_queue_max: usize,
    /// Stop the runtime after the first fatal outcome. Default false: the
    /// host records the fact and keeps beating.
    pub stop_on_fatal: bool,
    /// Plugin files to load (relative paths are relative to the
    /// configuration file). Default none.
    pub plugins: Vec<PathBuf>,
    /// Directories whose plugin files are all loaded. Default none.
    pub plugin_dirs: Vec<PathBuf>,
    /// Stop at the first plugin that cannot be loaded (exit code 2) instead
    /// of skipping it and recording why. Default false.
    pub strict: bool,
    /// Capabilities granted per plugin name; `"*"` grants to every plugin.
    /// A plugin holds what it requests and is granted. Default none.
    pub grants: BTreeMap<String, Vec<String>>,
    /// Lua VM instructions one call of a Lua enzyme may run; beyond it the
    /// call is `fatal` (`lua:budget`). Counted in steps of 1,000. Default
    /// 10,000,000.
    pub lua_budget: u64,
    /// Bytes the world's Lua VM may allocate; beyond it the call that
    /// allocates is `fatal` (`lua:memory`). Default 64 MiB.
    pub lua_memory_max: usize,
    /// Kilobytes of Lua garbage-collection work done after every beat (the
    /// collector never runs on its own, so its work is the same on every
    /// run). Default 256.
    pub lua_gc_step_kb: u32,
    /// Fuel one call of a wasm enzyme gets (about one unit per wasm
    /// instruction); a call that runs out is `fatal` (`wasm:fuel`), and
    /// stops at the same instruction on every run. Default 10,000,000.
    pub wasm_fuel: u64,
    /// Bytes of linear memory one wasm plugin's instance may have; growing
    /// beyond is `fatal` (`wasm:memory`). Default 64 MiB, at most 1 GiB.
    pub wasm_memory_max: usize,
    /// Where compiled wasm modules are cached (relative to the
    /// configuration file). Default `$CEP_WASM_CACHE`, else
    /// `$XDG_CACHE_HOME/cep/wasm`, else `~/.cache/cep/wasm`; `""` turns the
    /// cache off.
    pub wasm_cache_dir: Option<PathBuf>,
    /// Impulses one call of a plugin's enzyme may emit; the next one fails
    /// the call (`fatal`, with a `crit` `plugin:limit` fact). Default 4,096.
    pub plugin_emits_per_call_max: u32,
    /// CEI facts one call of a plugin's enzyme may record; beyond, the call
    /// fails as above. Default 64.
    pub plugin_facts_per_call_max: u32,
    /// Log lines one call of a plugin's enzyme may write; beyond, the call
    /// fails as above. Default 256.
    pub plugin_logs_per_call_max: u32,
    /// Bytes of a fact note, log line, operation summary or cancel reason a
    /// plugin gives; longer text is cut to this, saying how long it was.
    /// Default 4,096, at least 64.
    pub plugin_note_bytes_max: usize,
    /// Per-plugin overrides of `wasm_fuel` and `wasm_memory_max`:
    /// `[wasm_limits.<plugin>]` with `fuel` and/or `memory_max`.
    pub wasm_limits: BTreeMap<String, WasmLimit>,
}

/// One plugin's override of the wasm limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WasmLimit {
    pub fuel: Option<u64>,
    pub memory_max: Option<usize>,
}

impl Config {
    pub const WORKERS_MAX: usize = 256;

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // `cep.toml` has an empty parent; "./" keeps a bare file name from
        // being looked up in the loader's search path instead.
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Self::parse_at(&text, base).map_err(|reason| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses configuration text whose relative plugin paths are relative
    /// to `base` (a replay rebuilds the recorded configuration this way).
    pub fn parse_at(text: &str, base: &Path) -> Result<Self, String> {
        let mut config = Self::parse(text)?;
        for p in config
            .plugins
            .iter_mut()
            .chain(config.plugin_dirs.iter_mut())
            .chain(
                config
                    .wasm_cache_dir
                    .iter_mut()
                    .filter(|d| !d.as_os_str().is_empty()),
            )
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// The capabilities the configuration grants plugin `name`.
    pub fn grants_for(&self, name: &str) -> Vec<String> {
        let mut all: Vec<String> = self.grants.get("*").cloned().unwrap_or_default();
        all.extend(self.grants.get(name).cloned().unwrap_or_default());
        all
    }

    /// Whether any plugin is configured.
    pub fn has_plugins(&self) -> bool {
        !self.plugins.is_empty() || !self.plugin_dirs.is_empty()
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (plugin, caps) in &self.grants {
            for cap in caps {
                cep_sdk::caps::Capability::parse(cap)
                    .map_err(|reason| format!("grants.{plugin}: {cap:?}: {reason}"))?;
            }
        }
        for (plugin, limit) in &self.wasm_limits {
            if let Some(fuel) = limit.fuel {
                if !(1_000..=1 << 40).contains(&fuel) {
                    return Err(format!(
                        "wasm_limits.{plugin}.fuel = {fuel} is out of range: allowed 1000 to {}",
                        1u64 << 40
                    ));
                }
            }
        }
        let memory_max = std::iter::once(("wasm_memory_max".to_owned(), self.wasm_memory_max))
            .chain(self.wasm_limits.iter().filter_map(|(plugin, l)| {
                l.memory_max
                    .map(|m| (format!("wasm_limits.{plugin}.memory_max"), m))
            }));
        for (key, bytes) in memory_max {
            if bytes < 1 << 16 {
                return Err(format!(
                    "{key} = {bytes} is out of range: a wasm memory cap is at least one wasm page (65536 bytes)"
                ));
            }
            if bytes > WASM_MEMORY_MAX {
                return Err(format!(
                    "{key} = {bytes}: a wasm memory cap of {bytes} bytes is above the host's limit of {} bytes",
                    WASM_MEMORY_MAX
                ));
            }
        }
        if self.workers > Self::WORKERS_MAX {
            return Err(format!(
                "workers = {} is above the maximum of {}",
                self.workers,
                Self::WORKERS_MAX
            ));
        }
        for (key, value, low, high) in self.numeric_ranges() {
            if value < low || value > high {
                return Err(format!(
                    "{key} = {value} is out of range: allowed {low} to {high} (docs/config.md)"
                ));
            }
        }
        Ok(())
    }

    /// Every numeric key with its allowed range (inclusive); a value outside
    /// is refused at load, naming the key and the range.
    fn numeric_ranges(&self) -> [(&'static str, u64, u64, u64); 18] {
        const M: u64 = 1 << 20;
        let n = |v: usize| v as u64;
        [
            ("workers", n(self.workers), 0, Self::WORKERS_MAX as u64),
            ("retry_max", self.retry_max.into(), 0, 1 << 16),
            ("ledger_beats", self.ledger_beats, 0, M),
            ("ledger_rows_max", n(self.ledger_rows_max), 0, M),
            ("history_snapshots", n(self.history_snapshots), 1, 4096),
            ("cei_facts_max", n(self.cei_facts_max), 1, M),
            ("ops_history_max", n(self.ops_history_max), 1, M),
            ("conflict_facts_max", n(self.conflict_facts_max), 1, 1 << 16),
            (
                "impulses_per_beat_max",
                n(self.impulses_per_beat_max),
                1,
                1 << 26,
            ),
            ("inject_queue_max", n(self.inject_queue_max), 1, 1 << 26),
            ("lua_budget", self.lua_budget, 1_000, 1 << 40),
            ("lua_memory_max", n(self.lua_memory_max), M, 16 << 30),
            ("lua_gc_step_kb", self.lua_gc_step_kb.into(), 1, M),
            ("wasm_fuel", self.wasm_fuel, 1_000, 1 << 40),
            (
                "plugin_emits_per_call_max",
                self.plugin_emits_per_call_max.into(),
                1,
                1 << 22,
            ),
            (
                "plugin_facts_per_call_max",
                self.plugin_facts_per_call_max.into(),
                1,
                1 << 16,
            ),
            (
                "plugin_logs_per_call_max",
                self.plugin_logs_per_call_max.into(),
                1,
                1 << 16,
            ),
            (
                "plugin_note_bytes_max",
                n(self.plugin_note_bytes_max),
                64,
                M,
            ),
        ]
    }

    /// The worker count the threaded executor will use.
    pub fn effective_workers(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.workers
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./cep-data"),
            executor: ExecutorKind::Cooperative,
            workers: 0,
            retry_max: 8,
            ledger_beats: 16,
            ledger_rows_max: 64,
            history_snapshots: 16,
            cei_facts_max: 1024,
            cei_signal: true,
            ops_history_max: 32,
            conflict_facts_max: 16,
            impulses_per_beat_max: 1 << 22,
            inject_queue_max: 1 << 20,
            stop_on_fatal: false,
            plugins: Vec::new(),
            plugin_dirs: Vec::new(),
            strict: false,
            grants: BTreeMap::new(),
            lua_budget: 10_000_000,
            lua_memory_max: 64 << 20,
            lua_gc_step_kb: 256,
            wasm_fuel: 10_000_000,
            wasm_memory_max: 64 << 20,
            wasm_cache_dir: None,
            wasm_limits: BTreeMap::new(),
            plugin_emits_per_call_max: 4096,
            plugin_facts_per_call_max: 64,
            plugin_logs_per_call_max: 256,
            plugin_note_bytes_max: 4096,
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}
