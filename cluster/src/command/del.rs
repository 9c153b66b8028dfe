//! DEL key [key ...] (same slot).

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{at_least, ClientForm, ClientReply, PlainReply};
use crate::command::{Command, KeyList};
use crate::routing::{Cluster, ClusterError};

/// DEL: removes the keys; how many existed.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Del<L> {
    /// The keys, all in one slot.
    pub(crate) keys: L,
}

impl<L: KeyList> Command for Del<L> {
    const NAMES: &'static [&'static str] = &["del"];
    const WRITES: bool = true;
    type Output = usize;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.keys.with_slices(visit)
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<usize, CommandError> {
        self.keys.with_slices(|keys| store.del(keys))
    }
}

impl<'a> ClientForm<'a> for Del<&'a [&'a [u8]]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let keys = at_least(args, 1, name)?;
        Ok(Del { keys })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// DEL of same-slot keys: how many existed.
    pub async fn del(&self, keys: &[&[u8]]) -> Result<usize, ClusterError> {
        self.run(Del { keys }).await
    }
}
