//! Adapter sinks: how inputs from outside reach a world.
//!
//! An adapter never changes the tree. It offers inputs to its sink from any
//! thread; the sink checks the plugin's `emit:` grant, and queues each input
//! as an impulse from the adapter's source. The heartbeat captures the queue
//! at the next beat boundary, in canonical order (source, then sequence).
//! These inputs are a world's only nondeterministic boundary: their timing
//! decides the beat they land in, which is why the journal records them and
//! a replay feeds them back instead of running the adapter.
//!
//! The queue is bounded (`inject_queue_max`, default 2^20 inputs for all
//! sources together): a full queue refuses the input (`Full`) and the
//! adapter backs off and offers it again, so memory stays bounded and
//! nothing is lost. Once shutdown has begun the queue is closed: inputs are
//! dropped and counted (`Closed`).

use std::sync::atomic::{AtomicU64, Ordering};

use cep_sdk::{Value, Word};

use super::api::{self, ApiError};
use super::caps::{Capability, Grants};
use crate::impulse::{Impulse, InjectError, Injector};

/// Why an input was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the input queue is full ({max} inputs): back off and offer it again")]
    Full { max: usize },
    #[error("shutdown has begun: the input was dropped")]
    Closed,
}

/// What an adapter's sink injects into.
pub struct SinkState {
    pub injector: Injector,
    pub source: Word,
    plugin: String,
    grants: Grants,
    /// Inputs accepted for capture.
    pub accepted: AtomicU64,
    /// Inputs refused because the host was shutting down.
    pub dropped: AtomicU64,
    /// Offers refused because the queue was full (each is offered again).
    pub full: AtomicU64,
}

impl SinkState {
    pub fn new(injector: Injector, source: Word, plugin: &str, grants: Grants) -> Self {
        SinkState {
            injector,
            source,
            plugin: plugin.to_owned(),
            grants,
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }
    }

    /// Queues one input, counting what was accepted, dropped or refused
    /// for lack of room. Returns its sequence number.
    pub fn inject(
        &self,
        signal: &str,
        target: Option<&str>,
        payload: Option<Value>,
    ) -> Result<u64, SinkError> {
        let signal = api::signal(signal)?;
        if !self.grants.may_emit(&signal) {
            return Err(ApiError::Denied {
                plugin: self.plugin.clone(),
                capability: Capability::Emit(Some(signal.clone())).to_string(),
                action: format!(
                    "adapter {} offering {}",
                    self.source,
                    &signal.to_string()[1..]
                ),
            }
            .into());
        }
        let mut impulse = match target {
            Some(t) => Impulse::targeted(signal, api::cell_path(t)?),
            None => Impulse::signal(signal),
        };
        impulse.payload = payload;
        match self.injector.inject(&self.source, impulse) {
            Ok(seq) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(seq)
            }
            Err(InjectError::Closed { .. }) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Err(SinkError::Closed)
            }
            Err(InjectError::Full { max }) => {
                self.full.fetch_add(1, Ordering::Relaxed);
                Err(SinkError::Full { max })
            }
        }
    }
}
