//! UNLINK key [key ...] (same slot).

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{at_least, ClientForm, ClientReply, PlainReply};
use crate::command::{Command, KeyList};
use crate::routing::{Cluster, ClusterError};

/// UNLINK: removes the keys; how many existed. The engine frees values when their last
/// reader drops them, so this is DEL under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Unlink<L> {
    /// The keys, all in one slot.
    pub(crate) keys: L,
}

impl<L: KeyList> Command for Unlink<L> {
    const NAMES: &'static [&'static str] = &["unlink"];
    const WRITES: bool = true;
    type Output = usize;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.keys.with_slices(visit)
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<usize, CommandError> {
        self.keys.with_slices(|keys| store.unlink(keys))
    }
}

impl<'a> ClientForm<'a> for Unlink<&'a [&'a [u8]]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let keys = at_least(args, 1, name)?;
        Ok(Unlink { keys })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// UNLINK of same-slot keys: how many existed.
    pub async fn unlink(&self, keys: &[&[u8]]) -> Result<usize, ClusterError> {
        self.run(Unlink { keys }).await
    }
}
