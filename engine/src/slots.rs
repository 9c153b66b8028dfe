//! Per-slot operations for the cluster: count, list, export in bounded batches, import, drop,
//! and the replication primitives `apply_set` / `apply_del` that take absolute deadlines.
//!
//! Export order and cursor: a slot's live keys are exported in the order of `(hash, key)`,
//! where `hash` is the store's key hash (fixed for the store's lifetime). The cursor is the last
//! `(hash, key)` returned, so table resizes and concurrent writes cannot make it skip: every key
//! present for the whole export is returned exactly once; keys written or deleted meanwhile may
//! or may not be, and the caller covers them with its write log. Each batch scans the whole
//! slot under its read lock (O(n log k) for n keys in the slot and k keys per batch).

use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::CommandError;
use crate::slot::{Slot, SLOT_COUNT};
use crate::store::{Change, Step, Store};

/// Default bound on keys per export batch.
pub const DEFAULT_EXPORT_MAX_KEYS_PER_BATCH: usize = 1_000;
/// Default bound on key and value bytes per export batch.
pub const DEFAULT_EXPORT_MAX_BYTES_PER_BATCH: usize = 1024 * 1024;

/// Bounds of one export batch. A batch always holds at least one key when any is left, even if
/// that key alone is larger than `max_bytes_per_batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportLimits {
    /// Most keys in one batch.
    pub max_keys_per_batch: NonZeroUsize,
    /// Most key + value bytes in one batch (see the type's doc for the one-key exception).
    pub max_bytes_per_batch: NonZeroUsize,
}

impl Default for ExportLimits {
    fn default() -> Self {
        Self {
            max_keys_per_batch: NonZeroUsize::new(DEFAULT_EXPORT_MAX_KEYS_PER_BATCH)
                .unwrap_or(NonZeroUsize::MIN),
            max_bytes_per_batch: NonZeroUsize::new(DEFAULT_EXPORT_MAX_BYTES_PER_BATCH)
                .unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// Where an export continues: a position in the snapshot of the slot's key names taken by the
/// export's first batch (see the module doc). A cursor belongs to the slot it was returned
/// for; given for another slot, it starts a new export of that slot. Cloning is cheap.
#[derive(Clone, Default)]
pub struct ExportCursor {
    snapshot: Option<Arc<KeySnapshot>>,
    /// Names of the snapshot already visited.
    position: usize,
}

impl ExportCursor {
    /// The cursor of a new export.
    pub fn start() -> Self {
        Self::default()
    }
}

impl PartialEq for ExportCursor {
    fn eq(&self, other: &Self) -> bool {
        let same_snapshot = match (&self.snapshot, &other.snapshot) {
            (Some(mine), Some(theirs)) => Arc::ptr_eq(mine, theirs),
            (None, None) => true,
            _ => false,
        };
        same_snapshot && self.position == other.position
    }
}

impl Eq for ExportCursor {}

impl std::fmt::Debug for ExportCursor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.snapshot.as_ref();
        formatter
            .debug_struct("ExportCursor")
            .field("slot", &snapshot.map(|snapshot| snapshot.slot))
            .field("keys", &snapshot.map_or(0, |snapshot| snapshot.len()))
            .field("position", &self.position)
            .finish()
    }
}

/// The names of a slot's live keys when its export started, packed in one buffer.
struct KeySnapshot {
    slot: Slot,
    bytes: Vec<u8>,
    /// `ends[i]` is where key `i` ends in `bytes` (it starts where key `i - 1` ends).
    ends: Vec<usize>,
}

impl KeySnapshot {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn key(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.bytes[start..self.ends[index]]
    }
}

/// One key of an export batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedEntry {
    /// The key.
    pub key: Bytes,
    /// The value (zero-copy from the store).
    pub value: Bytes,
    /// Remaining TTL in ms at export time (at least 1); `None` for no TTL.
    pub ttl_ms: Option<u64>,
}

/// One batch of a slot export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportBatch {
    /// The keys of this batch, in export order.
    pub entries: Vec<ExportedEntry>,
    /// The cursor for the next batch, or `None` when the slot is exhausted.
    pub next: Option<ExportCursor>,
}

/// What [`Store::import_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Keys written.
    pub imported: usize,
    /// Keys skipped because their TTL had run out.
    pub skipped_expired: usize,
}

fn check_slot(slot: Slot) -> Result<usize, CommandError> {
    let index = usize::from(slot);
    if index >= SLOT_COUNT {
        return Err(CommandError::InvalidSlot);
    }
    Ok(index)
}

impl Store {
    /// Keys in `slot` (CLUSTER COUNTKEYSINSLOT), counting expired keys not yet removed.
    pub fn count_keys_in_slot(&self, slot: Slot) -> Result<usize, CommandError> {
        Ok(self.slots[check_slot(slot)?].read().len())
    }

    /// Accounted memory of the keys in `slot`, in bytes.
    pub fn slot_memory_bytes(&self, slot: Slot) -> Result<usize, CommandError> {
        Ok(self.slots[check_slot(slot)?].read().memory_bytes())
    }

    /// Up to `max_keys` live keys of `slot` (CLUSTER GETKEYSINSLOT), in table order.
    pub fn list_keys_in_slot(
        &self,
        slot: Slot,
        max_keys: usize,
    ) -> Result<Vec<Bytes>, CommandError> {
        let index = check_slot(slot)?;
        let now_ms = self.now().ms();
        let table = self.slots[index].read();
        Ok(table
            .iter()
            .filter(|entry| !entry.is_expired(now_ms))
            .take(max_keys)
            .map(|entry| Bytes::copy_from_slice(entry.key()))
            .collect())
    }

    /// The next batch of `slot`'s live keys after `cursor` (see the module doc for the order,
    /// the cost and the guarantee under concurrent writes).
    pub fn export_slot(
        &self,
        slot: Slot,
        cursor: &ExportCursor,
        limits: ExportLimits,
    ) -> Result<ExportBatch, CommandError> {
        let index = check_slot(slot)?;
        let now_ms = self.now().ms();
        let (snapshot, mut position) = match &cursor.snapshot {
            Some(snapshot) if snapshot.slot == slot => (Arc::clone(snapshot), cursor.position),
            _ => (Arc::new(self.snapshot_keys(slot, now_ms)), 0),
        };
        let max_keys = limits.max_keys_per_batch.get();
        let mut entries = Vec::with_capacity(max_keys.min(snapshot.len() - position));
        let mut bytes = 0;
        let table = self.slots[index].read();
        while position < snapshot.len() && entries.len() < max_keys {
            let key = snapshot.key(position);
            let live = table
                .get(self.hash(key), key)
                .filter(|entry| !entry.is_expired(now_ms));
            if let Some(entry) = live {
                let size = key.len() + entry.value().len();
                if !entries.is_empty() && bytes + size > limits.max_bytes_per_batch.get() {
                    break;
                }
                bytes += size;
                entries.push(ExportedEntry {
                    key: Bytes::copy_from_slice(key),
                    value: Store::value_of(entry),
                    ttl_ms: entry.expire_at_ms().map(|deadline| deadline - now_ms),
                });
            }
            position += 1;
        }
        drop(table);
        let next = (position < snapshot.len()).then_some(ExportCursor {
            snapshot: Some(snapshot),
            position,
        });
        Ok(ExportBatch { entries, next })
    }

    /// The names of `slot`'s live keys, in table order.
    fn snapshot_keys(&self, slot: Slot, now_ms: u64) -> KeySnapshot {
        let table = self.slots[usize::from(slot)].read();
        let mut snapshot = KeySnapshot {
            slot,
            bytes: Vec::new(),
            ends: Vec::with_capacity(table.len()),
        };
        for entry in table.iter().filter(|entry| !entry.is_expired(now_ms)) {
            snapshot.bytes.extend_from_slice(entry.key());
            snapshot.ends.push(snapshot.bytes.len());
        }
        snapshot
    }

    /// Imports an export batch: each key is written (replacing any current value) with its
    /// remaining TTL counted from this store's clock; keys whose TTL ran out are skipped.
    ///
    /// On error (e.g. OOM) the keys before the failing one stay imported; importing is
    /// idempotent, so the caller may retry the whole batch.
    pub fn import_batch(&self, entries: &[ExportedEntry]) -> Result<ImportReport, CommandError> {
        let mut report = ImportReport::default();
        for entry in entries {
            if entry.ttl_ms == Some(0) {
                report.skipped_expired += 1;
                continue;
            }
            let now_ms = self.now().ms();
            let deadline = entry.ttl_ms.map(|ttl_ms| now_ms.saturating_add(ttl_ms));
            self.apply_set(&entry.key, &entry.value, deadline)?;
            report.imported += 1;
        }
        Ok(report)
    }

    /// Replication primitive: writes `key` = `value` with an absolute deadline (`None` = no
    /// TTL), unconditionally. A deadline at or before now removes the key instead.
    pub fn apply_set(
        &self,
        key: &[u8],
        value: &[u8],
        expire_at_ms: Option<u64>,
    ) -> Result<(), CommandError> {
        self.check_value_len(value.len())?;
        self.write_key(key, |_, now| {
            let change = match expire_at_ms {
                Some(deadline) if deadline <= now.ms() => Change::Remove,
                _ => Change::Put(self.new_entry(key, &[value], expire_at_ms, now)),
            };
            Ok(Step { change, reply: () })
        })
    }

    /// Replication primitive: removes `key`; returns whether it existed.
    pub fn apply_del(&self, key: &[u8]) -> Result<bool, CommandError> {
        self.del(&[key]).map(|removed| removed > 0)
    }

    /// Removes every key of `slot` (fast: the table is swapped out under the lock and freed
    /// after); returns how many keys there were. Not reported to the removal log.
    pub fn drop_slot(&self, slot: Slot) -> Result<usize, CommandError> {
        self.take_slot(slot).map(|taken| taken.len())
    }

    /// Removes every key of `slot` in O(1) and hands them over: the slot is empty (and its
    /// memory no longer counted) on return, and the keys' memory is freed where the
    /// [`TakenSlot`] is dropped, so a caller can free a large slot off its hot path. Not
    /// reported to the removal log.
    pub fn take_slot(&self, slot: Slot) -> Result<TakenSlot, CommandError> {
        let index = check_slot(slot)?;
        let mut table = self.slots[index].write();
        let memory_bytes = table.memory_bytes();
        let entries = table.take_all();
        self.account_dropped(entries.len(), memory_bytes);
        drop(table);
        tracing::debug!(slot, keys = entries.len(), memory_bytes, "dropped slot");
        Ok(TakenSlot { entries })
    }
}

/// The keys [`Store::take_slot`] removed from a slot; dropping it frees their memory.
pub struct TakenSlot {
    entries: hashbrown::HashTable<crate::entry::Entry>,
}

impl TakenSlot {
    /// How many keys the slot held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the slot held no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl std::fmt::Debug for TakenSlot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TakenSlot")
            .field("keys", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_invariants, store, START_MS};
    use crate::{key_slot, ExpireCondition, SetOptions};

    fn tagged(i: u32) -> Vec<u8> {
        format!("{{slot}}:{i}").into_bytes()
    }

    fn export_all(store: &Store, slot: Slot, limits: ExportLimits) -> Vec<ExportedEntry> {
        export_all_from(store, slot, ExportCursor::start(), limits)
    }

    fn export_all_from(
        store: &Store,
        slot: Slot,
        mut cursor: ExportCursor,
        limits: ExportLimits,
    ) -> Vec<ExportedEntry> {
        let mut all = Vec::new();
        loop {
            let batch = store.export_slot(slot, &cursor, limits).unwrap();
            assert!(batch.entries.len() <= limits.max_keys_per_batch.get());
            all.extend(batch.entries);
            match batch.next {
                Some(next) => cursor = next,
                None => return all,
            }
        }
    }

    #[test]
    fn count_list_and_drop_a_slot_touch_only_that_slot() {
        let (store, _) = store();
        for i in 0..300 {
            store
                .set(&tagged(i), b"value", SetOptions::default())
                .unwrap();
        }
        store
            .set(b"other", b"value", SetOptions::default())
            .unwrap();
        let slot = key_slot(b"{slot}");
        assert_eq!(store.count_keys_in_slot(slot), Ok(300));
        assert_eq!(store.list_keys_in_slot(slot, 10).unwrap().len(), 10);
        assert_eq!(store.list_keys_in_slot(slot, 1_000).unwrap().len(), 300);
        assert!(store.slot_memory_bytes(slot).unwrap() > 300 * 10);
        assert_eq!(store.drop_slot(slot), Ok(300));
        assert_eq!(store.count_keys_in_slot(slot), Ok(0));
        assert_eq!(store.slot_memory_bytes(slot), Ok(0));
        assert_eq!(store.dbsize(), 1);
        assert!(store.get(b"other").is_some());
        check_invariants(&store);
        assert_eq!(
            store.count_keys_in_slot(16_384),
            Err(CommandError::InvalidSlot)
        );
    }

    #[test]
    fn a_taken_slot_is_gone_from_the_store_before_its_keys_are_freed() {
        let (store, _) = store();
        let before = store.used_memory_bytes();
        for i in 0..100 {
            store
                .set(&tagged(i), &[b'v'; 1_000], SetOptions::default())
                .unwrap();
        }
        let slot = key_slot(b"{slot}");
        let taken = store.take_slot(slot).unwrap();
        assert_eq!((taken.len(), taken.is_empty()), (100, false));
        // Held, not freed yet: the store already neither counts nor serves them.
        assert_eq!(store.count_keys_in_slot(slot), Ok(0));
        assert_eq!(store.dbsize(), 0);
        assert_eq!(store.used_memory_bytes(), before);
        assert!(store.get(&tagged(7)).is_none());
        store
            .set(&tagged(7), b"new", SetOptions::default())
            .unwrap();
        std::thread::spawn(move || drop(taken)).join().unwrap();
        assert_eq!(store.get(&tagged(7)).as_deref(), Some(&b"new"[..]));
        check_invariants(&store);
        assert!(store.take_slot(slot).is_ok_and(|taken| taken.len() == 1));
        assert_eq!(
            store.take_slot(16_384).map(|taken| taken.len()),
            Err(CommandError::InvalidSlot)
        );
    }

    #[test]
    fn export_returns_every_key_once_in_bounded_batches() {
        let (store, _) = store();
        for i in 0..1_000 {
            store
                .set(&tagged(i), &[b'v'; 50], SetOptions::default())
                .unwrap();
        }
        let limits = ExportLimits {
            max_keys_per_batch: NonZeroUsize::new(64).unwrap(),
            max_bytes_per_batch: NonZeroUsize::new(2_000).unwrap(),
        };
        let exported = export_all(&store, key_slot(b"{slot}"), limits);
        let mut keys: Vec<_> = exported.iter().map(|entry| entry.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 1_000);
        assert_eq!(exported.len(), 1_000);
    }

    #[test]
    fn later_batches_walk_the_first_batch_snapshot_from_their_position() {
        let (store, _) = store();
        for i in 0..500 {
            store.set(&tagged(i), b"v", SetOptions::default()).unwrap();
        }
        let slot = key_slot(b"{slot}");
        let limits = ExportLimits {
            max_keys_per_batch: NonZeroUsize::new(100).unwrap(),
            max_bytes_per_batch: NonZeroUsize::new(1 << 20).unwrap(),
        };
        let first = store
            .export_slot(slot, &ExportCursor::start(), limits)
            .unwrap();
        let cursor = first.next.unwrap();
        assert_eq!(cursor.position, 100);
        for i in 500..600 {
            store
                .set(&tagged(i), b"new", SetOptions::default())
                .unwrap();
        }
        let removed: Vec<&[u8]> = first.entries[..10].iter().map(|e| &e.key[..]).collect();
        assert_eq!(store.del(&removed), Ok(10));
        let second = store.export_slot(slot, &cursor, limits).unwrap();
        let next = second.next.unwrap();
        assert!(Arc::ptr_eq(
            cursor.snapshot.as_ref().unwrap(),
            next.snapshot.as_ref().unwrap()
        ));
        assert_eq!(next.position, 200, "one batch visits one batch of names");
        let rest = export_all_from(&store, slot, next, limits);
        assert_eq!(first.entries.len() + second.entries.len() + rest.len(), 500);
        assert!(
            rest.iter().all(|entry| &entry.value[..] == b"v"),
            "keys written later are not in the export"
        );
        let other = store
            .export_slot(key_slot(b"other"), &cursor, limits)
            .unwrap();
        assert!(
            other.entries.is_empty() && other.next.is_none(),
            "another slot starts afresh"
        );
    }

    #[test]
    fn a_key_larger_than_the_byte_bound_still_moves() {
        let (store, _) = store();
        store
            .set(b"{slot}big", &[b'v'; 10_000], SetOptions::default())
            .unwrap();
        store
            .set(b"{slot}small", b"v", SetOptions::default())
            .unwrap();
        let limits = ExportLimits {
            max_keys_per_batch: NonZeroUsize::new(10).unwrap(),
            max_bytes_per_batch: NonZeroUsize::new(100).unwrap(),
        };
        assert_eq!(export_all(&store, key_slot(b"{slot}"), limits).len(), 2);
    }

    #[test]
    fn export_carries_remaining_ttl_and_import_restores_it() {
        let (source, source_clock) = store();
        source.set(b"{s}a", b"1", SetOptions::default()).unwrap();
        source.set(b"{s}b", b"2", SetOptions::default()).unwrap();
        source
            .pexpire(b"{s}b", 5_000, ExpireCondition::Always)
            .unwrap();
        source.set(b"{s}c", b"3", SetOptions::default()).unwrap();
        source
            .pexpire(b"{s}c", 10, ExpireCondition::Always)
            .unwrap();
        source_clock.advance_ms(10);
        let batch = source
            .export_slot(
                key_slot(b"{s}"),
                &ExportCursor::start(),
                ExportLimits::default(),
            )
            .unwrap();
        assert_eq!(batch.entries.len(), 2, "expired keys are not exported");
        assert!(batch.next.is_none());
        let (target, target_clock) = store();
        target_clock.set_ms(START_MS + 1_000_000);
        let mut entries = batch.entries.clone();
        entries.push(ExportedEntry {
            key: Bytes::from_static(b"{s}gone"),
            value: Bytes::from_static(b"x"),
            ttl_ms: Some(0),
        });
        let report = target.import_batch(&entries).unwrap();
        assert_eq!(
            report,
            ImportReport {
                imported: 2,
                skipped_expired: 1
            }
        );
        assert_eq!(target.get(b"{s}a").as_deref(), Some(&b"1"[..]));
        assert_eq!(target.pttl(b"{s}b"), 4_990);
        assert_eq!(target.pttl(b"{s}a"), -1);
        check_invariants(&target);
    }

    #[test]
    fn apply_set_uses_absolute_deadlines() {
        let (store, _) = store();
        store.apply_set(b"k", b"v", Some(START_MS + 500)).unwrap();
        assert_eq!(store.pttl(b"k"), 500);
        store.apply_set(b"k", b"v", Some(START_MS)).unwrap();
        assert_eq!(store.get(b"k"), None, "a past deadline removes the key");
        store.apply_set(b"k", b"w", None).unwrap();
        assert_eq!(store.apply_del(b"k"), Ok(true));
        assert_eq!(store.apply_del(b"k"), Ok(false));
        check_invariants(&store);
    }
}
