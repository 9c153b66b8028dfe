//! The bulk-channel demultiplexer: one task reads every frame the endpoint receives on the
//! bulk channel, reads its stream tag ([`crate::node_state::bulk`]) and hands the body to the
//! consumer of that stream kind (replication today, slot migration next), in arrival order
//! per kind. A frame with an unknown tag, or of a kind nothing on this node consumes, is
//! dropped and counted ([`crate::Node::stats`]); consumers never see another kind's frames.
//!
//! Backpressure is kept: the task waits for room in a consumer's bounded queue
//! ([`STREAM_QUEUE_MAX`]), which holds back the endpoint's bulk queue and so the senders.

use std::collections::HashMap;
use std::sync::Arc;

use slotkv_transport::InboundFrame;
use tokio::sync::mpsc;

use crate::node_state::bulk::{split, StreamKind};
use crate::node_state::stats::Refusal;
use crate::node_state::NodeState;

/// Frames queued per stream kind between the demultiplexer and the kind's consumer.
pub(crate) const STREAM_QUEUE_MAX: usize = 256;

/// The consumers of each stream kind, registered before the task starts.
#[derive(Default)]
pub(crate) struct BulkRoutes {
    consumers: HashMap<StreamKind, mpsc::Sender<InboundFrame>>,
}

impl BulkRoutes {
    /// A bounded queue for `kind`'s frames (tag removed); the receiver goes to its consumer.
    pub(crate) fn register(&mut self, kind: StreamKind) -> mpsc::Receiver<InboundFrame> {
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE_MAX);
        self.consumers.insert(kind, sender);
        receiver
    }

    /// Routes one frame; `false` when it was dropped (and counted).
    async fn route(&self, state: &NodeState, frame: InboundFrame) -> bool {
        let Some((kind, body)) = split(&frame.payload) else {
            state.stats.count(Refusal::UnroutableBulkFrame);
            tracing::debug!(from = %frame.from, "dropped a bulk frame with an unknown stream tag");
            return false;
        };
        let Some(consumer) = self.consumers.get(&kind) else {
            state.stats.count(Refusal::UnroutableBulkFrame);
            tracing::debug!(from = %frame.from, ?kind, "dropped a bulk frame nothing consumes");
            return false;
        };
        let routed = InboundFrame {
            payload: body,
            ..frame
        };
        // A consumer that ended (shutdown) drops its frames.
        consumer.send(routed).await.is_ok()
    }
}

/// Runs until shutdown or until the endpoint closes its bulk queue.
pub(crate) async fn run_bulk_demux(
    state: Arc<NodeState>,
    routes: BulkRoutes,
    mut bulk: mpsc::Receiver<InboundFrame>,
) {
    loop {
        let frame = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            frame = bulk.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
        };
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = routes.route(&state, frame) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use slotkv_transport::{Channel, PeerAddr};

    use super::*;
    use crate::runtime::{Node, NodeTransport};

    fn frame(payload: &'static [u8]) -> InboundFrame {
        InboundFrame {
            from: PeerAddr::new("peer:1").unwrap(),
            channel: Channel::Bulk,
            payload: Bytes::from_static(payload),
            identity: None,
        }
    }

    #[tokio::test]
    async fn frames_reach_only_their_kind_and_the_rest_is_counted() {
        let net = slotkv_transport::sim::SimNet::new(1);
        let node = Node::builder(NodeTransport::Custom(Arc::new(net.transport())))
            .bind("demux:7000")
            .start()
            .await
            .unwrap();
        let state = node.shared();
        let mut routes = BulkRoutes::default();
        let mut replication = routes.register(StreamKind::Replication);
        let replication_tag = StreamKind::Replication.tag();
        let migration_tag = StreamKind::SlotMigration.tag();
        let tagged: &'static [u8] = Box::leak(vec![replication_tag, 1, 2].into_boxed_slice());
        let migration: &'static [u8] = Box::leak(vec![migration_tag, 9].into_boxed_slice());
        let before = state.stats.snapshot().bulk_frames_unroutable;
        assert!(routes.route(&state, frame(tagged)).await);
        assert!(!routes.route(&state, frame(migration)).await);
        assert!(!routes.route(&state, frame(&[0xEE, 1])).await);
        assert!(!routes.route(&state, frame(&[])).await);
        let received = replication.try_recv().unwrap();
        assert_eq!(&received.payload[..], &[1, 2]);
        assert!(replication.try_recv().is_err());
        assert_eq!(state.stats.snapshot().bulk_frames_unroutable, before + 3);
        node.shutdown().await;
    }
}
