//! Sandboxed WebAssembly plugins (wasmtime): any language that compiles to
//! a core wasm module can write one, and nothing it does can crash, stall or
//! read outside the host.
//!
//! A wasm plugin is a `.wasm` file (or `.wat` text, compiled on load). It
//! speaks the guest ABI of [`cep_sdk::wasm`] (reference:
//! `docs/wasm-abi.md`): it exports `cep_abi_1_0`, `memory`, `cep_describe`
//! and `cep_call`, and imports host functions from module `cep` only.
//!
//! **Loading** ([`open`]): check the bytes are wasm, compile (or load from
//! the module cache, [`engine::compile`]), check the marker, exports and
//! imports, then instantiate once in a throwaway store to read the
//! descriptor. **Installing** ([`WasmModule::instantiate`]): link only the
//! host functions the granted capabilities allow (an import of anything
//! else is an error naming it), prepare an [`InstancePre`], and make the
//! plugin's one instance.
//!
//! **Sandbox**: no WASI, clock, files or sockets — the `cep` functions are
//! all a module can reach. Each call gets a fixed fuel budget
//! (`wasm_fuel`, per plugin overridable): the same code stops at the same
//! instruction on every run. Memory is capped per instance
//! (`wasm_memory_max`) with `StoreLimits`. A trap, running out of fuel or
//! hitting the memory cap ends the call `fatal` with a `crit` fact
//! (`wasm:trap`, `wasm:fuel`, `wasm:memory`) naming plugin, enzyme and
//! reason; the instance is then discarded and a fresh one made before the
//! plugin's next call.
//!
//! **Determinism**: an instance keeps its memory between calls, so all the
//! enzymes of one plugin share an executor lane (`wasm:<plugin>`): even the
//! threaded executor runs them one after another in agenda order, while
//! other plugins run in parallel.

mod engine;
mod link;

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use cep_sdk::wasm::{self as abi, ABI_MAJOR, ABI_MINOR};
use cep_sdk::{PluginDescriptor, PluginKind};
use wasmtime::{
    ExternType, InstancePre, Linker, Memory, Module, Store, StoreLimitsBuilder, Trap, TypedFunc,
};

use super::api::{Call, PluginCtx};
use super::caps::Grants;
use super::LoadError;
use crate::cei::Severity;
use crate::config::Config;
use crate::enzyme::EnzymeCx;
use crate::enzyme::{Enzyme, Outcome};

pub use cep_sdk::api::Needs;
pub use engine::{cache_key, default_cache_dir, engine, Source, POOL_MEMORY_MAX};
pub use link::linked;

/// Per-plugin limits of a wasm instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WasmLimits {
    /// Fuel for one call (roughly one unit per wasm instruction).
    pub fuel: u64,
    /// Bytes of linear memory the instance may have.
    pub memory_max: usize,
}

impl WasmLimits {
    /// The limits `config` sets for plugin `name`.
    pub fn of(config: &Config, name: &str) -> Self {
        let over = config.wasm_limits.get(name);
        WasmLimits {
            fuel: over.and_then(|o| o.fuel).unwrap_or(config.wasm_fuel),
            memory_max: over
                .and_then(|o| o.memory_max)
                .unwrap_or(config.wasm_memory_max),
        }
    }
}

/// Where compiled modules are cached under `config`: `wasm_cache_dir`, or
/// the default; an empty `wasm_cache_dir` turns the cache off.
pub fn cache_dir(config: &Config) -> Option<std::path::PathBuf> {
    match &config.wasm_cache_dir {
        Some(dir) if dir.as_os_str().is_empty() => None,
        Some(dir) => Some(dir.clone()),
        None => default_cache_dir(),
    }
}

/// Whether `file` is a wasm plugin by its name.
pub fn is_wasm(file: &FsPath) -> bool {
    matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("wasm" | "wat")
    )
}

/// A compiled, checked wasm plugin.
pub struct WasmModule {
    module: Module,
    /// Names of the `cep` functions it imports.
    imports: Vec<String>,
    /// How the module was obtained (compiled now, or from the cache).
    source: Source,
}

impl WasmModule {
    /// What the loader found in the cache, for tests and benchmarks.
    pub fn from_cache(&self) -> bool {
        self.source == Source::Cached
    }
}

/// The module's bytes: `.wat` text is compiled to binary first.
fn binary(file: &FsPath, bytes: Vec<u8>) -> Result<Vec<u8>, LoadError> {
    if file.extension().and_then(|e| e.to_str()) == Some("wat") {
        return wat::parse_bytes(&bytes)
            .map(|b| b.into_owned())
            .map_err(|e| LoadError::NotAPlugin(format!("not valid WebAssembly text: {e}")));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotAPlugin(
            "not a WebAssembly module (it does not start with \\0asm)".to_owned(),
        ));
    }
    Ok(bytes)
}

/// Opens a wasm plugin: its module and descriptor.
pub fn open(
    file: &FsPath,
    bytes: Vec<u8>,
    config: &Config,
) -> Result<(Arc<WasmModule>, PluginDescriptor), LoadError> {
    let bytes = binary(file, bytes)?;
    let (module, source) =
        engine::compile(&bytes, cache_dir(config).as_deref()).map_err(LoadError::NotAPlugin)?;
    check_marker(&module)?;
    check_exports(&module)?;
    let imports = check_imports(&module)?;
    let module = WasmModule {
        module,
        imports,
        source,
    };
    // The descriptor comes from a throwaway instance with every host
    // function linked (they refuse: no call is running) and the default
    // limits; its name is not known yet.
    let limits = WasmLimits {
        fuel: config.wasm_fuel,
        memory_max: config.wasm_memory_max,
    };
    let pre = module.prepare(|_| true).map_err(LoadError::WasmAbi)?;
    let mut live = Live::new(&pre, limits).map_err(LoadError::Init)?;
    let descriptor = live.describe(limits)?;
    if descriptor.kind != PluginKind::Wasm {
        return Err(LoadError::Invalid(super::validate::DescriptorError::Kind {
            found: descriptor.kind.as_str().to_owned(),
            loaded: PluginKind::Wasm.as_str().to_owned(),
        }));
    }
    if !descriptor.adapters.is_empty() {
        return Err(LoadError::Descriptor(
            "a wasm plugin declares no adapters (they run threads of their own; use a native or C plugin)"
                .to_owned(),
        ));
    }
    Ok((Arc::new(module), descriptor))
}

fn check_marker(module: &Module) -> Result<(), LoadError> {
    let mut markers: Vec<(u32, u32, String)> = Vec::new();
    for e in module.exports() {
        if !e.name().starts_with(abi::ABI_MARKER_PREFIX) {
            continue;
        }
        let name = cep_sdk::name::excerpt(e.name());
        match abi::parse_marker(e.name()) {
            Some((major, minor)) => markers.push((major, minor, name)),
            None => {
                return Err(LoadError::WasmAbi(format!(
                    "the module exports {name}, an ABI marker whose version is not two numbers of at most 32 bits each (this host reads {})",
                    abi::ABI_MARKER
                )))
            }
        }
    }
    match markers.as_slice() {
        [] => Err(LoadError::NotAPlugin(format!(
            "the module exports no ABI marker (expected {})",
            abi::ABI_MARKER
        ))),
        [(major, minor, name)] => {
            if *major != ABI_MAJOR {
                Err(LoadError::WasmAbi(format!(
                    "the module exports {name}: guest ABI {major}.{minor}, but this host speaks {ABI_MAJOR}.x"
                )))
            } else if *minor > ABI_MINOR {
                Err(LoadError::WasmAbi(format!(
                    "the module exports {name}: it needs guest ABI {major}.{minor}, this host has {ABI_MAJOR}.{ABI_MINOR}"
                )))
            } else {
                Ok(())
            }
        }
        many => Err(LoadError::WasmAbi(format!(
            "the module exports {} ABI markers; it must export one",
            many.len()
        ))),
    }
}

fn check_exports(module: &Module) -> Result<(), LoadError> {
    use wasmtime::ValType::{I32, I64};
    let func = |name: &str, params: &[wasmtime::ValType], result: wasmtime::ValType| {
        let Some(ExternType::Func(ty)) = module.get_export(name) else {
            return Err(LoadError::WasmAbi(format!(
                "the module does not export the function {name}"
            )));
        };
        let ok = ty.params().len() == params.len()
            && ty.params().zip(params).all(|(a, b)| a.matches(b))
            && ty.results().len() == 1
            && ty.results().all(|r| r.matches(&result));
        if ok {
            Ok(())
        } else {
            Err(LoadError::WasmAbi(format!(
                "export {name} has type {ty}, expected {}",
                if params.is_empty() {
                    "(func (result i64))"
                } else {
                    "(func (param i32) (result i64))"
                }
            )))
        }
    };
    func(abi::EXPORT_DESCRIBE, &[], I64)?;
    func(abi::EXPORT_CALL, &[I32], I64)?;
    match module.get_export(abi::EXPORT_MEMORY) {
        Some(ExternType::Memory(ty)) if !ty.is_64() && !ty.is_shared() => Ok(()),
        Some(ExternType::Memory(_)) => Err(LoadError::WasmAbi(
            "the exported memory must be a 32-bit, unshared memory".to_owned(),
        )),
        _ => Err(LoadError::WasmAbi(
            "the module does not export its memory as \"memory\"".to_owned(),
        )),
    }
}

/// The names of the host functions the module imports; any other import is
/// an error naming it.
fn check_imports(module: &Module) -> Result<Vec<String>, LoadError> {
    let mut names = Vec::new();
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        if m != abi::IMPORT_MODULE {
            let why = if m.starts_with("wasi") {
                "WASI is not granted to cep plugins (no clock, files or sockets)"
            } else {
                "a cep plugin imports host functions from module \"cep\" only"
            };
            return Err(LoadError::WasmAbi(format!("import {m}.{name}: {why}")));
        }
        if !matches!(import.ty(), ExternType::Func(_)) {
            return Err(LoadError::WasmAbi(format!(
                "import cep.{name}: the host provides functions only"
            )));
        }
        if link::needs(name).is_none() {
            return Err(LoadError::WasmAbi(format!(
                "import cep.{name}: there is no such host function"
            )));
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

impl WasmModule {
    /// An [`InstancePre`] with the host functions `allowed` lets through.
    fn prepare(
        &self,
        allowed: impl Fn(Needs) -> bool,
    ) -> Result<InstancePre<link::HostState>, String> {
        let mut linker = Linker::new(engine());
        link::define(&mut linker, allowed).map_err(|e| format!("{e:#}"))?;
        linker
            .instantiate_pre(&self.module)
            .map_err(|e| format!("{e:#}"))
    }

    /// Makes the plugin's instance: links the host functions its grants
    /// allow (an import of any other is an error naming it).
    pub fn instantiate(
        self: &Arc<Self>,
        plugin: Arc<PluginCtx>,
        grants: &Grants,
        limits: WasmLimits,
    ) -> Result<Arc<WasmInstance>, String> {
        if limits.memory_max > POOL_MEMORY_MAX {
            return Err(format!(
                "wasm_memory_max {} is above the host's limit of {POOL_MEMORY_MAX} bytes",
                limits.memory_max
            ));
        }
        for name in &self.imports {
            let needs = link::needs(name).expect("checked at load");
            if !link::met_by(needs, grants) {
                return Err(format!(
                    "import cep.{name} is not granted: it needs {}, and plugin {} holds none",
                    needs.describe(),
                    plugin.name
                ));
            }
        }
        let pre = self.prepare(|needs| link::met_by(needs, grants))?;
        let live = Live::new(&pre, limits)?;
        Ok(Arc::new(WasmInstance {
            lane: lane(&plugin.name),
            plugin,
            pre,
            limits,
            live: Mutex::new(Some(live)),
        }))
    }
}

/// The executor lane of plugin `name`'s enzymes (interned: one leaked
/// string per plugin name per process).
fn lane(name: &str) -> &'static str {
    static LANES: OnceLock<Mutex<BTreeMap<String, &'static str>>> = OnceLock::new();
    let mut lanes = LANES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    lanes
        .entry(name.to_owned())
        .or_insert_with(|| Box::leak(format!("wasm:{name}").into_boxed_str()))
}

/// One instantiated module: its store, `cep_call` and memory.
struct Live {
    store: Store<link::HostState>,
    instance: wasmtime::Instance,
    call: TypedFunc<i32, i64>,
    memory: Memory,
}

impl Live {
    fn new(pre: &InstancePre<link::HostState>, limits: WasmLimits) -> Result<Self, String> {
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_max)
            .instances(1)
            .memories(1)
            .tables(4)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(engine(), link::HostState::new(store_limits));
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| format!("fuel: {e}"))?;
        let instance = pre.instantiate(&mut store).map_err(|e| {
            if store.data().limiter.hit {
                format!(
                    "instantiation hit the memory cap of {} bytes: {e:#}",
                    limits.memory_max
                )
            } else if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
                format!("the start function ran out of fuel ({})", limits.fuel)
            } else {
                format!("the start function trapped: {}", cause(&e))
            }
        })?;
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or("the module does not export its memory as \"memory\"")?;
        store.data_mut().memory = Some(memory);
        let call = instance
            .get_typed_func::<i32, i64>(&mut store, abi::EXPORT_CALL)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Live {
            store,
            instance,
            call,
            memory,
        })
    }

    /// The bytes at a packed (pointer, length), at most `max` long.
    fn bytes(&self, packed: i64, what: &str, max: u32) -> Result<Vec<u8>, String> {
        let (ptr, len) = abi::unpack(packed);
        if len > max {
            return Err(format!(
                "the {what} is {len} bytes, more than the limit of {max}"
            ));
        }
        let mem = self.memory.data(&self.store);
        (ptr as usize)
            .checked_add(len as usize)
            .and_then(|end| mem.get(ptr as usize..end))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                format!(
                    "the {what} at {ptr:#x} ({len} bytes) lies outside memory ({} bytes)",
                    mem.len()
                )
            })
    }

    /// Calls `cep_describe` and parses what it returns.
    fn describe(&mut self, limits: WasmLimits) -> Result<PluginDescriptor, LoadError> {
        let describe = self
            .instance
            .get_typed_func::<(), i64>(&mut self.store, abi::EXPORT_DESCRIBE)
            .map_err(|e| LoadError::WasmAbi(format!("{e:#}")))?;
        let packed = describe.call(&mut self.store, ()).map_err(|e| {
            let why = failure(&self.store, &e, limits);
            LoadError::Init(format!(
                "{} failed: {}: {}",
                abi::EXPORT_DESCRIBE,
                why.0,
                why.1
            ))
        })?;
        let bytes = self
            .bytes(packed, "descriptor", abi::DESCRIPTOR_MAX)
            .map_err(LoadError::Descriptor)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| LoadError::Descriptor(format!("the descriptor is not UTF-8: {e}")))?;
        PluginDescriptor::from_json(text)
            .map_err(|e| LoadError::Descriptor(format!("the descriptor is not valid JSON: {e}")))
    }
}

/// What made a guest trap or fail, on one line: the trap, or the host's
/// message; never the wasm backtrace (offsets in a module are no business
/// of the state's, and a message is read from its first line).
fn cause(error: &wasmtime::Error) -> String {
    let text = match error.downcast_ref::<Trap>() {
        Some(trap) => format!("trap: {trap}"),
        None => error.root_cause().to_string(),
    };
    text.lines().next().unwrap_or_default().to_owned()
}

/// Why a guest call failed: the fact topic and the reason.
fn failure(
    store: &Store<link::HostState>,
    error: &wasmtime::Error,
    limits: WasmLimits,
) -> (&'static str, String) {
    let state = store.data();
    if error.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
        return (
            "wasm:fuel",
            format!("ran out of fuel ({} per call)", limits.fuel),
        );
    }
    if state.limiter.hit {
        return (
            "wasm:memory",
            format!("hit the memory cap of {} bytes", limits.memory_max),
        );
    }
    let mut reason = cause(error);
    if let Some(panic) = &state.panic {
        reason = format!("{reason} (the guest panicked: {panic})");
    }
    ("wasm:trap", reason)
}

/// A plugin's instance, shared by its enzymes. Replaced by a fresh one
/// from the [`InstancePre`] after a call fails.
pub struct WasmInstance {
    plugin: Arc<PluginCtx>,
    pre: InstancePre<link::HostState>,
    limits: WasmLimits,
    lane: &'static str,
    /// `None` after a failed call, until the next call makes a new one.
    live: Mutex<Option<Live>>,
}

impl WasmInstance {
    fn lock(&self) -> MutexGuard<'_, Option<Live>> {
        // A panic while held leaves at worst a discarded instance.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the instance with a fresh one from the [`InstancePre`]
    /// (what a failed call leads to before the next call).
    pub fn reset(&self) -> Result<(), String> {
        let live = Live::new(&self.pre, self.limits)?;
        *self.lock() = Some(live);
        Ok(())
    }

    /// The enzyme that calls `cep_call(index)`.
    pub fn enzyme(self: &Arc<Self>, index: usize) -> Arc<dyn Enzyme> {
        Arc::new(WasmEnzyme {
            instance: self.clone(),
            index: index as i32,
        })
    }

    /// Runs enzyme `index` for the call `cx`.
    fn run(&self, index: i32, cx: &mut EnzymeCx<'_>) -> Outcome {
        let mut guard = self.lock();
        let mut call = Call::new(cx, &self.plugin);
        let fail = |call: &mut Call<'_, '_>, topic: &str, reason: String| {
            let note = format!(
                "plugin {}: enzyme {}: {reason}",
                self.plugin.name,
                call.enzyme()
            );
            call.cx.cei(Severity::Crit, topic, &note, None);
            Outcome::Fatal(format!("{topic}: {note}"))
        };
        if guard.is_none() {
            match Live::new(&self.pre, self.limits) {
                Ok(live) => *guard = Some(live),
                Err(e) => {
                    return fail(
                        &mut call,
                        "wasm:trap",
                        format!("the instance could not be reset: {e}"),
                    )
                }
            }
        }
        let live = guard.as_mut().expect("made above");
        if let Err(e) = live.store.set_fuel(self.limits.fuel) {
            return fail(&mut call, "wasm:trap", format!("fuel: {e}"));
        }
        live.store.data_mut().begin(&mut call);
        let result = live
            .call
            .call(&mut live.store, index)
            .and_then(|packed| link::settle(&mut live.store).map(|()| packed));
        live.store.data_mut().end();
        match result {
            Ok(0) => Outcome::Ok,
            Ok(packed) => match live.bytes(packed, "outcome record", abi::MESSAGE_MAX + 1) {
                Ok(record) => match record.split_first() {
                    Some((&abi::OUTCOME_OK, _)) => Outcome::Ok,
                    Some((&abi::OUTCOME_RETRY, _)) => Outcome::Retry,
                    Some((&abi::OUTCOME_FATAL, message)) => {
                        Outcome::Fatal(String::from_utf8_lossy(message).into_owned())
                    }
                    _ => {
                        *guard = None;
                        fail(&mut call, "wasm:abi", "cep_call returned an outcome record that is empty or has an unknown tag".to_owned())
                    }
                },
                Err(e) => {
                    *guard = None;
                    fail(
                        &mut call,
                        "wasm:abi",
                        format!("cep_call returned a bad outcome: {e}"),
                    )
                }
            },
            Err(e) => {
                let (topic, reason) = failure(&live.store, &e, self.limits);
                *guard = None;
                fail(&mut call, topic, reason)
            }
        }
    }
}

struct WasmEnzyme {
    instance: Arc<WasmInstance>,
    index: i32,
}

impl Enzyme for WasmEnzyme {
    fn call(&self, cx: &mut EnzymeCx<'_>) -> Outcome {
        self.instance.run(self.index, cx)
    }

    fn lane(&self) -> Option<&'static str> {
        Some(self.instance.lane)
    }
}
