//! The engine workload shared by the criterion bench (`benches/engine.rs`) and the callgrind
//! driver (`examples/engine_ops.rs`): the same keys, index stream, operations and baselines,
//! so wall-clock and instruction-count figures describe one workload.
//!
//! 1M preloaded keys of 16 bytes with 64-byte values. Every store owns copies of what it is
//! given: slotkv copies key and value into its entry, the baselines get freshly copied `Bytes`.

// Each includer (the bench, the callgrind driver) uses its own part of the workload.
#![allow(dead_code)]

use std::hint::black_box;

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::RwLock;
use slotkv::engine::{SetOptions, Store, SLOT_COUNT};

/// Keys preloaded into every target.
pub(crate) const KEY_COUNT: u64 = 1_000_000;
/// The value written by every SET.
pub(crate) const VALUE: [u8; 64] = [b'v'; 64];

/// The bare baseline: one `parking_lot::RwLock` around one `hashbrown::HashMap`.
pub(crate) type BareMap = RwLock<hashbrown::HashMap<Bytes, Bytes>>;

/// Extra reference point: one bare map per hash slot, as slotkv lays out its tables, to
/// separate the cost of the per-slot layout from the cost of the entry format.
pub(crate) struct PerSlotMaps(Vec<BareMap>);

impl PerSlotMaps {
    /// 16384 empty maps.
    pub(crate) fn new() -> Self {
        Self((0..SLOT_COUNT).map(|_| RwLock::default()).collect())
    }

    fn map(&self, key: &[u8]) -> &BareMap {
        &self.0[usize::from(slotkv::key_slot(key))]
    }
}

/// slotkv read through [`Store::get_with`]: the value is looked at under the slot's lock and
/// no handle is made (no allocation).
pub(crate) struct Borrowing<'a>(pub(crate) &'a Store);

/// The 16-byte key number `index`; `present` keys were preloaded, the others never exist.
pub(crate) fn key(index: u64, present: bool) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(if present { b"slotkv:k" } else { b"missing:" });
    key[8..].copy_from_slice(&index.to_le_bytes());
    key
}

/// xorshift64*: a cheap per-thread index stream.
pub(crate) struct Indexes(pub(crate) u64);

impl Indexes {
    /// The next key index, below [`KEY_COUNT`].
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % KEY_COUNT
    }
}

/// One kind of operation of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// GET of a preloaded key.
    GetHit,
    /// GET of a key that never exists.
    GetMiss,
    /// SET of a preloaded key (an overwrite with a value of the same size).
    Set,
    /// 90 % GET hits, 10 % SETs.
    Mix,
}

impl Op {
    /// Every operation with its name in bench ids and on the command line.
    pub(crate) const ALL: [(&'static str, Op); 4] = [
        ("get_hit", Op::GetHit),
        ("get_miss", Op::GetMiss),
        ("set", Op::Set),
        ("mix_90get_10set", Op::Mix),
    ];
}

/// A store the workload runs against.
pub(crate) trait Target: Sync {
    /// Reads `key`; returns the value's length (the value itself is passed to `black_box`).
    fn get(&self, key: &[u8]) -> Option<usize>;
    /// Writes `key` = `value`.
    fn set(&self, key: &[u8], value: &[u8]);
}

impl Target for Store {
    fn get(&self, key: &[u8]) -> Option<usize> {
        Store::get(self, key).map(|value| black_box(value).len())
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        let _ = Store::set(self, key, value, SetOptions::default());
    }
}

impl Target for Borrowing<'_> {
    fn get(&self, key: &[u8]) -> Option<usize> {
        self.0.get_with(key, |value| black_box(value).len())
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        Target::set(self.0, key, value);
    }
}

impl Target for BareMap {
    fn get(&self, key: &[u8]) -> Option<usize> {
        self.read()
            .get(key)
            .cloned()
            .map(|value| black_box(value).len())
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        let (key, value) = (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        self.write().insert(key, value);
    }
}

impl Target for PerSlotMaps {
    fn get(&self, key: &[u8]) -> Option<usize> {
        self.map(key).get(key)
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        self.map(key).set(key, value);
    }
}

impl Target for DashMap<Bytes, Bytes> {
    fn get(&self, key: &[u8]) -> Option<usize> {
        DashMap::get(self, key).map(|value| black_box(value.clone()).len())
    }
    fn set(&self, key: &[u8], value: &[u8]) {
        let (key, value) = (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        self.insert(key, value);
    }
}

/// Runs `iters` operations of kind `op` on `target`, with the index stream seeded by `seed`.
#[inline(never)]
pub(crate) fn run_ops(target: &dyn Target, op: Op, iters: u64, seed: u64) {
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

/// Writes the [`KEY_COUNT`] preloaded keys.
pub(crate) fn preload(target: &dyn Target) {
    for index in 0..KEY_COUNT {
        target.set(&key(index, true), &VALUE);
    }
}
