//! The embedded node: the tokio runtime around the sans-IO core.
//!
//! [`Node::start`] binds the transport endpoint, restores or creates the core (from
//! `nodes.conf` in the data directory, held under its lock), and spawns three tasks on the
//! host's runtime, all stopped by one cancellation token:
//! - the [`driver`]: owns the core; ticks, bus frames, link events, admin requests; drains
//!   outputs in order; publishes the slot map;
//! - the [`server`]: serves data requests forwarded by peers;
//! - the bulk demultiplexer ([`bulk_demux`]): routes each bulk-channel frame by its stream
//!   tag to the task of that stream kind;
//! - the replication task ([`crate::replication::replica`]): replica sync and apply, master
//!   streams, expiry housekeeping;
//! - the slot-migration stream task ([`crate::slot_migration`]): imports batches sent to
//!   this node and delivers the acks of batches it sent.
//!
//! What the tasks share lives below them, in [`crate::node_state`].
//!
//! [`Node::cluster`] hands out the data-path handle; admin commands and views are in
//! [`admin`]. [`Node::shutdown`] hands a master's slots to a replica ([`hand_over`]), stops
//! the tasks, saves the config and closes the links; dropping a [`Node`] cancels and aborts
//! its tasks too, without a hand-over. With [`Persistence::Snapshot`] a master's keys are
//! saved on shutdown and loaded at start ([`snapshot`]).

pub(crate) mod admin;
pub(crate) mod atomic_file;
pub(crate) mod bulk_demux;
pub(crate) mod cluster_shape;
pub(crate) mod config;
pub(crate) mod driver;
pub(crate) mod hand_over;
pub(crate) mod node_identity;
pub(crate) mod nodes_conf_file;
pub(crate) mod reshard;
pub(crate) mod server;
pub(crate) mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use slotkv_engine::{Store, StoreConfig, SystemClock};
use slotkv_transport::quic::{QuicTransport, TlsConfigError};
use slotkv_transport::tcp::TcpTransport;
use slotkv_transport::{AddressError, Announce, BindError, Endpoint, PeerAddr, Transport};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::core::node::NodeId;
use crate::core::slots::SlotRange;
pub use crate::core::NODE_TIMEOUT_MS_MIN;
use crate::core::{Config, Core, Event, RestoreError};
use crate::node_state::bulk::StreamKind;
use crate::node_state::slot_activity::SlotStatistics;
use crate::node_state::stats::NodeStatistics;
use crate::node_state::write_log::{drop_lost_slots, ReplicationInfo};
use crate::node_state::{
    DataPathSettings, MigrationGates, NodeState, NodeStats, RoutingCell, RoutingTable, StoreCell,
    WriteLog,
};
use crate::replication::master::MasterStreams;
use crate::replication::replica::ReplicationTask;
use crate::routing::Cluster;
use crate::slot_migration::jobs::SlotMigrationJobs;
use crate::slot_migration::{run_migration_stream, MigrationHub};
use atomic_file::FileError;
use bulk_demux::{run_bulk_demux, BulkRoutes};
pub use config::{
    AutopilotOptions, NodeBuilder, NodeConfig, NodeTransport, DEFAULT_HANDOVER_TIMEOUT,
};
use driver::{Driver, DriverRequest, ADMIN_QUEUE_MAX, EVENT_QUEUE_MAX};
pub use nodes_conf_file::ConfigFileError;
use nodes_conf_file::{load, ConfigFileLock};
use snapshot::{
    load_snapshot, Persistence, SnapshotError, SnapshotInfo, SnapshotLoadError,
    LOADED_SNAPSHOT_FILE, SNAPSHOT_FILE,
};

/// Name of the persisted configuration in the data directory.
pub const NODES_CONF_FILE: &str = "nodes.conf";

/// Why a node could not start. Nothing is left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration value is out of range.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// The bind address is not valid.
    #[error("invalid bind address: {0}")]
    Address(#[from] AddressError),
    /// The endpoint could not listen.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The QUIC TLS settings are unusable.
    #[error("QUIC transport: {0}")]
    Tls(#[from] TlsConfigError),
    /// nodes.conf could not be read or locked.
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    /// The saved nodes.conf cannot start a node.
    #[error("cannot restore from nodes.conf: {0}")]
    Restore(#[from] RestoreError),
    /// The data snapshot found at start is unusable (corrupt, truncated, of another node
    /// or a newer format); the message names the file and how to start anyway.
    #[error(transparent)]
    Snapshot(#[from] SnapshotLoadError),
    /// Per-node identity is on and this node's certificate does not name its node id or
    /// announced host; the message says which and how to issue it.
    #[error("{0}")]
    Identity(String),
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running cluster node inside this process. See the module docs.
pub struct Node {
    shared: Arc<NodeState>,
    requests: mpsc::Sender<DriverRequest>,
    events: broadcast::Sender<Event>,
    tasks: Vec<JoinHandle<()>>,
    streams: Arc<MasterStreams>,
    /// Batches this node migrates, awaiting their acks.
    migration: Arc<MigrationHub>,
    /// Atomic migrations running in the background, and the finished ones kept.
    migration_jobs: Arc<SlotMigrationJobs>,
    /// The data snapshot's path, when [`Persistence::Snapshot`] is on.
    snapshot_path: Option<PathBuf>,
    /// One snapshot save at a time (they share the temp file).
    snapshot_saving: tokio::sync::Mutex<()>,
    /// Bound of the shutdown hand-over (zero: none).
    handover_timeout: std::time::Duration,
    _lock: Option<ConfigFileLock>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Node")
            .field("address", self.shared.endpoint.local_addr())
            .finish()
    }
}

fn build_transport(transport: &NodeTransport) -> Result<Arc<dyn Transport>, StartError> {
    Ok(match transport {
        NodeTransport::Tcp(config) => Arc::new(TcpTransport::new(config.clone())),
        NodeTransport::Quic(config) => Arc::new(QuicTransport::new(config.clone())?),
        NodeTransport::Custom(transport) => Arc::clone(transport),
    })
}

fn split_address(address: &PeerAddr) -> Result<(String, u16), StartError> {
    address
        .host_and_port()
        .map(|(host, port)| (host.to_string(), port))
        .ok_or_else(|| StartError::Config(format!("bound address {address} is not host:port")))
}

/// What the endpoint announces instead of the bound address. A wildcard bind (`0.0.0.0`,
/// `[::]`) names no address a peer could dial, so it needs an announced host.
fn announce_for(config: &NodeConfig, bind: &PeerAddr) -> Result<Announce, StartError> {
    let wildcard = bind
        .host_and_port()
        .is_some_and(|(host, _)| host == "0.0.0.0" || host == "::");
    if wildcard && config.announce_host.is_none() {
        return Err(StartError::Config(format!(
            "bound to the wildcard address {bind}: set announce_host to the address peers \
             should dial"
        )));
    }
    Ok(Announce {
        host: config.announce_host.clone(),
        port: config.announce_port,
    })
}

fn core_config(config: &NodeConfig, host: String, port: u16) -> Result<Config, StartError> {
    let formation = config
        .autopilot
        .as_ref()
        .map(AutopilotOptions::to_core)
        .transpose()
        .map_err(StartError::Config)?;
    let seed = config.rng_seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        nanos ^ (u64::from(port) << 48)
    });
    Ok(Config {
        node_timeout_ms: config.node_timeout_ms,
        replica_validity_factor: config.replica_validity_factor,
        migration_barrier: config.migration_barrier,
        require_full_coverage: config.require_full_coverage,
        allow_reads_when_down: config.allow_reads_when_down,
        rng_seed: seed,
        myself_id: config.node_id,
        ip: host,
        client_port: config.client_port.unwrap_or(port),
        bus_port: port,
        formation,
        ..Config::default()
    })
}

/// The engine, with the node's memory limit and policy, on the system clock.
fn new_store(config: &NodeConfig) -> StoreCell {
    let store_config = StoreConfig {
        max_memory_bytes: config.max_memory_bytes,
        eviction_policy: config.eviction_policy,
        ..StoreConfig::default()
    };
    StoreCell::new(store_config, Arc::new(SystemClock))
}

/// What the data directory yields: nodes.conf's path, its lock, its saved content.
type DataDir = (
    Option<PathBuf>,
    Option<ConfigFileLock>,
    Option<crate::core::NodesConf>,
);

/// Locks and loads nodes.conf from the data directory, if one is configured (file IO: run
/// it on the blocking pool).
fn open_data_dir(data_dir: Option<&PathBuf>, file_name: &str) -> Result<DataDir, StartError> {
    let Some(directory) = data_dir else {
        return Ok((None, None, None));
    };
    std::fs::create_dir_all(directory).map_err(|source| StartError::DataDir {
        path: directory.clone(),
        source,
    })?;
    let path = directory.join(file_name);
    let lock = ConfigFileLock::acquire(&path)?;
    let saved = load(&path)?;
    Ok((Some(path), Some(lock), saved))
}

/// The data snapshot's path when the config enables it; a snapshot without a data
/// directory is refused.
fn snapshot_path(config: &NodeConfig) -> Result<Option<PathBuf>, StartError> {
    match (config.persistence, &config.data_dir) {
        (Persistence::None, _) => Ok(None),
        (Persistence::Snapshot, Some(directory)) => Ok(Some(directory.join(SNAPSHOT_FILE))),
        (Persistence::Snapshot, None) => Err(StartError::Config(
            "snapshot persistence needs a data_dir to keep the snapshot in".to_string(),
        )),
    }
}

/// Renames the snapshot at `path` to [`LOADED_SNAPSHOT_FILE`] (and fsyncs the directory),
/// so no later start loads it again.
fn set_aside(path: &Path) -> Result<(), FileError> {
    let consumed = path.with_file_name(LOADED_SNAPSHOT_FILE);
    std::fs::rename(path, &consumed).map_err(atomic_file::io_failure(path, "set aside"))?;
    atomic_file::sync_dir(atomic_file::parent_dir(path))
}

/// The data snapshot at start. A master (`load`) loads it into `store` for node `node`; a
/// replica, which resyncs from its master, does not. Either way the file is then set aside
/// ([`set_aside`]), so an older copy can never be loaded by a later start. Returns whether
/// data was loaded (false: no snapshot, or a replica).
async fn take_snapshot_at_start(
    path: &Path,
    store: &StoreCell,
    node: NodeId,
    load: bool,
) -> Result<bool, StartError> {
    let (path, engine, clock) = (path.to_path_buf(), store.get(), store.clock());
    let directory = atomic_file::parent_dir(&path).to_path_buf();
    let taking = tokio::task::spawn_blocking(move || {
        if !load {
            if path.exists() {
                set_aside(&path)?;
                tracing::info!(file = %path.display(), "a replica sets its data snapshot \
                    aside without loading it: it resyncs from its master");
            }
            return Ok(false);
        }
        let Some(loaded) = load_snapshot(&path, &engine, clock.as_ref(), node)? else {
            return Ok(false);
        };
        set_aside(&path)?;
        tracing::info!(file = %path.display(), keys = loaded.keys, expired = loaded.expired,
            bytes = loaded.bytes, created_unix_ms = loaded.created_unix_ms,
            ms = loaded.duration.as_millis() as u64, "loaded the data snapshot");
        Ok::<bool, SnapshotLoadError>(true)
    });
    let loaded = taking.await.map_err(|error| StartError::DataDir {
        path: directory,
        source: std::io::Error::other(error.to_string()),
    })??;
    Ok(loaded)
}

impl Node {
    /// A builder for a node using `transport`.
    pub fn builder(transport: NodeTransport) -> NodeBuilder {
        NodeBuilder::new(transport)
    }

    /// Starts a node on the current tokio runtime (see the module docs).
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        if config.node_timeout_ms < NODE_TIMEOUT_MS_MIN {
            return Err(StartError::Config(format!(
                "node_timeout_ms must be at least {NODE_TIMEOUT_MS_MIN}"
            )));
        }
        if let Some(autopilot) = &config.autopilot {
            autopilot.to_core().map_err(StartError::Config)?;
        }
        let snapshot_path = snapshot_path(&config)?;
        let data_dir = config.data_dir.clone();
        let file_name = config.config_file_name.clone();
        let opened =
            tokio::task::spawn_blocking(move || open_data_dir(data_dir.as_ref(), &file_name)).await;
        let (config_path, lock, saved) = opened.map_err(|error| StartError::DataDir {
            path: config.data_dir.clone().unwrap_or_default(),
            source: std::io::Error::other(error.to_string()),
        })??;
        let transport = build_transport(&config.transport)?;
        let bind = PeerAddr::new(config.bind_address.clone())?;
        let announce = announce_for(&config, &bind)?;
        let (endpoint, incoming) =
            Endpoint::bind_announced(transport, bind, announce, config.endpoint.clone()).await?;
        // The announced address is the node's identity on the bus, in streams and in views.
        let local = endpoint.local_addr().clone();
        let (host, port) = split_address(&local)?;
        let core_config = core_config(&config, host, port)?;
        let seed = core_config.rng_seed;
        let restored = saved.is_some();
        let mut core = match saved {
            Some(saved) => Core::restore(core_config, saved, 0)?,
            None => Core::new(core_config, 0),
        };
        if let Err(problem) =
            node_identity::check_own_identity(&config.transport, &core.myself_id(), local.host())
        {
            endpoint.close().await;
            return Err(StartError::Identity(problem));
        }
        let store = new_store(&config);
        let data_loaded = match &snapshot_path {
            Some(path) => {
                let master = core.my_master().is_none();
                match take_snapshot_at_start(path, &store, core.myself_id(), master).await {
                    Ok(loaded) => loaded,
                    Err(error) => {
                        // Release the address before returning, as a shutdown does.
                        endpoint.close().await;
                        return Err(error);
                    }
                }
            }
            None => false,
        };
        if restored && !data_loaded {
            // The engine came back empty (no snapshot): a master restored with slots
            // withholds them until a replica holding the data takes over (the one place
            // that decides whether the engine came back with data).
            core.note_restarted_without_data(0);
        }
        let shared = Arc::new(NodeState {
            store,
            routing: RoutingCell::new(RoutingTable::from_core(&core, &local)),
            endpoint,
            log: WriteLog::new(0, config.backlog_bytes_max),
            master_link_up: AtomicBool::new(false),
            settings: DataPathSettings {
                request_timeout_ms: config.request_timeout_ms,
                ..DataPathSettings::default()
            },
            stats: NodeStats::default(),
            gates: MigrationGates::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            import_idle_timeout: config.import_idle_timeout,
        });
        if data_loaded {
            // Keys of slots another node owns (an atomic import this restart cut short) are
            // dropped before anything is served or shipped to a replica.
            let foreign = core.foreign_slot_ranges();
            let dropped = drop_lost_slots(&shared.log, &shared.store, &foreign);
            if dropped > 0 {
                tracing::info!(keys = dropped, ranges = ?foreign, "dropped the loaded keys of \
                    slots another node owns (a partial copy of an interrupted import)");
            }
        }
        let (request_sender, requests) = mpsc::channel(ADMIN_QUEUE_MAX);
        let (events, _) = broadcast::channel(EVENT_QUEUE_MAX);
        let (role, role_receiver) = watch::channel(core.my_master());
        let replication = ReplicationTask::new(Arc::clone(&shared), seed);
        let driver = Driver {
            core,
            shared: Arc::clone(&shared),
            config_path,
            requests,
            bus: incoming.bus,
            link_events: incoming.events,
            role,
            events: events.clone(),
            unsaved: None,
            pending_reply: None,
            lost_slots: Vec::new(),
            streams: replication.master_streams(),
            pending_hand_over: None,
        };
        let streams = replication.master_streams();
        let mut bulk_routes = BulkRoutes::default();
        let replication_frames = bulk_routes.register(StreamKind::Replication);
        let migration_frames = bulk_routes.register(StreamKind::SlotMigration);
        let migration = Arc::new(MigrationHub::default());
        let migration_jobs = Arc::new(SlotMigrationJobs::default());
        let tasks = vec![
            tokio::spawn(driver.run()),
            tokio::spawn(run_bulk_demux(
                Arc::clone(&shared),
                bulk_routes,
                incoming.bulk,
            )),
            tokio::spawn(replication.run(role_receiver, replication_frames)),
            tokio::spawn(run_migration_stream(
                Arc::clone(&shared),
                Arc::clone(&migration),
                Arc::new(admin::DriverAdmin(request_sender.clone())),
                Arc::clone(&migration_jobs),
                migration_frames,
            )),
            tokio::spawn(server::run_server(Arc::clone(&shared), incoming.requests)),
        ];
        tracing::info!(address = %local, data_loaded, "slotkv node started");
        Ok(Node {
            shared,
            requests: request_sender,
            events,
            tasks,
            streams,
            migration,
            migration_jobs,
            snapshot_path,
            snapshot_saving: tokio::sync::Mutex::new(()),
            handover_timeout: config.handover_timeout,
            _lock: lock,
        })
    }

    /// A data-path handle on the whole cluster through this node.
    pub fn cluster(&self) -> Cluster {
        Cluster::new(Arc::clone(&self.shared))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.routing.table().myself
    }

    /// The address peers reach this node at.
    pub fn bus_address(&self) -> &PeerAddr {
        self.shared.endpoint.local_addr()
    }

    /// Cluster events (role, slot owners, failures, state) from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The local engine (for inspection: key counts, memory). A replica's engine is replaced
    /// at each full sync and on promotion, so take it anew rather than keeping it.
    pub fn store(&self) -> Arc<Store> {
        self.shared.store.get()
    }

    /// This node's replication position, counters and replicas.
    pub fn replication_info(&self) -> ReplicationInfo {
        ReplicationInfo {
            sync_in_progress: self.shared.store.is_loading(),
            master_streams: self.streams.running_count(),
            ..self.shared.log.info()
        }
    }

    /// The peers this node keeps outbound links to (open or reconnecting), in address
    /// order: a forgotten, long-failed or re-addressed peer's are closed.
    pub fn linked_peers(&self) -> Vec<PeerAddr> {
        self.shared.endpoint.linked_peers()
    }

    /// The transport links this node has established, both directions and every channel
    /// (bus, bulk, requests), oldest first, with what waits to be sent on each outbound one:
    /// CLUSTER LINKS lists the bus links.
    pub fn links(&self) -> Vec<slotkv_transport::LinkInfo> {
        self.shared.endpoint.links()
    }

    /// Counters of input this node refused or dropped (malformed requests and stream frames,
    /// unroutable bulk frames, refused connections and links closed on a peer's fault).
    /// Malformed bus messages are counted by the core.
    pub fn stats(&self) -> NodeStatistics {
        NodeStatistics {
            links: self.shared.endpoint.statistics(),
            ..self.shared.stats.snapshot()
        }
    }

    /// Per-slot statistics of the slots of `range` on this node, in slot order: keys and
    /// bytes held now, reads and writes executed since the node started (see
    /// [`SlotStatistics`]). Empty for an invalid range. Each slot's figures are read
    /// under that slot's lock only.
    pub fn slot_statistics(&self, range: SlotRange) -> Vec<SlotStatistics> {
        if !range.is_valid() {
            return Vec::new();
        }
        let store = self.shared.store.get();
        let activity = self.shared.store.activity();
        range
            .slots()
            .map(|slot| {
                let (reads, writes) = activity.of(slot);
                SlotStatistics {
                    slot,
                    keys: store.count_keys_in_slot(slot).unwrap_or(0),
                    bytes: store.slot_memory_bytes(slot).unwrap_or(0),
                    reads,
                    writes,
                }
            })
            .collect()
    }

    /// The state the node's tasks share (for in-crate tests of single tasks).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> Arc<NodeState> {
        Arc::clone(&self.shared)
    }

    /// Writes a snapshot of this node's keys now ([`Persistence::Snapshot`] only), replacing
    /// the previous one; the next start loads it. Writes continue meanwhile: each key is
    /// saved as it is when its slot is reached. One save runs at a time.
    pub async fn save_snapshot(&self) -> Result<SnapshotInfo, SnapshotError> {
        let path = self
            .snapshot_path
            .clone()
            .ok_or(SnapshotError::NotEnabled)?;
        let _one_at_a_time = self.snapshot_saving.lock().await;
        let (engine, clock, node) = (
            self.shared.store.get(),
            self.shared.store.clock(),
            self.id(),
        );
        tokio::task::spawn_blocking(move || {
            snapshot::save_snapshot(&path, &engine, clock.as_ref(), node)
        })
        .await
        .map_err(|error| SnapshotError::Task(error.to_string()))?
    }

    /// On shutdown with [`Persistence::Snapshot`]: a master stops its writes and saves its
    /// keys; a replica saves nothing (it resyncs from its master when it returns).
    async fn save_snapshot_on_shutdown(&self) {
        if self.snapshot_path.is_none() {
            return;
        }
        if !self.shared.routing.table().myself_is_master {
            tracing::info!("a replica writes no data snapshot on shutdown");
            return;
        }
        self.shared.log.stop_writes();
        match self.save_snapshot().await {
            Ok(info) => tracing::info!(file = %info.path.display(), keys = info.keys,
                bytes = info.bytes, ms = info.duration.as_millis() as u64,
                "saved the data snapshot"),
            Err(error) => tracing::error!(%error, "could not save the data snapshot on shutdown; \
                the previous one, if any, stays"),
        }
    }

    /// Stops the node cleanly. A master owning slots with a healthy replica first hands
    /// them over (bounded by [`NodeBuilder::handover_timeout`]; see the `hand_over` module): it
    /// pauses writes (answered TRYAGAIN, which the [`Cluster`] handle retries and follows
    /// to the new owner), waits until a replica acknowledged every write, asks it to take
    /// over and waits until it owns the slots. Then it stops its tasks, saves nodes.conf,
    /// closes every link and the listener. Returns only once the listener's socket is
    /// released and every link and task of the node has ended (and, with
    /// [`Persistence::Snapshot`], a master that kept its slots refused further writes with
    /// [`ClusterError::Shutdown`](crate::ClusterError::Shutdown) and saved its keys), so a
    /// node can be started on the same address and data directory at once.
    pub async fn shutdown(mut self) {
        hand_over::hand_over_before_shutdown(&self).await;
        self.shared.shutdown.cancel();
        for task in self.tasks.drain(..) {
            if let Err(error) = task.await {
                tracing::warn!(%error, "a node task ended abnormally");
            }
        }
        self.shared.endpoint.close().await;
        self.save_snapshot_on_shutdown().await;
        tracing::info!(address = %self.shared.endpoint.local_addr(), "slotkv node stopped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
        self.shared.endpoint.shutdown();
    }
}
