//! The core's configuration: the protocol's tunables and their defaults.
//!
//! [`Config::default`] is the one home of the protocol defaults (Redis's, except where the
//! README says otherwise); the node builder and the simulator start from it. Every time is
//! in milliseconds of the core's clock (`now`), every field's doc states its range.

use crate::core::formation::FormationConfig;
use crate::core::node::NodeId;

/// Smallest meaningful `node_timeout_ms`: below it PFAIL would fire between two ticks of
/// the cron ([`crate::core::TICK_INTERVAL_MS`]).
pub const NODE_TIMEOUT_MS_MIN: u64 = 100;

/// The node's configuration. Defaults are Redis's except where the README says otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `cluster-node-timeout`: silence after which a node is PFAIL, in ms; at least
    /// [`NODE_TIMEOUT_MS_MIN`] (the runtime refuses less). Default 15 000.
    pub node_timeout_ms: u64,
    /// `cluster-replica-validity-factor`: a replica whose data is older than
    /// `repl_ping_replica_period_ms + node_timeout_ms × factor` does not fail over;
    /// 0 disables the data-age check. Default 10.
    pub replica_validity_factor: u64,
    /// `repl-ping-replica-period` in ms: part of the data-age bound. Default 10 000.
    pub repl_ping_replica_period_ms: u64,
    /// `cluster-migration-barrier`: replicas a master keeps before one may migrate away
    /// (any value; 0 lets the last replica go). Default 1.
    pub migration_barrier: u32,
    /// `cluster-require-full-coverage`: the cluster is down when any slot is uncovered.
    /// Default true.
    pub require_full_coverage: bool,
    /// `cluster-allow-reads-when-down`. Default false.
    pub allow_reads_when_down: bool,
    /// `cluster-allow-replica-migration`. Default true.
    pub allow_replica_migration: bool,
    /// `cluster-replica-no-failover`: this replica never starts an automatic failover.
    /// Default false.
    pub replica_no_failover: bool,
    /// `cluster-blacklist-ttl` in ms: how long a forgotten node may not be re-added.
    /// Default 60 000.
    pub blacklist_ttl_ms: u64,
    /// Manual failover deadline in ms (Redis: 5000); the paused master waits twice this
    /// long. Default 5 000.
    pub manual_failover_timeout_ms: u64,
    /// How long a master must stay orphaned before a replica migrates to it, in ms.
    /// Default 5 000.
    pub replica_migration_delay_ms: u64,
    /// A starting master stays `fail` this long to learn newer config first, in ms
    /// (0: none). Default 2 000.
    pub writable_delay_ms: u64,
    /// Push a new PFAIL to every master at once instead of waiting for random pings.
    /// Default true.
    pub fast_failure_push: bool,
    /// Use Redis's failover timings instead of ours, for comparison runs: PFAIL only once
    /// a PING is unanswered for node_timeout, and an election delay of 500 ms + 0..500 ms
    /// + rank × 1000 ms whatever node_timeout is. Default false.
    pub redis_failover_timing: bool,
    /// Seed of the core's generator (node id when none is given, gossip picks, jitter);
    /// any value, one seed replays one run. Default 0.
    pub rng_seed: u64,
    /// This node's id; `None` draws a random one from `rng_seed`. Default `None`.
    pub myself_id: Option<NodeId>,
    /// Announced IP or host name (at most 255 bytes). Default `127.0.0.1`.
    pub ip: String,
    /// Announced hostname: letters, digits, `-` and `.`, at most 255 bytes; may be empty.
    /// Default empty.
    pub hostname: String,
    /// Client (data) port. Default 6379.
    pub client_port: u16,
    /// Cluster bus port. Default 16379.
    pub bus_port: u16,
    /// The autopilot: form the cluster from seeds, replicas join where lacking (see
    /// [`crate::core::formation`]); `None` (the default) leaves it to the operator.
    pub formation: Option<FormationConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_timeout_ms: 15_000,
            replica_validity_factor: 10,
            repl_ping_replica_period_ms: 10_000,
            migration_barrier: 1,
            require_full_coverage: true,
            allow_reads_when_down: false,
            allow_replica_migration: true,
            replica_no_failover: false,
            blacklist_ttl_ms: 60_000,
            manual_failover_timeout_ms: 5_000,
            replica_migration_delay_ms: 5_000,
            writable_delay_ms: 2_000,
            fast_failure_push: true,
            redis_failover_timing: false,
            rng_seed: 0,
            myself_id: None,
            ip: "127.0.0.1".to_string(),
            hostname: String::new(),
            client_port: 6379,
            bus_port: 16379,
            formation: None,
        }
    }
}
