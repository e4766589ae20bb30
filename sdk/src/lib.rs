//! `cep-sdk`: the vocabulary shared by the cep host and every plugin.
//!
//! It owns the plain data that crosses between them — [`Value`]s, cell
//! [`Name`]s and [`Path`]s, and travelling identifiers ([`Word`]s) — and the
//! rules that make them valid. It must not depend on the host: a plugin author
//! links this crate and nothing else.

#[cfg(not(target_arch = "wasm32"))]
pub mod abi;
#[cfg(not(target_arch = "wasm32"))]
#[doc(hidden)]
pub use abi_stable;
pub mod api;
pub mod caps;
pub mod descriptor;
pub mod flat;
#[cfg(target_arch = "wasm32")]
pub use plugin::guest;
pub mod name;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod outcome;
pub mod plugin;
pub mod value;
pub mod wasm;

pub use descriptor::{
    AbiVersion, AdapterDescriptor, EnzymeDescriptor, EnzymeFlags, MatchKind, OrganDescriptor,
    PluginDescriptor, PluginKind, TransportDescriptor,
};
pub use name::{Name, NameError, Path, Word};
pub use outcome::{Outcome, Severity};
pub use value::Value;
