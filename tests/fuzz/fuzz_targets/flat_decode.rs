//! Fuzzes the flat frame decoder twice per input: the raw bytes (mostly
//! stopped by magic and CRC), and the bytes as a record section inside a
//! well-sealed frame (so the record parser and the inflater meet them).
//! A decoded frame must re-encode to the same bytes when plain.
#![no_main]

use cep_sdk::flat::{decode, encode, Encoding, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame: 1 << 20,
        max_inflated: 1 << 22,
        max_records: 1 << 16,
    };
    let _ = decode(data, &limits);
    if data.len() < 5 {
        return;
    }
    let (head, section) = data.split_at(5);
    let flags = head[0] & 1;
    let count = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) % 4096;
    let mut bytes = b"CEPF\x01".to_vec();
    bytes.push(flags);
    bytes.extend_from_slice(&[0; 10]);
    bytes.extend_from_slice(&count.to_le_bytes());
    bytes.extend_from_slice(&(section.len() as u32).to_le_bytes());
    bytes.extend_from_slice(section);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    if let Ok(frame) = decode(&bytes, &limits) {
        assert_eq!(frame.records.len() as u32, count);
        if flags == 0 {
            assert_eq!(encode(&frame, Encoding::default()), bytes);
        }
    }
});
