//! The EXPIRE family: EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT (by the time's kind) with
//! NX | XX | GT | LT, and the condition's wire form.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, ExpireCondition, ExpireTime, Store};

use crate::command::options::WireExpireTime;
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// The EXPIRE family: whether the TTL was set (a time in the past deletes the key).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Expire<B> {
    /// The key.
    pub(crate) key: B,
    /// The time; its kind names the command.
    pub(crate) time: WireExpireTime,
    /// NX / XX / GT / LT.
    pub(crate) condition: WireExpireCondition,
}

/// The EXPIRE condition on the wire (mirror of [`ExpireCondition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireExpireCondition {
    /// No condition.
    Always,
    /// NX.
    IfNoTtl,
    /// XX.
    IfHasTtl,
    /// GT.
    IfLater,
    /// LT.
    IfEarlier,
    /// XX GT.
    IfHasTtlAndLater,
    /// XX LT.
    IfHasTtlAndEarlier,
}

impl From<ExpireCondition> for WireExpireCondition {
    fn from(condition: ExpireCondition) -> Self {
        match condition {
            ExpireCondition::Always => Self::Always,
            ExpireCondition::IfNoTtl => Self::IfNoTtl,
            ExpireCondition::IfHasTtl => Self::IfHasTtl,
            ExpireCondition::IfLater => Self::IfLater,
            ExpireCondition::IfEarlier => Self::IfEarlier,
            ExpireCondition::IfHasTtlAndLater => Self::IfHasTtlAndLater,
            ExpireCondition::IfHasTtlAndEarlier => Self::IfHasTtlAndEarlier,
        }
    }
}

impl From<WireExpireCondition> for ExpireCondition {
    fn from(condition: WireExpireCondition) -> Self {
        match condition {
            WireExpireCondition::Always => Self::Always,
            WireExpireCondition::IfNoTtl => Self::IfNoTtl,
            WireExpireCondition::IfHasTtl => Self::IfHasTtl,
            WireExpireCondition::IfLater => Self::IfLater,
            WireExpireCondition::IfEarlier => Self::IfEarlier,
            WireExpireCondition::IfHasTtlAndLater => Self::IfHasTtlAndLater,
            WireExpireCondition::IfHasTtlAndEarlier => Self::IfHasTtlAndEarlier,
        }
    }
}

impl<B: AsRef<[u8]>> Command for Expire<B> {
    const NAMES: &'static [&'static str] = &["expire", "pexpire", "expireat", "pexpireat"];
    const WRITES: bool = true;
    type Output = bool;

    fn name(&self) -> &'static str {
        match self.time {
            WireExpireTime::Seconds(_) => "expire",
            WireExpireTime::Milliseconds(_) => "pexpire",
            WireExpireTime::UnixSeconds(_) => "expireat",
            WireExpireTime::UnixMilliseconds(_) => "pexpireat",
        }
    }

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<bool, CommandError> {
        store.expire_with(self.key.as_ref(), self.time.into(), self.condition.into())
    }
}

impl Cluster {
    /// The EXPIRE family (EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT by the time's kind): whether
    /// the TTL was set (a time in the past deletes the key).
    pub async fn expire(
        &self,
        key: &[u8],
        time: ExpireTime,
        condition: ExpireCondition,
    ) -> Result<bool, ClusterError> {
        let (time, condition) = (time.into(), condition.into());
        self.run(Expire {
            key,
            time,
            condition,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_conditions_survive_the_wire() {
        for condition in [
            ExpireCondition::Always,
            ExpireCondition::IfNoTtl,
            ExpireCondition::IfHasTtl,
            ExpireCondition::IfLater,
            ExpireCondition::IfEarlier,
            ExpireCondition::IfHasTtlAndLater,
            ExpireCondition::IfHasTtlAndEarlier,
        ] {
            let back = ExpireCondition::from(WireExpireCondition::from(condition));
            assert_eq!(back, condition);
        }
    }
}
