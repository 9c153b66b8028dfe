//! What the tasks of one node share: the engine, the endpoint, the published slot map, the
//! replication log and the data-path settings. Owned by an `Arc`; the driver alone owns the
//! core.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use slotkv_engine::Store;
use slotkv_transport::Endpoint;
use tokio_util::sync::CancellationToken;

use crate::replication::ReplicationLog;
use crate::routing::table::RoutingCell;

/// Bounds of the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPathSettings {
    /// Timeout of one forwarded request, in ms.
    pub request_timeout_ms: u64,
    /// MOVED/ASK redirections followed per call.
    pub redirections_max: u32,
    /// TRYAGAIN retries per call.
    pub try_again_attempts_max: u32,
    /// First TRYAGAIN backoff, doubled per retry, in ms.
    pub try_again_backoff_ms: u64,
    /// Longest TRYAGAIN backoff, in ms.
    pub try_again_backoff_ms_max: u64,
}

impl Default for DataPathSettings {
    fn default() -> Self {
        DataPathSettings {
            request_timeout_ms: 2_000,
            redirections_max: 5,
            try_again_attempts_max: 20,
            try_again_backoff_ms: 5,
            try_again_backoff_ms_max: 200,
        }
    }
}

/// The state every task of a node shares.
pub struct NodeShared {
    /// The engine.
    pub store: Arc<Store>,
    /// The transport endpoint.
    pub endpoint: Endpoint,
    /// The slot map for the data path.
    pub routing: RoutingCell,
    /// The replication log (master) or applied offset (replica).
    pub log: ReplicationLog,
    /// For a replica: whether the replication link to the master is up.
    pub master_link_up: AtomicBool,
    /// Data-path bounds.
    pub settings: DataPathSettings,
    /// Cancelled on shutdown or drop of the node.
    pub shutdown: CancellationToken,
    /// Origin of the core's monotonic clock.
    pub started: Instant,
}

impl NodeShared {
    /// The core's `now`: ms since the node started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether the replica link is up.
    pub fn master_link_is_up(&self) -> bool {
        self.master_link_up.load(Ordering::Acquire)
    }
}
