//! The state-hash format (v1). `docs/formats.md` is the normative description;
//! this module is the one implementation of it.
//!
//! - Every hash is BLAKE3 in keyed mode, with a key derived once per role from
//!   a context string (`cep.v1 cell`, `cep.v1 chunk`, `cep.v1 group`,
//!   `cep.v1 beat`), so hashes of different roles can never collide.
//! - Integers are little-endian; variable-length fields are length-prefixed.
//! - A cell's children are hashed in name order in chunks of
//!   [`CHUNK_ENTRIES`] entries, and the chunk hashes in groups of
//!   [`CHUNK_ENTRIES`], level by level, until one digest remains. One changed
//!   child therefore rehashes O(log fanout) bytes, never the whole list.

use std::sync::OnceLock;

use cep_sdk::{Name, Value};

/// A 32-byte BLAKE3 digest.
pub type Hash = [u8; 32];

/// Marks a cached hash that must be recomputed. BLAKE3 output is never all
/// zeroes in practice (probability 2^-256), so the value is free to use.
pub(crate) const STALE: Hash = [0; 32];

/// Entries per chunk, and chunk hashes per group.
pub const CHUNK_ENTRIES: usize = 32;

struct Keys {
    cell: [u8; 32],
    chunk: [u8; 32],
    group: [u8; 32],
    beat: [u8; 32],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        cell: blake3::derive_key("cep.v1 cell", b""),
        chunk: blake3::derive_key("cep.v1 chunk", b""),
        group: blake3::derive_key("cep.v1 group", b""),
        beat: blake3::derive_key("cep.v1 beat", b""),
    })
}

/// Value tags as hashed (and as written in the flat format).
pub(crate) fn value_tag(value: Option<&Value>) -> u8 {
    match value {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::I64(_)) => 3,
        Some(Value::F64(_)) => 4,
        Some(Value::Text(_)) => 5,
        Some(Value::Bytes(_)) => 6,
    }
}

/// The bit pattern hashed for an f64: every NaN hashes as the canonical quiet
/// NaN, so NaN payloads (which differ between platforms) never reach a hash.
pub(crate) fn f64_bits(v: f64) -> u64 {
    if v.is_nan() {
        0x7ff8_0000_0000_0000
    } else {
        v.to_bits()
    }
}

/// Hash of one cell: flags, value, child count and (when it has children) the
/// children digest.
pub(crate) fn cell(
    flags: u8,
    value: Option<&Value>,
    child_count: u64,
    children: Option<&Hash>,
) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&keys().cell);
    h.update(&[flags, value_tag(value)]);
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            h.update(&[*b as u8]);
        }
        Some(Value::I64(v)) => {
            h.update(&v.to_le_bytes());
        }
        Some(Value::F64(v)) => {
            h.update(&f64_bits(*v).to_le_bytes());
        }
        Some(Value::Text(t)) => {
            h.update(&(t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        Some(Value::Bytes(b)) => {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
    }
    h.update(&child_count.to_le_bytes());
    if let Some(digest) = children {
        h.update(digest);
    }
    *h.finalize().as_bytes()
}

/// Hash of one chunk of at most [`CHUNK_ENTRIES`] `(name, child hash)` pairs.
pub(crate) fn chunk<'a>(entries: impl Iterator<Item = (&'a Name, &'a Hash)>) -> Hash {
    thread_local! {
        // One contiguous, reused buffer: BLAKE3 is fastest fed whole blocks,
        // and reusing it avoids clearing 3 KiB per chunk.
        static BUF: std::cell::RefCell<Vec<u8>> =
            std::cell::RefCell::new(Vec::with_capacity(CHUNK_ENTRIES * (1 + 64 + 32)));
    }
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        for (name, hash) in entries {
            let bytes = name.as_str().as_bytes();
            buf.push(bytes.len() as u8);
            buf.extend_from_slice(bytes);
            buf.extend_from_slice(hash);
        }
        let mut h = blake3::Hasher::new_keyed(&keys().chunk);
        h.update(&buf);
        *h.finalize().as_bytes()
    })
}

/// Hash of one group of at most [`CHUNK_ENTRIES`] lower-level hashes; `level`
/// is 1 for a group of chunk hashes, 2 for a group of groups, …
pub(crate) fn group<'a>(level: u8, hashes: impl Iterator<Item = &'a Hash>) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&keys().group);
    h.update(&[level]);
    for hash in hashes {
        h.update(hash);
    }
    *h.finalize().as_bytes()
}

/// The beat hash: the beat number and the state hash it produced.
pub fn beat(beat: u64, state: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&keys().beat);
    h.update(&beat.to_le_bytes());
    h.update(state);
    *h.finalize().as_bytes()
}

/// Lowercase hex of a hash.
pub fn hex(hash: &Hash) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64);
    for b in hash {
        let _ = write!(out, "{b:02x}");
    }
    out
}
