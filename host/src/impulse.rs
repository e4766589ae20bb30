//! Impulses, and the injector through which the outside world queues them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cep_sdk::{Path, Value, Word};

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

/// An impulse waiting in a queue, with what the kernel needs to know about
/// it. Kept to 64 bytes (one cache line): capture moves every one of them.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub impulse: Impulse,
    /// For a retry, the registry index of the only enzyme to run
    /// (its `EnzymeId`); [`Queued::ANY`] else.
    only: u32,
    pub attempt: u32,
}

impl Queued {
    const ANY: u32 = u32::MAX;

    pub fn new(impulse: Impulse) -> Self {
        Queued {
            impulse,
            only: Self::ANY,
            attempt: 0,
        }
    }

    /// A retry of `impulse` for `enzyme` alone.
    pub fn retry(impulse: Impulse, enzyme: u32, attempt: u32) -> Self {
        Queued {
            impulse,
            only: enzyme,
            attempt,
        }
    }

    /// A retry runs only the enzyme that asked for it.
    pub fn only(&self) -> Option<u32> {
        (self.only != Self::ANY).then_some(self.only)
    }
}

// Capture moves every queued impulse; keep it to one cache line.
const _: () = assert!(std::mem::size_of::<Queued>() <= 64);

/// Why an injection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("injection queue is full ({max} impulses waiting): retry after the next beat")]
    Full { max: usize },
    #[error("the runtime is shutting down; impulse from {source_id} dropped")]
    Closed { source_id: Word },
}

/// Impulses waiting for capture, one list per source, each list with its
/// sequence numbers.
/// One source's waiting impulses and their sequence numbers, side by side so
/// that a source whose numbers arrive in order hands its impulses to capture
/// without a copy.
#[derive(Default)]
struct SourceQueue {
    seqs: Vec<u64>,
    queued: Vec<Queued>,
    in_order: bool,
}

impl SourceQueue {
    fn push(&mut self, seq: u64, queued: Queued) {
        if self.seqs.is_empty() {
            self.in_order = true;
        } else if self.seqs.last().is_some_and(|&last| seq < last) {
            self.in_order = false;
        }
        self.seqs.push(seq);
        self.queued.push(queued);
    }

    fn truncate(&mut self, len: usize) {
        self.seqs.truncate(len);
        self.queued.truncate(len);
    }

    fn len(&self) -> usize {
        self.queued.len()
    }

    /// The impulses with their sequence numbers, ordered by sequence
    /// number (stable for equal numbers).
    fn into_numbered(self) -> Vec<(u64, Queued)> {
        let mut pairs: Vec<(u64, Queued)> = self.seqs.into_iter().zip(self.queued).collect();
        if !self.in_order {
            pairs.sort_by_key(|(seq, _)| *seq);
        }
        pairs
    }

    /// The impulses ordered by sequence number (stable for equal numbers).
    fn into_ordered(self) -> Vec<Queued> {
        if self.in_order {
            return self.queued;
        }
        let mut pairs: Vec<(u64, Queued)> = self.seqs.into_iter().zip(self.queued).collect();
        pairs.sort_by_key(|(seq, _)| *seq);
        pairs.into_iter().map(|(_, queued)| queued).collect()
    }
}

struct InjectQueue {
    by_source: BTreeMap<Word, SourceQueue>,
    pending: usize,
    next_seq: BTreeMap<Word, u64>,
    max: usize,
    closed: bool,
}

/// An input captured from outside: who injected it, its sequence number
/// from that source, and the impulse.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub source: Word,
    pub seq: u64,
    pub impulse: Impulse,
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
                by_source: BTreeMap::new(),
                pending: 0,
                next_seq: BTreeMap::new(),
                max,
                closed: false,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InjectQueue> {
        // Every update below completes before it can panic (allocation
        // failure aside), so a poisoned lock still guards a sound queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `impulse` from `source` with the source's next sequence number,
    /// which it returns.
    pub fn inject(&self, source: &Word, impulse: Impulse) -> Result<u64, InjectError> {
        self.inject_batch(source, std::iter::once(impulse))
    }

    /// Queues every impulse of `impulses` from `source`, in order, under one
    /// lock. Returns the sequence number of the first. Refuses the whole
    /// batch when it does not fit in the queue.
    pub fn inject_batch(
        &self,
        source: &Word,
        impulses: impl IntoIterator<Item = Impulse>,
    ) -> Result<u64, InjectError> {
        let mut guard = self.lock();
        let q = &mut *guard;
        q.check_open(source)?;
        let first = q.next_seq.get(source).copied().unwrap_or(0);
        let room = q.max - q.pending;
        let list = q.by_source.entry(source.clone()).or_default();
        let start = list.len();
        let impulses = impulses.into_iter();
        let hint = impulses.size_hint().0.min(room);
        list.seqs.reserve(hint);
        list.queued.reserve(hint);
        let mut seq = first;
        for impulse in impulses {
            if seq - first >= room as u64 {
                list.truncate(start);
                return Err(InjectError::Full { max: q.max });
            }
            list.push(seq, Queued::new(impulse));
            seq += 1;
        }
        q.pending += (seq - first) as usize;
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
        let mut guard = self.lock();
        let q = &mut *guard;
        q.check_open(source)?;
        if q.pending >= q.max {
            return Err(InjectError::Full { max: q.max });
        }
        q.by_source
            .entry(source.clone())
            .or_default()
            .push(seq, Queued::new(impulse));
        q.pending += 1;
        let next = q.next_seq.entry(source.clone()).or_default();
        *next = (*next).max(seq + 1);
        Ok(())
    }

    /// Takes everything queued, in canonical order: by source, then by
    /// sequence number.
    pub(crate) fn drain(&self) -> Vec<Queued> {
        let by_source = {
            let mut q = self.lock();
            q.pending = 0;
            std::mem::take(&mut q.by_source)
        };
        if by_source.len() == 1 {
            return by_source
                .into_values()
                .next()
                .map(SourceQueue::into_ordered)
                .unwrap_or_default();
        }
        let mut out = Vec::with_capacity(by_source.values().map(SourceQueue::len).sum());
        for (_, list) in by_source {
            out.extend(list.into_ordered());
        }
        out
    }

    /// [`Injector::drain`], also returning each captured input with its
    /// source and sequence number, in the same order (what a journal
    /// records so that a replay can inject the same inputs again).
    pub(crate) fn drain_recorded(&self) -> (Vec<Queued>, Vec<Input>) {
        let by_source = {
            let mut q = self.lock();
            q.pending = 0;
            std::mem::take(&mut q.by_source)
        };
        let mut queued = Vec::new();
        let mut inputs = Vec::new();
        for (source, list) in by_source {
            for (seq, q) in list.into_numbered() {
                inputs.push(Input {
                    source: source.clone(),
                    seq,
                    impulse: q.impulse.clone(),
                });
                queued.push(q);
            }
        }
        (queued, inputs)
    }

    /// Refuses every later injection.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Impulses waiting for the next beat.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }
}

impl InjectQueue {
    fn check_open(&self, source: &Word) -> Result<(), InjectError> {
        if self.closed {
            return Err(InjectError::Closed {
                source_id: source.clone(),
            });
        }
        Ok(())
    }
}
