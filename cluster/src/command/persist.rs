//! PERSIST key.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// PERSIST: removes the TTL of `key`; whether there was one.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Persist<B> {
    /// The key.
    pub(crate) key: B,
}

impl<B: AsRef<[u8]>> Command for Persist<B> {
    const NAMES: &'static [&'static str] = &["persist"];
    const WRITES: bool = true;
    type Output = bool;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<bool, CommandError> {
        store.persist(self.key.as_ref())
    }
}

impl<'a> ClientForm<'a> for Persist<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key] = exactly(args, name)?;
        Ok(Persist { key })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// PERSIST: whether a TTL was removed.
    pub async fn persist(&self, key: &[u8]) -> Result<bool, ClusterError> {
        self.run(Persist { key }).await
    }
}
