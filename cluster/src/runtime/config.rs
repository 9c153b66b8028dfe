//! The node's configuration and its builder.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use slotkv_engine::EvictionPolicy;
use slotkv_transport::quic::QuicConfig;
use slotkv_transport::tcp::TcpConfig;
use slotkv_transport::{EndpointConfig, Transport};

use crate::core::node::NodeId;
use crate::node_state::write_log::DEFAULT_BACKLOG_BYTES_MAX;
use crate::node_state::DEFAULT_REQUEST_TIMEOUT_MS;
use crate::runtime::snapshot::Persistence;
use crate::runtime::{Node, StartError};

/// How the node links to its peers.
#[derive(Clone)]
pub enum NodeTransport {
    /// TCP with the HMAC cluster handshake.
    Tcp(TcpConfig),
    /// QUIC with mutual TLS.
    Quic(QuicConfig),
    /// Any other [`Transport`] (for example one node of a `slotkv_transport::sim::SimNet`).
    Custom(Arc<dyn Transport>),
}

impl std::fmt::Debug for NodeTransport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            NodeTransport::Tcp(_) => "Tcp",
            NodeTransport::Quic(_) => "Quic",
            NodeTransport::Custom(_) => "Custom",
        })
    }
}

/// Everything a node needs to start. Build it with [`Node::builder`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node id; `None` draws one (or reuses the persisted one).
    pub node_id: Option<NodeId>,
    /// Address to listen on, `host:port` (port 0 picks one). On the simulated network the
    /// address is the node's name and must still have the `name:port` shape, since the core
    /// announces a host and a bus port.
    pub bind_address: String,
    /// Host peers should use to reach this node; default: the host part of the bound address.
    pub announce_host: Option<String>,
    /// Port peers should use to reach this node (address translation, container port
    /// mappings); default: the bound port.
    pub announce_port: Option<u16>,
    /// Client (RESP) port announced in gossip and shown by CLUSTER NODES / SLOTS / SHARDS
    /// and redirections; default: the bus port (a node without a RESP gateway).
    pub client_port: Option<u16>,
    /// The transport.
    pub transport: NodeTransport,
    /// `cluster-node-timeout`, in ms (at least 100).
    pub node_timeout_ms: u64,
    /// Directory of the persisted `nodes.conf` (and its lock, and the data snapshot);
    /// `None`: not persisted.
    pub data_dir: Option<PathBuf>,
    /// File name of the persisted cluster configuration in `data_dir` (Redis's
    /// `cluster-config-file`; default [`crate::NODES_CONF_FILE`]).
    pub config_file_name: String,
    /// Whether the keys persist across restarts (default [`Persistence::None`]); a
    /// snapshot needs `data_dir`.
    pub persistence: Persistence,
    /// Engine memory limit in bytes; 0: none.
    pub max_memory_bytes: u64,
    /// What a write does at the memory limit.
    pub eviction_policy: EvictionPolicy,
    /// `cluster-replica-validity-factor` (0: any replica may fail over).
    pub replica_validity_factor: u64,
    /// `cluster-migration-barrier`.
    pub migration_barrier: u32,
    /// `cluster-require-full-coverage`.
    pub require_full_coverage: bool,
    /// `cluster-allow-reads-when-down`.
    pub allow_reads_when_down: bool,
    /// Timeout of a forwarded data request, in ms.
    pub request_timeout_ms: u64,
    /// Replication backlog bound, in bytes of keys and values.
    pub backlog_bytes_max: usize,
    /// Seed of the core's generator; default: derived from the clock and address.
    pub rng_seed: Option<u64>,
    /// Bounds of the transport endpoint.
    pub endpoint: EndpointConfig,
    /// Longest the shutdown of a master waits for a replica to take its slots over (the
    /// replica catching up, then the election); `Duration::ZERO` stops without a
    /// hand-over. Default [`DEFAULT_HANDOVER_TIMEOUT`].
    pub handover_timeout: Duration,
    /// An atomic slot import whose source sends nothing for this long is cancelled here
    /// (the source died or was cut off). Default
    /// [`crate::DEFAULT_IMPORT_IDLE_TIMEOUT`] (15 s).
    pub import_idle_timeout: Duration,
    /// The autopilot: the cluster forms itself from seeds and late nodes join where a
    /// master lacks replicas (`None`, the default: formed by the admin API).
    pub autopilot: Option<AutopilotOptions>,
}

/// The autopilot's settings ([`NodeBuilder::autopilot`], [`NodeBuilder::seeds`]); see
/// `slotkv_cluster::core::formation` for what it decides and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutopilotOptions {
    /// Bus addresses (`host:port`) of nodes to meet while this node knows no other; every
    /// node may list the same ones, its own included. At most
    /// [`crate::core::formation::SEEDS_MAX`].
    pub seeds: Vec<String>,
    /// Nodes that must be present before the cluster forms, and the fewest masters it
    /// forms with (at least 1). Default 3.
    pub min_masters: usize,
    /// Replicas wanted per master (at most
    /// [`crate::core::formation::REPLICAS_PER_MASTER_MAX`]). Default 1.
    pub replicas_per_master: usize,
    /// Membership must stay unchanged this long before the cluster forms or a late node
    /// joins (so a deployment's processes starting together land in one plan). Default
    /// 2 s.
    pub settle: Duration,
    /// Report each decision (`Event::Autopilot` on `subscribe_events`, and the log)
    /// without acting on it. Default false.
    pub dry_run: bool,
}

impl Default for AutopilotOptions {
    fn default() -> Self {
        let core = crate::core::formation::FormationConfig::default();
        AutopilotOptions {
            seeds: Vec::new(),
            min_masters: core.min_masters,
            replicas_per_master: core.replicas_per_master,
            settle: Duration::from_millis(core.settle_ms),
            dry_run: core.dry_run,
        }
    }
}

impl AutopilotOptions {
    /// The core's form of these settings; a seed that is not `host:port` or a bound
    /// out of range is an error naming it.
    pub(crate) fn to_core(&self) -> Result<crate::core::formation::FormationConfig, String> {
        let seeds = self
            .seeds
            .iter()
            .map(|seed| {
                seed.rsplit_once(':')
                    .and_then(|(host, port)| {
                        let host = host.trim_start_matches('[').trim_end_matches(']');
                        Some((host.to_string(), port.parse::<u16>().ok()?))
                    })
                    .filter(|(host, port)| !host.is_empty() && *port != 0)
                    .ok_or_else(|| format!("autopilot seed {seed:?} is not host:port"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let config = crate::core::formation::FormationConfig {
            seeds,
            min_masters: self.min_masters,
            replicas_per_master: self.replicas_per_master,
            settle_ms: u64::try_from(self.settle.as_millis()).unwrap_or(u64::MAX),
            dry_run: self.dry_run,
        };
        config.validate().map_err(|error| error.to_string())?;
        Ok(config)
    }
}

/// Default bound of the shutdown hand-over: an election takes a few round trips, the
/// catching up of a replica that keeps up with the writes a few milliseconds; at most
/// the `Cluster` handle's TRYAGAIN retries (about 3 s) plus a margin.
pub const DEFAULT_HANDOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds a [`NodeConfig`] and starts the node.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    config: NodeConfig,
}

impl NodeBuilder {
    /// A builder with Redis's defaults, listening on `127.0.0.1:0`.
    pub fn new(transport: NodeTransport) -> NodeBuilder {
        // The protocol's defaults have one home, the core's config; the data path's, its
        // settings.
        let protocol = crate::core::Config::default();
        let engine = slotkv_engine::StoreConfig::default();
        NodeBuilder {
            config: NodeConfig {
                node_id: None,
                bind_address: "127.0.0.1:0".to_string(),
                announce_host: None,
                announce_port: None,
                client_port: None,
                transport,
                node_timeout_ms: protocol.node_timeout_ms,
                data_dir: None,
                config_file_name: crate::runtime::NODES_CONF_FILE.to_string(),
                persistence: Persistence::None,
                max_memory_bytes: engine.max_memory_bytes,
                eviction_policy: engine.eviction_policy,
                replica_validity_factor: protocol.replica_validity_factor,
                migration_barrier: protocol.migration_barrier,
                require_full_coverage: protocol.require_full_coverage,
                allow_reads_when_down: protocol.allow_reads_when_down,
                request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
                backlog_bytes_max: DEFAULT_BACKLOG_BYTES_MAX,
                rng_seed: None,
                endpoint: EndpointConfig::default(),
                handover_timeout: DEFAULT_HANDOVER_TIMEOUT,
                import_idle_timeout:
                    crate::slot_migration::atomic_target::DEFAULT_IMPORT_IDLE_TIMEOUT,
                autopilot: None,
            },
        }
    }

    /// Sets the node id.
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.config.node_id = Some(id);
        self
    }

    /// Sets the listen address.
    pub fn bind(mut self, address: impl Into<String>) -> Self {
        self.config.bind_address = address.into();
        self
    }

    /// Sets the announced host: the node is known to its peers (bus, streams, requests,
    /// views) by this host instead of the bound one. Required with a wildcard bind.
    pub fn announce_host(mut self, host: impl Into<String>) -> Self {
        self.config.announce_host = Some(host.into());
        self
    }

    /// Sets the announced port (default: the bound port).
    pub fn announce_port(mut self, port: u16) -> Self {
        self.config.announce_port = Some(port);
        self
    }

    /// Sets the client (RESP) port this node announces: where a RESP gateway serves it
    /// (`ip:port@cport` in CLUSTER NODES, MOVED and ASK name it). Default: the bus port.
    pub fn client_port(mut self, port: u16) -> Self {
        self.config.client_port = Some(port);
        self
    }

    /// Sets `cluster-node-timeout` in ms.
    pub fn node_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.config.node_timeout_ms = timeout_ms;
        self
    }

    /// Persists nodes.conf in `directory`.
    pub fn data_dir(mut self, directory: impl Into<PathBuf>) -> Self {
        self.config.data_dir = Some(directory.into());
        self
    }

    /// Sets the file name of the persisted configuration in the data directory (Redis's
    /// `cluster-config-file`), so several nodes can share one directory.
    pub fn config_file_name(mut self, name: impl Into<String>) -> Self {
        self.config.config_file_name = name.into();
        self
    }

    /// Sets whether the keys persist across restarts. [`Persistence::Snapshot`] writes
    /// `data.snapshot` in the data directory when a master shuts down (and on
    /// [`Node::save_snapshot`]) and loads it at the next start; it needs
    /// [`NodeBuilder::data_dir`]. Off by default.
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.config.persistence = persistence;
        self
    }

    /// Sets maxmemory (bytes) and its policy.
    pub fn max_memory(mut self, bytes: u64, policy: EvictionPolicy) -> Self {
        self.config.max_memory_bytes = bytes;
        self.config.eviction_policy = policy;
        self
    }

    /// Sets `cluster-replica-validity-factor`.
    pub fn replica_validity_factor(mut self, factor: u64) -> Self {
        self.config.replica_validity_factor = factor;
        self
    }

    /// Sets `cluster-migration-barrier`.
    pub fn migration_barrier(mut self, barrier: u32) -> Self {
        self.config.migration_barrier = barrier;
        self
    }

    /// Sets `cluster-require-full-coverage`.
    pub fn require_full_coverage(mut self, required: bool) -> Self {
        self.config.require_full_coverage = required;
        self
    }

    /// Sets `cluster-allow-reads-when-down`.
    pub fn allow_reads_when_down(mut self, allowed: bool) -> Self {
        self.config.allow_reads_when_down = allowed;
        self
    }

    /// Sets the forwarded request timeout in ms.
    pub fn request_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.config.request_timeout_ms = timeout_ms;
        self
    }

    /// Sets the replication backlog bound in bytes.
    pub fn backlog_bytes_max(mut self, bytes: usize) -> Self {
        self.config.backlog_bytes_max = bytes;
        self
    }

    /// Sets the core's seed.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.config.rng_seed = Some(seed);
        self
    }

    /// Sets the endpoint bounds.
    pub fn endpoint(mut self, endpoint: EndpointConfig) -> Self {
        self.config.endpoint = endpoint;
        self
    }

    /// Sets the bound of the shutdown hand-over (`Duration::ZERO`: stop without one).
    pub fn handover_timeout(mut self, timeout: Duration) -> Self {
        self.config.handover_timeout = timeout;
        self
    }

    /// Sets how long an atomic slot import may hear nothing from its source before this
    /// node cancels it (at least 1 s is sensible: the source is silent while the target
    /// replicates a batch).
    pub fn import_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.import_idle_timeout = timeout;
        self
    }

    /// Turns the autopilot on with these settings: the cluster forms itself, no
    /// operator needed (see [`AutopilotOptions`]).
    pub fn autopilot(mut self, options: AutopilotOptions) -> Self {
        self.config.autopilot = Some(options);
        self
    }

    /// Turns the autopilot on (with its defaults unless [`NodeBuilder::autopilot`] set
    /// them) and sets the seeds to meet: bus addresses, `host:port`.
    pub fn seeds<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let options = self
            .config
            .autopilot
            .get_or_insert_with(AutopilotOptions::default);
        options.seeds = seeds.into_iter().map(Into::into).collect();
        self
    }

    /// The configuration built so far.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Starts the node on the current tokio runtime.
    pub async fn start(self) -> Result<Node, StartError> {
        Node::start(self.config).await
    }
}
