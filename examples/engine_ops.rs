//! The engine workload of `benches/engine.rs` as a plain binary, for instruction counts under
//! valgrind (`benches/callgrind.sh` runs it and prints instructions per operation).
//!
//! Run: `cargo run --release --example engine_ops -- <target> <op> [operations]`
//! with `<target>` one of `slotkv`, `slotkv_borrow` (`Store::get_with`), `rwlock_hashmap`, `per_slot_rwlock_hashmap`, `noop` (the
//! loop alone: key generation and dispatch, subtracted by the script) and `<op>` one of
//! `get_hit`, `get_miss`, `set`, `mix_90get_10set`.
//!
//! The target is preloaded with the bench's 1M keys and every key is read once (a bare map's
//! `Bytes` values are promoted to shared on their first clone, an allocation the steady state
//! does not have); then the operations run inside `measured_ops`, the one function callgrind
//! collects (`--toggle-collect`), on random keys as in the bench, so the simulated caches see
//! the bench's misses.

#[path = "../benches/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::sync::Arc;

use parking_lot::RwLock;
use slotkv::engine::{Store, StoreConfig, SystemClock};
use support::{key, preload, run_ops, BareMap, Borrowing, Op, PerSlotMaps, Target, KEY_COUNT};

/// The loop without a store: what the script subtracts from every target.
struct Noop;

impl Target for Noop {
    fn get(&self, key: &[u8]) -> Option<usize> {
        Some(key.len())
    }
    fn set(&self, _key: &[u8], _value: &[u8]) {}
}

const SEED: u64 = 0x9E37_79B9;

/// The operations callgrind counts.
#[inline(never)]
fn measured_ops(target: &dyn Target, op: Op, operations: u64) {
    run_ops(target, op, operations, SEED);
}

fn run(target: &dyn Target, op: Op, operations: u64) {
    preload(target);
    for index in 0..KEY_COUNT {
        std::hint::black_box(target.get(&key(index, true)));
    }
    measured_ops(target, op, operations);
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(target), Some(op)) = (args.first(), args.get(1)) else {
        eprintln!("usage: engine_ops <target> <op> [operations]");
        return ExitCode::FAILURE;
    };
    let Some(&(_, op)) = Op::ALL.iter().find(|(name, _)| name == op) else {
        eprintln!("unknown op {op}");
        return ExitCode::FAILURE;
    };
    let operations = match args.get(2).map(|text| text.parse::<u64>()) {
        None => 100_000,
        Some(Ok(operations)) => operations,
        Some(Err(error)) => {
            eprintln!("bad operation count: {error}");
            return ExitCode::FAILURE;
        }
    };
    match target.as_str() {
        "slotkv" => run(
            &Store::new(StoreConfig::default(), Arc::new(SystemClock)),
            op,
            operations,
        ),
        "slotkv_borrow" => run(
            &Borrowing(&Store::new(StoreConfig::default(), Arc::new(SystemClock))),
            op,
            operations,
        ),
        "rwlock_hashmap" => run(
            &RwLock::new(hashbrown::HashMap::new()) as &BareMap,
            op,
            operations,
        ),
        "per_slot_rwlock_hashmap" => run(&PerSlotMaps::new(), op, operations),
        "noop" => measured_ops(&Noop, op, operations),
        other => {
            eprintln!("unknown target {other}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
