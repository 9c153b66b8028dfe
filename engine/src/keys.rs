//! Key-space commands: DEL, EXISTS, the EXPIRE family, PERSIST, TTL, PTTL, DBSIZE, FLUSHALL,
//! TOUCH, UNLINK and COPY.

use crate::entry::Entry;
use crate::error::CommandError;
use crate::options::{ExpireCondition, ExpireTime};
use crate::slot::SLOT_COUNT;
use crate::store::{Change, Step, Store};

/// TTL / PTTL reply for a missing key.
pub const TTL_MISSING_KEY: i64 = -2;
/// TTL / PTTL reply for a key without a TTL.
pub const TTL_NO_EXPIRY: i64 = -1;

impl Store {
    /// DEL: removes `keys` (all in one slot, else CROSSSLOT) under one lock of the slot;
    /// returns how many existed (expired keys do not count).
    pub fn del(&self, keys: &[&[u8]]) -> Result<usize, CommandError> {
        let slot = self.common_slot(keys.iter().copied(), "del")?;
        let now = self.now();
        let mut garbage = Vec::with_capacity(keys.len());
        let mut removed_count = 0;
        let mut table = self.slots[usize::from(slot)].write();
        for key in keys {
            let hash = self.hash(key);
            garbage.extend(self.remove_if_expired(&mut table, slot, hash, key, &now));
            if let Some(removed) = table.remove_key(hash, key) {
                self.account_removed(&removed);
                garbage.push(removed);
                removed_count += 1;
            }
        }
        drop(table);
        drop(garbage);
        Ok(removed_count)
    }

    /// EXISTS: how many of `keys` (all in one slot) exist; repeated keys count repeatedly.
    pub fn exists(&self, keys: &[&[u8]]) -> Result<usize, CommandError> {
        self.count_existing(keys, "exists")
    }

    /// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT, by the variant of `time`, under `condition`.
    ///
    /// Returns whether the TTL was set. A deadline at or before now deletes the key (and
    /// returns true), as in Redis; only a deadline overflowing `i64` milliseconds is an error.
    pub fn expire_with(
        &self,
        key: &[u8],
        time: ExpireTime,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        let command = match time {
            ExpireTime::Seconds(_) => "expire",
            ExpireTime::Milliseconds(_) => "pexpire",
            ExpireTime::UnixSeconds(_) => "expireat",
            ExpireTime::UnixMilliseconds(_) => "pexpireat",
        };
        let deadline = time.lenient_deadline_ms(self.now().ms(), command)?;
        self.write_key(key, |existing, now| {
            let Some(entry) = existing else {
                return Ok(Step::keep(false));
            };
            if !condition.allows(entry.expire_at_ms(), deadline) {
                return Ok(Step::keep(false));
            }
            let change = if deadline <= now.ms() as i64 {
                Change::Remove
            } else {
                Change::SetExpire(Some(deadline as u64))
            };
            Ok(Step {
                change,
                reply: true,
            })
        })
    }

    /// EXPIRE key seconds, under `condition`.
    pub fn expire(
        &self,
        key: &[u8],
        seconds: i64,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        self.expire_with(key, ExpireTime::Seconds(seconds), condition)
    }

    /// PEXPIRE key milliseconds, under `condition`.
    pub fn pexpire(
        &self,
        key: &[u8],
        milliseconds: i64,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        self.expire_with(key, ExpireTime::Milliseconds(milliseconds), condition)
    }

    /// EXPIREAT key unix-seconds, under `condition`.
    pub fn expireat(
        &self,
        key: &[u8],
        unix_seconds: i64,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        self.expire_with(key, ExpireTime::UnixSeconds(unix_seconds), condition)
    }

    /// PEXPIREAT key unix-milliseconds, under `condition`.
    pub fn pexpireat(
        &self,
        key: &[u8],
        unix_milliseconds: i64,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        self.expire_with(
            key,
            ExpireTime::UnixMilliseconds(unix_milliseconds),
            condition,
        )
    }

    /// PERSIST: removes the TTL of `key`; returns whether there was one.
    pub fn persist(&self, key: &[u8]) -> Result<bool, CommandError> {
        self.write_key(key, |existing, _| {
            Ok(match existing.and_then(|entry| entry.expire_at_ms()) {
                Some(_) => Step {
                    change: Change::SetExpire(None),
                    reply: true,
                },
                None => Step::keep(false),
            })
        })
    }

    /// PTTL: remaining milliseconds, [`TTL_NO_EXPIRY`] or [`TTL_MISSING_KEY`].
    pub fn pttl(&self, key: &[u8]) -> i64 {
        self.read_key(key, |entry, now| match entry.expire_at_ms() {
            Some(deadline) => deadline.saturating_sub(now.ms()).min(i64::MAX as u64) as i64,
            None => TTL_NO_EXPIRY,
        })
        .unwrap_or(TTL_MISSING_KEY)
    }

    /// TTL: remaining seconds (rounded to nearest, as Redis), or -1 / -2 like [`Store::pttl`].
    pub fn ttl(&self, key: &[u8]) -> i64 {
        match self.pttl(key) {
            remaining if remaining < 0 => remaining,
            remaining => (remaining + 500) / 1_000,
        }
    }

    /// The absolute deadline of `key` in unix ms, if it exists and has a TTL (for replication).
    pub fn expire_at_ms(&self, key: &[u8]) -> Option<u64> {
        self.read_key(key, |entry, _| entry.expire_at_ms())
            .flatten()
    }

    /// FLUSHALL: removes every key; returns how many there were.
    pub fn flushall(&self) -> usize {
        (0..SLOT_COUNT)
            .map(|slot| self.drop_slot(slot as u16).unwrap_or(0))
            .sum()
    }
}

/// TOUCH, UNLINK and COPY.
impl Store {
    /// TOUCH: refreshes the access time of `keys` (all in one slot) for LRU eviction; returns
    /// how many exist (repeated keys count repeatedly).
    pub fn touch(&self, keys: &[&[u8]]) -> Result<usize, CommandError> {
        self.count_existing(keys, "touch")
    }

    /// UNLINK: [`Store::del`] under its own name (values are freed when their last reader
    /// drops them, never under a lock, so there is nothing to defer).
    pub fn unlink(&self, keys: &[&[u8]]) -> Result<usize, CommandError> {
        self.common_slot(keys.iter().copied(), "unlink")?;
        self.del(keys)
    }

    /// COPY: copies the value and TTL of `source` to `destination` (one slot, else CROSSSLOT)
    /// under one lock of the slot; returns whether it copied: not when `source` is missing or
    /// `destination` exists and `replace` is false. Errors: `SameObject` when the keys are
    /// equal, `KeyTooLarge`, `OutOfMemory`.
    pub fn copy(
        &self,
        source: &[u8],
        destination: &[u8],
        replace: bool,
    ) -> Result<bool, CommandError> {
        let slot = self.common_slot([source, destination], "copy")?;
        if source == destination {
            return Err(CommandError::SameObject);
        }
        self.check_key(destination)?;
        let (source_hash, destination_hash) = (self.hash(source), self.hash(destination));
        let now = self.now();
        loop {
            let mut table = self.slots[usize::from(slot)].write();
            let mut garbage = Vec::new();
            garbage.extend(self.remove_if_expired(&mut table, slot, source_hash, source, &now));
            garbage.extend(self.remove_if_expired(
                &mut table,
                slot,
                destination_hash,
                destination,
                &now,
            ));
            let existing = table
                .get(destination_hash, destination)
                .map(Entry::memory_bytes);
            let copy = match table.get(source_hash, source) {
                Some(entry) if replace || existing.is_none() => {
                    self.new_entry(destination, &[entry.value()], entry.expire_at_ms(), &now)
                }
                _ => {
                    drop(table);
                    drop(garbage);
                    return Ok(false);
                }
            };
            let old_bytes = existing.unwrap_or(0);
            let new_bytes = copy.memory_bytes();
            if new_bytes > old_bytes && !self.try_reserve(new_bytes - old_bytes) {
                drop(table);
                drop(garbage);
                self.make_room()?;
                continue;
            }
            if old_bytes > new_bytes {
                self.release(old_bytes - new_bytes);
            }
            garbage.extend(table.put(destination_hash, copy, |key| self.hash(key)));
            drop(table);
            self.add_keys(1, usize::from(existing.is_some()));
            drop(garbage);
            return Ok(true);
        }
    }

    /// How many of `keys` (all in one slot) exist, refreshing their access time; `command`
    /// names the command for the arity error.
    fn count_existing(&self, keys: &[&[u8]], command: &'static str) -> Result<usize, CommandError> {
        self.common_slot(keys.iter().copied(), command)?;
        Ok(keys.iter().filter(|key| self.exists_one(key)).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_invariants, store, START_MS};
    use crate::SetOptions;

    fn put(store: &Store, key: &[u8]) {
        store.set(key, b"v", SetOptions::default()).unwrap();
    }

    #[test]
    fn del_and_exists_count_keys_in_one_slot() {
        let (store, _) = store();
        put(&store, b"{t}a");
        put(&store, b"{t}b");
        assert_eq!(store.exists(&[b"{t}a", b"{t}a", b"{t}z"]), Ok(2));
        assert_eq!(store.del(&[b"{t}a", b"{t}b", b"{t}z"]), Ok(2));
        assert_eq!(store.exists(&[b"{t}a"]), Ok(0));
        assert_eq!(store.del(&[b"foo", b"bar"]), Err(CommandError::CrossSlot));
        assert_eq!(
            store.exists(&[]),
            Err(CommandError::WrongArity { command: "exists" })
        );
        check_invariants(&store);
    }

    #[test]
    fn ttl_and_pttl_report_missing_persistent_and_remaining() {
        let (store, clock) = store();
        assert_eq!(store.ttl(b"k"), TTL_MISSING_KEY);
        put(&store, b"k");
        assert_eq!(store.pttl(b"k"), TTL_NO_EXPIRY);
        assert_eq!(
            store.pexpire(b"k", 2_400, ExpireCondition::Always),
            Ok(true)
        );
        assert_eq!(store.pttl(b"k"), 2_400);
        assert_eq!(store.ttl(b"k"), 2);
        clock.advance_ms(900);
        assert_eq!(store.ttl(b"k"), 2, "1500 ms rounds to 2 s");
        assert_eq!(store.expire_at_ms(b"k"), Some(START_MS + 2_400));
        clock.advance_ms(1_500);
        assert_eq!(store.ttl(b"k"), TTL_MISSING_KEY);
        check_invariants(&store);
    }

    #[test]
    fn expire_nx_xx_gt_lt_on_keys_with_and_without_ttl() {
        let (store, _) = store();
        put(&store, b"k");
        assert_eq!(
            store.expire(b"k", 100, ExpireCondition::IfHasTtl),
            Ok(false)
        );
        assert_eq!(store.expire(b"k", 100, ExpireCondition::IfLater), Ok(false));
        assert_eq!(
            store.expire(b"k", 100, ExpireCondition::IfHasTtlAndEarlier),
            Ok(false)
        );
        assert_eq!(store.ttl(b"k"), -1);
        assert_eq!(
            store.expire(b"k", 100, ExpireCondition::IfEarlier),
            Ok(true)
        );
        assert_eq!(store.ttl(b"k"), 100);
        assert_eq!(store.expire(b"k", 50, ExpireCondition::IfNoTtl), Ok(false));
        assert_eq!(store.expire(b"k", 50, ExpireCondition::IfLater), Ok(false));
        assert_eq!(store.expire(b"k", 200, ExpireCondition::IfLater), Ok(true));
        assert_eq!(
            store.expire(b"k", 300, ExpireCondition::IfEarlier),
            Ok(false)
        );
        assert_eq!(
            store.expire(b"k", 150, ExpireCondition::IfHasTtlAndEarlier),
            Ok(true)
        );
        assert_eq!(
            store.expire(b"k", 160, ExpireCondition::IfHasTtlAndLater),
            Ok(true)
        );
        assert_eq!(store.expire(b"k", 10, ExpireCondition::IfHasTtl), Ok(true));
        assert_eq!(store.ttl(b"k"), 10);
        assert_eq!(
            store.expire(b"missing", 10, ExpireCondition::Always),
            Ok(false)
        );
        check_invariants(&store);
    }

    #[test]
    fn expire_with_zero_negative_or_past_time_deletes_the_key() {
        let (store, _) = store();
        for (key, time) in [
            (&b"a"[..], ExpireTime::Seconds(0)),
            (b"b", ExpireTime::Seconds(-10)),
            (b"c", ExpireTime::Milliseconds(-1)),
            (b"d", ExpireTime::UnixSeconds(1)),
            (b"e", ExpireTime::UnixMilliseconds(-5)),
        ] {
            put(&store, key);
            assert_eq!(
                store.expire_with(key, time, ExpireCondition::Always),
                Ok(true)
            );
            assert_eq!(store.exists(&[key]), Ok(0), "{time:?}");
        }
        put(&store, b"f");
        assert_eq!(store.expire(b"f", -1, ExpireCondition::IfHasTtl), Ok(false));
        assert_eq!(
            store.exists(&[b"f"]),
            Ok(1),
            "a failed condition deletes nothing"
        );
        check_invariants(&store);
    }

    #[test]
    fn expire_overflow_is_an_error() {
        let (store, _) = store();
        put(&store, b"k");
        assert_eq!(
            store.expire(b"k", i64::MAX, ExpireCondition::Always),
            Err(CommandError::InvalidExpireTime { command: "expire" })
        );
        assert_eq!(
            store.pexpire(b"k", i64::MAX, ExpireCondition::Always),
            Err(CommandError::InvalidExpireTime { command: "pexpire" })
        );
        assert_eq!(
            store.expireat(b"k", i64::MAX, ExpireCondition::Always),
            Err(CommandError::InvalidExpireTime {
                command: "expireat"
            })
        );
        assert_eq!(store.ttl(b"k"), -1);
    }

    #[test]
    fn expireat_and_pexpireat_are_absolute() {
        let (store, _) = store();
        put(&store, b"k");
        let at = (START_MS / 1_000 + 60) as i64;
        assert_eq!(store.expireat(b"k", at, ExpireCondition::Always), Ok(true));
        assert_eq!(store.ttl(b"k"), 60);
        let at_ms = (START_MS + 1_234) as i64;
        assert_eq!(
            store.pexpireat(b"k", at_ms, ExpireCondition::Always),
            Ok(true)
        );
        assert_eq!(store.pttl(b"k"), 1_234);
    }

    #[test]
    fn persist_removes_a_ttl_once() {
        let (store, _) = store();
        put(&store, b"k");
        assert_eq!(store.persist(b"k"), Ok(false));
        store.expire(b"k", 5, ExpireCondition::Always).unwrap();
        assert_eq!(store.persist(b"k"), Ok(true));
        assert_eq!(store.persist(b"k"), Ok(false));
        assert_eq!(store.ttl(b"k"), -1);
        assert_eq!(store.persist(b"missing"), Ok(false));
        check_invariants(&store);
    }

    #[test]
    fn flushall_empties_everything() {
        let (store, _) = store();
        for i in 0..500u32 {
            put(&store, &i.to_be_bytes());
        }
        assert_eq!(store.flushall(), 500);
        assert_eq!(store.dbsize(), 0);
        assert_eq!(store.used_memory_bytes(), 0);
        check_invariants(&store);
    }

    #[test]
    fn touch_counts_existing_keys_and_unlink_removes_them() {
        let (store, _) = store();
        put(&store, b"{t}a");
        put(&store, b"{t}b");
        assert_eq!(store.touch(&[b"{t}a", b"{t}a", b"{t}z"]), Ok(2));
        assert_eq!(
            store.touch(&[]),
            Err(CommandError::WrongArity { command: "touch" })
        );
        assert_eq!(store.unlink(&[b"{t}a", b"{t}b", b"{t}z"]), Ok(2));
        assert_eq!(store.dbsize(), 0);
        assert_eq!(
            store.unlink(&[]),
            Err(CommandError::WrongArity { command: "unlink" })
        );
        assert_eq!(
            store.unlink(&[b"foo", b"bar"]),
            Err(CommandError::CrossSlot)
        );
        check_invariants(&store);
    }

    #[test]
    fn copy_keeps_the_ttl_and_replaces_only_when_asked() {
        let (store, _) = store();
        store.set(b"{c}src", b"one", SetOptions::default()).unwrap();
        store
            .expire(b"{c}src", 100, ExpireCondition::Always)
            .unwrap();
        assert_eq!(store.copy(b"{c}src", b"{c}dst", false), Ok(true));
        assert_eq!(store.get(b"{c}dst").as_deref(), Some(&b"one"[..]));
        assert_eq!(store.ttl(b"{c}dst"), 100);
        store.set(b"{c}src", b"two", SetOptions::default()).unwrap();
        assert_eq!(store.copy(b"{c}src", b"{c}dst", false), Ok(false));
        assert_eq!(store.get(b"{c}dst").as_deref(), Some(&b"one"[..]));
        assert_eq!(store.copy(b"{c}src", b"{c}dst", true), Ok(true));
        assert_eq!(store.get(b"{c}dst").as_deref(), Some(&b"two"[..]));
        assert_eq!(store.ttl(b"{c}dst"), -1, "the source's (absent) TTL");
        assert_eq!(store.copy(b"{c}missing", b"{c}dst", true), Ok(false));
        assert_eq!(store.get(b"{c}dst").as_deref(), Some(&b"two"[..]));
        assert_eq!(store.dbsize(), 2);
        check_invariants(&store);
    }

    #[test]
    fn copy_refuses_the_same_key_and_keys_in_two_slots() {
        let (store, _) = store();
        put(&store, b"k");
        assert_eq!(store.copy(b"k", b"k", true), Err(CommandError::SameObject));
        assert_eq!(
            store.copy(b"foo", b"bar", false),
            Err(CommandError::CrossSlot)
        );
        assert_eq!(store.dbsize(), 1);
    }

    #[test]
    fn copy_is_refused_when_the_copy_does_not_fit_maxmemory() {
        let (unlimited, _) = store();
        put(&unlimited, b"{c}a");
        let config = crate::StoreConfig {
            max_memory_bytes: unlimited.used_memory_bytes() as u64 + 8,
            ..crate::StoreConfig::default()
        };
        let (store, _) = crate::testing::store_with(config);
        put(&store, b"{c}a");
        assert_eq!(
            store.copy(b"{c}a", b"{c}b", false),
            Err(CommandError::OutOfMemory)
        );
        assert_eq!(store.dbsize(), 1);
        check_invariants(&store);
    }
}
