//! Store configuration: limits, `maxmemory` and its eviction policy, the removal log bound and
//! the seed of the engine's sampling RNG.

use std::num::NonZeroUsize;

/// 512 MiB, Redis's default `proto-max-bulk-len`.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024 * 1024;

/// Redis's default `maxmemory-samples`.
pub const DEFAULT_EVICTION_SAMPLES: usize = 5;

/// Redis's default `lfu-log-factor`.
pub const DEFAULT_LFU_LOG_FACTOR: u32 = 10;

/// Redis's default `lfu-decay-time`, in minutes.
pub const DEFAULT_LFU_DECAY_TIME_MINUTES: u32 = 1;

/// Default bound of the removal log (keys removed by expiry or eviction awaiting the owner).
pub const DEFAULT_REMOVAL_LOG_CAPACITY: usize = 16_384;

/// What a write does when `max_memory_bytes` is reached (Redis's `maxmemory-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Refuse writes that need memory with the OOM error.
    #[default]
    NoEviction,
    /// Evict the least recently used key among a sample of all keys.
    AllKeysLru,
    /// Evict the least recently used key among a sample of keys that have a TTL.
    VolatileLru,
    /// Evict a random key.
    AllKeysRandom,
    /// Evict the least frequently used key among a sample of all keys (Redis's logarithmic
    /// counter with decay; see `lfu_log_factor` and `lfu_decay_time_minutes`).
    AllKeysLfu,
    /// Evict the least frequently used key among a sample of keys that have a TTL.
    VolatileLfu,
    /// Evict the key with the nearest deadline among a sample of keys that have a TTL.
    VolatileTtl,
    /// Evict a random key among those that have a TTL.
    VolatileRandom,
}

impl EvictionPolicy {
    /// Whether reads must refresh each key's LRU clock under this policy.
    pub fn tracks_lru(self) -> bool {
        matches!(self, Self::AllKeysLru | Self::VolatileLru)
    }

    /// Whether reads must update each key's LFU counter under this policy.
    pub fn tracks_lfu(self) -> bool {
        matches!(self, Self::AllKeysLfu | Self::VolatileLfu)
    }

    /// Whether the policy evicts only keys that have a TTL (Redis's `volatile-*`).
    pub fn only_volatile(self) -> bool {
        matches!(
            self,
            Self::VolatileLru | Self::VolatileLfu | Self::VolatileTtl | Self::VolatileRandom
        )
    }
}

/// Configuration of a [`Store`](crate::Store).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Memory limit in bytes as counted by the engine's accounting; `0` means no limit.
    /// A write may take used memory above the limit by at most the entry it writes.
    pub max_memory_bytes: u64,
    /// What happens when `max_memory_bytes` is reached.
    pub eviction_policy: EvictionPolicy,
    /// Keys sampled per eviction (Redis `maxmemory-samples`); more is closer to true LRU.
    pub eviction_samples: NonZeroUsize,
    /// LFU policies: how slowly the access counter grows (Redis `lfu-log-factor`, default
    /// 10: about a million accesses take it to its maximum, 255; 0 counts every access).
    pub lfu_log_factor: u32,
    /// LFU policies: each this many minutes without access take one from the counter (Redis
    /// `lfu-decay-time`, default 1); 0 never decays.
    pub lfu_decay_time_minutes: u32,
    /// Longest key accepted, in bytes (at most `u32::MAX`); longer ones get `KeyTooLarge`.
    pub max_key_bytes: usize,
    /// Longest value accepted, in bytes (at most `u32::MAX`); longer ones get `ValueTooLarge`.
    pub max_value_bytes: usize,
    /// Capacity of the removal log in events; `0` disables it. When full, new events are
    /// dropped and counted (see [`Store::removals_dropped`](crate::Store::removals_dropped)).
    pub removal_log_capacity: usize,
    /// Seed of the engine's sampling RNG (eviction and active expiry), for reproducible runs.
    pub rng_seed: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_memory_bytes: 0,
            eviction_policy: EvictionPolicy::NoEviction,
            eviction_samples: NonZeroUsize::new(DEFAULT_EVICTION_SAMPLES)
                .unwrap_or(NonZeroUsize::MIN),
            lfu_log_factor: DEFAULT_LFU_LOG_FACTOR,
            lfu_decay_time_minutes: DEFAULT_LFU_DECAY_TIME_MINUTES,
            max_key_bytes: DEFAULT_MAX_BYTES,
            max_value_bytes: DEFAULT_MAX_BYTES,
            removal_log_capacity: DEFAULT_REMOVAL_LOG_CAPACITY,
            rng_seed: 0x5EED_0F51_074B_1D00,
        }
    }
}
