//! GETSET key value.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// GETSET: sets `key` to `value` (clearing its TTL); the previous value.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct GetSet<B> {
    /// The key.
    pub(crate) key: B,
    /// The new value.
    pub(crate) value: B,
}

impl<B: AsRef<[u8]>> Command for GetSet<B> {
    const NAMES: &'static [&'static str] = &["getset"];
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
        store.getset(self.key.as_ref(), self.value.as_ref())
    }
}

impl<'a> ClientForm<'a> for GetSet<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, value] = exactly(args, name)?;
        Ok(GetSet { key, value })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// GETSET: sets `key` to `value`, clearing its TTL; the previous value or `None`.
    pub async fn getset(&self, key: &[u8], value: &[u8]) -> Result<Option<Bytes>, ClusterError> {
        self.run(GetSet { key, value }).await
    }
}
