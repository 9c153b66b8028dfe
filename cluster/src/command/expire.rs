//! The EXPIRE family: EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT (by the time's kind) with
//! NX | XX | GT | LT, and the condition's wire form.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, ExpireCondition, ExpireTime, Store};

use crate::command::client::{exactly, integer, is_option, ClientForm, ClientReply, PlainReply};
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

impl<'a> ClientForm<'a> for Expire<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, amount] = exactly(&args[..args.len().min(2)], name)?;
        let amount = integer(amount)?;
        let time = match name {
            "pexpire" => ExpireTime::Milliseconds(amount),
            "expireat" => ExpireTime::UnixSeconds(amount),
            "pexpireat" => ExpireTime::UnixMilliseconds(amount),
            _ => ExpireTime::Seconds(amount),
        };
        Ok(Expire {
            key,
            time: time.into(),
            condition: expire_condition(&args[2..])?.into(),
        })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

/// EXPIRE's NX | XX | GT | LT options as the engine's condition; NX with another one, or
/// GT with LT, is a syntax error.
fn expire_condition(options: &[&[u8]]) -> Result<ExpireCondition, CommandError> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        if is_option(option, "NX") {
            nx = true;
        } else if is_option(option, "XX") {
            xx = true;
        } else if is_option(option, "GT") {
            gt = true;
        } else if is_option(option, "LT") {
            lt = true;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(match (nx, xx, gt, lt) {
        (false, false, false, false) => ExpireCondition::Always,
        (true, false, false, false) => ExpireCondition::IfNoTtl,
        (false, true, false, false) => ExpireCondition::IfHasTtl,
        (false, false, true, false) => ExpireCondition::IfLater,
        (false, false, false, true) => ExpireCondition::IfEarlier,
        (false, true, true, false) => ExpireCondition::IfHasTtlAndLater,
        (false, true, false, true) => ExpireCondition::IfHasTtlAndEarlier,
        _ => return Err(CommandError::Syntax),
    })
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
