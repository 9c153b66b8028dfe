//! The removal log: keys the engine removed on its own (expiry, eviction), for the owner to
//! replicate as DELs.
//!
//! The log is bounded by `StoreConfig::removal_log_capacity` events. When it is full, new
//! events are dropped and counted; an owner that sees the dropped count grow has lost track of
//! removals and must fall back to a full resynchronisation of its replicas.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::slot::Slot;

/// Why the engine removed a key by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalCause {
    /// Its TTL passed (found lazily on access or by the active expiry cycle).
    Expired,
    /// It was evicted to stay under `maxmemory`.
    Evicted,
}

/// A key the engine removed by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The key's hash slot.
    pub slot: Slot,
    /// The removed key.
    pub key: Bytes,
    /// Why it was removed.
    pub cause: RemovalCause,
}

pub(crate) struct RemovalLog {
    capacity: usize,
    events: Mutex<VecDeque<Removal>>,
    /// `events.len()`, kept beside it for lock-free reads.
    pending: AtomicUsize,
    dropped: AtomicU64,
}

impl RemovalLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            events: Mutex::new(VecDeque::new()),
            pending: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, slot: Slot, key: &[u8], cause: RemovalCause) {
        let mut events = self.events.lock();
        if events.len() >= self.capacity {
            let dropped_before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped_before == 0 && self.capacity > 0 {
                tracing::warn!(
                    capacity = self.capacity,
                    "removal log full: dropping expiry/eviction events until it is drained"
                );
            }
            return;
        }
        events.push_back(Removal {
            slot,
            key: Bytes::copy_from_slice(key),
            cause,
        });
        self.pending.store(events.len(), Ordering::Relaxed);
    }

    pub(crate) fn drain(&self, max_events: usize) -> Vec<Removal> {
        let mut events = self.events.lock();
        let count = max_events.min(events.len());
        let drained = events.drain(..count).collect();
        self.pending.store(events.len(), Ordering::Relaxed);
        drained
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_log_drops_and_counts_new_events() {
        let log = RemovalLog::new(2);
        for key in [&b"a"[..], b"b", b"c"] {
            log.record(1, key, RemovalCause::Expired);
        }
        assert_eq!(log.dropped(), 1);
        let first = log.drain(1);
        assert_eq!(first[0].key, Bytes::from_static(b"a"));
        assert_eq!(log.drain(10).len(), 1);
        assert!(log.drain(10).is_empty());
    }
}
