//! SETRANGE key offset value.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, integer, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// SETRANGE: overwrites the value of `key` from byte `offset` (zero-padding a shorter or
/// missing value), keeping its TTL; the new length.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct SetRange<B> {
    /// The key.
    pub(crate) key: B,
    /// Where the bytes go; negative is `ERR offset is out of range`.
    pub(crate) offset: i64,
    /// The bytes.
    pub(crate) value: B,
}

impl<B: AsRef<[u8]>> Command for SetRange<B> {
    const NAMES: &'static [&'static str] = &["setrange"];
    const WRITES: bool = true;
    type Output = usize;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<usize, CommandError> {
        store.setrange(self.key.as_ref(), self.offset, self.value.as_ref())
    }
}

impl<'a> ClientForm<'a> for SetRange<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, offset, value] = exactly(args, name)?;
        let offset = integer(offset)?;
        Ok(SetRange { key, offset, value })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// SETRANGE: writes `value` into the value of `key` at byte `offset` (zero-padding), keeping
    /// its TTL; the new length. An empty `value` changes nothing and creates no key.
    pub async fn setrange(
        &self,
        key: &[u8],
        offset: i64,
        value: &[u8],
    ) -> Result<usize, ClusterError> {
        self.run(SetRange { key, offset, value }).await
    }
}
