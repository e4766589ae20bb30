//! The state-hash format (v2). `docs/formats.md` is the normative description;
//! this module is the one implementation of its primitives.
//!
//! - Every hash is BLAKE3 in keyed mode, with a key derived once per role from
//!   a context string (`cep.v2 cell`, `cep.v2 chunk`, `cep.v2 group`,
//!   `cep.v2 beat`), so hashes of different roles can never collide.
//! - Integers are little-endian; variable-length fields are length-prefixed.
//! - A cell's children are hashed in name order, cut into *chunks* where the
//!   names say so (content-defined: [`ends_at`]), and the chunk hashes are
//!   grouped the same way, level by level, until one digest remains. A cut
//!   depends only on the names around it, so inserting or removing a child
//!   re-cuts only its neighbourhood and one changed child rehashes
//!   O(log fanout) small nodes.
//! - A child with no children and a small value ([`inline_leaf`]) is hashed
//!   inside its parent's chunk instead of by a hash of its own: most cells
//!   are such leaves, and this saves a BLAKE3 call and 32 bytes per leaf.

use std::sync::LazyLock;

use cep_sdk::{Name, Value};

/// The version of this format, recorded by the journal so that a journal
/// of another version is refused rather than reported as diverging.
pub const FORMAT_VERSION: u8 = 2;

/// A 32-byte BLAKE3 digest.
pub type Hash = [u8; 32];

/// Marks a cached hash that must be recomputed. BLAKE3 output is never all
/// zeroes in practice (probability 2^-256), so the value is free to use.
pub(crate) const STALE: Hash = [0; 32];

/// Stands in an entry's hash slot for a child hashed inline in its parent's
/// chunk (it has no hash of its own). Never a BLAKE3 output in practice.
pub(crate) const INLINE: Hash = [0xff; 32];

/// Items a node of the chunk tree holds at most: entries per chunk, kids per
/// group. Cuts normally come from the names (8 items on average); this cap
/// bounds a node whose names never ask for a cut (e.g. names chosen to
/// avoid one), so one change never costs more than 64 items.
pub const NODE_ITEMS_MAX: usize = 64;

/// Bits of a name's boundary hash per level of cuts: a cut after 2^3 = 8
/// items on average at each level.
const LEVEL_BITS: u32 = 3;
/// Highest cut level a name can have; above it only the cap cuts.
pub(crate) const CUT_LEVEL_MAX: u8 = (64 / LEVEL_BITS) as u8;

/// Text and bytes values up to this length keep a childless cell inline in
/// its parent's chunk; longer ones are hashed once into the cell's own hash,
/// so rehashing a chunk never re-reads a large value.
pub const INLINE_BYTES_MAX: usize = 32;

struct Keys {
    cell: [u8; 32],
    chunk: [u8; 32],
    group: [u8; 32],
    beat: [u8; 32],
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    cell: blake3::derive_key("cep.v2 cell", b""),
    chunk: blake3::derive_key("cep.v2 chunk", b""),
    group: blake3::derive_key("cep.v2 group", b""),
    beat: blake3::derive_key("cep.v2 beat", b""),
});

/// The boundary hash of a name: FNV-1a (64-bit) of its bytes, finished with
/// MurmurHash3's `fmix64` so every bit depends on every byte. Not a security
/// boundary (anyone can choose names that never cut); [`NODE_ITEMS_MAX`] is.
pub(crate) fn boundary_bits(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The cut level of a name: how many low 3-bit groups of its boundary hash
/// are all zero (at most [`CUT_LEVEL_MAX`]). One name in 8 has level ≥ 1,
/// one in 64 level ≥ 2, …
pub(crate) fn cut_level(name: &str) -> u8 {
    let bits = boundary_bits(name);
    if bits == 0 {
        return CUT_LEVEL_MAX;
    }
    ((bits.trailing_zeros() / LEVEL_BITS) as u8).min(CUT_LEVEL_MAX)
}

/// Whether a node of the chunk tree at `level` (0: a chunk of entries; k: a
/// group of level-(k-1) nodes) ends after an item whose last name has cut
/// level `cut`. Caps and the end of the list cut as well.
pub(crate) fn ends_at(level: usize, cut: u8) -> bool {
    usize::from(cut) > level
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

/// Whether a cell with this value and no children is hashed inline in its
/// parent's chunk.
pub(crate) fn inline_leaf(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Text(t)) => t.len() <= INLINE_BYTES_MAX,
        Some(Value::Bytes(b)) => b.len() <= INLINE_BYTES_MAX,
        _ => true,
    }
}

/// Appends the value encoding: tag, then by tag nothing (none, null), one
/// byte (bool), 8 bytes (i64, f64 bits), or a u64 length and the bytes.
fn put_value(buf: &mut Vec<u8>, value: Option<&Value>) {
    buf.push(value_tag(value));
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => buf.push(*b as u8),
        Some(Value::I64(v)) => buf.extend_from_slice(&v.to_le_bytes()),
        Some(Value::F64(v)) => buf.extend_from_slice(&f64_bits(*v).to_le_bytes()),
        Some(Value::Text(t)) => {
            buf.extend_from_slice(&(t.len() as u64).to_le_bytes());
            buf.extend_from_slice(t.as_bytes());
        }
        Some(Value::Bytes(b)) => {
            buf.extend_from_slice(&(b.len() as u64).to_le_bytes());
            buf.extend_from_slice(b);
        }
    }
}

thread_local! {
    // One reused buffer per thread: BLAKE3 is fastest fed one contiguous
    // input, and reuse avoids an allocation per hash.
    static BUF: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(NODE_ITEMS_MAX * (2 + 64 + 32)));
}

fn keyed(key: &[u8; 32], fill: impl FnOnce(&mut Vec<u8>)) -> Hash {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        fill(&mut buf);
        *blake3::keyed_hash(key, &buf).as_bytes()
    })
}

/// Hash of one cell: flags, value, child count and (when it has children) the
/// children digest.
pub(crate) fn cell(
    flags: u8,
    value: Option<&Value>,
    child_count: u64,
    children: Option<&Hash>,
) -> Hash {
    keyed(&KEYS.cell, |buf| {
        buf.push(flags);
        put_value(buf, value);
        buf.extend_from_slice(&child_count.to_le_bytes());
        if let Some(digest) = children {
            buf.extend_from_slice(digest);
        }
    })
}

/// How one child appears in its parent's chunk.
pub(crate) enum ChunkItem<'a> {
    /// A childless cell with a small value, hashed in place.
    Inline { flags: u8, value: Option<&'a Value> },
    /// Any other cell, by its cell hash.
    Hashed(&'a Hash),
}

/// Hash of one chunk of at most [`NODE_ITEMS_MAX`] children, in name order:
/// for each, `name_len u8 ‖ name ‖ form u8 ‖ …` with form 0 (inline) followed
/// by `flags u8 ‖ value`, form 1 followed by the 32-byte cell hash.
pub(crate) fn chunk<'a>(items: impl Iterator<Item = (&'a Name, ChunkItem<'a>)>) -> Hash {
    keyed(&KEYS.chunk, |buf| {
        for (name, item) in items {
            let bytes = name.as_str().as_bytes();
            buf.push(bytes.len() as u8);
            buf.extend_from_slice(bytes);
            match item {
                ChunkItem::Inline { flags, value } => {
                    buf.push(0);
                    buf.push(flags);
                    put_value(buf, value);
                }
                ChunkItem::Hashed(hash) => {
                    buf.push(1);
                    buf.extend_from_slice(hash);
                }
            }
        }
    })
}

/// Hash of one group of at most [`NODE_ITEMS_MAX`] lower-level hashes; `level`
/// is 1 for a group of chunk hashes, 2 for a group of groups, …
pub(crate) fn group<'a>(level: u8, hashes: impl Iterator<Item = &'a Hash>) -> Hash {
    keyed(&KEYS.group, |buf| {
        buf.push(level);
        for hash in hashes {
            buf.extend_from_slice(hash);
        }
    })
}

/// The beat hash: the beat number and the state hash it produced.
pub fn beat(beat: u64, state: &Hash) -> Hash {
    let mut input = [0u8; 40];
    input[..8].copy_from_slice(&beat.to_le_bytes());
    input[8..].copy_from_slice(state);
    *blake3::keyed_hash(&KEYS.beat, &input).as_bytes()
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
