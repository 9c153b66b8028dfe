//! SET key value [NX | XX] [GET] [EX | PX | EXAT | PXAT | KEEPTTL], and its options' wire form.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, SetCondition, SetExpiry, SetOptions, SetOutcome, Store};

use crate::command::options::WireExpireTime;
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// SET with options: whether it wrote and, with GET, the previous value.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Set<B> {
    /// The key.
    pub(crate) key: B,
    /// The new value.
    pub(crate) value: B,
    /// NX/XX, expiry, GET.
    pub(crate) options: WireSetOptions,
}

/// SET's condition on the wire (mirror of [`SetCondition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireSetCondition {
    /// No condition.
    Always,
    /// NX.
    IfAbsent,
    /// XX.
    IfPresent,
}

/// SET's expiry on the wire (mirror of [`SetExpiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireSetExpiry {
    /// Clear any TTL.
    ClearTtl,
    /// KEEPTTL.
    KeepTtl,
    /// EX / PX / EXAT / PXAT.
    Expire(WireExpireTime),
}

/// SET options on the wire (mirror of [`SetOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct WireSetOptions {
    condition: WireSetCondition,
    expiry: WireSetExpiry,
    return_previous: bool,
}

impl From<SetOptions> for WireSetOptions {
    fn from(options: SetOptions) -> Self {
        let condition = match options.condition {
            SetCondition::Always => WireSetCondition::Always,
            SetCondition::IfAbsent => WireSetCondition::IfAbsent,
            SetCondition::IfPresent => WireSetCondition::IfPresent,
        };
        let expiry = match options.expiry {
            SetExpiry::ClearTtl => WireSetExpiry::ClearTtl,
            SetExpiry::KeepTtl => WireSetExpiry::KeepTtl,
            SetExpiry::Expire(time) => WireSetExpiry::Expire(time.into()),
        };
        WireSetOptions {
            condition,
            expiry,
            return_previous: options.return_previous,
        }
    }
}

impl From<WireSetOptions> for SetOptions {
    fn from(options: WireSetOptions) -> Self {
        let condition = match options.condition {
            WireSetCondition::Always => SetCondition::Always,
            WireSetCondition::IfAbsent => SetCondition::IfAbsent,
            WireSetCondition::IfPresent => SetCondition::IfPresent,
        };
        let expiry = match options.expiry {
            WireSetExpiry::ClearTtl => SetExpiry::ClearTtl,
            WireSetExpiry::KeepTtl => SetExpiry::KeepTtl,
            WireSetExpiry::Expire(time) => SetExpiry::Expire(time.into()),
        };
        SetOptions {
            condition,
            expiry,
            return_previous: options.return_previous,
        }
    }
}

impl<B: AsRef<[u8]>> Command for Set<B> {
    const NAMES: &'static [&'static str] = &["set"];
    const WRITES: bool = true;
    type Output = SetOutcome;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, slot: slotkv_engine::Slot) -> Result<SetOutcome, CommandError> {
        store.set_in_slot(
            slot,
            self.key.as_ref(),
            self.value.as_ref(),
            self.options.into(),
        )
    }
}

impl Cluster {
    /// SET without options.
    pub async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), ClusterError> {
        self.set_with(key, value, SetOptions::default())
            .await
            .map(|_| ())
    }

    /// SET with options (NX/XX, expiry, GET).
    pub async fn set_with(
        &self,
        key: &[u8],
        value: &[u8],
        options: SetOptions,
    ) -> Result<SetOutcome, ClusterError> {
        let options = options.into();
        self.run(Set {
            key,
            value,
            options,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use slotkv_engine::ExpireTime;

    use super::*;

    #[test]
    fn set_options_survive_the_wire() {
        for options in [
            SetOptions::default(),
            SetOptions {
                condition: SetCondition::IfPresent,
                expiry: SetExpiry::KeepTtl,
                return_previous: false,
            },
            SetOptions {
                condition: SetCondition::IfAbsent,
                expiry: SetExpiry::Expire(ExpireTime::UnixMilliseconds(5)),
                return_previous: true,
            },
        ] {
            assert_eq!(SetOptions::from(WireSetOptions::from(options)), options);
        }
    }
}
