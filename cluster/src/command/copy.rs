//! COPY source destination [REPLACE] (same slot; no DB option: a cluster has one database).

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, is_option, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// COPY: copies the value and TTL of `source` to `destination` (same slot, else CROSSSLOT);
/// whether it copied (not when `source` is missing, or `destination` exists without REPLACE).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Copy<B> {
    /// The key copied from.
    pub(crate) source: B,
    /// The key copied to.
    pub(crate) destination: B,
    /// REPLACE: overwrite an existing destination.
    pub(crate) replace: bool,
}

impl<B: AsRef<[u8]>> Command for Copy<B> {
    const NAMES: &'static [&'static str] = &["copy"];
    const WRITES: bool = true;
    type Output = bool;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.source.as_ref(), self.destination.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<bool, CommandError> {
        let (source, destination) = (self.source.as_ref(), self.destination.as_ref());
        store.copy(source, destination, self.replace)
    }
}

impl<'a> ClientForm<'a> for Copy<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [source, destination] = exactly(&args[..args.len().min(2)], name)?;
        let replace = match &args[2..] {
            [] => false,
            [option] if is_option(option, "REPLACE") => true,
            _ => return Err(CommandError::Syntax),
        };
        Ok(Copy {
            source,
            destination,
            replace,
        })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// COPY: copies `source` (value and TTL) to `destination` in the same slot, overwriting it
    /// only with `replace`; whether it copied.
    pub async fn copy(
        &self,
        source: &[u8],
        destination: &[u8],
        replace: bool,
    ) -> Result<bool, ClusterError> {
        self.run(Copy {
            source,
            destination,
            replace,
        })
        .await
    }
}
