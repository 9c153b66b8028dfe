//! GETDEL key.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// GETDEL: the value of `key`, removing the key.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct GetDel<B> {
    /// The key.
    pub(crate) key: B,
}

impl<B: AsRef<[u8]>> Command for GetDel<B> {
    const NAMES: &'static [&'static str] = &["getdel"];
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
        store.getdel(self.key.as_ref())
    }
}

impl<'a> ClientForm<'a> for GetDel<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key] = exactly(args, name)?;
        Ok(GetDel { key })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// GETDEL: the value of `key` (or `None`), removing the key.
    pub async fn getdel(&self, key: &[u8]) -> Result<Option<Bytes>, ClusterError> {
        self.run(GetDel { key }).await
    }
}
