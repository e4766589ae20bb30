//! Plugins: descriptor validation, capability grants, the host API every
//! binding calls, and the loaders.
//!
//! Owns everything between a file on disk and enzymes registered in the
//! runtime. Must not reach into the heartbeat: plugins get the host API
//! ([`api::Call`]) and nothing else.

pub mod api;
pub mod caps;
pub mod validate;
