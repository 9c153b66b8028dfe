//! CLUSTER SLOTS: each maximal range of slots with one owner, its master then its replicas.

use crate::core::node::{NodeId, NodeRecord};
use crate::core::slots::Slot;
use crate::core::Core;
use crate::views::{hostname_of, PreferredEndpoint};

/// One node of a CLUSTER SLOTS entry: `[endpoint, port, id, {other endpoints}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotsNode {
    /// The preferred endpoint: IP, hostname (`?` when none), or `None` (nil) for
    /// [`PreferredEndpoint::UnknownEndpoint`].
    pub endpoint: Option<String>,
    /// Client port.
    pub port: u16,
    /// Node id.
    pub id: NodeId,
    /// The map's `ip` entry: present unless the IP is the preferred endpoint.
    pub ip: Option<String>,
    /// The map's `hostname` entry: present when set and not the preferred endpoint.
    pub hostname: Option<String>,
}

/// One CLUSTER SLOTS element: a contiguous range with one owner, its master then replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotsEntry {
    /// First slot.
    pub start: Slot,
    /// Last slot (inclusive).
    pub end: Slot,
    /// The master owning the range.
    pub master: SlotsNode,
    /// Replicas that are not FAIL and have a non-zero replication offset.
    pub replicas: Vec<SlotsNode>,
}

fn slots_node(node: &NodeRecord, preferred: PreferredEndpoint) -> SlotsNode {
    SlotsNode {
        endpoint: preferred.endpoint_of(node),
        port: node.client_port,
        id: node.id,
        ip: (preferred != PreferredEndpoint::Ip).then(|| node.ip.clone()),
        hostname: hostname_of(node).filter(|_| preferred != PreferredEndpoint::Hostname),
    }
}

/// A replica CLUSTER SLOTS lists: not FAIL and done with its first sync (offset ≠ 0).
fn is_replica_available(replica: &NodeRecord) -> bool {
    !replica.is_failed() && replica.repl_offset != 0
}

/// CLUSTER SLOTS: one entry per maximal range of slots owned by one master, in slot order.
pub fn cluster_slots(core: &Core, preferred: PreferredEndpoint) -> Vec<SlotsEntry> {
    core.slot_table()
        .owner_ranges()
        .into_iter()
        .filter_map(|(range, owner)| {
            let master = core.node(&owner).filter(|node| node.is_master())?;
            Some(SlotsEntry {
                start: range.start,
                end: range.end,
                master: slots_node(master, preferred),
                replicas: core
                    .replicas_of(&owner)
                    .filter(|replica| is_replica_available(replica))
                    .map(|replica| slots_node(replica, preferred))
                    .collect(),
            })
        })
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::testing::{core, id};

    fn slots_node(
        byte: u8,
        endpoint: Option<&str>,
        ip: Option<&str>,
        hostname: Option<&str>,
    ) -> SlotsNode {
        SlotsNode {
            endpoint: endpoint.map(str::to_string),
            port: 30000 + u16::from(byte - 0xaa) / 0x11 + 1,
            id: id(byte),
            ip: ip.map(str::to_string),
            hostname: hostname.map(str::to_string),
        }
    }

    #[test]
    fn cluster_slots_lists_ranges_with_master_and_available_replicas() {
        let entries = cluster_slots(&core(0xaa), PreferredEndpoint::Ip);
        let a = slots_node(0xaa, Some("127.0.0.1"), None, Some("host-a.example"));
        let b = slots_node(0xbb, Some("127.0.0.1"), None, None);
        let c = slots_node(0xcc, Some("127.0.0.1"), None, None);
        let entry = |start, end, master: &SlotsNode, replicas: Vec<SlotsNode>| SlotsEntry {
            start,
            end,
            master: master.clone(),
            replicas,
        };
        assert_eq!(
            entries,
            vec![
                entry(0, 5460, &a, vec![c.clone()]),
                entry(5461, 5461, &b, vec![]),
                entry(5462, 5462, &a, vec![c]),
                entry(5463, 10922, &b, vec![]),
            ]
        );
    }

    #[test]
    fn cluster_slots_endpoints_follow_the_preferred_type() {
        let core = core(0xaa);
        let hostname = cluster_slots(&core, PreferredEndpoint::Hostname);
        assert_eq!(
            hostname[0].master,
            slots_node(0xaa, Some("host-a.example"), Some("127.0.0.1"), None)
        );
        assert_eq!(
            hostname[1].master,
            slots_node(0xbb, Some("?"), Some("127.0.0.1"), None)
        );
        let unknown = cluster_slots(&core, PreferredEndpoint::UnknownEndpoint);
        assert_eq!(
            unknown[0].master,
            slots_node(0xaa, None, Some("127.0.0.1"), Some("host-a.example"))
        );
    }
}
