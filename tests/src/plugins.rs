//! Building and preparing real plugin libraries for tests and benchmarks.
//!
//! Plugin crates are `cdylib`s in the workspace; [`cdylib`] builds one with
//! cargo (once per test process) and returns the library's path. The
//! fixture plugin's behaviour is set by patching the marker in a copy of
//! its library ([`fixture`]), so one build serves every bad-plugin case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cep-tests lives in the workspace")
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Builds the `cdylib` package `package` (debug, or release with
/// `release`) and returns the path of its library.
pub fn cdylib_in(package: &str, release: bool) -> PathBuf {
    static BUILT: Mutex<BTreeMap<(String, bool), PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&(package.to_owned(), release)) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["build", "--quiet", "-p", package]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    assert!(status.success(), "building {package} failed: {status}");
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = target_dir()
        .join(if release { "release" } else { "debug" })
        .join(file);
    assert!(path.exists(), "{} was not built", path.display());
    built.insert((package.to_owned(), release), path.clone());
    path
}

/// Builds the package `package` for `wasm32-unknown-unknown` (release: a
/// debug module burns several times the fuel) and returns the module's
/// path. The target must be installed (`rustup target add
/// wasm32-unknown-unknown`; `.ci/run` does it).
pub fn wasm_module(package: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(package) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--quiet", "--release", "-p", package])
        .args(["--target", "wasm32-unknown-unknown"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    assert!(
        status.success(),
        "building {package} for wasm32-unknown-unknown failed: {status} (is the target installed?)"
    );
    let path = target_dir()
        .join("wasm32-unknown-unknown/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    built.insert(package.to_owned(), path.clone());
    path
}

/// The `.wat` example plugin (`plugins/ping/ping.wat`).
pub fn ping_wat() -> PathBuf {
    workspace().join("plugins/ping/ping.wat")
}

/// [`cdylib_in`], debug build.
pub fn cdylib(package: &str) -> PathBuf {
    cdylib_in(package, false)
}

/// The marker the fixture library carries (see `plugins/fixture`).
const MARKER: &[u8] = b"CEP-FIXTURE:";
const MARKER_LEN: usize = 64;

/// Copies `library` (a build of `plugins/fixture`) into `dir` as
/// `lib<name>_<mode>.so` with its configuration set to `name` and `mode`.
pub fn patch_fixture(library: &Path, dir: &Path, name: &str, mode: &str) -> PathBuf {
    let mut bytes = std::fs::read(library).expect("fixture library readable");
    let at = bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("the fixture library carries its marker");
    let config = format!("CEP-FIXTURE:{name}:{mode}");
    assert!(config.len() < MARKER_LEN, "fixture config too long");
    let mut slot = [0u8; MARKER_LEN];
    slot[..config.len()].copy_from_slice(config.as_bytes());
    bytes[at..at + MARKER_LEN].copy_from_slice(&slot);
    let out = dir.join(format!(
        "{}{name}_{mode}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    std::fs::write(&out, bytes).expect("fixture copy written");
    out
}

/// A copy of the fixture plugin named `name`, behaving as `mode`, in `dir`.
pub fn fixture(dir: &Path, name: &str, mode: &str) -> PathBuf {
    patch_fixture(&cdylib("cep-plugin-fixture"), dir, name, mode)
}

/// Builds the `cep` binary (debug) and returns its path.
pub fn cep_bin() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--quiet", "-p", "cep-host", "--bin", "cep"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building cep failed");
    let path = target_dir()
        .join("debug")
        .join(format!("cep{}", std::env::consts::EXE_SUFFIX));
    *built = Some(path.clone());
    path
}

/// Runs the `cep` binary with `args` and waits for it.
pub fn run_cep(args: &[&str]) -> std::process::Output {
    Command::new(cep_bin())
        .args(args)
        .output()
        .expect("cep runs")
}

/// What a process printed, standard output then standard error.
pub fn printed(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Compiles a C plugin of the workspace (see [`crate::cc::compile_c`]),
/// panicking on failure.
pub fn compile_c(source: &str, out_dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    crate::cc::compile_c(&workspace(), source, out_dir, name, defines)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The C plugin `plugins/<name>/<name>.c`, compiled once per process into
/// `target/c-plugins/`.
pub fn c_plugin(name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let dir = target_dir().join("c-plugins");
    std::fs::create_dir_all(&dir).expect("target/c-plugins created");
    let path = compile_c(&format!("plugins/{name}/{name}.c"), &dir, name, &[]);
    built.insert(name.to_owned(), path.clone());
    path
}

/// The C fixture (`plugins/fixture-c`), compiled into `dir` as
/// `lib<name>.so` with `defines` choosing its defect.
pub fn c_fixture(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    compile_c("plugins/fixture-c/fixture.c", dir, name, defines)
}
