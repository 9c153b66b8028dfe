//! The data a simulated node carries, and a small model of the shell's replication.
//!
//! This is a model of what `replication/{master,replica}.rs`, `node_state/write_log.rs`
//! and `node_state/store_cell.rs` do, reduced to what the protocol can observe, not a
//! second copy of them:
//!
//! - **Data**: a map key → value. Values are write ids, unique in a run and increasing with
//!   time, so a larger value of a key is a later write.
//! - **History**: a master's writes have offsets in its history `replid`; the last
//!   [`BACKLOG_OPS_MAX`] stay in a backlog for partial resyncs. Becoming a master starts a
//!   new history from its own data (the shell's `start_history`), and so does the first
//!   start of a node without one.
//! - **A replica** asks its master for the stream (PSYNC with its history and offset, again
//!   every [`PSYNC_RETRY_MS`] until an answer, and after [`STALE_STREAM_MS`] without a
//!   frame), applies ops in order (a gap, or a heartbeat ahead of it, makes it PSYNC
//!   again), and acknowledges its offset after each batch and on every tick while
//!   streaming. A full sync keeps the old copy and old offset while the snapshot travels
//!   ([`Phase::Loading`], [`full_sync_transfer_ms`] of virtual time); the snapshot replaces
//!   the copy whole when it arrives. It reports to the core as the shell's driver does: its
//!   applied offset (the old one while loading) and the link up only while streaming with
//!   a frame in the last [`MASTER_LINK_TIMEOUT_MS`]. It acknowledges only data it holds.
//! - **A master** answers PSYNC with CONTINUE when the history is its own and the offset
//!   still in the backlog, otherwise with a full sync of its data at its current offset;
//!   streams ops after what it sent (a backlog gap starts a new full sync) or a heartbeat
//!   when idle; and counts an acknowledgement only from a replica it streams to. Stopping
//!   being a master (or changing masters) stops its streams: WAIT counts none of them.
//!
//! Frames travel on the simulated network's stream kind (ordered per link, lossy under
//! partitions and loss, see [`super::network`]).

use std::collections::{BTreeMap, VecDeque};

pub(crate) use crate::replication::replica::{
    ACK_INTERVAL_MS, MASTER_LINK_TIMEOUT_MS, PSYNC_RETRY_MS,
};

/// A key of the simulated data set.
pub(crate) type Key = u32;
/// A written value: the id of the write (see the module docs).
pub(crate) type Value = u64;

/// Ops a master keeps for partial resyncs (the shell bounds its backlog in bytes).
pub(crate) const BACKLOG_OPS_MAX: usize = 512;
/// Most ops per stream frame.
pub(crate) const STREAM_BATCH_OPS_MAX: usize = 64;
/// A replica re-asks for the stream after this long without a frame while loading or
/// streaming, in ms (the shell's `3 × PSYNC_RETRY_MS`).
pub(crate) const STALE_STREAM_MS: u64 = 3 * PSYNC_RETRY_MS;
/// Smallest virtual time a full sync's snapshot takes on top of the network delay, in ms.
pub(crate) const FULL_SYNC_MS_MIN: u64 = 20;
/// Keys a full sync moves per virtual ms.
pub(crate) const FULL_SYNC_KEYS_PER_MS: u64 = 10;

/// The virtual time a snapshot of `keys` keys takes on top of the network delay, in ms.
pub(crate) fn full_sync_transfer_ms(keys: usize) -> u64 {
    FULL_SYNC_MS_MIN + keys as u64 / FULL_SYNC_KEYS_PER_MS
}

/// A replication frame (the shell's `StreamFrame`, with the snapshot in one piece).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StreamFrame {
    /// Replica → master: "I hold history `replid` up to `offset`".
    Psync { replid: u64, offset: u64 },
    /// Master → replica: partial resync from the replica's own position.
    Continue { replid: u64, offset: u64 },
    /// Master → replica: a full sync of history `replid` at `offset` begins.
    FullSyncStart { replid: u64, offset: u64 },
    /// Master → replica: the whole snapshot (ends the full sync).
    FullSyncData(BTreeMap<Key, Value>),
    /// Master → replica: the ops at `first_offset`, `first_offset + 1`, ...
    Ops {
        first_offset: u64,
        ops: Vec<(Key, Value)>,
    },
    /// Master → replica: nothing to send; everything up to `offset` was sent.
    Heartbeat { offset: u64 },
    /// Replica → master: applied history `replid` up to `offset`.
    Ack { replid: u64, offset: u64 },
}

/// A frame to send: (to, frame, extra transfer time in ms).
pub(crate) type Outgoing = (usize, StreamFrame, u64);

/// Where a replica's link to its master is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// PSYNC sent at this time (ms), no answer yet.
    Waiting { sent_ms: u64 },
    /// A snapshot of history `replid` at `offset` is on its way; the old copy stays.
    Loading { replid: u64, offset: u64 },
    /// Applying ops.
    Streaming,
}

#[derive(Clone, Copy, Debug)]
struct ReplicaLink {
    master: usize,
    phase: Phase,
    last_frame_ms: u64,
}

/// A master's stream to one replica.
#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// Last offset sent.
    sent: u64,
    /// Last acknowledgement: (history, offset).
    acked: Option<(u64, u64)>,
}

/// One node's data and replication state (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeData {
    /// The data set.
    pub(crate) values: BTreeMap<Key, Value>,
    replid: u64,
    offset: u64,
    /// The ops at offsets `offset - backlog.len() + 1 ..= offset`.
    backlog: VecDeque<(Key, Value)>,
    /// Master side: streams by replica index.
    streams: BTreeMap<usize, Stream>,
    /// Replica side: the link to the master.
    link: Option<ReplicaLink>,
}

impl NodeData {
    /// The history and offset this node holds.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.replid, self.offset)
    }

    /// The replica's phase, `None` for a master.
    pub(crate) fn phase(&self) -> Option<Phase> {
        self.link.map(|link| link.phase)
    }

    /// What the shell's driver reports to the core: (offset, master link up).
    pub(crate) fn status(&self, now_ms: u64) -> (u64, bool) {
        let up = self.link.is_some_and(|link| {
            link.phase == Phase::Streaming
                && now_ms.saturating_sub(link.last_frame_ms) < MASTER_LINK_TIMEOUT_MS
        });
        (self.offset, up)
    }

    /// The process stopped: what lives only in memory (links, streams) is gone; the data
    /// and its position stay (see [`crate::sim::Simulator::restart`]).
    pub(crate) fn stop(&mut self) {
        self.streams.clear();
        self.link = None;
    }

    /// Follows the core's role: `master` is the index of the node it replicates, `None`
    /// for a master. `fresh_replid` draws a new history id (never 0).
    pub(crate) fn follow_role(
        &mut self,
        master: Option<usize>,
        now_ms: u64,
        fresh_replid: impl FnOnce() -> u64,
        out: &mut Vec<Outgoing>,
    ) {
        match master {
            None => {
                let was_replica = self.link.take().is_some();
                if was_replica || self.replid == 0 {
                    self.replid = fresh_replid();
                    self.backlog.clear();
                    self.streams.clear();
                }
            }
            Some(master) => {
                if self.link.is_some_and(|link| link.master == master) {
                    return;
                }
                self.streams.clear();
                self.link = Some(ReplicaLink {
                    master,
                    phase: Phase::Waiting { sent_ms: now_ms },
                    last_frame_ms: 0,
                });
                self.send_psync(now_ms, out);
            }
        }
    }

    fn send_psync(&mut self, now_ms: u64, out: &mut Vec<Outgoing>) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        link.phase = Phase::Waiting { sent_ms: now_ms };
        let frame = StreamFrame::Psync {
            replid: self.replid,
            offset: self.offset,
        };
        out.push((link.master, frame, 0));
    }

    fn send_ack(&self, out: &mut Vec<Outgoing>) {
        if let Some(link) = self.link {
            let frame = StreamFrame::Ack {
                replid: self.replid,
                offset: self.offset,
            };
            out.push((link.master, frame, 0));
        }
    }

    /// The periodic work ([`ACK_INTERVAL_MS`], driven by the node's cron): a replica
    /// re-asks for a stale stream or acknowledges; a master streams to every replica.
    pub(crate) fn tick(&mut self, now_ms: u64, out: &mut Vec<Outgoing>) {
        let Some(link) = self.link else {
            let replicas: Vec<usize> = self.streams.keys().copied().collect();
            for replica in replicas {
                self.stream_to(replica, true, out);
            }
            return;
        };
        let stale = match link.phase {
            Phase::Waiting { sent_ms } => now_ms.saturating_sub(sent_ms) >= PSYNC_RETRY_MS,
            Phase::Loading { .. } | Phase::Streaming => {
                now_ms.saturating_sub(link.last_frame_ms) >= STALE_STREAM_MS
            }
        };
        if stale {
            self.send_psync(now_ms, out);
        } else if link.phase == Phase::Streaming {
            self.send_ack(out);
        }
    }

    /// A client write on this master: applies it, logs it, streams it; returns its offset.
    pub(crate) fn write(&mut self, key: Key, value: Value, out: &mut Vec<Outgoing>) -> u64 {
        self.values.insert(key, value);
        self.offset += 1;
        self.backlog.push_back((key, value));
        if self.backlog.len() > BACKLOG_OPS_MAX {
            self.backlog.pop_front();
        }
        let replicas: Vec<usize> = self.streams.keys().copied().collect();
        for replica in replicas {
            self.stream_to(replica, false, out);
        }
        self.offset
    }

    /// Replicas this master streams to (they asked it for the stream).
    pub(crate) fn streamed_replicas(&self) -> Vec<usize> {
        self.streams.keys().copied().collect()
    }

    /// Replicas whose acknowledgement of the current history reached `offset`.
    pub(crate) fn replicas_at(&self, offset: u64) -> Vec<usize> {
        self.streams
            .iter()
            .filter(|(_, stream)| {
                stream
                    .acked
                    .is_some_and(|(replid, acked)| replid == self.replid && acked >= offset)
            })
            .map(|(replica, _)| *replica)
            .collect()
    }

    /// Sends `replica` what it lacks: ops, a full sync after a backlog gap, or (when
    /// `heartbeat` and nothing is due) a heartbeat.
    fn stream_to(&mut self, replica: usize, heartbeat: bool, out: &mut Vec<Outgoing>) {
        let Some(stream) = self.streams.get(&replica).copied() else {
            return;
        };
        if stream.sent >= self.offset {
            if heartbeat {
                out.push((
                    replica,
                    StreamFrame::Heartbeat {
                        offset: stream.sent,
                    },
                    0,
                ));
            }
            return;
        }
        let first_held = self.offset + 1 - self.backlog.len() as u64;
        if stream.sent + 1 < first_held {
            self.full_sync(replica, out);
            return;
        }
        let skip = (stream.sent + 1 - first_held) as usize;
        let ops: Vec<(Key, Value)> = self
            .backlog
            .iter()
            .skip(skip)
            .take(STREAM_BATCH_OPS_MAX)
            .copied()
            .collect();
        let first_offset = stream.sent + 1;
        if let Some(stream) = self.streams.get_mut(&replica) {
            stream.sent += ops.len() as u64;
        }
        out.push((replica, StreamFrame::Ops { first_offset, ops }, 0));
    }

    fn full_sync(&mut self, replica: usize, out: &mut Vec<Outgoing>) {
        let start = StreamFrame::FullSyncStart {
            replid: self.replid,
            offset: self.offset,
        };
        out.push((replica, start, 0));
        let transfer_ms = full_sync_transfer_ms(self.values.len());
        out.push((
            replica,
            StreamFrame::FullSyncData(self.values.clone()),
            transfer_ms,
        ));
        self.streams.insert(
            replica,
            Stream {
                sent: self.offset,
                acked: None,
            },
        );
    }

    /// A frame from node `from`; returns true when this node's data set was replaced.
    pub(crate) fn handle_frame(
        &mut self,
        from: usize,
        frame: StreamFrame,
        now_ms: u64,
        out: &mut Vec<Outgoing>,
    ) -> bool {
        match frame {
            StreamFrame::Psync { replid, offset } => {
                if self.link.is_none() {
                    self.handle_psync(from, replid, offset, out);
                }
                false
            }
            StreamFrame::Ack { replid, offset } => {
                if self.link.is_none() {
                    if let Some(stream) = self.streams.get_mut(&from) {
                        stream.acked = Some((replid, offset));
                    }
                }
                false
            }
            other => self.handle_master_frame(from, other, now_ms, out),
        }
    }

    fn handle_psync(&mut self, replica: usize, replid: u64, offset: u64, out: &mut Vec<Outgoing>) {
        let first_held = self.offset + 1 - self.backlog.len() as u64;
        let partial = replid == self.replid && offset <= self.offset && offset + 1 >= first_held;
        if !partial {
            self.full_sync(replica, out);
            return;
        }
        out.push((replica, StreamFrame::Continue { replid, offset }, 0));
        self.streams.insert(
            replica,
            Stream {
                sent: offset,
                acked: None,
            },
        );
        self.stream_to(replica, false, out);
    }

    fn handle_master_frame(
        &mut self,
        from: usize,
        frame: StreamFrame,
        now_ms: u64,
        out: &mut Vec<Outgoing>,
    ) -> bool {
        let position = self.position();
        let Some(link) = self.link.as_mut().filter(|link| link.master == from) else {
            return false;
        };
        // While loading, only the snapshot is progress: the shell's stream is one ordered
        // connection, so a lost snapshot means no later frame either, and the replica
        // re-asks after STALE_STREAM_MS.
        let loading = matches!(link.phase, Phase::Loading { .. });
        if !loading || matches!(frame, StreamFrame::FullSyncData(_)) {
            link.last_frame_ms = now_ms;
        }
        match frame {
            StreamFrame::FullSyncStart { replid, offset } => {
                link.phase = Phase::Loading { replid, offset };
            }
            StreamFrame::FullSyncData(values) => {
                if let Phase::Loading { replid, offset } = link.phase {
                    link.phase = Phase::Streaming;
                    self.values = values;
                    self.replid = replid;
                    self.offset = offset;
                    self.backlog.clear();
                    self.send_ack(out);
                    return true;
                }
            }
            StreamFrame::Continue { replid, offset } if (replid, offset) == position => {
                link.phase = Phase::Streaming;
            }
            StreamFrame::Ops { first_offset, ops } if link.phase == Phase::Streaming => {
                if first_offset > self.offset + 1 {
                    self.send_psync(now_ms, out);
                    return false;
                }
                for (offset, (key, value)) in (first_offset..).zip(ops) {
                    if offset > self.offset {
                        self.values.insert(key, value);
                        self.offset = offset;
                    }
                }
                self.send_ack(out);
            }
            StreamFrame::Heartbeat { offset }
                if link.phase == Phase::Streaming && offset > self.offset =>
            {
                self.send_psync(now_ms, out);
            }
            _ => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delivers every frame in `out` (and what they cause) between `nodes`, in order.
    fn deliver(nodes: &mut [NodeData], mut out: Vec<Outgoing>, from: usize, now_ms: u64) {
        let mut queue: VecDeque<(usize, usize, StreamFrame)> = out
            .drain(..)
            .map(|(to, frame, _)| (from, to, frame))
            .collect();
        while let Some((from, to, frame)) = queue.pop_front() {
            let mut sent = Vec::new();
            nodes[to].handle_frame(from, frame, now_ms, &mut sent);
            queue.extend(sent.into_iter().map(|(next, frame, _)| (to, next, frame)));
        }
    }

    fn master_and_replica() -> Vec<NodeData> {
        let mut nodes = vec![NodeData::default(), NodeData::default()];
        let mut out = Vec::new();
        nodes[0].follow_role(None, 0, || 7, &mut out);
        nodes[1].follow_role(Some(0), 0, || 8, &mut out);
        deliver(&mut nodes, out, 1, 0);
        nodes
    }

    #[test]
    fn a_replica_full_syncs_then_streams_and_acknowledges() {
        let mut nodes = master_and_replica();
        assert_eq!(nodes[1].position(), (7, 0));
        assert_eq!(nodes[1].phase(), Some(Phase::Streaming));
        let mut out = Vec::new();
        let offset = nodes[0].write(1, 100, &mut out);
        deliver(&mut nodes, out, 0, 1);
        assert_eq!(nodes[1].values.get(&1), Some(&100));
        assert_eq!(nodes[0].replicas_at(offset), vec![1]);
    }

    #[test]
    fn a_gap_in_the_ops_makes_the_replica_resync() {
        let mut nodes = master_and_replica();
        let mut lost = Vec::new();
        nodes[0].write(1, 100, &mut lost);
        let mut out = Vec::new();
        let offset = nodes[0].write(2, 101, &mut out);
        // The first op was lost on the way; the second shows the gap.
        deliver(&mut nodes, out, 0, 1);
        assert_eq!(nodes[1].values.get(&1), Some(&100), "resynced");
        assert_eq!(nodes[1].values.get(&2), Some(&101));
        assert_eq!(nodes[0].replicas_at(offset), vec![1]);
    }

    #[test]
    fn a_loading_replica_keeps_its_old_copy_and_offset_and_does_not_acknowledge() {
        let mut nodes = master_and_replica();
        let mut out = Vec::new();
        nodes[0].write(1, 100, &mut out);
        deliver(&mut nodes, out, 0, 1);
        // A new master with other data; the replica follows it.
        nodes.push(NodeData::default());
        let mut out = Vec::new();
        nodes[2].follow_role(None, 2, || 9, &mut out);
        nodes[2].write(5, 200, &mut out);
        nodes[1].follow_role(Some(2), 2, || 0, &mut out);
        let psync = out.pop().map(|(_, frame, _)| frame).unwrap();
        let mut answer = Vec::new();
        nodes[2].handle_frame(1, psync, 3, &mut answer);
        let start = answer.remove(0).1;
        nodes[1].handle_frame(2, start, 3, &mut Vec::new());
        assert!(matches!(nodes[1].phase(), Some(Phase::Loading { .. })));
        assert_eq!(nodes[1].values.get(&1), Some(&100), "the old copy stays");
        assert_eq!(nodes[1].status(3), (1, false), "old offset, link not up");
        let mut acks = Vec::new();
        nodes[1].tick(4, &mut acks);
        assert!(acks.is_empty(), "no acknowledgement while loading");
        let data = answer.remove(0).1;
        assert!(nodes[1].handle_frame(2, data, 50, &mut acks));
        assert_eq!(nodes[1].values.get(&1), None, "replaced whole");
        assert_eq!(nodes[1].position(), (9, 1));
    }
}
