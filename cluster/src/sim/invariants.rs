//! Safety invariants checked after every step, and convergence checked after healing.
//!
//! Before sending: the header's currentEpoch (and a master's configEpoch), a vote
//! request's epoch and a vote's `lastVoteEpoch` are saved.
//! After every step: a node's currentEpoch, and its configEpoch while it is a master,
//! never decrease, and no two
//! live masters claim one slot with the same configEpoch. After healing and quiet time:
//! every live node has the same slot map, every slot has exactly one owner (a live
//! master that claims it), and no owner is FAIL in the eyes of a majority of live nodes.

use crate::core::node::{NodeFlags, NodeId};
use crate::core::slots::{SlotRange, SLOT_COUNT};
use crate::core::wire::{Body, Message};
use crate::core::NodesConf;
use crate::sim::{SimError, Simulator};

/// What the invariants remember between steps.
#[derive(Debug, Clone)]
pub(crate) struct InvariantState {
    /// (currentEpoch, configEpoch) last seen per node.
    epochs: Vec<(u64, u64)>,
    /// Per node: (configEpoch, own slots) when it last saved as a master with slots.
    claims: Vec<Option<(u64, Vec<SlotRange>)>>,
    /// Per node: (currentEpoch, lastVoteEpoch, own configEpoch) of its last saved config.
    saved_epochs: Vec<(u64, u64, u64)>,
}

impl InvariantState {
    pub(crate) fn new(node_count: usize) -> InvariantState {
        InvariantState {
            epochs: vec![(0, 0); node_count],
            claims: vec![None; node_count],
            saved_epochs: vec![(0, 0, 0); node_count],
        }
    }

    /// A node saved its config: remember its epochs and refresh its slot claim.
    pub(crate) fn note_saved(&mut self, index: usize, conf: &NodesConf) {
        let Some(myself) = conf
            .nodes
            .iter()
            .find(|node| node.flags.contains(NodeFlags::MYSELF))
        else {
            self.saved_epochs[index] = (conf.current_epoch, conf.last_vote_epoch, 0);
            return;
        };
        self.saved_epochs[index] = (
            conf.current_epoch,
            conf.last_vote_epoch,
            myself.config_epoch,
        );
        let ranges: Vec<SlotRange> = conf
            .slot_owners
            .iter()
            .filter(|(_, owner)| *owner == myself.id)
            .map(|(range, _)| *range)
            .collect();
        self.claims[index] =
            (myself.is_master() && !ranges.is_empty()).then_some((myself.config_epoch, ranges));
    }
}

impl InvariantState {
    /// What a message advertises must already be on disk: its currentEpoch, a master's
    /// configEpoch, a vote request's epoch, a vote's `lastVoteEpoch`. Otherwise a crash
    /// right after the send restarts the node behind what its peers heard from it.
    /// Returns what is wrong, if anything.
    pub(crate) fn check_persisted_before_send(
        &self,
        index: usize,
        message: &Message,
    ) -> Option<String> {
        let (saved_current, saved_vote, saved_config) = self.saved_epochs[index];
        let epoch = message.header.current_epoch;
        if epoch > saved_current {
            return Some(format!(
                "n{index} sent currentEpoch {epoch} before saving it (saved {saved_current})"
            ));
        }
        let config_epoch = message.header.config_epoch;
        if message.header.master_id.is_none() && config_epoch > saved_config {
            return Some(format!(
                "n{index} sent configEpoch {config_epoch} as a master before saving it (saved {saved_config})"
            ));
        }
        match message.body {
            Body::FailoverAuthRequest if saved_current < epoch => Some(format!(
                "n{index} asked for votes in epoch {epoch} before saving it (saved {saved_current})"
            )),
            Body::FailoverAuthAck if saved_vote != epoch => Some(format!(
                "n{index} voted in epoch {epoch} before saving lastVoteEpoch (saved {saved_vote})"
            )),
            _ => None,
        }
    }
}

fn overlap(left: &[SlotRange], right: &[SlotRange]) -> Option<u16> {
    left.iter().find_map(|a| {
        right
            .iter()
            .find(|b| a.start <= b.end && b.start <= a.end)
            .map(|b| a.start.max(b.start))
    })
}

impl Simulator {
    /// Epoch monotonicity and unique claims, for the node that just handled an input.
    pub(crate) fn check_step_invariants(&mut self, index: usize) -> Result<(), SimError> {
        let Some(core) = self.core(index) else {
            return Ok(());
        };
        // A replica's own configEpoch is not meaningful (nodes.conf stores its master's, as
        // Redis does), so configEpoch is tracked only while the node is a master.
        let (last_current, last_config) = self.invariants.epochs[index];
        let config_epoch = if core.myself().is_master() {
            core.myself().config_epoch
        } else {
            last_config
        };
        let epochs = (core.current_epoch(), config_epoch);
        if epochs.0 < last_current || epochs.1 < last_config {
            return Err(self.error(format!(
                "n{index} epochs went back: currentEpoch {last_current} -> {}, configEpoch {last_config} -> {}",
                epochs.0, epochs.1
            )));
        }
        self.invariants.epochs[index] = epochs;
        let Some((epoch, ranges)) = self.invariants.claims[index].clone() else {
            return Ok(());
        };
        for other in self.live_nodes() {
            if other == index {
                continue;
            }
            if let Some((other_epoch, other_ranges)) = &self.invariants.claims[other] {
                if *other_epoch == epoch {
                    if let Some(slot) = overlap(&ranges, other_ranges) {
                        return Err(self.error(format!(
                            "n{index} and n{other} both claim slot {slot} with configEpoch {epoch}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets a node's epoch history (after CLUSTER RESET HARD, which zeroes epochs).
    pub fn forget_epoch_history(&mut self, index: usize) {
        self.invariants.epochs[index] = (0, 0);
        self.invariants.claims[index] = None;
    }

    /// After heal + quiet time: one agreed slot map, one live claiming owner per slot,
    /// no owner failed in a majority's eyes.
    pub fn check_converged(&self) -> Result<(), SimError> {
        let live = self.live_nodes();
        let Some(first) = live.first().and_then(|index| self.core(*index)) else {
            return Err(self.error("no live node".to_string()));
        };
        let map = first.slot_table().owner_ranges();
        for index in &live {
            let Some(core) = self.core(*index) else {
                continue;
            };
            if core.slot_table().owner_ranges() != map {
                return Err(self.error(format!(
                    "n{index} disagrees with n{} on the slot map\n{}",
                    live[0],
                    self.describe()
                )));
            }
        }
        let assigned: usize = map.iter().map(|(range, _)| range.len()).sum();
        if assigned != SLOT_COUNT {
            return Err(self.error(format!("only {assigned} slots are assigned")));
        }
        let owners: std::collections::BTreeSet<NodeId> = map.iter().map(|(_, id)| *id).collect();
        for owner in owners {
            self.check_owner(&live, &owner)?;
        }
        Ok(())
    }

    /// Every live node's view: role, epochs, and slot owners (as node indices).
    pub fn describe(&self) -> String {
        let name = |id: &NodeId| match self.index_of_id(id) {
            Some(index) => format!("n{index}"),
            None => format!("{id:?}"),
        };
        let mut text = String::new();
        for index in self.live_nodes() {
            let Some(core) = self.core(index) else {
                continue;
            };
            let role = match core.my_master() {
                Some(master) => format!("replica of {}", name(&master)),
                None => "master".to_string(),
            };
            let owners: Vec<String> = core
                .slot_table()
                .owner_ranges()
                .iter()
                .map(|(range, owner)| {
                    let epoch = core.node(owner).map_or(0, |node| node.config_epoch);
                    format!("{}-{}:{}@{epoch}", range.start, range.end, name(owner))
                })
                .collect();
            text.push_str(&format!(
                "  n{index} {role} configEpoch {} currentEpoch {} owners [{}]\n",
                core.myself().config_epoch,
                core.current_epoch(),
                owners.join(" ")
            ));
        }
        text
    }

    fn check_owner(&self, live: &[usize], owner: &NodeId) -> Result<(), SimError> {
        let Some(owner_index) = live
            .iter()
            .copied()
            .find(|index| self.core(*index).map(|core| core.myself_id()) == Some(*owner))
        else {
            return Err(self.error(format!("slot owner {owner} is not a live node")));
        };
        let owner_core = self
            .core(owner_index)
            .ok_or_else(|| self.error("vanished".into()))?;
        if !owner_core.myself().is_master() {
            return Err(self.error(format!("slot owner n{owner_index} is not a master")));
        }
        let failed_in = live
            .iter()
            .filter(|index| {
                self.core(**index)
                    .and_then(|core| core.node(owner))
                    .is_some_and(|node| node.is_failed())
            })
            .count();
        if failed_in * 2 > live.len() {
            return Err(self.error(format!(
                "slot owner n{owner_index} is FAIL for {failed_in} of {} live nodes",
                live.len()
            )));
        }
        Ok(())
    }
}
