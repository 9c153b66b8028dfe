//! Read-only views of the core in Redis's exact formats: CLUSTER NODES, SLOTS, SHARDS, INFO.
//!
//! Every function here takes a `&Core` and reads it through its public accessors; nothing
//! changes state and nothing does IO. Text replies (NODES, INFO, REPLICAS) come out as
//! Redis prints them; array replies (SLOTS, SHARDS) come out typed ([`SlotsEntry`],
//! [`ShardView`]) for a RESP gateway to encode. The core's clock is monotonic, so views
//! that show wall-clock times take `unix_now_ms`, the caller's Unix time in milliseconds.
//!
//! Where Redis iterates a hash table (random order), these views use a stable order:
//! nodes by id, slot ranges by first slot, shards by first slot then shard id.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::core::node::{FailureReport, NodeFlags, NodeId, NodeRecord};
use crate::core::persist::{normalize_ranges, write_node_line, HostnameStyle, NodeLine};
use crate::core::slots::{Slot, SlotRange, SlotState};
use crate::core::wire::MessageType;
use crate::core::{ClusterState, Core};

/// Redis's `CLUSTER_FAIL_REPORT_VALIDITY_MULT`: a failure report counts for this many node
/// timeouts.
pub const FAIL_REPORT_VALIDITY_MULT: u64 = 2;

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

/// Converts a core time (monotonic ms) to Unix ms; 0 stays 0 ("none pending").
fn to_unix_ms(core: &Core, time_ms: u64, unix_now_ms: u64) -> u64 {
    if time_ms == 0 {
        return 0;
    }
    let now_ms = core.now_ms();
    if time_ms <= now_ms {
        unix_now_ms.saturating_sub(now_ms - time_ms)
    } else {
        unix_now_ms.saturating_add(time_ms - now_ms)
    }
}

/// Each slot owner's ranges, from one scan of the slot table.
fn ranges_by_owner(core: &Core) -> BTreeMap<NodeId, Vec<SlotRange>> {
    let mut owned: BTreeMap<NodeId, Vec<SlotRange>> = BTreeMap::new();
    for (range, owner) in core.slot_table().owner_ranges() {
        owned.entry(owner).or_default().push(range);
    }
    owned
}

/// Myself's open slots in slot order.
fn open_slots(core: &Core) -> Vec<(Slot, SlotState)> {
    let table = core.slot_table();
    let mut open: Vec<(Slot, SlotState)> = table
        .migrating()
        .map(|(slot, target)| (slot, SlotState::Migrating(target)))
        .chain(
            table
                .importing()
                .map(|(slot, source)| (slot, SlotState::Importing(source))),
        )
        .collect();
    open.sort_by_key(|(slot, _)| *slot);
    open
}

/// One CLUSTER NODES line (no newline) for `node`.
fn node_description(
    core: &Core,
    node: &NodeRecord,
    slots: &[SlotRange],
    open: &[(Slot, SlotState)],
    unix_now_ms: u64,
) -> String {
    let mut line = String::new();
    write_node_line(
        &mut line,
        &NodeLine {
            node,
            style: HostnameStyle::WhenSet,
            ping_sent_ms: to_unix_ms(core, node.ping_sent_ms, unix_now_ms),
            pong_received_ms: to_unix_ms(core, node.pong_received_ms, unix_now_ms),
            config_epoch: core.node_epoch(&node.id),
            slots,
            open_slots: open,
        },
    );
    line
}

/// CLUSTER NODES: one line per known node (handshake nodes included, as Redis does), each
/// ending with `\n`, in id order. `unix_now_ms` converts ping/pong times to Unix ms.
pub fn cluster_nodes(core: &Core, unix_now_ms: u64) -> String {
    let owned = ranges_by_owner(core);
    let open = open_slots(core);
    let mut text = String::new();
    for node in core.nodes() {
        let slots = owned.get(&node.id).map_or(&[][..], Vec::as_slice);
        text.push_str(&node_description(core, node, slots, &open, unix_now_ms));
        text.push('\n');
    }
    text
}

/// CLUSTER REPLICAS `<id>`: the CLUSTER NODES line (without newline) of each replica of
/// `master`, in id order.
pub fn cluster_replicas(
    core: &Core,
    master: &NodeId,
    unix_now_ms: u64,
) -> Result<Vec<String>, ViewError> {
    let record = core.node(master).ok_or(ViewError::UnknownNode(*master))?;
    if !record.is_master() {
        return Err(ViewError::NotAMaster(*master));
    }
    Ok(core
        .replicas_of(master)
        .map(|replica| node_description(core, replica, &[], &[], unix_now_ms))
        .collect())
}

/// CLUSTER COUNT-FAILURE-REPORTS `<id>`: failure reports about `id` younger than
/// [`FAIL_REPORT_VALIDITY_MULT`] node timeouts.
pub fn count_failure_reports(core: &Core, id: &NodeId) -> Result<usize, ViewError> {
    let record = core.node(id).ok_or(ViewError::UnknownNode(*id))?;
    let validity_ms = core
        .config()
        .node_timeout_ms
        .saturating_mul(FAIL_REPORT_VALIDITY_MULT);
    Ok(count_valid_reports(
        &record.failure_reports,
        core.now_ms(),
        validity_ms,
    ))
}

/// Reports no older than `validity_ms` at `now_ms`.
fn count_valid_reports(reports: &[FailureReport], now_ms: u64, validity_ms: u64) -> usize {
    reports
        .iter()
        .filter(|report| now_ms.saturating_sub(report.time_ms) <= validity_ms)
        .count()
}

/// CLUSTER MYID: this node's id as 40 hex characters.
pub fn myid(core: &Core) -> String {
    core.myself_id().to_hex()
}

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
    let hostname = (!node.hostname.is_empty()).then(|| node.hostname.clone());
    let endpoint = match preferred {
        PreferredEndpoint::Ip => Some(node.ip.clone()),
        PreferredEndpoint::Hostname => Some(hostname.clone().unwrap_or_else(|| "?".to_string())),
        PreferredEndpoint::UnknownEndpoint => None,
    };
    SlotsNode {
        endpoint,
        port: node.client_port,
        id: node.id,
        ip: (preferred != PreferredEndpoint::Ip).then(|| node.ip.clone()),
        hostname: hostname.filter(|_| preferred != PreferredEndpoint::Hostname),
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
    let hostname = (!node.hostname.is_empty()).then(|| node.hostname.clone());
    let endpoint = match preferred {
        PreferredEndpoint::Ip => node.ip.clone(),
        PreferredEndpoint::Hostname => hostname.clone().unwrap_or_else(|| "?".to_string()),
        PreferredEndpoint::UnknownEndpoint => String::new(),
    };
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
        endpoint,
        hostname,
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

/// CLUSTER INFO as typed fields; [`ClusterInfo::render`] prints Redis's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `cluster_state`.
    pub state: ClusterState,
    /// `cluster_slots_assigned`: slots with an owner.
    pub slots_assigned: usize,
    /// `cluster_slots_ok`: assigned slots whose owner is neither PFAIL nor FAIL.
    pub slots_ok: usize,
    /// `cluster_slots_pfail`: slots whose owner is PFAIL (and not FAIL).
    pub slots_pfail: usize,
    /// `cluster_slots_fail`: slots whose owner is FAIL.
    pub slots_fail: usize,
    /// `cluster_known_nodes`: every node in the table, handshake nodes included.
    pub known_nodes: usize,
    /// `cluster_size`: masters owning at least one slot.
    pub size: usize,
    /// `cluster_current_epoch`.
    pub current_epoch: u64,
    /// `cluster_my_epoch`: myself's configEpoch (its master's for a replica).
    pub my_epoch: u64,
    /// Messages sent per type, indexed by [`MessageType::index`].
    pub messages_sent: [u64; MessageType::COUNT],
    /// Messages received per type, indexed by [`MessageType::index`].
    pub messages_received: [u64; MessageType::COUNT],
    /// `total_cluster_links_buffer_limit_exceeded`: the core has no link buffers, always 0.
    pub links_buffer_limit_exceeded: u64,
}

impl ClusterInfo {
    /// Reads the fields from `core`.
    pub fn from_core(core: &Core) -> ClusterInfo {
        let table = core.slot_table();
        let owners = table.owners_with_counts().map(|(owner, count)| {
            let flags = core.node(owner).map(|node| node.flags).unwrap_or_default();
            (flags, count as usize)
        });
        let tally = SlotTally::of_owners(owners);
        ClusterInfo {
            state: core.cluster_state(),
            slots_assigned: table.assigned_count(),
            slots_ok: tally.ok,
            slots_pfail: tally.pfail,
            slots_fail: tally.fail,
            known_nodes: core.nodes().count(),
            size: tally.masters,
            current_epoch: core.current_epoch(),
            my_epoch: core.node_epoch(&core.myself_id()),
            messages_sent: core.stats().sent,
            messages_received: core.stats().received,
            links_buffer_limit_exceeded: 0,
        }
    }

    /// The CLUSTER INFO text: Redis's field order, `\r\n` line ends, per-type message
    /// counters only when non-zero.
    pub fn render(&self) -> String {
        let state = match self.state {
            ClusterState::Ok => "ok",
            ClusterState::Fail => "fail",
        };
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "cluster_state:{state}\r\n\
             cluster_slots_assigned:{}\r\n\
             cluster_slots_ok:{}\r\n\
             cluster_slots_pfail:{}\r\n\
             cluster_slots_fail:{}\r\n\
             cluster_known_nodes:{}\r\n\
             cluster_size:{}\r\n\
             cluster_current_epoch:{}\r\n\
             cluster_my_epoch:{}\r\n",
            self.slots_assigned,
            self.slots_ok,
            self.slots_pfail,
            self.slots_fail,
            self.known_nodes,
            self.size,
            self.current_epoch,
            self.my_epoch,
        );
        write_message_counters(&mut text, "sent", &self.messages_sent);
        write_message_counters(&mut text, "received", &self.messages_received);
        let _ = write!(
            text,
            "total_cluster_links_buffer_limit_exceeded:{}\r\n",
            self.links_buffer_limit_exceeded
        );
        text
    }
}

/// Slots by their owner's health, and the masters owning slots.
#[derive(Debug, Default, PartialEq, Eq)]
struct SlotTally {
    ok: usize,
    pfail: usize,
    fail: usize,
    masters: usize,
}

impl SlotTally {
    /// Tallies `(owner flags, slots owned)` pairs, one per owner.
    fn of_owners(owners: impl Iterator<Item = (NodeFlags, usize)>) -> SlotTally {
        let mut tally = SlotTally::default();
        for (flags, count) in owners {
            if flags.contains(NodeFlags::FAIL) {
                tally.fail += count;
            } else if flags.contains(NodeFlags::PFAIL) {
                tally.pfail += count;
            } else {
                tally.ok += count;
            }
            if flags.contains(NodeFlags::MASTER) {
                tally.masters += 1;
            }
        }
        tally
    }
}

fn write_message_counters(text: &mut String, direction: &str, counts: &[u64; MessageType::COUNT]) {
    for message_type in MessageType::ALL {
        let count = counts[message_type.index()];
        if count != 0 {
            let name = message_type.stats_name();
            let _ = write!(
                text,
                "cluster_stats_messages_{name}_{direction}:{count}\r\n"
            );
        }
    }
    let total = counts
        .iter()
        .fold(0u64, |total, count| total.saturating_add(*count));
    let _ = write!(text, "cluster_stats_messages_{direction}:{total}\r\n");
}

/// CLUSTER INFO text (see [`ClusterInfo`]).
pub fn cluster_info(core: &Core) -> String {
    ClusterInfo::from_core(core).render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::node::LinkState;
    use crate::core::{Config, NodesConf};

    const UNIX_NOW_MS: u64 = 1_700_000_000_000;

    fn id(byte: u8) -> NodeId {
        NodeId([byte; 20])
    }

    fn hex(byte: u8) -> String {
        id(byte).to_hex()
    }

    fn record(byte: u8, flags: NodeFlags, port: u16, master: Option<u8>) -> NodeRecord {
        let mut node = NodeRecord::new(id(byte), "127.0.0.1", port, port + 10_000, 0);
        node.flags = flags;
        node.master_id = master.map(id);
        node
    }

    /// Myself (aa) and bb own slots; cc (synced) and dd (syncing) replicate aa; ee (FAIL)
    /// replicates bb (FAIL); ff is a slotless master; 10923-16383 are unassigned.
    fn conf(myself: u8) -> NodesConf {
        let mut aa = record(0xaa, NodeFlags::MASTER, 30001, None);
        aa.hostname = "host-a.example".to_string();
        aa.config_epoch = 1;
        aa.shard_id = Some(id(0x11));
        aa.repl_offset = 500;
        let mut bb = record(0xbb, NodeFlags::MASTER | NodeFlags::FAIL, 30002, None);
        bb.config_epoch = 2;
        bb.link = LinkState::Disconnected;
        let mut cc = record(
            0xcc,
            NodeFlags::REPLICA | NodeFlags::NOFAILOVER,
            30003,
            Some(0xaa),
        );
        cc.repl_offset = 100;
        cc.shard_id = Some(id(0x11));
        let mut dd = record(0xdd, NodeFlags::REPLICA, 30004, Some(0xaa));
        dd.shard_id = Some(id(0x11));
        let mut ee = record(
            0xee,
            NodeFlags::REPLICA | NodeFlags::FAIL,
            30005,
            Some(0xbb),
        );
        ee.repl_offset = 50;
        let ff = record(0xff, NodeFlags::MASTER, 30006, None);
        let mut nodes = vec![aa, bb, cc, dd, ee, ff];
        for node in &mut nodes {
            if node.id == id(myself) {
                node.flags.insert(NodeFlags::MYSELF);
            }
        }
        NodesConf {
            nodes,
            slot_owners: crate::core::testing::two_master_slot_owners(),
            migrating: vec![(100, id(0xbb))],
            importing: vec![(5463, id(0xbb))],
            current_epoch: 7,
            last_vote_epoch: 5,
        }
    }

    fn core(myself: u8) -> Core {
        Core::restore(Config::default(), conf(myself), 1_000).unwrap()
    }

    #[test]
    fn cluster_nodes_prints_redis_lines_in_id_order() {
        let expected = format!(
            "{a} 127.0.0.1:30001@40001,host-a.example myself,master - 0 0 1 connected 0-5460 5462 [100->-{b}] [5463-<-{b}]\n\
             {b} 127.0.0.1:30002@40002 master,fail - 0 0 2 disconnected 5461 5463-10922\n\
             {c} 127.0.0.1:30003@40003 slave,nofailover {a} 0 0 1 connected\n\
             {d} 127.0.0.1:30004@40004 slave {a} 0 0 1 connected\n\
             {e} 127.0.0.1:30005@40005 slave,fail {b} 0 0 2 connected\n\
             {f} 127.0.0.1:30006@40006 master - 0 0 0 connected\n",
            a = hex(0xaa),
            b = hex(0xbb),
            c = hex(0xcc),
            d = hex(0xdd),
            e = hex(0xee),
            f = hex(0xff),
        );
        assert_eq!(cluster_nodes(&core(0xaa), UNIX_NOW_MS), expected);
    }

    #[test]
    fn cluster_nodes_shows_open_slots_only_on_myself_and_links_of_myself_as_connected() {
        let mut conf = conf(0xbb);
        conf.nodes[1].link = LinkState::Disconnected;
        let text = cluster_nodes(&Core::restore(Config::default(), conf, 1_000).unwrap(), 0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("connected 0-5460 5462"), "{}", lines[0]);
        assert!(lines[1].contains("myself,master,fail - 0 0 2 connected 5461 5463-10922 [100->-"));
    }

    #[test]
    fn core_times_convert_to_unix_milliseconds() {
        let core = Core::new(Config::default(), 10_000);
        assert_eq!(to_unix_ms(&core, 0, UNIX_NOW_MS), 0);
        assert_eq!(to_unix_ms(&core, 9_000, UNIX_NOW_MS), UNIX_NOW_MS - 1_000);
        assert_eq!(to_unix_ms(&core, 12_000, UNIX_NOW_MS), UNIX_NOW_MS + 2_000);
        assert_eq!(to_unix_ms(&core, 1, 5), 0);
        assert_eq!(to_unix_ms(&core, u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn cluster_replicas_lists_replica_lines_of_a_master() {
        let core = core(0xaa);
        let lines = cluster_replicas(&core, &id(0xaa), UNIX_NOW_MS).unwrap();
        assert_eq!(
            lines,
            vec![
                format!(
                    "{} 127.0.0.1:30003@40003 slave,nofailover {} 0 0 1 connected",
                    hex(0xcc),
                    hex(0xaa)
                ),
                format!(
                    "{} 127.0.0.1:30004@40004 slave {} 0 0 1 connected",
                    hex(0xdd),
                    hex(0xaa)
                ),
            ]
        );
        assert!(cluster_replicas(&core, &id(0xff), 0).unwrap().is_empty());
        assert_eq!(
            cluster_replicas(&core, &id(0xcc), 0),
            Err(ViewError::NotAMaster(id(0xcc)))
        );
        assert_eq!(
            cluster_replicas(&core, &id(0x01), 0),
            Err(ViewError::UnknownNode(id(0x01)))
        );
        assert_eq!(
            ViewError::UnknownNode(id(0x01)).to_string(),
            format!("Unknown node {}", hex(0x01))
        );
    }

    #[test]
    fn cluster_info_prints_every_field_in_redis_order() {
        let expected = "cluster_state:fail\r\n\
                        cluster_slots_assigned:10923\r\n\
                        cluster_slots_ok:5462\r\n\
                        cluster_slots_pfail:0\r\n\
                        cluster_slots_fail:5461\r\n\
                        cluster_known_nodes:6\r\n\
                        cluster_size:2\r\n\
                        cluster_current_epoch:7\r\n\
                        cluster_my_epoch:1\r\n\
                        cluster_stats_messages_sent:0\r\n\
                        cluster_stats_messages_received:0\r\n\
                        total_cluster_links_buffer_limit_exceeded:0\r\n";
        assert_eq!(cluster_info(&core(0xaa)), expected);
    }

    #[test]
    fn cluster_info_shows_only_non_zero_message_types_then_totals() {
        let mut info = ClusterInfo::from_core(&core(0xaa));
        info.state = ClusterState::Ok;
        info.messages_sent[MessageType::Ping.index()] = 10;
        info.messages_sent[MessageType::FailoverAuthRequest.index()] = 2;
        info.messages_received[MessageType::Pong.index()] = 7;
        info.messages_received[MessageType::MfStart.index()] = 1;
        let text = info.render();
        let tail: Vec<&str> = text.split("\r\n").skip(9).collect();
        assert!(text.starts_with("cluster_state:ok\r\n"));
        assert_eq!(
            tail,
            vec![
                "cluster_stats_messages_ping_sent:10",
                "cluster_stats_messages_auth-req_sent:2",
                "cluster_stats_messages_sent:12",
                "cluster_stats_messages_pong_received:7",
                "cluster_stats_messages_mfstart_received:1",
                "cluster_stats_messages_received:8",
                "total_cluster_links_buffer_limit_exceeded:0",
                "",
            ]
        );
    }

    #[test]
    fn slot_health_counts_fail_before_pfail_and_only_masters_for_size() {
        let owners = [
            (NodeFlags::MASTER, 10),
            (NodeFlags::MASTER | NodeFlags::PFAIL, 20),
            (NodeFlags::MASTER | NodeFlags::PFAIL | NodeFlags::FAIL, 40),
            (NodeFlags::REPLICA, 80),
        ];
        let tally = SlotTally::of_owners(owners.into_iter());
        let expected = SlotTally {
            ok: 90,
            pfail: 20,
            fail: 40,
            masters: 3,
        };
        assert_eq!(tally, expected);
    }

    #[test]
    fn a_replicas_my_epoch_is_its_masters() {
        let core = Core::restore(Config::default(), conf(0xcc), 0).unwrap();
        let info = ClusterInfo::from_core(&core);
        assert_eq!(
            (info.slots_ok, info.slots_pfail, info.slots_fail),
            (5462, 0, 5461)
        );
        assert_eq!(info.my_epoch, 1);
        let info = ClusterInfo::from_core(&Core::new(Config::default(), 0));
        assert_eq!(
            (info.slots_assigned, info.size, info.known_nodes),
            (0, 0, 1)
        );
    }

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

    #[test]
    fn count_failure_reports_counts_only_reports_within_validity() {
        let reports: Vec<FailureReport> = [100, 500, 1_000]
            .into_iter()
            .map(|time_ms| FailureReport {
                reporter: id(time_ms as u8),
                time_ms,
            })
            .collect();
        assert_eq!(count_valid_reports(&reports, 1_100, 600), 2);
        assert_eq!(count_valid_reports(&reports, 1_000, 900), 3);
        assert_eq!(count_valid_reports(&reports, 0, 0), 3);
        let core = core(0xaa);
        assert_eq!(count_failure_reports(&core, &id(0xbb)), Ok(0));
        assert_eq!(
            count_failure_reports(&core, &id(0x02)),
            Err(ViewError::UnknownNode(id(0x02)))
        );
    }
}
