//! Bytes of memory per key: 1M keys of 16 bytes with 32-byte values (or as many bytes as the
//! first argument says), in the slotkv store and in a bare
//! `RwLock<hashbrown::HashMap<Bytes, Bytes>>`, measured by a counting global allocator.
//!
//! Run: `cargo run --release --example memory_per_key [value bytes, default 32, at least 27]`
//!
//! Printed per key: bytes requested from the allocator, bytes the allocator really reserved
//! (`malloc_usable_size` + its 8-byte chunk header, glibc), the growth of the process's resident
//! set (for the first structure measured only: freed memory is not returned to the OS), and for
//! slotkv what its own accounting (`used_memory_bytes`) says.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use slotkv::engine::{SetOptions, Store, StoreConfig, SystemClock};

const KEY_COUNT: usize = 1_000_000;

/// Counts bytes requested and bytes really reserved by the system allocator.
struct CountingAllocator;

static REQUESTED_BYTES: AtomicUsize = AtomicUsize::new(0);
static RESERVED_BYTES: AtomicUsize = AtomicUsize::new(0);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn reserved_size(ptr: *mut u8, _size: usize) -> usize {
    extern "C" {
        fn malloc_usable_size(ptr: *mut std::ffi::c_void) -> usize;
    }
    // SAFETY: `ptr` is a live allocation of the system allocator (glibc malloc).
    // glibc chunks carry an 8-byte size header on top of the usable size.
    unsafe { malloc_usable_size(ptr.cast()) + 8 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reserved_size(_ptr: *mut u8, size: usize) -> usize {
    size
}

// SAFETY: delegates to `System`, only counting.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            REQUESTED_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            RESERVED_BYTES.fetch_add(reserved_size(ptr, layout.size()), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        RESERVED_BYTES.fetch_sub(reserved_size(ptr, layout.size()), Ordering::Relaxed);
        System.dealloc(ptr, layout);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn key(i: usize) -> String {
    format!("key:{i:012}")
}

fn value(i: usize, len: usize) -> String {
    format!("value:{i:0width$}", width = len - 6)
}

struct Snapshot {
    requested: usize,
    reserved: usize,
    resident: Option<usize>,
}

fn snapshot() -> Snapshot {
    Snapshot {
        requested: REQUESTED_BYTES.load(Ordering::Relaxed),
        reserved: RESERVED_BYTES.load(Ordering::Relaxed),
        resident: resident_bytes(),
    }
}

fn report(name: &str, before: &Snapshot, show_resident: bool) {
    let after = snapshot();
    let per_key = |bytes: usize| bytes as f64 / KEY_COUNT as f64;
    print!(
        "{name:<34} requested {:6.1} B/key   reserved {:6.1} B/key",
        per_key(after.requested - before.requested),
        per_key(after.reserved - before.reserved),
    );
    match (show_resident, before.resident, after.resident) {
        (true, Some(start), Some(end)) => {
            println!("   RSS growth {:6.1} B/key", per_key(end - start))
        }
        _ => println!(),
    }
}

fn main() {
    let value_len = match std::env::args().nth(1).map(|text| text.parse::<usize>()) {
        None => 32,
        Some(Ok(len)) if len >= 27 => len,
        Some(_) => {
            eprintln!("usage: memory_per_key [value bytes, at least 27]");
            std::process::exit(2);
        }
    };
    assert_eq!(key(0).len(), 16);
    assert_eq!(value(0, value_len).len(), value_len);
    println!("{KEY_COUNT} keys, 16-byte keys, {value_len}-byte values");

    let before = snapshot();
    let store = Store::new(StoreConfig::default(), Arc::new(SystemClock));
    for i in 0..KEY_COUNT {
        let outcome = store.set(
            key(i).as_bytes(),
            value(i, value_len).as_bytes(),
            SetOptions::default(),
        );
        assert!(outcome.is_ok_and(|outcome| outcome.written));
    }
    report("slotkv Store", &before, true);
    println!(
        "{:<34} accounted {:6.1} B/key (engine's used_memory_bytes)",
        "",
        store.used_memory_bytes() as f64 / KEY_COUNT as f64
    );
    drop(store);

    let before = snapshot();
    let map = RwLock::new(hashbrown::HashMap::<Bytes, Bytes>::new());
    for i in 0..KEY_COUNT {
        map.write()
            .insert(Bytes::from(key(i)), Bytes::from(value(i, value_len)));
    }
    report("RwLock<HashMap<Bytes, Bytes>>", &before, false);
    drop(map);
}
