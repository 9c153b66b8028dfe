//! Test fixtures: a store on a manual clock, and an invariant check over all slots.

use std::sync::Arc;

use crate::clock::ManualClock;
use crate::config::StoreConfig;
use crate::store::Store;

/// The start time of test clocks: 2026-01-01T00:00:00Z in unix ms.
pub(crate) const START_MS: u64 = 1_767_225_600_000;

pub(crate) fn store_with(config: StoreConfig) -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    (Store::new(config, clock.clone()), clock)
}

pub(crate) fn store() -> (Store, Arc<ManualClock>) {
    store_with(StoreConfig::default())
}

/// Asserts every slot's TTL index and memory count, and the totals, are exact.
pub(crate) fn check_invariants(store: &Store) {
    let mut memory = 0;
    let mut keys = 0;
    for slot in store.slots.iter() {
        let table = slot.read();
        table.check_invariants();
        memory += table.memory_bytes();
        keys += table.len();
    }
    assert_eq!(memory, store.used_memory_bytes(), "total memory");
    assert_eq!(keys, store.dbsize(), "key count");
}
