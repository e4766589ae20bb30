//! `include/cep.h` is generated from this crate by cbindgen and committed.
//! This test regenerates it and fails when the committed file differs;
//! `cargo run -p xtask -- header` (which sets `CEP_BLESS_HEADER=1`)
//! rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let header = crate_dir.join("../include/cep.h");
    if std::env::var_os("CEP_BLESS_HEADER").is_some() {
        std::fs::write(&header, &generated).expect("include/cep.h written");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "include/cep.h is stale: regenerate it with `cargo run -p xtask -- header` and commit it"
    );
}
