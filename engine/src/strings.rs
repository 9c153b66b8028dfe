//! String commands: GET, SET, GETDEL, GETEX, APPEND, STRLEN, the INCR family, the same-slot
//! multi-key commands MGET, MSET and MSETNX, and SETNX, GETSET, SETEX, PSETEX, SETRANGE,
//! GETRANGE and INCRBYFLOAT.

use bytes::Bytes;

use crate::entry::Entry;
use crate::error::CommandError;
use crate::float::{format_f64, parse_f64};
use crate::integer::parse_i64;
use crate::options::{ExpireTime, GetExExpiry, SetCondition, SetExpiry, SetOptions, SetOutcome};
use crate::slot::{key_slot, Slot};
use crate::store::{Change, Step, Store};

impl Store {
    /// GET: the value of `key` as a zero-copy `Bytes`, or `None` if absent or expired.
    ///
    /// The handle shares the entry (no copy of the value) but costs one small allocation;
    /// [`Store::get_with`] reads without any.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.read_key(key, |entry, _| Store::value_of(entry))
    }

    /// [`Store::get`] for a caller that already computed `slot` = [`key_slot`]`(key)` (the
    /// cluster's routing does): the slot is not computed again. A wrong slot is a caller bug
    /// (checked in debug builds); in release it reads the wrong table and finds nothing.
    pub fn get_in_slot(&self, slot: Slot, key: &[u8]) -> Option<Bytes> {
        self.read_key_in_slot(slot, key, |entry, _| Store::value_of(entry))
    }

    /// GET without a handle: runs `read` on the value of `key` under the slot's read lock and
    /// returns its result, or `None` if the key is absent or expired. Allocates nothing (the
    /// caller copies or serialises what it needs inside `read`); `read` should be short, as
    /// writers of the slot wait for it.
    pub fn get_with<R>(&self, key: &[u8], read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.read_key(key, |entry, _| read(entry.value()))
    }

    /// [`Store::get_with`] for a caller that already computed the key's slot (see
    /// [`Store::get_in_slot`]).
    pub fn get_with_in_slot<R>(
        &self,
        slot: Slot,
        key: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        self.read_key_in_slot(slot, key, |entry, _| read(entry.value()))
    }

    /// SET with options (NX/XX, EX/PX/EXAT/PXAT/KEEPTTL, GET).
    ///
    /// An absolute deadline already in the past writes nothing and removes the key, as Redis
    /// does. Errors: `InvalidExpireTime` for a non-positive or overflowing time, `KeyTooLarge`,
    /// `ValueTooLarge`, `OutOfMemory`.
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        options: SetOptions,
    ) -> Result<SetOutcome, CommandError> {
        self.set_in_slot(key_slot(key), key, value, options)
    }

    /// [`Store::set`] for a caller that already computed the key's slot (see
    /// [`Store::get_in_slot`]).
    pub fn set_in_slot(
        &self,
        slot: Slot,
        key: &[u8],
        value: &[u8],
        options: SetOptions,
    ) -> Result<SetOutcome, CommandError> {
        self.check_value_len(value.len())?;
        self.write_key_in_slot(slot, key, |existing, now| {
            let previous = existing
                .filter(|_| options.return_previous)
                .map(Store::value_of);
            let allowed = match options.condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => existing.is_none(),
                SetCondition::IfPresent => existing.is_some(),
            };
            if !allowed {
                return Ok(Step::keep(SetOutcome {
                    written: false,
                    previous,
                }));
            }
            let expire_at_ms = match options.expiry {
                SetExpiry::ClearTtl => None,
                SetExpiry::KeepTtl => existing.and_then(Entry::expire_at_ms),
                SetExpiry::Expire(time) => Some(time.strict_deadline_ms(now.ms(), "set")?),
            };
            let outcome = SetOutcome {
                written: true,
                previous,
            };
            let change = if expire_at_ms.is_some_and(|deadline| deadline <= now.ms()) {
                Change::Remove
            } else {
                Change::Put(self.new_entry(key, &[value], expire_at_ms, now))
            };
            Ok(Step {
                change,
                reply: outcome,
            })
        })
    }

    /// GETDEL: the value of `key`, removing the key.
    pub fn getdel(&self, key: &[u8]) -> Result<Option<Bytes>, CommandError> {
        self.write_key(key, |existing, _| {
            Ok(match existing {
                Some(entry) => Step {
                    change: Change::Remove,
                    reply: Some(Store::value_of(entry)),
                },
                None => Step::keep(None),
            })
        })
    }

    /// GETEX: the value of `key`, setting or removing its TTL as `expiry` says.
    ///
    /// A deadline in the past removes the key (the value is still returned).
    pub fn getex(&self, key: &[u8], expiry: GetExExpiry) -> Result<Option<Bytes>, CommandError> {
        if let GetExExpiry::Unchanged = expiry {
            return Ok(self.get(key));
        }
        let deadline = match expiry {
            GetExExpiry::Expire(time) => Some(time.strict_deadline_ms(self.now().ms(), "getex")?),
            _ => None,
        };
        let value = self.write_key(key, |existing, now| {
            let Some(entry) = existing else {
                return Ok(Step::keep(None));
            };
            let value = Some(Store::value_of(entry));
            let change = match deadline {
                Some(deadline) if deadline <= now.ms() => Change::Remove,
                _ if entry.expire_at_ms() == deadline => Change::Keep,
                _ => Change::SetExpire(deadline),
            };
            Ok(Step {
                change,
                reply: value,
            })
        })?;
        Ok(value)
    }

    /// APPEND: appends `suffix` to the value of `key` (creating it), keeping its TTL; returns
    /// the new length. Errors: `ValueTooLarge` if the result is longer than allowed.
    pub fn append(&self, key: &[u8], suffix: &[u8]) -> Result<usize, CommandError> {
        self.write_key(key, |existing, now| {
            let (current, expire_at_ms) = existing.map_or((&b""[..], None), |entry| {
                (entry.value(), entry.expire_at_ms())
            });
            let new_len = current.len() + suffix.len();
            self.check_value_len(new_len)?;
            let entry = self.new_entry(key, &[current, suffix], expire_at_ms, now);
            Ok(Step {
                change: Change::Put(entry),
                reply: new_len,
            })
        })
    }

    /// STRLEN: the length of the value of `key`, 0 if absent.
    pub fn strlen(&self, key: &[u8]) -> usize {
        self.read_key(key, |entry, _| entry.value().len())
            .unwrap_or(0)
    }

    /// INCR: adds 1 to the integer value of `key` (0 if absent), keeping its TTL.
    pub fn incr(&self, key: &[u8]) -> Result<i64, CommandError> {
        self.incrby(key, 1)
    }

    /// DECR: subtracts 1.
    pub fn decr(&self, key: &[u8]) -> Result<i64, CommandError> {
        self.incrby(key, -1)
    }

    /// DECRBY: subtracts `decrement`; `i64::MIN` is refused as Redis does.
    pub fn decrby(&self, key: &[u8], decrement: i64) -> Result<i64, CommandError> {
        let increment = decrement
            .checked_neg()
            .ok_or(CommandError::DecrementOverflow)?;
        self.incrby(key, increment)
    }

    /// INCRBY: adds `increment` to the integer value of `key` (0 if absent), keeping its TTL.
    /// Errors: `NotAnInteger` if the value is not a canonical `i64`, `IncrementOverflow`.
    pub fn incrby(&self, key: &[u8], increment: i64) -> Result<i64, CommandError> {
        self.write_key(key, |existing, now| {
            let current = match existing {
                Some(entry) => parse_i64(entry.value()).ok_or(CommandError::NotAnInteger)?,
                None => 0,
            };
            let next = current
                .checked_add(increment)
                .ok_or(CommandError::IncrementOverflow)?;
            let expire_at_ms = existing.and_then(Entry::expire_at_ms);
            let text = next.to_string();
            let entry = self.new_entry(key, &[text.as_bytes()], expire_at_ms, now);
            Ok(Step {
                change: Change::Put(entry),
                reply: next,
            })
        })
    }

    /// MGET: the values of `keys`, which must all hash to one slot (else CROSSSLOT).
    /// All values are read under one lock of the slot, so MGET sees one point in time.
    pub fn mget(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, CommandError> {
        let slot = self.common_slot(keys.iter().copied(), "mget")?;
        let now = self.now();
        let mut expired = Vec::new();
        let values = {
            let table = self.slots[usize::from(slot)].read();
            keys.iter()
                .map(|key| {
                    let entry = table.get(self.hash(key), key)?;
                    if entry.is_expired(now.ms()) {
                        expired.push(*key);
                        return None;
                    }
                    self.record_access(entry, &now);
                    Some(Store::value_of(entry))
                })
                .collect()
        };
        if !expired.is_empty() {
            let mut table = self.slots[usize::from(slot)].write();
            let removed: Vec<_> = expired
                .iter()
                .filter_map(|key| {
                    self.remove_if_expired(&mut table, slot, self.hash(key), key, &now)
                })
                .collect();
            drop(table);
            drop(removed);
        }
        Ok(values)
    }

    /// MSET: sets every pair (clearing TTLs) atomically; all keys must hash to one slot.
    pub fn mset(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), CommandError> {
        self.write_pairs(pairs, false, "mset").map(|_| ())
    }

    /// MSETNX: sets every pair only if none of the keys exists; returns whether it did.
    pub fn msetnx(&self, pairs: &[(&[u8], &[u8])]) -> Result<bool, CommandError> {
        self.write_pairs(pairs, true, "msetnx")
    }

    fn write_pairs(
        &self,
        pairs: &[(&[u8], &[u8])],
        only_if_none_exist: bool,
        command: &'static str,
    ) -> Result<bool, CommandError> {
        let slot = self.common_slot(pairs.iter().map(|(key, _)| *key), command)?;
        for (key, value) in pairs {
            self.check_key(key)?;
            self.check_value_len(value.len())?;
        }
        let pairs = last_write_wins(pairs);
        let hashes: Vec<u64> = pairs.iter().map(|(key, _)| self.hash(key)).collect();
        let now = self.now();
        loop {
            let mut table = self.slots[usize::from(slot)].write();
            let mut garbage = Vec::new();
            for ((key, _), hash) in pairs.iter().zip(&hashes) {
                garbage.extend(self.remove_if_expired(&mut table, slot, *hash, key, &now));
            }
            let existing: Vec<Option<usize>> = pairs
                .iter()
                .zip(&hashes)
                .map(|((key, _), hash)| table.get(*hash, key).map(Entry::memory_bytes))
                .collect();
            if only_if_none_exist && existing.iter().any(Option::is_some) {
                return Ok(false);
            }
            let entries: Vec<Entry> = pairs
                .iter()
                .map(|(key, value)| self.new_entry(key, &[value], None, &now))
                .collect();
            let old_bytes: usize = existing.iter().flatten().sum();
            let new_bytes: usize = entries.iter().map(Entry::memory_bytes).sum();
            if new_bytes > old_bytes && !self.try_reserve(new_bytes - old_bytes) {
                drop(table);
                self.make_room()?;
                continue;
            }
            if old_bytes > new_bytes {
                self.release(old_bytes - new_bytes);
            }
            for (entry, hash) in entries.into_iter().zip(&hashes) {
                garbage.extend(table.put(*hash, entry, |key| self.hash(key)));
            }
            drop(table);
            self.add_keys(pairs.len(), existing.iter().flatten().count());
            return Ok(true);
        }
    }

    /// Whether the live entry for `key` exists, without touching its LRU clock semantics.
    pub(crate) fn exists_one(&self, key: &[u8]) -> bool {
        self.read_key(key, |_, _| ()).is_some()
    }
}

/// The pairs with only the last occurrence of each key kept (MSET k 1 k 2 sets k to 2).
fn last_write_wins<'p>(pairs: &[(&'p [u8], &'p [u8])]) -> Vec<(&'p [u8], &'p [u8])> {
    let mut seen = hashbrown::HashSet::with_capacity(pairs.len());
    let mut kept: Vec<_> = pairs
        .iter()
        .rev()
        .filter(|(key, _)| seen.insert(*key))
        .copied()
        .collect();
    kept.reverse();
    kept
}

/// The commands built on SET, and the range and float commands.
impl Store {
    /// SETNX: sets `key` only if it does not exist; returns whether it did.
    pub fn setnx(&self, key: &[u8], value: &[u8]) -> Result<bool, CommandError> {
        let options = SetOptions {
            condition: SetCondition::IfAbsent,
            ..SetOptions::default()
        };
        Ok(self.set(key, value, options)?.written)
    }

    /// GETSET: sets `key` to `value` (clearing its TTL); returns the previous value.
    pub fn getset(&self, key: &[u8], value: &[u8]) -> Result<Option<Bytes>, CommandError> {
        let options = SetOptions {
            return_previous: true,
            ..SetOptions::default()
        };
        Ok(self.set(key, value, options)?.previous)
    }

    /// SETEX: sets `key` to `value` expiring in `seconds`. Errors: "invalid expire time in
    /// 'setex' command" for a non-positive or overflowing time, and those of SET.
    pub fn setex(&self, key: &[u8], seconds: i64, value: &[u8]) -> Result<(), CommandError> {
        self.set_expiring(key, value, ExpireTime::Seconds(seconds), "setex")
    }

    /// PSETEX: [`Store::setex`] in milliseconds ("... in 'psetex' command").
    pub fn psetex(&self, key: &[u8], milliseconds: i64, value: &[u8]) -> Result<(), CommandError> {
        self.set_expiring(key, value, ExpireTime::Milliseconds(milliseconds), "psetex")
    }

    fn set_expiring(
        &self,
        key: &[u8],
        value: &[u8],
        time: ExpireTime,
        command: &'static str,
    ) -> Result<(), CommandError> {
        time.strict_deadline_ms(self.now().ms(), command)?;
        let options = SetOptions {
            expiry: SetExpiry::Expire(time),
            ..SetOptions::default()
        };
        self.set(key, value, options).map(|_| ())
    }

    /// SETRANGE: writes `value` into the value of `key` from byte `offset`, zero-padding a
    /// shorter (or missing) value and keeping the TTL; returns the new length. An empty
    /// `value` changes nothing (and creates no key). Errors: `OffsetOutOfRange` for a negative
    /// offset, `ValueTooLarge` when the result would be longer than allowed.
    pub fn setrange(&self, key: &[u8], offset: i64, value: &[u8]) -> Result<usize, CommandError> {
        let offset = usize::try_from(offset).map_err(|_| CommandError::OffsetOutOfRange)?;
        self.write_key(key, |existing, now| {
            let (current, expire_at_ms) = existing.map_or((&b""[..], None), |entry| {
                (entry.value(), entry.expire_at_ms())
            });
            if value.is_empty() {
                return Ok(Step::keep(current.len()));
            }
            let end = offset
                .checked_add(value.len())
                .ok_or(CommandError::ValueTooLarge)?;
            self.check_value_len(end)?;
            let padding = vec![0; offset.saturating_sub(current.len())];
            let head = &current[..offset.min(current.len())];
            let tail = current.get(end..).unwrap_or_default();
            let entry = self.new_entry(key, &[head, &padding, value, tail], expire_at_ms, now);
            Ok(Step {
                change: Change::Put(entry),
                reply: end.max(current.len()),
            })
        })
    }

    /// GETRANGE: bytes `start..=end` of the value of `key` as a zero-copy slice; negative
    /// offsets count from the end and the range is clamped to the value, as in Redis. Empty
    /// for a missing key or an empty range.
    pub fn getrange(&self, key: &[u8], start: i64, end: i64) -> Bytes {
        self.read_key(key, |entry, _| {
            let range = byte_range(entry.value().len(), start, end);
            range.map_or_else(Bytes::new, |range| Store::value_of(entry).slice(range))
        })
        .unwrap_or_default()
    }

    /// INCRBYFLOAT: adds `increment` to the decimal value of `key` (0 if absent), keeping its
    /// TTL; returns the new value as stored, in Redis's formatting. Errors: `NotAFloat` if the
    /// value is not a decimal number or `increment` is NaN, `NanOrInfinity` for a result
    /// that is not finite.
    pub fn incrbyfloat(&self, key: &[u8], increment: f64) -> Result<Bytes, CommandError> {
        if increment.is_nan() {
            return Err(CommandError::NotAFloat);
        }
        self.write_key(key, |existing, now| {
            let current = match existing {
                Some(entry) => parse_f64(entry.value()).ok_or(CommandError::NotAFloat)?,
                None => 0.0,
            };
            let next = current + increment;
            if !next.is_finite() {
                return Err(CommandError::NanOrInfinity);
            }
            let text = format_f64(next);
            let expire_at_ms = existing.and_then(Entry::expire_at_ms);
            let entry = self.new_entry(key, &[text.as_bytes()], expire_at_ms, now);
            Ok(Step {
                change: Change::Put(entry),
                reply: Bytes::from(text),
            })
        })
    }
}

/// GETRANGE's clamping of `start..=end` (negative from the end) to a value of `len` bytes, or
/// `None` when the range is empty.
fn byte_range(len: usize, start: i64, end: i64) -> Option<std::ops::Range<usize>> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len = i64::try_from(len).ok()?;
    let from_end = |offset: i64| if offset < 0 { len + offset } else { offset };
    let start = from_end(start).max(0);
    let end = from_end(end).max(0).min(len - 1);
    if len == 0 || start > end {
        return None;
    }
    Some(start as usize..end as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ExpireTime;
    use crate::testing::{check_invariants, store, START_MS};
    use crate::ExpireCondition;

    fn set_plain(store: &Store, key: &[u8], value: &[u8]) {
        assert!(
            store
                .set(key, value, SetOptions::default())
                .unwrap()
                .written
        );
    }

    fn options(condition: SetCondition, expiry: SetExpiry, get: bool) -> SetOptions {
        SetOptions {
            condition,
            expiry,
            return_previous: get,
        }
    }

    #[test]
    fn set_then_get_returns_the_value_and_missing_keys_are_none() {
        let (store, _) = store();
        assert_eq!(store.get(b"k"), None);
        set_plain(&store, b"k", b"v1");
        assert_eq!(store.get(b"k").as_deref(), Some(&b"v1"[..]));
        set_plain(&store, b"k", b"v2");
        assert_eq!(store.get(b"k").as_deref(), Some(&b"v2"[..]));
        assert_eq!(store.dbsize(), 1);
        check_invariants(&store);
    }

    #[test]
    fn get_hands_out_a_value_that_survives_overwrite_and_delete() {
        let (store, _) = store();
        set_plain(&store, b"k", b"old");
        let held = store.get(b"k").unwrap();
        set_plain(&store, b"k", b"new");
        store.del(&[b"k"]).unwrap();
        assert_eq!(&held[..], b"old");
    }

    #[test]
    fn set_nx_and_xx_follow_existence() {
        let (store, _) = store();
        let xx = options(SetCondition::IfPresent, SetExpiry::ClearTtl, false);
        let nx = options(SetCondition::IfAbsent, SetExpiry::ClearTtl, false);
        assert!(!store.set(b"k", b"1", xx).unwrap().written);
        assert_eq!(store.get(b"k"), None);
        assert!(store.set(b"k", b"1", nx).unwrap().written);
        assert!(!store.set(b"k", b"2", nx).unwrap().written);
        assert!(store.set(b"k", b"3", xx).unwrap().written);
        assert_eq!(store.get(b"k").as_deref(), Some(&b"3"[..]));
    }

    #[test]
    fn set_get_returns_previous_value_or_none() {
        let (store, _) = store();
        let get = options(SetCondition::Always, SetExpiry::ClearTtl, true);
        let outcome = store.set(b"k", b"1", get).unwrap();
        assert_eq!(
            outcome,
            SetOutcome {
                written: true,
                previous: None
            }
        );
        let outcome = store.set(b"k", b"2", get).unwrap();
        assert_eq!(outcome.previous.as_deref(), Some(&b"1"[..]));
        let nx_get = options(SetCondition::IfAbsent, SetExpiry::ClearTtl, true);
        let outcome = store.set(b"k", b"3", nx_get).unwrap();
        assert!(!outcome.written);
        assert_eq!(outcome.previous.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn set_expiry_options_and_keepttl() {
        let (store, clock) = store();
        let ex = options(
            SetCondition::Always,
            SetExpiry::Expire(ExpireTime::Seconds(10)),
            false,
        );
        store.set(b"k", b"v", ex).unwrap();
        assert_eq!(store.pttl(b"k"), 10_000);
        let keep = options(SetCondition::Always, SetExpiry::KeepTtl, false);
        store.set(b"k", b"w", keep).unwrap();
        assert_eq!(store.pttl(b"k"), 10_000);
        set_plain(&store, b"k", b"x");
        assert_eq!(store.ttl(b"k"), -1, "plain SET clears the TTL");
        let keep_on_missing = store.set(b"new", b"v", keep).unwrap();
        assert!(keep_on_missing.written);
        assert_eq!(store.ttl(b"new"), -1);
        let pxat = SetExpiry::Expire(ExpireTime::UnixMilliseconds((START_MS + 1_500) as i64));
        store
            .set(b"k", b"v", options(SetCondition::Always, pxat, false))
            .unwrap();
        assert_eq!(store.pttl(b"k"), 1_500);
        let exat = SetExpiry::Expire(ExpireTime::UnixSeconds((START_MS / 1_000 + 3) as i64));
        store
            .set(b"k", b"v", options(SetCondition::Always, exat, false))
            .unwrap();
        assert_eq!(store.ttl(b"k"), 3);
        clock.advance_ms(3_000);
        assert_eq!(store.get(b"k"), None);
        check_invariants(&store);
    }

    #[test]
    fn set_refuses_non_positive_expire_times_without_writing() {
        let (store, _) = store();
        for time in [
            ExpireTime::Seconds(0),
            ExpireTime::Seconds(-5),
            ExpireTime::Milliseconds(0),
            ExpireTime::UnixSeconds(0),
            ExpireTime::UnixMilliseconds(-1),
            ExpireTime::Seconds(i64::MAX),
        ] {
            let result = store.set(
                b"k",
                b"v",
                options(SetCondition::Always, SetExpiry::Expire(time), false),
            );
            assert_eq!(
                result,
                Err(CommandError::InvalidExpireTime { command: "set" })
            );
        }
        assert_eq!(store.dbsize(), 0);
    }

    #[test]
    fn set_with_a_past_absolute_time_deletes_the_key() {
        let (store, _) = store();
        set_plain(&store, b"k", b"v");
        let past = SetExpiry::Expire(ExpireTime::UnixMilliseconds(1_000));
        let outcome = store
            .set(b"k", b"w", options(SetCondition::Always, past, false))
            .unwrap();
        assert!(outcome.written);
        assert_eq!(store.get(b"k"), None);
        check_invariants(&store);
    }

    #[test]
    fn oversize_keys_and_values_are_errors() {
        let config = crate::StoreConfig {
            max_key_bytes: 4,
            max_value_bytes: 8,
            ..Default::default()
        };
        let (store, _) = crate::testing::store_with(config);
        assert_eq!(
            store.set(b"12345", b"v", SetOptions::default()),
            Err(CommandError::KeyTooLarge)
        );
        assert_eq!(
            store.set(b"k", b"123456789", SetOptions::default()),
            Err(CommandError::ValueTooLarge)
        );
        set_plain(&store, b"k", b"12345678");
        assert_eq!(store.append(b"k", b"9"), Err(CommandError::ValueTooLarge));
        assert_eq!(store.get(b"k").as_deref(), Some(&b"12345678"[..]));
    }

    #[test]
    fn getdel_returns_and_removes() {
        let (store, _) = store();
        assert_eq!(store.getdel(b"k"), Ok(None));
        set_plain(&store, b"k", b"v");
        assert_eq!(store.getdel(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(store.get(b"k"), None);
        check_invariants(&store);
    }

    #[test]
    fn getex_sets_and_persists_ttls() {
        let (store, _) = store();
        assert_eq!(store.getex(b"k", GetExExpiry::Persist), Ok(None));
        set_plain(&store, b"k", b"v");
        let value = store
            .getex(b"k", GetExExpiry::Expire(ExpireTime::Seconds(5)))
            .unwrap();
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
        assert_eq!(store.ttl(b"k"), 5);
        store.getex(b"k", GetExExpiry::Unchanged).unwrap();
        assert_eq!(store.ttl(b"k"), 5);
        store.getex(b"k", GetExExpiry::Persist).unwrap();
        assert_eq!(store.ttl(b"k"), -1);
        let bad = store.getex(b"k", GetExExpiry::Expire(ExpireTime::Milliseconds(0)));
        assert_eq!(
            bad,
            Err(CommandError::InvalidExpireTime { command: "getex" })
        );
        let past = GetExExpiry::Expire(ExpireTime::UnixSeconds(1));
        assert_eq!(store.getex(b"k", past).unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(store.get(b"k"), None);
        check_invariants(&store);
    }

    #[test]
    fn append_creates_extends_and_keeps_ttl() {
        let (store, _) = store();
        assert_eq!(store.append(b"k", b"Hello"), Ok(5));
        store.expire(b"k", 100, ExpireCondition::Always).unwrap();
        assert_eq!(store.append(b"k", b" World"), Ok(11));
        assert_eq!(store.get(b"k").as_deref(), Some(&b"Hello World"[..]));
        assert_eq!(store.ttl(b"k"), 100);
        assert_eq!(store.strlen(b"k"), 11);
        assert_eq!(store.strlen(b"missing"), 0);
        check_invariants(&store);
    }

    #[test]
    fn incr_family_follows_redis() {
        let (store, _) = store();
        assert_eq!(store.incr(b"n"), Ok(1));
        assert_eq!(store.incrby(b"n", 41), Ok(42));
        assert_eq!(store.decr(b"n"), Ok(41));
        assert_eq!(store.decrby(b"n", 50), Ok(-9));
        assert_eq!(store.get(b"n").as_deref(), Some(&b"-9"[..]));
        for bad in [&b"abc"[..], b" 1", b"1 ", b"+1", b"01", b"1.0", b""] {
            set_plain(&store, b"s", bad);
            assert_eq!(store.incr(b"s"), Err(CommandError::NotAnInteger));
        }
        set_plain(&store, b"max", i64::MAX.to_string().as_bytes());
        assert_eq!(store.incr(b"max"), Err(CommandError::IncrementOverflow));
        set_plain(&store, b"min", i64::MIN.to_string().as_bytes());
        assert_eq!(store.decr(b"min"), Err(CommandError::IncrementOverflow));
        assert_eq!(
            store.decrby(b"n", i64::MIN),
            Err(CommandError::DecrementOverflow)
        );
        assert_eq!(
            store.get(b"max").as_deref(),
            Some(i64::MAX.to_string().as_bytes())
        );
    }

    #[test]
    fn incr_keeps_the_ttl() {
        let (store, _) = store();
        store
            .set(
                b"n",
                b"5",
                options(
                    SetCondition::Always,
                    SetExpiry::Expire(ExpireTime::Seconds(9)),
                    false,
                ),
            )
            .unwrap();
        assert_eq!(store.incr(b"n"), Ok(6));
        assert_eq!(store.ttl(b"n"), 9);
    }

    #[test]
    fn multi_key_commands_need_one_slot() {
        let (store, _) = store();
        let pairs: [(&[u8], &[u8]); 2] = [(b"{u}a", b"1"), (b"{u}b", b"2")];
        store.mset(&pairs).unwrap();
        let values = store.mget(&[b"{u}a", b"{u}b", b"{u}c"]).unwrap();
        assert_eq!(
            values,
            vec![
                Some(Bytes::from_static(b"1")),
                Some(Bytes::from_static(b"2")),
                None
            ]
        );
        assert_eq!(store.mget(&[b"foo", b"bar"]), Err(CommandError::CrossSlot));
        assert_eq!(
            store.mset(&[(b"foo", b"1"), (b"bar", b"2")]),
            Err(CommandError::CrossSlot)
        );
        assert_eq!(store.get(b"foo"), None, "a refused MSET writes nothing");
        assert_eq!(
            store.mget(&[]),
            Err(CommandError::WrongArity { command: "mget" })
        );
        assert_eq!(store.msetnx(&[(b"{u}c", b"3"), (b"{u}a", b"x")]), Ok(false));
        assert_eq!(store.get(b"{u}c"), None);
        assert_eq!(store.msetnx(&[(b"{u}c", b"3"), (b"{u}d", b"4")]), Ok(true));
        store.mset(&[(b"{u}e", b"1"), (b"{u}e", b"2")]).unwrap();
        assert_eq!(store.get(b"{u}e").as_deref(), Some(&b"2"[..]));
        assert_eq!(store.dbsize(), 5);
        check_invariants(&store);
    }

    #[test]
    fn mget_and_del_treat_expired_keys_as_missing() {
        let (store, clock) = store();
        store.mset(&[(b"{u}a", b"1"), (b"{u}b", b"2")]).unwrap();
        store.pexpire(b"{u}a", 10, ExpireCondition::Always).unwrap();
        clock.advance_ms(10);
        let values = store.mget(&[b"{u}a", b"{u}b"]).unwrap();
        assert_eq!(values, vec![None, Some(Bytes::from_static(b"2"))]);
        assert_eq!(store.dbsize(), 1, "MGET removed the expired key");
        store.set(b"{u}c", b"3", SetOptions::default()).unwrap();
        store.pexpire(b"{u}c", 10, ExpireCondition::Always).unwrap();
        clock.advance_ms(10);
        assert_eq!(store.del(&[b"{u}b", b"{u}c"]), Ok(1));
        assert_eq!(store.dbsize(), 0);
        check_invariants(&store);
    }

    #[test]
    fn mset_clears_ttls() {
        let (store, _) = store();
        store
            .set(
                b"{u}a",
                b"1",
                options(
                    SetCondition::Always,
                    SetExpiry::Expire(ExpireTime::Seconds(9)),
                    false,
                ),
            )
            .unwrap();
        store.mset(&[(b"{u}a", b"2")]).unwrap();
        assert_eq!(store.ttl(b"{u}a"), -1);
        check_invariants(&store);
    }

    #[test]
    fn setnx_sets_only_a_missing_key_and_getset_returns_the_old_value() {
        let (store, _) = store();
        assert_eq!(store.setnx(b"k", b"1"), Ok(true));
        assert_eq!(store.setnx(b"k", b"2"), Ok(false));
        assert_eq!(store.get(b"k").as_deref(), Some(&b"1"[..]));
        store.expire(b"k", 100, ExpireCondition::Always).unwrap();
        assert_eq!(
            store.getset(b"k", b"3").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(store.ttl(b"k"), -1, "GETSET clears the TTL");
        assert_eq!(store.getset(b"new", b"v"), Ok(None));
        check_invariants(&store);
    }

    #[test]
    fn setex_and_psetex_set_a_ttl_and_refuse_non_positive_ones_by_name() {
        let (store, _) = store();
        store.setex(b"a", 10, b"v").unwrap();
        assert_eq!(store.pttl(b"a"), 10_000);
        store.psetex(b"b", 1_500, b"v").unwrap();
        assert_eq!(store.pttl(b"b"), 1_500);
        for seconds in [0, -1, i64::MAX] {
            assert_eq!(
                store.setex(b"c", seconds, b"v"),
                Err(CommandError::InvalidExpireTime { command: "setex" })
            );
        }
        assert_eq!(
            store.psetex(b"c", 0, b"v"),
            Err(CommandError::InvalidExpireTime { command: "psetex" })
        );
        assert_eq!(store.exists(&[b"c"]), Ok(0));
        check_invariants(&store);
    }

    #[test]
    fn setrange_overwrites_pads_with_zeros_and_keeps_the_ttl() {
        let (store, _) = store();
        set_plain(&store, b"k", b"Hello World");
        store.expire(b"k", 100, ExpireCondition::Always).unwrap();
        assert_eq!(store.setrange(b"k", 6, b"Redis"), Ok(11));
        assert_eq!(store.get(b"k").as_deref(), Some(&b"Hello Redis"[..]));
        assert_eq!(store.ttl(b"k"), 100);
        assert_eq!(store.setrange(b"k", 9, b"xyz"), Ok(12));
        assert_eq!(store.get(b"k").as_deref(), Some(&b"Hello Redxyz"[..]));
        assert_eq!(store.setrange(b"pad", 3, b"ab"), Ok(5));
        assert_eq!(store.get(b"pad").as_deref(), Some(&b"\0\0\0ab"[..]));
        assert_eq!(
            store.setrange(b"k", 1, b""),
            Ok(12),
            "empty value: the length"
        );
        assert_eq!(store.setrange(b"missing", 5, b""), Ok(0));
        assert_eq!(store.exists(&[b"missing"]), Ok(0), "no key created");
        assert_eq!(
            store.setrange(b"k", -1, b"x"),
            Err(CommandError::OffsetOutOfRange)
        );
        assert_eq!(
            store.setrange(b"k", i64::MAX, b"x"),
            Err(CommandError::ValueTooLarge)
        );
        check_invariants(&store);
    }

    #[test]
    fn getrange_counts_negative_offsets_from_the_end_and_clamps() {
        let (store, _) = store();
        set_plain(&store, b"k", b"This is a string");
        let cases: &[(i64, i64, &[u8])] = &[
            (0, 3, b"This"),
            (-3, -1, b"ing"),
            (0, -1, b"This is a string"),
            (10, 100, b"string"),
            (-100, 3, b"This"),
            (5, 3, b""),
            (-1, -5, b""),
            (16, 20, b""),
        ];
        for (start, end, expected) in cases {
            assert_eq!(
                &store.getrange(b"k", *start, *end)[..],
                *expected,
                "{start} {end}"
            );
        }
        assert!(store.getrange(b"missing", 0, -1).is_empty());
    }

    #[test]
    fn incrbyfloat_formats_like_redis_and_keeps_the_ttl() {
        let (store, _) = store();
        set_plain(&store, b"k", b"10.50");
        store.expire(b"k", 100, ExpireCondition::Always).unwrap();
        assert_eq!(&store.incrbyfloat(b"k", 0.1).unwrap()[..], b"10.6");
        assert_eq!(&store.incrbyfloat(b"k", -5.0).unwrap()[..], b"5.6");
        assert_eq!(store.get(b"k").as_deref(), Some(&b"5.6"[..]));
        assert_eq!(store.ttl(b"k"), 100);
        set_plain(&store, b"e", b"5.0e3");
        assert_eq!(&store.incrbyfloat(b"e", 2.0e2).unwrap()[..], b"5200");
        assert_eq!(&store.incrbyfloat(b"new", 3.0).unwrap()[..], b"3");
    }

    #[test]
    fn incrbyfloat_refuses_non_numbers_and_non_finite_results_without_writing() {
        let (store, _) = store();
        set_plain(&store, b"text", b"abc");
        set_plain(&store, b"big", b"1e308");
        let refused: [(&[u8], f64, CommandError); 4] = [
            (b"text", 1.0, CommandError::NotAFloat),
            (b"n", f64::NAN, CommandError::NotAFloat),
            (b"big", 1e308, CommandError::NanOrInfinity),
            (b"inf", f64::INFINITY, CommandError::NanOrInfinity),
        ];
        for (key, increment, error) in refused {
            assert_eq!(store.incrbyfloat(key, increment), Err(error));
        }
        assert_eq!(store.get(b"big").as_deref(), Some(&b"1e308"[..]));
        assert_eq!(store.dbsize(), 2, "nothing was created");
    }
}
