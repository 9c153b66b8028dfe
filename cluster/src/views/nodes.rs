//! CLUSTER NODES, CLUSTER REPLICAS and CLUSTER MYID.
//!
//! A node line is the nodes.conf line writer's ([`crate::core::nodes_conf`]) with the
//! hostname shown only when set, no aux fields, and ping/pong times in Unix ms.

use crate::core::node::{NodeId, NodeRecord};
use crate::core::nodes_conf::{write_node_line, HostnameStyle, NodeLine};
use crate::core::slots::{Slot, SlotRange, SlotState};
use crate::core::Core;
use crate::views::{ranges_by_owner, ViewError};

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
    let open = core.slot_table().open_slots();
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

/// CLUSTER MYID: this node's id as 40 hex characters.
pub fn myid(core: &Core) -> String {
    core.myself_id().to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::node::LinkState;
    use crate::core::Config;
    use crate::views::testing::{conf, core, hex, id, restored, UNIX_NOW_MS};

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
        let text = cluster_nodes(&restored(conf, 1_000), 0);
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
}
