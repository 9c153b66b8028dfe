//! Store configuration: limits, `maxmemory` and its eviction policy, the removal log bound and
//! the seed of the engine's sampling RNG.

use std::num::NonZeroUsize;

/// 512 MiB, Redis's default `proto-max-bulk-len`.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024 * 1024;

/// Redis's default `maxmemory-samples`.
pub const DEFAULT_EVICTION_SAMPLES: usize = 5;

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
}

impl EvictionPolicy {
    /// Whether reads must refresh each key's LRU clock under this policy.
    pub fn tracks_lru(self) -> bool {
        matches!(self, Self::AllKeysLru | Self::VolatileLru)
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
            max_key_bytes: DEFAULT_MAX_BYTES,
            max_value_bytes: DEFAULT_MAX_BYTES,
            removal_log_capacity: DEFAULT_REMOVAL_LOG_CAPACITY,
            rng_seed: 0x5EED_0F51_074B_1D00,
        }
    }
}
