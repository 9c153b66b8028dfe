//! A node's saved configuration and back: [`Core::snapshot`] is what a
//! [`Output::SaveConfig`](crate::core::Output::SaveConfig) carries, [`Core::restore`] starts
//! a node from it after a restart (the runtime parses it from nodes.conf, the simulator
//! keeps it in memory).

use crate::core::node::{NodeFlags, NodeId};
use crate::core::slots::{ranges_from_sorted_slots, Slot, SlotRange, SlotState, SLOT_COUNT};
use crate::core::{Config, Core, NodesConf};

/// Why a saved configuration cannot start a node. Nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// No node carries the `myself` flag.
    #[error("the saved configuration has no node flagged myself")]
    NoMyself,
    /// A slot owner is not among the saved nodes.
    #[error("slots are owned by {0}, which is not among the saved nodes")]
    UnknownSlotOwner(NodeId),
}

impl Core {
    /// The persistent configuration as it is now (handshake nodes excluded).
    pub fn snapshot(&self) -> NodesConf {
        NodesConf {
            nodes: self
                .nodes
                .values()
                .filter(|node| !node.in_handshake())
                .cloned()
                .collect(),
            slot_owners: self.slots.owner_ranges(),
            migrating: self.slots.migrating().collect(),
            importing: self.slots.saved_importing().collect(),
            current_epoch: self.current_epoch,
            last_vote_epoch: self.last_vote_epoch,
        }
    }

    /// The slots whose keys this node must not keep after a restart: assigned to another
    /// node and not IMPORTING here (empty for a replica, which resyncs from its master).
    /// Such keys are the partial copy of an atomic import cut short by the restart (its
    /// slots come back stable with their source, see [`SlotTable::saved_importing`]), or
    /// leftovers of slots lost while down; a key-by-key import keeps its keys, as its
    /// IMPORTING state is saved.
    ///
    /// [`SlotTable::saved_importing`]: crate::core::slots::SlotTable::saved_importing
    pub fn foreign_slot_ranges(&self) -> Vec<SlotRange> {
        if self.my_master().is_some() {
            return Vec::new();
        }
        let foreign = (0..SLOT_COUNT as Slot).filter(|slot| {
            self.slots
                .owner(*slot)
                .is_some_and(|owner| owner != self.myself)
                && !matches!(self.slots.state(*slot), SlotState::Importing(_))
        });
        ranges_from_sorted_slots(foreign)
    }

    /// Restarts a node from its saved configuration: same id, epochs, nodes and slots.
    ///
    /// Other nodes start with a fresh liveness clock (`now_ms`) so that no one is
    /// declared failing for the time the node was down; their FAIL flags are kept.
    pub fn restore(config: Config, conf: NodesConf, now_ms: u64) -> Result<Core, RestoreError> {
        let myself = conf
            .nodes
            .iter()
            .find(|node| node.flags.contains(NodeFlags::MYSELF))
            .ok_or(RestoreError::NoMyself)?
            .id;
        let mut core = Core::new(
            Config {
                myself_id: Some(myself),
                ..config
            },
            now_ms,
        );
        core.nodes.clear();
        for mut record in conf.nodes {
            record.ping_sent_ms = 0;
            record.pong_received_ms = 0;
            record.data_received_ms = now_ms;
            record.created_ms = now_ms;
            record.failure_reports.clear();
            record
                .flags
                .remove(NodeFlags::PFAIL | NodeFlags::HANDSHAKE | NodeFlags::MEET);
            if record.id != myself {
                record.flags.remove(NodeFlags::MYSELF);
            } else {
                // Where the node lives now is what it was started with, not what it saved:
                // a node restarted on a new address announces it, and its peers follow.
                record.ip.clone_from(&core.config.ip);
                record.hostname.clone_from(&core.config.hostname);
                record.client_port = core.config.client_port;
                record.bus_port = core.config.bus_port;
                record.flags.remove(NodeFlags::NOADDR);
            }
            core.nodes.insert(record.id, record);
        }
        for (range, owner) in conf.slot_owners {
            if !core.nodes.contains_key(&owner) {
                return Err(RestoreError::UnknownSlotOwner(owner));
            }
            for slot in range.slots() {
                core.slots.set_owner(slot, Some(owner));
            }
        }
        for (slot, target) in conf.migrating {
            core.slots.set_state(slot, SlotState::Migrating(target));
        }
        for (slot, source) in conf.importing {
            core.slots.set_state(slot, SlotState::Importing(source));
        }
        // As Redis does at load: a currentEpoch below a configEpoch in the file (a lost or
        // hand-edited vars line) would make the next bump reuse a taken epoch.
        let max_config_epoch = core
            .nodes
            .values()
            .map(|node| node.config_epoch)
            .max()
            .unwrap_or(0);
        core.current_epoch = conf.current_epoch.max(max_config_epoch);
        core.last_vote_epoch = conf.last_vote_epoch;
        Ok(core)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_keeps_id_epochs_and_slots() {
        let mut core = Core::new(Config::default(), 0);
        for slot in 0..10 {
            core.slots.set_owner(slot, Some(core.myself));
        }
        core.current_epoch = 5;
        core.last_vote_epoch = 4;
        let conf = core.snapshot();
        let restored = Core::restore(Config::default(), conf.clone(), 1000).unwrap();
        assert_eq!(restored.myself_id(), core.myself_id());
        assert_eq!(restored.current_epoch(), 5);
        assert_eq!(restored.last_vote_epoch(), 4);
        assert_eq!(
            restored.slots_of(&core.myself_id()),
            core.slots_of(&core.myself_id())
        );
        assert_eq!(restored.snapshot().slot_owners, conf.slot_owners);
    }

    #[test]
    fn restore_raises_current_epoch_to_the_largest_config_epoch() {
        let mut core = Core::new(Config::default(), 0);
        let me = core.myself;
        if let Some(record) = core.nodes.get_mut(&me) {
            record.config_epoch = 7;
        }
        core.current_epoch = 7;
        let mut conf = core.snapshot();
        conf.current_epoch = 2;
        let mut restored = Core::restore(Config::default(), conf, 1000).unwrap();
        assert_eq!(restored.current_epoch(), 7);
        assert!(restored.bump_epoch_without_consensus() || restored.myself().config_epoch == 7);
        assert!(restored.myself().config_epoch >= 7);
    }

    #[test]
    fn a_node_restarted_on_a_new_address_announces_the_new_one() {
        let config = Config {
            ip: "10.0.0.1".to_string(),
            bus_port: 17000,
            ..Config::default()
        };
        let core = Core::new(config.clone(), 0);
        let moved = Config {
            ip: "10.0.0.9".to_string(),
            bus_port: 17001,
            client_port: 7001,
            ..config
        };
        let restored = Core::restore(moved, core.snapshot(), 1000).unwrap();
        assert_eq!(restored.myself().bus_address(), "10.0.0.9:17001");
        assert_eq!(restored.myself().client_port, 7001);
    }

    #[test]
    fn restore_without_myself_fails() {
        assert_eq!(
            Core::restore(Config::default(), NodesConf::default(), 0).err(),
            Some(RestoreError::NoMyself)
        );
    }
}
