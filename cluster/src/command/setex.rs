//! SETEX key seconds value and PSETEX key milliseconds value.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, integer, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// SETEX / PSETEX: sets `key` to `value` with a TTL; a non-positive or overflowing TTL is
/// `ERR invalid expire time in 'setex' command` (or 'psetex').
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct SetEx<B> {
    /// The key.
    pub(crate) key: B,
    /// The TTL; its unit names the command.
    pub(crate) ttl: SetExTtl,
    /// The value.
    pub(crate) value: B,
}

/// The TTL of SETEX (seconds) or PSETEX (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) enum SetExTtl {
    /// SETEX.
    Seconds(i64),
    /// PSETEX.
    Milliseconds(i64),
}

impl<B: AsRef<[u8]>> Command for SetEx<B> {
    const NAMES: &'static [&'static str] = &["setex", "psetex"];
    const WRITES: bool = true;
    type Output = ();

    fn name(&self) -> &'static str {
        match self.ttl {
            SetExTtl::Seconds(_) => "setex",
            SetExTtl::Milliseconds(_) => "psetex",
        }
    }

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<(), CommandError> {
        let (key, value) = (self.key.as_ref(), self.value.as_ref());
        match self.ttl {
            SetExTtl::Seconds(seconds) => store.setex(key, seconds, value),
            SetExTtl::Milliseconds(milliseconds) => store.psetex(key, milliseconds, value),
        }
    }
}

impl<'a> ClientForm<'a> for SetEx<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key, amount, value] = exactly(args, name)?;
        let amount = integer(amount)?;
        let ttl = if name == "psetex" {
            SetExTtl::Milliseconds(amount)
        } else {
            SetExTtl::Seconds(amount)
        };
        Ok(SetEx { key, ttl, value })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// SETEX: sets `key` to `value`, expiring in `seconds` (which must be positive).
    pub async fn setex(&self, key: &[u8], seconds: i64, value: &[u8]) -> Result<(), ClusterError> {
        let ttl = SetExTtl::Seconds(seconds);
        self.run(SetEx { key, ttl, value }).await
    }

    /// PSETEX: sets `key` to `value`, expiring in `milliseconds` (which must be positive).
    pub async fn psetex(
        &self,
        key: &[u8],
        milliseconds: i64,
        value: &[u8],
    ) -> Result<(), ClusterError> {
        let ttl = SetExTtl::Milliseconds(milliseconds);
        self.run(SetEx { key, ttl, value }).await
    }
}
