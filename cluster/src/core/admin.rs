//! Admin commands (CLUSTER MEET, ADDSLOTS, SETSLOT, REPLICATE, FAILOVER, FORGET, RESET,
//! SET-CONFIG-EPOCH, BUMPEPOCH) as typed inputs with typed errors.
//!
//! Every error leaves the core unchanged. Successful commands that change the config
//! queue a `SaveConfig`; some also broadcast (REPLICATE, SETSLOT NODE to myself).

use crate::core::node::{NodeFlags, NodeId};
use crate::core::slots::{slots_of_ranges, Slot, SlotRange, SlotState, SLOT_COUNT};
use crate::core::wire::{Body, MAX_FORGOTTEN_TTL_MS};
use crate::core::{Core, Event, Role};

/// CLUSTER FAILOVER's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverMode {
    /// Coordinate with the master so no acknowledged write is lost.
    Default,
    /// Skip the master (it may be down); still needs a majority of votes.
    Force,
    /// No vote: bump the configEpoch and take the slots.
    Takeover,
}

/// CLUSTER RESET's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetMode {
    /// Forget every other node and all slots; keep id and epochs.
    Soft,
    /// As soft, plus a new id and all epochs back to 0.
    Hard,
}

/// CLUSTER SETSLOT's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetSlotAction {
    /// `MIGRATING <target>`.
    Migrating(NodeId),
    /// `IMPORTING <source>`.
    Importing(NodeId),
    /// `STABLE`.
    Stable,
    /// `NODE <owner>`.
    Node(NodeId),
}

/// An admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    /// `CLUSTER MEET ip port [cport]`.
    Meet {
        /// Peer IP or host name.
        ip: String,
        /// Peer client port.
        client_port: u16,
        /// Peer bus port.
        bus_port: u16,
    },
    /// CLUSTER ADDSLOTS / ADDSLOTSRANGE.
    AddSlots(Vec<SlotRange>),
    /// CLUSTER DELSLOTS / DELSLOTSRANGE.
    DelSlots(Vec<SlotRange>),
    /// CLUSTER FLUSHSLOTS: unbinds every slot this node owns (refused by the shell while
    /// it holds keys, as Redis refuses it unless the database is empty).
    FlushSlots,
    /// CLUSTER SETSLOT slot action.
    SetSlot {
        /// The slot.
        slot: Slot,
        /// What to do.
        action: SetSlotAction,
    },
    /// CLUSTER REPLICATE id.
    Replicate(NodeId),
    /// CLUSTER FAILOVER [FORCE|TAKEOVER].
    Failover(FailoverMode),
    /// CLUSTER FORGET id.
    Forget(NodeId),
    /// CLUSTER RESET [SOFT|HARD].
    Reset(ResetMode),
    /// CLUSTER SET-CONFIG-EPOCH epoch.
    SetConfigEpoch(u64),
    /// CLUSTER BUMPEPOCH.
    BumpEpoch,
    /// An atomic migration's target, at its start: import `ranges` from master `source`
    /// (each slot IMPORTING). Refused, changing nothing, if one is mine or already
    /// migrating or importing (one migration per slot).
    ImportSlots {
        /// The slots.
        ranges: Vec<SlotRange>,
        /// Their owner, the migration's source.
        source: NodeId,
    },
    /// An atomic migration's target, at its flip: take every slot of `ranges` (each
    /// IMPORTING from `source`, or already mine from an earlier flip) with one configEpoch
    /// bump for all of them, and tell everyone. Refused, changing nothing, if one is
    /// neither.
    ClaimSlots {
        /// The slots.
        ranges: Vec<SlotRange>,
        /// The migration's source.
        source: NodeId,
    },
    /// An atomic migration's target, when it is abandoned: every IMPORTING slot of
    /// `ranges` turns stable again (still owned by its source); `+OK`. If the slots are
    /// mine already (the flip came first), nothing changes and the reply is
    /// `Still(configEpoch)`.
    AbandonImport(Vec<SlotRange>),
    /// An atomic migration's source, after the target's flip: `ranges` now belong to
    /// `owner` (SETSLOT NODE for each, in one command; keys still held are dropped).
    GiveSlots {
        /// The slots.
        ranges: Vec<SlotRange>,
        /// Their new owner.
        owner: NodeId,
    },
}

/// A successful command's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminReply {
    /// `+OK`.
    Ok,
    /// `+BUMPED <epoch>`.
    Bumped(u64),
    /// `+STILL <epoch>`.
    Still(u64),
}

/// Why a command was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// A slot number or range is out of 0..16384.
    #[error("invalid slot range {start}-{end}: slots are 0..=16383")]
    InvalidSlot {
        /// First slot.
        start: u32,
        /// Last slot.
        end: u32,
    },
    /// ADDSLOTS on an assigned slot.
    #[error("slot {0} is already busy")]
    SlotBusy(Slot),
    /// DELSLOTS on an unassigned slot.
    #[error("slot {0} is already unassigned")]
    SlotUnassigned(Slot),
    /// The node id is not in the node table.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The command cannot target myself.
    #[error("the command cannot target this node itself")]
    Myself,
    /// SETSLOT MIGRATING on a slot this node does not own.
    #[error("I'm not the owner of hash slot {0}")]
    NotOwner(Slot),
    /// SETSLOT IMPORTING on a slot this node owns.
    #[error("I'm already the owner of hash slot {0}")]
    AlreadyOwner(Slot),
    /// The target must be a master.
    #[error("node {0} is not a master")]
    NotMaster(NodeId),
    /// REPLICATE on a master that owns slots or (refused by the shell, which sees the
    /// engine) holds keys. Redis's wording.
    #[error("To set a master the node must be empty and without assigned slots.")]
    HasSlots,
    /// SETSLOT NODE giving one of my slots to another node while it holds keys (refused by
    /// the shell). Redis's wording.
    #[error(
        "Can't assign hashslot {0} to a different node while I still hold keys for this hash slot."
    )]
    SlotHasKeys(Slot),
    /// ADDSLOTS of a slot this node still holds keys of (stale keys of a slot it lost;
    /// refused by the shell). Redis accepts it and serves the old keys again.
    #[error("Can't add hashslot {0} while I still hold keys for this hash slot.")]
    AddedSlotHasKeys(Slot),
    /// CLUSTER FLUSHSLOTS while this node holds keys (refused by the shell).
    #[error("DB must be empty to perform CLUSTER FLUSHSLOTS.")]
    NotEmpty,
    /// FAILOVER on a master.
    #[error("you should send CLUSTER FAILOVER to a replica")]
    NotReplica,
    /// Default FAILOVER while the master is failing.
    #[error("master is down or failed, please use CLUSTER FAILOVER FORCE")]
    MasterDown,
    /// FORGET of the master of this replica.
    #[error("can't forget my master")]
    ForgetMyMaster,
    /// SET-CONFIG-EPOCH when other nodes are known or the epoch is set.
    #[error("the node already knows other nodes or its configEpoch is not 0")]
    ConfigEpochNotSettable,
    /// REPLICATE naming a node that is itself a replica.
    #[error("a replica cannot be replicated: {0} is a replica")]
    ReplicaOfReplica(NodeId),
    /// SET-CONFIG-EPOCH beyond [`crate::core::wire::MAX_EPOCH`] (every peer would drop
    /// this node's messages as malformed).
    #[error("invalid config epoch {0}: the largest accepted is {max}", max = crate::core::wire::MAX_EPOCH)]
    InvalidConfigEpoch(u64),
    /// An atomic migration's import of a slot that is already migrating or importing here.
    #[error("hash slot {0} is already migrating or importing")]
    SlotInMigration(Slot),
    /// CLUSTER SETSLOT on a slot an atomic migration is importing here: the migration
    /// owns its state until it flips or is cancelled.
    #[error(
        "hash slot {0} is being imported by an atomic slot migration: cancel the migration first"
    )]
    AtomicImport(Slot),
    /// An atomic migration's cancel names a slot imported here key by key (CLUSTER
    /// SETSLOT IMPORTING): that import, and the keys it received, stay.
    #[error("hash slot {0} is imported key by key here, not by an atomic slot migration")]
    KeyByKeyImport(Slot),
    /// An atomic migration's flip of a slot that is not importing from its source here
    /// (the import was abandoned, or never began).
    #[error("hash slot {0} is not importing from the migration's source")]
    NotImporting(Slot),
}

/// Most FORGOTTEN_NODE messages that follow one PING ([`Core::gossip_forgotten_nodes`]).
const FORGOTTEN_PER_PING_MAX: usize = 8;

fn check_ranges(ranges: &[SlotRange]) -> Result<(), AdminError> {
    match ranges.iter().find(|range| !range.is_valid()) {
        Some(range) => Err(AdminError::InvalidSlot {
            start: range.start.into(),
            end: range.end.into(),
        }),
        None => Ok(()),
    }
}

impl Core {
    /// Runs an admin command at `now_ms`.
    pub fn handle_command(
        &mut self,
        now_ms: u64,
        command: AdminCommand,
    ) -> Result<AdminReply, AdminError> {
        self.advance(now_ms);
        let result = self.run_command(command);
        self.finish_input();
        result
    }

    fn run_command(&mut self, command: AdminCommand) -> Result<AdminReply, AdminError> {
        match command {
            AdminCommand::Meet {
                ip,
                client_port,
                bus_port,
            } => {
                self.start_handshake(&ip, client_port, bus_port);
                Ok(AdminReply::Ok)
            }
            AdminCommand::AddSlots(ranges) => self.add_slots(&ranges),
            AdminCommand::DelSlots(ranges) => self.del_slots(&ranges),
            AdminCommand::FlushSlots => {
                let mine = self.slots.ranges_of(&self.myself);
                if mine.is_empty() {
                    return Ok(AdminReply::Ok);
                }
                self.del_slots(&mine)
            }
            AdminCommand::SetSlot { slot, action } => self.set_slot(slot, action),
            AdminCommand::Replicate(master) => self.replicate(master),
            AdminCommand::Failover(mode) => self.manual_failover(mode),
            AdminCommand::Forget(id) => self.forget(id),
            AdminCommand::Reset(mode) => {
                self.reset(mode);
                Ok(AdminReply::Ok)
            }
            AdminCommand::SetConfigEpoch(epoch) => self.set_config_epoch(epoch),
            AdminCommand::BumpEpoch => {
                let bumped = self.bump_epoch_without_consensus();
                let epoch = self.myself().config_epoch;
                Ok(if bumped {
                    AdminReply::Bumped(epoch)
                } else {
                    AdminReply::Still(epoch)
                })
            }
            AdminCommand::ImportSlots { ranges, source } => self.import_slots(&ranges, source),
            AdminCommand::ClaimSlots { ranges, source } => self.claim_slots(&ranges, source),
            AdminCommand::AbandonImport(ranges) => {
                check_ranges(&ranges)?;
                let myself = self.myself;
                if slots_of_ranges(&ranges).any(|slot| self.slots.owner(slot) == Some(myself)) {
                    // Flipped before the cancel came (claims are all or nothing).
                    return Ok(AdminReply::Still(self.myself().config_epoch));
                }
                // A key-by-key import's keys are the only copy once MIGRATE moved them.
                if let Some(slot) = slots_of_ranges(&ranges).find(|slot| {
                    matches!(self.slots.state(*slot), SlotState::Importing(_))
                        && !self.slots.is_atomic_import(*slot)
                }) {
                    return Err(AdminError::KeyByKeyImport(slot));
                }
                for slot in slots_of_ranges(&ranges) {
                    if let SlotState::Importing(_) = self.slots.state(slot) {
                        self.slots.set_state(slot, SlotState::Stable);
                        self.config_dirty = true;
                    }
                }
                Ok(AdminReply::Ok)
            }
            AdminCommand::GiveSlots { ranges, owner } => {
                check_ranges(&ranges)?;
                self.known_master(owner)?;
                if owner == self.myself {
                    return Err(AdminError::Myself);
                }
                for slot in slots_of_ranges(&ranges) {
                    self.set_slot_node(slot, owner)?;
                }
                self.config_dirty = true;
                Ok(AdminReply::Ok)
            }
        }
    }

    fn import_slots(
        &mut self,
        ranges: &[SlotRange],
        source: NodeId,
    ) -> Result<AdminReply, AdminError> {
        check_ranges(ranges)?;
        if source == self.myself {
            return Err(AdminError::Myself);
        }
        self.known_master(source)?;
        let myself = self.myself;
        for slot in slots_of_ranges(ranges) {
            if self.slots.owner(slot) == Some(myself) {
                return Err(AdminError::AlreadyOwner(slot));
            }
            if self.slots.state(slot) != SlotState::Stable {
                return Err(AdminError::SlotInMigration(slot));
            }
        }
        for slot in slots_of_ranges(ranges) {
            self.slots.set_atomic_import(slot, source);
        }
        self.config_dirty = true;
        Ok(AdminReply::Ok)
    }

    fn claim_slots(
        &mut self,
        ranges: &[SlotRange],
        source: NodeId,
    ) -> Result<AdminReply, AdminError> {
        check_ranges(ranges)?;
        let myself = self.myself;
        let mut claimed = 0;
        for slot in slots_of_ranges(ranges) {
            match self.slots.state(slot) {
                SlotState::Importing(from) if from == source => claimed += 1,
                SlotState::Stable if self.slots.owner(slot) == Some(myself) => {}
                _ => return Err(AdminError::NotImporting(slot)),
            }
        }
        if claimed == 0 {
            // Flipped before (a repeated request): nothing changes.
            return Ok(AdminReply::Still(self.myself().config_epoch));
        }
        let bumped = self.take_slots_with_epoch_bump(slots_of_ranges(ranges));
        let epoch = self.myself().config_epoch;
        tracing::info!(slots = claimed, epoch, %source, "took the slots of an atomic migration");
        Ok(if bumped {
            AdminReply::Bumped(epoch)
        } else {
            AdminReply::Still(epoch)
        })
    }

    fn add_slots(&mut self, ranges: &[SlotRange]) -> Result<AdminReply, AdminError> {
        check_ranges(ranges)?;
        if let Some(slot) = slots_of_ranges(ranges).find(|slot| self.slots.owner(*slot).is_some()) {
            return Err(AdminError::SlotBusy(slot));
        }
        let myself = self.myself;
        for slot in slots_of_ranges(ranges) {
            self.slots.set_state(slot, SlotState::Stable);
            self.set_slot_owner(slot, Some(myself));
        }
        Ok(AdminReply::Ok)
    }

    fn del_slots(&mut self, ranges: &[SlotRange]) -> Result<AdminReply, AdminError> {
        check_ranges(ranges)?;
        if let Some(slot) = slots_of_ranges(ranges).find(|slot| self.slots.owner(*slot).is_none()) {
            return Err(AdminError::SlotUnassigned(slot));
        }
        for slot in slots_of_ranges(ranges) {
            self.slots.set_state(slot, SlotState::Stable);
            self.set_slot_owner(slot, None);
        }
        Ok(AdminReply::Ok)
    }

    fn known_master(&self, id: NodeId) -> Result<(), AdminError> {
        let node = self.nodes.get(&id).ok_or(AdminError::UnknownNode(id))?;
        if node.is_master() {
            Ok(())
        } else {
            Err(AdminError::NotMaster(id))
        }
    }

    fn set_slot(&mut self, slot: Slot, action: SetSlotAction) -> Result<AdminReply, AdminError> {
        if slot as usize >= SLOT_COUNT {
            return Err(AdminError::InvalidSlot {
                start: slot.into(),
                end: slot.into(),
            });
        }
        if self.slots.is_atomic_import(slot) {
            return Err(AdminError::AtomicImport(slot));
        }
        let myself = self.myself;
        match action {
            SetSlotAction::Migrating(target) => {
                if self.slots.owner(slot) != Some(myself) {
                    return Err(AdminError::NotOwner(slot));
                }
                self.known_master(target)?;
                self.slots.set_state(slot, SlotState::Migrating(target));
            }
            SetSlotAction::Importing(source) => {
                if self.slots.owner(slot) == Some(myself) {
                    return Err(AdminError::AlreadyOwner(slot));
                }
                self.known_master(source)?;
                self.slots.set_state(slot, SlotState::Importing(source));
            }
            SetSlotAction::Stable => self.slots.set_state(slot, SlotState::Stable),
            SetSlotAction::Node(owner) => self.set_slot_node(slot, owner)?,
        }
        self.config_dirty = true;
        Ok(AdminReply::Ok)
    }

    /// SETSLOT NODE: rebinds the slot; the importing node bumps its epoch and broadcasts.
    fn set_slot_node(&mut self, slot: Slot, owner: NodeId) -> Result<(), AdminError> {
        self.known_master(owner)?;
        let myself = self.myself;
        if let SlotState::Migrating(_) = self.slots.state(slot) {
            if owner != myself {
                self.slots.set_state(slot, SlotState::Stable);
            }
        }
        let given_away = owner != myself && self.slots.owner(slot) == Some(myself);
        self.set_slot_owner(slot, Some(owner));
        if given_away
            && self.myself().is_master()
            && self.slots.count_of(&myself) == 0
            && self.config.allow_replica_migration
        {
            // A master left without slots follows their new owner (as the config rule
            // does for a lost last slot); its full sync replaces every key.
            tracing::info!(new_master = %owner, "gave away my last slot; following its new owner");
            self.set_my_master(owner);
            self.announce_config();
        } else if given_away {
            // The shell refuses this while the slot holds keys; a write that raced the
            // check is deleted here.
            self.drop_lost_slots(vec![slot]);
        }
        if owner == myself {
            if let SlotState::Importing(_) = self.slots.state(slot) {
                self.take_slots_with_epoch_bump([slot]);
            }
        }
        Ok(())
    }

    fn replicate(&mut self, master: NodeId) -> Result<AdminReply, AdminError> {
        if master == self.myself {
            return Err(AdminError::Myself);
        }
        let node = self
            .nodes
            .get(&master)
            .ok_or(AdminError::UnknownNode(master))?;
        if node.is_replica() {
            return Err(AdminError::ReplicaOfReplica(master));
        }
        if self.myself().is_master() && self.slots.count_of(&self.myself) > 0 {
            return Err(AdminError::HasSlots);
        }
        self.set_my_master_in_another_shard(master);
        self.announce_config();
        Ok(AdminReply::Ok)
    }

    fn manual_failover(&mut self, mode: FailoverMode) -> Result<AdminReply, AdminError> {
        let master = self.my_master().ok_or(AdminError::NotReplica)?;
        let master_failing = self.nodes.get(&master).is_none_or(|node| node.is_failing());
        match mode {
            FailoverMode::Default if master_failing => Err(AdminError::MasterDown),
            FailoverMode::Default | FailoverMode::Force => {
                self.start_manual_failover(mode == FailoverMode::Force);
                Ok(AdminReply::Ok)
            }
            FailoverMode::Takeover => {
                tracing::info!("TAKEOVER: bumping configEpoch without consensus");
                self.bump_epoch_without_consensus();
                self.replace_my_master(master, None);
                Ok(AdminReply::Ok)
            }
        }
    }

    fn forget(&mut self, id: NodeId) -> Result<AdminReply, AdminError> {
        if id == self.myself {
            return Err(AdminError::Myself);
        }
        if !self.nodes.contains_key(&id) && self.is_blacklisted(&id) {
            // Already forgotten, by a FORGET here or one elsewhere that reached this node
            // first (`redis-cli --cluster del-node` sends FORGET to every node in turn):
            // the ban is renewed, nothing else changes.
            self.blacklist
                .insert(id, self.now_ms + self.config.blacklist_ttl_ms);
            return Ok(AdminReply::Ok);
        }
        if !self.nodes.contains_key(&id) {
            return Err(AdminError::UnknownNode(id));
        }
        if self.my_master() == Some(id) {
            return Err(AdminError::ForgetMyMaster);
        }
        self.remove_node(&id);
        self.blacklist
            .insert(id, self.now_ms + self.config.blacklist_ttl_ms);
        // FORGET on one node works cluster-wide: every other node forgets it too.
        let ttl_ms = self.config.blacklist_ttl_ms.clamp(1, MAX_FORGOTTEN_TTL_MS);
        for peer in self.other_known_nodes() {
            self.send(peer, Body::ForgottenNode { node: id, ttl_ms });
        }
        Ok(AdminReply::Ok)
    }

    /// Follows a PING to `to` with the bans still in force (at most
    /// [`FORGOTTEN_PER_PING_MAX`]), as Redis carries its blacklist in every ping: a node
    /// that missed the first FORGOTTEN_NODE forgets within a ping period.
    pub(crate) fn gossip_forgotten_nodes(&mut self, to: NodeId) {
        let now = self.now_ms;
        let bans: Vec<(NodeId, u64)> = self
            .blacklist
            .iter()
            .filter(|(_, until_ms)| **until_ms > now)
            .take(FORGOTTEN_PER_PING_MAX)
            .map(|(id, until_ms)| (*id, (until_ms - now).min(MAX_FORGOTTEN_TTL_MS)))
            .collect();
        for (node, ttl_ms) in bans {
            self.send(to, Body::ForgottenNode { node, ttl_ms });
        }
    }

    /// A FORGOTTEN_NODE from a known node: forget `node` and ban it for `ttl_ms`, unless it
    /// is myself or my master (Redis's rule). An unknown `node` is nothing to forget.
    pub(super) fn handle_forgotten_node(&mut self, sender: &NodeId, node: &NodeId, ttl_ms: u64) {
        if !self.is_known(sender)
            || *node == self.myself
            || self.my_master() == Some(*node)
            || !self.nodes.contains_key(node)
        {
            return;
        }
        tracing::info!(%node, by = %sender, "forgetting a node forgotten elsewhere");
        self.remove_node(node);
        let until_ms = self.now_ms.saturating_add(ttl_ms.min(MAX_FORGOTTEN_TTL_MS));
        self.blacklist.insert(*node, until_ms);
    }

    fn reset(&mut self, mode: ResetMode) {
        let myself = self.myself;
        let was_replica = self.my_master().is_some();
        let others: Vec<NodeId> = self
            .nodes
            .keys()
            .copied()
            .filter(|id| *id != myself)
            .collect();
        for id in others {
            self.remove_node(&id);
        }
        for range in self.slots.ranges_of(&myself) {
            for slot in range.slots() {
                self.set_slot_owner(slot, None);
            }
        }
        self.slots.clear_states();
        self.set_node_role(myself, None);
        self.failover = Default::default();
        self.manual = Default::default();
        if mode == ResetMode::Hard {
            let new_id = NodeId::random(&mut self.rng);
            if let Some(mut record) = self.nodes.remove(&myself) {
                record.id = new_id;
                record.config_epoch = 0;
                record.shard_id = Some(new_id);
                self.nodes.insert(new_id, record);
            }
            self.myself = new_id;
            self.current_epoch = 0;
            self.last_vote_epoch = 0;
        }
        if let Some(record) = self.nodes.get_mut(&self.myself) {
            record.flags = NodeFlags::MYSELF | NodeFlags::MASTER;
        }
        self.header_slots_cache = None;
        if was_replica {
            self.emit(Event::RoleChanged(Role::Master));
        }
        self.save_config_now();
    }

    fn set_config_epoch(&mut self, epoch: u64) -> Result<AdminReply, AdminError> {
        if epoch > crate::core::wire::MAX_EPOCH {
            return Err(AdminError::InvalidConfigEpoch(epoch));
        }
        if self.nodes.len() != 1 || self.myself().config_epoch != 0 {
            return Err(AdminError::ConfigEpochNotSettable);
        }
        let myself = self.myself;
        if let Some(record) = self.nodes.get_mut(&myself) {
            record.config_epoch = epoch;
        }
        self.current_epoch = self.current_epoch.max(epoch);
        self.save_config_now();
        Ok(AdminReply::Ok)
    }
}

#[cfg(test)]
mod tests {
    use crate::core::testing::{add_node, core, drain, header, id, own};
    use crate::core::wire::{Body, Message};
    use crate::core::{AdminCommand, AdminError, AdminReply, Output, ReleaseReason, SetSlotAction};

    fn forgotten_sent(outputs: &[Output]) -> Vec<(Option<u8>, u8, u64)> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::Transmit { to, message } => match message.body {
                    Body::ForgottenNode { node, ttl_ms } => {
                        Some((to.id.map(|to| to.0[0]), node.0[0], ttl_ms))
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn forgotten_message(sender: u8, node: u8, ttl_ms: u64) -> Message {
        Message {
            header: header(sender, None, 1, &[]),
            body: Body::ForgottenNode {
                node: id(node),
                ttl_ms,
            },
        }
    }

    #[test]
    fn an_atomic_migration_imports_claims_with_one_bump_or_abandons() {
        use crate::core::slots::{SlotRange, SlotState};
        let range = |start, end| SlotRange { start, end };
        let mut core = core(1);
        core.nodes.get_mut(&id(1)).unwrap().config_epoch = 1;
        add_node(&mut core, 2, None, 2);
        add_node(&mut core, 3, None, 3);
        core.current_epoch = 3;
        own(&mut core, 2, 0..=199);
        own(&mut core, 1, 200..=299);
        drain(&mut core);
        let import = |ranges: Vec<SlotRange>| AdminCommand::ImportSlots {
            ranges,
            source: id(2),
        };
        assert_eq!(
            core.handle_command(1_000, import(vec![range(150, 250)])),
            Err(AdminError::AlreadyOwner(200)),
            "a slot of mine is not imported"
        );
        assert_eq!(
            core.slot_state(150),
            SlotState::Stable,
            "a refusal changes nothing"
        );
        core.handle_command(1_000, import(vec![range(0, 99)]))
            .unwrap();
        assert_eq!(core.slot_state(42), SlotState::Importing(id(2)));
        assert_eq!(
            core.handle_command(1_000, import(vec![range(99, 120)])),
            Err(AdminError::SlotInMigration(99)),
            "one migration per slot"
        );
        let claim = |ranges: Vec<SlotRange>, source: u8| AdminCommand::ClaimSlots {
            ranges,
            source: id(source),
        };
        assert_eq!(
            core.handle_command(1_000, claim(vec![range(0, 100)], 2)),
            Err(AdminError::NotImporting(100))
        );
        assert_eq!(
            core.handle_command(1_000, claim(vec![range(0, 99)], 3)),
            Err(AdminError::NotImporting(0)),
            "only from the migration's source"
        );
        drain(&mut core);
        let reply = core.handle_command(1_000, claim(vec![range(0, 99)], 2));
        assert_eq!(
            reply,
            Ok(AdminReply::Bumped(4)),
            "one bump past the largest epoch"
        );
        assert!((0..=99).all(|slot| core.slot_owner(slot) == Some(id(1))
            && core.slot_state(slot) == SlotState::Stable));
        let pongs = drain(&mut core)
            .iter()
            .filter(|output| matches!(output, Output::Transmit { message, .. } if matches!(message.body, Body::Pong { .. })))
            .count();
        assert_eq!(pongs, 2, "everyone hears of the flip at once");
        assert_eq!(
            core.handle_command(1_000, claim(vec![range(0, 99)], 2)),
            Ok(AdminReply::Still(4)),
            "a repeated flip changes nothing"
        );
        // An abandoned import is never flipped.
        core.handle_command(1_000, import(vec![range(100, 149)]))
            .unwrap();
        core.handle_command(1_000, AdminCommand::AbandonImport(vec![range(100, 149)]))
            .unwrap();
        assert_eq!(core.slot_state(120), SlotState::Stable);
        assert_eq!(core.slot_owner(120), Some(id(2)));
        assert_eq!(
            core.handle_command(1_000, AdminCommand::AbandonImport(vec![range(0, 99)])),
            Ok(AdminReply::Still(4)),
            "a cancel after the flip reports the flip"
        );
        // A cancel never ends a key-by-key import (its keys may be their only copy); on
        // slots no one imports here it changes nothing.
        core.handle_command(
            1_000,
            AdminCommand::SetSlot {
                slot: 160,
                action: SetSlotAction::Importing(id(2)),
            },
        )
        .unwrap();
        assert_eq!(
            core.handle_command(1_000, AdminCommand::AbandonImport(vec![range(150, 169)])),
            Err(AdminError::KeyByKeyImport(160))
        );
        assert_eq!(core.slot_state(160), SlotState::Importing(id(2)));
        assert_eq!(
            core.handle_command(1_000, AdminCommand::AbandonImport(vec![range(170, 179)])),
            Ok(AdminReply::Ok)
        );
        assert_eq!(
            core.handle_command(1_000, claim(vec![range(100, 149)], 2)),
            Err(AdminError::NotImporting(100))
        );
        // The source's side: the slots go to their new owner in one command.
        core.handle_command(
            1_000,
            AdminCommand::GiveSlots {
                ranges: vec![range(200, 249)],
                owner: id(3),
            },
        )
        .unwrap();
        assert_eq!(core.slot_owner(249), Some(id(3)));
        assert_eq!(core.slot_owner(250), Some(id(1)));
    }

    #[test]
    fn flushslots_unbinds_every_slot_of_mine_and_no_other() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        own(&mut core, 1, 0..=99);
        own(&mut core, 2, 100..=199);
        drain(&mut core);
        assert_eq!(
            core.handle_command(1_000, AdminCommand::FlushSlots),
            Ok(AdminReply::Ok)
        );
        assert!((0..=99).all(|slot| core.slot_owner(slot).is_none()));
        assert_eq!(core.slot_owner(150), Some(id(2)));
        assert_eq!(
            core.handle_command(1_000, AdminCommand::FlushSlots),
            Ok(AdminReply::Ok),
            "nothing left to flush"
        );
    }

    #[test]
    fn an_atomic_import_is_not_saved_and_a_restart_ends_it_but_a_key_by_key_one_survives() {
        use crate::core::slots::{SlotRange, SlotState};
        use crate::core::{Config, Core};
        let range = |start, end| SlotRange { start, end };
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        own(&mut core, 2, 0..=199);
        own(&mut core, 1, 200..=299);
        drain(&mut core);
        core.handle_command(
            1_000,
            AdminCommand::ImportSlots {
                ranges: vec![range(0, 99)],
                source: id(2),
            },
        )
        .unwrap();
        core.handle_command(
            1_000,
            AdminCommand::SetSlot {
                slot: 150,
                action: SetSlotAction::Importing(id(2)),
            },
        )
        .unwrap();
        assert_eq!(core.slot_state(42), SlotState::Importing(id(2)));
        let saved = core.snapshot();
        assert_eq!(
            saved.importing,
            vec![(150, id(2))],
            "only the key-by-key import is saved"
        );
        assert!(
            drain(&mut core)
                .iter()
                .filter_map(|output| match output {
                    Output::SaveConfig(conf) => Some(conf),
                    _ => None,
                })
                .all(|conf| conf.importing.iter().all(|(slot, _)| *slot == 150)),
            "no saved config names an atomic import"
        );
        let restarted = Core::restore(Config::default(), saved, 5_000).unwrap();
        assert_eq!(restarted.slot_state(42), SlotState::Stable);
        assert_eq!(
            restarted.slot_owner(42),
            Some(id(2)),
            "back with its source"
        );
        assert_eq!(restarted.slot_state(150), SlotState::Importing(id(2)));
        assert_eq!(
            restarted.foreign_slot_ranges(),
            vec![range(0, 149), range(151, 199)],
            "the partial copy goes; the key-by-key import keeps its keys"
        );
        // SETSLOT leaves an atomic import alone; its end (here a flip) frees the slot.
        for action in [SetSlotAction::Importing(id(2)), SetSlotAction::Stable] {
            assert_eq!(
                core.handle_command(1_000, AdminCommand::SetSlot { slot: 42, action }),
                Err(AdminError::AtomicImport(42))
            );
        }
        core.handle_command(
            1_000,
            AdminCommand::ClaimSlots {
                ranges: vec![range(0, 99)],
                source: id(2),
            },
        )
        .unwrap();
        assert!(!core.slots.is_atomic_import(42));
        core.handle_command(
            1_000,
            AdminCommand::SetSlot {
                slot: 42,
                action: SetSlotAction::Migrating(id(2)),
            },
        )
        .unwrap();
        assert_eq!(core.snapshot().migrating, vec![(42, id(2))]);
    }

    #[test]
    fn forget_tells_every_other_node_and_releases_the_forgotten_peer() {
        let mut core = core(1);
        for other in 2..=4 {
            add_node(&mut core, other, None, u64::from(other));
        }
        drain(&mut core);
        core.handle_command(10_000, AdminCommand::Forget(id(4)))
            .unwrap();
        let outputs = drain(&mut core);
        let mut sent = forgotten_sent(&outputs);
        sent.sort();
        assert_eq!(sent, vec![(Some(2), 4, 60_000), (Some(3), 4, 60_000)]);
        assert!(outputs.contains(&Output::ReleasePeer {
            address: "n4:17000".to_string(),
            reason: ReleaseReason::Forgotten,
        }));
    }

    #[test]
    fn a_forgotten_node_message_forgets_and_bans_except_myself_and_my_master() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        add_node(&mut core, 3, None, 3);
        add_node(&mut core, 4, Some(2), 2);
        own(&mut core, 2, 0..=9);
        core.set_my_master(id(2));
        drain(&mut core);
        core.handle_message(10_000, "n3:17000", forgotten_message(3, 1, 5_000));
        core.handle_message(10_000, "n3:17000", forgotten_message(3, 2, 5_000));
        assert!(core.node(&id(1)).is_some() && core.node(&id(2)).is_some());
        assert!(!core.is_blacklisted(&id(2)));
        core.handle_message(10_000, "n9:17000", forgotten_message(9, 4, 5_000));
        assert!(core.node(&id(4)).is_some(), "an unknown sender is ignored");
        core.handle_message(10_000, "n3:17000", forgotten_message(3, 4, 5_000));
        assert!(core.node(&id(4)).is_none());
        assert!(core.is_blacklisted(&id(4)));
        core.handle_tick(15_100);
        assert!(!core.is_blacklisted(&id(4)), "the ban lasts the sent ttl");
    }

    #[test]
    fn forget_of_a_node_already_forgotten_renews_the_ban_and_answers_ok() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        add_node(&mut core, 3, None, 3);
        drain(&mut core);
        core.handle_message(10_000, "n2:17000", forgotten_message(2, 3, 5_000));
        assert!(core.node(&id(3)).is_none());
        assert_eq!(
            core.handle_command(11_000, AdminCommand::Forget(id(3))),
            Ok(AdminReply::Ok),
            "a FORGET elsewhere reached this node first"
        );
        assert!(forgotten_sent(&drain(&mut core)).is_empty());
        core.handle_tick(16_000);
        assert!(core.is_blacklisted(&id(3)), "the ban was renewed");
        assert_eq!(
            core.handle_command(16_000, AdminCommand::Forget(id(9))),
            Err(AdminError::UnknownNode(id(9))),
            "a node never known is still unknown"
        );
    }

    #[test]
    fn pings_carry_the_bans_still_in_force() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        add_node(&mut core, 3, None, 3);
        core.handle_command(10_000, AdminCommand::Forget(id(3)))
            .unwrap();
        drain(&mut core);
        core.handle_tick(12_000);
        let sent = forgotten_sent(&drain(&mut core));
        assert!(
            sent.iter()
                .any(|(to, node, ttl_ms)| *to == Some(2) && *node == 3 && *ttl_ms == 58_000),
            "{sent:?}"
        );
        core.handle_tick(71_000);
        drain(&mut core);
        core.handle_tick(73_000);
        assert!(forgotten_sent(&drain(&mut core)).is_empty());
    }

    #[test]
    fn setslot_node_giving_my_slot_away_drops_its_keys() {
        let mut core = core(1);
        own(&mut core, 1, 0..=9);
        add_node(&mut core, 2, None, 2);
        drain(&mut core);
        let give = AdminCommand::SetSlot {
            slot: 4,
            action: SetSlotAction::Node(id(2)),
        };
        core.handle_command(10_000, give).unwrap();
        let outputs = drain(&mut core);
        let single = crate::core::slots::SlotRange::single(4);
        assert!(
            outputs.contains(&Output::DropSlots(vec![single])),
            "{outputs:?}"
        );
        let take_back = AdminCommand::SetSlot {
            slot: 4,
            action: SetSlotAction::Node(id(1)),
        };
        core.handle_command(10_000, take_back).unwrap();
        assert!(!drain(&mut core)
            .iter()
            .any(|output| matches!(output, Output::DropSlots(_))));
    }

    #[test]
    fn setslot_node_giving_my_last_slot_away_makes_me_a_replica_of_the_new_owner() {
        let mut core = core(1);
        own(&mut core, 1, 0..=1);
        add_node(&mut core, 2, None, 2);
        drain(&mut core);
        for slot in 0..=1 {
            let give = AdminCommand::SetSlot {
                slot,
                action: SetSlotAction::Node(id(2)),
            };
            core.handle_command(10_000, give).unwrap();
        }
        assert_eq!(
            core.my_master(),
            Some(id(2)),
            "an empty master follows the new owner"
        );
        let outputs = drain(&mut core);
        let told = outputs.iter().any(|output| {
            matches!(output, Output::Transmit { to, message }
                if to.id == Some(id(2)) && message.header.master_id == Some(id(2)))
        });
        assert!(told, "the new role is announced at once: {outputs:?}");
    }

    #[test]
    fn without_replica_migration_an_emptied_master_stays_a_master() {
        let mut core = core(1);
        core.config.allow_replica_migration = false;
        own(&mut core, 1, 0..=0);
        add_node(&mut core, 2, None, 2);
        let give = AdminCommand::SetSlot {
            slot: 0,
            action: SetSlotAction::Node(id(2)),
        };
        core.handle_command(10_000, give).unwrap();
        assert_eq!(core.my_master(), None);
    }
}

/// The atomic import's slot states against a model: any sequence of ImportSlots,
/// ClaimSlots and AbandonImport on a target, interleaved with newer claims of other masters
/// (gossip racing the migration), leaves every slot exactly where the model says, and a
/// refused command changes nothing.
#[cfg(test)]
mod migration_model {
    use proptest::prelude::*;

    use crate::core::slots::{SlotRange, SlotState};
    use crate::core::testing::{add_node, core, drain, id, own};
    use crate::core::{AdminCommand, AdminReply, Core};

    /// Slots of the model; the last one is always the target's, so it stays a master.
    const SLOTS: u16 = 48;

    /// One input to the target (node 1). Masters 2 and 3 are the possible sources.
    #[derive(Clone, Debug)]
    enum Step {
        Import {
            start: u16,
            length: u16,
            source: u8,
        },
        Claim {
            start: u16,
            length: u16,
            source: u8,
        },
        Abandon {
            start: u16,
            length: u16,
        },
        /// Master `claimer` claims the range with an epoch above every one so far.
        NewerClaim {
            start: u16,
            length: u16,
            claimer: u8,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        let range = (0..SLOTS - 1, 1..16u16);
        prop_oneof![
            (range.clone(), 2..=3u8).prop_map(|((start, length), source)| Step::Import {
                start,
                length,
                source
            }),
            (range.clone(), 2..=3u8).prop_map(|((start, length), source)| Step::Claim {
                start,
                length,
                source
            }),
            range
                .clone()
                .prop_map(|(start, length)| Step::Abandon { start, length }),
            (range, 2..=3u8).prop_map(|((start, length), claimer)| Step::NewerClaim {
                start,
                length,
                claimer
            }),
        ]
    }

    /// Each slot's owner (a node byte) and state, as the rules say.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Model {
        slots: Vec<(u8, SlotState)>,
    }

    fn slots_of(start: u16, length: u16) -> std::ops::RangeInclusive<u16> {
        start..=(start + length - 1).min(SLOTS - 2)
    }

    fn observed(core: &Core) -> Model {
        Model {
            slots: (0..SLOTS)
                .map(|slot| {
                    let owner = core.slot_owner(slot).map_or(0, |owner| owner.0[0]);
                    (owner, core.slot_state(slot))
                })
                .collect(),
        }
    }

    impl Model {
        /// Applies `step`; whether the target's command succeeded (`None`: not a command).
        fn apply(&mut self, step: &Step) -> Option<bool> {
            match *step {
                Step::Import {
                    start,
                    length,
                    source,
                } => {
                    let range = slots_of(start, length);
                    let allowed = range.clone().all(|slot| {
                        let (owner, state) = self.slots[slot as usize];
                        owner != 1 && state == SlotState::Stable
                    });
                    if allowed {
                        for slot in range {
                            self.slots[slot as usize].1 = SlotState::Importing(id(source));
                        }
                    }
                    Some(allowed)
                }
                Step::Claim {
                    start,
                    length,
                    source,
                } => {
                    let range = slots_of(start, length);
                    let allowed = range.clone().all(|slot| match self.slots[slot as usize] {
                        (_, SlotState::Importing(from)) => from == id(source),
                        (owner, SlotState::Stable) => owner == 1,
                        _ => false,
                    });
                    if allowed {
                        for slot in range {
                            self.slots[slot as usize] = (1, SlotState::Stable);
                        }
                    }
                    Some(allowed)
                }
                Step::Abandon { start, length } => {
                    let range = slots_of(start, length);
                    if range.clone().any(|slot| self.slots[slot as usize].0 == 1) {
                        return Some(true);
                    }
                    for slot in range {
                        self.slots[slot as usize].1 = SlotState::Stable;
                    }
                    Some(true)
                }
                Step::NewerClaim {
                    start,
                    length,
                    claimer,
                } => {
                    // Rule 2 with a greater epoch; an importing slot is not rebound.
                    for slot in slots_of(start, length) {
                        let entry = &mut self.slots[slot as usize];
                        if !matches!(entry.1, SlotState::Importing(_)) {
                            *entry = (claimer, SlotState::Stable);
                        }
                    }
                    None
                }
            }
        }
    }

    proptest! {
        #[test]
        fn atomic_import_states_follow_the_model(steps in proptest::collection::vec(step(), 1..40)) {
            let mut target = core(1);
            target.nodes.get_mut(&id(1)).unwrap().config_epoch = 1;
            add_node(&mut target, 2, None, 2);
            add_node(&mut target, 3, None, 3);
            target.current_epoch = 3;
            own(&mut target, 2, 0..=23);
            own(&mut target, 3, 24..=SLOTS - 2);
            own(&mut target, 1, SLOTS - 1..=SLOTS - 1);
            drain(&mut target);
            let mut model = observed(&target);
            let mut epoch = 3;
            for step in &steps {
                let expected = model.apply(step);
                let epoch_before = target.myself().config_epoch;
                let range = |start: u16, length: u16| {
                    let slots = slots_of(start, length);
                    vec![SlotRange::new(*slots.start(), *slots.end()).unwrap()]
                };
                let result = match *step {
                    Step::Import { start, length, source } => Some(target.handle_command(
                        1_000,
                        AdminCommand::ImportSlots { ranges: range(start, length), source: id(source) },
                    )),
                    Step::Claim { start, length, source } => Some(target.handle_command(
                        1_000,
                        AdminCommand::ClaimSlots { ranges: range(start, length), source: id(source) },
                    )),
                    Step::Abandon { start, length } => Some(target.handle_command(
                        1_000,
                        AdminCommand::AbandonImport(range(start, length)),
                    )),
                    Step::NewerClaim { start, length, claimer } => {
                        epoch += 1;
                        target.nodes.get_mut(&id(claimer)).unwrap().config_epoch = epoch;
                        target.update_slots_config_with(id(claimer), epoch, &range(start, length));
                        None
                    }
                };
                drain(&mut target);
                prop_assert_eq!(result.as_ref().map(Result::is_ok), expected, "{:?}: {:?}", step, result);
                if let Some(Ok(AdminReply::Bumped(bumped))) = result {
                    prop_assert!(bumped > epoch_before, "a flip bumps the epoch once");
                    epoch = epoch.max(bumped);
                }
                prop_assert_eq!(&observed(&target), &model, "after {:?}", step);
            }
        }
    }
}
