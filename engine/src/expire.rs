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
