//! Read-only views of the core in Redis's exact formats: CLUSTER NODES, SLOTS, SHARDS, INFO.
//!
//! The views are not protocol state: every function here takes a `&Core` and reads it only
//! through its public accessors; nothing changes state and nothing does IO (no tokio, no
//! clock: `.ci/check-core-purity` checks this folder as it checks the core). One file per
//! view: [`nodes`] (CLUSTER NODES, REPLICAS, MYID), [`slots`] (CLUSTER SLOTS), [`shards`]
//! (CLUSTER SHARDS, MYSHARDID), [`info`] (CLUSTER INFO) and [`failure_reports`]
//! (CLUSTER COUNT-FAILURE-REPORTS).
//!
//! Text replies (NODES, INFO, REPLICAS) come out as Redis prints them; array replies
//! (SLOTS, SHARDS) come out typed ([`SlotsEntry`], [`ShardView`]) for a RESP gateway to
//! encode. The core's clock is monotonic, so views that show wall-clock times take
//! `unix_now_ms`, the caller's Unix time in milliseconds.
//!
//! Where Redis iterates a hash table (random order), these views use a stable order:
//! nodes by id, slot ranges by first slot, shards by first slot then shard id.

pub mod failure_reports;
pub mod info;
pub mod nodes;
pub mod shards;
pub mod slots;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;

use crate::core::node::{NodeId, NodeRecord};
use crate::core::slots::SlotRange;
use crate::core::Core;
pub use failure_reports::count_failure_reports;
pub use info::{cluster_info, ClusterInfo};
pub use nodes::{cluster_nodes, cluster_replicas, myid};
pub use shards::{cluster_shards, myshardid, shard_of, Health, ShardNode, ShardRole, ShardView};
pub use slots::{cluster_slots, SlotsEntry, SlotsNode};

/// Why a view about one node cannot be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The node is not in this node's table.
    #[error("Unknown node {0}")]
    UnknownNode(NodeId),
    /// CLUSTER REPLICAS about a node that is not a master.
    #[error("The specified node is not a master")]
    NotAMaster(NodeId),
}

/// `cluster-preferred-endpoint-type`: what CLUSTER SLOTS and SHARDS show as a node's endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PreferredEndpoint {
    /// The IP (Redis's default).
    #[default]
    Ip,
    /// The hostname, `?` when the node has none.
    Hostname,
    /// Nothing: SLOTS shows nil and SHARDS an empty string; clients use the address they
    /// connected to.
    UnknownEndpoint,
}

impl PreferredEndpoint {
    /// The endpoint shown for `node`: its IP, its hostname (`?` when it has none), or
    /// `None` for [`PreferredEndpoint::UnknownEndpoint`].
    pub fn endpoint_of(self, node: &NodeRecord) -> Option<String> {
        match self {
            PreferredEndpoint::Ip => Some(node.ip.clone()),
            PreferredEndpoint::Hostname if node.hostname.is_empty() => Some("?".to_string()),
            PreferredEndpoint::Hostname => Some(node.hostname.clone()),
            PreferredEndpoint::UnknownEndpoint => None,
        }
    }
}

/// The hostname of `node` when it has one.
fn hostname_of(node: &NodeRecord) -> Option<String> {
    (!node.hostname.is_empty()).then(|| node.hostname.clone())
}

/// Each slot owner's ranges, from one scan of the slot table.
fn ranges_by_owner(core: &Core) -> BTreeMap<NodeId, Vec<SlotRange>> {
    let mut owned: BTreeMap<NodeId, Vec<SlotRange>> = BTreeMap::new();
    for (range, owner) in core.slot_table().owner_ranges() {
        owned.entry(owner).or_default().push(range);
    }
    owned
}
