//! A plugin world for integration tests: grants, bootstrap, reads of the
//! committed tree, injections, and per-beat hashes. Shared by the native,
//! C and Lua plugin tests.

use std::collections::BTreeMap;

use cep_host::plugin::PluginHost;
use cep_host::{Config, Hash, Impulse, Runtime, Value, Word};

use crate::p;

/// A `[grants]` table from `(plugin, capabilities)` pairs.
pub fn grants(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    list.iter()
        .map(|(name, caps)| {
            (
                name.to_string(),
                caps.iter().map(|c| c.to_string()).collect(),
            )
        })
        .collect()
}

/// A runtime with `config`'s plugins bootstrapped (leniently).
pub fn boot(config: &Config) -> (Runtime, PluginHost) {
    let mut runtime = Runtime::new(config.clone()).expect("valid configuration");
    let host = PluginHost::bootstrap(&mut runtime, config).expect("lenient bootstrap");
    (runtime, host)
}

/// The committed value at `path`.
pub fn read(runtime: &Runtime, path: &str) -> Option<Value> {
    runtime.snapshot().read(&p(path)).cloned()
}

pub fn int(runtime: &Runtime, path: &str) -> Option<i64> {
    read(runtime, path).and_then(|v| v.as_i64())
}

pub fn text(runtime: &Runtime, path: &str) -> Option<String> {
    read(runtime, path).and_then(|v| v.as_text().map(str::to_owned))
}

/// Injects `signal` (targeted at `target` if given) from source `test`.
pub fn inject(runtime: &Runtime, signal: &str, target: Option<&str>, payload: Option<Value>) {
    let mut impulse = match target {
        Some(t) => Impulse::targeted(p(signal), p(t)),
        None => Impulse::signal(p(signal)),
    };
    impulse.payload = payload;
    runtime
        .inject(&Word::new("test").unwrap(), impulse)
        .expect("injected");
}

/// Per-beat hashes of `beats` beats of `config`'s world and of its clean
/// shutdown; every plugin must load.
pub fn hashes(config: &Config, beats: u64) -> Vec<Hash> {
    let (mut runtime, host) = boot(config);
    assert!(host.rejected().is_empty(), "{:?}", host.rejected());
    let mut out: Vec<Hash> = (0..beats)
        .map(|_| runtime.step().unwrap().state_hash)
        .collect();
    out.push(runtime.shutdown().unwrap().state_hash);
    host.stop_adapters();
    out
}
