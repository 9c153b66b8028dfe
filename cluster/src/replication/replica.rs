//! The replication task of a node: the replica's side of the stream, the dispatch of every
//! bulk frame, and the master's housekeeping.
//!
//! One task owns this state, so it needs no lock. It follows the role the driver publishes:
//! - as a replica of M: sends PSYNC to M (again every [`PSYNC_RETRY_MS`] until the stream
//!   starts, and after a gap), applies FULLSYNC/CONTINUE/OPS from M only, acknowledges its
//!   offset every [`ACK_INTERVAL_MS`], after a full sync and when M asks (GETACK: someone
//!   waits for the ack, as Redis's `REPLCONF GETACK`), and reports the link up
//!   while frames arrive within [`MASTER_LINK_TIMEOUT_MS`];
//! - as a master: serves PSYNC and ACK from replicas ([`MasterStreams`]), runs the engine's
//!   active expiry and logs the engine's removals so they replicate as deletes. Becoming a
//!   master starts a new history: replicas of the old one full-sync, and so does a returning
//!   old master, whose unreplicated writes are discarded with its data.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use slotkv_engine::{ActiveExpireBudget, ExportedEntry};
use slotkv_transport::{InboundFrame, PeerAddr};
use tokio::sync::{mpsc, watch};

use crate::core::node::NodeId;
use crate::node_state::stats::Refusal;
use crate::node_state::write_log::record_removals;
use crate::node_state::NodeState;
use crate::replication::master::MasterStreams;
use crate::replication::stream::{
    decode_frame, decode_ops_frame, encode_frame, is_ops_frame, StreamFrame, WireOp, WireOpRef,
};

/// PSYNC is re-sent this often until the stream starts, in ms.
pub(crate) const PSYNC_RETRY_MS: u64 = 1_000;
/// A replica acknowledges at least this often, in ms.
pub(crate) const ACK_INTERVAL_MS: u64 = 100;
/// The master link counts as down after this long without a frame, in ms.
pub(crate) const MASTER_LINK_TIMEOUT_MS: u64 = 1_000;
/// Longest wait for room in the bulk queue to a peer before a frame is dropped, in ms: a
/// dead or unreachable peer never blocks the replication task (a dropped PSYNC or ACK is
/// sent again on the next tick; a master's streams have their own tasks).
pub(crate) const SEND_TIMEOUT_MS: u64 = 500;
/// Engine removals logged per housekeeping round (the default removal-log capacity: a
/// round empties a full log). Writes log their own evictions
/// ([`crate::node_state::write_log::REMOVALS_PER_WRITE_MAX`]); rounds catch lazy expiries
/// found by reads and what writes left.
pub(crate) const REMOVALS_PER_ROUND_MAX: usize = slotkv_engine::DEFAULT_REMOVAL_LOG_CAPACITY;
/// Least time between two full resyncs caused by lost engine removals, in ms: removals
/// lost meanwhile are covered by the next one, so an overflowing removal log never turns
/// into back-to-back full syncs.
pub(crate) const LOST_REMOVALS_RESYNC_INTERVAL_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// PSYNC sent at this time (ms), no answer yet.
    Waiting { sent_ms: u64 },
    /// Receiving a snapshot of history `replid` starting at `offset`.
    Loading { replid: u64, offset: u64 },
    /// Applying ops.
    Streaming,
}

struct ReplicaLink {
    master: NodeId,
    address: Option<PeerAddr>,
    phase: Phase,
    last_frame_ms: u64,
}

/// The replication task's state.
pub(crate) struct ReplicationTask {
    shared: Arc<NodeState>,
    streams: Arc<MasterStreams>,
    link: Option<ReplicaLink>,
    history_seed: u64,
    /// The engine's lost-removal count already acted on (master).
    removals_dropped_seen: u64,
    /// When lost removals last made the replicas resync (ms), if ever.
    last_lost_removals_resync_ms: Option<u64>,
}

impl ReplicationTask {
    /// A task for `shared`; `history_seed` varies new history ids between nodes.
    pub(crate) fn new(shared: Arc<NodeState>, history_seed: u64) -> ReplicationTask {
        ReplicationTask {
            shared,
            streams: Arc::new(MasterStreams::default()),
            link: None,
            history_seed,
            removals_dropped_seen: 0,
            last_lost_removals_resync_ms: None,
        }
    }

    /// The master's streams, shared with the driver, which stops a stream when the core
    /// releases its peer.
    pub(crate) fn master_streams(&self) -> Arc<MasterStreams> {
        Arc::clone(&self.streams)
    }

    /// Runs until shutdown: follows `role` (the master this node replicates, `None` for a
    /// master) and handles every bulk frame.
    pub(crate) async fn run(
        mut self,
        mut role: watch::Receiver<Option<NodeId>>,
        mut bulk: mpsc::Receiver<InboundFrame>,
    ) {
        let mut ticker = tokio::time::interval(Duration::from_millis(ACK_INTERVAL_MS));
        let initial = *role.borrow_and_update();
        self.handle_role(initial).await;
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => break,
                changed = role.changed() => {
                    if changed.is_err() { break; }
                    let master = *role.borrow_and_update();
                    self.handle_role(master).await;
                }
                frame = bulk.recv() => match frame {
                    Some(frame) => self.handle_frame(frame).await,
                    None => break,
                },
                _ = ticker.tick() => self.handle_tick().await,
            }
        }
        self.streams.stop_all();
    }

    async fn handle_role(&mut self, master: Option<NodeId>) {
        match master {
            None => {
                let was_replica = self.link.take().is_some();
                if was_replica {
                    // Promoted mid-sync: the old copy, whole, is the data set; never the
                    // partial snapshot.
                    self.shared.store.abandon_load();
                    self.shared.store.enforce_limits();
                    self.removals_dropped_seen = self.shared.store.get().removals_dropped();
                }
                if was_replica || self.shared.log.position().0 == 0 {
                    self.history_seed = next_history(self.history_seed ^ wall_clock_nanos());
                    self.shared.log.start_history(self.history_seed);
                }
                self.shared.master_link_up.store(false, Ordering::Release);
            }
            Some(master) => {
                if self.link.as_ref().is_some_and(|link| link.master == master) {
                    return;
                }
                self.stop_streams();
                self.shared.store.lift_limits();
                self.shared.master_link_up.store(false, Ordering::Release);
                self.link = Some(ReplicaLink {
                    master,
                    address: None,
                    phase: Phase::Waiting { sent_ms: 0 },
                    last_frame_ms: 0,
                });
                self.send_psync().await;
            }
        }
    }

    async fn send_psync(&mut self) {
        let now_ms = self.shared.now_ms();
        let table = self.shared.routing.table();
        let Some(link) = self.link.as_mut() else {
            return;
        };
        link.address = table.node(&link.master).map(|node| node.address.clone());
        link.phase = Phase::Waiting { sent_ms: now_ms };
        // A new PSYNC voids any snapshot under way; the old copy stays.
        self.shared.store.abandon_load();
        let Some(address) = link.address.clone() else {
            return;
        };
        let (replid, offset) = self.shared.log.position();
        let frame = StreamFrame::Psync { replid, offset };
        self.send(&address, &frame).await;
    }

    /// Stops streaming to every replica; their acknowledgements no longer count.
    fn stop_streams(&self) {
        self.streams.stop_all();
        self.shared.log.clear_replicas();
    }

    /// Sends one frame, waiting at most [`SEND_TIMEOUT_MS`] for room in the peer's queue.
    async fn send(&self, to: &PeerAddr, frame: &StreamFrame) {
        let bytes = bytes::Bytes::from(encode_frame(frame));
        let timeout = Duration::from_millis(SEND_TIMEOUT_MS);
        match tokio::time::timeout(timeout, self.shared.endpoint.send_bulk(to, bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%to, %error, "replication frame not sent"),
            Err(_) => {
                tracing::debug!(%to, "replication frame dropped: the peer's queue stays full")
            }
        }
    }

    async fn handle_tick(&mut self) {
        let now_ms = self.shared.now_ms();
        let Some(link) = self.link.as_ref() else {
            let store = self.shared.store.get();
            store.active_expire(ActiveExpireBudget::default());
            record_removals(&self.shared.log, &store, REMOVALS_PER_ROUND_MAX);
            self.handle_lost_removals(store.removals_dropped());
            return;
        };
        // A replica leaves expiry to its master's deletes; its own lazy removals are noise.
        let _ = self
            .shared
            .store
            .get()
            .drain_removals(REMOVALS_PER_ROUND_MAX);
        let up = link.phase == Phase::Streaming
            && now_ms.saturating_sub(link.last_frame_ms) < MASTER_LINK_TIMEOUT_MS;
        self.shared.master_link_up.store(up, Ordering::Release);
        let stale = match link.phase {
            Phase::Waiting { sent_ms } => now_ms.saturating_sub(sent_ms) >= PSYNC_RETRY_MS,
            Phase::Streaming | Phase::Loading { .. } => {
                now_ms.saturating_sub(link.last_frame_ms) >= PSYNC_RETRY_MS * 3
            }
        };
        if stale {
            self.send_psync().await;
        } else if link.phase == Phase::Streaming {
            self.send_ack().await;
        }
    }

    /// The engine's removal log overflowed (`dropped_total` events lost so far): some
    /// expirations or evictions will never reach the replicas as deletes. A new history
    /// and stopped streams make every replica full-sync, at most once per
    /// [`LOST_REMOVALS_RESYNC_INTERVAL_MS`] (later losses wait for the next).
    fn handle_lost_removals(&mut self, dropped_total: u64) {
        if dropped_total <= self.removals_dropped_seen {
            return;
        }
        let now_ms = self.shared.now_ms();
        if self
            .last_lost_removals_resync_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < LOST_REMOVALS_RESYNC_INTERVAL_MS)
        {
            return;
        }
        let lost = dropped_total - self.removals_dropped_seen;
        self.removals_dropped_seen = dropped_total;
        self.last_lost_removals_resync_ms = Some(now_ms);
        tracing::warn!(
            lost,
            "engine removals were lost before being logged; replicas resync"
        );
        self.history_seed = next_history(self.history_seed ^ wall_clock_nanos());
        self.shared.log.start_history(self.history_seed);
        self.stop_streams();
    }

    async fn send_ack(&self) {
        let Some(address) = self.link.as_ref().and_then(|link| link.address.clone()) else {
            return;
        };
        let (replid, offset) = self.shared.log.position();
        self.send(&address, &StreamFrame::Ack { replid, offset })
            .await;
    }

    async fn handle_frame(&mut self, frame: InboundFrame) {
        if is_ops_frame(&frame.payload) {
            // The stream's bulk: decoded borrowing from the frame, applied without copies.
            match decode_ops_frame(&frame.payload) {
                Ok(ops) => {
                    self.handle_ops(&frame.from, ops.first_offset, &ops.ops)
                        .await
                }
                Err(error) => {
                    self.shared.stats.count(Refusal::MalformedStreamFrame);
                    tracing::debug!(from = %frame.from, %error, "dropped a replication frame");
                }
            }
            return;
        }
        let decoded = match decode_frame(&frame.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                self.shared.stats.count(Refusal::MalformedStreamFrame);
                tracing::debug!(from = %frame.from, %error, "dropped a replication frame");
                return;
            }
        };
        match decoded {
            // A master withholding its slots after a restart without data never ships its
            // empty engine: the replica keeps its copy (and asks again later).
            StreamFrame::Psync { .. } if !self.shared.routing.table().serves_data => {
                tracing::debug!(from = %frame.from, "refused a PSYNC: restarted without data");
            }
            // Only from a node of the cluster: a forgotten replica (still up, still asking)
            // or a stranger gets no stream, and so no say in WAIT. A new replica whose
            // handshake is not done yet is served at its next PSYNC retry.
            StreamFrame::Psync { .. }
                if !self.shared.routing.table().knows_address(&frame.from) =>
            {
                self.shared.stats.count(Refusal::PsyncFromStranger);
                tracing::debug!(from = %frame.from, "refused a PSYNC from a node not in the cluster");
            }
            StreamFrame::Psync { replid, offset } => {
                if self.link.is_none() {
                    self.streams
                        .handle_psync(&self.shared, frame.from, replid, offset);
                }
            }
            // Only from a replica this master streams to: anyone else's ack (a stranger, a
            // replica whose stream ended) must not count for WAIT or durability.
            StreamFrame::Ack { replid, offset }
                if self.link.is_none() && self.streams.is_streaming_to(&frame.from) =>
            {
                self.shared.log.handle_ack(&frame.from, replid, offset)
            }
            StreamFrame::Ack { .. } => {
                tracing::debug!(from = %frame.from, "ignored an ack from a peer not streamed to");
            }
            other => self.handle_master_frame(&frame.from, other).await,
        }
    }

    async fn handle_master_frame(&mut self, from: &PeerAddr, frame: StreamFrame) {
        let now_ms = self.shared.now_ms();
        let Some(link) = frame_from_master(&mut self.link, from, now_ms) else {
            return;
        };
        match frame {
            StreamFrame::FullSyncStart { replid, offset } => {
                // A fresh engine without maxmemory beside the old copy, which keeps serving
                // (and stays whole for a promotion) until the snapshot is complete.
                self.shared.store.begin_load();
                link.phase = Phase::Loading { replid, offset };
            }
            // Only inside the full sync it belongs to: a batch left over from an abandoned
            // sync would write old values over newer ones that no op will correct.
            StreamFrame::Snapshot(entries) if matches!(link.phase, Phase::Loading { .. }) => {
                self.apply_snapshot(entries)
            }
            StreamFrame::FullSyncEnd => {
                if let Phase::Loading { replid, offset } = link.phase {
                    self.shared.store.finish_load();
                    self.shared.log.adopt(replid, offset);
                    link.phase = Phase::Streaming;
                    self.send_ack().await;
                }
            }
            StreamFrame::Continue { replid, offset }
                if self.shared.log.position() == (replid, offset) =>
            {
                link.phase = Phase::Streaming;
            }
            StreamFrame::Ops { first_offset, ops } if link.phase == Phase::Streaming => {
                let ops: Vec<WireOpRef<'_>> = ops.iter().map(WireOp::as_ref).collect();
                self.apply_ops(first_offset, &ops).await;
            }
            StreamFrame::GetAck if link.phase == Phase::Streaming => self.send_ack().await,
            StreamFrame::Heartbeat { offset }
                if link.phase == Phase::Streaming && offset > self.shared.log.offset() =>
            {
                tracing::debug!(offset, "ops were lost on the way; resyncing");
                self.send_psync().await;
            }
            _ => {}
        }
    }

    fn apply_snapshot(&self, entries: Vec<(Vec<u8>, Vec<u8>, Option<u64>)>) {
        let entries: Vec<ExportedEntry> = entries
            .into_iter()
            .map(|(key, value, ttl_ms)| ExportedEntry {
                key: key.into(),
                value: value.into(),
                ttl_ms,
            })
            .collect();
        let Some(loading) = self.shared.store.loading() else {
            return;
        };
        if let Err(error) = loading.import_batch(&entries) {
            tracing::warn!(%error, "a replica could not import a snapshot batch");
        }
    }

    /// A batch of ops from `from`: applied if it is our master's and we are streaming.
    async fn handle_ops(&mut self, from: &PeerAddr, first_offset: u64, ops: &[WireOpRef<'_>]) {
        let now_ms = self.shared.now_ms();
        let streaming = frame_from_master(&mut self.link, from, now_ms)
            .is_some_and(|link| link.phase == Phase::Streaming);
        if streaming {
            self.apply_ops(first_offset, ops).await;
        }
    }

    async fn apply_ops(&mut self, first_offset: u64, ops: &[WireOpRef<'_>]) {
        let applied = self.shared.log.offset();
        if first_offset > applied + 1 {
            tracing::debug!(first_offset, applied, "gap in the replication stream");
            self.send_psync().await;
            return;
        }
        let store = self.shared.store.get();
        let mut offset = first_offset;
        for op in ops {
            if offset > applied {
                let result = match *op {
                    WireOpRef::Set(key, value, deadline) => store.apply_set(key, value, deadline),
                    WireOpRef::Del(key) => store.apply_del(key).map(|_| ()),
                    WireOpRef::DropSlot(slot) => store.drop_slot(slot).map(|_| ()),
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "a replica could not apply an op");
                }
            }
            offset += 1;
        }
        self.shared.log.set_applied((offset - 1).max(applied));
    }
}

/// The link to our master when `from` is it, its last frame time set to `now_ms`; `None`
/// for a frame from anyone else (a former master, a stranger) or with no master.
fn frame_from_master<'a>(
    link: &'a mut Option<ReplicaLink>,
    from: &PeerAddr,
    now_ms: u64,
) -> Option<&'a mut ReplicaLink> {
    let link = link.as_mut()?;
    if link.address.as_ref() != Some(from) {
        return None;
    }
    link.last_frame_ms = now_ms;
    Some(link)
}

/// Nanoseconds of the wall clock, mixed into history ids: a node restarted with the same
/// configured seed must not draw the history id of its previous life, or a replica still
/// holding that history's data could be answered CONTINUE on a different data set.
fn wall_clock_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// The next history id (never 0, which means "no history").
fn next_history(seed: u64) -> u64 {
    let mut mixer = seed;
    crate::core::rng::splitmix64(&mut mixer).max(1)
}

#[cfg(test)]
mod tests {
    use slotkv_engine::SetOptions;
    use slotkv_transport::sim::SimNet;

    use super::*;
    use crate::runtime::{Node, NodeTransport};

    async fn replica_node(net: &SimNet) -> Node {
        node_at(net, "replica:7000").await
    }

    async fn node_at(net: &SimNet, address: &str) -> Node {
        Node::builder(NodeTransport::Custom(Arc::new(net.transport())))
            .bind(address)
            .start()
            .await
            .unwrap()
    }

    /// A second node at [`PEER`] that `node` has met (a master serves PSYNC only to an
    /// address of a node it knows).
    async fn known_peer(net: &SimNet, node: &Node) -> Node {
        let peer = node_at(net, PEER).await;
        let address = PeerAddr::new(PEER).unwrap();
        node.meet(&address).await.unwrap();
        for _ in 0..5_000 {
            if node.shared().routing.table().knows_address(&address) {
                return peer;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the node never completed its handshake with {PEER}");
    }

    const PEER: &str = "replica2:7000";

    async fn history_of_a_fresh_start() -> u64 {
        let net = SimNet::new(1);
        let node = Node::builder(NodeTransport::Custom(Arc::new(net.transport())))
            .bind("restarted:7000")
            .rng_seed(7)
            .start()
            .await
            .unwrap();
        while node.replication_info().replid == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let replid = node.replication_info().replid;
        node.shutdown().await;
        replid
    }

    #[tokio::test]
    async fn a_restarted_master_with_the_same_seed_starts_a_new_history() {
        let first = history_of_a_fresh_start().await;
        let second = history_of_a_fresh_start().await;
        assert_ne!(first, second, "a replica of the first life could CONTINUE");
    }

    fn bulk_frame(from: &str, frame: &StreamFrame) -> InboundFrame {
        let encoded = encode_frame(frame);
        InboundFrame {
            from: PeerAddr::new(from).unwrap(),
            channel: slotkv_transport::Channel::Bulk,
            payload: bytes::Bytes::from(encoded).slice(1..),
            identity: None,
        }
    }

    /// `replica` asks for the stream (PSYNC from scratch), then acknowledges `offset`.
    async fn stream_to_and_ack(
        task: &mut ReplicationTask,
        replica: &str,
        replid: u64,
        offset: u64,
    ) {
        let psync = StreamFrame::Psync {
            replid: 0,
            offset: 0,
        };
        task.handle_frame(bulk_frame(replica, &psync)).await;
        let ack = StreamFrame::Ack { replid, offset };
        task.handle_frame(bulk_frame(replica, &ack)).await;
    }

    #[tokio::test]
    async fn acknowledgements_count_only_from_replicas_this_master_streams_to() {
        let net = SimNet::new(1);
        let node = replica_node(&net).await;
        let peer = known_peer(&net, &node).await;
        let shared = node.shared();
        let mut task = ReplicationTask::new(Arc::clone(&shared), 1);
        let (replid, offset) = shared.log.position();
        // No PSYNC came from this peer: its ack must not count for WAIT.
        let ack = StreamFrame::Ack { replid, offset };
        task.handle_frame(bulk_frame("stranger:7000", &ack)).await;
        assert_eq!(
            shared.log.replicas_at(offset),
            0,
            "an ack from a stranger counted"
        );
        // A replica that asked for the stream is counted.
        stream_to_and_ack(&mut task, PEER, replid, offset).await;
        assert_eq!(shared.log.replicas_at(offset), 1);
        // A PSYNC from an address no known node has gets no stream, so its ack counts not.
        stream_to_and_ack(&mut task, "forgotten:7000", replid, offset).await;
        assert_eq!(
            shared.log.replicas_at(offset),
            1,
            "a stranger was streamed to"
        );
        task.streams.stop_all();
        node.shutdown().await;
        peer.shutdown().await;
    }

    #[tokio::test]
    async fn a_demoted_master_no_longer_counts_its_old_replicas() {
        let net = SimNet::new(1);
        let node = replica_node(&net).await;
        let peer = known_peer(&net, &node).await;
        let shared = node.shared();
        let mut task = ReplicationTask::new(Arc::clone(&shared), 1);
        let (replid, offset) = shared.log.position();
        stream_to_and_ack(&mut task, PEER, replid, offset).await;
        assert_eq!(shared.log.replicas_at(offset), 1);
        let new_master = NodeId::parse_hex(&"cd".repeat(20)).unwrap();
        task.handle_role(Some(new_master)).await;
        assert_eq!(
            shared.log.replicas_at(offset),
            0,
            "WAIT on a demoted master would count replicas it no longer has"
        );
        node.shutdown().await;
        peer.shutdown().await;
    }

    #[tokio::test]
    async fn a_replica_never_blocks_on_a_dead_master() {
        let net = SimNet::new(1);
        let node = replica_node(&net).await;
        let shared = node.shared();
        let task = ReplicationTask::new(Arc::clone(&shared), 1);
        let dead = PeerAddr::new("dead:7000").unwrap();
        let frame = StreamFrame::Ack {
            replid: 1,
            offset: 1,
        };
        let sends = async {
            // More frames than the bulk queue to one peer holds.
            for _ in 0..shared.endpoint.config().bulk_queue_frames_max + 2 {
                task.send(&dead, &frame).await;
            }
        };
        let bound = Duration::from_millis(SEND_TIMEOUT_MS * 2 + 5_000);
        assert!(
            tokio::time::timeout(bound, sends).await.is_ok(),
            "the replication task blocked on a full queue to a dead peer"
        );
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_malformed_replication_frame_is_dropped_and_counted() {
        let net = SimNet::new(1);
        let node = replica_node(&net).await;
        let shared = node.shared();
        let mut task = ReplicationTask::new(Arc::clone(&shared), 1);
        let before = shared.stats.snapshot().stream_frames_malformed;
        let garbage = InboundFrame {
            from: PeerAddr::new("master:7000").unwrap(),
            channel: slotkv_transport::Channel::Bulk,
            // Version byte, then a variant index no frame has.
            payload: bytes::Bytes::from_static(&[1, 0xEE]),
            identity: None,
        };
        task.handle_frame(garbage).await;
        assert_eq!(shared.stats.snapshot().stream_frames_malformed, before + 1);
        assert_eq!(node.stats().stream_frames_malformed, before + 1);
        node.shutdown().await;
    }

    #[tokio::test]
    async fn snapshot_batches_apply_only_inside_a_full_sync() {
        let net = SimNet::new(1);
        let node = replica_node(&net).await;
        let shared = node.shared();
        let master = PeerAddr::new("master:7000").unwrap();
        let mut task = ReplicationTask::new(Arc::clone(&shared), 1);
        task.link = Some(ReplicaLink {
            master: NodeId::parse_hex(&"ab".repeat(20)).unwrap(),
            address: Some(master.clone()),
            phase: Phase::Waiting { sent_ms: 0 },
            last_frame_ms: 0,
        });
        shared
            .store
            .get()
            .set(b"k", b"new", SetOptions::default())
            .unwrap();
        let stale = || StreamFrame::Snapshot(vec![(b"k".to_vec(), b"old".to_vec(), None)]);
        // A batch of an abandoned full sync arriving after a new PSYNC, then while streaming.
        task.handle_master_frame(&master, stale()).await;
        assert_eq!(shared.store.get().get(b"k").as_deref(), Some(&b"new"[..]));
        // The node's own task starts its history once; wait for it so the position holds.
        while shared.log.position().0 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (replid, offset) = shared.log.position();
        let resume = StreamFrame::Continue { replid, offset };
        task.handle_master_frame(&master, resume).await;
        assert!(task
            .link
            .as_ref()
            .is_some_and(|link| link.phase == Phase::Streaming));
        task.handle_master_frame(&master, stale()).await;
        assert_eq!(shared.store.get().get(b"k").as_deref(), Some(&b"new"[..]));
        // Inside a full sync the batch is the snapshot.
        let start = StreamFrame::FullSyncStart {
            replid: 9,
            offset: 0,
        };
        task.handle_master_frame(&master, start).await;
        task.handle_master_frame(&master, stale()).await;
        task.handle_master_frame(&master, StreamFrame::FullSyncEnd)
            .await;
        assert_eq!(shared.store.get().get(b"k").as_deref(), Some(&b"old"[..]));
        node.shutdown().await;
    }

    /// A replica task linked to `master:7000`, waiting for its stream.
    fn linked_task(shared: &Arc<NodeState>) -> ReplicationTask {
        let mut task = ReplicationTask::new(Arc::clone(shared), 1);
        task.link = Some(ReplicaLink {
            master: NodeId::parse_hex(&"ab".repeat(20)).unwrap(),
            address: Some(PeerAddr::new("master:7000").unwrap()),
            phase: Phase::Waiting { sent_ms: 0 },
            last_frame_ms: 0,
        });
        task
    }

    #[tokio::test]
    async fn a_full_sync_keeps_the_old_copy_until_it_completes() {
        let net = SimNet::new(1);
        let node = replica_node(&net).await;
        let shared = node.shared();
        let master = PeerAddr::new("master:7000").unwrap();
        let mut task = linked_task(&shared);
        shared
            .store
            .get()
            .set(b"held", b"old copy", SetOptions::default())
            .unwrap();
        let start = StreamFrame::FullSyncStart {
            replid: 9,
            offset: 5,
        };
        task.handle_master_frame(&master, start).await;
        let batch = StreamFrame::Snapshot(vec![(b"fresh".to_vec(), b"new".to_vec(), None)]);
        task.handle_master_frame(&master, batch).await;
        // Mid-load: the old copy still serves, the partial snapshot is not visible.
        let current = shared.store.get();
        assert_eq!(current.get(b"held").as_deref(), Some(&b"old copy"[..]));
        assert_eq!(current.get(b"fresh"), None);
        assert!(shared.store.is_loading());
        task.handle_master_frame(&master, StreamFrame::FullSyncEnd)
            .await;
        let current = shared.store.get();
        assert_eq!(current.get(b"fresh").as_deref(), Some(&b"new"[..]));
        assert_eq!(current.get(b"held"), None, "the old copy is replaced whole");
        assert_eq!(shared.log.position(), (9, 5));
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_promotion_during_a_full_sync_keeps_the_old_copy_whole() {
        let net = SimNet::new(1);
        let node = replica_node(&net).await;
        let shared = node.shared();
        let master = PeerAddr::new("master:7000").unwrap();
        let mut task = linked_task(&shared);
        for index in 0..100u32 {
            let key = format!("held:{index}");
            shared
                .store
                .get()
                .set(key.as_bytes(), b"v", SetOptions::default())
                .unwrap();
        }
        let start = StreamFrame::FullSyncStart {
            replid: 9,
            offset: 5,
        };
        task.handle_master_frame(&master, start).await;
        let batch = StreamFrame::Snapshot(vec![(b"partial".to_vec(), b"x".to_vec(), None)]);
        task.handle_master_frame(&master, batch).await;
        // The master dies mid-sync and this replica is promoted.
        task.handle_role(None).await;
        let current = shared.store.get();
        assert_eq!(
            current.dbsize(),
            100,
            "the promoted data set is the old copy, whole"
        );
        assert_eq!(current.get(b"partial"), None);
        assert!(!shared.store.is_loading());
        node.shutdown().await;
    }
}
