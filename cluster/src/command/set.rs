//! SET key value [NX | XX] [GET] [EX | PX | EXAT | PXAT | KEEPTTL], and its options' wire form.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, SetCondition, SetExpiry, SetOptions, SetOutcome, Store};

use crate::command::client::{
    exactly, expire_option, is_option, ClientForm, ClientReply, PlainReply,
};
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

impl<'a> ClientForm<'a> for Set<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, value] = exactly(&args[..args.len().min(2)], name)?;
        let options = set_options(&args[2..])?;
        Ok(Set {
            key,
            value,
            options: options.into(),
        })
    }

    fn client_reply(&self, _name: &'static str, output: SetOutcome) -> ClientReply {
        if self.options.return_previous {
            return output.previous.plain();
        }
        output.plain()
    }
}

/// SET's options: NX | XX, GET, and one of EX | PX | EXAT | PXAT | KEEPTTL; a repeated or
/// conflicting option is a syntax error, as in Redis.
fn set_options(mut options: &[&[u8]]) -> Result<SetOptions, CommandError> {
    let mut parsed = SetOptions::default();
    let (mut condition_set, mut expiry_set) = (false, false);
    while let Some(option) = options.first() {
        if let Some(time) = expire_option(options)? {
            if expiry_set {
                return Err(CommandError::Syntax);
            }
            (parsed.expiry, expiry_set) = (SetExpiry::Expire(time), true);
            options = &options[2..];
            continue;
        }
        if is_option(option, "NX") || is_option(option, "XX") {
            if condition_set {
                return Err(CommandError::Syntax);
            }
            parsed.condition = if is_option(option, "NX") {
                SetCondition::IfAbsent
            } else {
                SetCondition::IfPresent
            };
            condition_set = true;
        } else if is_option(option, "KEEPTTL") && !expiry_set {
            (parsed.expiry, expiry_set) = (SetExpiry::KeepTtl, true);
        } else if is_option(option, "GET") && !parsed.return_previous {
            parsed.return_previous = true;
        } else {
            return Err(CommandError::Syntax);
        }
        options = &options[1..];
    }
    Ok(parsed)
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
