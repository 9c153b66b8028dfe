//! Per-slot activity: how many reads and writes each hash slot served on this node since
//! it started, counted where every command executes (`crate::command::execute_while`, for
//! the handle's local path, the owner's serve path and the gateway's local path alike) and
//! read through [`crate::Node::slot_statistics`], beside the slot's keys and bytes.
//!
//! Two fixed arrays of [`SLOT_COUNT`] relaxed atomic counters (256 KiB a node): one
//! uncontended add per command, no lock, no allocation. Monitoring, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering};

use slotkv_engine::{Slot, SLOT_COUNT};

/// One hash slot on this node, as [`crate::Node::slot_statistics`] reports it (Valkey's
/// `CLUSTER SLOT-STATS` has the same per-slot view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlotStatistics {
    /// The slot.
    pub slot: Slot,
    /// Keys the engine holds in it now (expired ones not yet removed included).
    pub keys: usize,
    /// Bytes its keys take in the engine now (keys, values and per-entry overhead).
    pub bytes: usize,
    /// Reads of it this node executed since it started (on its handles, for peers and for
    /// RESP clients; a multi-key read counts once).
    pub reads: u64,
    /// Writes of it this node executed since it started (replicated writes a replica
    /// applies are not counted).
    pub writes: u64,
}

/// Reads and writes served per slot.
pub(crate) struct SlotActivity {
    reads: Box<[AtomicU64]>,
    writes: Box<[AtomicU64]>,
}

impl Default for SlotActivity {
    fn default() -> Self {
        let counters = || (0..SLOT_COUNT).map(|_| AtomicU64::new(0)).collect();
        SlotActivity {
            reads: counters(),
            writes: counters(),
        }
    }
}

impl SlotActivity {
    /// A command on `slot` executed: a write if `writes`, else a read.
    pub(crate) fn count(&self, slot: Slot, writes: bool) {
        let counters = if writes { &self.writes } else { &self.reads };
        if let Some(counter) = counters.get(usize::from(slot)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads and writes `slot` served so far (zeros for an out-of-range slot).
    pub(crate) fn of(&self, slot: Slot) -> (u64, u64) {
        let read = |counters: &[AtomicU64]| {
            counters
                .get(usize::from(slot))
                .map_or(0, |counter| counter.load(Ordering::Relaxed))
        };
        (read(&self.reads), read(&self.writes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reads_and_writes_per_slot() {
        let activity = SlotActivity::default();
        activity.count(7, false);
        activity.count(7, false);
        activity.count(7, true);
        activity.count(16_383, true);
        activity.count(16_384, true);
        assert_eq!(activity.of(7), (2, 1));
        assert_eq!(activity.of(16_383), (0, 1));
        assert_eq!(activity.of(8), (0, 0));
        assert_eq!(activity.of(16_384), (0, 0), "out of range: nothing counted");
    }
}
