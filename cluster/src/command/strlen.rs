//! STRLEN key.

use bincode::{Decode, Encode};
use slotkv_engine::{CommandError, Store};

use crate::command::client::{exactly, ClientForm, ClientReply, PlainReply};
use crate::command::Command;
use crate::routing::{Cluster, ClusterError};

/// STRLEN: the length of the value of `key`, 0 when missing.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Strlen<B> {
    /// The key.
    pub(crate) key: B,
}

impl<B: AsRef<[u8]>> Command for Strlen<B> {
    const NAMES: &'static [&'static str] = &["strlen"];
    const WRITES: bool = false;
    type Output = usize;

    fn with_keys<R>(&self, visit: impl FnOnce(&[&[u8]]) -> R) -> R {
        visit(&[self.key.as_ref()])
    }

    fn apply(&self, store: &Store, _slot: slotkv_engine::Slot) -> Result<usize, CommandError> {
        Ok(store.strlen(self.key.as_ref()))
    }
}

impl<'a> ClientForm<'a> for Strlen<&'a [u8]> {
    fn from_args(name: &'static str, args: &'a [&'a [u8]]) -> Result<Self, CommandError> {
        let [key] = exactly(args, name)?;
        Ok(Strlen { key })
    }

    fn client_reply(&self, _name: &'static str, output: Self::Output) -> ClientReply {
        output.plain()
    }
}

impl Cluster {
    /// STRLEN.
    pub async fn strlen(&self, key: &[u8]) -> Result<usize, ClusterError> {
        self.run(Strlen { key }).await
    }
}
