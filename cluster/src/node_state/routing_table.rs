//! The slot map the data path reads, published by the driver after each change.
//!
//! Two layers: per-slot atomics ([`RoutingCell::is_local`]) that the local fast path reads
//! without any lock, and an immutable [`RoutingTable`] behind an `Arc` that the slower paths
//! (forwarding, serving forwarded requests) clone out of a briefly held read lock. The driver
//! builds a new table from the core and swaps it in; readers never block the driver for
//! longer than an `Arc` clone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use slotkv_engine::{Slot, SLOT_COUNT};
use slotkv_transport::PeerAddr;

use crate::core::node::NodeId;
use crate::core::slots::SlotState;
use crate::core::{ClusterState, Core};

/// Marker for "no owner" in [`RoutingTable`]'s owner array.
const NO_OWNER: u16 = u16::MAX;

/// Per-slot bit: this node masters the slot and it is stable.
const SLOT_LOCAL_MASTER: u8 = 1;
/// Per-slot bit: this node replicates the slot's owner.
const SLOT_LOCAL_REPLICA: u8 = 2;

/// Global bit: `cluster_state` is ok.
const FLAG_CLUSTER_OK: u8 = 1;
/// Global bit: this node accepts writes (master, state ok, not paused).
const FLAG_WRITABLE: u8 = 2;
/// Global bit: `cluster-allow-reads-when-down`.
const FLAG_READS_WHEN_DOWN: u8 = 4;

/// A node as the data path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteNode {
    /// Its id.
    pub(crate) id: NodeId,
    /// Its bus address (requests go there).
    pub(crate) address: PeerAddr,
    /// Its client (RESP) address, `ip:client_port`, as redirections to clients name it.
    pub(crate) client_address: String,
    /// True for a master.
    pub(crate) is_master: bool,
    /// True when PFAIL or FAIL.
    pub(crate) failing: bool,
    /// For a replica, its master.
    pub(crate) master: Option<NodeId>,
}

/// `ip:client_port` of `node`; the host of its bus address `bus` when it has no IP yet.
fn client_address(node: &crate::core::node::NodeRecord, bus: &PeerAddr) -> String {
    let host = if node.ip.is_empty() {
        bus.host_and_port().map_or("", |(host, _)| host)
    } else {
        node.ip.as_str()
    };
    format!("{host}:{}", node.client_port)
}

/// Whether two hosts name the same one: equal text, or equal IP addresses (an IPv6 one may
/// come in brackets).
fn same_host(left: &str, right: &str) -> bool {
    let unbracketed = |host: &str| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    };
    let (left, right) = (unbracketed(left), unbracketed(right));
    if left.eq_ignore_ascii_case(&right) {
        return true;
    }
    match (
        left.parse::<std::net::IpAddr>(),
        right.parse::<std::net::IpAddr>(),
    ) {
        (Ok(left), Ok(right)) => left == right,
        _ => false,
    }
}

/// An immutable snapshot of the slot map and of what this node may serve.
#[derive(Debug, Clone)]
pub(crate) struct RoutingTable {
    /// This node's id.
    pub(crate) myself: NodeId,
    /// True when this node is a master.
    pub(crate) myself_is_master: bool,
    /// The master this node replicates, if a replica.
    pub(crate) my_master: Option<NodeId>,
    /// `cluster_state` is ok.
    pub(crate) cluster_ok: bool,
    /// This node accepts writes.
    pub(crate) accepts_writes: bool,
    /// False while this master withholds its slots after a restart without data: it
    /// neither serves them nor ships its engine to a replica.
    pub(crate) serves_data: bool,
    /// The master this node was promoted in place of is away from the shard
    /// ([`crate::core::Core::former_master_away`]).
    pub(crate) former_master_away: bool,
    /// `cluster-allow-reads-when-down`.
    pub(crate) allow_reads_when_down: bool,
    owners: Vec<u16>,
    states: HashMap<Slot, SlotState>,
    nodes: Vec<RouteNode>,
}

impl RoutingTable {
    /// Builds the table from the core's view.
    pub(crate) fn from_core(core: &Core, my_address: &PeerAddr) -> RoutingTable {
        let nodes: Vec<RouteNode> = core
            .nodes()
            .filter(|node| !node.in_handshake())
            .filter_map(|node| {
                let address = if node.id == core.myself_id() {
                    my_address.clone()
                } else {
                    PeerAddr::new(node.bus_address()).ok()?
                };
                Some(RouteNode {
                    id: node.id,
                    client_address: client_address(node, &address),
                    address,
                    is_master: node.is_master(),
                    failing: node.is_failing(),
                    master: node.master_id.filter(|_| node.is_replica()),
                })
            })
            .collect();
        let index: HashMap<NodeId, u16> = nodes
            .iter()
            .enumerate()
            .map(|(position, node)| (node.id, position as u16))
            .collect();
        let table = core.slot_table();
        let mut owners = vec![NO_OWNER; SLOT_COUNT];
        for (range, owner) in table.owner_ranges() {
            let Some(position) = index.get(&owner).copied() else {
                continue;
            };
            for slot in range.slots() {
                owners[usize::from(slot)] = position;
            }
        }
        let states = table.open_slots().into_iter().collect();
        RoutingTable {
            myself: core.myself_id(),
            myself_is_master: core.myself().is_master(),
            my_master: core.my_master(),
            cluster_ok: core.cluster_state() == ClusterState::Ok,
            accepts_writes: core.accepts_writes(),
            serves_data: core.serves_data(),
            former_master_away: core.former_master_away().is_some(),
            allow_reads_when_down: core.config().allow_reads_when_down,
            owners,
            states,
            nodes,
        }
    }

    /// The client (RESP) address of node `id`, as MOVED and ASK name it.
    pub(crate) fn client_address(&self, id: &NodeId) -> Option<&str> {
        self.node(id).map(|node| node.client_address.as_str())
    }

    /// The owner of `slot`.
    pub(crate) fn owner(&self, slot: Slot) -> Option<&RouteNode> {
        let index = *self.owners.get(usize::from(slot))?;
        self.nodes.get(usize::from(index))
    }

    /// This node's migration state for `slot`.
    pub(crate) fn state(&self, slot: Slot) -> SlotState {
        self.states.get(&slot).copied().unwrap_or_default()
    }

    /// The node with this id.
    pub(crate) fn node(&self, id: &NodeId) -> Option<&RouteNode> {
        self.nodes.iter().find(|node| node.id == *id)
    }

    /// The node (past its handshake) whose client (RESP) address is `host:port`: the
    /// reverse of [`RoutingTable::client_address`]. Hosts are compared as text, or as IP
    /// addresses when both are (so `::1` and `[::1]` name one node); no name is resolved.
    pub(crate) fn node_at_client_address(&self, host: &str, port: u16) -> Option<&RouteNode> {
        self.nodes.iter().find(|node| {
            node.client_address
                .rsplit_once(':')
                .is_some_and(|(node_host, node_port)| {
                    node_port.parse::<u16>() == Ok(port) && same_host(node_host, host)
                })
        })
    }

    /// The node (past its handshake) at bus address `address`.
    pub(crate) fn node_at(&self, address: &PeerAddr) -> Option<&RouteNode> {
        self.nodes.iter().find(|node| node.address == *address)
    }

    /// Whether a node this one knows (past its handshake) is at `address`.
    pub(crate) fn knows_address(&self, address: &PeerAddr) -> bool {
        self.nodes.iter().any(|node| node.address == *address)
    }

    /// The ids of every replica of `master`, failing or not.
    pub(crate) fn replicas_of(&self, master: &NodeId) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|node| node.master == Some(*master))
            .map(|node| node.id)
            .collect()
    }

    /// The other members of this node's shard, failing or not: its replicas, and the
    /// master it was promoted in place of while that one is away
    /// ([`crate::core::Core::former_master_away`]).
    pub(crate) fn shard_members_besides_myself(&self) -> usize {
        self.replicas_of(&self.myself).len() + usize::from(self.former_master_away)
    }

    /// The replicas of `master` that are not failing.
    pub(crate) fn healthy_replicas_of(&self, master: &NodeId) -> Vec<&RouteNode> {
        self.nodes
            .iter()
            .filter(|node| node.master == Some(*master) && !node.failing)
            .collect()
    }

    /// The per-slot bits of every slot, in slot order.
    fn all_slot_bits(&self) -> Vec<u8> {
        let position_of = |id: Option<NodeId>| {
            id.and_then(|id| self.nodes.iter().position(|node| node.id == id))
                .map_or(NO_OWNER - 1, |position| position as u16)
        };
        // A master withholding its data serves no slot on the fast path.
        let mine = if self.myself_is_master && self.serves_data {
            position_of(Some(self.myself))
        } else {
            NO_OWNER - 1
        };
        let my_master = position_of(self.my_master);
        let mut bits: Vec<u8> = self
            .owners
            .iter()
            .map(|owner| {
                u8::from(*owner == mine) * SLOT_LOCAL_MASTER
                    + u8::from(*owner == my_master) * SLOT_LOCAL_REPLICA
            })
            .collect();
        for slot in self.states.keys() {
            bits[usize::from(*slot)] &= !SLOT_LOCAL_MASTER;
        }
        bits
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.cluster_ok {
            flags |= FLAG_CLUSTER_OK;
        }
        if self.accepts_writes {
            flags |= FLAG_WRITABLE;
        }
        if self.allow_reads_when_down {
            flags |= FLAG_READS_WHEN_DOWN;
        }
        flags
    }
}

/// The published slot map: lock-free per-slot bits plus the latest [`RoutingTable`].
pub(crate) struct RoutingCell {
    slots: Box<[AtomicU8]>,
    flags: AtomicU8,
    table: RwLock<Arc<RoutingTable>>,
}

impl RoutingCell {
    /// A cell holding `table`.
    pub(crate) fn new(table: RoutingTable) -> RoutingCell {
        let cell = RoutingCell {
            slots: (0..SLOT_COUNT).map(|_| AtomicU8::new(0)).collect(),
            flags: AtomicU8::new(0),
            table: RwLock::new(Arc::new(table.clone())),
        };
        cell.publish(table);
        cell
    }

    /// Publishes a new table (driver only).
    pub(crate) fn publish(&self, table: RoutingTable) {
        for (cell, bits) in self.slots.iter().zip(table.all_slot_bits()) {
            cell.store(bits, Ordering::Release);
        }
        self.flags.store(table.flags(), Ordering::Release);
        *self.table.write() = Arc::new(table);
    }

    /// The latest table.
    pub(crate) fn table(&self) -> Arc<RoutingTable> {
        Arc::clone(&self.table.read())
    }

    /// Lock-free: may this node execute the command on `slot` itself, straight on the
    /// engine? Writes need a stable mastered slot and a writable node; reads also accept a
    /// replica of the owner when `replica_reads` is set.
    pub(crate) fn is_local(&self, slot: Slot, write: bool, replica_reads: bool) -> bool {
        let bits = self.slots[usize::from(slot) % SLOT_COUNT].load(Ordering::Acquire);
        let flags = self.flags.load(Ordering::Acquire);
        if write {
            return bits & SLOT_LOCAL_MASTER != 0 && flags & FLAG_WRITABLE != 0;
        }
        let readable = flags & (FLAG_CLUSTER_OK | FLAG_READS_WHEN_DOWN) != 0;
        let mine =
            bits & SLOT_LOCAL_MASTER != 0 || (replica_reads && bits & SLOT_LOCAL_REPLICA != 0);
        readable && mine
    }
}

#[cfg(test)]
mod tests {
    use super::same_host;

    #[test]
    fn hosts_are_the_same_as_text_or_as_ip_addresses() {
        assert!(same_host("127.0.0.1", "127.0.0.1"));
        assert!(same_host("::1", "[::1]"));
        assert!(same_host("0:0::1", "::1"));
        assert!(same_host("Node-A.example", "node-a.example"));
        assert!(!same_host("127.0.0.1", "127.0.0.2"));
        assert!(!same_host("localhost", "127.0.0.1"), "no name is resolved");
    }
}
