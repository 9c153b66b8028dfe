//! Typed options of SET, GETEX and the EXPIRE family, and how expire times become deadlines.
//!
//! Conflicting Redis options (NX with XX, EX with KEEPTTL, GT with LT, ...) cannot be expressed.

use crate::error::CommandError;

/// An expire time as the client gave it (EX, PX, EXAT, PXAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireTime {
    /// Seconds from now (EX, EXPIRE).
    Seconds(i64),
    /// Milliseconds from now (PX, PEXPIRE).
    Milliseconds(i64),
    /// Absolute unix time in seconds (EXAT, EXPIREAT).
    UnixSeconds(i64),
    /// Absolute unix time in milliseconds (PXAT, PEXPIREAT).
    UnixMilliseconds(i64),
}

impl ExpireTime {
    /// The absolute deadline in unix ms, or `None` if it overflows an `i64`. May be in the past
    /// or negative.
    fn deadline_ms(self, now_ms: u64) -> Option<i64> {
        let now_ms = i64::try_from(now_ms).ok()?;
        match self {
            Self::Seconds(seconds) => seconds.checked_mul(1_000)?.checked_add(now_ms),
            Self::Milliseconds(millis) => millis.checked_add(now_ms),
            Self::UnixSeconds(seconds) => seconds.checked_mul(1_000),
            Self::UnixMilliseconds(millis) => Some(millis),
        }
    }

    fn amount(self) -> i64 {
        match self {
            Self::Seconds(value)
            | Self::Milliseconds(value)
            | Self::UnixSeconds(value)
            | Self::UnixMilliseconds(value) => value,
        }
    }

    /// The deadline for SET and GETEX: the amount must be positive and the deadline must not
    /// overflow, else "invalid expire time in '`command`' command".
    pub(crate) fn strict_deadline_ms(
        self,
        now_ms: u64,
        command: &'static str,
    ) -> Result<u64, CommandError> {
        let invalid = CommandError::InvalidExpireTime { command };
        if self.amount() <= 0 {
            return Err(invalid);
        }
        let deadline = self.deadline_ms(now_ms).ok_or(invalid.clone())?;
        u64::try_from(deadline).map_err(|_| invalid)
    }

    /// The deadline for the EXPIRE family: only overflow is an error; a deadline at or before
    /// now (including negative amounts) means "delete the key now".
    pub(crate) fn lenient_deadline_ms(
        self,
        now_ms: u64,
        command: &'static str,
    ) -> Result<i64, CommandError> {
        self.deadline_ms(now_ms)
            .ok_or(CommandError::InvalidExpireTime { command })
    }
}

/// When SET writes (NX / XX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    /// Always write.
    #[default]
    Always,
    /// Only if the key does not exist (NX).
    IfAbsent,
    /// Only if the key exists (XX).
    IfPresent,
}

/// What SET does to the key's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetExpiry {
    /// Remove any TTL (SET without options).
    #[default]
    ClearTtl,
    /// Keep the existing TTL (KEEPTTL).
    KeepTtl,
    /// Set this TTL (EX, PX, EXAT, PXAT).
    Expire(ExpireTime),
}

/// Options of SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// NX / XX.
    pub condition: SetCondition,
    /// EX / PX / EXAT / PXAT / KEEPTTL.
    pub expiry: SetExpiry,
    /// GET: also return the previous value.
    pub return_previous: bool,
}

/// The result of SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// Whether the value was written (false when NX/XX did not hold).
    pub written: bool,
    /// The previous value, only filled in when `return_previous` was asked for.
    pub previous: Option<bytes::Bytes>,
}

/// What GETEX does to the key's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GetExExpiry {
    /// Leave the TTL alone (GETEX without options).
    #[default]
    Unchanged,
    /// Remove the TTL (PERSIST).
    Persist,
    /// Set this TTL (EX, PX, EXAT, PXAT).
    Expire(ExpireTime),
}

/// The condition of EXPIRE-family commands (NX, XX, GT, LT and the allowed combinations).
/// A key without a TTL counts as having an infinite one for GT and LT, as in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpireCondition {
    /// No condition.
    #[default]
    Always,
    /// Only if the key has no TTL (NX).
    IfNoTtl,
    /// Only if the key has a TTL (XX).
    IfHasTtl,
    /// Only if the new deadline is later than the current one (GT).
    IfLater,
    /// Only if the new deadline is earlier than the current one (LT).
    IfEarlier,
    /// XX and GT.
    IfHasTtlAndLater,
    /// XX and LT.
    IfHasTtlAndEarlier,
}

impl ExpireCondition {
    /// Whether a key whose current deadline is `current_ms` (None = no TTL) may get `new_ms`.
    pub(crate) fn allows(self, current_ms: Option<u64>, new_ms: i64) -> bool {
        let later = current_ms.is_some_and(|current| new_ms > current as i64);
        let earlier = current_ms.is_none_or(|current| new_ms < current as i64);
        match self {
            Self::Always => true,
            Self::IfNoTtl => current_ms.is_none(),
            Self::IfHasTtl => current_ms.is_some(),
            Self::IfLater | Self::IfHasTtlAndLater => later,
            Self::IfEarlier => earlier,
            Self::IfHasTtlAndEarlier => current_ms.is_some() && earlier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_deadlines_refuse_non_positive_and_overflow() {
        let now = 1_000_000;
        assert_eq!(
            ExpireTime::Seconds(10).strict_deadline_ms(now, "set"),
            Ok(1_010_000)
        );
        assert_eq!(
            ExpireTime::Milliseconds(5).strict_deadline_ms(now, "set"),
            Ok(1_000_005)
        );
        assert_eq!(
            ExpireTime::UnixSeconds(2).strict_deadline_ms(now, "set"),
            Ok(2_000)
        );
        assert_eq!(
            ExpireTime::UnixMilliseconds(7).strict_deadline_ms(now, "set"),
            Ok(7)
        );
        for bad in [
            ExpireTime::Seconds(0),
            ExpireTime::Seconds(-1),
            ExpireTime::Milliseconds(0),
            ExpireTime::UnixSeconds(0),
            ExpireTime::UnixMilliseconds(-5),
            ExpireTime::Seconds(i64::MAX),
            ExpireTime::Milliseconds(i64::MAX),
            ExpireTime::UnixSeconds(i64::MAX / 100),
        ] {
            assert_eq!(
                bad.strict_deadline_ms(now, "set"),
                Err(CommandError::InvalidExpireTime { command: "set" }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn lenient_deadlines_allow_the_past() {
        assert_eq!(
            ExpireTime::Seconds(-1).lenient_deadline_ms(5_000, "expire"),
            Ok(4_000)
        );
        assert!(ExpireTime::Seconds(i64::MAX)
            .lenient_deadline_ms(0, "expire")
            .is_err());
    }

    #[test]
    fn gt_and_lt_treat_no_ttl_as_infinite() {
        assert!(!ExpireCondition::IfLater.allows(None, 10));
        assert!(ExpireCondition::IfEarlier.allows(None, 10));
        assert!(!ExpireCondition::IfHasTtlAndEarlier.allows(None, 10));
        assert!(ExpireCondition::IfLater.allows(Some(5), 10));
        assert!(!ExpireCondition::IfLater.allows(Some(10), 10));
        assert!(ExpireCondition::IfEarlier.allows(Some(11), 10));
        assert!(!ExpireCondition::IfEarlier.allows(Some(10), 10));
        assert!(ExpireCondition::IfNoTtl.allows(None, 1));
        assert!(!ExpireCondition::IfHasTtl.allows(None, 1));
    }
}
