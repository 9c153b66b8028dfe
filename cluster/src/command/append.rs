//! APPEND key value.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// APPEND: appends `suffix` to the value of `key` (creating it); the new length.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Append<B> {
    /// The key.
    pub(crate) key: B,
    /// What to append.
    pub(crate) suffix: B,
}

impl<B: AsRef<[u8]>> Command for Append<B> {
    const NAMES: &'static [&'static str] = &["append"];
    const WRITES: bool = true;
    type Output = usize;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<usize, CommandError> {
        store.append(self.key.as_ref(), self.suffix.as_ref())
    }
}

impl<'a> ClientForm<'a> for Append<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, suffix] = exactly(args, name)?;
        Ok(Append { key, suffix })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// APPEND: the new length.
    pub async fn append(&self, key: &[u8], suffix: &[u8]) -> Result<usize, ClusterError> {
        self.run(Append { key, suffix }).await
    }
}
