//! What an atomic slot migration's source needs from the data path
//! (`crate::slot_migration::atomic_source`): the keys written to its slots since it began,
//! and a per-slot pause.
//!
//! - **Tracking.** While a slot is tracked, every op the write log appends for one of its
//!   keys marks the key dirty ([`OutboundSlots::note_op`], called by the log under the
//!   write's stripe). The migration sends a snapshot of the slots, then the current state
//!   of each dirty key (its value, or a deletion), round after round, so the target
//!   converges on the source. A slot dropped meanwhile (this master lost it) is marked
//!   lost, and the migration stops.
//! - **Pausing.** A paused slot takes no command: writes are refused under their stripe
//!   (as the log's gate refuses them) and every call waits for the slot to resume
//!   ([`OutboundSlots::wait_resumed`]), then routes again. The source pauses its slots for
//!   the last round and the flip only, so the target's copy is final and no read sees the
//!   old copy after the target took writes.
//!
//! Bounded: at most [`DIRTY_KEYS_MAX`] dirty keys are kept; beyond, the migration is told
//! its writes outran it ([`OutboundSlots::overflowed`]) and abandons (nothing is lost: the
//! slots stay here).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use slotkv_engine::{key_slot, Slot, SLOT_COUNT};
use tokio::sync::watch;

use crate::node_state::write_log::Op;

/// Most dirty keys kept over all tracked slots (an atomic migration whose writes outrun
/// it past this abandons).
pub(crate) const DIRTY_KEYS_MAX: usize = 4_000_000;

#[derive(Default)]
struct Dirty {
    keys: HashMap<Slot, HashSet<Bytes>>,
    count: usize,
    overflowed: bool,
    lost: HashSet<Slot>,
}

/// Tracked and paused slots of one node (see the module docs).
pub(crate) struct OutboundSlots {
    tracked: Box<[AtomicBool]>,
    tracking: AtomicUsize,
    paused: Box<[AtomicBool]>,
    pausing: AtomicUsize,
    dirty: Mutex<Dirty>,
    /// Bumped whenever slots resume (wakes the calls waiting on them).
    resumed: watch::Sender<u64>,
}

impl Default for OutboundSlots {
    fn default() -> Self {
        OutboundSlots {
            tracked: (0..SLOT_COUNT).map(|_| AtomicBool::new(false)).collect(),
            tracking: AtomicUsize::new(0),
            paused: (0..SLOT_COUNT).map(|_| AtomicBool::new(false)).collect(),
            pausing: AtomicUsize::new(0),
            dirty: Mutex::new(Dirty::default()),
            resumed: watch::channel(0).0,
        }
    }
}

impl OutboundSlots {
    /// Starts tracking `slots`; `Err(slot)` (nothing changed) if that one is tracked
    /// already (one migration per slot).
    pub(crate) fn track(&self, slots: &[Slot]) -> Result<(), Slot> {
        let mut dirty = self.dirty.lock();
        if let Some(slot) = slots
            .iter()
            .find(|slot| self.tracked[usize::from(**slot)].load(Ordering::Acquire))
        {
            return Err(*slot);
        }
        for slot in slots {
            dirty.keys.remove(slot);
            dirty.lost.remove(slot);
            self.tracked[usize::from(*slot)].store(true, Ordering::Release);
        }
        self.tracking.fetch_add(slots.len(), Ordering::AcqRel);
        Ok(())
    }

    /// The first of `slots` a migration tracks now, if any.
    pub(crate) fn first_tracked(&self, slots: &[Slot]) -> Option<Slot> {
        slots
            .iter()
            .copied()
            .find(|slot| self.tracked[usize::from(*slot)].load(Ordering::Acquire))
    }

    /// Stops tracking (and resumes) `slots`, forgetting their dirty keys.
    pub(crate) fn untrack(&self, slots: &[Slot]) {
        self.resume(slots);
        let mut dirty = self.dirty.lock();
        for slot in slots {
            if self.tracked[usize::from(*slot)].swap(false, Ordering::AcqRel) {
                self.tracking.fetch_sub(1, Ordering::AcqRel);
            }
            if let Some(keys) = dirty.keys.remove(slot) {
                dirty.count -= keys.len();
            }
            dirty.lost.remove(slot);
        }
        if self.tracking.load(Ordering::Acquire) == 0 {
            dirty.overflowed = false;
        }
    }

    /// Notes an op the log appends. Called under the op's stripe.
    pub(crate) fn note_op(&self, op: &Op) {
        if self.tracking.load(Ordering::Acquire) == 0 {
            return;
        }
        let (slot, key) = match op {
            Op::Set { key, .. } | Op::Del { key } => (key_slot(key), Some(key)),
            Op::DropSlot { slot } => (*slot, None),
        };
        if !self.tracked[usize::from(slot)].load(Ordering::Acquire) {
            return;
        }
        let mut dirty = self.dirty.lock();
        let Some(key) = key else {
            dirty.lost.insert(slot);
            return;
        };
        if dirty.count >= DIRTY_KEYS_MAX {
            dirty.overflowed = true;
            return;
        }
        if dirty.keys.entry(slot).or_default().insert(key.clone()) {
            dirty.count += 1;
        }
    }

    /// Takes the dirty keys of `slots` (they are clean again until written).
    pub(crate) fn take_dirty(&self, slots: &[Slot]) -> Vec<Bytes> {
        let mut dirty = self.dirty.lock();
        let mut keys = Vec::new();
        for slot in slots {
            if let Some(set) = dirty.keys.remove(slot) {
                dirty.count -= set.len();
                keys.extend(set);
            }
        }
        keys
    }

    /// Dirty keys of `slots` now.
    pub(crate) fn dirty_count(&self, slots: &[Slot]) -> usize {
        let dirty = self.dirty.lock();
        slots
            .iter()
            .filter_map(|slot| dirty.keys.get(slot))
            .map(HashSet::len)
            .sum()
    }

    /// Whether dirty keys were dropped for the bound ([`DIRTY_KEYS_MAX`]).
    pub(crate) fn overflowed(&self) -> bool {
        self.dirty.lock().overflowed
    }

    /// A slot of `slots` this master lost (dropped) while it was tracked.
    pub(crate) fn lost_slot(&self, slots: &[Slot]) -> Option<Slot> {
        let dirty = self.dirty.lock();
        slots.iter().copied().find(|slot| dirty.lost.contains(slot))
    }

    /// Marks `slots` paused. The caller then waits out the writes in flight on their
    /// stripes (`WriteLog::pause_slots` does both).
    pub(crate) fn mark_paused(&self, slots: &[Slot]) {
        for slot in slots {
            if !self.paused[usize::from(*slot)].swap(true, Ordering::AcqRel) {
                self.pausing.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Resumes `slots` and wakes the calls waiting on them.
    pub(crate) fn resume(&self, slots: &[Slot]) {
        let mut any = false;
        for slot in slots {
            if self.paused[usize::from(*slot)].swap(false, Ordering::AcqRel) {
                self.pausing.fetch_sub(1, Ordering::AcqRel);
                any = true;
            }
        }
        if any {
            self.resumed.send_modify(|generation| *generation += 1);
        }
    }

    /// Whether `slot` is paused (one atomic load while nothing is).
    pub(crate) fn is_paused(&self, slot: Slot) -> bool {
        self.pausing.load(Ordering::Acquire) > 0
            && self.paused[usize::from(slot)].load(Ordering::Acquire)
    }

    /// Waits until `slot` is not paused, at most `bound`; returns whether it resumed.
    pub(crate) async fn wait_resumed(&self, slot: Slot, bound: Duration) -> bool {
        let mut changes = self.resumed.subscribe();
        let wait = async {
            while self.is_paused(slot) {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(bound, wait).await;
        !self.is_paused(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &'static [u8]) -> Op {
        Op::Set {
            key: Bytes::from_static(key),
            value: Bytes::from_static(b"v"),
            expire_at_ms: None,
        }
    }

    #[test]
    fn only_tracked_slots_collect_dirty_keys_once_each() {
        let outbound = OutboundSlots::default();
        let slot = key_slot(b"{a}1");
        assert_eq!(outbound.track(&[slot]), Ok(()));
        assert_eq!(
            outbound.track(&[7, slot]),
            Err(slot),
            "one migration per slot"
        );
        outbound.note_op(&set(b"{a}1"));
        outbound.note_op(&set(b"{a}1"));
        outbound.note_op(&Op::Del {
            key: Bytes::from_static(b"{a}2"),
        });
        outbound.note_op(&set(b"{b}1"));
        assert_eq!(outbound.dirty_count(&[slot]), 2);
        let mut keys = outbound.take_dirty(&[slot]);
        keys.sort();
        assert_eq!(
            keys,
            vec![Bytes::from_static(b"{a}1"), Bytes::from_static(b"{a}2")]
        );
        assert_eq!(outbound.dirty_count(&[slot]), 0);
        outbound.note_op(&Op::DropSlot { slot });
        assert_eq!(outbound.lost_slot(&[slot]), Some(slot));
        outbound.untrack(&[slot]);
        outbound.note_op(&set(b"{a}1"));
        assert_eq!(outbound.dirty_count(&[slot]), 0, "untracked");
        assert_eq!(outbound.track(&[slot]), Ok(()), "free again");
    }

    #[tokio::test]
    async fn a_paused_slot_holds_its_callers_until_it_resumes() {
        let outbound = std::sync::Arc::new(OutboundSlots::default());
        outbound.mark_paused(&[5]);
        assert!(outbound.is_paused(5) && !outbound.is_paused(6));
        assert!(!outbound.wait_resumed(5, Duration::from_millis(10)).await);
        let waiter = {
            let outbound = std::sync::Arc::clone(&outbound);
            tokio::spawn(async move { outbound.wait_resumed(5, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        outbound.resume(&[5]);
        assert!(waiter.await.unwrap());
    }
}
