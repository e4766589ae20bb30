//! Flat frames: the one binary envelope of cep's journal, checkpoints and
//! federation.
//!
//! A frame carries a type, a beat and a list of records (`key`, `body`),
//! sorted by key, with a CRC32C trailer over everything before it; the
//! records may be deflated. The byte layout is normative and documented in
//! `docs/formats.md` ("Flat frames"):
//!
//! ```text
//! offset  size  field
//!      0     4  magic "CEPF"
//!      4     1  version (1)
//!      5     1  flags: bit 0 deflate; bit 1 AEAD; others 0
//!      6     2  frame type, u16 LE
//!      8     8  beat, u64 LE
//!     16     4  record count, u32 LE
//!     20     4  section length N, u32 LE (bytes of the record section as stored)
//!     24     N  record section: per record, key length u32 LE, key,
//!               body length u32 LE, body (deflated as one raw-deflate
//!               stream when flag bit 0 is set)
//!   24+N     4  CRC32C (Castagnoli) of bytes 0 .. 24+N, u32 LE
//! ```
//!
//! With bit 1 (AEAD) the stored section is a 12-byte nonce, then the
//! section (deflated first when bit 0 is set) sealed with
//! ChaCha20-Poly1305 under a key both ends hold, then its 16-byte tag; the
//! 24 header bytes are the associated data, so the type, beat, count and
//! length are authenticated too. The nonce is the sender's: derived
//! deterministically and never reused under one key ([`Seal`]).
//!
//! Keys are strictly increasing in byte order, so a frame has one encoding
//! and a decoder can merge or seek. [`decode`] checks everything — magic,
//! version, flags, sizes against [`Limits`], CRC, inflated size, record
//! bounds, order, count — and returns a typed [`FrameError`] before the
//! caller sees any record: nothing of a bad frame is ever applied.

use std::io::{Read, Write};

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CEPF";
/// The frame format version this code reads and writes.
pub const VERSION: u8 = 1;
/// Flag bit: the record section is one raw-deflate stream.
pub const FLAG_DEFLATE: u8 = 1;
/// Flag bit: the record section is sealed with ChaCha20-Poly1305.
pub const FLAG_AEAD: u8 = 2;
/// The flag bits this code reads and writes.
const FLAGS_KNOWN: u8 = FLAG_DEFLATE | FLAG_AEAD;
/// Bytes of the nonce that opens a sealed section.
pub const NONCE_LEN: usize = 12;
/// Bytes of the tag that closes it.
pub const TAG_LEN: usize = 16;
/// Bytes before the record section.
pub const HEADER_LEN: usize = 24;
/// Bytes after it (the CRC32C).
pub const TRAILER_LEN: usize = 4;

/// One record: a key and a body, both bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Vec<u8>,
    pub body: Vec<u8>,
}

impl Record {
    pub fn new(key: impl Into<Vec<u8>>, body: impl Into<Vec<u8>>) -> Self {
        Record {
            key: key.into(),
            body: body.into(),
        }
    }
}

/// A decoded (or to-be-encoded) frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    /// What the frame is (journal beat, checkpoint chunk, …); the format
    /// does not interpret it.
    pub kind: u16,
    pub beat: u64,
    /// Sorted by key, keys unique.
    pub records: Vec<Record>,
}

/// What the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, header and trailer included. Default 64 MiB.
    pub max_frame: usize,
    /// Largest record section once inflated (a deflate bomb stops here).
    /// Default 256 MiB.
    pub max_inflated: usize,
    /// Most records in a frame. Default 16 Mi.
    pub max_records: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 64 << 20,
            max_inflated: 256 << 20,
            max_records: 16 << 20,
        }
    }
}

/// How to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoding {
    /// Deflate the record section (flate2, default level).
    pub deflate: bool,
}

/// A ChaCha20-Poly1305 key (256 bits). Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct AeadKey([u8; 32]);

impl AeadKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        AeadKey(bytes)
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(..)")
    }
}

/// What seals a frame: the key, and the nonce of this frame. The caller
/// derives the nonce and must never use one twice under a key (reuse
/// reveals the XOR of two plaintexts and lets the tag be forged); a
/// sender id, the mount and a frame sequence that survives restarts make
/// one ([`Seal::nonce_of`]).
#[derive(Debug, Clone, Copy)]
pub struct Seal<'k> {
    pub key: &'k AeadKey,
    pub nonce: [u8; NONCE_LEN],
}

impl Seal<'_> {
    /// A nonce from a 32-bit sender/mount tag and a 64-bit frame sequence.
    pub fn nonce_of(tag: u32, sequence: u64) -> [u8; NONCE_LEN] {
        let mut nonce = [0; NONCE_LEN];
        nonce[..4].copy_from_slice(&tag.to_le_bytes());
        nonce[4..].copy_from_slice(&sequence.to_le_bytes());
        nonce
    }
}

/// Why bytes are not a valid frame. Each names what was expected and what
/// was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a cep frame: magic {found:02x?}, expected \"CEPF\"")]
    BadMagic { found: [u8; 4] },
    #[error("frame version {found} is not supported (this build reads version {VERSION})")]
    Version { found: u8 },
    #[error("frame flags {found:#04x} include unknown bits (known: deflate {FLAG_DEFLATE:#04x}, AEAD {FLAG_AEAD:#04x})")]
    Flags { found: u8 },
    #[error("the frame is sealed (AEAD) and no key was given to open it")]
    KeyMissing,
    #[error("the sealed section is {found} bytes, shorter than a nonce and a tag ({needed})")]
    SealShort { found: usize, needed: usize },
    #[error("authentication failed: the frame was altered or sealed under another key; nothing of it is used")]
    Auth,
    #[error("truncated frame: {needed} bytes needed, {have} present")]
    Truncated { needed: usize, have: usize },
    #[error("frame of {size} bytes is over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{found} bytes follow the frame's trailer")]
    Trailing { found: usize },
    #[error("CRC32C mismatch: the trailer says {stored:#010x}, the bytes give {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("{count} records is over the limit of {max}")]
    TooManyRecords { count: u32, max: u32 },
    #[error("record section does not inflate: {0}")]
    Inflate(String),
    #[error("record {index}: {reason}")]
    Record { index: u32, reason: String },
    #[error("record {index}: key is not greater than the previous key (records must be sorted, keys unique)")]
    Order { index: u32 },
    #[error("{extra} bytes after the last of the {count} records the header declares")]
    SectionSize { count: u32, extra: usize },
}

/// Encodes `frame`. The records must be sorted by key with unique keys
/// (checked: an unsorted frame panics, as a caller bug that would produce
/// a frame no decoder accepts).
pub fn encode(frame: &Frame, encoding: Encoding) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + section_len(frame) + TRAILER_LEN);
    encode_into(frame, encoding, &mut out);
    out
}

fn section_len(frame: &Frame) -> usize {
    frame
        .records
        .iter()
        .map(|r| 8 + r.key.len() + r.body.len())
        .sum()
}

/// [`encode`], sealing the record section with `seal` (flag bit 1).
pub fn encode_sealed(frame: &Frame, encoding: Encoding, seal: Seal<'_>) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(HEADER_LEN + NONCE_LEN + section_len(frame) + TAG_LEN + TRAILER_LEN);
    encode_with(frame, encoding, Some(seal), &mut out);
    out
}

/// [`encode`], appending to `out`.
pub fn encode_into(frame: &Frame, encoding: Encoding, out: &mut Vec<u8>) {
    encode_with(frame, encoding, None, out);
}

fn encode_with(frame: &Frame, encoding: Encoding, seal: Option<Seal<'_>>, out: &mut Vec<u8>) {
    assert!(
        frame.records.windows(2).all(|w| w[0].key < w[1].key),
        "frame records must be sorted by key with unique keys"
    );
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    let mut flags = if encoding.deflate { FLAG_DEFLATE } else { 0 };
    if seal.is_some() {
        flags |= FLAG_AEAD;
    }
    out.push(flags);
    out.extend_from_slice(&frame.kind.to_le_bytes());
    out.extend_from_slice(&frame.beat.to_le_bytes());
    out.extend_from_slice(&(frame.records.len() as u32).to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let section_start = out.len();
    if encoding.deflate {
        let mut z =
            flate2::write::DeflateEncoder::new(std::mem::take(out), flate2::Compression::default());
        for r in &frame.records {
            write_record(&mut z, r).expect("writing to memory");
        }
        *out = z.finish().expect("writing to memory");
    } else {
        out.reserve(section_len(frame));
        for r in &frame.records {
            write_record(out, r).expect("writing to memory");
        }
    }
    if let Some(seal) = seal {
        let plain = out.split_off(section_start);
        let stored = (NONCE_LEN + plain.len() + TAG_LEN) as u32;
        out[len_at..len_at + 4].copy_from_slice(&stored.to_le_bytes());
        let cipher = ChaCha20Poly1305::new(GenericArray::from_slice(&seal.key.0));
        let sealed = cipher
            .encrypt(
                GenericArray::from_slice(&seal.nonce),
                Payload {
                    msg: &plain,
                    aad: &out[start..start + HEADER_LEN],
                },
            )
            .expect("sealing a section that fits a frame");
        out.extend_from_slice(&seal.nonce);
        out.extend_from_slice(&sealed);
    } else {
        let section = (out.len() - section_start) as u32;
        out[len_at..len_at + 4].copy_from_slice(&section.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn write_record(w: &mut impl Write, r: &Record) -> std::io::Result<()> {
    w.write_all(&(r.key.len() as u32).to_le_bytes())?;
    w.write_all(&r.key)?;
    w.write_all(&(r.body.len() as u32).to_le_bytes())?;
    w.write_all(&r.body)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The total length of the frame starting at `bytes`, from its header
/// alone (for reading frames from a stream): `Ok(None)` when fewer than
/// [`HEADER_LEN`] bytes are there yet. Checks magic, version, flags and the
/// size limit.
pub fn frame_len(bytes: &[u8], limits: &Limits) -> Result<Option<usize>, FrameError> {
    if bytes.len() < HEADER_LEN {
        if bytes.len() >= 4 && bytes[..4] != MAGIC {
            return Err(FrameError::BadMagic {
                found: bytes[..4].try_into().expect("4 bytes"),
            });
        }
        return Ok(None);
    }
    let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    if bytes[4] != VERSION {
        return Err(FrameError::Version { found: bytes[4] });
    }
    if bytes[5] & !FLAGS_KNOWN != 0 {
        return Err(FrameError::Flags { found: bytes[5] });
    }
    let total = HEADER_LEN + u32_at(bytes, 20) as usize + TRAILER_LEN;
    if total > limits.max_frame {
        return Err(FrameError::TooLarge {
            size: total,
            max: limits.max_frame,
        });
    }
    Ok(Some(total))
}

/// Decodes exactly one frame filling `bytes`; a sealed frame is refused
/// ([`FrameError::KeyMissing`]).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Frame, FrameError> {
    decode_with(bytes, limits, None)
}

/// [`decode`], opening a sealed frame with `key`. Checks the CRC, then the
/// authentication tag, then the structure; nothing of a frame that fails
/// any of them is returned.
pub fn decode_with(
    bytes: &[u8],
    limits: &Limits,
    key: Option<&AeadKey>,
) -> Result<Frame, FrameError> {
    let total = frame_len(bytes, limits)?.ok_or(FrameError::Truncated {
        needed: HEADER_LEN,
        have: bytes.len(),
    })?;
    if bytes.len() < total {
        return Err(FrameError::Truncated {
            needed: total,
            have: bytes.len(),
        });
    }
    if bytes.len() > total {
        return Err(FrameError::Trailing {
            found: bytes.len() - total,
        });
    }
    let body_end = total - TRAILER_LEN;
    let stored = u32_at(bytes, body_end);
    let computed = crc32c::crc32c(&bytes[..body_end]);
    if stored != computed {
        return Err(FrameError::Crc { stored, computed });
    }
    let count = u32_at(bytes, 16);
    if count > limits.max_records {
        return Err(FrameError::TooManyRecords {
            count,
            max: limits.max_records,
        });
    }
    let kind = u16::from_le_bytes([bytes[6], bytes[7]]);
    let beat = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let mut stored_section = &bytes[HEADER_LEN..body_end];
    let opened;
    if bytes[5] & FLAG_AEAD != 0 {
        let key = key.ok_or(FrameError::KeyMissing)?;
        opened = open(&bytes[..HEADER_LEN], stored_section, key)?;
        stored_section = &opened;
    }
    let inflated;
    let section: &[u8] = if bytes[5] & FLAG_DEFLATE != 0 {
        inflated = inflate(stored_section, limits.max_inflated)?;
        &inflated
    } else {
        stored_section
    };
    let records = parse_records(section, count)?;
    Ok(Frame {
        kind,
        beat,
        records,
    })
}

/// The plain section of a sealed one (`nonce ‖ ciphertext ‖ tag`).
fn open(header: &[u8], sealed: &[u8], key: &AeadKey) -> Result<Vec<u8>, FrameError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(FrameError::SealShort {
            found: sealed.len(),
            needed: NONCE_LEN + TAG_LEN,
        });
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    ChaCha20Poly1305::new(GenericArray::from_slice(&key.0))
        .decrypt(
            GenericArray::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: header,
            },
        )
        .map_err(|_| FrameError::Auth)
}

fn inflate(section: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(section.len().saturating_mul(3).min(max));
    let mut z = flate2::read::DeflateDecoder::new(section).take(max as u64 + 1);
    z.read_to_end(&mut out)
        .map_err(|e| FrameError::Inflate(e.to_string()))?;
    if out.len() > max {
        return Err(FrameError::Inflate(format!(
            "inflates past the limit of {max} bytes"
        )));
    }
    Ok(out)
}

fn parse_records(section: &[u8], count: u32) -> Result<Vec<Record>, FrameError> {
    // Each record takes at least 8 bytes: a count the section cannot hold
    // is refused before anything is allocated for it.
    if count as usize > section.len() / 8 {
        return Err(FrameError::Record {
            index: section.len() as u32 / 8,
            reason: format!(
                "the header declares {count} records, more than {} bytes can hold",
                section.len()
            ),
        });
    }
    let mut records: Vec<Record> = Vec::with_capacity(count as usize);
    let mut at = 0usize;
    let mut take = |index: u32, what: &str| -> Result<&[u8], FrameError> {
        if section.len() - at < 4 {
            return Err(FrameError::Record {
                index,
                reason: format!("the section ends inside the {what} length"),
            });
        }
        let len = u32_at(section, at) as usize;
        at += 4;
        if section.len() - at < len {
            return Err(FrameError::Record {
                index,
                reason: format!(
                    "{what} of {len} bytes runs past the section end ({} bytes left)",
                    section.len() - at
                ),
            });
        }
        let part = &section[at..at + len];
        at += len;
        Ok(part)
    };
    for index in 0..count {
        let key = take(index, "key")?.to_vec();
        let body = take(index, "body")?.to_vec();
        if let Some(previous) = records.last() {
            if key <= previous.key {
                return Err(FrameError::Order { index });
            }
        }
        records.push(Record { key, body });
    }
    if at != section.len() {
        return Err(FrameError::SectionSize {
            count,
            extra: section.len() - at,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame {
            kind: 7,
            beat: 42,
            records: vec![
                Record::new("a", "one"),
                Record::new("b", vec![0u8; 100]),
                Record::new("c/d", ""),
            ],
        }
    }

    #[test]
    fn the_layout_matches_the_documented_bytes() {
        let frame = Frame {
            kind: 0x0102,
            beat: 3,
            records: vec![Record::new("k", "v")],
        };
        let bytes = encode(&frame, Encoding::default());
        let mut expected = b"CEPF\x01\x00\x02\x01".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&10u32.to_le_bytes());
        expected.extend_from_slice(b"\x01\x00\x00\x00k\x01\x00\x00\x00v");
        let crc = crc32c::crc32c(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn frames_round_trip_plain_and_deflated() {
        for deflate in [false, true] {
            let bytes = encode(&sample(), Encoding { deflate });
            assert_eq!(decode(&bytes, &Limits::default()), Ok(sample()));
            assert_eq!(frame_len(&bytes, &Limits::default()), Ok(Some(bytes.len())));
        }
    }

    #[test]
    fn each_defect_has_its_error() {
        let limits = Limits::default();
        let good = encode(&sample(), Encoding::default());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode(&bad, &limits),
            Err(FrameError::BadMagic { .. })
        ));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(decode(&bad, &limits), Err(FrameError::Version { found: 2 }));
        let mut bad = good.clone();
        bad[5] = 4;
        assert_eq!(decode(&bad, &limits), Err(FrameError::Flags { found: 4 }));
        let mut bad = good.clone();
        let last = bad.len() - 5;
        bad[last] ^= 1;
        assert!(matches!(decode(&bad, &limits), Err(FrameError::Crc { .. })));
        assert!(matches!(
            decode(&good[..good.len() - 1], &limits),
            Err(FrameError::Truncated { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            decode(&long, &limits),
            Err(FrameError::Trailing { found: 1 })
        );
        let small = Limits {
            max_frame: 32,
            ..limits
        };
        assert!(matches!(
            decode(&good, &small),
            Err(FrameError::TooLarge { .. })
        ));
    }

    /// Re-seals a frame whose header or section was edited after encoding.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let end = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn well_sealed_but_malformed_sections_are_refused() {
        let limits = Limits::default();
        // Records out of order: swap the first two one-byte keys.
        let frame = Frame {
            kind: 0,
            beat: 0,
            records: vec![Record::new("a", "x"), Record::new("b", "y")],
        };
        let mut bytes = encode(&frame, Encoding::default());
        bytes[HEADER_LEN + 4] = b'b';
        bytes[HEADER_LEN + 10 + 4] = b'a';
        assert_eq!(
            decode(&reseal(bytes), &limits),
            Err(FrameError::Order { index: 1 })
        );
        // A count larger than the records present.
        let mut bytes = encode(&frame, Encoding::default());
        bytes[16] = 3;
        assert!(matches!(
            decode(&reseal(bytes), &limits),
            Err(FrameError::Record { .. })
        ));
        // A count smaller: bytes left over.
        let mut bytes = encode(&frame, Encoding::default());
        bytes[16] = 1;
        assert!(matches!(
            decode(&reseal(bytes), &limits),
            Err(FrameError::SectionSize { count: 1, .. })
        ));
        // A deflate bomb stops at the inflate limit.
        let big = Frame {
            kind: 0,
            beat: 0,
            records: vec![Record::new("z", vec![0u8; 1 << 20])],
        };
        let bytes = encode(&big, Encoding { deflate: true });
        let tight = Limits {
            max_inflated: 1 << 16,
            ..limits
        };
        assert!(matches!(
            decode(&bytes, &tight),
            Err(FrameError::Inflate(_))
        ));
    }

    /// Recomputes the CRC of a frame whose bytes a test changed.
    fn recrc(bytes: &mut [u8]) {
        let end = bytes.len() - TRAILER_LEN;
        let crc = crc32c::crc32c(&bytes[..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn a_sealed_frame_opens_with_its_key_and_only_with_it() {
        let limits = Limits::default();
        let key = AeadKey::new([7; 32]);
        let other = AeadKey::new([8; 32]);
        for deflate in [false, true] {
            let seal = Seal {
                key: &key,
                nonce: Seal::nonce_of(3, 41),
            };
            let bytes = encode_sealed(&sample(), Encoding { deflate }, seal);
            assert_eq!(bytes[5] & FLAG_AEAD, FLAG_AEAD);
            assert_eq!(decode_with(&bytes, &limits, Some(&key)), Ok(sample()));
            // The records are not readable in the sealed bytes (the
            // plain section holds a run of 100 zero bytes).
            let plain = encode(&sample(), Encoding::default());
            assert!(plain.windows(32).any(|w| w.iter().all(|&b| b == 0)));
            assert!(!bytes.windows(32).any(|w| w.iter().all(|&b| b == 0)));
            assert_eq!(decode(&bytes, &limits), Err(FrameError::KeyMissing));
            assert_eq!(
                decode_with(&bytes, &limits, Some(&other)),
                Err(FrameError::Auth)
            );
            // A flipped byte of the sealed section: the CRC refuses it.
            let mut bad = bytes.clone();
            bad[HEADER_LEN + NONCE_LEN + 1] ^= 0x10;
            assert!(matches!(
                decode_with(&bad, &limits, Some(&key)),
                Err(FrameError::Crc { .. })
            ));
            // The same with a recomputed CRC: authentication refuses it.
            recrc(&mut bad);
            assert_eq!(
                decode_with(&bad, &limits, Some(&key)),
                Err(FrameError::Auth)
            );
            // The header is authenticated too (a changed beat).
            let mut bad = bytes.clone();
            bad[8] ^= 1;
            recrc(&mut bad);
            assert_eq!(
                decode_with(&bad, &limits, Some(&key)),
                Err(FrameError::Auth)
            );
            // Another nonce than the one sealed with.
            let mut bad = bytes.clone();
            bad[HEADER_LEN] ^= 1;
            recrc(&mut bad);
            assert_eq!(
                decode_with(&bad, &limits, Some(&key)),
                Err(FrameError::Auth)
            );
        }
    }

    #[test]
    fn a_frame_marked_sealed_that_is_not_is_refused() {
        let limits = Limits::default();
        let key = AeadKey::new([7; 32]);
        let mut bytes = encode(&sample(), Encoding::default());
        bytes[5] |= FLAG_AEAD;
        recrc(&mut bytes);
        assert_eq!(decode(&bytes, &limits), Err(FrameError::KeyMissing));
        assert_eq!(
            decode_with(&bytes, &limits, Some(&key)),
            Err(FrameError::Auth)
        );
        let empty = Frame::default();
        let mut bytes = encode(&empty, Encoding::default());
        bytes[5] |= FLAG_AEAD;
        recrc(&mut bytes);
        assert_eq!(
            decode_with(&bytes, &limits, Some(&key)),
            Err(FrameError::SealShort {
                found: 0,
                needed: NONCE_LEN + TAG_LEN
            })
        );
    }

    #[test]
    fn nonces_differ_by_tag_and_sequence() {
        assert_ne!(Seal::nonce_of(1, 2), Seal::nonce_of(2, 1));
        assert_ne!(Seal::nonce_of(1, 2), Seal::nonce_of(1, 3));
        assert_eq!(format!("{:?}", AeadKey::new([9; 32])), "AeadKey(..)");
    }
}
