//! Property tests of the flat frame codec: round trips, and every damaged
//! frame refused with an error (never a panic, never a wrong frame).

use std::collections::BTreeMap;

use cep_sdk::flat::{decode, encode, frame_len, Encoding, Frame, Limits, Record};
use proptest::prelude::*;

fn frames() -> impl Strategy<Value = Frame> {
    (
        any::<u16>(),
        any::<u64>(),
        prop::collection::btree_map(
            prop::collection::vec(any::<u8>(), 0..24),
            prop::collection::vec(any::<u8>(), 0..200),
            0..20,
        ),
    )
        .prop_map(
            |(kind, beat, records): (u16, u64, BTreeMap<Vec<u8>, Vec<u8>>)| Frame {
                kind,
                beat,
                records: records
                    .into_iter()
                    .map(|(key, body)| Record { key, body })
                    .collect(),
            },
        )
}

proptest! {
    #[test]
    fn encode_then_decode_is_the_identity(frame in frames(), deflate in any::<bool>()) {
        let bytes = encode(&frame, Encoding { deflate });
        prop_assert_eq!(frame_len(&bytes, &Limits::default()), Ok(Some(bytes.len())));
        prop_assert_eq!(decode(&bytes, &Limits::default()), Ok(frame));
    }

    #[test]
    fn any_flipped_bit_is_refused(frame in frames(), deflate in any::<bool>(), pick in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = encode(&frame, Encoding { deflate });
        let at = pick.index(bytes.len());
        bytes[at] ^= 1 << bit;
        prop_assert!(decode(&bytes, &Limits::default()).is_err());
    }

    #[test]
    fn any_truncation_is_refused(frame in frames(), deflate in any::<bool>(), pick in any::<prop::sample::Index>()) {
        let bytes = encode(&frame, Encoding { deflate });
        let cut = pick.index(bytes.len());
        prop_assert!(decode(&bytes[..cut], &Limits::default()).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, &Limits::default());
        let mut framed = b"CEPF\x01\x00".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = decode(&framed, &Limits::default());
    }
}

/// A well-sealed frame around an arbitrary record section: the CRC passes,
/// so the record parser itself meets the garbage.
fn sealed(flags: u8, count: u32, section: &[u8]) -> Vec<u8> {
    let mut bytes = b"CEPF\x01".to_vec();
    bytes.push(flags);
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&(section.len() as u32).to_le_bytes());
    bytes.extend_from_slice(section);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

proptest! {
    #[test]
    fn sealed_garbage_is_refused_or_decodes_to_what_it_says(
        deflate in any::<bool>(),
        count in 0u32..64,
        section in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let bytes = sealed(u8::from(deflate), count, &section);
        if let Ok(frame) = decode(&bytes, &Limits::default()) {
            // Whatever decodes re-encodes to the same bytes (one encoding
            // per frame), unless it was deflated (streams may differ).
            prop_assert_eq!(frame.records.len() as u32, count);
            if !deflate {
                prop_assert_eq!(encode(&frame, Encoding::default()), bytes);
            }
        }
    }
}
