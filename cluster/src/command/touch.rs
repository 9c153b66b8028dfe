//! TOUCH key [key ...] (same slot).

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{at_least, ClientForm, ClientReply, PlainReply};
use crate::command::{Command, KeyList};
use crate::routing::{Cluster, ClusterError};

/// TOUCH: refreshes the keys' access time (for LRU eviction); how many exist. A read: it
/// changes no value, so it is not replicated and a replica may serve it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Touch<L> {
    /// The keys, all in one slot.
    pub(crate) keys: L,
}

impl<L: KeyList> Command for Touch<L> {
    const NAMES: &'static [&'static str] = &["touch"];
    const WRITES: bool = false;
    type Output = usize;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.keys.with_slices(visit)
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<usize, CommandError> {
        self.keys.with_slices(|keys| store.touch(keys))
    }
}

impl<'a> ClientForm<'a> for Touch<&'a [&'a [u8]]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let keys = at_least(args, 1, name)?;
        Ok(Touch { keys })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// TOUCH of same-slot keys: how many exist (a key named twice counts twice).
    pub async fn touch(&self, keys: &[&[u8]]) -> Result<usize, ClusterError> {
        self.run(Touch { keys }).await
    }
}
