//! Hand-over: a master gives its slots to one of its replicas by the protocol's own
//! means, so that neither a shutdown nor a restart without data loses acknowledged writes.
//!
//! - **The message.** [`Body::HandOver`] goes from a master to one of its replicas. In
//!   [`HandOverMode::Graceful`] the replica runs the lossless manual failover (MFSTART,
//!   wait for the paused offset, election with FORCEACK); in
//!   [`HandOverMode::WithoutData`] it starts the FORCEACK election at once, as CLUSTER
//!   FAILOVER FORCE does. A replica ignores it from anyone but its current master. In
//!   graceful mode it also ignores it when its data is too old to fail over
//!   (`cluster-replica-validity-factor` applied to the age of its replication link, as
//!   Redis measures data age); without data, the master holds nothing, so any data of
//!   that master the replica holds beats none whatever its age, and only a replica that
//!   holds none of it (never synced from it, nothing restored) ignores it.
//! - **Writes paused.** A pause (MFSTART, or the shutdown's [`Core::pause_for_hand_over`])
//!   queues [`crate::core::Output::PauseWrites`]; the caller stops writes, waits for those
//!   in flight and reports the log offset after the last one with
//!   [`Core::handle_writes_paused`]. A manual failover advertises only that offset.
//! - **Shutdown.** The caller pauses, waits until a replica acknowledged the paused offset,
//!   then [`Core::hand_over`]s in graceful mode to it and waits until it owns the slots.
//! - **Restart without data.** [`Core::note_restarted_without_data`] (the runtime calls it
//!   when nodes.conf says this node is a master with slots and its engine is empty)
//!   withholds the slots' data: the node neither serves them ([`Core::serves_data`]) nor
//!   accepts writes nor may ship its empty engine to a replica. It listens for its
//!   replicas for at most `RestartWithoutData::listen_ms` (node_timeout), asks the one
//!   heard with the best non-zero offset to take over without data, and becomes its
//!   replica by the usual config rules (as it does when a replica took over while it was
//!   down). While none took over it asks again, the best replica then heard, every
//!   `2 × node_timeout` + the election timeout (an election fails without a majority of
//!   voters, or when they voted for this shard lately). It serves its slots empty, and
//!   says so ([`Event::RestartedWithoutData`]), only when no replica can hold any of their
//!   data: it knows none (after the startup writable delay), or every one advertises
//!   offset 0. A known replica that stays silent keeps the slots withheld: it may be cut
//!   off rather than gone, and an empty master would make it throw its copy away at its
//!   next sync, acknowledged writes included. CLUSTER FORGET of a replica gone for good
//!   lets the node serve the slots empty.
//! - **Slots no replica knew of.** A replica promoted in place of its master claims the
//!   slots it knew that master to own; a slot the master claimed just before it went down
//!   (an atomic migration's flip, whose data the replica holds by replication) stays with
//!   the master, which restarts with no replica left. Before serving such slots empty it
//!   asks every former replica (from nodes.conf) promoted since to adopt them
//!   ([`HandOverMode::Adopt`]); the one promoted in its place takes them with an epoch
//!   bump, and the master becomes its replica by the config rules. None within the
//!   takeover bound: the slots are served empty.

use std::collections::BTreeMap;

use crate::core::node::NodeId;
use crate::core::wire::{Body, HandOverMode, Header};
use crate::core::{Core, Event};

/// The takeover bound after a hand-over request without data: this many node timeouts,
/// plus the election timeout.
const TAKEOVER_NODE_TIMEOUTS: u64 = 2;

/// How often, per node timeout, a master restarted without data asks its promoted former
/// replicas to adopt the slots it kept, until one does or the takeover bound passes.
const ADOPT_ASKS_PER_NODE_TIMEOUT: u64 = 4;

/// Why a hand-over step was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandOverError {
    /// Only a master owning slots hands them over.
    #[error("this node is not a master owning slots")]
    NotAMasterWithSlots,
    /// The named node is not a replica of this master.
    #[error("{0} is not a replica of this master")]
    NotMyReplica(NodeId),
}

/// A master restarted without its data (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestartWithoutData {
    /// When the restart was noted (`now` ms).
    since_ms: u64,
    /// Replicas heard from since, with the offset they last advertised.
    heard: BTreeMap<NodeId, u64>,
    /// The replica asked to take over, and when (`now` ms).
    asked: Option<(NodeId, u64)>,
    /// The replicas nodes.conf listed at the restart: one promoted since may hold the data
    /// of slots this node kept (see [`HandOverMode::Adopt`]).
    former_replicas: Vec<NodeId>,
    /// When the promoted former replicas were first and last asked to adopt the slots
    /// (`now` ms).
    adopt_asked: Option<(u64, u64)>,
}

impl RestartWithoutData {
    /// How long the node listens for its replicas before choosing one: node_timeout.
    pub(crate) fn listen_ms(node_timeout_ms: u64) -> u64 {
        node_timeout_ms
    }
}

/// Hand-over state of a master: a restart without data, a shutdown pause.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HandOverState {
    restart: Option<RestartWithoutData>,
    /// Writes are paused for the shutdown hand-over (for good: the node is stopping);
    /// inside, the paused offset once the caller reported it.
    shutdown_pause: Option<Option<u64>>,
    /// The master this node replicated when it was promoted in its place, while it stays
    /// a master since: its engine holds that master's data as of the promotion, so it may
    /// adopt slots that master kept (see [`HandOverMode::Adopt`]). Not persisted: a
    /// restart empties the engine.
    pub(crate) promoted_from: Option<NodeId>,
}

impl HandOverState {
    /// True while writes must not be accepted.
    pub(crate) fn blocks_writes(&self) -> bool {
        self.restart.is_some() || self.shutdown_pause.is_some()
    }
}

impl Core {
    /// The runtime restarted this node from nodes.conf with an empty engine. If the node
    /// is a master owning slots, it withholds them (see the module docs) until a replica
    /// took them over or the bounds passed; otherwise nothing changes.
    pub fn note_restarted_without_data(&mut self, now_ms: u64) {
        self.advance(now_ms);
        if !self.is_voting_master(&self.myself) {
            return;
        }
        tracing::info!(
            slots = self.slots.count_of(&self.myself),
            "restarted as a master without its data: asking a replica to take over"
        );
        let former_replicas = self.replicas_of(&self.myself).map(|node| node.id).collect();
        self.handover.restart = Some(RestartWithoutData {
            since_ms: self.now_ms,
            heard: BTreeMap::new(),
            asked: None,
            former_replicas,
            adopt_asked: None,
        });
    }

    /// The master this node was promoted in place of, while that one is away from the
    /// shard: known, a master owning no slot, not back as this node's replica (down, or
    /// restarted and not yet following). It belongs to the shard but holds none of what
    /// this node took since, so what must survive a crash of this node (an import) waits
    /// for it as for a replica.
    pub fn former_master_away(&self) -> Option<NodeId> {
        let former = self.handover.promoted_from?;
        let node = self.nodes.get(&former)?;
        (node.is_master() && self.slots.count_of(&former) == 0).then_some(former)
    }

    /// False while this node withholds its slots after a restart without data: it must
    /// not serve them, nor ship its (empty) engine to a replica.
    pub fn serves_data(&self) -> bool {
        self.handover.restart.is_none()
    }

    /// Shutdown, first step: pause writes for good. The caller stops them on the
    /// [`crate::core::Output::PauseWrites`] this queues and reports the offset.
    pub fn pause_for_hand_over(&mut self, now_ms: u64) -> Result<(), HandOverError> {
        self.advance(now_ms);
        if !self.is_voting_master(&self.myself) {
            return Err(HandOverError::NotAMasterWithSlots);
        }
        if self.handover.shutdown_pause.is_none() {
            self.handover.shutdown_pause = Some(None);
            tracing::info!("writes paused for the shutdown hand-over");
            self.outputs.push_back(crate::core::Output::PauseWrites);
        }
        self.finish_input();
        Ok(())
    }

    /// The offset after the last write before the shutdown pause, once reported.
    pub fn hand_over_paused_offset(&self) -> Option<u64> {
        self.handover.shutdown_pause.flatten()
    }

    /// Asks `replica`, one of this master's replicas, to take over in `mode`.
    pub fn hand_over(
        &mut self,
        now_ms: u64,
        replica: NodeId,
        mode: HandOverMode,
    ) -> Result<(), HandOverError> {
        self.advance(now_ms);
        if !self.is_voting_master(&self.myself) {
            return Err(HandOverError::NotAMasterWithSlots);
        }
        let is_mine = self
            .nodes
            .get(&replica)
            .is_some_and(|node| node.is_replica() && node.master_id == Some(self.myself));
        if !is_mine {
            return Err(HandOverError::NotMyReplica(replica));
        }
        tracing::info!(%replica, ?mode, "asking a replica to take over");
        self.send(replica, Body::HandOver { mode });
        self.finish_input();
        Ok(())
    }

    /// The caller stopped writes after a [`crate::core::Output::PauseWrites`]: `offset` is
    /// the log offset after the last write that applied. A paused manual failover now
    /// advertises it to its replica.
    pub fn handle_writes_paused(&mut self, now_ms: u64, offset: u64) {
        self.advance(now_ms);
        self.replication.offset = self.replication.offset.max(offset);
        let myself = self.myself;
        if let Some(record) = self.nodes.get_mut(&myself) {
            record.repl_offset = self.replication.offset;
        }
        if let Some(pause) = self.handover.shutdown_pause.as_mut() {
            pause.get_or_insert(offset);
        }
        if let Some(replica) = self.manual.note_paused_offset(offset) {
            tracing::info!(%replica, offset, "writes paused: telling the replica the offset");
            self.send_ping(replica, crate::core::gossip::PingKind::Ping);
        }
        self.finish_input();
    }

    /// A hand-over request from `sender`: taken only from my master, when my data is
    /// recent enough to fail over.
    pub(super) fn handle_hand_over(&mut self, sender: &NodeId, mode: HandOverMode) {
        let without_data = match mode {
            HandOverMode::Adopt => return self.handle_adopt(sender),
            HandOverMode::Graceful => false,
            HandOverMode::WithoutData => true,
        };
        let Some(master) = self.my_master() else {
            return;
        };
        if master != *sender || self.slots.count_of(&master) == 0 {
            tracing::debug!(%sender, "ignored a hand-over from a node that is not my master");
            return;
        }
        // Graceful: the master still holds everything, so only fresh data may take over
        // (the manual failover then waits for the paused offset). Without data: the
        // master holds nothing, so this replica's data beats none however old it is, as
        // long as it is this master's.
        let eligible = if without_data {
            self.replica_holds_masters_data()
        } else {
            self.replica_data_is_recent()
        };
        if !eligible {
            tracing::info!(%sender, ?mode, "ignored a hand-over: my data cannot take over");
            return;
        }
        tracing::info!(%sender, ?mode, "my master hands its slots over");
        self.start_manual_failover(without_data);
    }

    /// Remembers a replica of mine heard from while withholding data after a restart.
    pub(super) fn note_restart_header(&mut self, header: &Header) {
        let myself = self.myself;
        let Some(restart) = self.handover.restart.as_mut() else {
            return;
        };
        if header.master_id == Some(myself) && self.nodes.contains_key(&header.sender) {
            restart.heard.insert(header.sender, header.repl_offset);
        }
    }

    /// After every input while withholding data: follow a takeover, ask the best replica
    /// (again every takeover bound while none took over), or serve the slots empty when no
    /// replica can hold any of their data.
    pub(super) fn handle_restart_progress(&mut self) {
        let Some(restart) = self.handover.restart.clone() else {
            return;
        };
        if !self.is_voting_master(&self.myself) {
            // The config rules made this node a replica (or took its slots): the data
            // lives elsewhere, and a full sync brings it here.
            tracing::info!("restarted without data: the slots are served elsewhere now");
            self.handover.restart = None;
            return;
        }
        let elapsed_ms = self.now_ms.saturating_sub(restart.since_ms);
        if let Some((_, asked_ms)) = restart.asked {
            let bound_ms =
                self.config.node_timeout_ms * TAKEOVER_NODE_TIMEOUTS + self.auth_timeout_ms();
            if self.now_ms.saturating_sub(asked_ms) >= bound_ms {
                // The election failed (no majority of voters, say): a replica still holds
                // what this node lost, so ask again rather than serve the slots empty.
                self.ask_best_replica(&restart);
            }
            return;
        }
        let replicas: Vec<NodeId> = self.replicas_of(&self.myself).map(|node| node.id).collect();
        if replicas.is_empty() {
            if elapsed_ms >= self.config.writable_delay_ms && !self.ask_to_adopt(&restart) {
                self.serve_empty();
            }
            return;
        }
        let all_heard = replicas.iter().all(|id| restart.heard.contains_key(id));
        if all_heard && replicas.iter().all(|id| restart.heard.get(id) == Some(&0)) {
            // Every replica advertises offset 0: none holds any of the slots' data.
            self.serve_empty();
            return;
        }
        let listened = elapsed_ms >= RestartWithoutData::listen_ms(self.config.node_timeout_ms);
        if all_heard || listened {
            self.ask_best_replica(&restart);
        }
    }

    /// Asks the replica heard with the best offset (ties to the smaller id, as the
    /// election's rank) to take over without data. None heard yet: keep listening (a
    /// silent replica may be cut off, not gone, and still hold the data).
    fn ask_best_replica(&mut self, restart: &RestartWithoutData) {
        let replicas: Vec<NodeId> = self.replicas_of(&self.myself).map(|node| node.id).collect();
        let best = restart
            .heard
            .iter()
            .filter(|(id, offset)| replicas.contains(id) && **offset > 0)
            .max_by(|(id_a, offset_a), (id_b, offset_b)| {
                offset_a.cmp(offset_b).then(id_b.cmp(id_a))
            })
            .map(|(id, _)| *id);
        let Some(best) = best else {
            return;
        };
        if let Some(state) = self.handover.restart.as_mut() {
            state.asked = Some((best, self.now_ms));
        }
        tracing::info!(replica = %best, "asking the best replica to take over without data");
        self.send(
            best,
            Body::HandOver {
                mode: HandOverMode::WithoutData,
            },
        );
    }

    /// No replica of this node is left, but former ones may have been promoted in its
    /// place while it was down: their engines hold its data as of their promotion,
    /// including slots it claimed just before (an atomic migration's flip) that they never
    /// heard of. Asks every such master, not failing, to adopt the slots, again every
    /// takeover bound; false once the bound passed with none adopting them, or when there
    /// is none to ask (then the slots are served empty).
    fn ask_to_adopt(&mut self, restart: &RestartWithoutData) -> bool {
        let promoted: Vec<NodeId> = restart
            .former_replicas
            .iter()
            .filter(|id| {
                self.nodes.get(id).is_some_and(|node| {
                    node.is_master() && !node.is_failing() && !node.in_handshake()
                })
            })
            .copied()
            .collect();
        if promoted.is_empty() {
            return false;
        }
        let bound_ms =
            self.config.node_timeout_ms * TAKEOVER_NODE_TIMEOUTS + self.auth_timeout_ms();
        let now_ms = self.now_ms;
        let first_ms = match restart.adopt_asked {
            Some((first_ms, _)) if now_ms.saturating_sub(first_ms) >= bound_ms => {
                tracing::info!("no former replica adopted the slots");
                return false;
            }
            // Asked lately: its answer is the claim, which takes a round trip. Again after
            // a while (it may not have heard this node's claim of the slots yet).
            Some((_, last_ms))
                if now_ms.saturating_sub(last_ms)
                    < self.config.node_timeout_ms / ADOPT_ASKS_PER_NODE_TIMEOUT =>
            {
                return true
            }
            Some((first_ms, _)) => first_ms,
            None => now_ms,
        };
        if let Some(state) = self.handover.restart.as_mut() {
            state.adopt_asked = Some((first_ms, now_ms));
        }
        for node in promoted {
            tracing::info!(%node, "asking a promoted former replica to adopt my slots");
            self.send(
                node,
                Body::HandOver {
                    mode: HandOverMode::Adopt,
                },
            );
        }
        true
    }

    /// [`HandOverMode::Adopt`] from `sender`: taken only by a master promoted in place of
    /// `sender` (so its engine holds `sender`'s data) and still one: it takes every slot
    /// `sender` owns in its view with an epoch bump, and tells everyone.
    fn handle_adopt(&mut self, sender: &NodeId) {
        if self.handover.promoted_from != Some(*sender) || !self.myself().is_master() {
            tracing::debug!(%sender, "ignored an adoption request: not promoted in its place");
            return;
        }
        self.adopt_slots_of(sender);
    }

    /// After every tick of a master promoted in place of a master that is FAIL now and
    /// still owns slots in this node's view with no healthy replica to fail over to (it
    /// claimed them just before going down, unheard of here): no one else can serve their
    /// data, and this node's engine holds it, so it adopts them as a failover would.
    pub(super) fn handle_failed_former_master(&mut self) {
        let Some(former) = self.handover.promoted_from else {
            return;
        };
        let failed = self.nodes.get(&former).is_some_and(|node| node.is_failed());
        if !failed || !self.myself().is_master() || self.slots.count_of(&former) == 0 {
            return;
        }
        if self.replicas_of(&former).any(|node| !node.is_failing()) {
            return;
        }
        tracing::info!(%former, "my former master failed with slots no replica of it holds");
        self.adopt_slots_of(&former);
    }

    /// Takes every slot `former` owns in this node's view, with an epoch bump, and tells
    /// everyone.
    fn adopt_slots_of(&mut self, former: &NodeId) {
        let ranges = self.slots.ranges_of(former);
        if ranges.is_empty() {
            return;
        }
        self.take_slots_with_epoch_bump(crate::core::slots::slots_of_ranges(&ranges));
        tracing::info!(
            %former,
            slots = ?ranges,
            epoch = self.myself().config_epoch,
            "adopted slots of the master I was promoted in place of"
        );
    }

    /// No replica can hold any of the slots' data: serve them empty and say so.
    fn serve_empty(&mut self) {
        self.handover.restart = None;
        let slots = self.slots.ranges_of(&self.myself);
        tracing::warn!(
            slots = self.slots.count_of(&self.myself),
            "restarted without data and no replica holds any: serving the slots empty"
        );
        self.emit(Event::RestartedWithoutData { slots });
    }
}

#[cfg(test)]
mod tests {
    use crate::core::slots::SlotRange;
    use crate::core::testing::{add_node, core, drain, header, id, own};
    use crate::core::wire::{Body, HandOverMode, Message, MFLAG_FORCEACK, MFLAG_PAUSED};
    use crate::core::{AdminCommand, Core, Event, Output};

    fn slots() -> Vec<SlotRange> {
        vec![SlotRange::new(0, 99).unwrap()]
    }

    /// Node 3 (me), replica of master 1 (slots 0..=99) with its link up, beside master 2
    /// (slots 100..=199).
    fn replica() -> Core {
        let mut core = core(3);
        add_node(&mut core, 1, None, 1);
        own(&mut core, 1, 0..=99);
        add_node(&mut core, 2, None, 2);
        own(&mut core, 2, 100..=199);
        core.set_my_master(id(1));
        // Streaming from its master: its data is fresh.
        let now = core.now_ms();
        core.handle_replication_status(now, 0, true);
        drain(&mut core);
        core
    }

    /// Node 1 (me), master of slots 0..=99 with replicas 3 and 4, beside master 2.
    fn master() -> Core {
        let mut core = core(1);
        own(&mut core, 1, 0..=99);
        add_node(&mut core, 2, None, 2);
        own(&mut core, 2, 100..=199);
        add_node(&mut core, 3, Some(1), 1);
        add_node(&mut core, 4, Some(1), 1);
        core
    }

    fn hand_over_from(core: &mut Core, sender: u8, mode: HandOverMode) -> Vec<Output> {
        let now = core.now_ms();
        let message = Message {
            header: header(sender, None, 1, &slots()),
            body: Body::HandOver { mode },
        };
        core.handle_message(now, &format!("n{sender}:17000"), message);
        drain(core)
    }

    fn sent(outputs: &[Output], wanted: fn(&Message) -> bool) -> Vec<String> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::Transmit { to, message } if wanted(message) => Some(to.address.clone()),
                _ => None,
            })
            .collect()
    }

    fn vote_requests(outputs: &[Output]) -> Vec<String> {
        sent(outputs, |message| {
            message.body == Body::FailoverAuthRequest && message.header.mflags & MFLAG_FORCEACK != 0
        })
    }

    #[test]
    fn a_hand_over_is_taken_only_from_my_master() {
        let mut core = replica();
        let outputs = hand_over_from(&mut core, 2, HandOverMode::WithoutData);
        assert!(
            vote_requests(&outputs).is_empty(),
            "another master's request"
        );
        let outputs = hand_over_from(&mut core, 1, HandOverMode::WithoutData);
        assert!(!vote_requests(&outputs).is_empty());
    }

    #[test]
    fn without_data_starts_a_forced_election_at_once() {
        let mut core = replica();
        let outputs = hand_over_from(&mut core, 1, HandOverMode::WithoutData);
        let requests = vote_requests(&outputs);
        assert!(requests.contains(&"n2:17000".to_string()), "{requests:?}");
        assert!(sent(&outputs, |message| message.body == Body::MfStart).is_empty());
    }

    #[test]
    fn graceful_runs_the_manual_failover_from_mfstart() {
        let mut core = replica();
        let outputs = hand_over_from(&mut core, 1, HandOverMode::Graceful);
        assert_eq!(
            sent(&outputs, |message| message.body == Body::MfStart),
            vec!["n1:17000".to_string()]
        );
        assert!(
            vote_requests(&outputs).is_empty(),
            "no election before the offsets match"
        );
    }

    #[test]
    fn a_replica_whose_data_is_too_old_ignores_a_graceful_hand_over_but_takes_one_without_data() {
        let mut core = replica();
        // No replication link for far beyond 10 s + node_timeout × 10 (bus messages from
        // the master carry no data and do not count).
        core.now_ms += 60_000;
        let outputs = hand_over_from(&mut core, 1, HandOverMode::Graceful);
        assert!(sent(&outputs, |message| message.body == Body::MfStart).is_empty());
        // The master lost its data: old data beats none.
        let outputs = hand_over_from(&mut core, 1, HandOverMode::WithoutData);
        assert!(!vote_requests(&outputs).is_empty());
    }

    /// Node 3 (me), following master 1 (slots 0..=99) beside master 2, with offset 500
    /// of older data and no replication link since; `other_shard`: it came by REPLICATE.
    fn replica_not_synced_since_following(other_shard: bool) -> Core {
        let mut core = core(3);
        add_node(&mut core, 1, None, 1);
        own(&mut core, 1, 0..=99);
        add_node(&mut core, 2, None, 2);
        own(&mut core, 2, 100..=199);
        if other_shard {
            core.set_my_master_in_another_shard(id(1));
        } else {
            core.set_my_master(id(1));
        }
        let now = core.now_ms();
        core.handle_replication_status(now, 500, false);
        drain(&mut core);
        core
    }

    #[test]
    fn a_replica_that_followed_its_slots_new_owner_takes_a_hand_over_without_data_unsynced() {
        // It held these slots' data (it or its master owned them) when node 1 took them:
        // node 1, restarted without data, refuses every sync meanwhile.
        let mut core = replica_not_synced_since_following(false);
        let outputs = hand_over_from(&mut core, 1, HandOverMode::WithoutData);
        assert!(!vote_requests(&outputs).is_empty());
    }

    #[test]
    fn a_replica_holding_another_shards_data_ignores_a_hand_over_without_data() {
        let mut core = replica_not_synced_since_following(true);
        let outputs = hand_over_from(&mut core, 1, HandOverMode::WithoutData);
        assert!(vote_requests(&outputs).is_empty());
    }

    #[test]
    fn a_paused_master_advertises_its_offset_only_once_the_caller_reported_it() {
        let mut core = master();
        let now = core.now_ms();
        core.handle_message(
            now,
            "n3:17000",
            Message {
                header: header(3, Some(1), 1, &slots()),
                body: Body::MfStart,
            },
        );
        let outputs = drain(&mut core);
        assert!(outputs.contains(&Output::PauseWrites));
        assert!(!core.accepts_writes());
        let paused = |message: &Message| message.header.mflags & MFLAG_PAUSED != 0;
        assert!(
            sent(&outputs, paused).is_empty(),
            "PAUSED before the offset"
        );
        core.handle_tick(now + 100);
        assert!(sent(&drain(&mut core), paused).is_empty());
        core.handle_writes_paused(now + 150, 42);
        let outputs = drain(&mut core);
        let to_replica: Vec<&Message> = outputs
            .iter()
            .filter_map(|output| match output {
                Output::Transmit { to, message } if to.address == "n3:17000" => Some(message),
                _ => None,
            })
            .collect();
        assert!(to_replica
            .iter()
            .any(|message| paused(message) && message.header.repl_offset == 42));
    }

    fn heard(core: &mut Core, replica: u8, offset: u64) -> Vec<Output> {
        let now = core.now_ms();
        let mut header = header(replica, Some(1), 1, &slots());
        header.repl_offset = offset;
        let message = Message {
            header,
            body: Body::Pong(Vec::new()),
        };
        core.handle_message(now, &format!("n{replica}:17000"), message);
        drain(core)
    }

    fn hand_overs_without_data(outputs: &[Output]) -> Vec<String> {
        sent(outputs, |message| {
            message.body
                == Body::HandOver {
                    mode: HandOverMode::WithoutData,
                }
        })
    }

    #[test]
    fn a_master_restarted_without_data_neither_serves_nor_writes() {
        let mut core = master();
        core.config.require_full_coverage = false;
        core.state_dirty = true;
        core.update_cluster_state();
        assert!(core.accepts_writes() && core.serves_data());
        core.note_restarted_without_data(10_000);
        assert!(!core.accepts_writes());
        assert!(!core.serves_data());
    }

    #[test]
    fn the_replica_with_the_best_offset_is_asked_once_every_replica_was_heard() {
        let mut core = master();
        core.note_restarted_without_data(10_000);
        assert!(hand_overs_without_data(&heard(&mut core, 3, 50)).is_empty());
        let outputs = heard(&mut core, 4, 70);
        assert_eq!(
            hand_overs_without_data(&outputs),
            vec!["n4:17000".to_string()]
        );
        assert!(
            hand_overs_without_data(&heard(&mut core, 4, 70)).is_empty(),
            "asked once"
        );
    }

    #[test]
    fn after_listening_a_node_timeout_the_best_replica_heard_is_asked() {
        let mut core = master();
        core.note_restarted_without_data(10_000);
        heard(&mut core, 3, 50);
        core.handle_tick(10_500);
        assert!(hand_overs_without_data(&drain(&mut core)).is_empty());
        core.handle_tick(11_000);
        assert_eq!(
            hand_overs_without_data(&drain(&mut core)),
            vec!["n3:17000".to_string()]
        );
    }

    fn restarted_events(outputs: &[Output]) -> Vec<Event> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::Event(event @ Event::RestartedWithoutData { .. }) => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// The node's outputs hold exactly one "served empty" event.
    fn assert_served_empty(core: &mut Core) {
        let expected = Event::RestartedWithoutData { slots: slots() };
        assert_eq!(restarted_events(&drain(core)), vec![expected]);
    }

    #[test]
    fn without_a_takeover_in_time_the_best_replica_is_asked_again_and_the_slots_stay_withheld() {
        let mut core = master();
        core.note_restarted_without_data(10_000);
        heard(&mut core, 3, 50);
        assert_eq!(
            hand_overs_without_data(&heard(&mut core, 4, 10)),
            vec!["n3:17000".to_string()]
        );
        // n3's election failed (no majority of voters); n4 has caught up since.
        heard(&mut core, 4, 60);
        // Bound: 2 × node_timeout + the election timeout (2 s at least).
        core.handle_tick(13_900);
        assert!(hand_overs_without_data(&drain(&mut core)).is_empty());
        core.handle_tick(14_000);
        let outputs = drain(&mut core);
        assert_eq!(
            hand_overs_without_data(&outputs),
            vec!["n4:17000".to_string()]
        );
        assert!(restarted_events(&outputs).is_empty(), "{outputs:?}");
        assert!(!core.serves_data(), "n3 and n4 still hold the data");
        core.handle_tick(30_000);
        assert!(restarted_events(&drain(&mut core)).is_empty());
        assert!(!core.serves_data());
    }

    #[test]
    fn silent_replicas_keep_the_slots_withheld() {
        let mut core = master();
        core.note_restarted_without_data(10_000);
        for now_ms in (10_100..=40_000).step_by(100) {
            core.handle_tick(now_ms);
            let outputs = drain(&mut core);
            assert!(restarted_events(&outputs).is_empty(), "at {now_ms} ms");
            assert!(hand_overs_without_data(&outputs).is_empty());
        }
        assert!(
            !core.serves_data(),
            "a silent replica may be cut off, not gone"
        );
        // One of them is heard at last: it is asked.
        assert_eq!(
            hand_overs_without_data(&heard(&mut core, 4, 10)),
            vec!["n4:17000".to_string()]
        );
    }

    #[test]
    fn forgetting_silent_replicas_gone_for_good_lets_the_slots_be_served_empty() {
        let mut core = master();
        core.note_restarted_without_data(10_000);
        core.handle_tick(20_000);
        assert!(restarted_events(&drain(&mut core)).is_empty());
        for replica in [3, 4] {
            core.handle_command(20_000, AdminCommand::Forget(id(replica)))
                .unwrap_or_else(|error| panic!("{error}"));
        }
        drain(&mut core);
        core.handle_tick(20_100);
        assert_served_empty(&mut core);
        assert!(core.serves_data());
    }

    #[test]
    fn replicas_that_all_advertise_offset_zero_hold_nothing_and_the_slots_are_served_empty() {
        let mut core = master();
        core.note_restarted_without_data(10_000);
        heard(&mut core, 3, 0);
        core.handle_tick(10_100);
        assert!(restarted_events(&drain(&mut core)).is_empty());
        let outputs = heard(&mut core, 4, 0);
        assert!(hand_overs_without_data(&outputs).is_empty());
        assert_eq!(
            restarted_events(&outputs),
            vec![Event::RestartedWithoutData { slots: slots() }]
        );
        assert!(core.serves_data());
    }

    #[test]
    fn a_master_without_replicas_serves_empty_after_the_writable_delay() {
        let mut core = core(1);
        own(&mut core, 1, 0..=99);
        core.config.writable_delay_ms = 2_000;
        core.note_restarted_without_data(10_000);
        core.handle_tick(11_000);
        assert!(restarted_events(&drain(&mut core)).is_empty());
        core.handle_tick(12_000);
        assert_served_empty(&mut core);
    }

    #[test]
    fn a_replica_that_took_over_while_it_was_down_demotes_it_by_the_config_rules() {
        let mut core = master();
        core.nodes.get_mut(&id(1)).unwrap().config_epoch = 1;
        core.note_restarted_without_data(10_000);
        // Replica 3 won an election (epoch 5) while this node was down.
        let now = core.now_ms();
        let message = Message {
            header: header(3, None, 5, &slots()),
            body: Body::Pong(Vec::new()),
        };
        core.handle_message(now, "n3:17000", message);
        let outputs = drain(&mut core);
        assert_eq!(core.my_master(), Some(id(3)));
        assert!(core.serves_data(), "a replica withholds nothing");
        assert!(hand_overs_without_data(&outputs).is_empty());
        assert!(restarted_events(&outputs).is_empty());
    }

    fn message_from(core: &mut Core, sender: u8, header: crate::core::wire::Header, body: Body) {
        let now = core.now_ms();
        core.handle_message(now, &format!("n{sender}:17000"), Message { header, body });
    }

    /// A tick at `now_ms` after n3 (master of 0..=99) and n4 (its replica) were heard.
    fn tick_hearing_3_and_4(core: &mut Core, now_ms: u64) -> Vec<Output> {
        core.handle_tick(now_ms);
        message_from(
            core,
            3,
            header(3, None, 5, &slots()),
            Body::Pong(Vec::new()),
        );
        message_from(
            core,
            4,
            header(4, Some(3), 5, &slots()),
            Body::Pong(Vec::new()),
        );
        drain(core)
    }

    fn adoption_requests(outputs: &[Output]) -> Vec<String> {
        sent(outputs, |message| {
            message.body
                == Body::HandOver {
                    mode: HandOverMode::Adopt,
                }
        })
    }

    fn range(start: u16, end: u16) -> Vec<SlotRange> {
        vec![SlotRange::new(start, end).unwrap()]
    }

    /// Node 1 (me) restarted without data, master of 0..=99 and of 200..=249 (claimed
    /// just before it went down); while it was down replica 3 won an election (epoch 5)
    /// for the slots it knew, 0..=99, and replica 4 follows 3 now.
    fn restarted_after_a_claim_its_replicas_never_heard_of() -> Core {
        let mut core = master();
        core.config.writable_delay_ms = 2_000;
        own(&mut core, 1, 200..=249);
        core.nodes.get_mut(&id(1)).unwrap().config_epoch = 3;
        core.note_restarted_without_data(10_000);
        message_from(
            &mut core,
            3,
            header(3, None, 5, &slots()),
            Body::Pong(Vec::new()),
        );
        message_from(
            &mut core,
            4,
            header(4, Some(3), 5, &slots()),
            Body::Pong(Vec::new()),
        );
        drain(&mut core);
        assert!(core.is_voting_master(&id(1)), "it still owns 200..=249");
        assert_eq!(core.replicas_of(&id(1)).count(), 0);
        core
    }

    #[test]
    fn slots_no_replica_knew_of_are_offered_to_the_promoted_former_replica_before_served_empty() {
        let mut core = restarted_after_a_claim_its_replicas_never_heard_of();
        let outputs = tick_hearing_3_and_4(&mut core, 11_000);
        assert!(adoption_requests(&outputs).is_empty(), "the writable delay");
        let outputs = tick_hearing_3_and_4(&mut core, 12_000);
        assert_eq!(
            adoption_requests(&outputs),
            vec!["n3:17000".to_string()],
            "n3 was promoted in its place; n4 is a replica"
        );
        assert!(restarted_events(&outputs).is_empty());
        assert!(!core.serves_data());
        // Asked again a quarter node timeout later, withheld until the takeover bound.
        let outputs = tick_hearing_3_and_4(&mut core, 12_100);
        assert!(adoption_requests(&outputs).is_empty());
        let outputs = tick_hearing_3_and_4(&mut core, 12_250);
        assert_eq!(adoption_requests(&outputs), vec!["n3:17000".to_string()]);
        for now_ms in (12_300..16_000).step_by(100) {
            let outputs = tick_hearing_3_and_4(&mut core, now_ms);
            assert!(restarted_events(&outputs).is_empty(), "at {now_ms} ms");
        }
        assert!(!core.serves_data());
        let expected = Event::RestartedWithoutData {
            slots: range(200, 249),
        };
        let outputs = tick_hearing_3_and_4(&mut core, 16_000);
        assert_eq!(restarted_events(&outputs), vec![expected]);
    }

    #[test]
    fn once_the_former_replica_adopts_the_slots_the_restarted_master_follows_it() {
        let mut core = restarted_after_a_claim_its_replicas_never_heard_of();
        tick_hearing_3_and_4(&mut core, 12_000);
        let mut slots = slots();
        slots.extend(range(200, 249));
        message_from(
            &mut core,
            3,
            header(3, None, 6, &slots),
            Body::Pong(Vec::new()),
        );
        drain(&mut core);
        assert_eq!(core.my_master(), Some(id(3)));
        assert!(core.serves_data());
        core.handle_tick(20_000);
        assert!(restarted_events(&drain(&mut core)).is_empty());
    }

    /// Node 3 (me), promoted in place of master 1 (epoch 5), which then claims 200..=249 at
    /// epoch 4 (before its crash, unheard of here).
    fn promoted_while_the_former_master_kept_slots() -> Core {
        let mut core = replica();
        core.replace_my_master(id(1), Some(5));
        drain(&mut core);
        message_from(
            &mut core,
            1,
            header(1, None, 4, &range(200, 249)),
            Body::Pong(Vec::new()),
        );
        drain(&mut core);
        assert_eq!(core.slot_owner(200), Some(id(1)));
        core
    }

    /// [`promoted_while_the_former_master_kept_slots`], then `asker` asks 3 to adopt them.
    fn promoted_replica_asked_to_adopt(asker: u8) -> Vec<Output> {
        let mut core = promoted_while_the_former_master_kept_slots();
        let body = Body::HandOver {
            mode: HandOverMode::Adopt,
        };
        let claim = core.slots_of(&id(asker));
        message_from(&mut core, asker, header(asker, None, 4, &claim), body);
        let outputs = drain(&mut core);
        assert_eq!(core.slot_owner(200) == Some(id(3)), asker == 1);
        assert!(core.myself().config_epoch > 4, "above the master's claim");
        outputs
    }

    #[test]
    fn the_replica_promoted_in_a_masters_place_adopts_the_slots_it_kept() {
        let outputs = promoted_replica_asked_to_adopt(1);
        let pongs = sent(&outputs, |message| {
            matches!(message.body, Body::Pong(_))
                && message.header.slots.iter().any(|range| range.contains(200))
        });
        assert!(!pongs.is_empty(), "tells everyone: {outputs:?}");
    }

    #[test]
    fn only_the_replica_promoted_in_its_place_adopts_a_masters_slots() {
        let mut core = replica();
        core.replace_my_master(id(1), Some(5));
        drain(&mut core);
        let body = Body::HandOver {
            mode: HandOverMode::Adopt,
        };
        assert_eq!(core.slot_owner(100), Some(id(2)));
        message_from(
            &mut core,
            2,
            header(2, None, 2, &range(100, 199)),
            body.clone(),
        );
        drain(&mut core);
        assert_eq!(core.slot_owner(100), Some(id(2)), "not promoted from n2");
        // A replica again (of n2): its engine will be n2's; it adopts nothing of n1's.
        core.set_my_master(id(2));
        drain(&mut core);
        message_from(&mut core, 1, header(1, None, 6, &range(200, 249)), body);
        drain(&mut core);
        assert_ne!(core.slot_owner(200), Some(id(3)));
        assert_eq!(core.my_master(), Some(id(2)));
    }

    /// Marks node `byte` FAIL in `core`'s view, then runs a tick.
    fn fail_and_tick(core: &mut Core, byte: u8) {
        core.nodes
            .get_mut(&id(byte))
            .unwrap()
            .flags
            .insert(crate::core::node::NodeFlags::FAIL);
        core.handle_tick(core.now_ms() + 10);
        drain(core);
    }

    #[test]
    fn a_former_master_that_followed_anyone_since_is_never_adopted() {
        let mut core = replica();
        core.replace_my_master(id(1), Some(5));
        drain(&mut core);
        // n1 comes back as a replica (here of n2, after a replica migration), later is
        // promoted there and claims 200..=249, then fails: those are n2's shard's slots.
        message_from(
            &mut core,
            1,
            header(1, Some(2), 2, &range(100, 199)),
            Body::Pong(Vec::new()),
        );
        drain(&mut core);
        message_from(
            &mut core,
            1,
            header(1, None, 6, &range(200, 249)),
            Body::Pong(Vec::new()),
        );
        drain(&mut core);
        assert_eq!(core.slot_owner(200), Some(id(1)));
        fail_and_tick(&mut core, 1);
        assert_eq!(core.slot_owner(200), Some(id(1)), "not this engine's data");
        let body = Body::HandOver {
            mode: HandOverMode::Adopt,
        };
        message_from(&mut core, 1, header(1, None, 6, &range(200, 249)), body);
        drain(&mut core);
        assert_ne!(core.slot_owner(200), Some(id(3)));
    }

    #[test]
    fn a_promoted_replica_adopts_the_slots_its_failed_former_master_kept() {
        let mut core = promoted_while_the_former_master_kept_slots();
        core.handle_tick(core.now_ms() + 10);
        drain(&mut core);
        assert_eq!(core.slot_owner(200), Some(id(1)), "n1 is not failed");
        fail_and_tick(&mut core, 1);
        assert_eq!(core.slot_owner(200), Some(id(3)));
        assert_eq!(core.slot_owner(0), Some(id(3)));
    }
}
