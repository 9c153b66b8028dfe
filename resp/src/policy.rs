//! Redis's names of the engine's eviction policies (`maxmemory-policy`), for CONFIG and
//! kvnode's flags.

use slotkv_engine::EvictionPolicy;

/// Redis's name of an eviction policy.
pub fn policy_name(policy: EvictionPolicy) -> &'static str {
    match policy {
        EvictionPolicy::NoEviction => "noeviction",
        EvictionPolicy::AllKeysLru => "allkeys-lru",
        EvictionPolicy::VolatileLru => "volatile-lru",
        EvictionPolicy::AllKeysLfu => "allkeys-lfu",
        EvictionPolicy::VolatileLfu => "volatile-lfu",
        EvictionPolicy::AllKeysRandom => "allkeys-random",
        EvictionPolicy::VolatileRandom => "volatile-random",
        EvictionPolicy::VolatileTtl => "volatile-ttl",
    }
}

/// The eviction policy Redis names `name`.
pub fn policy_from_name(name: &str) -> Option<EvictionPolicy> {
    [
        EvictionPolicy::NoEviction,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ]
    .into_iter()
    .find(|policy| policy_name(*policy).eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_name_reads_back() {
        for name in [
            "noeviction",
            "allkeys-lru",
            "volatile-ttl",
            "allkeys-random",
        ] {
            assert_eq!(policy_from_name(name).map(policy_name), Some(name));
        }
        assert_eq!(policy_from_name("lru"), None);
    }
}
