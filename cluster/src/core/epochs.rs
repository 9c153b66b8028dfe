//! Configuration propagation (5.5 and 6 of the spec): rules 1 and 2, UPDATE messages,
//! configEpoch collisions and bumps without consensus.
//!
//! A master's header advertises its slots with its configEpoch. Rule 1 binds unassigned
//! slots to the claimer; rule 2 rebinds a slot whose owner has a strictly smaller
//! configEpoch. A claim older than what we know earns the claimer an UPDATE. A master
//! that loses all its slots to one node becomes that node's replica. Two masters with the
//! same configEpoch resolve it: the one with the smaller id bumps.

use crate::core::gossip::PingKind;
use crate::core::node::{NodeFlags, NodeId};
use crate::core::slots::{ranges_from_sorted_slots, slots_of_ranges, Slot, SlotRange, SlotState};
use crate::core::wire::{Body, Header};
use crate::core::{Core, Event, Output, ReleaseReason, Role};

impl Core {
    /// Rules 1-2 and the reverse (UPDATE) check for the slots in a ping-family header.
    pub(super) fn apply_sender_slots(&mut self, header: &Header) {
        let sender = header.sender;
        let claimer = header.master_id.unwrap_or(sender);
        if !self.claims_differ(&claimer, &header.slots) {
            return;
        }
        if header.master_id.is_none() {
            // A reordered header from before the sender's last configEpoch bump lacks
            // slots it has since taken: it must not unbind them for an older claimer.
            if header.config_epoch >= self.node_epoch(&sender) {
                self.mark_unclaimed_slots(sender, &header.slots);
            }
            self.update_slots_config_with(sender, header.config_epoch, &header.slots);
        }
        self.send_update_if_stale(sender, header.config_epoch, &header.slots);
    }

    /// Slots bound to `owner` that its header no longer claims (Valkey's "owner not
    /// claiming"): any claimer may take them by rule 1.
    fn mark_unclaimed_slots(&mut self, owner: NodeId, claimed: &[SlotRange]) {
        for range in self.slots.ranges_of(&owner) {
            for slot in range.slots() {
                let still_claimed = claimed
                    .iter()
                    .any(|claim| claim.start <= slot && slot <= claim.end);
                if !still_claimed {
                    self.slots.mark_unclaimed(slot);
                }
            }
        }
    }

    /// True when `ranges` is not exactly the set of slots we bind to `claimer`.
    /// A match is cached until the slot table changes (most headers repeat themselves).
    fn claims_differ(&mut self, claimer: &NodeId, ranges: &[SlotRange]) -> bool {
        let version = self.slots.version();
        if let Some((cached_version, cached_ranges)) = self.matching_claims.get(claimer) {
            if *cached_version == version && cached_ranges.as_slice() == ranges {
                return false;
            }
        }
        let claimed: usize = ranges.iter().map(SlotRange::len).sum();
        let differ = claimed != self.slots.count_of(claimer)
            || slots_of_ranges(ranges).any(|slot| self.slots.owner(slot) != Some(*claimer));
        // Only known claimers are cached: a header may name any master id, and the
        // cache must stay bounded by the node table.
        if !differ && self.nodes.contains_key(claimer) {
            self.matching_claims
                .insert(*claimer, (version, ranges.to_vec()));
        }
        differ
    }

    /// The claimer advertises slots we know a newer owner for: send it one UPDATE.
    fn send_update_if_stale(&mut self, sender: NodeId, claimed_epoch: u64, ranges: &[SlotRange]) {
        for slot in slots_of_ranges(ranges) {
            let Some(owner) = self.slots.owner(slot) else {
                continue;
            };
            if self.slots.is_unclaimed(slot) {
                continue;
            }
            if owner == sender || Some(owner) == self.nodes.get(&sender).and_then(|n| n.master_id) {
                continue;
            }
            let owner_epoch = self.nodes.get(&owner).map_or(0, |node| node.config_epoch);
            if owner_epoch > claimed_epoch {
                let slots = self.slots.ranges_of(&owner);
                self.send(
                    sender,
                    Body::Update {
                        node: owner,
                        config_epoch: owner_epoch,
                        slots,
                    },
                );
                return;
            }
        }
    }

    /// `clusterUpdateSlotsConfigWith`: rebinds slots by rules 1 and 2 and follows the
    /// consequences for this node (losing every slot makes it a replica of the claimer).
    pub(super) fn update_slots_config_with(
        &mut self,
        claimer: NodeId,
        claimer_epoch: u64,
        ranges: &[SlotRange],
    ) {
        if claimer == self.myself {
            return;
        }
        let current_master = self.my_master().unwrap_or(self.myself);
        let mut lost_to_claimer = false;
        // Slots this master served and loses ("dirty slots"): their keys must go.
        let mut lost_by_me: Vec<Slot> = Vec::new();
        for slot in slots_of_ranges(ranges) {
            let owner = self.slots.owner(slot);
            if owner == Some(claimer) || matches!(self.slots.state(slot), SlotState::Importing(_)) {
                continue;
            }
            let owner_epoch = owner
                .and_then(|id| self.nodes.get(&id))
                .map_or(0, |node| node.config_epoch);
            if owner.is_none() || self.slots.is_unclaimed(slot) || owner_epoch < claimer_epoch {
                if owner == Some(current_master) {
                    lost_to_claimer = true;
                }
                if owner == Some(self.myself) {
                    self.slots.set_state(slot, SlotState::Stable);
                    lost_by_me.push(slot);
                }
                self.set_slot_owner(slot, Some(claimer));
            }
        }
        self.fix_open_slots_after_update(claimer);
        if lost_to_claimer && self.slots.count_of(&current_master) == 0 {
            tracing::info!(new_master = %claimer, "lost every slot; following the new owner");
            // The full sync from the new owner replaces every key: no drop as well.
            self.set_my_master(claimer);
        } else {
            self.drop_lost_slots(lost_by_me);
        }
    }

    /// Queues the deletion of the keys of `slots`, which this master just lost to another
    /// node (`clusterUpdateSlotsConfigWith`'s dirty slots). `slots` ascend.
    pub(crate) fn drop_lost_slots(&mut self, slots: Vec<Slot>) {
        if slots.is_empty() || !self.myself().is_master() {
            return;
        }
        let ranges = ranges_from_sorted_slots(slots);
        tracing::info!(?ranges, "lost slots to another node; deleting their keys");
        self.outputs.push_back(Output::DropSlots(ranges));
    }

    /// A slot we were importing key by key from `claimer` that it no longer claims becomes
    /// ours. An atomic import's slots become ours only by its flip (`ClaimSlots`): its
    /// copy is complete only then.
    fn fix_open_slots_after_update(&mut self, claimer: NodeId) {
        let finished: Vec<u16> = self
            .slots
            .importing()
            .filter(|(slot, source)| {
                *source == claimer
                    && self.slots.owner(*slot) != Some(claimer)
                    && !self.slots.is_atomic_import(*slot)
            })
            .map(|(slot, _)| slot)
            .collect();
        if finished.is_empty() || !self.myself().is_master() {
            return;
        }
        self.take_slots_with_epoch_bump(finished);
    }

    /// Makes `slots` this master's, stable, with a configEpoch bump without consensus (an
    /// import's end, an atomic flip, an adoption), saves the config, then tells every
    /// node. True when it bumped (the configEpoch was already the unique maximum
    /// otherwise).
    pub(crate) fn take_slots_with_epoch_bump(
        &mut self,
        slots: impl IntoIterator<Item = Slot>,
    ) -> bool {
        let myself = self.myself;
        for slot in slots {
            self.slots.set_state(slot, SlotState::Stable);
            self.set_slot_owner(slot, Some(myself));
        }
        let bumped = self.bump_epoch_without_consensus();
        if self.config_dirty {
            // Persisted before anyone hears of the claim.
            self.save_config_now();
        }
        self.broadcast_pong();
        bumped
    }

    /// Sub-replica guard on state (as Valkey's): a replica whose master is itself a
    /// replica follows that master's master, however the chain arose (a missed role
    /// change, a restart); a replica of a replica receives no stream. Run by the cron.
    pub(super) fn follow_master_of_master(&mut self) {
        let Some(master) = self.my_master() else {
            return;
        };
        let grandmaster = self
            .nodes
            .get(&master)
            .filter(|node| node.is_replica())
            .and_then(|node| node.master_id)
            .filter(|grandmaster| *grandmaster != self.myself);
        if let Some(grandmaster) = grandmaster {
            tracing::info!(%master, %grandmaster, "my master is a replica; following its master");
            self.set_my_master(grandmaster);
        }
    }

    /// Makes this node a replica of `master` in another shard (REPLICATE, replica
    /// migration): the data it holds is of other slots until it syncs from `master`.
    pub(crate) fn set_my_master_in_another_shard(&mut self, master: NodeId) {
        let before = self.my_master();
        self.set_my_master(master);
        if self.my_master() != before {
            self.replication.held_data_foreign = true;
        }
    }

    /// Makes this node a replica of `master` (from rules, REPLICATE or migration).
    pub(crate) fn set_my_master(&mut self, master: NodeId) {
        let myself = self.myself;
        if self.my_master() == Some(master) || master == myself {
            return;
        }
        let mine: Vec<SlotRange> = self.slots.ranges_of(&myself);
        for slot in slots_of_ranges(&mine) {
            self.set_slot_owner(slot, None);
        }
        self.slots.clear_states();
        self.set_node_role(myself, Some(master));
        let shard = self.nodes.get(&master).and_then(|node| node.shard_id);
        if let Some(record) = self.nodes.get_mut(&myself) {
            record.shard_id = shard.or(Some(master));
        }
        self.manual = Default::default();
        self.failover = Default::default();
        // Nothing of the new master's data is held until its stream is up.
        self.replication.last_master_interaction_ms = None;
        self.replication.last_link_up_ms = None;
        self.header_slots_cache = None;
        self.emit(Event::RoleChanged(Role::Replica { master }));
        self.config_dirty = true;
    }

    /// An UPDATE: adopt the reported owner's newer configEpoch and slots.
    pub(super) fn handle_update(
        &mut self,
        sender: &NodeId,
        node: &NodeId,
        config_epoch: u64,
        ranges: &[SlotRange],
    ) {
        // Nobody knows our configEpoch better than we do: an UPDATE about myself (a
        // confused or forged sender) must not turn this replica into a slotless master.
        if !self.is_known(sender) || *node == self.myself {
            return;
        }
        let Some(record) = self.nodes.get(node) else {
            return;
        };
        if record.config_epoch >= config_epoch {
            return;
        }
        if record.is_replica() {
            self.set_node_role(*node, None);
        }
        if let Some(record) = self.nodes.get_mut(node) {
            record.config_epoch = config_epoch;
        }
        self.update_slots_config_with(*node, config_epoch, ranges);
    }

    /// Two masters with the same configEpoch: the one with the smaller id bumps.
    pub(super) fn handle_epoch_collision(&mut self, header: &Header) {
        let myself = self.myself();
        if header.master_id.is_some()
            || !myself.is_master()
            || header.config_epoch != myself.config_epoch
            || header.sender <= self.myself
        {
            return;
        }
        self.current_epoch = self.current_epoch.saturating_add(1);
        let epoch = self.current_epoch;
        let me = self.myself;
        if let Some(record) = self.nodes.get_mut(&me) {
            record.config_epoch = epoch;
        }
        self.header_slots_cache = None;
        self.save_config_now();
        tracing::info!(epoch, "configEpoch collision resolved by bumping");
    }

    /// `BumpWithoutConsensus`: a new configEpoch unless ours is already the maximum and
    /// non-zero. Persisted before returning. Returns true when it bumped.
    pub(crate) fn bump_epoch_without_consensus(&mut self) -> bool {
        let max_epoch = self
            .nodes
            .values()
            .map(|node| node.config_epoch)
            .max()
            .unwrap_or(0)
            .max(self.current_epoch);
        let my_epoch = self.myself().config_epoch;
        let unique_max = self
            .nodes
            .values()
            .filter(|node| node.config_epoch == max_epoch)
            .count()
            == 1;
        if my_epoch != 0 && my_epoch == max_epoch && unique_max {
            return false;
        }
        self.current_epoch = self.current_epoch.saturating_add(1);
        let epoch = self.current_epoch;
        let me = self.myself;
        if let Some(record) = self.nodes.get_mut(&me) {
            record.config_epoch = epoch;
        }
        self.save_config_now();
        true
    }

    /// After a config change that must spread fast (e.g. REPLICATE).
    pub(crate) fn announce_config(&mut self) {
        for id in self.other_known_nodes() {
            self.send_ping(id, PingKind::Pong);
        }
    }

    /// Drops every trace of `id` (FORGET): record, slots, and reports it made; the shell
    /// lets go of its stream and links.
    pub(crate) fn remove_node(&mut self, id: &NodeId) {
        for range in self.slots.ranges_of(id) {
            for slot in range.slots() {
                self.set_slot_owner(slot, None);
            }
        }
        if let Some(record) = self.nodes.remove(id) {
            self.release_peer(record.bus_address(), id, ReleaseReason::Forgotten);
        }
        self.ping_attempt_ms.remove(id);
        self.orphaned_since.remove(id);
        self.released_failed.remove(id);
        for node in self.nodes.values_mut() {
            node.failure_reports.retain(|report| report.reporter != *id);
        }
        self.matching_claims.remove(id);
        self.config_dirty = true;
        self.state_dirty = true;
    }

    /// True when `id` is known as a master.
    pub(crate) fn is_master_node(&self, id: &NodeId) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|node| node.flags.contains(NodeFlags::MASTER))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::core::slots::SlotRange;
    use crate::core::testing::{add_node, core, drain, header, id, own};
    use crate::core::{Event, Output, Role};

    fn range(start: u16, end: u16) -> SlotRange {
        SlotRange::new(start, end).unwrap()
    }

    /// Slots the merge property covers.
    const MERGE_SLOTS: u16 = 256;

    /// Claims as `(first slot, length)`, distinct epochs for their claimers (masters n2,
    /// n3, ...), and an order of delivery.
    fn claims_epochs_order() -> impl Strategy<Value = (Vec<(u16, u16)>, Vec<u64>, Vec<usize>)> {
        proptest::collection::vec((0..MERGE_SLOTS, 1..64u16), 1..8).prop_flat_map(|claims| {
            let count = claims.len();
            let epochs = proptest::sample::subsequence((1..=16u64).collect::<Vec<_>>(), count)
                .prop_shuffle();
            let order = Just((0..count).collect::<Vec<usize>>()).prop_shuffle();
            (Just(claims), epochs, order)
        })
    }

    proptest! {
        /// Rules 1 and 2 merge claims order-independently: whatever order the claims of
        /// masters with distinct epochs arrive in, every slot ends bound to the
        /// highest-epoch master claiming it, and a slot nobody claims stays unbound.
        #[test]
        fn slot_claims_converge_to_the_highest_epoch_in_any_order(
            (claims, epochs, order) in claims_epochs_order()
        ) {
            let mut core = core(1);
            for (index, epoch) in epochs.iter().enumerate() {
                add_node(&mut core, index as u8 + 2, None, *epoch);
            }
            let ranges: Vec<SlotRange> = claims
                .iter()
                .map(|&(start, length)| range(start, (start + length - 1).min(MERGE_SLOTS - 1)))
                .collect();
            for &index in &order {
                let claimer = id(index as u8 + 2);
                core.update_slots_config_with(claimer, epochs[index], &ranges[index..=index]);
            }
            for slot in 0..MERGE_SLOTS {
                let expected = ranges
                    .iter()
                    .enumerate()
                    .filter(|(_, range)| range.contains(slot))
                    .max_by_key(|(index, _)| epochs[*index])
                    .map(|(index, _)| id(index as u8 + 2));
                prop_assert_eq!(core.slot_owner(slot), expected, "slot {}", slot);
            }
        }
    }

    #[test]
    fn rule_one_binds_unassigned_slots_and_rule_two_needs_a_greater_epoch() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 3);
        add_node(&mut core, 3, None, 3);
        core.update_slots_config_with(id(2), 3, &[range(0, 9)]);
        assert_eq!(core.slot_owner(5), Some(id(2)));
        core.update_slots_config_with(id(3), 3, &[range(0, 9)]);
        assert_eq!(
            core.slot_owner(5),
            Some(id(2)),
            "equal epoch must not rebind"
        );
        core.nodes.get_mut(&id(3)).unwrap().config_epoch = 4;
        core.update_slots_config_with(id(3), 4, &[range(0, 9)]);
        assert_eq!(core.slot_owner(5), Some(id(3)));
    }

    #[test]
    fn a_master_that_loses_every_slot_follows_the_new_owner() {
        let mut core = core(1);
        own(&mut core, 1, 0..=9);
        add_node(&mut core, 2, None, 7);
        core.update_slots_config_with(id(2), 7, &[range(0, 9)]);
        assert_eq!(core.my_master(), Some(id(2)));
        let events: Vec<Output> = drain(&mut core);
        assert!(
            events.contains(&Output::Event(Event::RoleChanged(Role::Replica {
                master: id(2)
            })))
        );
    }

    #[test]
    fn a_stale_claim_earns_an_update() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 1);
        add_node(&mut core, 3, None, 8);
        own(&mut core, 3, 0..=9);
        core.apply_sender_slots(&header(2, None, 1, &[range(0, 9)]));
        let outputs = drain(&mut core);
        let update = outputs.iter().any(|output| matches!(output,
            Output::Transmit { to, message } if to.id == Some(id(2))
                && matches!(message.body, crate::core::wire::Body::Update { node, config_epoch: 8, .. } if node == id(3))));
        assert!(update, "{outputs:?}");
        assert_eq!(core.slot_owner(0), Some(id(3)));
    }

    #[test]
    fn a_reordered_old_header_does_not_unbind_slots_taken_since() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 9);
        add_node(&mut core, 3, None, 2);
        own(&mut core, 2, 0..=9);
        // n2's header from epoch 5, before it took slots 0..=4, arrives late.
        core.apply_sender_slots(&header(2, None, 5, &[range(5, 9)]));
        core.apply_sender_slots(&header(3, None, 2, &[range(0, 4)]));
        assert_eq!(core.slot_owner(0), Some(id(2)), "epoch 2 beat epoch 9");
    }

    #[test]
    fn claims_naming_unknown_masters_are_not_cached() {
        let mut core = core(1);
        add_node(&mut core, 2, Some(1), 0);
        for byte in 100..150u8 {
            core.apply_sender_slots(&header(2, Some(byte), 0, &[]));
        }
        assert!(core.matching_claims.len() <= core.nodes.len());
    }

    #[test]
    fn a_replica_whose_master_is_a_replica_follows_that_masters_master() {
        // However the chain arose (here: known only from state, no role change seen in
        // its master's header), a replica of a replica receives no stream and would keep
        // another shard's keys (random fault seed 173).
        let mut core = core(1);
        add_node(&mut core, 3, None, 4);
        own(&mut core, 3, 0..=9);
        add_node(&mut core, 2, Some(3), 4);
        core.set_my_master(id(2));
        drain(&mut core);
        core.handle_tick(core.now_ms + 1_000);
        assert_eq!(core.my_master(), Some(id(3)), "a sub-replica stayed");
    }

    #[test]
    fn an_update_about_myself_changes_nothing() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 3);
        add_node(&mut core, 3, None, 4);
        own(&mut core, 2, 0..=9);
        core.set_my_master(id(2));
        drain(&mut core);
        core.handle_update(&id(3), &id(1), 99, &[range(0, 9)]);
        assert_eq!(core.my_master(), Some(id(2)), "still a replica of n2");
        assert_eq!(core.myself().config_epoch, 0);
        assert_eq!(core.slot_owner(0), Some(id(2)));
    }

    #[test]
    fn a_stale_update_is_ignored_and_a_replica_follows_the_update() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 5);
        add_node(&mut core, 3, None, 4);
        own(&mut core, 2, 0..=9);
        core.set_my_master(id(2));
        core.handle_update(&id(2), &id(3), 4, &[range(0, 9)]);
        assert_eq!(core.slot_owner(0), Some(id(2)), "epoch 4 is not news");
        core.handle_update(&id(2), &id(3), 6, &[range(0, 9)]);
        assert_eq!(core.slot_owner(0), Some(id(3)));
        assert_eq!(core.my_master(), Some(id(3)), "lost master's last slot");
    }

    #[test]
    fn the_smaller_id_bumps_on_a_config_epoch_collision() {
        let mut small = core(1);
        small.nodes.get_mut(&id(1)).unwrap().config_epoch = 4;
        add_node(&mut small, 2, None, 4);
        small.current_epoch = 4;
        small.handle_epoch_collision(&header(2, None, 4, &[]));
        assert_eq!(small.myself().config_epoch, 5);
        assert!(matches!(
            drain(&mut small).first(),
            Some(Output::SaveConfig(_))
        ));
        let mut large = core(2);
        large.nodes.get_mut(&id(2)).unwrap().config_epoch = 4;
        add_node(&mut large, 1, None, 4);
        large.handle_epoch_collision(&header(1, None, 4, &[]));
        assert_eq!(large.myself().config_epoch, 4);
    }

    fn dropped(outputs: &[Output]) -> Vec<SlotRange> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::DropSlots(ranges) => Some(ranges.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_master_that_loses_some_slots_to_a_newer_claim_drops_their_keys() {
        let mut core = core(1);
        own(&mut core, 1, 0..=9);
        add_node(&mut core, 2, None, 7);
        drain(&mut core);
        core.apply_sender_slots(&header(2, None, 7, &[range(3, 5), range(8, 8)]));
        let outputs = drain(&mut core);
        assert_eq!(dropped(&outputs), vec![range(3, 5), range(8, 8)]);
        assert_eq!(core.my_master(), None, "still a master of the others");
        assert_eq!(core.slot_owner(0), Some(id(1)));
    }

    #[test]
    fn an_update_taking_some_of_my_slots_drops_them_and_taking_all_makes_a_replica() {
        let mut core = core(1);
        own(&mut core, 1, 0..=9);
        add_node(&mut core, 2, None, 3);
        add_node(&mut core, 3, None, 4);
        drain(&mut core);
        core.handle_update(&id(3), &id(2), 8, &[range(0, 4)]);
        assert_eq!(dropped(&drain(&mut core)), vec![range(0, 4)]);
        core.handle_update(&id(3), &id(2), 9, &[range(0, 9)]);
        let outputs = drain(&mut core);
        assert_eq!(core.my_master(), Some(id(2)));
        assert!(
            dropped(&outputs).is_empty(),
            "a master turned replica is full-synced, not dropped: {outputs:?}"
        );
    }

    #[test]
    fn a_replica_whose_master_loses_a_slot_drops_nothing_itself() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 3);
        add_node(&mut core, 3, None, 4);
        own(&mut core, 2, 0..=9);
        core.set_my_master(id(2));
        drain(&mut core);
        core.handle_update(&id(3), &id(3), 8, &[range(0, 4)]);
        let outputs = drain(&mut core);
        assert!(dropped(&outputs).is_empty(), "{outputs:?}");
        assert_eq!(core.slot_owner(0), Some(id(3)));
    }

    #[test]
    fn an_equal_or_older_claim_drops_nothing() {
        let mut core = core(1);
        core.nodes.get_mut(&id(1)).unwrap().config_epoch = 7;
        own(&mut core, 1, 0..=9);
        add_node(&mut core, 2, None, 7);
        drain(&mut core);
        core.update_slots_config_with(id(2), 7, &[range(0, 4)]);
        assert!(dropped(&drain(&mut core)).is_empty());
        assert_eq!(core.slot_owner(0), Some(id(1)));
    }

    #[test]
    fn an_owner_that_stops_claiming_a_slot_lets_anyone_take_it() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 9);
        add_node(&mut core, 3, None, 2);
        own(&mut core, 2, 0..=9);
        core.apply_sender_slots(&header(2, None, 9, &[range(5, 9)]));
        assert_eq!(core.slot_owner(0), Some(id(2)), "the binding is kept");
        core.apply_sender_slots(&header(3, None, 2, &[range(0, 4)]));
        assert_eq!(core.slot_owner(0), Some(id(3)));
        assert_eq!(core.slot_owner(5), Some(id(2)));
    }
}
