//! Compiling C plugins with the system C compiler against `include/cep.h`.
//!
//! Shared, as source, by the tests (`cep-tests`) and the demo (`xtask`
//! includes this file with `#[path]`), so both build C plugins with the
//! one command docs/guide-c.md gives: `cc -std=c11 -Wall -Wextra -O2
//! -shared -fPIC -pthread -I include -o lib<name>.so <source>`, here with
//! warnings as errors. Only `std` is used.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `source` (relative to the workspace `root`) into
/// `out_dir/lib<name>.so` (the platform's library name), defining each of
/// `defines` (`NAME` or `NAME=VALUE`). The compiler is `$CC`, else `cc`.
/// The library is written under a temporary name and renamed, so a
/// concurrent build of the same file never exposes a half-written library.
pub fn compile_c(
    root: &Path,
    source: &str,
    out_dir: &Path,
    name: &str,
    defines: &[&str],
) -> Result<PathBuf, String> {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let out = out_dir.join(format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let partial = out_dir.join(format!(".{name}.{}.partial", std::process::id()));
    let mut cmd = Command::new(&compiler);
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-shared"])
        .args(["-fPIC", "-pthread", "-I"])
        .arg(root.join("include"));
    for define in defines {
        cmd.arg(format!("-D{define}"));
    }
    cmd.arg("-o").arg(&partial).arg(root.join(source));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run the C compiler {compiler:?}: {e}"))?;
    if !status.success() {
        return Err(format!("compiling {source} failed: {status}"));
    }
    std::fs::rename(&partial, &out)
        .map_err(|e| format!("cannot move {} into place: {e}", partial.display()))?;
    Ok(out)
}
