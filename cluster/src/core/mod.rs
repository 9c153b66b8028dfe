//! The sans-IO cluster core: the whole Redis Cluster protocol as a deterministic state machine.
//!
//! The core never reads a clock, opens a socket or spawns a task (`.ci/check-core-purity`
//! fails the build of CI when a file here names tokio, the shell, std's net, fs, thread or
//! clock, or a global RNG). The caller (the tokio runtime, or the simulator in
//! [`crate::sim`]) feeds it inputs, each with `now`, a monotonic millisecond count:
//!
//! - [`Core::handle_message`] / [`Core::handle_datagram`]: a bus message from a peer,
//! - [`Core::handle_tick`]: the cron, every [`TICK_INTERVAL_MS`] (or at [`Core::poll_timeout`]),
//! - [`Core::handle_command`]: an admin command (meet, add slots, failover, ...),
//! - [`Core::handle_link_event`] and [`Core::handle_replication_status`]: runtime facts.
//!
//! After each input the caller drains [`Core::poll_output`] **in order** until it returns
//! `None`; [`output`] states the drain-order contract (a save before the transmits that
//! depend on it).
//!
//! Layout, one concern per file: [`config`] (tunables and their defaults), [`output`]
//! (outputs, events), [`restore`] (snapshot and restart), [`node`] (ids, flags, records),
//! [`slots`] (slot table), [`wire`] (messages and encoding), `gossip` (ping schedule,
//! MEET/handshake, gossip), [`failure`] (PFAIL/FAIL, the failure-report rule), `failover`
//! (elections, votes, manual failover), `epochs` (config rules 1-2, UPDATE, collisions),
//! [`handover`] (shutdown hand-over, restart without data, the writes pause),
//! [`formation`] (the autopilot: a cluster forming itself from seeds),
//! `replica_migration`, `state` (cluster_state), [`admin`] (commands), [`rng`], `timers`,
//! and [`nodes_conf`] (the nodes.conf text format). The views (CLUSTER NODES, SLOTS, ...)
//! live outside the protocol state, in [`crate::views`].

pub mod admin;
pub mod config;
mod epochs;
mod failover;
pub mod failure;
pub mod formation;
mod gossip;
pub mod handover;
pub mod node;
pub mod nodes_conf;
pub mod output;
mod replica_migration;
pub mod restore;
pub mod rng;
pub mod slots;
mod state;
#[cfg(test)]
pub(crate) mod testing;
mod timers;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use admin::{AdminCommand, AdminError, AdminReply, FailoverMode, ResetMode, SetSlotAction};
pub use config::{Config, NODE_TIMEOUT_MS_MIN};
use failover::{FailoverState, ManualFailover};
use formation::FormationState;
pub use handover::HandOverError;
use handover::HandOverState;
pub use nodes_conf::NodesConf;
pub use output::{Event, Output, Peer, ReleaseReason, Role};
pub use restore::RestoreError;
pub use state::ClusterState;
use state::StateTracker;
use timers::Timers;

use node::{NodeFlags, NodeId, NodeRecord};
use rng::Rng;
use slots::{Slot, SlotRange, SlotState, SlotTable};
use wire::{Body, DecodeError, Header, Message, MessageType};

/// Period of the cron ([`Core::handle_tick`]), in milliseconds.
pub const TICK_INTERVAL_MS: u64 = 100;
/// Most nodes (handshakes included) the table holds; gossip and MEETs beyond it are
/// ignored. Redis advises at most ~1000 nodes; nodes.conf accepts 16384.
pub const MAX_KNOWN_NODES: usize = 16_384;

/// Message counters as CLUSTER INFO shows them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stats {
    /// Messages sent, indexed by [`MessageType::index`].
    pub sent: [u64; MessageType::COUNT],
    /// Messages received, indexed by [`MessageType::index`].
    pub received: [u64; MessageType::COUNT],
    /// Messages dropped because they did not decode or validate.
    pub malformed_dropped: u64,
}

impl Stats {
    /// Total messages sent.
    pub fn total_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// Total messages received.
    pub fn total_received(&self) -> u64 {
        self.received.iter().sum()
    }
}

/// The cluster protocol state machine of one node. See the module docs for the contract.
#[derive(Debug)]
pub struct Core {
    config: Config,
    myself: NodeId,
    nodes: BTreeMap<NodeId, NodeRecord>,
    slots: SlotTable,
    current_epoch: u64,
    last_vote_epoch: u64,
    state: ClusterState,
    stats: Stats,
    rng: Rng,
    /// Drained by the caller after every input; one input queues at most a few messages
    /// per known node, so it is bounded by [`MAX_KNOWN_NODES`].
    outputs: VecDeque<Output>,
    /// Forgotten nodes and when their ban ends (`now` ms).
    blacklist: BTreeMap<NodeId, u64>,
    now_ms: u64,
    timers: Timers,
    failover: FailoverState,
    manual: ManualFailover,
    handover: HandOverState,
    /// The autopilot's formation state (`formation`).
    formation: FormationState,
    tracker: StateTracker,
    replication: ReplicationStatus,
    /// When each orphaned master was first seen orphaned (`now` ms).
    orphaned_since: BTreeMap<NodeId, u64>,
    /// When a PING was last (re)sent to each node, to pace re-sends of unanswered pings.
    ping_attempt_ms: BTreeMap<NodeId, u64>,
    /// Slots whose owner changed during the current input (for events).
    changed_slots: BTreeSet<Slot>,
    /// Non-critical config change waiting to be saved at the end of the input.
    config_dirty: bool,
    /// Something `cluster_state` depends on changed (slots, roles, failure flags) or
    /// time-based delays may have expired (set by the cron).
    state_dirty: bool,
    /// The slots advertised in our headers, recomputed after slot changes.
    header_slots_cache: Option<Vec<SlotRange>>,
    /// Per claimer: the slot-table version and claimed ranges last found to match.
    matching_claims: BTreeMap<NodeId, (u64, Vec<SlotRange>)>,
    /// FAIL nodes already released as long failed ([`ReleaseReason::Failed`]): once per
    /// failure; bounded by the node table (entries go with the FAIL flag or the node).
    released_failed: BTreeSet<NodeId>,
    /// Addresses of unknown senders answered with a PONG and when (`now` ms), so the links
    /// opened to answer them are let go after the handshake lifetime; at most
    /// [`gossip::STRANGER_ADDRESSES_MAX`].
    stranger_replies: BTreeMap<String, u64>,
    /// Test builds only: votes ignore this node's vote history (lastVoteEpoch and the
    /// per-master interval), so the simulator's negative tests can show a double vote.
    #[cfg(test)]
    pub(crate) fault_vote_ignores_history: bool,
}

/// What the runtime last reported about replication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ReplicationStatus {
    /// Our replication offset (master: written; replica: processed).
    offset: u64,
    /// For a replica: whether the link to the master is up.
    master_link_up: bool,
    /// Last time we heard from our master, or the link was reported up (`now` ms);
    /// `None` until the replication link to the current master was first reported up
    /// (Redis's "repl down since ever"): such a replica holds none of its master's data
    /// and may not fail over automatically.
    last_master_interaction_ms: Option<u64>,
    /// Last time the replication link was reported up (`now` ms), `None` since this node
    /// became a replica of its current master until then: the age of the data itself,
    /// which bus messages do not refresh (a hand-over's eligibility).
    last_link_up_ms: Option<u64>,
    /// The data this node holds, until it syncs from its current master, is of other
    /// slots than that master's: it moved to another shard (REPLICATE, replica
    /// migration) since it started. Following a new owner of the same slots (it took them
    /// over, or my master became its replica) keeps the data theirs.
    held_data_foreign: bool,
}

impl Core {
    /// A new node knowing only itself: a master with no slots and epochs 0.
    pub fn new(config: Config, now_ms: u64) -> Core {
        let mut rng = Rng::new(config.rng_seed);
        let myself = config.myself_id.unwrap_or_else(|| NodeId::random(&mut rng));
        let mut record = NodeRecord::new(
            myself,
            &config.ip,
            config.client_port,
            config.bus_port,
            now_ms,
        );
        record.hostname = config.hostname.clone();
        record.flags = NodeFlags::MYSELF | NodeFlags::MASTER;
        record.shard_id = Some(myself);
        let mut nodes = BTreeMap::new();
        nodes.insert(myself, record);
        Core {
            config,
            myself,
            nodes,
            slots: SlotTable::new(),
            current_epoch: 0,
            last_vote_epoch: 0,
            state: ClusterState::Fail,
            stats: Stats::default(),
            rng,
            outputs: VecDeque::new(),
            blacklist: BTreeMap::new(),
            now_ms,
            timers: Timers::new(now_ms),
            failover: FailoverState::default(),
            manual: ManualFailover::default(),
            handover: HandOverState::default(),
            formation: FormationState::default(),
            tracker: StateTracker::default(),
            replication: ReplicationStatus::default(),
            orphaned_since: BTreeMap::new(),
            ping_attempt_ms: BTreeMap::new(),
            changed_slots: BTreeSet::new(),
            config_dirty: false,
            state_dirty: true,
            header_slots_cache: None,
            matching_claims: BTreeMap::new(),
            released_failed: BTreeSet::new(),
            stranger_replies: BTreeMap::new(),
            #[cfg(test)]
            fault_vote_ignores_history: false,
        }
    }

    /// This node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's id.
    pub fn myself_id(&self) -> NodeId {
        self.myself
    }

    /// This node's record.
    pub fn myself(&self) -> &NodeRecord {
        // The record for myself is inserted at construction and never removed.
        &self.nodes[&self.myself]
    }

    /// Every known node, myself and handshake nodes included, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// The record of `id`, if known.
    pub fn node(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }

    /// `currentEpoch`.
    pub fn current_epoch(&self) -> u64 {
        self.current_epoch
    }

    /// `lastVoteEpoch`.
    pub fn last_vote_epoch(&self) -> u64 {
        self.last_vote_epoch
    }

    /// The configEpoch a view shows for `id`: its own for a master, its master's for a replica.
    pub fn node_epoch(&self, id: &NodeId) -> u64 {
        let Some(record) = self.nodes.get(id) else {
            return 0;
        };
        match record.master_id.and_then(|master| self.nodes.get(&master)) {
            Some(master) if record.is_replica() => master.config_epoch,
            _ => record.config_epoch,
        }
    }

    /// The owner of `slot` in this node's view.
    pub fn slot_owner(&self, slot: Slot) -> Option<NodeId> {
        self.slots.owner(slot)
    }

    /// This node's migration state for `slot`.
    pub fn slot_state(&self, slot: Slot) -> SlotState {
        self.slots.state(slot)
    }

    /// The whole slot table (owners, counts, open slots).
    pub fn slot_table(&self) -> &SlotTable {
        &self.slots
    }

    /// The slots `id` owns, as ranges.
    pub fn slots_of(&self, id: &NodeId) -> Vec<SlotRange> {
        self.slots.ranges_of(id)
    }

    /// `cluster_state`.
    pub fn cluster_state(&self) -> ClusterState {
        self.state
    }

    /// Message counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The latest `now` the core has seen, in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The replicas of `master` in id order.
    pub fn replicas_of(&self, master: &NodeId) -> impl Iterator<Item = &NodeRecord> {
        let master = *master;
        self.nodes
            .values()
            .filter(move |node| node.is_replica() && node.master_id == Some(master))
    }

    /// True while `id` is banned by FORGET (it may not be re-added from gossip).
    pub fn is_blacklisted(&self, id: &NodeId) -> bool {
        self.blacklist
            .get(id)
            .is_some_and(|until_ms| *until_ms > self.now_ms)
    }

    /// The next output to act on, in order; `None` when the queue is empty.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// True when this node may accept writes: a master, `cluster_state` ok, not paused
    /// for a manual failover or a hand-over, not withholding its slots after a restart
    /// without data.
    pub fn accepts_writes(&self) -> bool {
        self.myself().is_master()
            && self.state == ClusterState::Ok
            && !self.manual.is_paused()
            && !self.handover.blocks_writes()
    }

    /// The master this node replicates, if it is a replica.
    pub fn my_master(&self) -> Option<NodeId> {
        let myself = self.myself();
        myself.master_id.filter(|_| myself.is_replica())
    }

    /// Bytes arrived from a peer: decodes, then handles the message; a malformed message
    /// is dropped and counted in [`Stats::malformed_dropped`].
    pub fn handle_datagram(
        &mut self,
        now_ms: u64,
        from: &str,
        bytes: &[u8],
    ) -> Result<(), DecodeError> {
        match wire::decode(bytes) {
            Ok(message) => {
                self.handle_message(now_ms, from, message);
                Ok(())
            }
            Err(error) => {
                self.stats.malformed_dropped += 1;
                tracing::debug!(%from, %error, "dropped a malformed bus message");
                Err(error)
            }
        }
    }

    /// A decoded bus message from the peer at bus address `from`.
    pub fn handle_message(&mut self, now_ms: u64, from: &str, message: Message) {
        self.advance(now_ms);
        let message_type = message.body.message_type();
        self.stats.received[message_type.index()] += 1;
        let sender = message.header.sender;
        if self.is_known(&sender) && sender != self.myself {
            self.note_sender_header(&message.header);
            self.note_restart_header(&message.header);
        }
        match &message.body {
            Body::Ping(_) | Body::Meet(_) | Body::Pong(_) => {
                self.handle_ping_family(from, &message)
            }
            Body::Fail { node } => self.handle_fail_message(&sender, node),
            Body::Update {
                node,
                config_epoch,
                slots,
            } => self.handle_update(&sender, node, *config_epoch, slots),
            Body::FailoverAuthRequest => self.handle_auth_request(&message.header),
            Body::FailoverAuthAck => self.handle_auth_ack(&message.header),
            Body::MfStart => self.handle_mfstart(&sender),
            Body::ForgottenNode { node, ttl_ms } => {
                self.handle_forgotten_node(&sender, node, *ttl_ms)
            }
            Body::HandOver { mode } => self.handle_hand_over(&sender, *mode),
            Body::Formation(message) => self.handle_formation_message(&sender, message),
        }
        self.handle_replica_failover();
        self.handle_restart_progress();
        self.finish_input();
    }

    /// The runtime's link to `peer` went up or down.
    pub fn handle_link_event(&mut self, now_ms: u64, peer: &NodeId, up: bool) {
        self.advance(now_ms);
        if let Some(node) = self.nodes.get_mut(peer) {
            if node.flags.contains(NodeFlags::MYSELF) {
                return;
            }
            node.link = if up {
                node::LinkState::Connected
            } else {
                node::LinkState::Disconnected
            };
        }
        self.finish_input();
    }

    /// The runtime's replication report: our offset and, for a replica, whether the link
    /// to the master is up.
    pub fn handle_replication_status(&mut self, now_ms: u64, offset: u64, master_link_up: bool) {
        self.advance(now_ms);
        self.replication.offset = offset;
        if master_link_up {
            self.replication.last_master_interaction_ms = Some(self.now_ms);
            self.replication.last_link_up_ms = Some(self.now_ms);
        }
        self.replication.master_link_up = master_link_up;
        let myself = self.myself;
        if let Some(record) = self.nodes.get_mut(&myself) {
            record.repl_offset = offset;
        }
        self.handle_manual_failover_progress();
        self.handle_replica_failover();
        self.finish_input();
    }

    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn is_known(&self, id: &NodeId) -> bool {
        self.nodes.get(id).is_some_and(|node| !node.in_handshake())
    }

    /// Header processing common to every message from a known node: liveness, epochs,
    /// replication offset.
    fn note_sender_header(&mut self, header: &Header) {
        let now = self.now_ms;
        if header.current_epoch > self.current_epoch {
            self.current_epoch = header.current_epoch;
            self.config_dirty = true;
        }
        let is_my_master = self.my_master() == Some(header.sender);
        let Some(node) = self.nodes.get_mut(&header.sender) else {
            return;
        };
        node.data_received_ms = now;
        node.repl_offset = header.repl_offset;
        if header.config_epoch > node.config_epoch {
            node.config_epoch = header.config_epoch;
            self.config_dirty = true;
        }
        // Bus traffic keeps a synced replica's data fresh; it does not sync one.
        if is_my_master && self.replication.last_master_interaction_ms.is_some() {
            self.replication.last_master_interaction_ms = Some(now);
        }
    }

    /// Is `id` a master owning at least one slot (a voter)?
    fn is_voting_master(&self, id: &NodeId) -> bool {
        self.nodes.get(id).is_some_and(NodeRecord::is_master) && self.slots.count_of(id) > 0
    }

    /// `cluster_size`: masters owning at least one slot.
    fn cluster_size(&self) -> usize {
        self.slots
            .owners_with_counts()
            .filter(|(id, _)| self.nodes.get(id).is_some_and(NodeRecord::is_master))
            .count()
    }

    /// Votes or reports needed: a majority of [`Core::cluster_size`].
    fn quorum(&self) -> usize {
        self.cluster_size() / 2 + 1
    }

    fn set_slot_owner(&mut self, slot: Slot, owner: Option<NodeId>) {
        if self.slots.set_owner(slot, owner) != owner {
            self.state_dirty = true;
            self.changed_slots.insert(slot);
            self.header_slots_cache = None;
            self.config_dirty = true;
        }
    }

    /// The header of every message we send.
    fn header(&mut self) -> Header {
        let myself = self.myself().clone();
        let master = self.my_master();
        let slot_owner = master.unwrap_or(self.myself);
        let slots = match &self.header_slots_cache {
            Some(cached) => cached.clone(),
            None => {
                let computed = self.slots.ranges_of(&slot_owner);
                self.header_slots_cache = Some(computed.clone());
                computed
            }
        };
        Header {
            sender: self.myself,
            current_epoch: self.current_epoch,
            config_epoch: self.node_epoch(&self.myself),
            repl_offset: self.replication.offset,
            flags: myself.flags,
            master_id: master,
            slots,
            ip: myself.ip,
            hostname: myself.hostname,
            client_port: myself.client_port,
            bus_port: myself.bus_port,
            cluster_ok: self.state == ClusterState::Ok,
            mflags: self.manual.header_mflags(),
            shard_id: myself.shard_id,
        }
    }

    fn send_to_peer(&mut self, to: Peer, body: Body) {
        self.send_to_peer_with_mflags(to, body, 0);
    }

    /// [`Core::send_to_peer`] with extra `mflags` bits in the header.
    fn send_to_peer_with_mflags(&mut self, to: Peer, body: Body, mflags: u8) {
        // Whatever the header advertises (a currentEpoch just learned, a new role or
        // configEpoch) reaches the disk first, as Redis's save in beforeSleep precedes
        // the socket write: a crash right after the send cannot roll it back.
        if self.config_dirty {
            self.save_config_now();
        }
        self.stats.sent[body.message_type().index()] += 1;
        let mut header = self.header();
        header.mflags |= mflags;
        let message = Message { header, body };
        self.outputs.push_back(Output::Transmit { to, message });
    }

    /// Sends `body` to a known node (ignored for unknown ids, myself and NOADDR nodes,
    /// whose address is not known).
    fn send(&mut self, to: NodeId, body: Body) {
        if to == self.myself {
            return;
        }
        let Some(node) = self.nodes.get(&to) else {
            return;
        };
        if node.flags.contains(NodeFlags::NOADDR) {
            return;
        }
        let peer = Peer {
            address: node.bus_address(),
            id: (!node.in_handshake()).then_some(to),
        };
        self.send_to_peer(peer, body);
    }

    /// Every known node except myself and handshake nodes.
    fn other_known_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|node| {
                node.id != self.myself
                    && !node.in_handshake()
                    && !node.flags.contains(NodeFlags::NOADDR)
            })
            .map(|node| node.id)
            .collect()
    }

    /// Tells the shell to let go of what it keeps for `address` (see [`ReleaseReason`]),
    /// unless a known node other than `released` still lives there.
    fn release_peer(&mut self, address: String, released: &NodeId, reason: ReleaseReason) {
        let still_used = self.nodes.values().any(|node| {
            node.id != *released
                && node.id != self.myself
                && !node.flags.contains(NodeFlags::NOADDR)
                && node.bus_address() == address
        });
        if address.starts_with(':') || still_used {
            return;
        }
        self.outputs
            .push_back(Output::ReleasePeer { address, reason });
    }

    /// Persists the configuration now, ahead of any transmit queued after this call.
    fn save_config_now(&mut self) {
        self.config_dirty = false;
        let snapshot = self.snapshot();
        self.outputs.push_back(Output::SaveConfig(snapshot));
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    /// End of every input: refresh the cluster state, flush slot events and pending saves.
    fn finish_input(&mut self) {
        self.update_cluster_state();
        if !self.changed_slots.is_empty() {
            let changed = std::mem::take(&mut self.changed_slots);
            let mut runs: Vec<(SlotRange, Option<NodeId>)> = Vec::new();
            for slot in changed {
                let owner = self.slots.owner(slot);
                match runs.last_mut() {
                    Some((range, last)) if *last == owner && range.end + 1 == slot => {
                        range.end = slot
                    }
                    _ => runs.push((SlotRange::single(slot), owner)),
                }
            }
            for (range, owner) in runs {
                self.emit(Event::SlotOwnerChanged { range, owner });
            }
        }
        if self.config_dirty {
            self.save_config_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_core_is_a_slotless_master_knowing_itself() {
        let core = Core::new(Config::default(), 0);
        assert_eq!(core.nodes().count(), 1);
        assert!(core.myself().is_master());
        assert!(core.myself().flags.contains(NodeFlags::MYSELF));
        assert_eq!(core.current_epoch(), 0);
        assert_eq!(core.cluster_state(), ClusterState::Fail);
    }

    #[test]
    fn a_message_with_an_unknown_code_is_dropped_counted_and_reported() {
        let mut core = testing::core(1);
        testing::add_node(&mut core, 2, None, 1);
        let mut header = testing::header(2, None, 1, &[]);
        header.flags = NodeFlags(NodeFlags::MASTER.0 | 1 << 15);
        let bytes = wire::encode(&Message {
            header,
            body: Body::Ping(Vec::new()),
        });
        let result = core.handle_datagram(10_000, "n2:17000", &bytes);
        assert!(
            matches!(result, Err(DecodeError::Invalid { .. })),
            "{result:?}"
        );
        assert_eq!(core.stats().malformed_dropped, 1);
        assert_eq!(core.stats().total_received(), 0, "nothing was handled");
        assert!(!core
            .node(&testing::id(2))
            .unwrap()
            .flags
            .contains(NodeFlags(1 << 15)));
    }
}
