//! Autopilot formation: a cluster that forms itself from a seed list, with no operator.
//!
//! Opt-in ([`Config::formation`]). Redis needs `redis-cli --cluster create` to give every
//! master its slots and every replica its master; here the nodes do it themselves, by the
//! protocol's own means:
//!
//! - **Seeds.** A node that knows no other node MEETs each of its seeds, again every
//!   [`SEED_RETRY_MS`] while it stays alone (a seed may start later than it). Gossip does
//!   the rest: every node soon knows every node.
//! - **The coordinator.** A fresh cluster (no slot owned in the node's view, every member a
//!   master without slots) is formed by one node: the one with the lowest id among the
//!   members not failing, once at least [`FormationConfig::min_masters`] are present and
//!   membership (handshakes included) stayed unchanged for [`FormationConfig::settle_ms`]
//!   (so a deployment starting N processes together lands in one plan).
//! - **Propose, accept, commit.** Views differ while gossip spreads, so two nodes may each
//!   think they are the lowest. The coordinator therefore takes a fresh epoch, computes the
//!   plan ([`plan_formation`], a pure function) and *proposes* it
//!   ([`FormationMessage::Propose`]); each member accepts one proposer at a time (it
//!   answers [`FormationMessage::Accepted`], or [`FormationMessage::Refused`] naming the
//!   one it holds). Only when every member of the plan accepted does the coordinator apply
//!   its part and send [`FormationMessage::Commit`] (again every [`PLAN_RESEND_MS`] to
//!   members that have not applied theirs, at most [`PLAN_SENDS_MAX`] times). Two plans
//!   sharing a member cannot both commit. A proposer that is no longer the lowest member
//!   it knows, sees membership change, or gets no full acceptance within
//!   [`PLAN_SENDS_MAX`] sends abandons its proposal ([`FormationMessage::Release`]); a
//!   member also lets go of a proposer that fails (PFAIL or FAIL).
//! - **The plan.** Masters are spread over hosts (bus address host) first, then by id;
//!   the 16384 slots are split among them as redis-cli does ([`spread_slots`]), each master
//!   with a distinct configEpoch (`epoch`, `epoch + 1`, ...) as `--cluster create` sets
//!   them, so no collision follows. Each other member becomes a replica of the master with
//!   the fewest replicas so far, on another host when one is left.
//! - **Applying.** A member applies a plan only while it is a master owning no slot that
//!   has applied none: a master claims the slots of its part no one
//!   else owns in its view; a replica follows its master as soon as it knows it. One plan
//!   per node: a second one (two coordinators that did not know each other) is ignored,
//!   and the config rules resolve what the two claimed.
//! - **Joining later.** A fresh node that arrives in a formed cluster (every slot
//!   claimed: until then it may be a master of the plan whose copy is still on its way)
//!   becomes a replica of
//!   a master lacking [`FormationConfig::replicas_per_master`] replicas (fresh nodes take
//!   the lacking masters in id order, so two arriving together pick different ones); else
//!   it stays a master without slots (a rebalance gives it its share).
//!
//! Every decision is an [`Event::Autopilot`] and a log line; [`FormationConfig::dry_run`]
//! reports them and does nothing.

use std::collections::{BTreeMap, BTreeSet};

use bincode::{Decode, Encode};

use crate::core::node::NodeId;
use crate::core::slots::{slots_of_ranges, spread_slots, SlotRange, SLOT_COUNT};
use crate::core::wire::Body;
use crate::core::{Core, Event};

/// How often a node that knows no other node MEETs its seeds again, in ms.
pub const SEED_RETRY_MS: u64 = 1_000;
/// How often the coordinator sends a proposal or a commit again to members that have not
/// answered or applied it, in ms.
pub const PLAN_RESEND_MS: u64 = 500;
/// Most times the coordinator sends a proposal (then it abandons it), or sends a commit at
/// the fast pace, to one member.
pub const PLAN_SENDS_MAX: u32 = 20;
/// After [`PLAN_SENDS_MAX`] fast sends, how often a commit goes again to a member still
/// known that has not applied it, in ms.
pub const COMMIT_SLOW_RESEND_MS: u64 = 5_000;
/// How long a member holds a proposal it accepted without hearing of it again, in ms: twice
/// as long as the proposer may wait for acceptances, so by then it committed or abandoned
/// (its Release may have been lost).
pub const ACCEPTANCE_TTL_MS: u64 = 2 * PLAN_SENDS_MAX as u64 * PLAN_RESEND_MS;
/// How often a fresh node in a formed cluster looks for a master lacking replicas, in ms
/// (the look walks every node's replicas).
pub const JOIN_CHECK_MS: u64 = 500;
/// Most nodes one plan may name (masters plus replicas); a larger one is malformed
/// (Redis recommends at most 1,000 nodes per cluster).
pub const PLAN_NODES_MAX: usize = 1_000;

/// Autopilot formation settings (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormationConfig {
    /// Bus addresses (`host`, bus port) to MEET while this node knows no other node; may
    /// include this node's own (skipped). At most 64.
    pub seeds: Vec<(String, u16)>,
    /// Members that must be present before the cluster forms: at least 1. The plan makes
    /// at least this many masters.
    pub min_masters: usize,
    /// Replicas wanted per master (0 ..= 16).
    pub replicas_per_master: usize,
    /// Membership must stay unchanged this long before the coordinator forms the cluster
    /// or a late node joins as a replica, in ms.
    pub settle_ms: u64,
    /// Report each decision ([`Event::Autopilot`]) without acting on it.
    pub dry_run: bool,
}

impl Default for FormationConfig {
    fn default() -> Self {
        FormationConfig {
            seeds: Vec::new(),
            min_masters: 3,
            replicas_per_master: 1,
            settle_ms: 2_000,
            dry_run: false,
        }
    }
}

/// Most seeds a [`FormationConfig`] may list.
pub const SEEDS_MAX: usize = 64;
/// Most replicas per master a [`FormationConfig`] may ask for.
pub const REPLICAS_PER_MASTER_MAX: usize = 16;

/// Why a [`FormationConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormationConfigError {
    /// `min_masters` is 0.
    #[error("autopilot min_masters must be at least 1")]
    NoMasters,
    /// More than [`REPLICAS_PER_MASTER_MAX`] replicas per master.
    #[error("autopilot replicas_per_master is {0}, at most {REPLICAS_PER_MASTER_MAX}")]
    TooManyReplicas(usize),
    /// More than [`SEEDS_MAX`] seeds.
    #[error("autopilot lists {0} seeds, at most {SEEDS_MAX}")]
    TooManySeeds(usize),
    /// `min_masters × (1 + replicas_per_master)` exceeds [`PLAN_NODES_MAX`].
    #[error("autopilot min_masters is {0}, so that one plan names at most {PLAN_NODES_MAX} nodes")]
    TooManyMasters(usize),
}

impl FormationConfig {
    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<(), FormationConfigError> {
        if self.min_masters == 0 {
            return Err(FormationConfigError::NoMasters);
        }
        if self.replicas_per_master > REPLICAS_PER_MASTER_MAX {
            return Err(FormationConfigError::TooManyReplicas(
                self.replicas_per_master,
            ));
        }
        if self.seeds.len() > SEEDS_MAX {
            return Err(FormationConfigError::TooManySeeds(self.seeds.len()));
        }
        if self.min_masters > PLAN_NODES_MAX {
            return Err(FormationConfigError::TooManyMasters(self.min_masters));
        }
        Ok(())
    }
}

/// One master of a [`FormationPlan`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PlannedMaster {
    /// The node.
    pub id: NodeId,
    /// Its slots.
    pub slots: Vec<SlotRange>,
}

/// One replica of a [`FormationPlan`].
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PlannedReplica {
    /// The node.
    pub id: NodeId,
    /// The master it follows.
    pub master: NodeId,
}

/// Who masters which slots and who replicates whom in a newly formed cluster.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct FormationPlan {
    /// The plan's epoch: master `i` (in [`FormationPlan::masters`] order) takes configEpoch
    /// `epoch + i`.
    pub epoch: u64,
    /// The masters, with their slots (together all 16384, each once).
    pub masters: Vec<PlannedMaster>,
    /// The replicas.
    pub replicas: Vec<PlannedReplica>,
}

impl FormationPlan {
    /// The configEpoch of master `index`.
    fn master_epoch(&self, index: usize) -> u64 {
        self.epoch.saturating_add(index as u64)
    }

    /// The largest epoch the plan uses.
    pub fn last_epoch(&self) -> u64 {
        self.master_epoch(self.masters.len().saturating_sub(1))
    }

    /// Every node the plan names.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.masters
            .iter()
            .map(|master| master.id)
            .chain(self.replicas.iter().map(|replica| replica.id))
    }

    /// Bounds checked on decode: at most [`PLAN_NODES_MAX`] nodes, valid ranges.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.masters.is_empty() || self.masters.len() + self.replicas.len() > PLAN_NODES_MAX {
            return Err("formation plan with no master or too many nodes");
        }
        if self.masters.iter().any(|master| {
            master.slots.len() > crate::core::wire::MAX_SLOT_RANGES
                || !master.slots.iter().all(SlotRange::is_valid)
        }) {
            return Err("formation plan with invalid slot ranges");
        }
        if self.last_epoch() > crate::core::wire::MAX_EPOCH
            || self.epoch.checked_add(self.masters.len() as u64).is_none()
        {
            return Err("formation plan epoch beyond MAX_EPOCH");
        }
        Ok(())
    }
}

/// The autopilot's formation messages ([`Body::Formation`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum FormationMessage {
    /// The coordinator asks a member to accept its plan (and no other while it holds it).
    Propose(FormationPlan),
    /// The member accepted the proposal of this epoch.
    Accepted {
        /// The plan's epoch.
        epoch: u64,
    },
    /// The member holds another proposer's proposal.
    Refused {
        /// The proposer it holds.
        holder: NodeId,
    },
    /// Every member accepted: apply your part.
    Commit(FormationPlan),
    /// The coordinator abandoned its proposal of this epoch: let go of it.
    Release {
        /// The plan's epoch.
        epoch: u64,
    },
}

impl FormationMessage {
    /// Bounds checked on decode (the plans').
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        match self {
            FormationMessage::Propose(plan) | FormationMessage::Commit(plan) => plan.validate(),
            FormationMessage::Accepted { epoch } | FormationMessage::Release { epoch } => {
                if *epoch > crate::core::wire::MAX_EPOCH {
                    return Err("formation epoch beyond MAX_EPOCH");
                }
                Ok(())
            }
            FormationMessage::Refused { .. } => Ok(()),
        }
    }
}

/// A member as the planner sees it: its id and the host it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node.
    pub id: NodeId,
    /// Its host (the bus address without the port): masters and their replicas go to
    /// different hosts when the members allow.
    pub host: String,
}

/// The plan for `members` (at least one), at `epoch`: `max(min_masters, ⌈n / (1 +
/// replicas)⌉)` masters (at most n), chosen one host at a time (hosts in the order of
/// their lowest id, lowest id first on each), the slots split evenly among them in id
/// order; the other members are spread evenly over the masters, each on another host than
/// its master when the hosts allow (`assign_replicas`). Deterministic: the same members
/// give the same plan whatever their order.
pub fn plan_formation(
    members: &[Member],
    min_masters: usize,
    replicas_per_master: usize,
    epoch: u64,
) -> FormationPlan {
    let mut sorted: Vec<&Member> = members.iter().collect();
    sorted.sort_by_key(|member| member.id);
    sorted.dedup_by_key(|member| member.id);
    let count = sorted.len();
    let wanted = count
        .div_ceil(1 + replicas_per_master)
        .max(min_masters)
        .min(count);
    // Hosts in the order of their lowest id; each host's members in id order.
    let mut hosts: Vec<(&str, Vec<NodeId>)> = Vec::new();
    for member in &sorted {
        match hosts.iter_mut().find(|(host, _)| *host == member.host) {
            Some((_, ids)) => ids.push(member.id),
            None => hosts.push((&member.host, vec![member.id])),
        }
    }
    let mut master_ids: Vec<NodeId> = Vec::with_capacity(wanted);
    let mut round = 0;
    while master_ids.len() < wanted {
        for (_, ids) in &hosts {
            if master_ids.len() < wanted {
                if let Some(id) = ids.get(round) {
                    master_ids.push(*id);
                }
            }
        }
        round += 1;
    }
    master_ids.sort();
    let host_of: BTreeMap<NodeId, &str> = sorted
        .iter()
        .map(|member| (member.id, member.host.as_str()))
        .collect();
    let masters: Vec<PlannedMaster> = master_ids
        .iter()
        .zip(spread_slots(master_ids.len()))
        .map(|(id, range)| PlannedMaster {
            id: *id,
            slots: vec![range],
        })
        .collect();
    let others: Vec<NodeId> = sorted
        .iter()
        .map(|member| member.id)
        .filter(|id| !master_ids.contains(id))
        .collect();
    let replicas = assign_replicas(&master_ids, &others, &host_of, replicas_per_master);
    FormationPlan {
        epoch,
        masters,
        replicas,
    }
}

/// Gives each of `replicas` (ascending) a master: in rounds, one more replica per master
/// each round, on another host than its master (a bipartite matching, so an early choice
/// never strands a later replica on its master's host); replicas no round could place
/// that way go to the master with the fewest, the lower id first.
fn assign_replicas(
    masters: &[NodeId],
    replicas: &[NodeId],
    host_of: &BTreeMap<NodeId, &str>,
    per_master: usize,
) -> Vec<PlannedReplica> {
    let mut counts = vec![0usize; masters.len()];
    let mut assigned: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    let mut left: Vec<NodeId> = replicas.to_vec();
    for _ in 0..per_master {
        if left.is_empty() {
            break;
        }
        let mut holder: Vec<Option<usize>> = vec![None; masters.len()];
        for replica in 0..left.len() {
            let mut seen = vec![false; masters.len()];
            augment(replica, &left, masters, host_of, &mut seen, &mut holder);
        }
        let mut placed = BTreeSet::new();
        for (master, replica) in holder.iter().enumerate() {
            if let Some(replica) = replica {
                assigned.insert(left[*replica], masters[master]);
                counts[master] += 1;
                placed.insert(*replica);
            }
        }
        if placed.is_empty() {
            break;
        }
        left = left
            .iter()
            .enumerate()
            .filter(|(index, _)| !placed.contains(index))
            .map(|(_, id)| *id)
            .collect();
    }
    for replica in left {
        let fewest = (0..masters.len()).min_by_key(|master| (counts[*master], masters[*master]));
        if let Some(master) = fewest {
            counts[master] += 1;
            assigned.insert(replica, masters[master]);
        }
    }
    replicas
        .iter()
        .filter_map(|id| {
            assigned.get(id).map(|master| PlannedReplica {
                id: *id,
                master: *master,
            })
        })
        .collect()
}

/// Kuhn's augmenting path: finds replica `replica` a master on another host, moving
/// replicas already placed in this round when that frees one.
fn augment(
    replica: usize,
    left: &[NodeId],
    masters: &[NodeId],
    host_of: &BTreeMap<NodeId, &str>,
    seen: &mut [bool],
    holder: &mut [Option<usize>],
) -> bool {
    for master in 0..masters.len() {
        if seen[master] || host_of.get(&masters[master]) == host_of.get(&left[replica]) {
            continue;
        }
        seen[master] = true;
        let free = match holder[master] {
            None => true,
            Some(other) => augment(other, left, masters, host_of, seen, holder),
        };
        if free {
            holder[master] = Some(replica);
            return true;
        }
    }
    false
}

/// A decision of the autopilot, reported as [`Event::Autopilot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutopilotDecision {
    /// This node, the coordinator, formed the cluster by this plan (every member accepted
    /// it; in a dry run, the plan it would propose).
    Form(FormationPlan),
    /// This node, arriving in a formed cluster, replicates `master`, which lacked replicas.
    JoinAsReplica {
        /// The master it follows.
        master: NodeId,
    },
}

/// The coordinator's proposal in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Proposal {
    plan: FormationPlan,
    accepted: BTreeSet<NodeId>,
    last_sent_ms: u64,
    sends: u32,
}

/// The formation state of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FormationState {
    /// Nodes known (handshakes included) at the last cron, and since when (`now` ms).
    members: Option<(usize, u64)>,
    /// When the seeds are met next (`now` ms).
    next_seed_meet_ms: u64,
    /// The proposer whose proposal this node accepted (itself while it proposes), and
    /// when (`now` ms).
    accepted: Option<(NodeId, u64)>,
    /// As coordinator: the proposal waiting for acceptances.
    proposal: Option<Proposal>,
    /// As coordinator: the committed plan, when it was last sent, and how many times.
    committed: Option<(FormationPlan, u64, u32)>,
    /// A committed plan whose part is not applied yet (the master is not known yet).
    pending: Option<FormationPlan>,
    /// A plan was applied (or, in a dry run, reported): no other is.
    decided: bool,
    /// When a fresh node in a formed cluster looks for a master lacking replicas next
    /// (`now` ms): at most every [`JOIN_CHECK_MS`].
    next_join_check_ms: u64,
}

impl Core {
    fn formation_config(&self) -> Option<&FormationConfig> {
        self.config.formation.as_ref()
    }

    /// After every cron run: seeds, the proposal, the commit, a pending part, joining.
    pub(super) fn handle_formation(&mut self) {
        let Some(config) = self.formation_config().cloned() else {
            return;
        };
        self.meet_seeds(&config);
        self.track_members();
        self.release_failed_proposer();
        if let Some(plan) = self.formation.pending.clone() {
            self.apply_formation_part(&plan);
        }
        self.resend_commit();
        if self.formation.decided || !self.is_fresh_master() {
            return;
        }
        if self.formation.proposal.is_some() {
            self.advance_proposal();
            return;
        }
        let settled = self
            .formation
            .members
            .is_some_and(|(_, since_ms)| self.now_ms.saturating_sub(since_ms) >= config.settle_ms);
        if !settled {
            return;
        }
        match self.slots.assigned_count() {
            0 => self.propose_formation(&config),
            // Every slot claimed: formed. In between, a plan is being applied, and this
            // node may be one of its masters whose commit is still on its way.
            SLOT_COUNT if self.now_ms >= self.formation.next_join_check_ms => {
                self.formation.next_join_check_ms = self.now_ms + JOIN_CHECK_MS;
                self.join_formed_cluster(&config);
            }
            _ => {}
        }
    }

    /// While no other node is known: MEET every seed, again every [`SEED_RETRY_MS`].
    fn meet_seeds(&mut self, config: &FormationConfig) {
        if !self.other_known_nodes().is_empty() || self.now_ms < self.formation.next_seed_meet_ms {
            return;
        }
        self.formation.next_seed_meet_ms = self.now_ms + SEED_RETRY_MS;
        let me = (self.config.ip.clone(), self.config.bus_port);
        for (host, port) in &config.seeds {
            if (host, *port) != (&me.0, me.1) && self.start_handshake(host, *port, *port) {
                tracing::debug!(%host, port, "autopilot: meeting a seed");
            }
        }
    }

    fn track_members(&mut self) {
        let count = self.nodes.len();
        match self.formation.members {
            Some((known, _)) if known == count => {}
            _ => self.formation.members = Some((count, self.now_ms)),
        }
    }

    /// A member lets go of a proposer that fails or was forgotten: its proposal cannot
    /// complete.
    fn release_failed_proposer(&mut self) {
        let Some((proposer, since_ms)) = self.formation.accepted else {
            return;
        };
        if proposer == self.myself {
            return;
        }
        let gone = self
            .nodes
            .get(&proposer)
            .is_none_or(|node| node.is_failing());
        // Its Release may have been lost: by then it committed or abandoned.
        let expired = self.now_ms.saturating_sub(since_ms) >= ACCEPTANCE_TTL_MS;
        if gone || expired {
            tracing::info!(%proposer, gone, "autopilot: letting go of a proposal");
            self.formation.accepted = None;
        }
    }

    fn accepted_proposer(&self) -> Option<NodeId> {
        self.formation.accepted.map(|(proposer, _)| proposer)
    }

    /// A master owning no slot that applied no plan.
    fn is_fresh_master(&self) -> bool {
        self.myself().is_master()
            && self.slots.count_of(&self.myself) == 0
            && !self.formation.decided
    }

    /// The members a plan may name: known, out of handshake, not failing.
    fn healthy_members(&self) -> Vec<Member> {
        self.nodes
            .values()
            .filter(|node| !node.in_handshake() && !node.is_failing())
            .map(|node| Member {
                id: node.id,
                host: node.ip.clone(),
            })
            .collect()
    }

    /// True when this node may coordinate: every node it knows is a master without slots
    /// and out of handshake, it is the lowest healthy one, and there are enough.
    fn may_coordinate(&self, config: &FormationConfig, members: &[Member]) -> bool {
        let all_fresh_masters = self.nodes.values().all(|node| {
            !node.in_handshake() && node.is_master() && self.slots.count_of(&node.id) == 0
        });
        let lowest = members.iter().map(|member| member.id).min();
        all_fresh_masters && lowest == Some(self.myself) && members.len() >= config.min_masters
    }

    fn propose_formation(&mut self, config: &FormationConfig) {
        let members = self.healthy_members();
        if !self.may_coordinate(config, &members) {
            return;
        }
        if self
            .formation
            .accepted
            .is_some_and(|(proposer, _)| proposer != self.myself)
        {
            // Promised to another proposer; it commits, abandons or fails.
            return;
        }
        let epoch = self.current_epoch.saturating_add(1);
        let plan = plan_formation(
            &members,
            config.min_masters,
            config.replicas_per_master,
            epoch,
        );
        if config.dry_run {
            tracing::info!(
                masters = plan.masters.len(),
                replicas = plan.replicas.len(),
                "autopilot (dry run): would form the cluster"
            );
            self.formation.decided = true;
            self.emit(Event::Autopilot {
                decision: AutopilotDecision::Form(plan),
                dry_run: true,
            });
            return;
        }
        // The epoch is taken: a later proposal of this node gets a new one.
        self.current_epoch = epoch;
        self.config_dirty = true;
        tracing::info!(
            masters = plan.masters.len(),
            replicas = plan.replicas.len(),
            epoch,
            "autopilot: proposing the cluster's formation"
        );
        self.formation.accepted = Some((self.myself, self.now_ms));
        self.formation.proposal = Some(Proposal {
            plan,
            accepted: BTreeSet::from([self.myself]),
            last_sent_ms: 0,
            sends: 0,
        });
        self.advance_proposal();
    }

    /// As proposer: commit once every member accepted; abandon when no longer the one to
    /// coordinate, membership changed, or the sends ran out; else send the proposal again
    /// to those that have not accepted.
    fn advance_proposal(&mut self) {
        let Some(config) = self.formation_config().cloned() else {
            return;
        };
        let Some(mut proposal) = self.formation.proposal.take() else {
            return;
        };
        let members = self.healthy_members();
        let planned: BTreeSet<NodeId> = proposal.plan.members().collect();
        let current: BTreeSet<NodeId> = members.iter().map(|member| member.id).collect();
        if !self.may_coordinate(&config, &members) || planned != current {
            tracing::info!("autopilot: membership changed; abandoning the proposal");
            return self.abandon_proposal(&proposal);
        }
        if proposal.accepted == planned {
            return self.commit_formation(proposal.plan);
        }
        if proposal.sends > 0 && self.now_ms.saturating_sub(proposal.last_sent_ms) < PLAN_RESEND_MS
        {
            self.formation.proposal = Some(proposal);
            return;
        }
        if proposal.sends >= PLAN_SENDS_MAX {
            tracing::info!("autopilot: not every member accepted; abandoning the proposal");
            return self.abandon_proposal(&proposal);
        }
        let waiting: Vec<NodeId> = planned.difference(&proposal.accepted).copied().collect();
        for id in waiting {
            self.send(
                id,
                Body::Formation(FormationMessage::Propose(proposal.plan.clone())),
            );
        }
        proposal.sends += 1;
        proposal.last_sent_ms = self.now_ms;
        self.formation.proposal = Some(proposal);
    }

    fn abandon_proposal(&mut self, proposal: &Proposal) {
        self.formation.proposal = None;
        if self.accepted_proposer() == Some(self.myself) {
            self.formation.accepted = None;
        }
        // Every member: an acceptance whose answer was lost is held too.
        for id in proposal.plan.members().collect::<Vec<_>>() {
            self.send(
                id,
                Body::Formation(FormationMessage::Release {
                    epoch: proposal.plan.epoch,
                }),
            );
        }
        // Settle again before the next proposal.
        self.formation.members = Some((self.nodes.len(), self.now_ms));
    }

    fn commit_formation(&mut self, plan: FormationPlan) {
        tracing::info!(
            masters = plan.masters.len(),
            replicas = plan.replicas.len(),
            epoch = plan.epoch,
            "autopilot: every member accepted; forming the cluster"
        );
        self.emit(Event::Autopilot {
            decision: AutopilotDecision::Form(plan.clone()),
            dry_run: false,
        });
        self.current_epoch = self.current_epoch.max(plan.last_epoch());
        self.apply_formation_part(&plan);
        self.formation.committed = Some((plan, 0, 0));
        self.resend_commit();
    }

    /// As coordinator: sends the commit to every member that has not applied its part in
    /// this node's view, every [`PLAN_RESEND_MS`] for [`PLAN_SENDS_MAX`] sends, then every
    /// [`COMMIT_SLOW_RESEND_MS`] while one is still known and has not.
    fn resend_commit(&mut self) {
        let Some((plan, last_ms, sends)) = self.formation.committed.clone() else {
            return;
        };
        let interval_ms = if sends < PLAN_SENDS_MAX {
            PLAN_RESEND_MS
        } else {
            COMMIT_SLOW_RESEND_MS
        };
        if sends > 0 && self.now_ms.saturating_sub(last_ms) < interval_ms {
            return;
        }
        let waiting: Vec<NodeId> = plan
            .masters
            .iter()
            .filter(|master| self.slots.count_of(&master.id) == 0)
            .map(|master| master.id)
            .chain(
                plan.replicas
                    .iter()
                    // Still a master without slots: a replica of anyone decided already.
                    .filter(|replica| {
                        self.nodes.get(&replica.id).is_some_and(|node| {
                            node.is_master() && self.slots.count_of(&node.id) == 0
                        })
                    })
                    .map(|replica| replica.id),
            )
            .filter(|id| *id != self.myself && self.nodes.contains_key(id))
            .collect();
        if waiting.is_empty() {
            self.formation.committed = None;
            return;
        }
        if sends == PLAN_SENDS_MAX {
            tracing::warn!(?waiting, "autopilot: members have not applied the plan yet");
        }
        for id in waiting {
            self.send(id, Body::Formation(FormationMessage::Commit(plan.clone())));
        }
        self.formation.committed = Some((plan, self.now_ms, sends.saturating_add(1)));
    }

    /// A [`Body::Formation`] message from `sender`.
    pub(super) fn handle_formation_message(&mut self, sender: &NodeId, message: &FormationMessage) {
        if self.formation_config().is_none() || !self.is_known(sender) {
            tracing::debug!(%sender, "ignored a formation message: autopilot off or unknown sender");
            return;
        }
        match message {
            FormationMessage::Propose(plan) => self.handle_proposal(sender, plan),
            FormationMessage::Accepted { epoch } => {
                if let Some(proposal) = self.formation.proposal.as_mut() {
                    if proposal.plan.epoch == *epoch
                        && proposal.plan.members().any(|id| id == *sender)
                    {
                        proposal.accepted.insert(*sender);
                    }
                }
                // Committed as soon as the last acceptance arrives.
                if self.formation.proposal.is_some() {
                    self.advance_proposal();
                }
            }
            FormationMessage::Refused { holder } => {
                tracing::debug!(%sender, %holder, "autopilot: a member holds another proposal");
            }
            FormationMessage::Commit(plan) => {
                let holds_other = self
                    .accepted_proposer()
                    .is_some_and(|proposer| proposer != *sender);
                if holds_other
                    || !self.is_fresh_master()
                    || !plan.members().any(|id| id == self.myself)
                {
                    tracing::debug!(%sender, "ignored a formation commit");
                    return;
                }
                tracing::info!(%sender, epoch = plan.epoch, "autopilot: applying the formation plan");
                self.current_epoch = self.current_epoch.max(plan.last_epoch());
                self.apply_formation_part(plan);
            }
            FormationMessage::Release { .. } => {
                if self.accepted_proposer() == Some(*sender) {
                    self.formation.accepted = None;
                }
            }
        }
    }

    /// A proposal: accepted when this node is a fresh master holding no other proposer's
    /// (a lower proposer wins over this node's own proposal, which it abandons).
    fn handle_proposal(&mut self, sender: &NodeId, plan: &FormationPlan) {
        if !self.is_fresh_master() || !plan.members().any(|id| id == self.myself) {
            return;
        }
        if self.accepted_proposer() == Some(self.myself) && *sender < self.myself {
            if let Some(own) = self.formation.proposal.clone() {
                tracing::info!(%sender, "autopilot: a lower node proposes; abandoning mine");
                self.abandon_proposal(&own);
            }
            self.formation.accepted = None;
        }
        match self.accepted_proposer() {
            Some(holder) if holder != *sender => {
                self.send(
                    *sender,
                    Body::Formation(FormationMessage::Refused { holder }),
                );
            }
            _ => {
                self.formation.accepted = Some((*sender, self.now_ms));
                self.send(
                    *sender,
                    Body::Formation(FormationMessage::Accepted { epoch: plan.epoch }),
                );
            }
        }
    }

    /// Applies this node's part of a committed `plan`, or keeps it pending while its
    /// master is not known yet.
    fn apply_formation_part(&mut self, plan: &FormationPlan) {
        self.formation.decided = true;
        self.formation.pending = None;
        self.formation.accepted = None;
        let myself = self.myself;
        if let Some(index) = plan.masters.iter().position(|master| master.id == myself) {
            // Epochs never go back: a collision among fresh masters may have bumped this
            // one past its planned epoch since the proposal; then a fresh one.
            let planned = plan.master_epoch(index);
            let epoch = if planned > self.myself().config_epoch {
                planned
            } else {
                self.current_epoch.saturating_add(1)
            };
            self.current_epoch = self.current_epoch.max(epoch);
            if let Some(record) = self.nodes.get_mut(&myself) {
                record.config_epoch = epoch;
            }
            self.header_slots_cache = None;
            for slot in slots_of_ranges(&plan.masters[index].slots) {
                if self.slots.owner(slot).is_none() {
                    self.set_slot_owner(slot, Some(myself));
                }
            }
            self.save_config_now();
            self.broadcast_pong();
        } else if let Some(replica) = plan.replicas.iter().find(|replica| replica.id == myself) {
            if self.is_known(&replica.master) {
                self.set_my_master(replica.master);
                self.announce_config();
            } else {
                self.formation.pending = Some(plan.clone());
            }
        }
    }

    /// A fresh master in a formed cluster: replicate a master lacking replicas, the
    /// fresh masters taking the lacking ones in id order.
    fn join_formed_cluster(&mut self, config: &FormationConfig) {
        // Gossip tells a node's role but not its master: until each replica was heard
        // from directly, the replicas of a master are not all counted.
        let roles_known = self
            .nodes
            .values()
            .all(|node| node.in_handshake() || !node.is_replica() || node.master_id.is_some());
        // A member that accepted a proposal waits for its commit (its part may be a
        // replica's, the commit on its way).
        if config.replicas_per_master == 0 || !roles_known || self.formation.accepted.is_some() {
            return;
        }
        let mut lacking: Vec<(usize, NodeId)> = self
            .slots
            .owners_with_counts()
            .map(|(id, _)| *id)
            // FAIL, not a PFAIL of this node's own, which a newcomer's lost pings raise.
            .filter(|id| self.nodes.get(id).is_some_and(|node| !node.is_failed()))
            .map(|id| {
                let replicas = self
                    .replicas_of(&id)
                    .filter(|node| !node.is_failed())
                    .count();
                (replicas, id)
            })
            .filter(|(replicas, _)| *replicas < config.replicas_per_master)
            .collect();
        lacking.sort();
        let mut fresh: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| {
                !node.in_handshake()
                    && !node.is_failed()
                    && node.is_master()
                    && self.slots.count_of(&node.id) == 0
            })
            .map(|node| node.id)
            .collect();
        fresh.sort();
        let Some(position) = fresh.iter().position(|id| *id == self.myself) else {
            return;
        };
        let Some((_, master)) = lacking.get(position).copied() else {
            return;
        };
        tracing::info!(%master, dry_run = config.dry_run, "autopilot: joining as a replica");
        self.formation.decided = true;
        self.emit(Event::Autopilot {
            decision: AutopilotDecision::JoinAsReplica { master },
            dry_run: config.dry_run,
        });
        if !config.dry_run {
            self.set_my_master(master);
            self.announce_config();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{add_node, core, drain, header, id};
    use crate::core::wire::{Message, MFLAG_STRANGER};
    use crate::core::Output;

    fn member(byte: u8, host: &str) -> Member {
        Member {
            id: id(byte),
            host: host.to_string(),
        }
    }

    fn autopilot(min_masters: usize, replicas: usize, dry_run: bool) -> FormationConfig {
        FormationConfig {
            seeds: vec![("n1".to_string(), 17000)],
            min_masters,
            replicas_per_master: replicas,
            settle_ms: 1_000,
            dry_run,
        }
    }

    /// Node `myself` with the autopilot, knowing fresh masters `others`.
    fn fresh(myself: u8, others: &[u8], config: FormationConfig) -> Core {
        let mut core = core(myself);
        core.config.formation = Some(config);
        for other in others {
            add_node(&mut core, *other, None, 0);
        }
        core
    }

    /// A PONG from every other node: all healthy.
    fn hear_all(core: &mut Core) {
        let others: Vec<u8> = core
            .nodes()
            .filter(|node| node.id != core.myself_id())
            .map(|node| node.id.0[0])
            .collect();
        for other in others {
            let master = core.nodes[&id(other)].master_id.map(|master| master.0[0]);
            let epoch = core.nodes[&id(other)].config_epoch;
            let now = core.now_ms();
            let message = Message {
                header: header(other, master, epoch, &core.slots.ranges_of(&id(other))),
                body: Body::Pong(Vec::new()),
            };
            core.handle_message(now, &format!("n{other}:17000"), message);
        }
    }

    /// Two cron runs a settle time apart (every other node heard before each): membership
    /// noted, then settled.
    fn settle(core: &mut Core) -> Vec<Output> {
        let now = core.now_ms();
        hear_all(core);
        core.handle_tick(now + 100);
        drain(core);
        hear_all(core);
        drain(core);
        core.handle_tick(now + 1_200);
        drain(core)
    }

    fn formation_sent(outputs: &[Output]) -> Vec<(String, FormationMessage)> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::Transmit { to, message } => match &message.body {
                    Body::Formation(formation) => Some((to.address.clone(), formation.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn formation_from(core: &mut Core, sender: u8, message: FormationMessage) -> Vec<Output> {
        let now = core.now_ms();
        let message = Message {
            header: header(sender, None, 0, &[]),
            body: Body::Formation(message),
        };
        core.handle_message(now, &format!("n{sender}:17000"), message);
        drain(core)
    }

    fn plan_of(members: &[u8]) -> FormationPlan {
        let members: Vec<Member> = members
            .iter()
            .map(|byte| member(*byte, &format!("n{byte}")))
            .collect();
        plan_formation(&members, 1, 1, 5)
    }

    #[test]
    fn the_plan_spreads_masters_over_hosts_and_replicas_away_from_their_master() {
        let members = [
            member(1, "a"),
            member(2, "a"),
            member(3, "b"),
            member(4, "b"),
            member(5, "c"),
            member(6, "c"),
        ];
        let plan = plan_formation(&members, 3, 1, 7);
        let masters: Vec<NodeId> = plan.masters.iter().map(|master| master.id).collect();
        assert_eq!(masters, vec![id(1), id(3), id(5)], "one master per host");
        let host = |node: NodeId| members.iter().find(|m| m.id == node).unwrap().host.clone();
        for replica in &plan.replicas {
            assert_ne!(host(replica.id), host(replica.master), "{replica:?}");
        }
        let slots: usize = plan
            .masters
            .iter()
            .flat_map(|master| master.slots.iter())
            .map(SlotRange::len)
            .sum();
        assert_eq!(slots, SLOT_COUNT);
        assert_eq!(plan.master_epoch(2), 9);
        assert_eq!(plan.last_epoch(), 9);
    }

    #[test]
    fn the_plan_is_the_same_whatever_the_order_of_members() {
        let mut members: Vec<Member> = (1..=7).map(|byte| member(byte, "h")).collect();
        let plan = plan_formation(&members, 2, 2, 1);
        members.reverse();
        assert_eq!(plan_formation(&members, 2, 2, 1), plan);
        assert_eq!(plan.masters.len(), 3, "ceil(7 / 3)");
        assert_eq!(plan.replicas.len(), 4);
    }

    #[test]
    fn min_masters_beats_the_replica_count() {
        let members: Vec<Member> = (1..=4).map(|byte| member(byte, "h")).collect();
        let plan = plan_formation(&members, 3, 1, 1);
        assert_eq!(plan.masters.len(), 3);
        assert_eq!(plan.replicas.len(), 1);
    }

    #[test]
    fn the_lowest_node_proposes_after_settling_and_commits_once_all_accepted() {
        let mut core = fresh(1, &[2, 3], autopilot(3, 0, false));
        hear_all(&mut core);
        core.handle_tick(10_500);
        assert!(formation_sent(&drain(&mut core)).is_empty(), "not settled");
        hear_all(&mut core);
        core.handle_tick(11_600);
        let proposals = formation_sent(&drain(&mut core));
        assert_eq!(proposals.len(), 2, "{proposals:?}");
        let FormationMessage::Propose(plan) = &proposals[0].1 else {
            panic!("{proposals:?}");
        };
        let epoch = plan.epoch;
        assert_eq!(
            core.slots.assigned_count(),
            0,
            "nothing claimed before acceptance"
        );
        formation_from(&mut core, 2, FormationMessage::Accepted { epoch });
        assert_eq!(core.slots.assigned_count(), 0);
        let outputs = formation_from(&mut core, 3, FormationMessage::Accepted { epoch });
        let commits = formation_sent(&outputs);
        assert!(
            commits
                .iter()
                .all(|(_, message)| matches!(message, FormationMessage::Commit(_)))
                && commits.len() == 2,
            "{commits:?}"
        );
        assert!(core.slots.count_of(&id(1)) > 5000);
        assert_eq!(core.myself().config_epoch, epoch);
        assert!(outputs.iter().any(|output| matches!(
            output,
            Output::Event(Event::Autopilot {
                decision: AutopilotDecision::Form(_),
                dry_run: false
            })
        )));
    }

    #[test]
    fn a_node_that_is_not_the_lowest_does_not_propose() {
        let mut core = fresh(2, &[1, 3], autopilot(1, 0, false));
        assert!(formation_sent(&settle(&mut core)).is_empty());
    }

    #[test]
    fn a_member_holds_one_proposal_at_a_time_and_a_release_frees_it() {
        let mut core = fresh(5, &[2, 3], autopilot(1, 0, false));
        let outputs = formation_from(&mut core, 3, FormationMessage::Propose(plan_of(&[3, 5])));
        assert_eq!(
            formation_sent(&outputs),
            vec![(
                "n3:17000".to_string(),
                FormationMessage::Accepted { epoch: 5 }
            )]
        );
        let outputs = formation_from(&mut core, 2, FormationMessage::Propose(plan_of(&[2, 5])));
        assert_eq!(
            formation_sent(&outputs),
            vec![(
                "n2:17000".to_string(),
                FormationMessage::Refused { holder: id(3) }
            )]
        );
        // A commit from the proposer not held is ignored.
        formation_from(&mut core, 2, FormationMessage::Commit(plan_of(&[2, 5])));
        assert_eq!(core.slots.assigned_count(), 0);
        formation_from(&mut core, 3, FormationMessage::Release { epoch: 5 });
        let outputs = formation_from(&mut core, 2, FormationMessage::Propose(plan_of(&[2, 5])));
        assert_eq!(
            formation_sent(&outputs),
            vec![(
                "n2:17000".to_string(),
                FormationMessage::Accepted { epoch: 5 }
            )]
        );
        formation_from(&mut core, 2, FormationMessage::Commit(plan_of(&[2, 5])));
        assert!(core.slots.count_of(&id(5)) > 0 || core.my_master() == Some(id(2)));
    }

    #[test]
    fn a_proposer_gives_way_to_a_lower_one() {
        let mut core = fresh(2, &[3], autopilot(1, 0, false));
        let proposals = formation_sent(&settle(&mut core));
        assert_eq!(proposals.len(), 1, "n2 is the lowest it knows");
        // n1 arrives and proposes: n2 releases its own and accepts n1's.
        add_node(&mut core, 1, None, 0);
        let outputs = formation_from(&mut core, 1, FormationMessage::Propose(plan_of(&[1, 2, 3])));
        let sent = formation_sent(&outputs);
        assert!(
            sent.contains(&(
                "n3:17000".to_string(),
                FormationMessage::Release { epoch: 1 }
            )) || sent.iter().any(|(to, message)| to == "n3:17000"
                && matches!(message, FormationMessage::Release { .. }))
        );
        assert!(sent.contains(&(
            "n1:17000".to_string(),
            FormationMessage::Accepted { epoch: 5 }
        )));
    }

    #[test]
    fn a_held_proposal_expires() {
        let mut core = fresh(5, &[2, 3], autopilot(1, 0, false));
        formation_from(&mut core, 3, FormationMessage::Propose(plan_of(&[3, 5])));
        core.handle_tick(10_000 + ACCEPTANCE_TTL_MS + 200);
        drain(&mut core);
        let outputs = formation_from(&mut core, 2, FormationMessage::Propose(plan_of(&[2, 5])));
        assert!(matches!(
            formation_sent(&outputs)[..],
            [(_, FormationMessage::Accepted { .. })]
        ));
    }

    #[test]
    fn a_dry_run_reports_the_plan_and_does_nothing() {
        let mut core = fresh(1, &[2, 3], autopilot(3, 0, true));
        let outputs = settle(&mut core);
        assert!(formation_sent(&outputs).is_empty());
        assert!(outputs.iter().any(|output| matches!(
            output,
            Output::Event(Event::Autopilot { dry_run: true, .. })
        )));
        assert_eq!(core.slots.assigned_count(), 0);
    }

    #[test]
    fn without_the_autopilot_a_plan_is_ignored() {
        let mut core = core(5);
        add_node(&mut core, 3, None, 0);
        let outputs = formation_from(&mut core, 3, FormationMessage::Propose(plan_of(&[3, 5])));
        assert!(formation_sent(&outputs).is_empty());
        formation_from(&mut core, 3, FormationMessage::Commit(plan_of(&[3, 5])));
        assert_eq!(core.slots.assigned_count(), 0);
    }

    #[test]
    fn a_late_node_replicates_the_master_lacking_one() {
        let mut core = fresh(9, &[], autopilot(2, 1, false));
        add_node(&mut core, 1, None, 1);
        add_node(&mut core, 2, None, 2);
        add_node(&mut core, 3, Some(1), 1);
        for slot in 0..SLOT_COUNT as u16 {
            let owner = if slot < 8192 { 1 } else { 2 };
            core.slots.set_owner(slot, Some(id(owner)));
        }
        settle(&mut core);
        assert_eq!(core.my_master(), Some(id(2)));
    }

    #[test]
    fn a_known_node_answering_as_to_a_stranger_is_met_again_with_the_autopilot() {
        for autopilot_on in [true, false] {
            let mut core = core(5);
            if autopilot_on {
                core.config.formation = Some(autopilot(1, 0, false));
            }
            add_node(&mut core, 3, None, 0);
            let mut pong = header(3, None, 0, &[]);
            pong.mflags = MFLAG_STRANGER;
            let now = core.now_ms();
            core.handle_message(
                now,
                "n3:17000",
                Message {
                    header: pong,
                    body: Body::Pong(Vec::new()),
                },
            );
            drain(&mut core);
            let meets = core.nodes[&id(3)]
                .flags
                .contains(crate::core::node::NodeFlags::MEET);
            assert_eq!(meets, autopilot_on);
        }
    }
}
