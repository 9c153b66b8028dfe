//! The INCR family: INCRBY key increment and DECRBY key decrement (INCR and DECR are their
//! special cases on the handle). DECRBY stays its own command: `i64::MIN` has no negation.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, integer, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// INCRBY: adds `increment` to the integer value of `key` (0 when missing).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct IncrBy<B> {
    /// The key.
    pub(crate) key: B,
    /// What to add.
    pub(crate) increment: i64,
}

/// DECRBY: subtracts `decrement` from the integer value of `key` (0 when missing).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct DecrBy<B> {
    /// The key.
    pub(crate) key: B,
    /// What to subtract.
    pub(crate) decrement: i64,
}

impl<B: AsRef<[u8]>> Command for IncrBy<B> {
    const NAMES: &'static [&'static str] = &["incrby", "incr"];
    const WRITES: bool = true;
    type Output = i64;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<i64, CommandError> {
        store.incrby(self.key.as_ref(), self.increment)
    }
}

impl<B: AsRef<[u8]>> Command for DecrBy<B> {
    const NAMES: &'static [&'static str] = &["decrby", "decr"];
    const WRITES: bool = true;
    type Output = i64;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<i64, CommandError> {
        store.decrby(self.key.as_ref(), self.decrement)
    }
}

impl<'a> ClientForm<'a> for IncrBy<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        if name == "incr" {
            let [key] = exactly(args, name)?;
            return Ok(IncrBy { key, increment: 1 });
        }
        let [key, increment] = exactly(args, name)?;
        let increment = integer(increment)?;
        Ok(IncrBy { key, increment })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl<'a> ClientForm<'a> for DecrBy<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        if name == "decr" {
            let [key] = exactly(args, name)?;
            return Ok(DecrBy { key, decrement: 1 });
        }
        let [key, decrement] = exactly(args, name)?;
        let decrement = integer(decrement)?;
        Ok(DecrBy { key, decrement })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// INCRBY: the new value.
    pub async fn incr_by(&self, key: &[u8], increment: i64) -> Result<i64, ClusterError> {
        self.run(IncrBy { key, increment }).await
    }

    /// DECRBY: the new value.
    pub async fn decr_by(&self, key: &[u8], decrement: i64) -> Result<i64, ClusterError> {
        self.run(DecrBy { key, decrement }).await
    }

    /// INCR.
    pub async fn incr(&self, key: &[u8]) -> Result<i64, ClusterError> {
        self.incr_by(key, 1).await
    }

    /// DECR.
    pub async fn decr(&self, key: &[u8]) -> Result<i64, ClusterError> {
        self.decr_by(key, 1).await
    }
}
