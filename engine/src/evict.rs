//! Eviction under `maxmemory`, like Redis's `maxmemory-policy`: sampled approximate LRU and
//! LFU, nearest deadline (volatile-ttl) and random eviction, over all keys or over the keys
//! that have a TTL (`volatile-*`).
//!
//! Each eviction samples `eviction_samples` keys (one for the random policies), each from a
//! random non-empty slot, under read locks, scores them (see `access`: idle time, inverse LFU
//! counter, or nearness of the deadline), then removes the best candidate under its slot's
//! write lock if it is still the same entry. Redis keeps a pool of good candidates across
//! evictions; slotkv samples afresh each time.

use crate::config::EvictionPolicy;
use crate::removal::RemovalCause;
use crate::slot::{Slot, SLOT_COUNT};
use crate::store::Store;

struct Candidate {
    slot: Slot,
    hash: u64,
    identity: *const (),
    score: u64,
}

impl Store {
    /// Evicts one key by the configured policy; `false` if the policy is `noeviction` or there
    /// is no candidate.
    pub(crate) fn evict_one(&self) -> bool {
        let policy = self.config.eviction_policy;
        let samples = match policy {
            EvictionPolicy::NoEviction => return false,
            EvictionPolicy::AllKeysRandom | EvictionPolicy::VolatileRandom => 1,
            EvictionPolicy::AllKeysLru
            | EvictionPolicy::VolatileLru
            | EvictionPolicy::AllKeysLfu
            | EvictionPolicy::VolatileLfu
            | EvictionPolicy::VolatileTtl => self.config.eviction_samples.get(),
        };
        let now_ms = self.now().ms();
        let mut best: Option<Candidate> = None;
        for _ in 0..samples {
            let Some(candidate) = self.sample_candidate(policy, now_ms) else {
                break;
            };
            if best
                .as_ref()
                .is_none_or(|best| candidate.score > best.score)
            {
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

    /// One key from a random non-empty slot (non-empty in keys with a TTL for the volatile
    /// policies), with its score.
    fn sample_candidate(&self, policy: EvictionPolicy, now_ms: u64) -> Option<Candidate> {
        let start = self.rng.below(SLOT_COUNT);
        for offset in 0..SLOT_COUNT {
            let slot = ((start + offset) % SLOT_COUNT) as Slot;
            let table = self.slots[usize::from(slot)].read();
            let pick = self.rng.below(usize::MAX);
            let found = if policy.only_volatile() {
                table.volatile_at(pick)
            } else {
                table
                    .entry_at(pick)
                    .map(|entry| (self.hash(entry.key()), entry))
            };
            if let Some((hash, entry)) = found {
                return Some(Candidate {
                    slot,
                    hash,
                    identity: entry.identity(),
                    score: self.eviction_score(policy, entry, now_ms),
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
            let limit = store.max_memory_bytes();
            assert!(limit == 0 || store.used_memory_bytes() as u64 <= limit);
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
    fn a_limit_changed_in_place_applies_to_the_next_writes() {
        let (store, _) = store_with(limited(EvictionPolicy::AllKeysRandom, 0));
        fill(&store, 500).unwrap();
        let used = store.used_memory_bytes() as u64;
        assert_eq!(store.removals_pending(), 0);
        // Lowered below the data: nothing is removed until a write needs memory.
        store.set_max_memory_bytes(used / 2);
        assert_eq!(store.dbsize(), 500);
        store
            .set(b"one more", &[b'v'; 100], SetOptions::default())
            .unwrap();
        assert!(store.used_memory_bytes() as u64 <= used / 2);
        assert_eq!(store.removals_pending(), 501 - store.dbsize());
        // Lifted: writes no longer evict.
        store.set_max_memory_bytes(0);
        let keys = store.dbsize();
        fill(&store, 500).unwrap();
        assert!(store.dbsize() >= keys);
        assert_eq!(
            store.config().max_memory_bytes,
            0,
            "the config is the creation's"
        );
        check_invariants(&store);
    }

    /// Writes 100 more keys into a full store whose even keys of `key:0..200` are `hot`, then
    /// checks that eviction took the odd (cold) ones.
    fn assert_new_writes_evicted_the_cold_keys(store: &crate::Store, hot: &[String]) {
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
        check_invariants(store);
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
        assert_new_writes_evicted_the_cold_keys(&store, &hot);
    }

    #[test]
    fn volatile_policies_only_evict_keys_with_a_ttl() {
        for policy in [
            EvictionPolicy::VolatileLru,
            EvictionPolicy::VolatileLfu,
            EvictionPolicy::VolatileTtl,
            EvictionPolicy::VolatileRandom,
        ] {
            let (store, _) = store_with(limited(policy, 20_000));
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
                "{policy:?}: no volatile key left to evict"
            );
            for i in 0..50 {
                assert!(
                    store.get(format!("key:{i}").as_bytes()).is_some(),
                    "{policy:?}: persistent keys survive"
                );
            }
            let volatile_alive = (0..60)
                .filter(|i| store.get(format!("ttl:{i}").as_bytes()).is_some())
                .count();
            assert_eq!(volatile_alive, 0, "{policy:?}");
            check_invariants(&store);
        }
    }

    #[test]
    fn allkeys_lfu_prefers_keys_read_often_over_keys_read_long_ago() {
        let config = StoreConfig {
            eviction_samples: std::num::NonZeroUsize::new(10).unwrap(),
            ..limited(EvictionPolicy::AllKeysLfu, 30_000)
        };
        let (store, clock) = store_with(config);
        fill(&store, 200).unwrap();
        clock.advance_ms(3 * 60_000);
        let hot: Vec<String> = (0..200).step_by(2).map(|i| format!("key:{i}")).collect();
        for _ in 0..10 {
            for key in &hot {
                assert!(store.get(key.as_bytes()).is_some());
            }
        }
        assert_new_writes_evicted_the_cold_keys(&store, &hot);
    }

    #[test]
    fn lfu_counter_survives_an_overwrite() {
        let config = StoreConfig {
            lfu_log_factor: 0,
            ..limited(EvictionPolicy::AllKeysLfu, 0)
        };
        let (store, _) = store_with(config);
        store.set(b"k", b"1", SetOptions::default()).unwrap();
        let counter = |store: &crate::Store| {
            let table = store.slots[usize::from(crate::key_slot(b"k"))].read();
            let hash = store.hash(b"k");
            table.get(hash, b"k").map(|entry| entry.access() & 0xFF)
        };
        assert_eq!(
            counter(&store),
            Some(u32::from(crate::access::LFU_INIT_VAL))
        );
        store.get(b"k");
        store.set(b"k", b"2", SetOptions::default()).unwrap();
        assert_eq!(
            counter(&store),
            Some(u32::from(crate::access::LFU_INIT_VAL) + 2)
        );
    }

    #[test]
    fn volatile_ttl_evicts_the_nearest_deadlines_first() {
        let config = StoreConfig {
            eviction_samples: std::num::NonZeroUsize::new(10).unwrap(),
            ..limited(EvictionPolicy::VolatileTtl, 30_000)
        };
        let (store, _) = store_with(config);
        for i in 0..100 {
            let key = format!("ttl:{i}");
            store
                .set(key.as_bytes(), &[b'v'; 100], SetOptions::default())
                .unwrap();
            store
                .expire(key.as_bytes(), 1_000 + i, ExpireCondition::Always)
                .unwrap();
        }
        for i in 0..150 {
            let key = format!("key:{i}");
            if store
                .set(key.as_bytes(), &[b'v'; 100], SetOptions::default())
                .is_err()
            {
                break;
            }
        }
        let alive = |range: std::ops::Range<i64>| {
            range
                .filter(|i| store.get(format!("ttl:{i}").as_bytes()).is_some())
                .count()
        };
        let (near, far) = (alive(0..50), alive(50..100));
        assert!(near + far < 100, "something was evicted");
        assert!(near * 3 <= far, "near {near} far {far}");
        check_invariants(&store);
    }
}
