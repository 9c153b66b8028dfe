//! Test fixtures for the core's unit tests: cores with hand-made node tables and headers.

use crate::core::node::{NodeFlags, NodeId, NodeRecord};
use crate::core::slots::{Slot, SlotRange};
use crate::core::wire::Header;
use crate::core::{Config, Core, Output};

/// The id whose bytes are all `byte`.
pub(crate) fn id(byte: u8) -> NodeId {
    NodeId([byte; 20])
}

/// A core named `id(myself)` with node_timeout 1000 ms, at time 10 000 ms.
pub(crate) fn core(myself: u8) -> Core {
    let config = Config {
        node_timeout_ms: 1000,
        myself_id: Some(id(myself)),
        writable_delay_ms: 0,
        ip: format!("n{myself}"),
        bus_port: 17000,
        client_port: 7000,
        ..Config::default()
    };
    Core::new(config, 10_000)
}

/// Adds node `byte` as a master (or a replica of `master`) with a configEpoch.
pub(crate) fn add_node(core: &mut Core, byte: u8, master: Option<u8>, config_epoch: u64) {
    let now = core.now_ms;
    let mut record = NodeRecord::new(id(byte), &format!("n{byte}"), 7000, 17000, now);
    record.flags = if master.is_some() {
        NodeFlags::REPLICA
    } else {
        NodeFlags::MASTER
    };
    record.master_id = master.map(id);
    record.config_epoch = config_epoch;
    core.nodes.insert(id(byte), record);
}

/// Binds `slots` to node `owner`.
pub(crate) fn own(core: &mut Core, owner: u8, slots: std::ops::RangeInclusive<Slot>) {
    for slot in slots {
        core.slots.set_owner(slot, Some(id(owner)));
    }
}

/// A header as node `sender` would send it.
pub(crate) fn header(
    sender: u8,
    master: Option<u8>,
    config_epoch: u64,
    slots: &[SlotRange],
) -> Header {
    Header {
        sender: id(sender),
        current_epoch: config_epoch,
        config_epoch,
        repl_offset: 0,
        flags: if master.is_some() {
            NodeFlags::REPLICA
        } else {
            NodeFlags::MASTER
        },
        master_id: master.map(id),
        slots: slots.to_vec(),
        ip: format!("n{sender}"),
        hostname: String::new(),
        client_port: 7000,
        bus_port: 17000,
        cluster_ok: true,
        mflags: 0,
        shard_id: None,
    }
}

/// Drains the output queue.
pub(crate) fn drain(core: &mut Core) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// Slot owners of the nodes.conf and views golden fixtures: 0xaa owns 0-5460 and 5462, 0xbb owns
/// 5461 and 5463-10922 (single-slot ranges exercise range rendering).
pub(crate) fn two_master_slot_owners() -> Vec<(SlotRange, NodeId)> {
    let range = |start, end| SlotRange { start, end };
    vec![
        (range(0, 5460), id(0xaa)),
        (range(5461, 5461), id(0xbb)),
        (range(5462, 5462), id(0xaa)),
        (range(5463, 10922), id(0xbb)),
    ]
}
