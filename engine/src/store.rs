//! The [`Store`]: 16384 slot tables, each behind its own `RwLock`, plus the shared counters.
//!
//! Every command finds its key's slot with [`key_slot`], hashes the key once and takes only
//! that slot's lock: readers share it, writers hold it for one change. The total memory and key
//! counters are atomics updated by the change's delta. A write that needs memory reserves it
//! before changing anything; when the reservation fails, the write releases its lock, evicts
//! (or returns OOM) and retries, so no lock is ever held while another slot's is taken.

use std::cell::Cell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::DefaultHashBuilder;
use parking_lot::RwLock;

use crate::access::AccessMode;
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::entry::{Entry, MAX_PART_BYTES};
use crate::error::CommandError;
use crate::removal::{Removal, RemovalCause, RemovalLog};
use crate::rng::SamplingRng;
use crate::slot::{key_slot, Slot, SLOT_COUNT};
use crate::table::{Edit, SlotTable};

/// One slot's lock and table header, alone in a cache line: a lookup touches one line before
/// the table's own memory, and two slots never share a line (no false sharing between writers
/// of neighbouring slots).
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct SlotCell(RwLock<SlotTable>);

const _: () = assert!(size_of::<SlotCell>() == 64);

impl std::ops::Deref for SlotCell {
    type Target = RwLock<SlotTable>;

    fn deref(&self) -> &RwLock<SlotTable> {
        &self.0
    }
}

/// The per-slot in-memory key-value store. Cheap to share behind an `Arc`; every method takes
/// `&self` and is safe to call from many threads.
pub struct Store {
    pub(crate) slots: Box<[SlotCell]>,
    hasher: DefaultHashBuilder,
    clock: Arc<dyn Clock>,
    pub(crate) config: StoreConfig,
    used_memory_bytes: AtomicUsize,
    /// The live memory limit (`0`: none); starts at the config's, see
    /// [`Store::set_max_memory_bytes`].
    max_memory_bytes: AtomicU64,
    key_count: AtomicUsize,
    removals: RemovalLog,
    pub(crate) rng: SamplingRng,
    pub(crate) expire_cursor: AtomicUsize,
    pub(crate) access_mode: AccessMode,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Store")
            .field("keys", &self.dbsize())
            .field("used_memory_bytes", &self.used_memory_bytes())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The current time, read from the clock at most once per command.
pub(crate) struct Now<'a> {
    clock: &'a dyn Clock,
    cached_ms: Cell<Option<u64>>,
}

impl Now<'_> {
    #[inline]
    pub(crate) fn ms(&self) -> u64 {
        if let Some(now_ms) = self.cached_ms.get() {
            return now_ms;
        }
        let now_ms = self.clock.now_ms();
        self.cached_ms.set(Some(now_ms));
        now_ms
    }
}

/// What a planned write does to its key.
pub(crate) enum Change {
    Keep,
    Put(Entry),
    Remove,
    /// Set (or with `None` clear) the TTL of the existing entry, in place when it has room.
    SetExpire(Option<u64>),
}

/// What `write_key` does after the table edit.
enum Planned<R> {
    /// The edit is applied: reply with `reply`; `put` if it wrote an entry, `added` if that
    /// entry is a new key.
    Written { reply: R, put: bool, added: bool },
    /// Apply the TTL change, then reply.
    SetExpire(Option<u64>, R),
    /// The plan failed; nothing but an expired entry was removed.
    Failed(CommandError),
    /// The write needs memory that is not there: evict (or fail with OOM) and retry.
    NeedsRoom,
}

/// A planned write and the reply the command gives if it is applied.
pub(crate) struct Step<R> {
    pub(crate) change: Change,
    pub(crate) reply: R,
}

impl<R> Step<R> {
    pub(crate) fn keep(reply: R) -> Self {
        Self {
            change: Change::Keep,
            reply,
        }
    }
}

impl Store {
    /// An empty store reading time from `clock`.
    pub fn new(config: StoreConfig, clock: Arc<dyn Clock>) -> Self {
        let slots = (0..SLOT_COUNT).map(|_| SlotCell::default()).collect();
        Self {
            slots,
            hasher: DefaultHashBuilder::default(),
            clock,
            removals: RemovalLog::new(config.removal_log_capacity),
            rng: SamplingRng::new(config.rng_seed),
            access_mode: AccessMode::new(
                config.eviction_policy,
                config.lfu_log_factor,
                config.lfu_decay_time_minutes,
            ),
            max_memory_bytes: AtomicU64::new(config.max_memory_bytes),
            config,
            used_memory_bytes: AtomicUsize::new(0),
            key_count: AtomicUsize::new(0),
            expire_cursor: AtomicUsize::new(0),
        }
    }

    /// The configuration the store was built with. Its `max_memory_bytes` is the limit at
    /// creation; [`Store::max_memory_bytes`] is the live one.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The memory limit in force, in bytes (`0`: none).
    pub fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes.load(Ordering::Relaxed)
    }

    /// Changes the memory limit in place (Redis's `CONFIG SET maxmemory`): `0` lifts it. Data
    /// already above a lowered limit stays; later writes that need memory evict by the policy
    /// (or fail with OOM under `noeviction`) until the data fits, as in Redis.
    pub fn set_max_memory_bytes(&self, bytes: u64) {
        self.max_memory_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Number of keys, including expired keys not yet removed (Redis DBSIZE).
    pub fn dbsize(&self) -> usize {
        self.key_count.load(Ordering::Relaxed)
    }

    /// Bytes used by all entries as the engine accounts them: key, value, entry header and an
    /// estimate of allocator and table overhead. Equals the sum of [`Store::slot_memory_bytes`]
    /// when no write is in flight.
    pub fn used_memory_bytes(&self) -> usize {
        self.used_memory_bytes.load(Ordering::Relaxed)
    }

    /// Takes up to `max_events` of the oldest events of the removal log.
    pub fn drain_removals(&self, max_events: usize) -> Vec<Removal> {
        self.removals.drain(max_events)
    }

    /// Removal events waiting in the log (cheap: one atomic load), so an owner can drain them
    /// as soon as a write produced some.
    pub fn removals_pending(&self) -> usize {
        self.removals.pending()
    }

    /// Removal events dropped because the log was full, since the store was created.
    pub fn removals_dropped(&self) -> u64 {
        self.removals.dropped()
    }

    #[inline]
    pub(crate) fn now(&self) -> Now<'_> {
        Now {
            clock: &*self.clock,
            cached_ms: Cell::new(None),
        }
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(crate) fn check_key(&self, key: &[u8]) -> Result<(), CommandError> {
        if key.len() > self.config.max_key_bytes.min(MAX_PART_BYTES) {
            return Err(CommandError::KeyTooLarge);
        }
        Ok(())
    }

    pub(crate) fn check_value_len(&self, len: usize) -> Result<(), CommandError> {
        if len > self.config.max_value_bytes.min(MAX_PART_BYTES) {
            return Err(CommandError::ValueTooLarge);
        }
        Ok(())
    }

    /// Runs `read` on the live entry for `key`, refreshing its LRU clock; expires it lazily if
    /// its TTL has passed. `None` if the key is absent or expired.
    pub(crate) fn read_key<R>(
        &self,
        key: &[u8],
        read: impl FnOnce(&Entry, &Now<'_>) -> R,
    ) -> Option<R> {
        self.read_key_in_slot(key_slot(key), key, read)
    }

    /// [`Store::read_key`] for a caller that already knows the key's slot.
    #[inline]
    pub(crate) fn read_key_in_slot<R>(
        &self,
        slot: Slot,
        key: &[u8],
        read: impl FnOnce(&Entry, &Now<'_>) -> R,
    ) -> Option<R> {
        debug_assert_eq!(slot, key_slot(key), "caller passed the wrong slot");
        let hash = self.hash(key);
        let now = self.now();
        let cell = &self.slots[usize::from(slot)];
        {
            let table = cell.read();
            let entry = table.get(hash, key)?;
            if entry
                .expire_at_ms()
                .is_none_or(|deadline| deadline > now.ms())
            {
                self.record_access(entry, &now);
                return Some(read(entry, &now));
            }
        }
        self.expire_on_read(slot, hash, key, &now);
        None
    }

    /// The slow end of a read that found its key expired: removes it under the write lock.
    #[cold]
    fn expire_on_read(&self, slot: Slot, hash: u64, key: &[u8], now: &Now<'_>) {
        let mut table = self.slots[usize::from(slot)].write();
        let expired = self.remove_if_expired(&mut table, slot, hash, key, now);
        drop(table);
        drop(expired);
    }

    /// Removes `key` from the locked `table` if its TTL has passed, accounting and logging it.
    pub(crate) fn remove_if_expired(
        &self,
        table: &mut SlotTable,
        slot: Slot,
        hash: u64,
        key: &[u8],
        now: &Now<'_>,
    ) -> Option<Entry> {
        let deadline = table.get(hash, key)?.expire_at_ms()?;
        if deadline > now.ms() {
            return None;
        }
        let removed = table.remove_key(hash, key)?;
        self.account_removed(&removed);
        self.removals.record(slot, key, RemovalCause::Expired);
        Some(removed)
    }

    /// Logs a removal the engine decided on (expiry or eviction).
    pub(crate) fn record_removal(&self, slot: Slot, key: &[u8], cause: RemovalCause) {
        self.removals.record(slot, key, cause);
    }

    /// Updates the shared counters for an entry already taken out of its table.
    pub(crate) fn account_removed(&self, entry: &Entry) {
        self.used_memory_bytes
            .fetch_sub(entry.memory_bytes(), Ordering::Relaxed);
        self.key_count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Updates the shared counters after a whole slot was emptied.
    pub(crate) fn account_dropped(&self, keys: usize, memory_bytes: usize) {
        self.used_memory_bytes
            .fetch_sub(memory_bytes, Ordering::Relaxed);
        self.key_count.fetch_sub(keys, Ordering::Relaxed);
    }

    /// Reserves `growth` bytes of the memory budget; fails if that would pass `maxmemory`.
    pub(crate) fn try_reserve(&self, growth: usize) -> bool {
        let limit = self.max_memory_bytes();
        if limit == 0 {
            self.used_memory_bytes.fetch_add(growth, Ordering::Relaxed);
            return true;
        }
        self.used_memory_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let wanted = used.checked_add(growth)?;
                (wanted as u64 <= limit).then_some(wanted)
            })
            .is_ok()
    }

    /// Adds `growth` bytes without checking the limit (TTL bookkeeping, which Redis does not
    /// refuse under OOM either).
    pub(crate) fn add_memory_unchecked(&self, growth: usize) {
        self.used_memory_bytes.fetch_add(growth, Ordering::Relaxed);
    }

    /// Returns `shrink` bytes to the memory budget.
    pub(crate) fn release(&self, shrink: usize) {
        self.used_memory_bytes.fetch_sub(shrink, Ordering::Relaxed);
    }

    pub(crate) fn add_keys(&self, added: usize, removed: usize) {
        if added > removed {
            self.key_count.fetch_add(added - removed, Ordering::Relaxed);
        } else if removed > added {
            self.key_count.fetch_sub(removed - added, Ordering::Relaxed);
        }
    }

    /// The core of every single-key write: lock the key's slot, find the key with one probe,
    /// expire it lazily, let `plan` decide the change from the live entry, reserve the memory
    /// it needs (evicting and retrying without the lock if needed) and apply it in place.
    /// `plan` may run more than once.
    pub(crate) fn write_key<R>(
        &self,
        key: &[u8],
        plan: impl FnMut(Option<&Entry>, &Now<'_>) -> Result<Step<R>, CommandError>,
    ) -> Result<R, CommandError> {
        self.write_key_in_slot(key_slot(key), key, plan)
    }

    /// [`Store::write_key`] for a caller that already knows the key's slot.
    pub(crate) fn write_key_in_slot<R>(
        &self,
        slot: Slot,
        key: &[u8],
        mut plan: impl FnMut(Option<&Entry>, &Now<'_>) -> Result<Step<R>, CommandError>,
    ) -> Result<R, CommandError> {
        debug_assert_eq!(slot, key_slot(key), "caller passed the wrong slot");
        self.check_key(key)?;
        let hash = self.hash(key);
        let now = self.now();
        loop {
            let mut table = self.slots[usize::from(slot)].write();
            let mut expired = false;
            let (old, outcome) = table.write_with(
                hash,
                key,
                |key| self.hash(key),
                |found| {
                    expired = found.is_some_and(|entry| Self::is_expired_now(entry, &now));
                    let existing = found.filter(|_| !expired);
                    self.decide(existing, expired, plan(existing, &now), &now)
                },
            );
            if let Planned::SetExpire(deadline, _) = &outcome {
                self.set_expire_locked(&mut table, hash, key, *deadline);
            }
            drop(table);
            if let Some(old) = &old {
                let put = matches!(outcome, Planned::Written { put: true, .. });
                if expired {
                    self.account_removed(old);
                    self.record_removal(slot, key, RemovalCause::Expired);
                } else if !put {
                    self.account_removed(old);
                }
            }
            drop(old);
            match outcome {
                Planned::Written { reply, added, .. } => {
                    self.add_keys(usize::from(added), 0);
                    return Ok(reply);
                }
                Planned::SetExpire(_, reply) => return Ok(reply),
                Planned::Failed(error) => return Err(error),
                Planned::NeedsRoom => self.make_room()?,
            }
        }
    }

    fn is_expired_now(entry: &Entry, now: &Now<'_>) -> bool {
        entry
            .expire_at_ms()
            .is_some_and(|deadline| deadline <= now.ms())
    }

    /// Turns a planned step into the table edit, reserving or releasing its memory. An
    /// expired entry is removed whatever the plan, unless the plan replaces it.
    fn decide<R>(
        &self,
        existing: Option<&Entry>,
        expired: bool,
        step: Result<Step<R>, CommandError>,
        now: &Now<'_>,
    ) -> (Edit, Planned<R>) {
        let drop_expired = if expired { Edit::Remove } else { Edit::Keep };
        let step = match step {
            Ok(step) => step,
            Err(error) => return (drop_expired, Planned::Failed(error)),
        };
        let Step { change, reply } = step;
        let written = |reply, put, added| Planned::Written { reply, put, added };
        match change {
            Change::Keep => (drop_expired, written(reply, false, false)),
            Change::Remove => (Edit::Remove, written(reply, false, false)),
            Change::SetExpire(deadline) => (drop_expired, Planned::SetExpire(deadline, reply)),
            Change::Put(entry) => {
                let old_bytes = existing.map_or(0, Entry::memory_bytes);
                let new_bytes = entry.memory_bytes();
                if new_bytes > old_bytes && !self.try_reserve(new_bytes - old_bytes) {
                    return (drop_expired, Planned::NeedsRoom);
                }
                if old_bytes > new_bytes {
                    self.release(old_bytes - new_bytes);
                }
                if let Some(old) = existing {
                    entry.touch(self.access_for_replacement(old.access(), now));
                }
                (Edit::Put(entry), written(reply, true, existing.is_none()))
            }
        }
    }

    /// Applies a TTL change to `key` in the locked `table`, accounting the memory delta.
    fn set_expire_locked(
        &self,
        table: &mut SlotTable,
        hash: u64,
        key: &[u8],
        deadline: Option<u64>,
    ) {
        let before = table.memory_bytes();
        let rebuilt = table.set_expire(hash, key, deadline, |key| self.hash(key));
        let after = table.memory_bytes();
        if after > before {
            self.add_memory_unchecked(after - before);
        } else {
            self.release(before - after);
        }
        drop(rebuilt);
    }

    /// Frees memory for a write that could not reserve it: evicts one key, or fails with OOM
    /// under `noeviction` or when there is nothing left to evict.
    pub(crate) fn make_room(&self) -> Result<(), CommandError> {
        if self.evict_one() {
            Ok(())
        } else {
            Err(CommandError::OutOfMemory)
        }
    }

    /// The slot all `keys` hash to, or CROSSSLOT; `command` names the command for arity errors.
    pub(crate) fn common_slot<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        command: &'static str,
    ) -> Result<Slot, CommandError> {
        let mut keys = keys.into_iter();
        let Some(first) = keys.next() else {
            return Err(CommandError::WrongArity { command });
        };
        let slot = key_slot(first);
        if keys.any(|key| key_slot(key) != slot) {
            return Err(CommandError::CrossSlot);
        }
        Ok(slot)
    }

    /// A new entry stamped with the access clock of a new key.
    pub(crate) fn new_entry(
        &self,
        key: &[u8],
        value_parts: &[&[u8]],
        expire_at_ms: Option<u64>,
        now: &Now<'_>,
    ) -> Entry {
        Entry::new(key, value_parts, expire_at_ms, self.access_for_new(now))
    }

    /// A value read out of an entry (zero-copy).
    pub(crate) fn value_of(entry: &Entry) -> Bytes {
        entry.value_bytes()
    }
}
