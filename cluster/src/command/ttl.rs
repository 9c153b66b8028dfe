//! PTTL key, and TTL key derived from it on the handle.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// PTTL: remaining ms, -1 without TTL, -2 when missing.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Pttl<B> {
    /// The key.
    pub(crate) key: B,
}

impl<B: AsRef<[u8]>> Command for Pttl<B> {
    const NAMES: &'static [&'static str] = &["pttl", "ttl"];
    const WRITES: bool = false;
    type Output = i64;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<i64, CommandError> {
        Ok(store.pttl(self.key.as_ref()))
    }
}

impl<'a> ClientForm<'a> for Pttl<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key] = exactly(args, name)?;
        Ok(Pttl { key })
    }

    fn client_reply(&self, name: &'static str, output: i64) -> ClientReply {
        // TTL rounds the remaining milliseconds to seconds as the handle's `ttl` does;
        // the negative answers (no key, no TTL) are the same in both.
        match output {
            remaining if name == "ttl" && remaining >= 0 => {
                ClientReply::Integer((remaining + 500) / 1_000)
            }
            remaining => ClientReply::Integer(remaining),
        }
    }
}

impl Cluster {
    /// PTTL: remaining ms, -1 without TTL, -2 when missing.
    pub async fn pttl(&self, key: &[u8]) -> Result<i64, ClusterError> {
        self.run(Pttl { key }).await
    }

    /// TTL: remaining seconds (rounded), -1 without TTL, -2 when missing.
    pub async fn ttl(&self, key: &[u8]) -> Result<i64, ClusterError> {
        Ok(match self.pttl(key).await? {
            remaining if remaining < 0 => remaining,
            remaining => (remaining + 500) / 1_000,
        })
    }
}
