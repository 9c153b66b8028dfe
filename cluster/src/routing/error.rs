//! [`ClusterError`]: why a call on the [`Cluster`](crate::routing::Cluster) handle failed.

use slotkv_engine::{CommandError, Slot};
use slotkv_transport::RequestError;

use crate::codec::DecodeError;
use crate::routing::protocol::DownReason;

/// Why a command through the cluster handle failed. Each variant says whether the command
/// may have been executed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The engine refused the command (wrong type of value, bad expire time, OOM, ...);
    /// nothing changed. Display is Redis's error line.
    #[error("{0}")]
    Command(#[from] CommandError),
    /// The keys are in different hash slots; nothing was executed.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// The cluster refuses keyed commands; nothing was executed.
    #[error("{}", down_line(*.0))]
    ClusterDown(DownReason),
    /// MOVED/ASK were followed the maximum number of times; nothing was executed.
    #[error("slot {slot} was still redirected after {redirections} redirections")]
    TooManyRedirections {
        /// The slot.
        slot: Slot,
        /// Redirections followed.
        redirections: u32,
    },
    /// TRYAGAIN was answered on every retry (a migration is in progress).
    #[error("TRYAGAIN slot {slot} is being migrated; gave up after {attempts} attempts")]
    TryAgain {
        /// The slot.
        slot: Slot,
        /// Attempts made.
        attempts: u32,
    },
    /// No replica of the slot's owner can serve a replica read.
    #[error("no healthy replica serves slot {0}")]
    NoReplica(Slot),
    /// The owner did not answer in time; the command may or may not have been executed.
    #[error("no answer from {peer} within {timeout_ms} ms; the command may have been executed")]
    Timeout {
        /// The owner's address.
        peer: String,
        /// The timeout in ms.
        timeout_ms: u64,
    },
    /// The request could not be delivered or its link failed; it may have been executed.
    #[error("forwarding failed: {0}")]
    Transport(RequestError),
    /// The owner answered something this node cannot decode (counted in
    /// `NodeStatistics::responses_malformed`); the command may have been executed.
    #[error("bad answer from the owner: {0}")]
    Protocol(#[from] DecodeError),
    /// The write was executed but fewer replicas than asked acknowledged it in time.
    #[error("the write was applied but only {acknowledged} of {wanted} replicas acknowledged it")]
    NotDurable {
        /// Replicas that acknowledged.
        acknowledged: u32,
        /// Replicas asked for.
        wanted: u32,
    },
    /// The node was shut down.
    #[error("the node is shut down")]
    Shutdown,
}

pub(crate) fn down_line(reason: DownReason) -> &'static str {
    match reason {
        DownReason::ClusterDown => "CLUSTERDOWN The cluster is down",
        DownReason::ReadOnly => "CLUSTERDOWN The cluster is down and only accepts read commands",
        DownReason::SlotNotServed => "CLUSTERDOWN Hash slot not served",
    }
}

impl From<RequestError> for ClusterError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Timeout { peer, timeout_ms } => ClusterError::Timeout {
                peer: peer.to_string(),
                timeout_ms,
            },
            RequestError::Shutdown => ClusterError::Shutdown,
            other => ClusterError::Transport(other),
        }
    }
}

impl ClusterError {
    /// True for the OOM refusal.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, ClusterError::Command(CommandError::OutOfMemory))
    }
}
