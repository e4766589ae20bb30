//! Fuzzes the journal reader: the input is split into up to three segments
//! (at the bytes `SEG!`), each named for beat 0, 100 and 200, and read as a
//! journal. Whatever the bytes, the reader returns contents or a typed
//! error, never panics; what it returns is consistent: beats increase by
//! one within a run, and a torn tail and corruption never come together.
#![no_main]

use std::path::{Path, PathBuf};

use cep_host::journal::{read_segments, JournalError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = data;
    while parts.len() < 2 {
        match rest.windows(4).position(|w| w == b"SEG!") {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + 4..];
            }
            None => break,
        }
    }
    parts.push(rest);
    let names: Vec<PathBuf> = (0..parts.len())
        .map(|i| PathBuf::from(format!("{:020}.seg", i * 100)))
        .collect();
    let load = |path: &Path| -> Result<Vec<u8>, JournalError> {
        let i = names.iter().position(|n| n == path).expect("a known segment");
        Ok(parts[i].to_vec())
    };
    if let Ok(contents) = read_segments(&names, &load) {
        assert!(contents.torn.is_none() || contents.corrupt.is_none());
        for pair in contents.beats.windows(2) {
            assert!(pair[1].beat > pair[0].beat);
        }
    }
});
