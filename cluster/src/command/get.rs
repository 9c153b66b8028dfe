//! GET key.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, Store};

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

impl Cluster {
    /// GET: the value of `key`, or `None`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ClusterError> {
        self.run(Get { key }).await
    }
}
