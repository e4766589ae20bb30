//! The state-hash format (v4). `docs/formats.md` is the normative description;
//! this module is the one implementation of its primitives.
//!
//! - Every hash is BLAKE3 in keyed mode, with a key derived once per role from
//!   a context string (`cep.v3 cell`, `cep.v3 chunk`, `cep.v3 group`,
//!   `cep.v3 beat`, `cep.v4 log`), so hashes of different roles can never
//!   collide.
//! - Every input is zero-padded to a whole number of 64-byte blocks. That
//!   costs no compression (BLAKE3 compresses a partial last block anyway)
//!   and lets a commit hash many small inputs of one size in parallel SIMD
//!   lanes ([`Batch`]): one input at a time, a single block costs about as
//!   much as eight to ten in lanes.
//! - Integers are little-endian; variable-length fields are length-prefixed.
//! - A cell's children are hashed in name order, cut into *chunks* where the
//!   names say so (content-defined: [`ends_at`]), and the chunk hashes are
//!   grouped the same way, level by level, until one digest remains. A cut
//!   depends only on the names around it, so inserting or removing a child
//!   re-cuts only its neighbourhood and one changed child rehashes
//!   O(log fanout) small nodes.
//! - A *log* cell (flag [`LOG_FLAG`]; a dossier's history) hashes its
//!   children as a chain instead: each entry's link hashes the previous
//!   link and the entry, starting from a base the log keeps, and the last
//!   link is the children digest. An append costs one block, and dropping
//!   the oldest entries only moves the base.
//! - A child with no children and a small value ([`inline_leaf`]) is hashed
//!   inside its parent's chunk instead of by a hash of its own: most cells
//!   are such leaves, and this saves a BLAKE3 call and 32 bytes per leaf.

use std::sync::LazyLock;

use cep_sdk::{Name, Value};

/// The version of this format, recorded by the journal so that a journal
/// of another version is refused rather than reported as diverging.
pub const FORMAT_VERSION: u8 = 4;

/// The hashed flag bit of a log cell (bit 0 is `sealed`): its children are
/// hashed as a chain ([`put_link`]), not as a chunk tree.
pub(crate) const LOG_FLAG: u8 = 2;

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
    log: [u8; 32],
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    cell: blake3::derive_key("cep.v3 cell", b""),
    chunk: blake3::derive_key("cep.v3 chunk", b""),
    group: blake3::derive_key("cep.v3 group", b""),
    beat: blake3::derive_key("cep.v3 beat", b""),
    // Format 4 added logs and changed nothing else, so the other roles keep
    // their v3 keys: a tree without a log hashes as it did under v3.
    log: blake3::derive_key("cep.v4 log", b""),
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
            put_bytes(buf, t.as_bytes());
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
        pad(&mut buf, 0);
        *blake3::keyed_hash(key, &buf).as_bytes()
    })
}

/// Zero-pads `buf[start..]` to a whole number of blocks.
fn pad(buf: &mut Vec<u8>, start: usize) {
    let len = buf.len() - start;
    let end = start + len.div_ceil(BLOCK) * BLOCK;
    // A whole block of zeroes cut back to size: a fixed-size copy the
    // compiler writes inline, where `resize` calls `memset` for a few bytes.
    buf.extend_from_slice(&[0; BLOCK]);
    buf.truncate(end);
}

/// Appends `bytes` (names and short texts, mostly under 17 bytes) without
/// a call to `memcpy`: the buffer grows by a 16-byte block of zeroes, the
/// bytes are written over its start with two overlapping fixed-size
/// copies, and the block is cut back to their length. The copies go
/// straight into the buffer: gathered in a block on the stack first and
/// appended whole, the 16-byte read of the block could not be forwarded
/// from the two smaller writes before it (a stall `perf` put at 6 % of a
/// yielding slice).
#[inline]
fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 16 {
        buf.extend_from_slice(bytes);
        return;
    }
    let at = buf.len();
    buf.extend_from_slice(&[0u8; 16]);
    let block = &mut buf[at..at + 16];
    if n >= 8 {
        block[..8].copy_from_slice(&bytes[..8]);
        block[n - 8..n].copy_from_slice(&bytes[n - 8..]);
    } else if n >= 4 {
        block[..4].copy_from_slice(&bytes[..4]);
        block[n - 4..n].copy_from_slice(&bytes[n - 4..]);
    } else {
        block[..n].copy_from_slice(bytes);
    }
    buf.truncate(at + n);
}

/// Appends a cell's hash input: flags, value, child count and (when it has
/// children) the children digest.
pub(crate) fn put_cell(
    buf: &mut Vec<u8>,
    flags: u8,
    value: Option<&Value>,
    child_count: u64,
    children: Option<&Hash>,
) {
    buf.push(flags);
    put_value(buf, value);
    buf.extend_from_slice(&child_count.to_le_bytes());
    if let Some(digest) = children {
        buf.extend_from_slice(digest);
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
    keyed(&KEYS.cell, |buf| {
        put_cell(buf, flags, value, child_count, children)
    })
}

/// How one child appears in its parent's chunk.
pub(crate) enum ChunkItem<'a> {
    /// A childless cell with a small value, hashed in place.
    Inline { flags: u8, value: Option<&'a Value> },
    /// Any other cell, by its cell hash.
    Hashed(&'a Hash),
}

/// Appends a chunk's hash input: at most [`NODE_ITEMS_MAX`] children, in
/// name order: for each, `name_len u8 ‖ name ‖ form u8 ‖ …` with form 0
/// (inline) followed by `flags u8 ‖ value`, form 1 followed by the 32-byte
/// cell hash.
pub(crate) fn put_chunk<'a>(
    buf: &mut Vec<u8>,
    items: impl Iterator<Item = (&'a Name, ChunkItem<'a>)>,
) {
    for (name, item) in items {
        let bytes = name.as_str().as_bytes();
        buf.push(bytes.len() as u8);
        put_bytes(buf, bytes);
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
}

/// Hash of one chunk (see [`put_chunk`]).
pub(crate) fn chunk<'a>(items: impl Iterator<Item = (&'a Name, ChunkItem<'a>)>) -> Hash {
    keyed(&KEYS.chunk, |buf| put_chunk(buf, items))
}

/// Appends a group's hash input: `level u8` (1 for a group of chunk
/// hashes, 2 for a group of groups, …), then at most [`NODE_ITEMS_MAX`]
/// lower-level hashes.
pub(crate) fn put_group<'a>(buf: &mut Vec<u8>, level: u8, hashes: impl Iterator<Item = &'a Hash>) {
    buf.push(level);
    for hash in hashes {
        buf.extend_from_slice(hash);
    }
}

/// Hash of one group (see [`put_group`]).
pub(crate) fn group<'a>(level: u8, hashes: impl Iterator<Item = &'a Hash>) -> Hash {
    keyed(&KEYS.group, |buf| put_group(buf, level, hashes))
}

/// Appends a log link's hash input: the previous link (the log's base for
/// its first entry), then the entry encoded as in a chunk ([`put_chunk`]).
pub(crate) fn put_link(buf: &mut Vec<u8>, previous: &Hash, name: &Name, item: ChunkItem<'_>) {
    buf.extend_from_slice(previous);
    put_chunk(buf, std::iter::once((name, item)));
}

/// The link of a log's hash chain that ends at entry `name` (see
/// [`put_link`]).
pub(crate) fn link(previous: &Hash, name: &Name, item: ChunkItem<'_>) -> Hash {
    keyed(&KEYS.log, |buf| put_link(buf, previous, name, item))
}

/// The base of a new log: the hash of nothing in the log role.
pub(crate) fn log_genesis() -> Hash {
    keyed(&KEYS.log, |_| {})
}

/// The roles a [`Batch`] hashes for.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Cell,
    Chunk,
    Group,
    Link,
}

/// BLAKE3 block size: inputs are padded to a multiple of it.
const BLOCK: usize = 64;
/// Blocks in one BLAKE3 chunk: a padded input up to this size is a single
/// chunk, which SIMD lanes can hash side by side.
const LANE_BLOCKS_MAX: usize = 16;
// BLAKE3's domain flags (spec §2.1), which `blake3::platform` takes raw.
const CHUNK_START: u8 = 1 << 0;
const CHUNK_END: u8 = 1 << 1;
const ROOT: u8 = 1 << 3;
const KEYED_HASH: u8 = 1 << 4;

struct Lanes {
    platform: blake3::platform::Platform,
    cell: [u32; 8],
    chunk: [u32; 8],
    group: [u32; 8],
    log: [u32; 8],
}

static LANES: LazyLock<Lanes> = LazyLock::new(|| {
    let words = blake3::platform::words_from_le_bytes_32;
    Lanes {
        platform: blake3::platform::Platform::detect(),
        cell: words(&KEYS.cell),
        chunk: words(&KEYS.chunk),
        group: words(&KEYS.group),
        log: words(&KEYS.log),
    }
});

/// What keeps a chain of links (a log cell's children): told its last
/// link once the batch has computed it. The format knows nothing else of
/// how a log is stored.
pub(crate) trait Chain {
    fn settle_with_last_link(&mut self, link: Hash);
}

/// Where a hash computed in a [`Batch`] goes.
pub(crate) enum Dest<'a> {
    /// A cached hash: a cell's entry, a chunk or group in its parent.
    Hash(&'a mut Hash),
    /// A list's children digest, kept until its cell is hashed.
    Digest(&'a mut Option<Hash>),
    /// The last link of a log: it goes to the log's last entry, the log
    /// settles ([`Chain::settle_with_last_link`]) and the link is its
    /// children digest.
    Log(&'a mut dyn Chain, &'a mut Option<Hash>),
}

impl Dest<'_> {
    fn put(self, hash: Hash) {
        match self {
            Dest::Hash(slot) => *slot = hash,
            Dest::Digest(slot) => *slot = Some(hash),
            Dest::Log(log, digest) => {
                log.settle_with_last_link(hash);
                *digest = Some(hash);
            }
        }
    }
}

/// Jobs a [`Batch`] gathers before it hashes them: enough to fill the
/// lanes of each size several times over, few enough that the inputs are
/// still in the first-level caches when they are hashed.
const BATCH_JOBS: usize = 128;
const BATCH_BYTES: usize = 16 * 1024;

thread_local! {
    // The arena and hash buffer of the one batch alive on this thread
    // (batches do not nest), kept between commits.
    static ARENA: std::cell::Cell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// Hash inputs gathered and hashed together: inputs of the same number of
/// blocks go through BLAKE3's SIMD lanes side by side
/// (`blake3::platform::Platform::hash_many`, the routine BLAKE3 itself uses
/// for the chunks of a long input), and each hash is written where its
/// input said ([`Dest`]). The hashes are exactly the one-at-a-time ones.
/// A batch hashes what it holds every [`BATCH_JOBS`] inputs, when its role
/// changes and at [`Batch::finish`].
///
/// `blake3::platform` is public but outside BLAKE3's semver promise, so the
/// crate is pinned to one version (`Cargo.toml`) and the tests check the
/// lanes against `blake3::keyed_hash` for every size.
pub(crate) struct Batch<'a> {
    role: Role,
    /// The inputs, padded, one after another.
    arena: Vec<u8>,
    /// (start in `arena`, blocks, destination).
    jobs: Vec<(usize, usize, Dest<'a>)>,
    /// A flush's hashes in job order: grown to the largest flush and never
    /// zeroed again (each hash is written before it is read; zeroing it at
    /// every flush cost ~140 instructions per yielding slice).
    hashes: Vec<u8>,
}

impl<'a> Batch<'a> {
    pub fn new(role: Role) -> Self {
        let (mut arena, hashes) = ARENA.take();
        arena.clear();
        Batch {
            role,
            arena,
            jobs: Vec::new(),
            hashes,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Adds one input, written by `fill` (one of the `put_*` functions).
    pub fn push(&mut self, dest: Dest<'a>, fill: impl FnOnce(&mut Vec<u8>)) {
        let start = self.arena.len();
        fill(&mut self.arena);
        self.end_input(start, dest);
    }

    /// Where the next input starts, and the buffer to write it into: for a
    /// destination that borrows what the input is read from (then
    /// [`Batch::end_input`] once the input is written).
    pub fn input(&mut self) -> (usize, &mut Vec<u8>) {
        (self.arena.len(), &mut self.arena)
    }

    /// Ends the input that started at `start` (see [`Batch::input`]).
    pub fn end_input(&mut self, start: usize, dest: Dest<'a>) {
        pad(&mut self.arena, start);
        let blocks = (self.arena.len() - start) / BLOCK;
        self.jobs.push((start, blocks, dest));
        if self.jobs.len() == BATCH_JOBS || self.arena.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    /// Hashes everything still gathered.
    pub fn finish(mut self) {
        self.flush();
        ARENA.set((
            std::mem::take(&mut self.arena),
            std::mem::take(&mut self.hashes),
        ));
    }

    fn flush(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let lanes = &*LANES;
        let (key, bytes) = match self.role {
            Role::Cell => (&lanes.cell, &KEYS.cell),
            Role::Chunk => (&lanes.chunk, &KEYS.chunk),
            Role::Group => (&lanes.group, &KEYS.group),
            Role::Link => (&lanes.log, &KEYS.log),
        };
        // Sorted by size, each run of one size is a contiguous range; the
        // hashes go to `out` in job order, then to their destinations.
        self.jobs.sort_unstable_by_key(|&(_, blocks, _)| blocks);
        let (jobs, arena, out) = (&mut self.jobs, &self.arena, &mut self.hashes);
        // Every job's 32 bytes are written below before they are read, so
        // the buffer only grows; it is never zeroed again.
        let need = jobs.len() * 32;
        if out.len() < need {
            out.resize(need, 0);
        }
        let out = &mut out[..need];
        let mut i = 0;
        while i < jobs.len() {
            let blocks = jobs[i].1;
            let n = jobs[i..].iter().take_while(|j| j.1 == blocks).count();
            let run = &jobs[i..i + n];
            let hashes = &mut out[i * 32..(i + n) * 32];
            if n == 1 || blocks > LANE_BLOCKS_MAX {
                // Alone of its size, or too long for a lane: one at a time.
                for ((start, _, _), slot) in run.iter().zip(hashes.chunks_exact_mut(32)) {
                    let input = &arena[*start..start + blocks * BLOCK];
                    slot.copy_from_slice(blake3::keyed_hash(bytes, input).as_bytes());
                }
            } else {
                let starts = run.iter().map(|(start, _, _)| *start);
                lanes_of_size(lanes, key, blocks, arena, starts, hashes);
            }
            i += n;
        }
        for ((_, _, dest), hash) in jobs.drain(..).zip(out.chunks_exact(32)) {
            dest.put(hash.try_into().expect("32 bytes"));
        }
        self.arena.clear();
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        debug_assert!(
            self.jobs.is_empty() || std::thread::panicking(),
            "a hash batch dropped before finish: {} hashes never written",
            self.jobs.len()
        );
    }
}

/// Hashes the inputs of `blocks` blocks each starting at `starts` into
/// `out`, 32 bytes each, in lanes.
fn lanes_of_size(
    lanes: &Lanes,
    key: &[u32; 8],
    blocks: usize,
    arena: &[u8],
    starts: impl ExactSizeIterator<Item = usize>,
    out: &mut [u8],
) {
    fn run<const N: usize>(
        lanes: &Lanes,
        key: &[u32; 8],
        arena: &[u8],
        starts: impl ExactSizeIterator<Item = usize>,
        out: &mut [u8],
    ) {
        static ZEROES: [u8; LANE_BLOCKS_MAX * BLOCK] = [0; LANE_BLOCKS_MAX * BLOCK];
        let unused: &[u8; N] = ZEROES[..N].try_into().expect("N fits");
        let mut inputs = [unused; BATCH_JOBS];
        let count = starts.len();
        for (slot, s) in inputs.iter_mut().zip(starts) {
            *slot = arena[s..s + N].try_into().expect("padded input");
        }
        lanes.platform.hash_many(
            &inputs[..count],
            key,
            0,
            blake3::IncrementCounter::No,
            KEYED_HASH,
            CHUNK_START,
            CHUNK_END | ROOT,
            out,
        );
    }
    match blocks {
        1 => run::<{ BLOCK }>(lanes, key, arena, starts, out),
        2 => run::<{ 2 * BLOCK }>(lanes, key, arena, starts, out),
        3 => run::<{ 3 * BLOCK }>(lanes, key, arena, starts, out),
        4 => run::<{ 4 * BLOCK }>(lanes, key, arena, starts, out),
        5 => run::<{ 5 * BLOCK }>(lanes, key, arena, starts, out),
        6 => run::<{ 6 * BLOCK }>(lanes, key, arena, starts, out),
        7 => run::<{ 7 * BLOCK }>(lanes, key, arena, starts, out),
        8 => run::<{ 8 * BLOCK }>(lanes, key, arena, starts, out),
        9 => run::<{ 9 * BLOCK }>(lanes, key, arena, starts, out),
        10 => run::<{ 10 * BLOCK }>(lanes, key, arena, starts, out),
        11 => run::<{ 11 * BLOCK }>(lanes, key, arena, starts, out),
        12 => run::<{ 12 * BLOCK }>(lanes, key, arena, starts, out),
        13 => run::<{ 13 * BLOCK }>(lanes, key, arena, starts, out),
        14 => run::<{ 14 * BLOCK }>(lanes, key, arena, starts, out),
        15 => run::<{ 15 * BLOCK }>(lanes, key, arena, starts, out),
        16 => run::<{ 16 * BLOCK }>(lanes, key, arena, starts, out),
        _ => unreachable!("{blocks} blocks: only 1 to {LANE_BLOCKS_MAX} go to lanes"),
    }
}

/// The beat hash: the beat number and the state hash it produced.
pub fn beat(beat: u64, state: &Hash) -> Hash {
    // 40 bytes, padded to one block.
    let mut input = [0u8; BLOCK];
    input[..8].copy_from_slice(&beat.to_le_bytes());
    input[8..40].copy_from_slice(state);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The short-copy and padding helpers append exactly what
    /// `extend_from_slice` and `resize` would, at every length and offset.
    #[test]
    fn short_copies_and_padding_append_the_same_bytes() {
        let source: Vec<u8> = (1..=80).collect();
        for before in [0usize, 1, 7, 63, 64, 100] {
            for n in 0..=source.len() {
                let mut fast = vec![0xAA; before];
                let mut plain = fast.clone();
                put_bytes(&mut fast, &source[..n]);
                plain.extend_from_slice(&source[..n]);
                assert_eq!(fast, plain, "{n} bytes after {before}");
                pad(&mut fast, before);
                plain.resize(before + n.div_ceil(BLOCK) * BLOCK, 0);
                assert_eq!(fast, plain, "padding {n} bytes after {before}");
            }
        }
    }

    /// Lanes give exactly the one-at-a-time hash, for every size a lane
    /// takes and beyond, alone and mixed with other sizes, for each role.
    #[test]
    fn batch_matches_one_at_a_time() {
        for role in [Role::Cell, Role::Chunk, Role::Group, Role::Link] {
            let key = match role {
                Role::Cell => &KEYS.cell,
                Role::Chunk => &KEYS.chunk,
                Role::Group => &KEYS.group,
                Role::Link => &KEYS.log,
            };
            let mut expected = Vec::new();
            let mut inputs = Vec::new();
            // Every size up to two lanes' worth, a run of one size longer
            // than a flush, sizes alone, and some too long for a lane.
            let lens = (1..=1100)
                .step_by(7)
                .chain([64; 300])
                .chain([128, 1024, 1025, 4000]);
            for (i, len) in lens.enumerate() {
                let input: Vec<u8> = (0..len).map(|j| (i * 13 + j) as u8).collect();
                let mut padded = input.clone();
                padded.resize(len.div_ceil(64) * 64, 0);
                expected.push(*blake3::keyed_hash(key, &padded).as_bytes());
                inputs.push(input);
            }
            let mut got = vec![[0u8; 32]; expected.len()];
            let mut batch = Batch::new(role);
            for (slot, input) in got.iter_mut().zip(&inputs) {
                batch.push(Dest::Hash(slot), |buf| buf.extend_from_slice(input));
            }
            batch.finish();
            assert_eq!(got, expected);
        }
    }

    /// The padding is part of the format: a cell hash is the keyed hash of
    /// its input zero-padded to 64 bytes.
    #[test]
    fn inputs_are_padded_to_blocks() {
        let mut input = Vec::new();
        put_cell(&mut input, 0, Some(&Value::I64(7)), 0, None);
        assert_eq!(input.len(), 1 + 9 + 8);
        input.resize(64, 0);
        let expected = *blake3::keyed_hash(&KEYS.cell, &input).as_bytes();
        assert_eq!(cell(0, Some(&Value::I64(7)), 0, None), expected);
    }
}
