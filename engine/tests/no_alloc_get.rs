//! The GET path allocates nothing: a counting global allocator counts the allocations of the
//! test's own thread across many GET hits and misses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use slotkv_engine::{
    key_slot, EvictionPolicy, ExpireCondition, ManualClock, SetOptions, Store, StoreConfig,
};

/// Delegates to the system allocator and counts allocations per thread (other tests of this
/// binary run on other threads).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call to `System`; counting touches only a const-initialised
// thread-local `Cell` (no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const KEYS: u32 = 2_000;

fn filled(policy: EvictionPolicy) -> (Store, Vec<Vec<u8>>) {
    let config = StoreConfig {
        eviction_policy: policy,
        ..StoreConfig::default()
    };
    let store = Store::new(config, Arc::new(ManualClock::new(1_767_225_600_000)));
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|i| format!("key:{i:012}").into_bytes())
        .collect();
    for (i, key) in keys.iter().enumerate() {
        store.set(key, &[b'v'; 32], SetOptions::default()).unwrap();
        if i % 2 == 0 {
            store.expire(key, 1_000, ExpireCondition::Always).unwrap();
        }
    }
    (store, keys)
}

/// Reads every key (hits, half of them with a TTL) and as many absent keys, twice over;
/// returns the bytes seen so the reads cannot be optimised away.
fn read_all(store: &Store, keys: &[Vec<u8>], missing: &[Vec<u8>]) -> usize {
    let mut seen = 0;
    for _ in 0..2 {
        for key in keys {
            seen += store.get_with(key, <[u8]>::len).unwrap_or(0);
            seen += store
                .get_with_in_slot(key_slot(key), key, <[u8]>::len)
                .unwrap_or(0);
        }
        for key in missing {
            seen += store.get_with(key, <[u8]>::len).unwrap_or(1);
            seen += store
                .get_with_in_slot(key_slot(key), key, <[u8]>::len)
                .unwrap_or(1);
        }
    }
    seen
}

#[test]
fn get_hits_and_misses_allocate_nothing_under_every_policy() {
    for policy in [
        EvictionPolicy::NoEviction,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileTtl,
        EvictionPolicy::VolatileRandom,
    ] {
        let (store, keys) = filled(policy);
        let missing: Vec<Vec<u8>> = (0..KEYS)
            .map(|i| format!("absent:{i:09}").into_bytes())
            .collect();
        let before = allocations();
        let seen = read_all(&store, &keys, &missing);
        let allocated = allocations() - before;
        assert_eq!(seen, 2 * (2 * KEYS as usize * 32 + 2 * KEYS as usize));
        assert_eq!(allocated, 0, "{policy:?}: allocations on the GET path");
    }
}
