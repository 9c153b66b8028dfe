//! Key-space commands: DEL, EXISTS, the EXPIRE family, PERSIST, TTL, PTTL, DBSIZE, FLUSHALL.

use crate::error::CommandError;
use crate::options::{ExpireCondition, ExpireTime};
use crate::slot::SLOT_COUNT;
use crate::store::{Change, Step, Store};

/// TTL / PTTL reply for a missing key.
pub const TTL_MISSING_KEY: i64 = -2;
/// TTL / PTTL reply for a key without a TTL.
pub const TTL_NO_EXPIRY: i64 = -1;

impl Store {
    /// DEL: removes `keys` (all in one slot, else CROSSSLOT); returns how many existed.
    pub fn del(&self, keys: &[&[u8]]) -> Result<usize, CommandError> {
        self.common_slot(keys.iter().copied(), "del")?;
        let mut removed = 0;
        for key in keys {
            let existed = self.write_key(key, |existing, _| {
                Ok(match existing {
                    Some(_) => Step {
                        change: Change::Remove,
                        reply: true,
                    },
                    None => Step::keep(false),
                })
            })?;
            removed += usize::from(existed);
        }
        Ok(removed)
    }

    /// EXISTS: how many of `keys` (all in one slot) exist; repeated keys count repeatedly.
    pub fn exists(&self, keys: &[&[u8]]) -> Result<usize, CommandError> {
        self.common_slot(keys.iter().copied(), "exists")?;
        Ok(keys.iter().filter(|key| self.exists_one(key)).count())
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

    /// EXPIRE key seconds [condition].
    pub fn expire(
        &self,
        key: &[u8],
        seconds: i64,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        self.expire_with(key, ExpireTime::Seconds(seconds), condition)
    }

    /// PEXPIRE key milliseconds [condition].
    pub fn pexpire(
        &self,
        key: &[u8],
        milliseconds: i64,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        self.expire_with(key, ExpireTime::Milliseconds(milliseconds), condition)
    }

    /// EXPIREAT key unix-seconds [condition].
    pub fn expireat(
        &self,
        key: &[u8],
        unix_seconds: i64,
        condition: ExpireCondition,
    ) -> Result<bool, CommandError> {
        self.expire_with(key, ExpireTime::UnixSeconds(unix_seconds), condition)
    }

    /// PEXPIREAT key unix-milliseconds [condition].
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
