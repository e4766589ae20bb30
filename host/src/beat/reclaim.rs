//! Freeing snapshots that left the history window, off the heartbeat
//! thread when that pays.

use crate::cell::Snapshot;

/// Frees snapshots that left the history window on a background thread:
/// dropping one frees every node no newer snapshot shares, which would
/// otherwise cost the heartbeat thread ~20-30 ns per changed cell.
///
/// A snapshot evicted by a commit is held until the next commit starts, and
/// freed then: with the threaded backend that is when the helper workers sit
/// idle (the commit runs on the heartbeat thread alone), so the background
/// thread does not compete with the compute phase for a core.
pub(super) struct Reclaimer {
    tx: Option<crossbeam::channel::Sender<Snapshot>>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// The snapshot the last commit evicted, and whether that beat was big.
    evicted: Option<(Snapshot, bool)>,
}

/// Snapshots waiting to be freed; when the reclaimer falls behind, the
/// heartbeat thread frees them itself (back-pressure, bounded memory).
const RECLAIM_QUEUE_MAX: usize = 4;
/// Beats changing fewer cells than this free evicted snapshots inline: what
/// they free is still in this core's cache, and mimalloc frees its own
/// pages cheapest. Measured on slices (alternating best-of runs): at 1k
/// yielding episodes a beat the reclaimer is 6–9 % faster, at 400 inline
/// is 7 % faster, at 700 they tie (docs/decisions.md).
pub(super) const RECLAIM_CHANGES_MIN: usize = 2048;

impl Reclaimer {
    pub fn new() -> Self {
        let (tx, rx) = crossbeam::channel::bounded::<Snapshot>(RECLAIM_QUEUE_MAX);
        let handle = std::thread::Builder::new()
            .name("cep-reclaim".into())
            .spawn(move || while rx.recv().is_ok() {})
            .ok();
        Reclaimer {
            tx: handle.as_ref().map(|_| tx),
            handle,
            evicted: None,
        }
    }

    /// Holds `snapshot`, evicted by this commit, until [`Self::release`].
    pub fn defer(&mut self, snapshot: Snapshot, big_beat: bool) {
        self.release(false);
        self.evicted = Some((snapshot, big_beat));
    }

    /// Frees the held snapshot: on the background thread when its beat was
    /// big or `offload` (another core is idle now), here otherwise.
    pub fn release(&mut self, offload: bool) {
        let Some((snapshot, big_beat)) = self.evicted.take() else {
            return;
        };
        if big_beat || offload {
            if let Some(tx) = &self.tx {
                // Full or gone: dropped right here instead.
                let _ = tx.try_send(snapshot);
            }
        }
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
