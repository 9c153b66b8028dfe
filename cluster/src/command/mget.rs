//! MGET key [key ...] (same slot; `Cluster::mget_multi` splits keys of many slots).

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, Store};

use crate::command::client::{at_least, ClientForm, ClientReply, PlainReply};
use crate::command::{Command, KeyList};
use crate::routing::{Cluster, ClusterError};

/// MGET: the values of the keys, read at one point in time.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct MGet<L> {
    /// The keys, all in one slot.
    pub(crate) keys: L,
}

impl<L: KeyList> Command for MGet<L> {
    const NAMES: &'static [&'static str] = &["mget"];
    const WRITES: bool = false;
    type Output = Vec<Option<Bytes>>;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.keys.with_slices(visit)
    }

    fn apply(
        &self,
        store: &Store,
        _slot: slotkv_engine::Slot,
    ) -> Result<Vec<Option<Bytes>>, CommandError> {
        self.keys.with_slices(|keys| store.mget(keys))
    }
}

impl<'a> ClientForm<'a> for MGet<&'a [&'a [u8]]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let keys = at_least(args, 1, name)?;
        Ok(MGet { keys })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// MGET of same-slot keys (see [`Cluster::mget_multi`] for keys in many slots).
    pub async fn mget(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, ClusterError> {
        self.run(MGet { keys }).await
    }
}
