//! GETRANGE key start end.

use bincode::{Decode, Encode};
use bytes::Bytes;
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, integer, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// GETRANGE: the bytes `start..=end` of the value of `key` (negative offsets count from the
/// end); empty when the range is empty or the key is missing.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct GetRange<B> {
    /// The key.
    pub(crate) key: B,
    /// First byte (inclusive).
    pub(crate) start: i64,
    /// Last byte (inclusive).
    pub(crate) end: i64,
}

impl<B: AsRef<[u8]>> Command for GetRange<B> {
    const NAMES: &'static [&'static str] = &["getrange"];
    const WRITES: bool = false;
    type Output = Bytes;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<Bytes, CommandError> {
        Ok(store.getrange(self.key.as_ref(), self.start, self.end))
    }
}

impl<'a> ClientForm<'a> for GetRange<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, start, end] = exactly(args, name)?;
        let (start, end) = (integer(start)?, integer(end)?);
        Ok(GetRange { key, start, end })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// GETRANGE: bytes `start..=end` of the value (negative offsets count from the end), as
    /// a zero-copy slice when local; empty for a missing key or an empty range.
    pub async fn getrange(&self, key: &[u8], start: i64, end: i64) -> Result<Bytes, ClusterError> {
        self.run(GetRange { key, start, end }).await
    }
}
