//! What the core hands back: the [`Output`] queue and the [`Event`]s inside it.
//!
//! After every input the caller drains [`crate::core::Core::poll_output`] **in order**
//! until it returns `None`. The order is the contract:
//!
//! - a [`Output::SaveConfig`] that records a vote, `lastVoteEpoch` or an epoch bump always
//!   precedes the [`Output::Transmit`]s that depend on it, so the caller must finish (write
//!   and fsync) each save before sending anything queued after it; if the save fails,
//!   those transmits must not go out;
//! - transmits go out in queue order (a FAIL broadcast after the PFAIL push that led to it);
//! - [`Output::DropSlots`] comes after the slot-owner change that caused it (this node, a
//!   master, lost slots to another node by the config rules): the caller deletes the
//!   slots' keys, and replicates the deletion, before acting on later outputs, so a later
//!   input that gives a slot back never finds the old keys in it. A master that lost its
//!   last slot becomes a replica instead and is full-synced: no drop is queued then;
//! - [`Output::ReleasePeer`] tells the caller a peer's address is no longer needed for what
//!   it names (see [`ReleaseReason`]); queued once per occasion, in order with the transmits
//!   (a later transmit to the same address opens a fresh link);
//! - [`Output::Event`]s tell the host what changed during the input (role, slot owners,
//!   failure flags, `cluster_state`); they oblige nothing of the other outputs;
//! - [`Output::PauseWrites`] asks the caller to stop writes before it goes on draining:
//!   once no write can apply any more, it reports the log offset with
//!   [`crate::core::Core::handle_writes_paused`], whose outputs (the paused master's
//!   offset to its replica) join the queue.
//!
//! The queue is bounded by the work of one input (a few messages per known node, see
//! [`crate::core::MAX_KNOWN_NODES`]): the caller drains it before the next input.

use crate::core::node::NodeId;
use crate::core::slots::SlotRange;
use crate::core::wire::Message;
use crate::core::{ClusterState, NodesConf};

/// A node's role, as reported in [`Event::RoleChanged`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves its slots.
    Master,
    /// Replicates the given master.
    Replica {
        /// The master to replicate from.
        master: NodeId,
    },
}

/// Something the host should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This node's role changed (start or stop replicating).
    RoleChanged(Role),
    /// The owner of a range of slots changed in this node's view (`None`: unassigned).
    SlotOwnerChanged {
        /// The slots.
        range: SlotRange,
        /// The new owner.
        owner: Option<NodeId>,
    },
    /// A node became FAIL.
    NodeFailed(NodeId),
    /// A node's FAIL flag was cleared.
    NodeRecovered(NodeId),
    /// `cluster_state` changed.
    ClusterStateChanged(ClusterState),
    /// This master restarted without its data and none of its replicas can hold any of
    /// it (it knows none, or every one advertises offset 0; see `crate::core::handover`):
    /// it serves its slots again, empty.
    RestartedWithoutData {
        /// The slots it serves empty.
        slots: Vec<SlotRange>,
    },
    /// The autopilot decided (see `crate::core::formation`).
    Autopilot {
        /// What it decided.
        decision: crate::core::formation::AutopilotDecision,
        /// Reported only: [`crate::core::formation::FormationConfig::dry_run`].
        dry_run: bool,
    },
}

/// Where a message goes: by bus address, and by id once known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Bus address, `host:port`.
    pub address: String,
    /// The node's id, `None` during a handshake (MEET to an address).
    pub id: Option<NodeId>,
}

/// Why the shell may let go of what it keeps for a peer ([`Output::ReleasePeer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The node was forgotten (FORGET, a FORGOTTEN_NODE message, RESET): nothing more
    /// goes to it; close its replication stream and its links.
    Forgotten,
    /// The node has been FAIL for a node timeout: close its replication stream and its
    /// links (queued frames go with them; the next PING opens a fresh link).
    Failed,
    /// The node now lives at another address: close what was kept for the old one.
    AddressChanged,
    /// The node stopped replicating this master: close its replication stream only.
    NotMyReplica,
    /// A node that never became a member — a handshake that expired unanswered, or an
    /// unknown sender we only answered — is gone from our view: close the links opened
    /// to reach it, so strangers cannot make us keep links without bound.
    Stranger,
}

impl ReleaseReason {
    /// True when the outbound links go too (not only the replication stream).
    pub fn closes_links(self) -> bool {
        self != ReleaseReason::NotMyReplica
    }
}

/// One thing the caller must do, in queue order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a bus message.
    Transmit {
        /// Destination.
        to: Peer,
        /// The message.
        message: Message,
    },
    /// Persist this configuration (atomically, with fsync) before handling later outputs.
    SaveConfig(NodesConf),
    /// This master lost these slots (sorted, disjoint) to other nodes: delete their keys,
    /// and replicate the deletion, before handling later outputs.
    DropSlots(Vec<SlotRange>),
    /// Stop what is kept for the peer at `address` (see [`ReleaseReason`]).
    ReleasePeer {
        /// The peer's bus address, `host:port`.
        address: String,
        /// Why.
        reason: ReleaseReason,
    },
    /// Tell the host.
    Event(Event),
    /// Writes are paused (manual failover, shutdown hand-over): stop accepting them, wait
    /// for the writes in flight, then report the log offset after the last one with
    /// [`crate::core::Core::handle_writes_paused`]. Until then the paused master does not
    /// advertise an offset to its replica.
    PauseWrites,
}
