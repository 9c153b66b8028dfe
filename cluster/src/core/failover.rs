//! Failover (5 of the spec): replica elections, master votes, and manual failover.
//!
//! A replica whose master is FAIL waits an election delay (fixed + random + rank × step),
//! bumps currentEpoch, persists it, asks every master for a vote, and on a majority takes
//! over its master's slots with the new configEpoch. A master grants one vote per epoch,
//! at most one per failing master every 2 × node_timeout, and only if the requester's
//! slots are not claimed by a newer configEpoch; the vote is persisted before the ACK.
//! The delays scale with node_timeout (Redis: 500 ms + 0..500 ms + rank × 1 s whatever the
//! timeout): `clamp(node_timeout/20, 50, 500)` ms fixed, as much random, and
//! `clamp(node_timeout/10, 100, 1000)` ms per rank. Manual failover (default, FORCE,
//! TAKEOVER) uses MFSTART and the PAUSED/FORCEACK message flags.

use std::collections::BTreeSet;

use crate::core::gossip::PingKind;
use crate::core::node::{NodeFlags, NodeId};
use crate::core::wire::{Body, Header, MFLAG_FORCEACK, MFLAG_PAUSED};
use crate::core::{Core, Event, Role};

/// Smallest election timeout, in ms (Redis: 2000).
const AUTH_TIMEOUT_MIN_MS: u64 = 2000;
/// Masters vote for one replica of a given master every this many node timeouts.
const VOTE_INTERVAL_MULT: u64 = 2;
/// Redis's fixed election delay (and its random part's range), in ms.
const REDIS_ELECTION_FIXED_DELAY_MS: u64 = 500;
/// Redis's election delay per rank, in ms.
const REDIS_ELECTION_RANK_STEP_MS: u64 = 1000;
/// A paused master pauses writes for this many manual-failover timeouts.
const MANUAL_FAILOVER_PAUSE_MULT: u64 = 2;

/// The replica side of an election.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FailoverState {
    /// When the current attempt starts asking for votes (`now` ms), if one is scheduled.
    auth_time_ms: Option<u64>,
    /// The epoch of the attempt once the request went out.
    auth_epoch: u64,
    /// Whether the vote request went out.
    auth_sent: bool,
    /// Our rank when the attempt was scheduled.
    rank: u64,
    /// Masters that voted for this attempt.
    voters: BTreeSet<NodeId>,
}

impl FailoverState {
    /// The election start time when it is still ahead.
    pub(crate) fn pending_deadline_ms(&self) -> Option<u64> {
        self.auth_time_ms.filter(|_| !self.auth_sent)
    }
}

/// Manual failover state on both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ManualFailover {
    /// Deadline of the manual failover in progress (`now` ms).
    end_ms: Option<u64>,
    /// Replica side: the election may start (offsets matched, or FORCE).
    can_start: bool,
    /// Replica side: the paused master's frozen offset, once seen.
    master_offset: Option<u64>,
    /// Master side: the replica taking over; writes are paused meanwhile.
    replica: Option<NodeId>,
    /// Master side: the log offset after the last write, reported by the caller once the
    /// pause is in force ([`Core::handle_writes_paused`]); advertised only from then on.
    paused_offset: Option<u64>,
}

impl ManualFailover {
    /// True on a master paused for a manual failover.
    pub(crate) fn is_paused(&self) -> bool {
        self.replica.is_some()
    }

    /// The replica a paused master keeps pinging.
    pub(crate) fn paused_for_replica(&self) -> Option<NodeId> {
        self.replica
    }

    /// Master side: paused, and the caller has not reported the paused offset yet.
    pub(crate) fn awaits_paused_offset(&self) -> bool {
        self.replica.is_some() && self.paused_offset.is_none()
    }

    /// Master side: the pause is in force at `offset`; returns the replica to tell.
    pub(crate) fn note_paused_offset(&mut self, offset: u64) -> Option<NodeId> {
        if !self.awaits_paused_offset() {
            return None;
        }
        self.paused_offset = Some(offset);
        self.replica
    }

    pub(crate) fn header_mflags(&self) -> u8 {
        let mut flags = 0;
        // PAUSED tells the replica "my offset is final": only once it is.
        if self.replica.is_some() && self.paused_offset.is_some() {
            flags |= MFLAG_PAUSED;
        }
        if self.can_start {
            flags |= MFLAG_FORCEACK;
        }
        flags
    }

    pub(crate) fn note_master_paused_offset(&mut self, offset: u64) {
        if self.end_ms.is_some() && self.master_offset.is_none() {
            self.master_offset = Some(offset);
        }
    }
}

impl Core {
    pub(super) fn auth_timeout_ms(&self) -> u64 {
        self.config
            .node_timeout_ms
            .saturating_mul(2)
            .max(AUTH_TIMEOUT_MIN_MS)
    }

    fn election_fixed_delay_ms(&self) -> u64 {
        if self.config.redis_failover_timing {
            return REDIS_ELECTION_FIXED_DELAY_MS;
        }
        (self.config.node_timeout_ms / 20).clamp(50, 500)
    }

    fn election_rank_step_ms(&self) -> u64 {
        if self.config.redis_failover_timing {
            return REDIS_ELECTION_RANK_STEP_MS;
        }
        (self.config.node_timeout_ms / 10).clamp(100, 1000)
    }

    /// Replicas of my master (NOFAILOVER ones excluded) ranked ahead of me: a greater
    /// offset, or the same offset and a smaller id.
    fn replica_rank(&self) -> u64 {
        let Some(master) = self.my_master() else {
            return 0;
        };
        let my_offset = self.replication.offset;
        self.replicas_of(&master)
            .filter(|node| node.id != self.myself && !node.flags.contains(NodeFlags::NOFAILOVER))
            .filter(|node| {
                node.repl_offset > my_offset
                    || (node.repl_offset == my_offset && node.id < self.myself)
            })
            .count() as u64
    }

    /// Can this replica fail over automatically now? (master FAIL, data fresh enough...)
    fn automatic_failover_allowed(&self, master: &NodeId) -> bool {
        let Some(master_record) = self.nodes.get(master) else {
            return false;
        };
        if !master_record.is_failed()
            || self.slots.count_of(master) == 0
            || self.config.replica_no_failover
            || self.myself().flags.contains(NodeFlags::NOFAILOVER)
        {
            return false;
        }
        self.data_age_allows_failover(self.replication.last_master_interaction_ms)
    }

    /// `cluster-replica-validity-factor`: data last refreshed at `refreshed_ms` (`None`:
    /// never, since following this master) is recent enough to take over when its age past node_timeout is at most
    /// `repl_ping_replica_period_ms + node_timeout_ms × factor` (always with factor 0).
    fn data_age_allows_failover(&self, refreshed_ms: Option<u64>) -> bool {
        let factor = self.config.replica_validity_factor;
        if factor == 0 {
            return true;
        }
        let timeout_ms = self.config.node_timeout_ms;
        let Some(refreshed_ms) = refreshed_ms else {
            return false;
        };
        let mut data_age_ms = self.now_ms.saturating_sub(refreshed_ms);
        if data_age_ms > timeout_ms {
            data_age_ms -= timeout_ms;
        }
        data_age_ms <= self.config.repl_ping_replica_period_ms + timeout_ms * factor
    }

    /// The validity rule on the replication link's age (bus messages from the master do
    /// not count: they carry no data): a hand-over's eligibility.
    pub(super) fn replica_data_is_recent(&self) -> bool {
        self.data_age_allows_failover(self.replication.last_link_up_ms)
    }

    /// A hand-over without data may be taken: this replica holds data of its master's
    /// slots, of any age — synced from it since following it, or held from before (a
    /// non-zero offset) without having moved to another shard since it started.
    pub(super) fn replica_holds_masters_data(&self) -> bool {
        self.replication.last_link_up_ms.is_some()
            || (!self.replication.held_data_foreign && self.replication.offset > 0)
    }

    /// The replica's election (`clusterHandleReplicaFailover`), run after every input.
    pub(super) fn handle_replica_failover(&mut self) {
        let Some(master) = self.my_master() else {
            return;
        };
        let manual = self.manual.can_start;
        if !manual && !self.automatic_failover_allowed(&master) {
            return;
        }
        let now = self.now_ms;
        let auth_timeout_ms = self.auth_timeout_ms();
        let expired_for_retry = self
            .failover
            .auth_time_ms
            .is_none_or(|time| now > time && now - time > auth_timeout_ms * 2);
        if expired_for_retry {
            self.schedule_election(manual);
            return;
        }
        let Some(auth_time_ms) = self.failover.auth_time_ms else {
            return;
        };
        if !self.failover.auth_sent && !manual {
            let rank = self.replica_rank();
            if rank > self.failover.rank {
                let shift = (rank - self.failover.rank) * self.election_rank_step_ms();
                self.failover.auth_time_ms = Some(auth_time_ms + shift);
                self.failover.rank = rank;
                return;
            }
        }
        if now < auth_time_ms || now - auth_time_ms > auth_timeout_ms {
            return;
        }
        if !self.failover.auth_sent {
            self.request_votes();
            return;
        }
        if self.failover.voters.len() >= self.quorum() {
            self.win_election(master);
        }
    }

    fn schedule_election(&mut self, manual: bool) {
        let now = self.now_ms;
        let rank = if manual { 0 } else { self.replica_rank() };
        let delay_ms = if manual {
            0
        } else {
            let fixed = self.election_fixed_delay_ms();
            fixed + self.rng.below(fixed) + rank * self.election_rank_step_ms()
        };
        self.failover = FailoverState {
            auth_time_ms: Some(now + delay_ms),
            auth_epoch: 0,
            auth_sent: false,
            rank,
            voters: BTreeSet::new(),
        };
        tracing::info!(delay_ms, rank, "election scheduled");
        // Let the other replicas of my master learn my offset (for their rank).
        if let Some(master) = self.my_master() {
            let siblings: Vec<NodeId> = self
                .replicas_of(&master)
                .map(|node| node.id)
                .filter(|id| *id != self.myself)
                .collect();
            for id in siblings {
                self.send_ping(id, PingKind::Pong);
            }
        }
        if manual {
            self.handle_replica_failover();
        }
    }

    /// Bumps currentEpoch, persists it, then asks every node (masters answer) for a vote.
    fn request_votes(&mut self) {
        self.current_epoch = self.current_epoch.saturating_add(1);
        self.failover.auth_epoch = self.current_epoch;
        self.failover.auth_sent = true;
        self.save_config_now();
        tracing::info!(epoch = self.current_epoch, "requesting failover votes");
        for id in self.other_known_nodes() {
            self.send(id, Body::FailoverAuthRequest);
        }
    }

    /// Takes over the old master's slots with the election's epoch and tells everyone.
    fn win_election(&mut self, old_master: NodeId) {
        let epoch = self.failover.auth_epoch;
        tracing::info!(epoch, "won the election");
        self.replace_my_master(old_master, Some(epoch));
        self.failover = FailoverState::default();
    }

    /// Becomes master in place of `old_master` (election won, or TAKEOVER with `None`
    /// after an epoch bump); persists, then broadcasts a PONG.
    pub(crate) fn replace_my_master(&mut self, old_master: NodeId, epoch: Option<u64>) {
        let myself = self.myself;
        self.set_node_role(myself, None);
        if let Some(record) = self.nodes.get_mut(&myself) {
            record.shard_id = Some(myself);
            if let Some(epoch) = epoch {
                record.config_epoch = record.config_epoch.max(epoch);
            }
        }
        for range in self.slots.ranges_of(&old_master) {
            for slot in range.slots() {
                self.set_slot_owner(slot, Some(myself));
            }
        }
        self.manual = ManualFailover::default();
        self.handover.promoted_from = Some(old_master);
        self.emit(Event::RoleChanged(Role::Master));
        self.update_cluster_state();
        self.save_config_now();
        self.broadcast_pong();
    }

    /// A vote request (`clusterSendFailoverAuthIfNeeded`): grant only if every rule holds.
    pub(super) fn handle_auth_request(&mut self, header: &Header) {
        if let Err(reason) = self.check_vote(header) {
            tracing::debug!(requester = %header.sender, reason, "vote denied");
            return;
        }
        let now = self.now_ms;
        self.last_vote_epoch = self.current_epoch;
        if let Some(master) = header.master_id.and_then(|id| self.nodes.get_mut(&id)) {
            master.voted_time_ms = now;
        }
        self.save_config_now();
        tracing::info!(requester = %header.sender, epoch = self.current_epoch, "vote granted");
        self.send(header.sender, Body::FailoverAuthAck);
    }

    fn check_vote(&self, header: &Header) -> Result<(), &'static str> {
        if !self.is_voting_master(&self.myself) {
            return Err("I am not a master with slots");
        }
        if !self.is_known(&header.sender) {
            return Err("unknown requester");
        }
        if header.current_epoch < self.current_epoch {
            return Err("request epoch is older than mine");
        }
        #[cfg(test)]
        let ignores_history = self.fault_vote_ignores_history;
        #[cfg(not(test))]
        let ignores_history = false;
        if self.last_vote_epoch == self.current_epoch && !ignores_history {
            return Err("already voted in this epoch");
        }
        let Some(master_id) = header.master_id else {
            return Err("requester is a master");
        };
        let Some(master) = self.nodes.get(&master_id) else {
            return Err("requester's master is unknown");
        };
        let force = header.mflags & MFLAG_FORCEACK != 0;
        if !master.is_failed() && !force {
            return Err("requester's master is not failing");
        }
        let interval_ms = self
            .config
            .node_timeout_ms
            .saturating_mul(VOTE_INTERVAL_MULT);
        if master.voted_time_ms != 0
            && self.now_ms - master.voted_time_ms < interval_ms
            && !ignores_history
        {
            return Err("voted for a replica of this master recently");
        }
        for slot in crate::core::slots::slots_of_ranges(&header.slots) {
            if let Some(owner) = self.slots.owner(slot) {
                if !self.slots.is_unclaimed(slot) && self.node_epoch(&owner) > header.config_epoch {
                    return Err("a slot is claimed with a newer configEpoch");
                }
            }
        }
        Ok(())
    }

    /// A vote: counted when it comes from a voting master for the current attempt.
    pub(super) fn handle_auth_ack(&mut self, header: &Header) {
        if self.failover.auth_sent
            && self.is_voting_master(&header.sender)
            && header.current_epoch >= self.failover.auth_epoch
        {
            self.failover.voters.insert(header.sender);
        }
    }

    /// CLUSTER FAILOVER on a replica (default and FORCE; TAKEOVER is in `admin`).
    pub(crate) fn start_manual_failover(&mut self, force: bool) {
        let Some(master) = self.my_master() else {
            return;
        };
        self.manual = ManualFailover {
            end_ms: Some(self.now_ms + self.config.manual_failover_timeout_ms),
            can_start: force,
            ..ManualFailover::default()
        };
        self.failover = FailoverState::default();
        if force {
            self.handle_replica_failover();
        } else {
            self.send(master, Body::MfStart);
        }
    }

    /// MFSTART from one of my replicas: pause writes. The caller stops them and reports
    /// the offset after the last one ([`crate::core::Output::PauseWrites`]); only then is
    /// the replica pinged with it ([`Core::handle_writes_paused`]), so no write accepted
    /// before the pause can land beyond the offset the replica waits for.
    pub(super) fn handle_mfstart(&mut self, sender: &NodeId) {
        let is_my_replica = self
            .nodes
            .get(sender)
            .is_some_and(|node| node.is_replica() && node.master_id == Some(self.myself));
        if !is_my_replica || !self.myself().is_master() {
            return;
        }
        let pause_ms = self.config.manual_failover_timeout_ms * MANUAL_FAILOVER_PAUSE_MULT;
        self.manual = ManualFailover {
            end_ms: Some(self.now_ms + pause_ms),
            replica: Some(*sender),
            ..ManualFailover::default()
        };
        tracing::info!(replica = %sender, "paused for a manual failover");
        self.outputs.push_back(crate::core::Output::PauseWrites);
    }

    /// Replica side: once our offset reaches the paused master's, the election may start.
    pub(super) fn handle_manual_failover_progress(&mut self) {
        if self.manual.can_start || self.manual.end_ms.is_none() {
            return;
        }
        if let Some(master_offset) = self.manual.master_offset {
            if self.replication.offset >= master_offset {
                self.manual.can_start = true;
                tracing::info!("manual failover: offsets match, starting the election");
                self.failover = FailoverState::default();
                self.handle_replica_failover();
            }
        }
    }

    /// Aborts a manual failover past its deadline (and unpauses a master).
    pub(super) fn handle_manual_failover_timeout(&mut self) {
        if let Some(end_ms) = self.manual.end_ms {
            if self.now_ms > end_ms {
                tracing::info!("manual failover timed out");
                self.manual = ManualFailover::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::node::NodeFlags;
    use crate::core::slots::SlotRange;
    use crate::core::testing::{add_node, core, drain, header, id, own};
    use crate::core::wire::{Body, MFLAG_FORCEACK};
    use crate::core::{Core, Output};

    /// Master 1 (me, slots 0..=99, epoch 1) with peer master 2 (FAIL, slots 100..=199,
    /// epoch 2) and its replica 3.
    fn voter() -> Core {
        let mut core = core(1);
        let me = id(1);
        core.nodes.get_mut(&me).unwrap().config_epoch = 1;
        own(&mut core, 1, 0..=99);
        add_node(&mut core, 2, None, 2);
        own(&mut core, 2, 100..=199);
        add_node(&mut core, 3, Some(2), 2);
        core.nodes
            .get_mut(&id(2))
            .unwrap()
            .flags
            .insert(NodeFlags::FAIL);
        core.current_epoch = 5;
        core
    }

    fn request(epoch: u64) -> crate::core::wire::Header {
        let mut header = header(3, Some(2), 2, &[SlotRange::new(100, 199).unwrap()]);
        header.current_epoch = epoch;
        header
    }

    fn acks(outputs: &[Output]) -> usize {
        outputs
            .iter()
            .filter(|output| matches!(output, Output::Transmit { message, .. } if message.body == Body::FailoverAuthAck))
            .count()
    }

    #[test]
    fn a_vote_is_saved_before_the_ack_and_given_once_per_epoch() {
        let mut core = voter();
        core.handle_auth_request(&request(5));
        let outputs = drain(&mut core);
        assert_eq!(acks(&outputs), 1);
        let save = outputs
            .iter()
            .position(|o| matches!(o, Output::SaveConfig(conf) if conf.last_vote_epoch == 5));
        let ack = outputs
            .iter()
            .position(|o| matches!(o, Output::Transmit { .. }));
        assert!(
            save.unwrap() < ack.unwrap(),
            "the vote must be saved before the ACK"
        );
        assert_eq!(core.last_vote_epoch(), 5);
        core.nodes.get_mut(&id(2)).unwrap().voted_time_ms = 0;
        core.handle_auth_request(&request(5));
        assert_eq!(acks(&drain(&mut core)), 0, "second vote in one epoch");
    }

    #[test]
    fn no_vote_for_an_old_epoch_or_a_healthy_master_without_forceack() {
        let mut core = voter();
        core.handle_auth_request(&request(4));
        assert_eq!(acks(&drain(&mut core)), 0);
        core.nodes
            .get_mut(&id(2))
            .unwrap()
            .flags
            .remove(NodeFlags::FAIL);
        core.handle_auth_request(&request(5));
        assert_eq!(acks(&drain(&mut core)), 0);
        let mut forced = request(5);
        forced.mflags = MFLAG_FORCEACK;
        core.handle_auth_request(&forced);
        assert_eq!(acks(&drain(&mut core)), 1);
    }

    #[test]
    fn no_second_vote_for_the_same_master_within_twice_the_node_timeout() {
        let mut core = voter();
        core.handle_auth_request(&request(5));
        assert_eq!(acks(&drain(&mut core)), 1);
        core.current_epoch = 6;
        core.now_ms += 1500;
        core.handle_auth_request(&request(6));
        assert_eq!(acks(&drain(&mut core)), 0, "within 2 x node_timeout");
        core.now_ms += 600;
        core.handle_auth_request(&request(6));
        assert_eq!(acks(&drain(&mut core)), 1);
    }

    #[test]
    fn no_vote_when_a_claimed_slot_has_a_newer_owner() {
        let mut core = voter();
        add_node(&mut core, 4, None, 9);
        own(&mut core, 4, 150..=150);
        core.handle_auth_request(&request(5));
        assert_eq!(acks(&drain(&mut core)), 0);
    }

    #[test]
    fn a_replica_without_slots_to_vote_is_not_a_voter() {
        let mut core = voter();
        core.slots = crate::core::slots::SlotTable::new();
        own(&mut core, 2, 100..=199);
        core.handle_auth_request(&request(5));
        assert_eq!(acks(&drain(&mut core)), 0);
    }
}
