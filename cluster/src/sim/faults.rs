//! Faults injected on purpose (test builds only): each breaks one rule of the shell or the
//! core so that a test can show the invariant guarding that rule fire.

use std::collections::BTreeMap;

use crate::core::{ClusterState, Core};
use crate::sim::data::{Key, Value};
use crate::sim::Simulator;

/// The switches; all off by default.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    /// A master paused for a manual failover keeps accepting writes.
    pub(crate) paused_master_accepts_writes: bool,
    /// A full sync merges the snapshot into the replica's old copy instead of replacing it.
    pub(crate) full_sync_keeps_old_keys: bool,
}

impl Faults {
    /// Whether the pause fault lets `core` take a write it would refuse.
    pub(crate) fn accepts_writes_despite_pause(&self, core: &Core) -> bool {
        self.paused_master_accepts_writes
            && core.myself().is_master()
            && core.cluster_state() == ClusterState::Ok
    }
}

impl Simulator {
    /// After a full sync replaced node `index`'s data: the merge fault puts back the keys
    /// of the old copy the snapshot lacks.
    pub(crate) fn apply_full_sync_fault(&mut self, index: usize, before: BTreeMap<Key, Value>) {
        if !self.faults.full_sync_keeps_old_keys {
            return;
        }
        let values = &mut self.nodes[index].data.values;
        for (key, value) in before {
            values.entry(key).or_insert(value);
        }
    }
}
