//! Fuzzes the checkpoint reader: any bytes give a verified tree or a typed
//! error, never a panic; a tree it returns hashes to what the checkpoint
//! says (checked inside `decode`).
#![no_main]

use std::path::Path;

use cep_host::journal::checkpoint::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, Path::new("fuzz.ckpt"));
});
