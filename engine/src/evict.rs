//! Eviction under `maxmemory`: sampled approximate LRU (all keys or keys with a TTL) and
//! random eviction, like Redis's `maxmemory-policy`.
//!
//! Each eviction samples `eviction_samples` keys (each from a random non-empty slot) under read
//! locks, then removes the best candidate under its slot's write lock if it is still the same
//! entry. The LRU clock is 16 bits of seconds, so idle times wrap after about 18 hours.

use crate::config::EvictionPolicy;
use crate::removal::RemovalCause;
use crate::slot::{Slot, SLOT_COUNT};
use crate::store::Store;

struct Candidate {
    slot: Slot,
    hash: u64,
    identity: *const (),
    idle: u16,
}

impl Store {
    /// Evicts one key by the configured policy; `false` if the policy is `noeviction` or there
    /// is no candidate.
    pub(crate) fn evict_one(&self) -> bool {
        let policy = self.config.eviction_policy;
        let samples = match policy {
            EvictionPolicy::NoEviction => return false,
            EvictionPolicy::AllKeysRandom => 1,
            EvictionPolicy::AllKeysLru | EvictionPolicy::VolatileLru => {
                self.config.eviction_samples.get()
            }
        };
        let lru_now = self.lru_now(&self.now());
        let mut best: Option<Candidate> = None;
        for _ in 0..samples {
            let Some(candidate) = self.sample_candidate(policy, lru_now) else {
                break;
            };
            if best.as_ref().is_none_or(|best| candidate.idle > best.idle) {
                best = Some(candidate);
            }
        }
        let Some(victim) = best else {
            return false;
        };
        let mut table = self.slots[usize::from(victim.slot)].write();
        if let Some(removed) = table.remove_identical(victim.hash, victim.identity) {
            self.account_removed(&removed);
            self.record_removal(victim.slot, removed.key(), RemovalCause::Evicted);
            drop(table);
            drop(removed);
        }
        // Also true when the victim vanished meanwhile: memory changed, the writer retries.
        true
    }

    /// One key from a random non-empty slot (non-empty in keys with a TTL for volatile-lru).
    fn sample_candidate(&self, policy: EvictionPolicy, lru_now: u16) -> Option<Candidate> {
        let start = self.rng.below(SLOT_COUNT);
        for offset in 0..SLOT_COUNT {
            let slot = ((start + offset) % SLOT_COUNT) as Slot;
            let table = self.slots[usize::from(slot)].read();
            let pick = self.rng.below(usize::MAX);
            let found = match policy {
                EvictionPolicy::VolatileLru => table.volatile_at(pick),
                _ => table
                    .entry_at(pick)
                    .map(|entry| (self.hash(entry.key()), entry)),
            };
            if let Some((hash, entry)) = found {
                return Some(Candidate {
                    slot,
                    hash,
                    identity: entry.identity(),
                    idle: lru_now.wrapping_sub(entry.lru()),
                });
            }
        }
        None
    }
}
