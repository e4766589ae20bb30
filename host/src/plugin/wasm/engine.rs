//! The process's one wasmtime engine, and the on-disk cache of compiled
//! modules.
//!
//! **Engine settings** (fixed; they are part of the determinism contract):
//! fuel metering on, NaN canonicalization on, threads off, relaxed SIMD in
//! its deterministic mode, and the pooling instance allocator (instances
//! reuse pre-reserved slots, so instantiation costs microseconds).
//!
//! **Cache**: a compiled module is stored as `<dir>/<key>.cwasm`, where the
//! key is BLAKE3 over (the module's bytes, the wasmtime version, the
//! engine's compatibility hash), so a new wasmtime or changed settings
//! never read an old entry. A file holds a BLAKE3 checksum of the compiled
//! code and the code; a file that fails the checksum is ignored and
//! rewritten, never deserialized. Writes go to a temporary file renamed into
//! place, so concurrent runs never read half a file. The cache directory
//! must be as trusted as the host binary: compiled code is executable.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig};

/// The wasmtime this host is built with.
pub const WASMTIME_VERSION: &str = "48";

/// Instances, memories and tables the pool holds at once (all wasm plugins
/// of all runtimes in this process).
pub const POOL_INSTANCES: u32 = 256;
/// The most linear memory one instance may ever have; per-plugin caps
/// (`wasm_memory_max`) are at most this.
pub const POOL_MEMORY_MAX: usize = crate::config::WASM_MEMORY_MAX;

/// The engine every wasm plugin in this process runs on.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(POOL_INSTANCES)
            .total_memories(POOL_INSTANCES)
            .total_tables(POOL_INSTANCES)
            .max_memory_size(POOL_MEMORY_MAX);
        // Threads are off by construction: wasmtime is built without its
        // `threads` feature, so shared memories and atomics waits fail to
        // validate.
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Engine::new(&config).expect("the fixed wasm engine settings are valid")
    })
}

/// The cache key of `bytes` on this engine.
pub fn cache_key(bytes: &[u8]) -> String {
    struct Blake(blake3::Hasher);
    impl Hasher for Blake {
        fn finish(&self) -> u64 {
            unreachable!("only written to")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Blake(blake3::Hasher::new());
    h.0.update(b"cep wasm module cache v1\0");
    h.0.update(blake3::hash(bytes).as_bytes());
    h.0.update(WASMTIME_VERSION.as_bytes());
    engine().precompile_compatibility_hash().hash(&mut h);
    h.0.finalize().to_hex().to_string()
}

/// Where compiled modules are cached when the configuration does not say:
/// `$CEP_WASM_CACHE`, else `$XDG_CACHE_HOME/cep/wasm`, else
/// `$HOME/.cache/cep/wasm`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("CEP_WASM_CACHE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("cep/wasm"));
    }
    var("HOME").map(|home| PathBuf::from(home).join(".cache/cep/wasm"))
}

/// How a module was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Compiled,
    Cached,
}

/// Compiles `bytes`, or loads them from the cache in `dir` (`None`: no
/// cache). A cache that cannot be written costs a warning, nothing more.
pub fn compile(bytes: &[u8], dir: Option<&Path>) -> Result<(Module, Source), String> {
    let Some(dir) = dir else {
        return compile_fresh(bytes).map(|m| (m, Source::Compiled));
    };
    let file = dir.join(format!("{}.cwasm", cache_key(bytes)));
    if let Some(module) = load_cached(&file) {
        return Ok((module, Source::Cached));
    }
    let module = compile_fresh(bytes)?;
    if let Err(e) = store(&module, dir, &file) {
        tracing::warn!("wasm module cache {}: {e}", dir.display());
    }
    Ok((module, Source::Compiled))
}

fn compile_fresh(bytes: &[u8]) -> Result<Module, String> {
    Module::new(engine(), bytes).map_err(|e| format!("invalid WebAssembly: {e:#}"))
}

/// A cached module, if `file` exists and passes its checksum.
fn load_cached(file: &Path) -> Option<Module> {
    let data = std::fs::read(file).ok()?;
    if data.len() < 32 || blake3::hash(&data[32..]).as_bytes() != &data[..32] {
        tracing::warn!(
            "wasm module cache: {} is corrupt; recompiling",
            file.display()
        );
        return None;
    }
    // SAFETY: the bytes are what `Module::serialize` wrote for this wasmtime
    // version and these engine settings (both are in the file's key), and
    // the checksum shows they are unchanged since.
    match unsafe { Module::deserialize(engine(), &data[32..]) } {
        Ok(module) => Some(module),
        Err(e) => {
            tracing::warn!("wasm module cache: {}: {e}; recompiling", file.display());
            None
        }
    }
}

fn store(module: &Module, dir: &Path, file: &Path) -> std::io::Result<()> {
    let code = module.serialize().map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, blake3::hash(&code).as_bytes())?;
    std::io::Write::write_all(&mut tmp, &code)?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}
