//! Admin commands (CLUSTER MEET, ADDSLOTS, SETSLOT, REPLICATE, FAILOVER, FORGET, RESET,
//! SET-CONFIG-EPOCH, BUMPEPOCH) as typed inputs with typed errors.
//!
//! Every error leaves the core unchanged. Successful commands that change the config
//! queue a `SaveConfig`; some also broadcast (REPLICATE, SETSLOT NODE to myself).

use crate::core::node::{NodeFlags, NodeId};
use crate::core::slots::{slots_of_ranges, Slot, SlotRange, SlotState, SLOT_COUNT};
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
    /// REPLICATE on a master that owns slots.
    #[error("to become a replica the node must be empty and without assigned slots")]
    HasSlots,
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
}

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
        }
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
        self.set_slot_owner(slot, Some(owner));
        if owner == myself {
            if let SlotState::Importing(_) = self.slots.state(slot) {
                self.slots.set_state(slot, SlotState::Stable);
                self.bump_epoch_without_consensus();
                self.broadcast_pong();
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
        self.set_my_master(master);
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
        if !self.nodes.contains_key(&id) {
            return Err(AdminError::UnknownNode(id));
        }
        if self.my_master() == Some(id) {
            return Err(AdminError::ForgetMyMaster);
        }
        self.remove_node(&id);
        self.blacklist
            .insert(id, self.now_ms + self.config.blacklist_ttl_ms);
        Ok(AdminReply::Ok)
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
