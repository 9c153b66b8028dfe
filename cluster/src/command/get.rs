//! GET key.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// GET: the value of `key`, or nil.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Get<B> {
    /// The key.
    pub(crate) key: B,
}

impl<B: AsRef<[u8]>> Command for Get<B> {
    const NAMES: &'static [&'static str] = &["get"];
    const WRITES: bool = false;
    type Output = Option<Bytes>;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(
        &self,
        store: &Store,
        slot: slotkv_engine::Slot,
    ) -> Result<Option<Bytes>, CommandError> {
        Ok(store.get_in_slot(slot, self.key.as_ref()))
    }
}

impl<'a> ClientForm<'a> for Get<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key] = exactly(args, name)?;
        Ok(Get { key })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// GET: the value of `key`, or `None`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ClusterError> {
        self.run(Get { key }).await
    }
}
