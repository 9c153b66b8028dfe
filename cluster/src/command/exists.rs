//! EXISTS key [key ...] (same slot).

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{at_least, ClientForm, ClientReply, PlainReply};
use crate::command::{Command, KeyList};
use crate::routing::{Cluster, ClusterError};

/// EXISTS: how many of the keys exist (a key named twice counts twice).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Exists<L> {
    /// The keys, all in one slot.
    pub(crate) keys: L,
}

impl<L: KeyList> Command for Exists<L> {
    const NAMES: &'static [&'static str] = &["exists"];
    const WRITES: bool = false;
    type Output = usize;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.keys.with_slices(visit)
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<usize, CommandError> {
        self.keys.with_slices(|keys| store.exists(keys))
    }
}

impl<'a> ClientForm<'a> for Exists<&'a [&'a [u8]]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let keys = at_least(args, 1, name)?;
        Ok(Exists { keys })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// EXISTS of same-slot keys: how many exist (a key named twice counts twice).
    pub async fn exists(&self, keys: &[&[u8]]) -> Result<usize, ClusterError> {
        self.run(Exists { keys }).await
    }
}
