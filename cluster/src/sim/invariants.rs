//! Safety invariants checked after every step, and convergence checked after healing.
//!
//! Before sending: the header's currentEpoch (and a master's configEpoch), a vote
//! request's epoch and a vote's `lastVoteEpoch` are saved.
//! After every step: a node's currentEpoch, and its configEpoch while it is a master,
//! never decrease, and no two
//! live masters claim one slot with the same configEpoch. After healing and quiet time:
//! every live node has the same slot map, every slot has exactly one owner (a live
//! master that claims it), and no owner is FAIL in the eyes of a majority of live nodes.
//!
//! With data (see the `data` and `clients` modules), four more:
//!
//! 1. **No acknowledged write is lost while one of its holders stands.** A write
//!    acknowledged by N replicas has N + 1 *holders*: its master and the N replicas whose
//!    acknowledgements counted. A holder has *failed* for that write when, since the
//!    acknowledgement, it restarted without its data (its data wiped, its nodes.conf kept),
//!    or left the write's shard (a full sync from a master that does not own the key's
//!    slot replaced its data, after a replica migration or REPLICATE), or while it is dead
//!    (killed and not restarted). While at most N of the N + 1 holders
//!    failed (so at most N − 1 of its replicas besides the master), some live node holds
//!    the write's value or a later value of the key. Checked at every step at which a
//!    holding can end: a node's data set replaced by a full sync or wiped, a node killed or
//!    restarted. After healing, the owner of the key's slot holds it.
//! 2. **At most one node accepts writes for a slot at any configEpoch**: every accepted
//!    client write records (slot, the acceptor's configEpoch — its master's for a
//!    replica — as its headers carry it); a second node accepting at the same pair fails.
//! 3. **No node votes twice in one epoch**: a second FAILOVER_AUTH_ACK from one node with
//!    the same currentEpoch fails, whoever it is for.
//! 4. **After healing no node can serve a value of a slot it no longer owns**: once healed
//!    and quiet, every key a live node holds is of a slot owned by that node or by its
//!    master (a node that kept a lost slot's keys would serve them again on regaining it),
//!    and every read served returned a value that was once written to that key.

use crate::core::node::{NodeFlags, NodeId};
use crate::core::slots::{SlotRange, SLOT_COUNT};
use std::collections::{BTreeMap, BTreeSet};

use crate::core::wire::{Body, Message};
use crate::core::NodesConf;
use crate::sim::data::{Key, Value};
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
    /// Votes sent: (voter, epoch) → the index of the node voted for (invariant 3).
    votes: BTreeMap<(usize, u64), usize>,
    /// Accepted client writes: (slot, configEpoch) → the acceptor (invariant 2).
    accepted: BTreeMap<(u16, u64), usize>,
    /// What the clients wrote and what was acknowledged (invariants 1 and 4).
    pub(crate) ledger: Ledger,
}

/// A write acknowledged with replica durability.
#[derive(Clone, Debug)]
struct AcknowledgedWrite {
    value: Value,
    /// Replicas that had to acknowledge (N).
    replicas: usize,
    /// The master first, then the replicas whose acknowledgements counted.
    holders: Vec<usize>,
    /// Holders that left the write's shard since (see the module docs).
    departed: Vec<usize>,
    acknowledged_ms: u64,
}

/// The clients' writes: every value ever written, the acknowledged ones, and when each
/// node last lost its data.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ledger {
    /// Every value written, with its key.
    written: BTreeMap<Value, Key>,
    /// Acknowledged writes by key, oldest first.
    acknowledged: BTreeMap<Key, Vec<AcknowledgedWrite>>,
    /// When each node last restarted without its data, in virtual ms.
    wiped_at_ms: BTreeMap<usize, u64>,
}

impl Ledger {
    pub(crate) fn note_written(&mut self, key: Key, value: Value) {
        self.written.insert(value, key);
    }

    pub(crate) fn note_wiped(&mut self, index: usize, now_ms: u64) {
        self.wiped_at_ms.insert(index, now_ms);
    }

    /// Whether `value` was once written to `key`.
    pub(crate) fn was_written(&self, key: Key, value: Value) -> bool {
        self.written.get(&value) == Some(&key)
    }

    pub(crate) fn note_acknowledged(
        &mut self,
        key: Key,
        value: Value,
        replicas: usize,
        holders: Vec<usize>,
        now_ms: u64,
    ) {
        self.acknowledged
            .entry(key)
            .or_default()
            .push(AcknowledgedWrite {
                value,
                replicas,
                holders,
                departed: Vec::new(),
                acknowledged_ms: now_ms,
            });
    }

    /// A full sync replaced node `index`'s data with `values` from a master that does not
    /// own the slots of the keys in `foreign`: it left the shard of those keys' writes it
    /// held and no longer holds.
    pub(crate) fn note_left_shard(
        &mut self,
        index: usize,
        values: &BTreeMap<Key, Value>,
        foreign: &BTreeSet<Key>,
    ) {
        for (key, writes) in self.acknowledged.iter_mut() {
            if !foreign.contains(key) {
                continue;
            }
            let held = values.get(key).copied().unwrap_or(0);
            for write in writes.iter_mut() {
                if held < write.value
                    && write.holders.contains(&index)
                    && !write.departed.contains(&index)
                {
                    write.departed.push(index);
                }
            }
        }
    }

    /// Holders of `write` that failed (see the module docs), given which nodes are dead.
    fn failed_holders(&self, write: &AcknowledgedWrite, dead: &dyn Fn(usize) -> bool) -> usize {
        write
            .holders
            .iter()
            .filter(|holder| {
                dead(**holder)
                    || write.departed.contains(holder)
                    || self
                        .wiped_at_ms
                        .get(holder)
                        .is_some_and(|wiped_ms| *wiped_ms >= write.acknowledged_ms)
            })
            .count()
    }

    /// The latest acknowledged write of each key that invariant 1 still protects (at most
    /// N of its holders failed); a key's earlier writes are covered by it.
    fn protected(&self, dead: &dyn Fn(usize) -> bool) -> Vec<(Key, &AcknowledgedWrite, usize)> {
        self.acknowledged
            .iter()
            .filter_map(|(key, writes)| {
                writes.iter().rev().find_map(|write| {
                    let failed = self.failed_holders(write, dead);
                    (failed <= write.replicas && failed < write.holders.len())
                        .then_some((*key, write, failed))
                })
            })
            .collect()
    }
}

impl InvariantState {
    pub(crate) fn new(node_count: usize) -> InvariantState {
        InvariantState {
            epochs: vec![(0, 0); node_count],
            claims: vec![None; node_count],
            saved_epochs: vec![(0, 0, 0); node_count],
            votes: BTreeMap::new(),
            accepted: BTreeMap::new(),
            ledger: Ledger::default(),
        }
    }

    /// Node `index` sent a vote (FAILOVER_AUTH_ACK) to node `candidate` in `epoch`:
    /// invariant 3.
    pub(crate) fn check_single_vote(
        &mut self,
        index: usize,
        epoch: u64,
        candidate: usize,
    ) -> Option<String> {
        let earlier = self.votes.insert((index, epoch), candidate)?;
        Some(format!(
            "n{index} voted twice in epoch {epoch}: for n{earlier} and for n{candidate}"
        ))
    }

    /// Node `index` accepted a client write for `slot` at `config_epoch`: invariant 2.
    pub(crate) fn check_single_acceptor(
        &mut self,
        index: usize,
        slot: u16,
        config_epoch: u64,
    ) -> Option<String> {
        let acceptor = *self.accepted.entry((slot, config_epoch)).or_insert(index);
        (acceptor != index).then(|| {
            format!(
                "n{index} and n{acceptor} both accepted writes for slot {slot} at configEpoch {config_epoch}"
            )
        })
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

fn names(indices: &[usize]) -> String {
    let names: Vec<String> = indices.iter().map(|index| format!("n{index}")).collect();
    names.join(" ")
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
        self.invariants
            .votes
            .retain(|(voter, _), _| *voter != index);
    }

    /// Invariant 1 now: every protected acknowledged write is held by a live node.
    pub(crate) fn check_writes_held(&self) -> Result<(), SimError> {
        let dead = |index: usize| self.core(index).is_none();
        for (key, write, failed) in self.invariants.ledger.protected(&dead) {
            let held = self.live_nodes().into_iter().any(|index| {
                self.nodes[index]
                    .data
                    .values
                    .get(&key)
                    .is_some_and(|value| *value >= write.value)
            });
            if !held {
                return Err(self.error(format!(
                    "write key:{key}={} acknowledged by {} replicas (holders {}, {failed} failed) is held by no live node\n{}",
                    write.value,
                    write.replicas,
                    names(&write.holders),
                    self.describe()
                )));
            }
        }
        Ok(())
    }

    /// Invariants 1 and 4 after heal and quiet time (call after [`Self::check_converged`]):
    /// each protected write is held by its slot's owner, and no live node holds a key of
    /// a slot that neither it nor its master owns.
    pub fn check_data_converged(&self) -> Result<(), SimError> {
        let live = self.live_nodes();
        let Some(table) = live.first().and_then(|index| self.core(*index)) else {
            return Err(self.error("no live node".to_string()));
        };
        let owner_of = |key: Key| {
            let slot = self.clients_slot(key)?;
            table.slot_owner(slot).and_then(|id| self.index_of_id(&id))
        };
        let dead = |index: usize| self.core(index).is_none();
        for (key, write, failed) in self.invariants.ledger.protected(&dead) {
            let owner = owner_of(key);
            let held = owner.and_then(|owner| self.nodes[owner].data.values.get(&key).copied());
            if held.is_none_or(|value| value < write.value) {
                return Err(self.error(format!(
                    "write key:{key}={} acknowledged by {} replicas (holders {}, {failed} failed) is not readable from its owner {owner:?} (it holds {held:?})",
                    write.value,
                    write.replicas,
                    names(&write.holders)
                )));
            }
        }
        for index in &live {
            let Some(core) = self.core(*index) else {
                continue;
            };
            let master = core.my_master().and_then(|id| self.index_of_id(&id));
            for key in self.nodes[*index].data.values.keys() {
                let owner = owner_of(*key);
                if owner != Some(*index) && owner != master {
                    return Err(self.error(format!(
                        "n{index} holds key:{key} of a slot owned by {owner:?}, neither it nor its master {master:?} (replication {:?})\n{}",
                        self.nodes[*index].data.phase(),
                        self.describe()
                    )));
                }
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use crate::core::AdminCommand;
    use crate::sim::{Simulator, Workload};

    #[test]
    fn a_replica_that_moved_to_another_shard_no_longer_holds_its_old_shards_writes() {
        // n0 masters a third of the slots with replicas n3 and n6; every write of the
        // clients is acknowledged by all three.
        let mut sim = Simulator::formed(9, 3, 3, 1000).unwrap_or_else(|error| panic!("{error}"));
        sim.start_clients(Workload::default());
        let run = |sim: &mut Simulator, ms: u64| {
            sim.run_for(ms).unwrap_or_else(|error| panic!("{error}"));
        };
        run(&mut sim, 2_000);
        sim.stop_clients();
        run(&mut sim, 500);
        assert!(sim.client_stats().writes_acknowledged > 0);
        // n6 moves to n1's shard: its full sync from n1 drops n0's keys.
        let n1 = sim.id_of(1).expect("n1 lives");
        sim.command(6, AdminCommand::Replicate(n1))
            .unwrap_or_else(|error| panic!("{error}"));
        run(&mut sim, 2_000);
        // n0 and n3 die: all three holders of n0's writes are gone (two dead, one left
        // the shard), which is beyond what the writes were acknowledged for.
        sim.kill(0);
        sim.kill(3);
        run(&mut sim, 100);
    }
}
