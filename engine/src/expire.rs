//! The active expiry cycle: removes expired keys nobody reads, with bounded work per call.
//!
//! Like Redis's active expire cycle: visit slots round-robin from a persistent cursor; in each
//! slot with keys that have a TTL, sample [`ACTIVE_EXPIRE_SAMPLE_KEYS`] of them from the slot's
//! TTL index and remove the expired ones; repeat on the same slot while more than
//! [`ACTIVE_EXPIRE_REPEAT_PERCENT`]% of a sample had expired; stop when the budget is spent.

use crate::removal::RemovalCause;
use crate::slot::{Slot, SLOT_COUNT};
use crate::store::Store;

/// Keys sampled per round in one slot.
pub const ACTIVE_EXPIRE_SAMPLE_KEYS: usize = 20;
/// A slot is sampled again while more than this share (in percent) of a sample had expired.
pub const ACTIVE_EXPIRE_REPEAT_PERCENT: usize = 25;

/// How much one call of [`Store::active_expire`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveExpireBudget {
    /// Most keys sampled in the call.
    pub max_keys_sampled: usize,
    /// Most slots visited in the call (at most one full rotation, `SLOT_COUNT`, is done).
    pub max_slots_visited: usize,
}

impl Default for ActiveExpireBudget {
    fn default() -> Self {
        Self {
            max_keys_sampled: 1_000,
            max_slots_visited: 1_024,
        }
    }
}

/// What one call of [`Store::active_expire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActiveExpireReport {
    /// Slots visited.
    pub slots_visited: usize,
    /// Keys with a TTL sampled.
    pub keys_sampled: usize,
    /// Keys removed because their TTL had passed.
    pub keys_expired: usize,
}

impl Store {
    /// Runs one bounded active expiry cycle (call it periodically, e.g. every 100 ms).
    pub fn active_expire(&self, budget: ActiveExpireBudget) -> ActiveExpireReport {
        let mut report = ActiveExpireReport::default();
        let max_slots = budget.max_slots_visited.min(SLOT_COUNT);
        while report.slots_visited < max_slots && report.keys_sampled < budget.max_keys_sampled {
            let slot = (self
                .expire_cursor
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % SLOT_COUNT) as Slot;
            report.slots_visited += 1;
            self.expire_slot(slot, budget.max_keys_sampled, &mut report);
        }
        report
    }

    fn expire_slot(&self, slot: Slot, max_keys_sampled: usize, report: &mut ActiveExpireReport) {
        if self.slots[usize::from(slot)].read().volatile_len() == 0 {
            return;
        }
        let now = self.now();
        let mut table = self.slots[usize::from(slot)].write();
        let mut garbage = Vec::new();
        loop {
            let sample = ACTIVE_EXPIRE_SAMPLE_KEYS
                .min(table.volatile_len())
                .min(max_keys_sampled.saturating_sub(report.keys_sampled));
            let mut expired = 0;
            for _ in 0..sample {
                let Some((hash, entry)) = table.volatile_at(self.rng.below(usize::MAX)) else {
                    break;
                };
                if !entry.is_expired(now.ms()) {
                    continue;
                }
                let identity = entry.identity();
                if let Some(removed) = table.remove_identical(hash, identity) {
                    self.account_removed(&removed);
                    self.record_removal(slot, removed.key(), RemovalCause::Expired);
                    garbage.push(removed);
                    expired += 1;
                }
            }
            report.keys_sampled += sample;
            report.keys_expired += expired;
            let mostly_expired = expired * 100 > sample * ACTIVE_EXPIRE_REPEAT_PERCENT;
            if sample == 0 || !mostly_expired || report.keys_sampled >= max_keys_sampled {
                break;
            }
        }
        drop(table);
        drop(garbage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_invariants, store};
    use crate::{ExpireCondition, RemovalCause, SetOptions};

    #[test]
    fn lazy_expiry_on_read_removes_and_logs_the_key() {
        let (store, clock) = store();
        store.set(b"k", b"v", SetOptions::default()).unwrap();
        store.pexpire(b"k", 100, ExpireCondition::Always).unwrap();
        clock.advance_ms(99);
        assert!(store.get(b"k").is_some());
        clock.advance_ms(1);
        assert_eq!(store.get(b"k"), None);
        assert_eq!(store.dbsize(), 0);
        let removals = store.drain_removals(10);
        assert_eq!(removals.len(), 1);
        assert_eq!(removals[0].cause, RemovalCause::Expired);
        assert_eq!(&removals[0].key[..], b"k");
        check_invariants(&store);
    }

    #[test]
    fn active_expiry_removes_unread_expired_keys_within_budget() {
        let (store, clock) = store();
        for i in 0..2_000u32 {
            let key = i.to_be_bytes();
            store.set(&key, b"v", SetOptions::default()).unwrap();
            if i % 2 == 0 {
                store.pexpire(&key, 1_000, ExpireCondition::Always).unwrap();
            }
        }
        let budget = ActiveExpireBudget {
            max_keys_sampled: 100,
            max_slots_visited: SLOT_COUNT,
        };
        let report = store.active_expire(budget);
        assert_eq!(report.keys_expired, 0, "nothing expired yet");
        clock.advance_ms(1_000);
        let report = store.active_expire(budget);
        assert!(report.keys_sampled <= 100, "{report:?}");
        assert!(report.keys_expired > 0, "{report:?}");
        let mut rounds = 0;
        while store.dbsize() > 1_000 {
            store.active_expire(ActiveExpireBudget::default());
            rounds += 1;
            assert!(rounds < 1_000, "active expiry makes progress");
        }
        assert_eq!(store.dbsize(), 1_000);
        assert_eq!(store.drain_removals(5_000).len(), 1_000);
        check_invariants(&store);
    }

    #[test]
    fn active_expiry_respects_the_slot_budget() {
        let (store, _) = store();
        let budget = ActiveExpireBudget {
            max_keys_sampled: 1_000,
            max_slots_visited: 10,
        };
        let report = store.active_expire(budget);
        assert_eq!(report.slots_visited, 10);
        assert_eq!(report.keys_sampled, 0);
    }
}
