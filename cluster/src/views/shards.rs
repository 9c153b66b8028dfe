//! CLUSTER SHARDS and CLUSTER MYSHARDID: nodes grouped by shard (a master and its replicas).

use std::collections::BTreeMap;

use crate::core::node::{NodeId, NodeRecord};
use crate::core::nodes_conf::normalize_ranges;
use crate::core::slots::SlotRange;
use crate::core::Core;
use crate::views::{hostname_of, ranges_by_owner, PreferredEndpoint};

/// The shard a node belongs to: a replica's is its master's, a node without a recorded
/// shard id is its own shard (named by its id).
pub fn shard_of(core: &Core, node: &NodeRecord) -> NodeId {
    let master = node
        .master_id
        .filter(|_| node.is_replica())
        .and_then(|master| core.node(&master));
    match master {
        Some(master) => master.shard_id.unwrap_or(master.id),
        None => node.shard_id.unwrap_or(node.id),
    }
}

/// CLUSTER MYSHARDID: this node's shard id as 40 hex characters.
pub fn myshardid(core: &Core) -> String {
    shard_of(core, core.myself()).to_hex()
}

/// A node's role in CLUSTER SHARDS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardRole {
    /// `master`.
    Master,
    /// `replica`.
    Replica,
}

impl ShardRole {
    /// The string CLUSTER SHARDS shows.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardRole::Master => "master",
            ShardRole::Replica => "replica",
        }
    }
}

/// A node's health in CLUSTER SHARDS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// `online`: serving.
    Online,
    /// `fail`: flagged FAIL.
    Fail,
    /// `loading`: a replica that has not finished its first sync (offset 0).
    Loading,
}

impl Health {
    /// The string CLUSTER SHARDS shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Online => "online",
            Health::Fail => "fail",
            Health::Loading => "loading",
        }
    }
}

/// One node of a CLUSTER SHARDS element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardNode {
    /// Node id.
    pub id: NodeId,
    /// Client port.
    pub port: u16,
    /// IP.
    pub ip: String,
    /// Preferred endpoint: IP, hostname (`?` when none), or empty.
    pub endpoint: String,
    /// Hostname, when set.
    pub hostname: Option<String>,
    /// Master or replica.
    pub role: ShardRole,
    /// Replication offset last known.
    pub replication_offset: u64,
    /// Online, fail or loading.
    pub health: Health,
}

/// One CLUSTER SHARDS element: a master and its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardView {
    /// The shard id (not part of Redis's reply; useful to callers).
    pub shard_id: NodeId,
    /// The master's slots as sorted ranges (empty for a slotless shard).
    pub slots: Vec<SlotRange>,
    /// Masters first, then replicas, each group in id order.
    pub nodes: Vec<ShardNode>,
}

fn shard_node(node: &NodeRecord, preferred: PreferredEndpoint) -> ShardNode {
    let health = if node.is_failed() {
        Health::Fail
    } else if node.is_replica() && node.repl_offset == 0 {
        Health::Loading
    } else {
        Health::Online
    };
    ShardNode {
        id: node.id,
        port: node.client_port,
        ip: node.ip.clone(),
        endpoint: preferred.endpoint_of(node).unwrap_or_default(),
        hostname: hostname_of(node),
        role: if node.is_master() {
            ShardRole::Master
        } else {
            ShardRole::Replica
        },
        replication_offset: node.repl_offset,
        health,
    }
}

/// CLUSTER SHARDS: one element per shard (handshake nodes left out), ordered by first slot
/// (slotless shards last), then shard id.
pub fn cluster_shards(core: &Core, preferred: PreferredEndpoint) -> Vec<ShardView> {
    let mut owned = ranges_by_owner(core);
    let mut groups: BTreeMap<NodeId, Vec<&NodeRecord>> = BTreeMap::new();
    for node in core.nodes().filter(|node| !node.in_handshake()) {
        groups.entry(shard_of(core, node)).or_default().push(node);
    }
    let mut shards: Vec<ShardView> = groups
        .into_iter()
        .map(|(shard_id, mut members)| {
            // Stable sort: masters first, id order kept within each role.
            members.sort_by_key(|node| !node.is_master());
            let slots = members
                .iter()
                .filter(|node| node.is_master())
                .flat_map(|node| owned.remove(&node.id).unwrap_or_default())
                .collect();
            ShardView {
                shard_id,
                slots: normalize_ranges(slots),
                nodes: members
                    .into_iter()
                    .map(|node| shard_node(node, preferred))
                    .collect(),
            }
        })
        .collect();
    shards.sort_by_key(|shard| {
        let first = shard
            .slots
            .first()
            .map_or(u32::MAX, |range| u32::from(range.start));
        (first, shard.shard_id)
    });
    shards
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::myid;
    use crate::views::testing::{core, hex, id};

    /// A shard as (id, slots, nodes as (id, role, offset, health, endpoint)).
    type ShardSummary<'a> = (
        NodeId,
        Vec<SlotRange>,
        Vec<(NodeId, &'a str, u64, &'a str, &'a str)>,
    );

    #[test]
    fn cluster_shards_groups_nodes_by_shard_with_role_offset_and_health() {
        let shards = cluster_shards(&core(0xaa), PreferredEndpoint::Hostname);
        let summary: Vec<ShardSummary> = shards
            .iter()
            .map(|shard| {
                let nodes = shard
                    .nodes
                    .iter()
                    .map(|node| {
                        (
                            node.id,
                            node.role.as_str(),
                            node.replication_offset,
                            node.health.as_str(),
                            node.endpoint.as_str(),
                        )
                    })
                    .collect();
                (shard.shard_id, shard.slots.clone(), nodes)
            })
            .collect();
        let range = |start, end| SlotRange { start, end };
        assert_eq!(
            summary,
            vec![
                (
                    id(0x11),
                    vec![range(0, 5460), range(5462, 5462)],
                    vec![
                        (id(0xaa), "master", 500, "online", "host-a.example"),
                        (id(0xcc), "replica", 100, "online", "?"),
                        (id(0xdd), "replica", 0, "loading", "?"),
                    ]
                ),
                (
                    id(0xbb),
                    vec![range(5461, 5461), range(5463, 10922)],
                    vec![
                        (id(0xbb), "master", 0, "fail", "?"),
                        (id(0xee), "replica", 50, "fail", "?"),
                    ]
                ),
                (
                    id(0xff),
                    vec![],
                    vec![(id(0xff), "master", 0, "online", "?")]
                ),
            ]
        );
        let first = &shards[0].nodes[0];
        assert_eq!(first.hostname.as_deref(), Some("host-a.example"));
        assert_eq!((first.ip.as_str(), first.port), ("127.0.0.1", 30001));
        assert_eq!(shards[0].nodes[1].hostname, None);
    }

    #[test]
    fn myid_and_myshardid_name_this_node_and_its_masters_shard() {
        let master = core(0xaa);
        assert_eq!(myid(&master), hex(0xaa));
        assert_eq!(myshardid(&master), hex(0x11));
        let replica = core(0xee);
        assert_eq!(myid(&replica), hex(0xee));
        assert_eq!(myshardid(&replica), hex(0xbb));
    }
}
