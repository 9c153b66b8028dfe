//! Test fixtures of the views: one small cluster seen from any of its nodes.

use crate::core::node::{LinkState, NodeFlags, NodeRecord};
pub(crate) use crate::core::testing::id;
use crate::core::{Config, Core, NodesConf};

/// The caller's Unix time the views are asked at, in ms.
pub(crate) const UNIX_NOW_MS: u64 = 1_700_000_000_000;

/// The hex form of `id(byte)`.
pub(crate) fn hex(byte: u8) -> String {
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
pub(crate) fn conf(myself: u8) -> NodesConf {
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

/// The fixture's cluster as node `myself` sees it.
pub(crate) fn core(myself: u8) -> Core {
    restored(conf(myself), 1_000)
}

/// `conf` restored by a node started at the address its `myself` line names (a restart
/// announces the address it was started with).
pub(crate) fn restored(conf: NodesConf, now_ms: u64) -> Core {
    let myself = conf
        .nodes
        .iter()
        .find(|node| node.flags.contains(crate::core::node::NodeFlags::MYSELF))
        .expect("the fixture names myself");
    let config = Config {
        ip: myself.ip.clone(),
        hostname: myself.hostname.clone(),
        client_port: myself.client_port,
        bus_port: myself.bus_port,
        ..Config::default()
    };
    Core::restore(config, conf, now_ms).unwrap()
}
