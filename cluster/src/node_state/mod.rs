//! What the tasks of one node share, at the bottom of the shell: neither the runtime, nor
//! routing, nor replication owns it, and each of them imports it, never each other.
//!
//! - [`store_cell`]: the engine, replaceable as the role changes ([`StoreCell`]);
//! - [`write_log`]: the ordered log of write effects with its per-slot stripes, the
//!   backlog, replica acknowledgements and WAIT ([`WriteLog`]);
//! - [`routing_table`]: the slot map the data path reads, published by the driver
//!   ([`RoutingCell`], [`RoutingTable`]);
//! - [`bulk`]: the stream tags of the bulk channel;
//! - [`migration_gate`]: what keeps a key-by-key migration batch and the requests on its
//!   slot apart ([`MigrationGates`]);
//! - [`outbound_slots`]: an atomic migration's dirty keys and per-slot pause, held by the
//!   write log ([`outbound_slots::OutboundSlots`]);
//! - [`stats`]: counters of what the node refused or dropped;
//! - [`slot_activity`]: reads and writes executed per slot, held by the store cell.
//!
//! [`NodeState`] bundles them for a node behind one `Arc`. Functions below the tasks take
//! only the parts they use (`execute(stores, log, slot, command)`), so they can be tested
//! alone; the driver alone owns the core.

pub(crate) mod bulk;
pub(crate) mod migration_gate;
pub(crate) mod outbound_slots;
pub(crate) mod routing_table;
pub(crate) mod slot_activity;
pub(crate) mod stats;
pub(crate) mod store_cell;
pub(crate) mod write_log;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use slotkv_transport::Endpoint;
use tokio_util::sync::CancellationToken;

pub(crate) use migration_gate::MigrationGates;
pub(crate) use routing_table::{RoutingCell, RoutingTable};
pub(crate) use stats::NodeStats;
pub(crate) use store_cell::StoreCell;
pub(crate) use write_log::WriteLog;

/// Bounds of the data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataPathSettings {
    /// Timeout of one forwarded request, in ms.
    pub(crate) request_timeout_ms: u64,
    /// MOVED/ASK redirections followed per call.
    pub(crate) redirections_max: u32,
    /// TRYAGAIN retries per call.
    pub(crate) try_again_attempts_max: u32,
    /// First TRYAGAIN backoff, doubled per retry, in ms.
    pub(crate) try_again_backoff_ms: u64,
    /// Longest TRYAGAIN backoff, in ms.
    pub(crate) try_again_backoff_ms_max: u64,
}

/// Default timeout of one forwarded request, in ms (the node builder's default too).
pub(crate) const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 2_000;

impl Default for DataPathSettings {
    fn default() -> Self {
        DataPathSettings {
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            redirections_max: 5,
            try_again_attempts_max: 20,
            try_again_backoff_ms: 5,
            try_again_backoff_ms_max: 200,
        }
    }
}

/// The state every task of a node shares (see the module docs).
pub(crate) struct NodeState {
    /// The engine (replaced when the role changes, see [`StoreCell`]).
    pub(crate) store: StoreCell,
    /// The transport endpoint.
    pub(crate) endpoint: Endpoint,
    /// The slot map for the data path.
    pub(crate) routing: RoutingCell,
    /// The write log (master) or applied offset (replica).
    pub(crate) log: WriteLog,
    /// For a replica: whether the replication link to the master is up.
    pub(crate) master_link_up: AtomicBool,
    /// Data-path bounds.
    pub(crate) settings: DataPathSettings,
    /// The gates between migration batches and requests on migrating slots.
    pub(crate) gates: MigrationGates,
    /// Counters of refused and dropped input.
    pub(crate) stats: NodeStats,
    /// Cancelled on shutdown or drop of the node.
    pub(crate) shutdown: CancellationToken,
    /// Origin of the core's monotonic clock.
    pub(crate) started: Instant,
    /// An atomic import whose source is silent this long is cancelled.
    pub(crate) import_idle_timeout: std::time::Duration,
}

impl NodeState {
    /// The core's `now`: ms since the node started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A call on a slot an atomic migration paused for its flip waits it out (at most the
    /// request timeout), counted; the caller then routes again (the slot may have moved).
    pub(crate) async fn wait_out_slot_pause(&self, slot: slotkv_engine::Slot) {
        if !self.log.outbound.is_paused(slot) {
            return;
        }
        self.stats.served(stats::Served::PausedCall);
        let bound = std::time::Duration::from_millis(self.settings.request_timeout_ms);
        self.log.outbound.wait_resumed(slot, bound).await;
    }

    /// Whether the replica link is up.
    pub(crate) fn master_link_is_up(&self) -> bool {
        self.master_link_up.load(Ordering::Acquire)
    }
}
