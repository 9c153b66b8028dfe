//! SETNX key value.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// SETNX: sets `key` only if it does not exist; whether it did.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct SetNx<B> {
    /// The key.
    pub(crate) key: B,
    /// The value.
    pub(crate) value: B,
}

impl<B: AsRef<[u8]>> Command for SetNx<B> {
    const NAMES: &'static [&'static str] = &["setnx"];
    const WRITES: bool = true;
    type Output = bool;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<bool, CommandError> {
        store.setnx(self.key.as_ref(), self.value.as_ref())
    }
}

impl<'a> ClientForm<'a> for SetNx<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, value] = exactly(args, name)?;
        Ok(SetNx { key, value })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// SETNX: sets `key` to `value` only if it does not exist; whether it was set.
    pub async fn setnx(&self, key: &[u8], value: &[u8]) -> Result<bool, ClusterError> {
        self.run(SetNx { key, value }).await
    }
}
