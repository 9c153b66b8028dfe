//! The task serving forwarded data requests from peers.
//!
//! Requests that execute at once are served inline, in arrival order (engine calls take
//! microseconds); requests that may wait (a durability wait, WAIT) get their own task so
//! they never hold up the others. Their number is bounded by the peers'
//! `requests_outstanding_max`.

use std::sync::Arc;

use slotkv_transport::InboundRequest;
use tokio::sync::mpsc;

use crate::node_state::NodeState;
use crate::routing::serve::{answer, decode_inbound, may_block};

/// Serves until shutdown or until the endpoint closes its request queue.
pub(crate) async fn run_server(
    shared: Arc<NodeState>,
    mut requests: mpsc::Receiver<InboundRequest>,
) {
    loop {
        let inbound = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            inbound = requests.recv() => match inbound {
                Some(inbound) => inbound,
                None => break,
            },
        };
        let Some(request) = decode_inbound(&shared.stats, &inbound) else {
            continue;
        };
        if may_block(&request) {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let cancelled = shared.shutdown.clone();
                tokio::select! {
                    _ = cancelled.cancelled() => {}
                    _ = answer(&shared, request, inbound.responder) => {}
                }
            });
        } else {
            answer(&shared, request, inbound.responder).await;
        }
    }
}
