//! Engine benchmarks: slotkv's `Store` against a bare `parking_lot::RwLock<hashbrown::HashMap>`
//! and `dashmap`, on 1M preloaded keys (16-byte keys, 64-byte values), with 1 and 2 threads;
//! plus `key_slot` on 16-byte keys.
//!
//! Run: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`
//!
//! Every store owns copies of what it is given: slotkv copies key and value into its entry,
//! the baselines get freshly copied `Bytes`. Reads return `Bytes` in all three. Two-thread
//! figures are total throughput: both threads do the same number of operations
//! (`Throughput::Elements(2)` per iteration).
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dashmap::DashMap;
use parking_lot::RwLock;
use slotkv::engine::{SetOptions, Store, StoreConfig, SystemClock};

const KEY_COUNT: u64 = 1_000_000;
const VALUE: [u8; 64] = [b'v'; 64];

type BareMap = RwLock<hashbrown::HashMap<Bytes, Bytes>>;

/// Extra reference point for GET hit only: one bare map per hash slot, as slotkv lays out its
/// tables, to separate the cost of the per-slot layout from the cost of the entry format.
struct PerSlotMaps(Vec<BareMap>);

impl PerSlotMaps {
    fn new() -> Self {
        Self(
            (0..slotkv::engine::SLOT_COUNT)
                .map(|_| RwLock::default())
                .collect(),
        )
    }

    fn map(&self, key: &[u8]) -> &BareMap {
        &self.0[usize::from(slotkv::key_slot(key))]
    }
}

/// The 16-byte key number `index`; `present` keys were preloaded, the others never exist.
fn key(index: u64, present: bool) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(if present { b"slotkv:k" } else { b"missing:" });
    key[8..].copy_from_slice(&index.to_le_bytes());
    key
}

/// xorshift64*: a cheap per-thread index stream.
struct Indexes(u64);

impl Indexes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % KEY_COUNT
    }
}

#[derive(Clone, Copy)]
enum Op {
    GetHit,
    GetMiss,
    Set,
    Mix,
}

trait Target: Sync {
    fn get(&self, key: &[u8]) -> Option<Bytes>;
    fn set(&self, key: &[u8], value: &[u8]);
}

impl Target for Store {
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        Store::get(self, key)
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        let _ = Store::set(self, key, value, SetOptions::default());
    }
}

impl Target for BareMap {
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.read().get(key).cloned()
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        let (key, value) = (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        self.write().insert(key, value);
    }
}

impl Target for PerSlotMaps {
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.map(key).get(key)
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        self.map(key).set(key, value);
    }
}

impl Target for DashMap<Bytes, Bytes> {
    fn get(&self, key: &[u8]) -> Option<Bytes> {
        DashMap::get(self, key).map(|value| value.clone())
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        let (key, value) = (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        self.insert(key, value);
    }
}

fn run_ops(target: &dyn Target, op: Op, iters: u64, seed: u64) {
    let mut indexes = Indexes(seed | 1);
    for _ in 0..iters {
        let index = indexes.next();
        match op {
            Op::GetHit => {
                black_box(target.get(&key(index, true)));
            }
            Op::GetMiss => {
                black_box(target.get(&key(index, false)));
            }
            Op::Set => target.set(&key(index, true), &VALUE),
            Op::Mix if index.is_multiple_of(10) => target.set(&key(indexes.next(), true), &VALUE),
            Op::Mix => {
                black_box(target.get(&key(index, true)));
            }
        }
    }
}

fn run_threads(target: &dyn Target, op: Op, iters: u64, threads: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            scope.spawn(move || run_ops(target, op, iters, 0x9E37_79B9 * (thread + 1)));
        }
    });
    start.elapsed()
}

fn preload(target: &dyn Target) {
    for index in 0..KEY_COUNT {
        target.set(&key(index, true), &VALUE);
    }
}

fn bench_store_ops(c: &mut Criterion) {
    let store = Store::new(StoreConfig::default(), Arc::new(SystemClock));
    let bare: BareMap = RwLock::new(hashbrown::HashMap::new());
    let dash: DashMap<Bytes, Bytes> = DashMap::new();
    let targets: [(&str, &dyn Target); 3] = [
        ("slotkv", &store),
        ("rwlock_hashmap", &bare),
        ("dashmap", &dash),
    ];
    let per_slot = PerSlotMaps::new();
    for target in targets
        .iter()
        .map(|(_, target)| *target)
        .chain([&per_slot as &dyn Target])
    {
        preload(target);
    }
    let ops = [
        ("get_hit", Op::GetHit),
        ("get_miss", Op::GetMiss),
        ("set", Op::Set),
        ("mix_90get_10set", Op::Mix),
    ];
    for (group_name, op) in ops {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(20);
        for threads in [1u64, 2] {
            group.throughput(Throughput::Elements(threads));
            let extra: &[(&str, &dyn Target)] = match op {
                Op::GetHit => &[("per_slot_rwlock_hashmap", &per_slot)],
                _ => &[],
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
    targets = bench_store_ops, bench_key_slot
}
criterion_main!(benches);
