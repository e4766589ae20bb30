//! Impulses, and the injector through which the outside world queues them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cep_sdk::{Path, Value, Word};

use crate::enzyme::EnzymeId;

/// A request `(signal, target, payload)` dispatched at a beat.
#[derive(Debug, Clone, PartialEq)]
pub struct Impulse {
    pub signal: Path,
    pub target: Option<Path>,
    pub payload: Option<Value>,
}

impl Impulse {
    /// An impulse with no target: broadcast to every enzyme whose signal
    /// matches.
    pub fn signal(signal: Path) -> Self {
        Impulse {
            signal,
            target: None,
            payload: None,
        }
    }

    pub fn targeted(signal: Path, target: Path) -> Self {
        Impulse {
            signal,
            target: Some(target),
            payload: None,
        }
    }

    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }
}

/// An impulse waiting in a queue, with what the kernel needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub impulse: Impulse,
    /// A retry runs only the enzyme that asked for it.
    pub only: Option<EnzymeId>,
    pub attempt: u32,
}

impl Queued {
    pub fn new(impulse: Impulse) -> Self {
        Queued {
            impulse,
            only: None,
            attempt: 0,
        }
    }
}

/// An impulse injected from outside, ordered at capture by (source, seq).
#[derive(Debug, Clone)]
pub struct Injected {
    pub source: Word,
    pub seq: u64,
    pub impulse: Impulse,
}

/// Why an injection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("injection queue is full ({max} impulses waiting): retry after the next beat")]
    Full { max: usize },
    #[error("the runtime is shutting down; impulse from {source_id} dropped")]
    Closed { source_id: Word },
}

struct InjectQueue {
    pending: Vec<Injected>,
    next_seq: BTreeMap<Word, u64>,
    max: usize,
    closed: bool,
}

/// A handle for queuing impulses from outside the runtime, from any thread.
/// Impulses injected before a beat starts are captured by that beat, ordered
/// by (source, sequence) whatever the arrival order.
#[derive(Clone)]
pub struct Injector {
    queue: Arc<Mutex<InjectQueue>>,
}

impl Injector {
    pub(crate) fn new(max: usize) -> Self {
        Injector {
            queue: Arc::new(Mutex::new(InjectQueue {
                pending: Vec::new(),
                next_seq: BTreeMap::new(),
                max,
                closed: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InjectQueue> {
        // A panic while holding this lock cannot leave the queue half-updated
        // (every update is a single push), so a poisoned lock is still sound.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `impulse` from `source` with the source's next sequence number,
    /// which it returns.
    pub fn inject(&self, source: &Word, impulse: Impulse) -> Result<u64, InjectError> {
        let mut q = self.lock();
        let seq = q.next_seq.get(source).copied().unwrap_or(0);
        Self::push(&mut q, source, seq, impulse)?;
        q.next_seq.insert(source.clone(), seq + 1);
        Ok(seq)
    }

    /// Queues every impulse of `impulses` from `source`, in order, under one
    /// lock. Returns the sequence number of the first. Refuses the whole
    /// batch when it does not fit in the queue.
    pub fn inject_batch(&self, source: &Word, impulses: impl IntoIterator<Item = Impulse>) -> Result<u64, InjectError> {
        let mut q = self.lock();
        if q.closed {
            return Err(InjectError::Closed {
                source_id: source.clone(),
            });
        }
        let first = q.next_seq.get(source).copied().unwrap_or(0);
        let mut seq = first;
        let start = q.pending.len();
        for impulse in impulses {
            if q.pending.len() >= q.max {
                q.pending.truncate(start);
                return Err(InjectError::Full { max: q.max });
            }
            q.pending.push(Injected {
                source: source.clone(),
                seq,
                impulse,
            });
            seq += 1;
        }
        q.next_seq.insert(source.clone(), seq);
        Ok(first)
    }

    /// Queues `impulse` with an explicit sequence number (replay, adapters
    /// that number their own inputs).
    pub fn inject_with_seq(
        &self,
        source: &Word,
        seq: u64,
        impulse: Impulse,
    ) -> Result<(), InjectError> {
        let mut q = self.lock();
        Self::push(&mut q, source, seq, impulse)?;
        let next = q.next_seq.entry(source.clone()).or_default();
        *next = (*next).max(seq + 1);
        Ok(())
    }

    fn push(
        q: &mut InjectQueue,
        source: &Word,
        seq: u64,
        impulse: Impulse,
    ) -> Result<(), InjectError> {
        if q.closed {
            return Err(InjectError::Closed {
                source_id: source.clone(),
            });
        }
        if q.pending.len() >= q.max {
            return Err(InjectError::Full { max: q.max });
        }
        q.pending.push(Injected {
            source: source.clone(),
            seq,
            impulse,
        });
        Ok(())
    }

    /// Takes everything queued, in canonical order.
    pub(crate) fn drain(&self) -> Vec<Injected> {
        let mut taken = std::mem::take(&mut self.lock().pending);
        // Stable, and most batches arrive sorted already.
        taken.sort_by(|a, b| a.source.cmp(&b.source).then(a.seq.cmp(&b.seq)));
        taken
    }

    /// Refuses every later injection.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Impulses waiting for the next beat.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}
