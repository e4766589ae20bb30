//! `cep-ffi`: the `#[repr(C)]` ABI that C plugins are written against.
//!
//! Owns every type and constant that crosses the C boundary; `include/cep.h`
//! is generated from this crate. It must not contain host logic: the host
//! implements the operations, this crate only describes their shape.
//!
//! The kernel issue starts it with the ABI version and the value kinds; the
//! C-plugin work adds the descriptor and the host API table.

/// Major version of the cep plugin ABI. A plugin built for another major is
/// refused at load.
pub const CEP_ABI_MAJOR: u32 = 1;
/// Minor version of the cep plugin ABI. A plugin built for a newer minor than
/// the host's is refused; an older minor keeps working.
pub const CEP_ABI_MINOR: u32 = 0;

/// The kind of a value crossing the boundary (same tags as the hash format).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CepValueKind {
    /// The cell has no value.
    None = 0,
    Null = 1,
    Bool = 2,
    I64 = 3,
    F64 = 4,
    Text = 5,
    Bytes = 6,
}
