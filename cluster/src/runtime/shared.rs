//! What the tasks of one node share: the engine, the endpoint, the published slot map, the
//! replication log and the data-path settings. Owned by an `Arc`; the driver alone owns the
//! core.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use slotkv_engine::{Clock, ExportCursor, ExportLimits, Store, StoreConfig, SLOT_COUNT};
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
    /// The engine (replaced when the role changes, see [`StoreCell`]).
    pub store: StoreCell,
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

/// The node's engine, replaceable as the role changes. A replica must hold exactly its
/// master's keys, so, like Redis's `replica-ignore-maxmemory`, it runs on an engine without
/// maxmemory: it never evicts or refuses a replicated write on its own; its master's
/// evictions reach it as deletes. Each full sync starts on such a fresh engine; a promoted
/// replica moves its data into an engine with the configured limit.
pub struct StoreCell {
    current: RwLock<Arc<Store>>,
    /// The configured engine settings (with maxmemory), for a master.
    master_config: StoreConfig,
    clock: Arc<dyn Clock>,
    /// True while the current engine has the configured limit.
    limited: AtomicBool,
}

impl StoreCell {
    /// A cell holding a master's engine with `config`, on `clock`.
    pub fn new(config: StoreConfig, clock: Arc<dyn Clock>) -> StoreCell {
        let store = Store::new(config.clone(), Arc::clone(&clock));
        StoreCell {
            current: RwLock::new(Arc::new(store)),
            master_config: config,
            clock,
            limited: AtomicBool::new(true),
        }
    }

    /// The current engine. Writers take it with their write stripe held, so a swap made
    /// with every stripe held never loses a write.
    pub fn get(&self) -> Arc<Store> {
        Arc::clone(&self.current.read())
    }

    /// Replica side, at the start of a full sync: an empty engine without maxmemory.
    pub fn reset_for_replica(&self) {
        let config = StoreConfig {
            max_memory_bytes: 0,
            ..self.master_config.clone()
        };
        let store = Store::new(config, Arc::clone(&self.clock));
        *self.current.write() = Arc::new(store);
        self.limited.store(false, Ordering::Release);
    }

    /// This node became a master: moves the data into an engine with the configured
    /// maxmemory. Call with every write stripe held (blocking: it copies every key). If the
    /// data does not fit the limit, the unlimited engine stays and a warning says so.
    pub fn restore_limits(&self) {
        if self.limited.load(Ordering::Acquire) {
            return;
        }
        if self.master_config.max_memory_bytes == 0 {
            self.limited.store(true, Ordering::Release);
            return;
        }
        let current = self.get();
        let limited = Store::new(self.master_config.clone(), Arc::clone(&self.clock));
        if let Err(error) = copy_all(&current, &limited) {
            tracing::warn!(%error, "the data of this promoted replica exceeds maxmemory; \
                maxmemory is not enforced on it until it resyncs or restarts");
            return;
        }
        *self.current.write() = Arc::new(limited);
        self.limited.store(true, Ordering::Release);
    }
}

/// Copies every key of `from` into `to`.
fn copy_all(from: &Store, to: &Store) -> Result<(), slotkv_engine::CommandError> {
    for slot in 0..SLOT_COUNT as u16 {
        if from.count_keys_in_slot(slot)? == 0 {
            continue;
        }
        let mut cursor = ExportCursor::start();
        loop {
            let batch = from.export_slot(slot, &cursor, ExportLimits::default())?;
            to.import_batch(&batch.entries)?;
            match batch.next {
                Some(next) => cursor = next,
                None => break,
            }
        }
    }
    Ok(())
}
