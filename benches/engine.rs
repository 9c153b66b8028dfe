//! Engine benchmarks: slotkv's `Store` against a bare `parking_lot::RwLock<hashbrown::HashMap>`
//! and `dashmap`, on 1M preloaded keys (16-byte keys, 64-byte values), with 1 and 2 threads;
//! plus exporting a 1M-key slot and `key_slot` on 16-byte keys. The workload is `benches/support`, shared with the
//! callgrind driver `examples/engine_ops.rs` (`benches/callgrind.sh`).
//!
//! Run: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`
//!
//! Reads return a `Bytes` handle in all stores except `slotkv_borrow` (`Store::get_with`, which
//! looks at the value under the lock and makes no handle); SETs of `slotkv_borrow` are slotkv's. Two-thread figures are total throughput: both
//! threads do the same number of operations (`Throughput::Elements(2)` per iteration).
#![allow(missing_docs)] // criterion_group! generates undocumented functions

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use parking_lot::RwLock;
use slotkv::engine::{ExportCursor, ExportLimits, SetOptions, Store, StoreConfig, SystemClock};
use support::{key, preload, run_ops, BareMap, Borrowing, Op, PerSlotMaps, Target};

fn run_threads(target: &dyn Target, op: Op, iters: u64, threads: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            scope.spawn(move || run_ops(target, op, iters, 0x9E37_79B9 * (thread + 1)));
        }
    });
    start.elapsed()
}

fn bench_store_ops(c: &mut Criterion) {
    let store = Store::new(StoreConfig::default(), Arc::new(SystemClock));
    let bare: BareMap = RwLock::new(hashbrown::HashMap::new());
    let dash: DashMap<Bytes, Bytes> = DashMap::new();
    let borrowing = Borrowing(&store);
    let targets: [(&str, &dyn Target); 3] = [
        ("slotkv", &store),
        ("rwlock_hashmap", &bare),
        ("dashmap", &dash),
    ];
    let per_slot = PerSlotMaps::new();
    for target in [&store as &dyn Target, &bare, &dash, &per_slot] {
        preload(target);
    }
    for (group_name, op) in Op::ALL {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(20);
        for threads in [1u64, 2] {
            group.throughput(Throughput::Elements(threads));
            let extra: &[(&str, &dyn Target)] = match op {
                Op::GetHit => &[
                    ("slotkv_borrow", &borrowing),
                    ("per_slot_rwlock_hashmap", &per_slot),
                ],
                Op::GetMiss | Op::Mix => &[("slotkv_borrow", &borrowing)],
                Op::Set => &[],
            };
            for &(name, target) in targets.iter().chain(extra) {
                let id = BenchmarkId::new(name, format!("{threads}thread"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| run_threads(target, op, iters, threads))
                });
            }
        }
        group.finish();
    }
}

/// Exports a slot holding 1M keys (16-byte-ish keys with one hash tag, 64-byte values) in
/// batches of the default limits: the cost of a migration or full sync of one big slot.
fn bench_export_slot(c: &mut Criterion) {
    const SLOT_KEYS: u64 = 1_000_000;
    let store = Store::new(StoreConfig::default(), Arc::new(SystemClock));
    for index in 0..SLOT_KEYS {
        let key = format!("{{big}}:{index:09}");
        let _ = store.set(key.as_bytes(), &support::VALUE, SetOptions::default());
    }
    let slot = slotkv::key_slot(b"{big}");
    let mut group = c.benchmark_group("export_slot");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SLOT_KEYS));
    group.bench_function("1M_keys_one_slot", |b| {
        b.iter(|| {
            let mut cursor = ExportCursor::start();
            let mut exported = 0;
            loop {
                let batch = store
                    .export_slot(slot, &cursor, ExportLimits::default())
                    .expect("the slot is in range");
                exported += batch.entries.len();
                match batch.next {
                    Some(next) => cursor = next,
                    None => break,
                }
            }
            assert_eq!(exported as u64, SLOT_KEYS);
        })
    });
    group.finish();
}

fn bench_key_slot(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_slot");
    group.throughput(Throughput::Elements(1));
    let plain = key(12_345, true);
    let tagged = *b"{user1000}.follo";
    group.bench_function("16B_plain", |b| {
        b.iter(|| slotkv::key_slot(black_box(&plain)))
    });
    group.bench_function("16B_hash_tag", |b| {
        b.iter(|| slotkv::key_slot(black_box(&tagged)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .without_plots()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_store_ops, bench_export_slot, bench_key_slot
}
criterion_main!(benches);
