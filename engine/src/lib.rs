//! `slotkv-engine`: the per-slot in-memory store every slotkv node embeds.
//!
//! The engine knows keys and hash slots, never nodes: the cluster routes a request to the node
//! that owns the key's slot, and that node calls its [`Store`]. Layout, following a request:
//!
//! * [`slot`]: key → slot (CRC16-XMODEM with hash tags), the one home of slot math.
//! * `store`: the [`Store`], 16384 slot tables each behind its own `RwLock`, the shared memory
//!   and key counters, and the single write path every command goes through.
//! * `table` and `entry`: one slot's hash table of compact entries (header, key and value in
//!   one allocation behind an 8-byte pointer; reads hand out the value zero-copy).
//! * `strings` and `keys`: the Redis commands, with typed [`options`] and one [`CommandError`];
//!   `integer` and `float`: Redis's number syntax and formatting.
//! * `expire`, `evict`, `access`: the active expiry cycle, `maxmemory` eviction and the
//!   per-entry access clock (LRU seconds or LFU counter) it samples.
//! * `slots`: count, list, export, import and drop a slot; replication primitives.
//! * [`clock`]: time is an input ([`Clock`]); `removal`: keys the engine removed by itself
//!   (expiry, eviction), for the owner to replicate.

mod access;
pub mod clock;
mod config;
mod entry;
mod error;
mod evict;
mod expire;
mod float;
mod integer;
mod keys;
pub mod options;
mod removal;
mod rng;
pub mod slot;
mod slots;
mod store;
mod strings;
mod table;
#[cfg(test)]
mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    EvictionPolicy, StoreConfig, DEFAULT_EVICTION_SAMPLES, DEFAULT_LFU_DECAY_TIME_MINUTES,
    DEFAULT_LFU_LOG_FACTOR, DEFAULT_MAX_BYTES, DEFAULT_REMOVAL_LOG_CAPACITY,
};
pub use error::CommandError;
pub use expire::{
    ActiveExpireBudget, ActiveExpireReport, ACTIVE_EXPIRE_REPEAT_PERCENT, ACTIVE_EXPIRE_SAMPLE_KEYS,
};
pub use float::{format_f64, parse_f64};
pub use integer::parse_i64;
pub use keys::{TTL_MISSING_KEY, TTL_NO_EXPIRY};
pub use options::{
    ExpireCondition, ExpireTime, GetExExpiry, SetCondition, SetExpiry, SetOptions, SetOutcome,
};
pub use removal::{Removal, RemovalCause};
pub use slot::{crc16, hash_tag, key_slot, Slot, SLOT_COUNT};
pub use slots::{
    ExportBatch, ExportCursor, ExportLimits, ExportedEntry, ImportReport, TakenSlot,
    DEFAULT_EXPORT_MAX_BYTES_PER_BATCH, DEFAULT_EXPORT_MAX_KEYS_PER_BATCH,
};
pub use store::Store;
