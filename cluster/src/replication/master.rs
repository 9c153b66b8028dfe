//! The master's side of replication: one streaming task per replica.
//!
//! On PSYNC the task answers CONTINUE when the replica's history is ours and its offset is
//! still in the backlog (partial resync); otherwise it runs a full sync: it notes the
//! current offset `S`, sends FULLSYNC-START, exports every slot in bounded batches while
//! writes continue, sends FULLSYNC-END, and then streams the ops after `S` from the backlog.
//! Ops are absolute effects, so ops after `S` that the snapshot already reflects are
//! harmless when replayed. If the backlog overflows before the stream catches up (a gap),
//! the task starts a new full sync. Sends use the bulk channel's backpressure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use slotkv_transport::{PeerAddr, SendError};
use tokio::task::JoinHandle;

use crate::node_state::store_cell::export_batches;
use crate::node_state::write_log::{BacklogRead, Op};
use crate::node_state::NodeState;
use crate::replication::stream::{encode_frame, encode_ops_frame, StreamFrame};

/// Most ops read from the backlog per stream frame.
pub(crate) const STREAM_BATCH_OPS_MAX: usize = 4_096;

/// Most key and value bytes per stream frame (a single larger op still goes alone).
pub(crate) const STREAM_BATCH_BYTES_MAX: usize = 1 << 20;

/// A heartbeat is sent after this long without ops, in ms.
pub(crate) const HEARTBEAT_INTERVAL_MS: u64 = 100;

/// The streaming tasks of a master, one per replica address.
#[derive(Default)]
pub(crate) struct MasterStreams {
    tasks: Mutex<HashMap<PeerAddr, JoinHandle<()>>>,
}

impl MasterStreams {
    /// Starts (or restarts) streaming to `replica`, which holds `replid` up to `offset`.
    ///
    /// A previous stream to the same replica is aborted and the new one sends nothing until
    /// it has ended, so no frame of the old stream can follow the new stream's first frame.
    pub(crate) fn handle_psync(
        &self,
        shared: &Arc<NodeState>,
        replica: PeerAddr,
        replid: u64,
        offset: u64,
    ) {
        let mut tasks = self.tasks.lock();
        let previous = tasks.remove(&replica);
        if let Some(previous) = &previous {
            previous.abort();
        }
        let shared = Arc::clone(shared);
        let address = replica.clone();
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                // Resolves once the aborted task is gone (its result is the abort).
                let _ = previous.await;
            }
            stream_to_replica(shared, address, replid, offset).await;
        });
        tasks.insert(replica, task);
    }

    /// Whether a stream to `replica` is running: only then do its acknowledgements count.
    pub(crate) fn is_streaming_to(&self, replica: &PeerAddr) -> bool {
        self.tasks
            .lock()
            .get(replica)
            .is_some_and(|task| !task.is_finished())
    }

    /// Stops the stream to `replica`, if any, and resolves once its task has ended (so no
    /// frame of it follows, and it opens no link to the peer again); its acknowledgements
    /// no longer count for WAIT. Returns whether a stream was running.
    pub(crate) async fn stop(&self, shared: &NodeState, replica: &PeerAddr) -> bool {
        let task = self.tasks.lock().remove(replica);
        let Some(task) = task else {
            return false;
        };
        task.abort();
        // Resolves once the aborted task is gone (its result is the abort).
        let _ = task.await;
        shared.log.remove_replica(replica);
        true
    }

    /// Streams whose task is still running.
    pub(crate) fn running_count(&self) -> usize {
        self.tasks
            .lock()
            .values()
            .filter(|task| !task.is_finished())
            .count()
    }

    /// Stops every stream (this node stopped being a master, or shuts down).
    pub(crate) fn stop_all(&self) {
        for (_, task) in self.tasks.lock().drain() {
            task.abort();
        }
    }
}

impl Drop for MasterStreams {
    fn drop(&mut self) {
        self.stop_all();
    }
}

async fn send(
    shared: &NodeState,
    replica: &PeerAddr,
    frame: &StreamFrame,
) -> Result<(), SendError> {
    let bytes = Bytes::from(encode_frame(frame));
    shared.endpoint.send_bulk(replica, bytes).await
}

/// Why a stream to a replica ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    /// The frame could not be sent (link gone, endpoint shut down).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The engine refused the snapshot's export.
    #[error("the snapshot could not be exported: {0}")]
    Export(#[from] slotkv_engine::CommandError),
}

async fn stream_to_replica(shared: Arc<NodeState>, replica: PeerAddr, replid: u64, offset: u64) {
    if let Err(error) = run_stream(&shared, &replica, replid, offset).await {
        tracing::debug!(%replica, %error, "replication stream ended");
    }
    shared.log.remove_replica(&replica);
}

async fn run_stream(
    shared: &NodeState,
    replica: &PeerAddr,
    replid: u64,
    offset: u64,
) -> Result<(), StreamError> {
    let (my_replid, _) = shared.log.position();
    let mut sent = match shared.log.read_after(replid, offset, 0) {
        BacklogRead::Ops { .. } if replid == my_replid => {
            let frame = StreamFrame::Continue { replid, offset };
            send(shared, replica, &frame).await?;
            tracing::debug!(%replica, offset, "partial resync");
            shared.log.note_sync_served(false);
            offset
        }
        _ => full_sync(shared, replica).await?,
    };
    let mut writes = shared.log.subscribe_writes();
    let mut ack_requests = shared.log.subscribe_ack_requests();
    ack_requests.borrow_and_update();
    // An ack request seen (by `changed`) but not yet answered with a GETACK.
    let mut ack_requested = false;
    loop {
        // Read before the ops: a waiter counted here logged its ops already, so they are
        // in this batch or an earlier one, and the GETACK after it answers the waiter.
        let waiting = shared.log.has_waiters();
        let (replid, _) = shared.log.position();
        match shared.log.read_after(replid, sent, STREAM_BATCH_OPS_MAX) {
            BacklogRead::Gap => sent = full_sync(shared, replica).await?,
            BacklogRead::Ops { first_offset, ops } if !ops.is_empty() => {
                let ops = bounded(ops);
                sent = first_offset + ops.len() as u64 - 1;
                let frame = Bytes::from(encode_ops_frame(first_offset, &ops));
                shared.endpoint.send_bulk(replica, frame).await?;
                if waiting {
                    send(shared, replica, &StreamFrame::GetAck).await?;
                }
            }
            // A waiter whose ops went out before it asked (the stream is idle): caught up,
            // so every op it needs is sent.
            BacklogRead::Ops { .. }
                if ack_requested || ack_requests.has_changed().unwrap_or(false) =>
            {
                ack_requests.borrow_and_update();
                ack_requested = false;
                send(shared, replica, &StreamFrame::GetAck).await?;
            }
            BacklogRead::Ops { .. } => {
                let idle = Duration::from_millis(HEARTBEAT_INTERVAL_MS);
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return Ok(()),
                    requested = ack_requests.changed() => {
                        if requested.is_err() {
                            return Ok(());
                        }
                        ack_requested = true;
                    }
                    changed = tokio::time::timeout(idle, writes.changed()) => {
                        if changed.is_err() {
                            let frame = StreamFrame::Heartbeat { offset: sent };
                            send(shared, replica, &frame).await?;
                        } else {
                            // Let the other ready tasks (clients' writes) run first, so one
                            // frame carries the writes of many clients rather than one.
                            tokio::task::yield_now().await;
                        }
                    }
                }
            }
        }
    }
}

/// The prefix of `ops` within [`STREAM_BATCH_BYTES_MAX`] (at least one op).
fn bounded(mut ops: Vec<Op>) -> Vec<Op> {
    let mut bytes = 0;
    let mut keep = 0;
    for op in &ops {
        bytes += op.size_bytes();
        if keep > 0 && bytes > STREAM_BATCH_BYTES_MAX {
            break;
        }
        keep += 1;
    }
    ops.truncate(keep);
    ops
}

/// Sends a full snapshot; returns the offset the stream continues after.
async fn full_sync(shared: &NodeState, replica: &PeerAddr) -> Result<u64, StreamError> {
    let (replid, start) = shared.log.position();
    tracing::debug!(%replica, start, "full resync");
    shared.log.note_sync_served(true);
    send(
        shared,
        replica,
        &StreamFrame::FullSyncStart {
            replid,
            offset: start,
        },
    )
    .await?;
    let store = shared.store.get();
    for batch in export_batches(&store) {
        let entries = batch?
            .into_iter()
            .map(|entry| (entry.key.to_vec(), entry.value.to_vec(), entry.ttl_ms))
            .collect();
        send(shared, replica, &StreamFrame::Snapshot(entries)).await?;
    }
    send(shared, replica, &StreamFrame::FullSyncEnd).await?;
    Ok(start)
}
