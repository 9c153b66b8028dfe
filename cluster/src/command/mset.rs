//! MSET and MSETNX key value [key value ...] (same slot; `Cluster::mset_multi` splits pairs of
//! many slots).

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{pairs, ClientForm, ClientReply, PlainReply};
use crate::command::{Command, PairList};
use crate::routing::{Cluster, ClusterError};

/// MSET: sets every pair atomically, clearing TTLs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct MSet<P> {
    /// The pairs, all keys in one slot.
    pub(crate) pairs: P,
}

/// MSETNX: sets every pair only if none of the keys exists; whether it did.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct MSetNx<P> {
    /// The pairs, all keys in one slot.
    pub(crate) pairs: P,
}

impl<P: PairList> Command for MSet<P> {
    const NAMES: &'static [&'static str] = &["mset"];
    const WRITES: bool = true;
    type Output = ();

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.pairs.with_keys(visit)
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<(), CommandError> {
        self.pairs.with_pairs(|pairs| store.mset(pairs))
    }
}

impl<P: PairList> Command for MSetNx<P> {
    const NAMES: &'static [&'static str] = &["msetnx"];
    const WRITES: bool = true;
    type Output = bool;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        self.pairs.with_keys(visit)
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<bool, CommandError> {
        self.pairs.with_pairs(|pairs| store.msetnx(pairs))
    }
}

impl<'a> ClientForm<'a> for MSet<Vec<(&'a [u8], &'a [u8])>> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        Ok(MSet {
            pairs: pairs(args, name)?,
        })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl<'a> ClientForm<'a> for MSetNx<Vec<(&'a [u8], &'a [u8])>> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        Ok(MSetNx {
            pairs: pairs(args, name)?,
        })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// MSET of same-slot pairs, atomically (see [`Cluster::mset_multi`] for many slots).
    pub async fn mset(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), ClusterError> {
        self.run(MSet { pairs }).await
    }

    /// MSETNX of same-slot pairs: whether they were set (only if none existed).
    pub async fn msetnx(&self, pairs: &[(&[u8], &[u8])]) -> Result<bool, ClusterError> {
        self.run(MSetNx { pairs }).await
    }
}
