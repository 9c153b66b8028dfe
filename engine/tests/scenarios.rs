//! Multi-step scenarios against the public API: many threads at once, export while writing,
//! eviction under concurrent writers, migration of a slot between two stores.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use slotkv_engine::{
    key_slot, ActiveExpireBudget, EvictionPolicy, ExpireCondition, ExportCursor, ExportLimits,
    ExportedEntry, ManualClock, RemovalCause, SetOptions, Slot, Store, StoreConfig, SLOT_COUNT,
};

const START_MS: u64 = 1_767_225_600_000;

fn new_store(config: StoreConfig) -> (Arc<Store>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    (Arc::new(Store::new(config, clock.clone())), clock)
}

/// Totals equal the sums over slots (call when no write is in flight).
fn assert_accounting_exact(store: &Store) {
    let mut memory = 0;
    let mut keys = 0;
    for slot in 0..SLOT_COUNT as Slot {
        memory += store.slot_memory_bytes(slot).unwrap();
        keys += store.count_keys_in_slot(slot).unwrap();
    }
    assert_eq!(memory, store.used_memory_bytes());
    assert_eq!(keys, store.dbsize());
}

fn export_all(store: &Store, slot: Slot, limits: ExportLimits) -> Vec<ExportedEntry> {
    let mut cursor = ExportCursor::start();
    let mut all = Vec::new();
    loop {
        let batch = store.export_slot(slot, &cursor, limits).unwrap();
        all.extend(batch.entries);
        match batch.next {
            Some(next) => cursor = next,
            None => return all,
        }
    }
}

#[test]
fn many_threads_hammering_mixed_commands_keep_counters_exact() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 3_000;
    let (store, clock) = new_store(StoreConfig::default());
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let store = &store;
            let clock = &clock;
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    let key = format!("key:{}", (round * 7 + thread) % 200);
                    let key = key.as_bytes();
                    match round % 8 {
                        0 => drop(store.set(key, b"value", SetOptions::default()).unwrap()),
                        1 => drop(store.get(key)),
                        2 => drop(store.del(&[key]).unwrap()),
                        3 => drop(store.append(key, b"x")),
                        4 => drop(store.pexpire(key, 5, ExpireCondition::Always).unwrap()),
                        5 => drop(store.persist(key).unwrap()),
                        6 => clock.advance_ms(1),
                        _ => drop(store.active_expire(ActiveExpireBudget::default())),
                    }
                    store.incr(format!("counter:{thread}").as_bytes()).unwrap();
                    store.incr(b"counter:shared").unwrap();
                }
            });
        }
    });
    for thread in 0..THREADS {
        let value = store.get(format!("counter:{thread}").as_bytes()).unwrap();
        assert_eq!(value, Bytes::from(ROUNDS.to_string()));
    }
    let shared = store.get(b"counter:shared").unwrap();
    assert_eq!(shared, Bytes::from((ROUNDS * THREADS).to_string()));
    assert_accounting_exact(&store);
}

#[test]
fn export_while_writing_returns_every_stable_key() {
    let (store, _) = new_store(StoreConfig::default());
    let slot = key_slot(b"{mig}");
    let stable: Vec<Vec<u8>> = (0..3_000)
        .map(|i| format!("{{mig}}:stable:{i}").into_bytes())
        .collect();
    for key in &stable {
        store.set(key, b"stable", SetOptions::default()).unwrap();
    }
    let stop = AtomicBool::new(false);
    let exported = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Churn in the same slot grows and shrinks its table (forcing resizes), and
                // overwrites of stable keys change their values but not their presence.
                let churn = format!("{{mig}}:churn:{}", i % 5_000);
                store
                    .set(churn.as_bytes(), b"c", SetOptions::default())
                    .unwrap();
                if i.is_multiple_of(3) {
                    let victim = format!("{{mig}}:churn:{}", (i / 3) % 5_000);
                    store.del(&[victim.as_bytes()]).unwrap();
                }
                let stable_key = format!("{{mig}}:stable:{}", i % 3_000);
                store
                    .set(stable_key.as_bytes(), b"rewritten", SetOptions::default())
                    .unwrap();
                i += 1;
            }
        });
        let limits = ExportLimits {
            max_keys_per_batch: NonZeroUsize::new(97).unwrap(),
            max_bytes_per_batch: NonZeroUsize::new(4_096).unwrap(),
        };
        let exported = export_all(&store, slot, limits);
        stop.store(true, Ordering::Relaxed);
        exported
    });
    let keys: HashSet<&[u8]> = exported.iter().map(|entry| &entry.key[..]).collect();
    for key in &stable {
        assert!(keys.contains(&key[..]), "{}", String::from_utf8_lossy(key));
    }
    assert_eq!(keys.len(), exported.len(), "no key is returned twice");
    assert_accounting_exact(&store);
}

#[test]
fn concurrent_writers_never_push_memory_past_the_limit() {
    const LIMIT_BYTES: u64 = 200_000;
    let config = StoreConfig {
        max_memory_bytes: LIMIT_BYTES,
        eviction_policy: EvictionPolicy::AllKeysLru,
        ..StoreConfig::default()
    };
    let (store, _) = new_store(config);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..3)
            .map(|thread| {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..5_000 {
                        let key = format!("w{thread}:{i}");
                        let value = vec![b'v'; 50 + (i % 200)];
                        store
                            .set(key.as_bytes(), &value, SetOptions::default())
                            .unwrap();
                    }
                })
            })
            .collect();
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert!(store.used_memory_bytes() as u64 <= LIMIT_BYTES);
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(store.used_memory_bytes() as u64 <= LIMIT_BYTES);
    let removals = store.drain_removals(usize::MAX);
    assert!(removals
        .iter()
        .all(|removal| removal.cause == RemovalCause::Evicted));
    assert_eq!(
        removals.len() as u64 + store.removals_dropped(),
        15_000 - store.dbsize() as u64
    );
    assert_accounting_exact(&store);
}

#[test]
fn migrating_a_slot_moves_keys_ttls_and_memory_exactly() {
    let (source, source_clock) = new_store(StoreConfig::default());
    let (target, target_clock) = new_store(StoreConfig::default());
    target_clock.set_ms(START_MS + 3_600_000);
    let slot = key_slot(b"{moving}");
    for i in 0..2_000 {
        let key = format!("{{moving}}:{i}");
        source
            .set(
                key.as_bytes(),
                format!("value-{i}").as_bytes(),
                SetOptions::default(),
            )
            .unwrap();
        if i % 4 == 0 {
            source
                .pexpire(key.as_bytes(), 60_000, ExpireCondition::Always)
                .unwrap();
        }
    }
    source
        .set(b"stays", b"here", SetOptions::default())
        .unwrap();
    source_clock.advance_ms(1_000);

    let limits = ExportLimits::default();
    let mut cursor = ExportCursor::start();
    loop {
        let batch = source.export_slot(slot, &cursor, limits).unwrap();
        target.import_batch(&batch.entries).unwrap();
        match batch.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(target.count_keys_in_slot(slot), Ok(2_000));
    assert_eq!(
        target.slot_memory_bytes(slot),
        source.slot_memory_bytes(slot)
    );
    assert_eq!(target.get(b"{moving}:7").as_deref(), Some(&b"value-7"[..]));
    assert_eq!(target.pttl(b"{moving}:8"), 59_000);
    assert_eq!(target.pttl(b"{moving}:9"), -1);

    let before = source.used_memory_bytes();
    let slot_bytes = source.slot_memory_bytes(slot).unwrap();
    assert_eq!(source.drop_slot(slot), Ok(2_000));
    assert_eq!(source.used_memory_bytes(), before - slot_bytes);
    assert_eq!(source.dbsize(), 1);
    assert_accounting_exact(&source);
    assert_accounting_exact(&target);
}

#[test]
fn removal_log_reports_expiry_and_is_bounded() {
    let config = StoreConfig {
        removal_log_capacity: 10,
        ..StoreConfig::default()
    };
    let (store, clock) = new_store(config);
    for i in 0..25 {
        let key = format!("k{i}");
        store
            .set(key.as_bytes(), b"v", SetOptions::default())
            .unwrap();
        store
            .pexpire(key.as_bytes(), 10, ExpireCondition::Always)
            .unwrap();
    }
    clock.advance_ms(10);
    for i in 0..25 {
        assert_eq!(store.get(format!("k{i}").as_bytes()), None);
    }
    let removals = store.drain_removals(100);
    assert_eq!(removals.len(), 10);
    assert!(removals
        .iter()
        .all(|removal| removal.cause == RemovalCause::Expired));
    assert_eq!(removals[0].slot, key_slot(b"k0"));
    assert_eq!(store.removals_dropped(), 15);
    assert_eq!(store.dbsize(), 0);
}
