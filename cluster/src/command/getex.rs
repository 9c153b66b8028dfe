//! GETEX key [EX | PX | EXAT | PXAT | PERSIST], and its expiry's wire form.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, GetExExpiry, Store};

use crate::command::client::{expire_option, is_option, ClientForm, ClientReply, PlainReply};
use crate::command::options::WireExpireTime;
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// GETEX: the value of `key`, changing its TTL as `expiry` says.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct GetEx<B> {
    /// The key.
    pub(crate) key: B,
    /// What happens to the TTL.
    pub(crate) expiry: WireGetExExpiry,
}

/// GETEX's expiry on the wire (mirror of [`GetExExpiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) enum WireGetExExpiry {
    /// Leave the TTL alone.
    Unchanged,
    /// PERSIST.
    Persist,
    /// EX / PX / EXAT / PXAT.
    Expire(WireExpireTime),
}

impl From<GetExExpiry> for WireGetExExpiry {
    fn from(expiry: GetExExpiry) -> Self {
        match expiry {
            GetExExpiry::Unchanged => Self::Unchanged,
            GetExExpiry::Persist => Self::Persist,
            GetExExpiry::Expire(time) => Self::Expire(time.into()),
        }
    }
}

impl From<WireGetExExpiry> for GetExExpiry {
    fn from(expiry: WireGetExExpiry) -> Self {
        match expiry {
            WireGetExExpiry::Unchanged => Self::Unchanged,
            WireGetExExpiry::Persist => Self::Persist,
            WireGetExExpiry::Expire(time) => Self::Expire(time.into()),
        }
    }
}

impl<B: AsRef<[u8]>> Command for GetEx<B> {
    const NAMES: &'static [&'static str] = &["getex"];
    const WRITES: bool = true;
    type Output = Option<Bytes>;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(
        &self,
        store: &Store,
        _slot: slotkv_engine::Slot,
    ) -> Result<Option<Bytes>, CommandError> {
        store.getex(self.key.as_ref(), self.expiry.into())
    }
}

impl<'a> ClientForm<'a> for GetEx<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let Some((key, options)) = args.split_first() else {
            return Err(CommandError::WrongArity { command: name });
        };
        let expiry = match options {
            [] => GetExExpiry::Unchanged,
            [option] if is_option(option, "PERSIST") => GetExExpiry::Persist,
            [_, _] => match expire_option(options)? {
                Some(time) => GetExExpiry::Expire(time),
                None => return Err(CommandError::Syntax),
            },
            _ => return Err(CommandError::Syntax),
        };
        Ok(GetEx {
            key,
            expiry: expiry.into(),
        })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// GETEX: the value of `key` (or `None`), changing its TTL as `expiry` says.
    pub async fn getex(
        &self,
        key: &[u8],
        expiry: GetExExpiry,
    ) -> Result<Option<Bytes>, ClusterError> {
        let expiry = expiry.into();
        self.run(GetEx { key, expiry }).await
    }
}
