//! The wasm guest ABI, version 1.0: the names, codes and byte encodings a
//! wasm plugin and the host agree on. Both sides use this module — the host
//! to read what a module hands it, the [`crate::guest`] side (on `wasm32`
//! with the `wasm-guest` feature) to produce it. `docs/wasm-abi.md` is the
//! reference for authors writing modules without the Rust SDK.
//!
//! Everything that crosses is bytes in the module's exported `memory`,
//! addressed by (pointer, length) pairs of `i32`s. The guest owns all of its
//! memory: the host never allocates in it, it only copies into buffers the
//! guest passes (results longer than the buffer are not written; their
//! length is returned so the guest can call again with room enough).

use crate::Value;

/// The export whose presence says "this module speaks guest ABI 1.0".
pub const ABI_MARKER: &str = "cep_abi_1_0";
/// Every ABI marker starts with this; the rest is `<major>_<minor>`.
pub const ABI_MARKER_PREFIX: &str = "cep_abi_";
pub const ABI_MAJOR: u32 = 1;
pub const ABI_MINOR: u32 = 0;

/// The module the host functions are imported from.
pub const IMPORT_MODULE: &str = "cep";
/// `() -> i64`: the descriptor, JSON in UTF-8, as a packed (pointer, length).
pub const EXPORT_DESCRIBE: &str = "cep_describe";
/// `(enzyme: i32) -> i64`: runs enzyme number `enzyme` of the descriptor;
/// 0 means ok, anything else is a packed (pointer, length) of an outcome
/// record ([`OUTCOME_OK`], [`OUTCOME_RETRY`] or [`OUTCOME_FATAL`], then the
/// message in UTF-8).
pub const EXPORT_CALL: &str = "cep_call";
/// The exported linear memory every pointer refers to.
pub const EXPORT_MEMORY: &str = "memory";

/// The largest descriptor the host reads.
pub const DESCRIPTOR_MAX: u32 = 1 << 20;
/// The longest outcome message the host reads (longer ones are cut).
pub const MESSAGE_MAX: u32 = 64 << 10;

pub const OUTCOME_OK: u8 = 0;
pub const OUTCOME_RETRY: u8 = 1;
pub const OUTCOME_FATAL: u8 = 2;

/// A host function's result when the answer is absent (no target, no
/// payload, no such cell).
pub const NONE: i32 = -1;
/// A host function's result when the call was refused; `cep.error` returns
/// the message.
pub const REFUSED: i32 = -2;
/// An optional string or value argument is absent when its length is this.
pub const ABSENT: i32 = -1;

/// Value tags of the value encoding: one tag byte, then the body.
pub const VALUE_NULL: u8 = 0;
pub const VALUE_BOOL: u8 = 1;
pub const VALUE_I64: u8 = 2;
pub const VALUE_F64: u8 = 3;
pub const VALUE_TEXT: u8 = 4;
pub const VALUE_BYTES: u8 = 5;

/// Packs a (pointer, length) pair into the `i64` the exports return:
/// pointer in the low 32 bits, length in the high 32 bits.
pub fn pack(ptr: u32, len: u32) -> i64 {
    ((len as u64) << 32 | ptr as u64) as i64
}

/// The (pointer, length) pair in a packed `i64`.
pub fn unpack(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    (bits as u32, (bits >> 32) as u32)
}

/// Appends the encoding of `value` to `out`: the tag, then nothing (null),
/// one byte 0/1 (bool), 8 bytes little-endian (i64, f64 as IEEE bits), or
/// the UTF-8 / raw bytes to the end (text, bytes).
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(VALUE_NULL),
        Value::Bool(b) => out.extend_from_slice(&[VALUE_BOOL, *b as u8]),
        Value::I64(n) => {
            out.push(VALUE_I64);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::F64(x) => {
            out.push(VALUE_F64);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::Text(t) => {
            out.push(VALUE_TEXT);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(VALUE_BYTES);
            out.extend_from_slice(b);
        }
    }
}

/// The encoding of `value`.
pub fn value_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(value, &mut out);
    out
}

/// Decodes one encoded value (the whole of `bytes`), or says what is wrong.
pub fn decode_value(bytes: &[u8]) -> Result<Value, String> {
    let (&tag, body) = bytes
        .split_first()
        .ok_or_else(|| "an encoded value is at least one tag byte".to_owned())?;
    let fixed = |n: usize| -> Result<[u8; 8], String> {
        if body.len() == n {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(body);
            Ok(b)
        } else {
            Err(format!(
                "value tag {tag} takes {n} bytes, not {}",
                body.len()
            ))
        }
    };
    match tag {
        VALUE_NULL => fixed(0).map(|_| Value::Null),
        VALUE_BOOL => match body {
            [0] => Ok(Value::Bool(false)),
            [1] => Ok(Value::Bool(true)),
            _ => Err("a bool value is one byte, 0 or 1".to_owned()),
        },
        VALUE_I64 => fixed(8).map(|b| Value::I64(i64::from_le_bytes(b))),
        VALUE_F64 => fixed(8).map(|b| Value::F64(f64::from_bits(u64::from_le_bytes(b)))),
        VALUE_TEXT => std::str::from_utf8(body)
            .map(Value::text)
            .map_err(|e| format!("a text value is not UTF-8: {e}")),
        VALUE_BYTES => Ok(Value::bytes(body)),
        other => Err(format!("unknown value tag {other} (expected 0 to 5)")),
    }
}

/// Parses an ABI marker export name `cep_abi_<major>_<minor>`.
pub fn parse_marker(export: &str) -> Option<(u32, u32)> {
    let rest = export.strip_prefix(ABI_MARKER_PREFIX)?;
    let (major, minor) = rest.split_once('_')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::I64(-5),
            Value::F64(1.5),
            Value::text("héllo"),
            Value::bytes(&[0, 255]),
        ] {
            assert_eq!(decode_value(&value_bytes(&v)).unwrap(), v);
        }
        assert!(decode_value(&[]).is_err());
        assert!(decode_value(&[VALUE_I64, 1]).is_err());
        assert!(decode_value(&[VALUE_TEXT, 0xff]).is_err());
        assert!(decode_value(&[9]).is_err());
    }

    #[test]
    fn packing_and_markers() {
        assert_eq!(unpack(pack(0xdead_beef, 7)), (0xdead_beef, 7));
        assert_eq!(parse_marker("cep_abi_1_0"), Some((1, 0)));
        assert_eq!(parse_marker("cep_abi_2_13"), Some((2, 13)));
        assert_eq!(parse_marker("cep_abi_x"), None);
    }
}
