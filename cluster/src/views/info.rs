//! CLUSTER INFO: typed fields ([`ClusterInfo`]) and Redis's text.

use std::fmt::Write as _;

use crate::core::node::NodeFlags;
use crate::core::wire::MessageType;
use crate::core::{ClusterState, Core};

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
    use crate::core::Config;
    use crate::views::testing::{conf, core, restored};

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
        let core = restored(conf(0xcc), 0);
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
}
