//! Ping scheduling, the gossip section, MEET and the handshake (3.5-3.7 of the spec).
//!
//! The cron pings a random node every second and anyone not heard from for
//! node_timeout/2; every PING and MEET is answered by a PONG. Each PING/PONG/MEET carries
//! `max(3, known/10)` random healthy nodes plus every PFAIL node, which is how failure
//! reports and new members spread. A MEET creates a HANDSHAKE record under a temporary
//! id; the first PONG from that address renames it to the peer's real id.

use crate::core::node::{NodeFlags, NodeId, NodeRecord};
use crate::core::wire::{Body, GossipEntry, Header, Message, MFLAG_PAUSED, MFLAG_STRANGER};
use crate::core::{Core, ReleaseReason, MAX_KNOWN_NODES};

/// Random candidates examined by the once-a-second ping (Redis: 5).
const RANDOM_PING_CANDIDATES: usize = 5;
/// A handshake MEET/PING without reply is re-sent after this long, in ms.
const HANDSHAKE_RESEND_MS: u64 = 500;
/// Smallest handshake lifetime, in ms (Redis: `max(node_timeout, 1000)`).
const HANDSHAKE_TIMEOUT_MIN_MS: u64 = 1000;
/// Handshakes opened by MEETs from unknown senders that may be pending at once. Each
/// costs a node record and probes to its address until it expires; without a bound, MEETs
/// naming many addresses would fill the node table (`MAX_KNOWN_NODES`) and keep real
/// nodes out. Handshakes started by CLUSTER MEET here are not counted.
const INBOUND_HANDSHAKES_MAX: usize = 64;
/// Addresses of unknown senders answered with a PONG (each answer opens outbound links
/// there) that are remembered at once, until the handshake lifetime has passed and their
/// links are let go. Unknown senders beyond it get no answer until entries expire.
pub(crate) const STRANGER_ADDRESSES_MAX: usize = 256;
/// A gossiped pong time may be at most this far ahead of ours, in ms.
const GOSSIP_PONG_FUTURE_TOLERANCE_MS: u64 = 500;

/// Which kind of ping-family message to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PingKind {
    Ping,
    Pong,
    Meet,
}

impl Core {
    /// Starts a handshake with the node at `ip:bus_port` (CLUSTER MEET); false when one is
    /// already pending for that address.
    pub(crate) fn start_handshake(&mut self, ip: &str, client_port: u16, bus_port: u16) -> bool {
        let pending = self
            .nodes
            .values()
            .any(|node| node.in_handshake() && node.ip == ip && node.bus_port == bus_port);
        if pending || self.nodes.len() >= MAX_KNOWN_NODES {
            return false;
        }
        let id = NodeId::random(&mut self.rng);
        let mut record = NodeRecord::new(id, ip, client_port, bus_port, self.now_ms);
        record.flags = NodeFlags::HANDSHAKE | NodeFlags::MEET;
        self.nodes.insert(id, record);
        true
    }

    pub(super) fn expire_handshakes(&mut self) {
        let lifetime_ms = self.handshake_lifetime_ms();
        let now = self.now_ms;
        let expired: Vec<(NodeId, String)> = self
            .nodes
            .values()
            .filter(|node| node.in_handshake() && now - node.created_ms > lifetime_ms)
            .map(|node| (node.id, node.bus_address()))
            .collect();
        for (id, _) in &expired {
            self.nodes.remove(id);
        }
        // Expired handshakes (random ids, one per MEET attempt) must not leave their ping
        // times or their links behind: both stay bounded by the node table.
        let nodes = &self.nodes;
        self.ping_attempt_ms.retain(|id, _| nodes.contains_key(id));
        for (id, address) in expired {
            self.release_peer(address, &id, ReleaseReason::Stranger);
        }
        let answered: Vec<String> = self
            .stranger_replies
            .iter()
            .filter(|(_, answered_ms)| now - **answered_ms > lifetime_ms)
            .map(|(address, _)| address.clone())
            .collect();
        let myself = self.myself;
        for address in answered {
            self.stranger_replies.remove(&address);
            self.release_peer(address, &myself, ReleaseReason::Stranger);
        }
    }

    /// How long a handshake may stay unanswered (Redis: `max(node_timeout, 1000)`).
    fn handshake_lifetime_ms(&self) -> u64 {
        self.config.node_timeout_ms.max(HANDSHAKE_TIMEOUT_MIN_MS)
    }

    pub(super) fn expire_blacklist(&mut self) {
        let now = self.now_ms;
        self.blacklist.retain(|_, until_ms| *until_ms > now);
    }

    /// MEET (or PING for handshakes we did not start) to every handshake node not yet
    /// contacted, or whose last attempt went unanswered for [`HANDSHAKE_RESEND_MS`].
    pub(super) fn send_handshake_messages(&mut self) {
        let now = self.now_ms;
        let due: Vec<(NodeId, bool)> = self
            .nodes
            .values()
            .filter(|node| node.in_handshake() || node.flags.contains(NodeFlags::MEET))
            .filter(|node| node.ping_sent_ms == 0 || now - node.ping_sent_ms > HANDSHAKE_RESEND_MS)
            .map(|node| (node.id, node.flags.contains(NodeFlags::MEET)))
            .collect();
        for (id, meet) in due {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.ping_sent_ms = now;
            }
            let kind = if meet { PingKind::Meet } else { PingKind::Ping };
            self.send_ping(id, kind);
        }
    }

    /// Every tenth cron run: ping the node with the oldest PONG among a few random ones.
    pub(super) fn ping_random_node(&mut self) {
        let candidates: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| {
                !node
                    .flags
                    .intersects(NodeFlags::MYSELF | NodeFlags::HANDSHAKE | NodeFlags::NOADDR)
                    && node.ping_sent_ms == 0
            })
            .map(|node| node.id)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let mut best: Option<(u64, NodeId)> = None;
        for _ in 0..RANDOM_PING_CANDIDATES {
            let id = candidates[self.rng.below(candidates.len() as u64) as usize];
            let pong_ms = self.nodes.get(&id).map_or(0, |node| node.pong_received_ms);
            if best.is_none_or(|(best_ms, _)| pong_ms < best_ms) {
                best = Some((pong_ms, id));
            }
        }
        if let Some((_, id)) = best {
            self.send_ping(id, PingKind::Ping);
        }
    }

    /// Pings every node without a PONG for node_timeout/2; re-sends an unanswered ping
    /// after node_timeout/2 of silence (Redis reconnects the link); keeps pinging the
    /// replica of a manual failover every tick.
    pub(super) fn ping_due_nodes(&mut self) {
        let now = self.now_ms;
        let half_timeout_ms = self.config.node_timeout_ms / 2;
        let manual_replica = self.manual.paused_for_replica();
        let mut due = Vec::new();
        for node in self.nodes.values() {
            if node
                .flags
                .intersects(NodeFlags::MYSELF | NodeFlags::HANDSHAKE | NodeFlags::NOADDR)
            {
                continue;
            }
            let idle = node.ping_sent_ms == 0 && now - node.pong_received_ms > half_timeout_ms;
            let last_attempt = self.ping_attempt_ms.get(&node.id).copied().unwrap_or(0);
            let unanswered = node.ping_sent_ms != 0
                && now - last_attempt > half_timeout_ms
                && now - node.data_received_ms > half_timeout_ms;
            if idle || unanswered || manual_replica == Some(node.id) {
                due.push(node.id);
            }
        }
        for id in due {
            self.send_ping(id, PingKind::Ping);
        }
    }

    /// Sends a PING/PONG/MEET with a gossip section to `to`.
    pub(crate) fn send_ping(&mut self, to: NodeId, kind: PingKind) {
        let now = self.now_ms;
        if kind != PingKind::Pong {
            self.ping_attempt_ms.insert(to, now);
            if let Some(node) = self.nodes.get_mut(&to) {
                if node.ping_sent_ms == 0 {
                    node.ping_sent_ms = now;
                }
            }
        }
        let gossip = self.build_gossip(&to);
        let body = match kind {
            PingKind::Ping => Body::Ping(gossip),
            PingKind::Pong => Body::Pong(gossip),
            PingKind::Meet => Body::Meet(gossip),
        };
        self.send(to, body);
        if kind == PingKind::Ping && !self.blacklist.is_empty() {
            self.gossip_forgotten_nodes(to);
        }
    }

    /// Sends a PONG to every known node (config changes that must spread fast).
    pub(crate) fn broadcast_pong(&mut self) {
        for id in self.other_known_nodes() {
            self.send_ping(id, PingKind::Pong);
        }
    }

    fn gossip_entry(&self, node: &NodeRecord) -> GossipEntry {
        GossipEntry {
            id: node.id,
            ip: node.ip.clone(),
            client_port: node.client_port,
            bus_port: node.bus_port,
            flags: node.flags,
            pong_age_ms: if node.pong_received_ms == 0 {
                u64::MAX
            } else {
                self.now_ms.saturating_sub(node.pong_received_ms)
            },
            ping_pending: node.ping_sent_ms != 0,
        }
    }

    /// `max(3, known/10)` random nodes (capped at known − 2), then every PFAIL node.
    fn build_gossip(&mut self, receiver: &NodeId) -> Vec<GossipEntry> {
        let known = self.nodes.len();
        let wanted = (known / 10).max(3).min(known.saturating_sub(2));
        let eligible = |core: &Core, node: &NodeRecord| {
            node.id != core.myself
                && node.id != *receiver
                && !node
                    .flags
                    .intersects(NodeFlags::PFAIL | NodeFlags::HANDSHAKE | NodeFlags::NOADDR)
                && !(node.link == crate::core::node::LinkState::Disconnected
                    && core.slots.count_of(&node.id) == 0)
        };
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut picked: Vec<NodeId> = Vec::with_capacity(wanted);
        let mut attempts = wanted * 3;
        while picked.len() < wanted && attempts > 0 {
            attempts -= 1;
            let id = ids[self.rng.below(ids.len() as u64) as usize];
            if picked.contains(&id) || !eligible(self, &self.nodes[&id]) {
                continue;
            }
            picked.push(id);
        }
        let mut entries: Vec<GossipEntry> = picked
            .iter()
            .map(|id| self.gossip_entry(&self.nodes[id]))
            .collect();
        for node in self.nodes.values() {
            let failing = node.flags.contains(NodeFlags::PFAIL)
                && !node
                    .flags
                    .intersects(NodeFlags::HANDSHAKE | NodeFlags::NOADDR);
            if failing && node.id != *receiver {
                entries.push(self.gossip_entry(node));
            }
        }
        entries
    }

    /// PING, PONG and MEET (`clusterProcessPacket` for the ping family).
    pub(super) fn handle_ping_family(&mut self, from: &str, message: &Message) {
        let header = &message.header;
        let gossip = message.body.gossip().unwrap_or_default();
        let is_meet = matches!(message.body, Body::Meet(_));
        let is_pong = matches!(message.body, Body::Pong(_));
        let sender_known = self.is_known(&header.sender);
        if sender_known && header.sender != self.myself {
            // First, so the answer goes where the sender lives now.
            self.update_sender_address(from, header);
        }
        if !is_pong {
            if is_meet && !sender_known {
                self.accept_meet(from, header);
            }
            self.reply_pong(from, header);
        }
        if is_pong {
            self.mark_address_taken(from, &header.sender);
        }
        if is_pong && !sender_known {
            self.complete_handshake(from, header);
            return;
        }
        if !sender_known || header.sender == self.myself {
            return;
        }
        if is_pong {
            self.handle_pong_liveness(&header.sender);
            if header.mflags & MFLAG_STRANGER != 0 {
                self.meet_again(&header.sender);
            }
        }
        self.update_sender_role(header);
        self.apply_sender_slots(header);
        self.handle_manual_failover_header(header);
        self.handle_epoch_collision(header);
        self.process_gossip(&header.sender, gossip);
    }

    /// A PONG to whoever sent a PING or MEET, known or not.
    fn reply_pong(&mut self, from: &str, header: &Header) {
        if self.is_known(&header.sender) {
            self.send_ping(header.sender, PingKind::Pong);
            return;
        }
        let address = sender_bus_address(from, header);
        let known_address = self.stranger_replies.contains_key(&address);
        if !known_address && self.stranger_replies.len() >= STRANGER_ADDRESSES_MAX {
            tracing::debug!(%address, "too many unknown senders answered; no PONG");
            return;
        }
        self.stranger_replies.insert(address.clone(), self.now_ms);
        let gossip = self.build_gossip(&header.sender);
        let peer = crate::core::Peer {
            address,
            id: Some(header.sender),
        };
        self.send_to_peer_with_mflags(peer, Body::Pong(gossip), MFLAG_STRANGER);
    }

    /// A MEET from an unknown node: remember it as a handshake, which completes only when
    /// that address answers our probe ([`Core::complete_handshake`]). Its gossip is not
    /// taken: nodes are learned from the gossip of members only (as in Redis), so a
    /// non-member cannot plant node ids it could then speak as. At most
    /// [`INBOUND_HANDSHAKES_MAX`] such handshakes are pending at once.
    fn accept_meet(&mut self, from: &str, header: &Header) {
        let ip = sender_ip(from, header);
        let mut pending_inbound = 0;
        for node in self.nodes.values().filter(|node| node.in_handshake()) {
            if node.ip == ip && node.bus_port == header.bus_port {
                return;
            }
            if !node.flags.contains(NodeFlags::MEET) {
                pending_inbound += 1;
            }
        }
        if pending_inbound >= INBOUND_HANDSHAKES_MAX || self.nodes.len() >= MAX_KNOWN_NODES {
            tracing::debug!(%from, "too many handshakes pending; MEET ignored");
            return;
        }
        let id = NodeId::random(&mut self.rng);
        let mut record = NodeRecord::new(id, &ip, header.client_port, header.bus_port, self.now_ms);
        record.flags = NodeFlags::HANDSHAKE;
        self.nodes.insert(id, record);
    }

    /// A PONG from an unknown sender answering our probe of a handshake address: rename
    /// the record to the sender's id. Only an answer counts: we must have sent the
    /// handshake's MEET or PING, and the PONG must come over a link naming that address
    /// (the analogue of Redis's check that it arrived on our link to that address).
    fn complete_handshake(&mut self, from: &str, header: &Header) {
        let handshake_id = self
            .nodes
            .values()
            .find(|node| {
                node.in_handshake() && node.ip == header.ip && node.bus_port == header.bus_port
            })
            .filter(|node| node.ping_sent_ms != 0 && node.bus_address() == from)
            .map(|node| node.id);
        let Some(handshake_id) = handshake_id else {
            tracing::debug!(%from, sender = %header.sender,
                "a PONG from an unknown node that answers no probe of ours; ignored");
            return;
        };
        let Some(mut record) = self.nodes.remove(&handshake_id) else {
            return;
        };
        self.ping_attempt_ms.remove(&handshake_id);
        if self.nodes.contains_key(&header.sender)
            || header.sender == self.myself
            || self.is_blacklisted(&header.sender)
        {
            return;
        }
        record.id = header.sender;
        record.flags.remove(NodeFlags::HANDSHAKE | NodeFlags::MEET);
        record.flags.insert(role_flags(header));
        record.master_id = header.master_id;
        record.pong_received_ms = self.now_ms;
        record.data_received_ms = self.now_ms;
        record.ping_sent_ms = 0;
        record.config_epoch = header.config_epoch;
        record.shard_id = header.shard_id;
        self.nodes.insert(header.sender, record);
        self.config_dirty = true;
        tracing::debug!(node = %header.sender, "handshake completed");
    }

    /// A known node answered us as a stranger: it dropped our handshake (or forgot us).
    /// With the autopilot on, MEET it again (at the handshake messages' pace) until it
    /// knows us: a node formed from seeds must not stay known by no one. Without it, as
    /// in Redis, only an operator's MEET brings us back (a node forgotten on purpose
    /// stays out).
    fn meet_again(&mut self, id: &NodeId) {
        if self.config.formation.is_none() {
            return;
        }
        if let Some(node) = self.nodes.get_mut(id) {
            if !node.flags.contains(NodeFlags::MEET) {
                tracing::debug!(node = %id, "a known node does not know us; meeting it again");
                node.flags.insert(NodeFlags::MEET);
            }
        }
    }

    /// A PONG from a known node: it is alive.
    fn handle_pong_liveness(&mut self, sender: &NodeId) {
        let now = self.now_ms;
        if let Some(node) = self.nodes.get_mut(sender) {
            node.pong_received_ms = now;
            node.ping_sent_ms = 0;
            node.flags.remove(NodeFlags::MEET);
            if node.flags.contains(NodeFlags::PFAIL) {
                node.flags.remove(NodeFlags::PFAIL);
                self.state_dirty = true;
            }
        }
        self.clear_fail_if_needed(sender);
    }

    /// A PONG from `sender` came from `from`, the address we know another node by: that
    /// node's address is stale (it moved, or another node took its address). As Redis
    /// does, it is marked NOADDR with its address cleared, so nothing is sent to it until
    /// it is heard from again ([`Core::update_sender_address`], or gossip).
    fn mark_address_taken(&mut self, from: &str, sender: &NodeId) {
        let stale: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| {
                node.id != *sender
                    && !node
                        .flags
                        .intersects(NodeFlags::MYSELF | NodeFlags::HANDSHAKE | NodeFlags::NOADDR)
                    && node.bus_address() == from
            })
            .map(|node| node.id)
            .collect();
        for id in stale {
            if let Some(node) = self.nodes.get_mut(&id) {
                tracing::info!(node = %id, address = %from, answered_by = %sender,
                    "another node answers at this node's address; marking it noaddr");
                node.flags.insert(NodeFlags::NOADDR);
                node.ip.clear();
                node.client_port = 0;
                node.bus_port = 0;
                node.ping_sent_ms = 0;
                self.config_dirty = true;
            }
        }
    }

    /// The node's own PING/PONG/MEET names where it lives: adopt a changed address.
    fn update_sender_address(&mut self, from: &str, header: &Header) {
        let ip = sender_ip(from, header);
        self.set_node_address(&header.sender, ip, header.client_port, header.bus_port);
        if let Some(node) = self.nodes.get_mut(&header.sender) {
            node.hostname.clone_from(&header.hostname);
        }
    }

    /// Records `id` at `ip:bus_port` (clearing NOADDR) if that is news; the shell lets go
    /// of what it kept for the old address.
    fn set_node_address(&mut self, id: &NodeId, ip: String, client_port: u16, bus_port: u16) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        if node.ip == ip && node.bus_port == bus_port && node.client_port == client_port {
            return;
        }
        let old_address = node.bus_address();
        let had_address = !node.flags.contains(NodeFlags::NOADDR);
        tracing::info!(node = %id, old = %old_address, new = %format!("{ip}:{bus_port}"),
            "node address updated");
        node.ip = ip;
        node.bus_port = bus_port;
        node.client_port = client_port;
        node.flags.remove(NodeFlags::NOADDR);
        self.config_dirty = true;
        if had_address {
            self.release_peer(old_address, id, ReleaseReason::AddressChanged);
        }
    }

    /// Role changes announced in a header: master ↔ replica, or a new master.
    fn update_sender_role(&mut self, header: &Header) {
        let sender = header.sender;
        let Some(node) = self.nodes.get(&sender) else {
            return;
        };
        let was_master = node.is_master();
        let was_replica = node.is_replica();
        let old_master = node.master_id;
        let address = node.bus_address();
        if was_replica && old_master == Some(self.myself) && header.master_id != old_master {
            self.release_peer(address, &sender, ReleaseReason::NotMyReplica);
        }
        match header.master_id {
            None if !was_master || was_replica => {
                self.set_node_role(sender, None);
            }
            Some(master) if was_master || old_master != Some(master) => {
                if was_master {
                    // A master turned replica: its slots are no longer claimed by it.
                    for range in self.slots.ranges_of(&sender) {
                        for slot in range.slots() {
                            self.set_slot_owner(slot, None);
                        }
                    }
                }
                self.set_node_role(sender, Some(master));
                if self.my_master() == Some(sender) && master != self.myself {
                    // Sub-replica guard: follow my master to its new master.
                    self.set_my_master(master);
                }
            }
            _ => {}
        }
        if let Some(node) = self.nodes.get_mut(&sender) {
            if header.flags.contains(NodeFlags::NOFAILOVER) {
                node.flags.insert(NodeFlags::NOFAILOVER);
            } else {
                node.flags.remove(NodeFlags::NOFAILOVER);
            }
            if let Some(shard) = header.shard_id {
                node.shard_id = Some(shard);
            }
        }
    }

    /// Records `id` as a master (`None`) or as a replica of `master`.
    pub(crate) fn set_node_role(&mut self, id: NodeId, master: Option<NodeId>) {
        if id == self.myself && master.is_some() {
            // A replica again: its engine will be its new master's.
            self.handover.promoted_from = None;
        }
        if master.is_some() && self.handover.promoted_from == Some(id) {
            // The master this node was promoted in place of follows a master now (this
            // node, or another shard's after a replica migration): what it claims later is
            // no slot this engine holds the data of, so nothing of it is adopted.
            self.handover.promoted_from = None;
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            match master {
                None => {
                    node.flags.remove(NodeFlags::REPLICA);
                    node.flags.insert(NodeFlags::MASTER);
                    node.master_id = None;
                }
                Some(master) => {
                    node.flags.remove(NodeFlags::MASTER);
                    node.flags.insert(NodeFlags::REPLICA);
                    node.master_id = Some(master);
                }
            }
        }
        if let Some(master) = master.and_then(|master| self.nodes.get_mut(&master)) {
            master.flags.insert(NodeFlags::MIGRATE_TO);
        }
        self.config_dirty = true;
        self.state_dirty = true;
    }

    /// The gossip section of a message from a known node.
    fn process_gossip(&mut self, sender: &NodeId, gossip: &[GossipEntry]) {
        let sender_is_master = self.is_voting_master(sender);
        for entry in gossip {
            if entry.id == self.myself {
                continue;
            }
            if self.nodes.contains_key(&entry.id) {
                if sender_is_master {
                    self.note_gossip_report(sender, entry);
                }
                self.adopt_gossiped_pong(entry);
                self.adopt_gossiped_address(entry);
            } else {
                self.learn_gossiped_node(entry);
            }
        }
    }

    fn learn_gossiped_node(&mut self, entry: &GossipEntry) {
        if entry.flags.contains(NodeFlags::NOADDR)
            || self.is_blacklisted(&entry.id)
            || self.nodes.len() >= MAX_KNOWN_NODES
        {
            return;
        }
        let mut record = NodeRecord::new(
            entry.id,
            &entry.ip,
            entry.client_port,
            entry.bus_port,
            self.now_ms,
        );
        let kept = NodeFlags::MASTER | NodeFlags::REPLICA | NodeFlags::NOFAILOVER;
        record.flags = NodeFlags(entry.flags.0 & kept.0);
        self.nodes.insert(entry.id, record);
        self.config_dirty = true;
    }

    /// Gossip says the node is healthy and we have no doubt about it: adopt its fresher
    /// PONG time (saves pings in large clusters).
    fn adopt_gossiped_pong(&mut self, entry: &GossipEntry) {
        if entry.flags.intersects(NodeFlags::PFAIL | NodeFlags::FAIL)
            || entry.pong_age_ms == u64::MAX
        {
            return;
        }
        let now = self.now_ms;
        let Some(node) = self.nodes.get_mut(&entry.id) else {
            return;
        };
        if node.ping_sent_ms != 0 || !node.failure_reports.is_empty() {
            return;
        }
        let gossiped_ms = now.saturating_sub(entry.pong_age_ms);
        if gossiped_ms > node.pong_received_ms
            && gossiped_ms <= now + GOSSIP_PONG_FUTURE_TOLERANCE_MS
        {
            node.pong_received_ms = gossiped_ms;
        }
    }

    /// Redis's gossip rule for a node we cannot reach (PFAIL, FAIL, or NOADDR here): a
    /// sender that sees it healthy at another address tells us where it went.
    fn adopt_gossiped_address(&mut self, entry: &GossipEntry) {
        let Some(node) = self.nodes.get(&entry.id) else {
            return;
        };
        let unreachable = node
            .flags
            .intersects(NodeFlags::PFAIL | NodeFlags::FAIL | NodeFlags::NOADDR);
        let healthy = !entry
            .flags
            .intersects(NodeFlags::PFAIL | NodeFlags::FAIL | NodeFlags::NOADDR);
        if unreachable && healthy && !entry.ip.is_empty() {
            self.set_node_address(
                &entry.id,
                entry.ip.clone(),
                entry.client_port,
                entry.bus_port,
            );
        }
    }

    /// The manual-failover bits of a header from our master (its paused offset).
    fn handle_manual_failover_header(&mut self, header: &Header) {
        if self.my_master() == Some(header.sender) && header.mflags & MFLAG_PAUSED != 0 {
            self.manual.note_master_paused_offset(header.repl_offset);
        }
    }
}

/// MASTER or REPLICA, as a header claims.
pub(crate) fn role_flags(header: &Header) -> NodeFlags {
    if header.master_id.is_some() {
        NodeFlags::REPLICA
    } else {
        NodeFlags::MASTER
    }
}

/// The sender's IP: announced, else the host part of the address it came from.
fn sender_ip(from: &str, header: &Header) -> String {
    if !header.ip.is_empty() {
        return header.ip.clone();
    }
    match from.rsplit_once(':') {
        Some((host, _)) => host.to_string(),
        None => from.to_string(),
    }
}

fn sender_bus_address(from: &str, header: &Header) -> String {
    format!("{}:{}", sender_ip(from, header), header.bus_port)
}

#[cfg(test)]
mod tests {
    use crate::core::node::NodeFlags;
    use crate::core::testing::{add_node, core, drain, header, id};
    use crate::core::wire::{Body, GossipEntry, Message};
    use crate::core::{AdminCommand, Core, Output, ReleaseReason};

    /// Delivers every queued transmit between the two cores until both are quiet.
    fn exchange(cores: &mut [Core; 2], now_ms: u64) {
        for _ in 0..20 {
            let mut delivered = false;
            for from in 0..2 {
                for output in drain(&mut cores[from]) {
                    if let Output::Transmit { to, message } = output {
                        let target = usize::from(to.address.starts_with("n2"));
                        let bytes = crate::core::wire::encode(&message);
                        let source = format!("n{}:17000", from + 1);
                        assert!(cores[target]
                            .handle_datagram(now_ms, &source, &bytes)
                            .is_ok());
                        delivered = true;
                    }
                }
            }
            if !delivered {
                return;
            }
        }
    }

    #[test]
    fn meet_then_pong_completes_the_handshake_on_both_sides() {
        let mut cores = [core(1), core(2)];
        let meet = AdminCommand::Meet {
            ip: "n2".to_string(),
            client_port: 7000,
            bus_port: 17000,
        };
        cores[0].handle_command(10_000, meet).unwrap();
        assert!(cores[0].nodes().any(|node| node.in_handshake()));
        for step in 1..=5 {
            let now = 10_000 + step * 100;
            for core in cores.iter_mut() {
                core.handle_tick(now);
            }
            exchange(&mut cores, now);
        }
        assert!(cores[0]
            .node(&id(2))
            .is_some_and(|node| !node.in_handshake()));
        assert!(cores[1]
            .node(&id(1))
            .is_some_and(|node| !node.in_handshake()));
        assert_eq!(
            cores[0].nodes().count(),
            2,
            "the handshake record was renamed"
        );
        assert_eq!(cores[1].nodes().count(), 2);
    }

    #[test]
    fn expired_handshakes_leave_no_ping_state_behind() {
        let mut core = core(1);
        let mut now = 10_000;
        for attempt in 0..50 {
            let meet = AdminCommand::Meet {
                ip: format!("10.9.0.{attempt}"),
                client_port: 7000,
                bus_port: 17000,
            };
            core.handle_command(now, meet).unwrap();
            for _ in 0..15 {
                now += 100;
                core.handle_tick(now);
            }
            drain(&mut core);
        }
        assert_eq!(
            core.nodes().count(),
            1,
            "every unanswered handshake expired"
        );
        assert!(
            core.ping_attempt_ms.len() <= core.nodes().count(),
            "{} ping times kept for {} nodes",
            core.ping_attempt_ms.len(),
            core.nodes().count()
        );
    }

    fn from_header(header: crate::core::wire::Header, body: Body) -> Message {
        Message { header, body }
    }

    fn releases(outputs: &[Output]) -> Vec<(String, ReleaseReason)> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::ReleasePeer { address, reason } => Some((address.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    fn transmits_to(outputs: &[Output], address: &str) -> usize {
        outputs
            .iter()
            .filter(|output| matches!(output, Output::Transmit { to, .. } if to.address == address))
            .count()
    }

    #[test]
    fn a_pong_from_another_node_at_a_known_address_marks_the_old_owner_noaddr() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        add_node(&mut core, 3, None, 3);
        drain(&mut core);
        // n3 now answers at n2's old address.
        let mut pong = header(3, None, 3, &[]);
        pong.ip = "n2".to_string();
        core.handle_message(
            10_000,
            "n2:17000",
            from_header(pong, Body::Pong(Vec::new())),
        );
        let stale = core.node(&id(2)).unwrap();
        assert!(stale.flags.contains(NodeFlags::NOADDR), "{stale:?}");
        assert_eq!(stale.bus_address(), ":0");
        drain(&mut core);
        for step in 1..=30 {
            core.handle_tick(10_000 + step * 100);
        }
        let outputs = drain(&mut core);
        assert_eq!(
            transmits_to(&outputs, ":0"),
            0,
            "nothing goes to a noaddr node"
        );
        assert!(
            !core.node(&id(2)).unwrap().is_failing(),
            "a noaddr node is not pinged, so not suspected"
        );
        // n2 speaks from its new address: found again.
        let mut ping = header(2, None, 2, &[]);
        ping.ip = "m2".to_string();
        core.handle_message(
            13_100,
            "m2:17000",
            from_header(ping, Body::Ping(Vec::new())),
        );
        let found = core.node(&id(2)).unwrap();
        assert!(!found.flags.contains(NodeFlags::NOADDR));
        assert_eq!(found.bus_address(), "m2:17000");
    }

    #[test]
    fn a_node_heard_at_a_new_address_is_updated_and_its_old_address_released() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        drain(&mut core);
        let mut ping = header(2, None, 2, &[]);
        ping.bus_port = 17001;
        core.handle_message(
            10_000,
            "n2:17001",
            from_header(ping, Body::Ping(Vec::new())),
        );
        let outputs = drain(&mut core);
        assert_eq!(core.node(&id(2)).unwrap().bus_address(), "n2:17001");
        assert_eq!(
            releases(&outputs),
            vec![("n2:17000".to_string(), ReleaseReason::AddressChanged)]
        );
        assert!(
            transmits_to(&outputs, "n2:17001") > 0,
            "the answer goes to the new address"
        );
    }

    #[test]
    fn gossip_moves_an_unreachable_node_to_its_new_address_but_not_a_healthy_one() {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        add_node(&mut core, 3, None, 3);
        add_node(&mut core, 4, None, 4);
        core.nodes
            .get_mut(&id(3))
            .unwrap()
            .flags
            .insert(NodeFlags::FAIL);
        drain(&mut core);
        let entry = |node: u8| GossipEntry {
            id: id(node),
            ip: format!("m{node}"),
            client_port: 7000,
            bus_port: 17000,
            flags: NodeFlags::MASTER,
            pong_age_ms: 10,
            ping_pending: false,
        };
        let ping = from_header(
            header(2, None, 2, &[]),
            Body::Ping(vec![entry(3), entry(4)]),
        );
        core.handle_message(10_000, "n2:17000", ping);
        assert_eq!(core.node(&id(3)).unwrap().bus_address(), "m3:17000");
        assert_eq!(
            core.node(&id(4)).unwrap().bus_address(),
            "n4:17000",
            "a node we reach ourselves keeps its address"
        );
        assert!(releases(&drain(&mut core))
            .contains(&("n3:17000".to_string(), ReleaseReason::AddressChanged)));
    }

    #[test]
    fn a_replica_that_follows_another_master_releases_its_stream() {
        let mut core = core(1);
        add_node(&mut core, 2, Some(1), 1);
        add_node(&mut core, 3, None, 3);
        drain(&mut core);
        let ping = from_header(header(2, Some(1), 1, &[]), Body::Ping(Vec::new()));
        core.handle_message(10_000, "n2:17000", ping);
        assert!(releases(&drain(&mut core)).is_empty(), "still my replica");
        let ping = from_header(header(2, Some(3), 3, &[]), Body::Ping(Vec::new()));
        core.handle_message(10_100, "n2:17000", ping);
        assert_eq!(
            releases(&drain(&mut core)),
            vec![("n2:17000".to_string(), ReleaseReason::NotMyReplica)]
        );
    }

    #[test]
    fn malformed_datagrams_are_dropped_and_counted() {
        let mut core = core(1);
        assert!(core
            .handle_datagram(10_000, "n9:17000", &[1, 0xff, 0xff])
            .is_err());
        assert!(core.handle_datagram(10_000, "n9:17000", &[]).is_err());
        assert_eq!(core.stats().malformed_dropped, 2);
        assert_eq!(core.stats().total_received(), 0);
    }

    #[test]
    fn unknown_pingers_get_a_pong_but_are_not_added() {
        let mut stranger = core(9);
        let mut core = core(1);
        let mut header = stranger.header();
        header.sender = id(9);
        let message = crate::core::wire::Message {
            header,
            body: crate::core::wire::Body::Ping(Vec::new()),
        };
        core.handle_message(10_000, "n9:17000", message);
        assert!(core.node(&id(9)).is_none());
        let pongs = drain(&mut core)
            .into_iter()
            .filter(
                |output| matches!(output, Output::Transmit { to, .. } if to.address == "n9:17000"),
            )
            .count();
        assert_eq!(pongs, 1);
    }

    /// A gossip entry naming node `byte` as a healthy master at `n{byte}`.
    fn gossiped_master(byte: u8) -> GossipEntry {
        GossipEntry {
            id: id(byte),
            ip: format!("n{byte}"),
            client_port: 7000,
            bus_port: 17000,
            flags: NodeFlags::MASTER,
            pong_age_ms: 10,
            ping_pending: false,
        }
    }

    /// Node 1 owns slots 0-99 at configEpoch 5 and knows node 2; returns it drained.
    fn member_with_slots() -> Core {
        let mut core = core(1);
        add_node(&mut core, 2, None, 2);
        crate::core::testing::own(&mut core, 1, 0..=99);
        core.nodes.get_mut(&id(1)).unwrap().config_epoch = 5;
        core.current_epoch = 5;
        drain(&mut core);
        core
    }

    /// A forged claim of slots 0-99 with a huge configEpoch and currentEpoch, from `sender`.
    fn forged_claim(sender: u8) -> Message {
        let slots = [crate::core::slots::SlotRange { start: 0, end: 99 }];
        let mut forged = header(sender, None, 1 << 62, &slots);
        forged.current_epoch = 1 << 62;
        from_header(forged, Body::Ping(Vec::new()))
    }

    #[test]
    fn a_meet_from_a_non_member_adds_no_node_from_its_gossip() {
        let mut core = member_with_slots();
        let meet = from_header(
            header(9, None, 0, &[]),
            Body::Meet(vec![gossiped_master(8)]),
        );
        core.handle_message(10_000, "n9:17000", meet);
        assert!(
            core.node(&id(8)).is_none(),
            "a node named only by a non-member's MEET was added"
        );
        // Speaking as the node it tried to plant changes nothing either.
        core.handle_message(10_100, "n8:17000", forged_claim(8));
        assert_eq!(core.current_epoch(), 5);
        assert_eq!(core.slots.owner(0), Some(id(1)));
        assert_eq!(core.myself().config_epoch, 5);
    }

    #[test]
    fn messages_from_unknown_ids_change_no_epoch_or_slot() {
        let mut core = member_with_slots();
        let unknown = 9;
        core.handle_message(10_000, "n9:17000", forged_claim(unknown));
        let mut pong = forged_claim(unknown);
        pong.body = Body::Pong(vec![gossiped_master(8)]);
        core.handle_message(10_000, "n9:17000", pong);
        let mut header = header(unknown, None, 1 << 62, &[]);
        header.current_epoch = 1 << 62;
        let bodies = [
            Body::Update {
                node: id(2),
                config_epoch: 1 << 62,
                slots: vec![crate::core::slots::SlotRange { start: 0, end: 99 }],
            },
            Body::Fail { node: id(2) },
            Body::FailoverAuthRequest,
            Body::FailoverAuthAck,
            Body::MfStart,
            Body::ForgottenNode {
                node: id(2),
                ttl_ms: 60_000,
            },
        ];
        for body in bodies {
            core.handle_message(10_000, "n9:17000", from_header(header.clone(), body));
        }
        assert_eq!(core.current_epoch(), 5);
        assert_eq!(core.slots.owner(0), Some(id(1)));
        assert!(core.node(&id(8)).is_none() && core.node(&id(9)).is_none());
        let two = core.node(&id(2)).unwrap();
        assert_eq!(two.config_epoch, 2);
        assert!(!two.is_failed());
    }

    #[test]
    fn a_pong_nobody_asked_for_completes_no_handshake() {
        let mut core = member_with_slots();
        let stranger = 9;
        let meet = from_header(header(stranger, None, 0, &[]), Body::Meet(Vec::new()));
        core.handle_message(10_000, "n9:17000", meet);
        assert!(core.nodes().any(|node| node.in_handshake()));
        drain(&mut core);
        // Before we probed its address, a PONG naming that address proves nothing.
        let pong = || from_header(header(stranger, None, 0, &[]), Body::Pong(Vec::new()));
        core.handle_message(10_010, "n9:17000", pong());
        assert!(
            core.node(&id(stranger)).is_none(),
            "unsolicited PONG accepted"
        );
        // We probe it; a PONG arriving on a link that names another address is no answer.
        core.handle_tick(10_100);
        drain(&mut core);
        core.handle_message(10_110, "elsewhere:1", pong());
        assert!(
            core.node(&id(stranger)).is_none(),
            "PONG from another address accepted"
        );
        // The answer from the probed address completes it.
        core.handle_message(10_120, "n9:17000", pong());
        assert!(core
            .node(&id(stranger))
            .is_some_and(|node| !node.in_handshake()));
    }

    #[test]
    fn replayed_meets_keep_one_handshake_and_inbound_handshakes_are_bounded() {
        let mut core = member_with_slots();
        let meet = from_header(header(9, None, 0, &[]), Body::Meet(Vec::new()));
        for _ in 0..10 {
            core.handle_message(10_000, "n9:17000", meet.clone());
        }
        let pending = |core: &Core| core.nodes().filter(|node| node.in_handshake()).count();
        assert_eq!(pending(&core), 1, "a replayed MEET made another handshake");
        for port in 0..1_000u16 {
            let mut header = header(9, None, 0, &[]);
            header.bus_port = 20_000 + port;
            let from = format!("n9:{}", header.bus_port);
            core.handle_message(10_000, &from, from_header(header, Body::Meet(Vec::new())));
        }
        assert_eq!(pending(&core), super::INBOUND_HANDSHAKES_MAX);
    }

    #[test]
    fn links_opened_for_strangers_are_released_and_bounded() {
        let mut core = member_with_slots();
        let pingers = 1_000u16;
        for port in 0..pingers {
            let mut header = header(9, None, 0, &[]);
            header.bus_port = 20_000 + port;
            let from = format!("n9:{}", header.bus_port);
            core.handle_message(10_000, &from, from_header(header, Body::Ping(Vec::new())));
        }
        let outputs = drain(&mut core);
        let answered = outputs
            .iter()
            .filter(|output| matches!(output, Output::Transmit { to, .. } if to.address.starts_with("n9:")))
            .count();
        assert_eq!(
            answered,
            super::STRANGER_ADDRESSES_MAX,
            "answers to strangers are bounded"
        );
        // A MEET's handshake that nobody answers expires, and its address is let go too.
        let mut meet = header(8, None, 0, &[]);
        meet.bus_port = 30_000;
        core.handle_message(
            10_000,
            "n8:30000",
            from_header(meet, Body::Meet(Vec::new())),
        );
        let mut released = Vec::new();
        for step in 1..=30 {
            core.handle_tick(10_000 + step * 100);
            released.extend(
                releases(&drain(&mut core))
                    .into_iter()
                    .filter(|(_, reason)| *reason == ReleaseReason::Stranger),
            );
        }
        assert_eq!(
            released.len(),
            super::STRANGER_ADDRESSES_MAX + 1,
            "{released:?}"
        );
        assert!(released.contains(&("n8:30000".to_string(), ReleaseReason::Stranger)));
        assert!(core.stranger_replies.is_empty());
        // A member's address is never let go as a stranger's.
        assert!(!released.iter().any(|(address, _)| address == "n2:17000"));
    }
}
