//! Plugins: descriptor validation, capability grants, the host API every
//! binding calls, and the loaders.
//!
//! Owns everything between a file on disk and enzymes, organs and adapters
//! installed in a runtime. Must not reach into the heartbeat: plugin code
//! gets the host API ([`api::Call`]) and nothing else.
//!
//! Bootstrap, in order:
//! 1. **discover** the configured files and the plugin files in the
//!    configured directories (each file once);
//! 2. **open** each file with the loader of its kind and read its descriptor;
//! 3. **validate** the descriptor ([`validate::validate`], the same for
//!    every kind);
//! 4. **sort** by (name, version, file) — load order never depends on the
//!    directory order — and refuse a second plugin with a name already
//!    taken;
//! 5. **install**: grant capabilities, register enzymes (all or none),
//!    register organs (their constructors run during `op/boot`), publish the
//!    descriptor sealed under `/sys/plugins/<name>/<version>`, start
//!    adapters.
//!
//! A plugin failing any step is rejected with a [`PluginError`] naming the
//! file and the cause. Lenient (default): the rest load and the rejection is
//! recorded (`/rt/plugins/rejected/<i>` and a `plugin:rejected` fact).
//! Strict: bootstrap stops at the first rejection.

pub mod api;
pub mod c;
pub mod caps;
pub mod lua;
pub mod native;
pub mod sink;
pub mod validate;
pub mod wasm;

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cep_sdk::{AbiVersion, Name, Path, PluginDescriptor, PluginKind, Value, Word};

use crate::beat::Runtime;
use crate::cei::{Fact, Severity};
use crate::cell::Snapshot;
use crate::config::Config;
use crate::enzyme::Enzyme;

use api::PluginCtx;
use c::CModule;
use caps::{Capability, Grants};
use lua::{LuaLimits, LuaScript, LuaWorld};
use native::NativeModule;
use sink::SinkState;
use validate::DescriptorError;
use wasm::{WasmLimits, WasmModule};

/// One loaded plugin, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PluginRecord {
    pub name: String,
    pub version: String,
    /// The path it was loaded from.
    pub file: String,
    /// BLAKE3 of its bytes.
    pub file_hash: [u8; 32],
}

/// Why a plugin file was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open: {0}")]
    Open(String),
    #[error("not a cep plugin: {0}")]
    NotAPlugin(String),
    #[error("ABI layout mismatch (built against a different cep-sdk): {0}")]
    Layout(String),
    #[error("plugin initialisation failed: {0}")]
    Init(String),
    #[error("bad descriptor: {0}")]
    Descriptor(String),
    #[error("invalid descriptor: {0}")]
    Invalid(#[from] DescriptorError),
    #[error("duplicate plugin name {name:?}: already loaded from {first}")]
    Duplicate { name: String, first: String },
    #[error("cannot install: {0}")]
    Install(String),
    #[error("wasm guest ABI: {0}")]
    WasmAbi(String),
    #[error("unknown plugin kind: {0}")]
    UnknownKind(String),
    #[error("syntax error in {script} at line {line}: {message}")]
    Syntax {
        script: String,
        line: u32,
        message: String,
    },
}

/// A rejected plugin: which file, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {}: {error}", file.display())]
pub struct PluginError {
    pub file: PathBuf,
    pub error: LoadError,
}

impl PluginError {
    fn new(file: &FsPath, error: LoadError) -> Self {
        PluginError {
            file: file.to_owned(),
            error,
        }
    }
}

/// The code behind a loaded plugin, by kind.
#[derive(Clone)]
pub enum PluginCode {
    Native(NativeModule),
    C(Arc<CModule>),
    Lua(Arc<LuaScript>),
    Wasm(Arc<WasmModule>),
}

impl PluginCode {
    /// The adapter at `index` in the descriptor (Lua and wasm plugins have
    /// none).
    fn adapter(&self, index: usize) -> Option<Arc<dyn AdapterCode>> {
        match self {
            PluginCode::Native(module) => Some(module.adapter(index as u32)),
            PluginCode::C(module) => Some(module.adapter(index)),
            PluginCode::Lua(_) | PluginCode::Wasm(_) => None,
        }
    }
}

/// An adapter's code, whatever its plugin kind.
pub trait AdapterCode: Send + Sync {
    /// Starts the adapter with the sink its inputs go to.
    fn start(&self, sink: Arc<SinkState>) -> Result<(), String>;
    /// Shows it the state committed by `beat`.
    fn commit(&self, beat: u64, snapshot: &Snapshot);
    /// Stops it; afterwards it no longer uses its sink. Called once.
    fn stop(&self);
}

/// A plugin opened and validated, not yet installed.
pub struct Loaded {
    pub descriptor: PluginDescriptor,
    pub file: PathBuf,
    /// BLAKE3 of the file's bytes.
    pub file_hash: [u8; 32],
    pub code: PluginCode,
}

/// How a file is loaded, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A shared library: a C plugin if it exports `cep_plugin_v1`, else a
    /// native Rust plugin.
    Library,
    /// A Lua script: a `.lua` file or a folder holding `init.lua`.
    Lua,
    /// A WebAssembly module: `.wasm`, or `.wat` text.
    Wasm,
}

/// How `file` is loaded, from its name; `None` for files that are not
/// plugins.
pub fn kind_of(file: &FsPath) -> Option<FileKind> {
    if lua::script_path(file).is_some() {
        return Some(FileKind::Lua);
    }
    if wasm::is_wasm(file) {
        return Some(FileKind::Wasm);
    }
    match file.extension().and_then(|e| e.to_str()) {
        Some("so" | "dylib" | "dll") => Some(FileKind::Library),
        _ if is_versioned_so(file) => Some(FileKind::Library),
        _ => None,
    }
}

/// `libx.so.6`, `libx.so.1.2.3`: a shared library with a version suffix.
fn is_versioned_so(file: &FsPath) -> bool {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.split_once(".so.").is_some_and(|(_, version)| {
        !version.is_empty() && version.split('.').all(|p| p.parse::<u32>().is_ok())
    })
}

/// The largest plugin file the host reads (a script, a module or a
/// library), in bytes.
pub const PLUGIN_FILE_BYTES_MAX: u64 = 256 << 20;

/// Checks that `content` is a regular file the host may read: a FIFO, a
/// device or a socket named like a plugin would block or stream forever.
fn check_regular(content: &FsPath) -> Result<(), LoadError> {
    let meta = std::fs::metadata(content).map_err(|e| LoadError::Open(e.to_string()))?;
    if !meta.is_file() {
        return Err(LoadError::Open(format!(
            "{} is not a regular file (a FIFO, device, socket or folder is never opened as a plugin)",
            content.display()
        )));
    }
    if meta.len() > PLUGIN_FILE_BYTES_MAX {
        return Err(LoadError::Open(format!(
            "{} is {} bytes, over the plugin file limit of {PLUGIN_FILE_BYTES_MAX}",
            content.display(),
            meta.len()
        )));
    }
    Ok(())
}

/// Opens and validates one plugin file of any supported kind, under the
/// default configuration.
pub fn load_file(file: &FsPath) -> Result<Loaded, PluginError> {
    load_file_with(file, &Config::default())
}

/// Opens and validates one plugin file of any supported kind (`config`
/// says where compiled wasm modules are cached and how much fuel and memory
/// a module may use while it describes itself).
pub fn load_file_with(file: &FsPath, config: &Config) -> Result<Loaded, PluginError> {
    let fail = |error| PluginError::new(file, error);
    let kind = kind_of(file).ok_or_else(|| {
        fail(LoadError::UnknownKind(
            "expected a shared library (.so, .dylib, .dll), a .lua script or a folder with init.lua, or a .wasm/.wat module"
                .to_owned(),
        ))
    })?;
    let content = match kind {
        FileKind::Lua => lua::script_path(file).unwrap_or_else(|| file.to_owned()),
        FileKind::Library | FileKind::Wasm => file.to_owned(),
    };
    check_regular(&content).map_err(fail)?;
    let bytes = std::fs::read(content).map_err(|e| fail(LoadError::Open(e.to_string())))?;
    let file_hash = *blake3::hash(&bytes).as_bytes();
    let (kind, code, descriptor) = match kind {
        FileKind::Wasm => {
            let (module, descriptor) = wasm::open(file, bytes, config).map_err(fail)?;
            (PluginKind::Wasm, PluginCode::Wasm(module), descriptor)
        }
        FileKind::Library if c::is_c_plugin(file).map_err(fail)? => {
            let (module, descriptor) = CModule::open(file).map_err(fail)?;
            (PluginKind::C, PluginCode::C(module), descriptor)
        }
        FileKind::Library => {
            let (module, descriptor) = NativeModule::open(file).map_err(fail)?;
            (PluginKind::Native, PluginCode::Native(module), descriptor)
        }
        FileKind::Lua => {
            let (script, descriptor) = lua::open(file).map_err(fail)?;
            (PluginKind::Lua, PluginCode::Lua(script), descriptor)
        }
    };
    if descriptor.kind != kind {
        return Err(fail(LoadError::Invalid(DescriptorError::Kind {
            found: descriptor.kind.as_str().to_owned(),
            loaded: kind.as_str().to_owned(),
        })));
    }
    validate::validate(&descriptor, AbiVersion::CURRENT).map_err(|e| fail(e.into()))?;
    Ok(Loaded {
        descriptor,
        file: file.to_owned(),
        file_hash,
        code,
    })
}

/// The plugin files a configuration names: the listed files, then every
/// plugin file of each directory, each file once, sorted.
pub fn discover(config: &Config) -> Result<Vec<PathBuf>, PluginError> {
    let mut files: Vec<PathBuf> = config.plugins.clone();
    for dir in &config.plugin_dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            PluginError::new(dir, LoadError::Open(format!("plugin directory: {e}")))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if kind_of(&path).is_some() {
                files.push(path);
            }
        }
    }
    let mut seen = BTreeMap::new();
    for file in files {
        let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        seen.entry(key).or_insert(file);
    }
    Ok(seen.into_values().collect())
}

/// What bootstrap loaded and refused.
#[derive(Default)]
pub struct PluginSet {
    pub loaded: Vec<Loaded>,
    pub rejected: Vec<PluginError>,
}

/// Discovers, opens and validates the configured plugins, sorted by (name,
/// version, file); a second plugin with a taken name is rejected. Strict:
/// the first rejection is the error.
pub fn load_all(config: &Config) -> Result<PluginSet, PluginError> {
    let mut set = PluginSet::default();
    let reject = |set: &mut PluginSet, e: PluginError| {
        if config.strict {
            Err(e)
        } else {
            set.rejected.push(e);
            Ok(())
        }
    };
    for file in discover(config)? {
        match load_file_with(&file, config) {
            Ok(loaded) => set.loaded.push(loaded),
            Err(e) => reject(&mut set, e)?,
        }
    }
    set.loaded.sort_by(|a, b| {
        let key = |l: &Loaded| {
            let version = semver::Version::parse(&l.descriptor.version).ok();
            (l.descriptor.name.clone(), version, l.file.clone())
        };
        key(a).cmp(&key(b))
    });
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut kept = Vec::new();
    for loaded in std::mem::take(&mut set.loaded) {
        match names.get(&loaded.descriptor.name) {
            Some(first) => {
                let error = LoadError::Duplicate {
                    name: loaded.descriptor.name.clone(),
                    first: first.display().to_string(),
                };
                reject(&mut set, PluginError::new(&loaded.file, error))?;
            }
            None => {
                names.insert(loaded.descriptor.name.clone(), loaded.file.clone());
                kept.push(loaded);
            }
        }
    }
    set.loaded = kept;
    Ok(set)
}

/// An adapter running in the host.
struct RunningAdapter {
    plugin: String,
    name: String,
    code: Arc<dyn AdapterCode>,
    sink: Arc<SinkState>,
    stopped: AtomicBool,
}

/// Adapter input counts, for reports and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterStats {
    pub plugin: String,
    pub adapter: String,
    /// Inputs handed over for capture.
    pub accepted: u64,
    /// Inputs refused because shutdown had begun.
    pub dropped: u64,
    /// Offers refused because the input queue was full (back-pressure).
    pub full: u64,
}

/// The installed plugins of one runtime.
#[derive(Default)]
pub struct PluginHost {
    installed: Vec<(String, String)>,
    rejected: Vec<PluginError>,
    adapters: Vec<RunningAdapter>,
    /// The world's Lua VM, made with the first Lua plugin.
    lua: Option<Arc<LuaWorld>>,
    /// The descriptor in use, and the reloads so far, per plugin name.
    descriptors: BTreeMap<String, (PluginDescriptor, u32)>,
    /// What the journal records of each plugin installed at bootstrap.
    records: Vec<PluginRecord>,
    /// Replay: adapters are not started (their inputs come from the
    /// journal).
    no_adapters: bool,
}

/// Records a fact about `plugin` at the next commit.
fn report(runtime: &mut Runtime, severity: Severity, topic: &str, plugin: &str, note: String) {
    runtime.report(Fact::new(severity, topic, note).origin(plugin.to_owned()));
}

fn file_name(file: &FsPath) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn name(text: &str) -> Name {
    Name::new(text).expect("validated descriptors hold valid names")
}

impl PluginHost {
    /// Loads the configured plugins and installs them in `runtime`, which
    /// must not have run a beat yet. Strict: the first rejection is the
    /// error.
    pub fn bootstrap(runtime: &mut Runtime, config: &Config) -> Result<Self, PluginError> {
        Self::bootstrap_with(runtime, config, true)
    }

    /// [`PluginHost::bootstrap`] for a replay: the same plugins, but no
    /// adapter starts (the journal supplies their inputs).
    pub fn bootstrap_for_replay(
        runtime: &mut Runtime,
        config: &Config,
    ) -> Result<Self, PluginError> {
        Self::bootstrap_with(runtime, config, false)
    }

    fn bootstrap_with(
        runtime: &mut Runtime,
        config: &Config,
        adapters: bool,
    ) -> Result<Self, PluginError> {
        let set = load_all(config)?;
        let mut host = PluginHost::default();
        host.no_adapters = !adapters;
        host.rejected = set.rejected;
        for loaded in set.loaded {
            if let Err(e) = host.install(runtime, config, loaded) {
                if config.strict {
                    return Err(e);
                }
                host.rejected.push(e);
            }
        }
        for (i, e) in host.rejected.iter().enumerate() {
            let at = Path::parse(&format!("/rt/plugins/rejected/{i}")).expect("digits");
            let cells = vec![
                (
                    "file".to_owned(),
                    Value::text(&e.file.display().to_string()),
                ),
                ("error".to_owned(), Value::text(&e.error.to_string())),
            ];
            runtime.publish(at, cells, false);
            runtime.report(Fact::new(Severity::Crit, "plugin:rejected", e.to_string()));
        }
        host.start_adapters(runtime);
        Ok(host)
    }

    /// The installed plugins as a journal records them (name, version,
    /// file, file hash), in load order.
    pub fn records(&self) -> &[PluginRecord] {
        &self.records
    }

    /// (name, version) of each installed plugin, in load order.
    pub fn installed(&self) -> &[(String, String)] {
        &self.installed
    }

    pub fn rejected(&self) -> &[PluginError] {
        &self.rejected
    }

    /// Installs one loaded plugin: enzymes (all or none), organs, the
    /// published descriptor.
    pub fn install(
        &mut self,
        runtime: &mut Runtime,
        config: &Config,
        loaded: Loaded,
    ) -> Result<(), PluginError> {
        let d = &loaded.descriptor;
        let fail = |error: String| PluginError::new(&loaded.file, LoadError::Install(error));
        let grants = Grants::resolve(&d.capabilities, &config.grants_for(&d.name));
        let ctx = Arc::new(
            PluginCtx::new(&d.name, grants.clone()).with_limits(api::CallLimits::of(config)),
        );
        let callbacks = self
            .callbacks(runtime, config, &loaded, ctx, &grants)
            .map_err(&fail)?;
        // All or none: try every registration on a copy first.
        let mut trial = runtime.registry().clone();
        for (desc, callback) in d.enzymes.iter().zip(&callbacks) {
            trial
                .register(desc, callback.clone())
                .map_err(|e| fail(e.to_string()))?;
        }
        for organ in &d.organs {
            if let Some(existing) = runtime.organs().get(&organ.kind, &d.version) {
                if existing.descriptor != *organ {
                    return Err(fail(format!(
                        "organ {} {} differs from the one plugin {} registered",
                        organ.kind, d.version, existing.plugin
                    )));
                }
            }
        }
        for (desc, callback) in d.enzymes.iter().zip(callbacks) {
            runtime
                .register_shared(desc, callback)
                .map_err(|e| fail(e.to_string()))?;
        }
        for organ in &d.organs {
            runtime
                .register_organ(organ, &d.name, &d.version)
                .map_err(|e| fail(e.to_string()))?;
        }
        self.publish(runtime, &loaded, &grants);
        self.descriptors.insert(d.name.clone(), (d.clone(), 0));
        self.records.push(PluginRecord {
            name: d.name.clone(),
            version: d.version.clone(),
            file: loaded.file.display().to_string(),
            file_hash: loaded.file_hash,
        });
        for (i, adapter) in d.adapters.iter().enumerate() {
            if !grants.allows(&Capability::Threads) {
                let note = format!(
                    "plugin {} lacks capability threads: adapter {} is not started",
                    d.name, adapter.name
                );
                report(runtime, Severity::Usage, "plugin:capability", &d.name, note);
                continue;
            }
            let Some(code) = loaded.code.adapter(i) else {
                continue;
            };
            let source = Word::new(&adapter.name).expect("validated adapter name");
            let sink = SinkState::new(runtime.injector(), source, &d.name, grants.clone());
            self.adapters.push(RunningAdapter {
                plugin: d.name.clone(),
                name: adapter.name.clone(),
                code,
                sink: Arc::new(sink),
                stopped: AtomicBool::new(false),
            });
        }
        self.installed.push((d.name.clone(), d.version.clone()));
        Ok(())
    }

    /// Replaces an installed Lua or wasm plugin with a newer version from
    /// `file`,
    /// between beats: the new version's enzymes take over from the next
    /// beat (the old ones are retired, all or none), the new descriptor is
    /// published sealed beside the old one, `active` names it, and
    /// `/sys/plugins/<name>/reloads/<i>` records `{from, to, beat}` (the
    /// first beat the new version runs), with a `debug` fact
    /// `plugin:reload`. Lua callbacks scheduled with `cep.delay` still run;
    /// a wasm plugin gets a new instance (the old one's memory is dropped
    /// with it).
    ///
    /// Refused: a native or C plugin (libraries are never unloaded), a
    /// change of kind, a name not installed, a version not newer, changed
    /// organs (they are constructed once, at boot), or anything `install`
    /// refuses. A refused reload changes nothing.
    pub fn reload(
        &mut self,
        runtime: &mut Runtime,
        config: &Config,
        file: &FsPath,
    ) -> Result<(), PluginError> {
        let loaded = load_file_with(file, config)?;
        let fail = |e: String| PluginError::new(file, LoadError::Install(format!("reload: {e}")));
        let d = &loaded.descriptor;
        if !matches!(loaded.code, PluginCode::Lua(_) | PluginCode::Wasm(_)) {
            return Err(fail(format!(
                "{} is a {} plugin; only Lua and wasm plugins reload (native and C libraries are never unloaded)",
                d.name,
                d.kind.as_str()
            )));
        }
        let Some((old, reloads)) = self.descriptors.get(&d.name).cloned() else {
            return Err(fail(format!("no plugin named {} is installed", d.name)));
        };
        if old.kind != d.kind {
            return Err(fail(format!(
                "the installed {} is a {} plugin, the new version a {} plugin",
                d.name,
                old.kind.as_str(),
                d.kind.as_str()
            )));
        }
        let newer = match (
            semver::Version::parse(&d.version),
            semver::Version::parse(&old.version),
        ) {
            (Ok(new), Ok(installed)) => new > installed,
            _ => false,
        };
        if !newer {
            return Err(fail(format!(
                "version {} is not newer than the installed {}",
                d.version, old.version
            )));
        }
        if d.organs != old.organs {
            return Err(fail(
                "the organs changed; organs are constructed once, at boot".to_owned(),
            ));
        }
        let grants = Grants::resolve(&d.capabilities, &config.grants_for(&d.name));
        let ctx = Arc::new(
            PluginCtx::new(&d.name, grants.clone()).with_limits(api::CallLimits::of(config)),
        );
        let callbacks = self
            .callbacks(runtime, config, &loaded, ctx, &grants)
            .map_err(&fail)?;
        let retire: Vec<String> = old.enzymes.iter().map(|e| e.name.clone()).collect();
        let add: Vec<(cep_sdk::EnzymeDescriptor, Arc<dyn Enzyme>)> =
            d.enzymes.iter().cloned().zip(callbacks).collect();
        runtime
            .replace_enzymes(&retire, &add)
            .map_err(|e| fail(e.to_string()))?;
        self.publish(runtime, &loaded, &grants);
        let at = Path::parse(&format!("/sys/plugins/{}/reloads/{reloads}", d.name))
            .expect("plugin names are words");
        let beat = runtime.next_beat();
        runtime.publish(
            at,
            vec![
                ("from".to_owned(), Value::text(&old.version)),
                ("to".to_owned(), Value::text(&d.version)),
                ("beat".to_owned(), Value::I64(beat as i64)),
            ],
            true,
        );
        let note = format!(
            "plugin {} reloaded: {} → {} from beat {beat}",
            d.name, old.version, d.version
        );
        report(runtime, Severity::Debug, "plugin:reload", &d.name, note);
        if let Some(entry) = self.installed.iter_mut().find(|(n, _)| n == &d.name) {
            entry.1 = d.version.clone();
        }
        self.descriptors
            .insert(d.name.clone(), (d.clone(), reloads + 1));
        Ok(())
    }

    /// One callback per enzyme of `loaded`'s descriptor, in order: the
    /// library's entry points, or the enzymes of a script evaluated in the
    /// world's VM, or of a new wasm instance.
    fn callbacks(
        &mut self,
        runtime: &mut Runtime,
        config: &Config,
        loaded: &Loaded,
        ctx: Arc<PluginCtx>,
        grants: &Grants,
    ) -> Result<Vec<Arc<dyn Enzyme>>, String> {
        let d = &loaded.descriptor;
        Ok(match &loaded.code {
            PluginCode::Native(module) => (0..d.enzymes.len())
                .map(|i| module.enzyme(i as u32, ctx.clone()))
                .collect(),
            PluginCode::C(module) => (0..d.enzymes.len())
                .map(|i| module.enzyme(i, ctx.clone()))
                .collect(),
            PluginCode::Lua(script) => self.lua_world(runtime, config)?.install(script, d, ctx)?,
            PluginCode::Wasm(module) => {
                let instance = module.instantiate(ctx, grants, WasmLimits::of(config, &d.name))?;
                (0..d.enzymes.len()).map(|i| instance.enzyme(i)).collect()
            }
        })
    }

    /// The world's Lua VM, made on first use; its collector steps after
    /// every beat.
    fn lua_world(
        &mut self,
        runtime: &mut Runtime,
        config: &Config,
    ) -> Result<Arc<LuaWorld>, String> {
        if let Some(world) = &self.lua {
            return Ok(world.clone());
        }
        let world = LuaWorld::new(LuaLimits::of(config))?;
        let collector = world.clone();
        runtime.on_commit(move |_, _| collector.collect());
        self.lua = Some(world.clone());
        Ok(world)
    }

    /// `/sys/plugins/<name>/<version>/` (sealed: kind, abi, file name,
    /// descriptor JSON, enzymes/, organs/, adapters/, granted/, refused/)
    /// and `/sys/plugins/<name>/active` (the version in use).
    fn publish(&self, runtime: &mut Runtime, loaded: &Loaded, grants: &Grants) {
        let d = &loaded.descriptor;
        let base = Path::from_names(vec![name("sys"), name("plugins"), name(&d.name)]);
        let mut cells = vec![
            ("kind".to_owned(), Value::text(d.kind.as_str())),
            ("abi".to_owned(), Value::text(&d.abi.to_string())),
            // The file name only: where plugins are installed, and how
            // they were compiled, must not change the state hash. The file
            // hash belongs to the plugin set the journal records.
            ("file".to_owned(), Value::text(&file_name(&loaded.file))),
            ("descriptor".to_owned(), Value::text(&d.to_json())),
        ];
        let lists: [(&str, Vec<String>); 5] = [
            (
                "enzymes",
                d.enzymes.iter().map(|e| e.name.clone()).collect(),
            ),
            ("organs", d.organs.iter().map(|o| o.kind.clone()).collect()),
            (
                "adapters",
                d.adapters.iter().map(|a| a.name.clone()).collect(),
            ),
            (
                "granted",
                grants.held().iter().map(|c| c.to_string()).collect(),
            ),
            ("refused", grants.refused().to_vec()),
        ];
        for (list, items) in lists {
            for (i, item) in items.iter().enumerate() {
                cells.push((format!("{list}/{i}"), Value::text(item)));
            }
        }
        runtime.publish(base.child(name(&d.version)), cells, true);
        runtime.publish(
            base,
            vec![("active".to_owned(), Value::text(&d.version))],
            false,
        );
    }

    fn start_adapters(&mut self, runtime: &mut Runtime) {
        if self.no_adapters {
            self.adapters.clear();
            return;
        }
        let mut started = Vec::new();
        for adapter in std::mem::take(&mut self.adapters) {
            match adapter.code.start(adapter.sink.clone()) {
                Ok(()) => {
                    let code = adapter.code.clone();
                    runtime.on_commit(move |report, snapshot| code.commit(report.beat, snapshot));
                    started.push(adapter);
                }
                Err(e) => {
                    let note = format!(
                        "plugin {}: adapter {} failed to start: {e}",
                        adapter.plugin, adapter.name
                    );
                    report(
                        runtime,
                        Severity::Crit,
                        "plugin:adapter",
                        &adapter.plugin,
                        note,
                    );
                }
            }
        }
        self.adapters = started;
    }

    /// Stops every adapter still running (call once shutdown has begun:
    /// inputs sent after that are dropped and counted). Dropping the host
    /// does the same.
    pub fn stop_adapters(&self) {
        for adapter in &self.adapters {
            if !adapter.stopped.swap(true, Ordering::SeqCst) {
                adapter.code.stop();
            }
        }
    }

    pub fn adapter_stats(&self) -> Vec<AdapterStats> {
        self.adapters
            .iter()
            .map(|a| AdapterStats {
                plugin: a.plugin.clone(),
                adapter: a.name.clone(),
                accepted: a.sink.accepted.load(Ordering::Relaxed),
                dropped: a.sink.dropped.load(Ordering::Relaxed),
                full: a.sink.full.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.stop_adapters();
    }
}
