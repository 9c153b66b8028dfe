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

#[cfg(test)]
mod tests {
    use crate::testing::{check_invariants, store_with};
    use crate::{
        CommandError, EvictionPolicy, ExpireCondition, RemovalCause, SetOptions, StoreConfig,
    };

    fn limited(policy: EvictionPolicy, max_memory_bytes: u64) -> StoreConfig {
        StoreConfig {
            max_memory_bytes,
            eviction_policy: policy,
            ..StoreConfig::default()
        }
    }

    fn fill(store: &crate::Store, count: u32) -> Result<(), CommandError> {
        for i in 0..count {
            store.set(
                format!("key:{i}").as_bytes(),
                &[b'v'; 100],
                SetOptions::default(),
            )?;
            assert!(store.used_memory_bytes() as u64 <= store.config().max_memory_bytes);
        }
        Ok(())
    }

    #[test]
    fn noeviction_refuses_writes_that_would_pass_the_limit() {
        let (store, _) = store_with(limited(EvictionPolicy::NoEviction, 10_000));
        assert_eq!(fill(&store, 1_000), Err(CommandError::OutOfMemory));
        let keys = store.dbsize();
        assert!(keys > 50 && keys < 100, "{keys}");
        assert!(store.get(b"key:0").is_some(), "reads still work");
        assert!(store.del(&[b"key:0"]).is_ok(), "deletes still work");
        check_invariants(&store);
    }

    #[test]
    fn allkeys_random_and_lru_keep_memory_under_the_limit() {
        for policy in [EvictionPolicy::AllKeysRandom, EvictionPolicy::AllKeysLru] {
            let (store, _) = store_with(limited(policy, 20_000));
            fill(&store, 2_000).unwrap();
            assert!(store.used_memory_bytes() <= 20_000);
            assert!(store.dbsize() > 100, "{policy:?}");
            let evicted = store.drain_removals(10_000);
            assert!(evicted
                .iter()
                .all(|removal| removal.cause == RemovalCause::Evicted));
            assert_eq!(evicted.len(), 2_000 - store.dbsize());
            check_invariants(&store);
        }
    }

    #[test]
    fn allkeys_lru_prefers_keys_not_read_recently() {
        let config = StoreConfig {
            eviction_samples: std::num::NonZeroUsize::new(10).unwrap(),
            ..limited(EvictionPolicy::AllKeysLru, 30_000)
        };
        let (store, clock) = store_with(config);
        fill(&store, 200).unwrap();
        let hot: Vec<String> = (0..200).step_by(2).map(|i| format!("key:{i}")).collect();
        clock.advance_ms(60_000);
        for key in &hot {
            assert!(store.get(key.as_bytes()).is_some());
        }
        clock.advance_ms(1_000);
        for i in 200..300 {
            store
                .set(
                    format!("key:{i}").as_bytes(),
                    &[b'v'; 100],
                    SetOptions::default(),
                )
                .unwrap();
        }
        let hot_alive = hot
            .iter()
            .filter(|key| store.get(key.as_bytes()).is_some())
            .count();
        let cold_alive = (1..200)
            .step_by(2)
            .filter(|i| store.get(format!("key:{i}").as_bytes()).is_some())
            .count();
        assert!(
            hot_alive >= 80 && cold_alive <= 30,
            "hot {hot_alive} cold {cold_alive}"
        );
        check_invariants(&store);
    }

    #[test]
    fn volatile_lru_only_evicts_keys_with_a_ttl() {
        let (store, _) = store_with(limited(EvictionPolicy::VolatileLru, 20_000));
        for i in 0..60 {
            let key = format!("ttl:{i}");
            store
                .set(key.as_bytes(), &[b'v'; 100], SetOptions::default())
                .unwrap();
            store
                .expire(key.as_bytes(), 1_000, ExpireCondition::Always)
                .unwrap();
        }
        let result = fill(&store, 1_000);
        assert_eq!(
            result,
            Err(CommandError::OutOfMemory),
            "no volatile key left to evict"
        );
        for i in 0..50 {
            assert!(
                store.get(format!("key:{i}").as_bytes()).is_some(),
                "persistent keys survive"
            );
        }
        assert_eq!(
            (0..60)
                .filter(|i| store.get(format!("ttl:{i}").as_bytes()).is_some())
                .count(),
            0
        );
        check_invariants(&store);
    }
}
