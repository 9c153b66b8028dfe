//! INCRBYFLOAT key increment.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, float, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// INCRBYFLOAT: adds `increment` to the decimal value of `key` (0 when missing), keeping its
/// TTL; the new value in Redis's formatting (no exponent, no trailing zeros).
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub(crate) struct IncrByFloat<B> {
    /// The key.
    pub(crate) key: B,
    /// What to add.
    pub(crate) increment: f64,
}

impl<B: AsRef<[u8]>> Command for IncrByFloat<B> {
    const NAMES: &'static [&'static str] = &["incrbyfloat"];
    const WRITES: bool = true;
    type Output = Bytes;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<Bytes, CommandError> {
        store.incrbyfloat(self.key.as_ref(), self.increment)
    }
}

impl<'a> ClientForm<'a> for IncrByFloat<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, increment] = exactly(args, name)?;
        let increment = float(increment)?;
        Ok(IncrByFloat { key, increment })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// INCRBYFLOAT: the new value as Redis prints it (`10.5` + `0.1` is `10.6`). Errors:
    /// `ERR value is not a valid float`, `ERR increment would produce NaN or Infinity`.
    pub async fn incr_by_float(&self, key: &[u8], increment: f64) -> Result<Bytes, ClusterError> {
        self.run(IncrByFloat { key, increment }).await
    }
}
