//! `slotkv-cluster`: membership, failure detection, failover and slot ownership.
//!
//! Its heart is a sans-IO state machine ([`core`]): the Redis Cluster protocol with time
//! as an argument, received messages as inputs and messages, config saves and events as
//! outputs. [`sim`] drives many cores on a virtual clock over a seeded, faulty network; a
//! tokio runtime wires the same core to a transport and to the engine.
//!
//! The embedded node around the core, the tokio shell, in layers that only point down:
//! - `runtime`: [`Node`], its builder, the driver task feeding the core, the bulk-channel
//!   demultiplexer, the admin API ([`create_cluster`]), nodes.conf file IO;
//! - `command`: one file per command (arguments, keys and slot rule, read/write, engine call,
//!   wire form, reply, its [`Cluster`] method) and the registry dispatching them;
//! - `routing`: the [`Cluster`] data-path handle, forwarding and the MOVED/ASK/TRYAGAIN
//!   rules, and [`Cluster::execute_client`], a client protocol's keyed command answered by
//!   those rules (the RESP gateway's entry); `replication`: full and partial resync over the
//!   bulk channel, WAIT;
//! - `slot_migration`: key-by-key MIGRATE over the bulk channel (batches, the target's
//!   import and ack, the resumable plan of a slot's move, the rebalance planner);
//!   [`reshard`] drives it, and [`rebalance`], [`add_node`], [`remove_node`] on top;
//! - `node_state`: what those tasks share (the engine cell, the write log with its stripes,
//!   the published slot map, counters), imported by each and owning none of them.
//!
//! [`views`] renders CLUSTER NODES / SLOTS / SHARDS / INFO from the core; [`codec`] is the
//! one versioned, bounded encoding of every wire format.

pub mod codec;
pub(crate) mod command;
pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod node_state;
pub(crate) mod replication;
pub(crate) mod routing;
pub(crate) mod runtime;
pub mod sim;
pub(crate) mod slot_migration;
pub mod views;

pub use command::client::ClientReply;
pub use core::slots::spread_slots;
pub use node_state::slot_activity::SlotStatistics;
pub use node_state::stats::NodeStatistics;
pub use node_state::write_log::ReplicationInfo;
pub use routing::client::{ClientFlags, ClientRefusal};
pub use routing::protocol::DownReason;
pub use routing::{Cluster, ClusterError, Durability, ReadFrom};
pub use runtime::admin::{create_cluster, AdminCallError, NodeMemory};
pub use runtime::atomic_file::FileError;
pub use runtime::cluster_shape::{
    add_node, rebalance, remove_node, MoveMethod, MoveSummary, RebalanceOptions, ShapeError,
    ShapeReport, DEFAULT_REBALANCE_THRESHOLD_PERCENT, DEFAULT_SHAPE_TIMEOUT,
};
pub use runtime::node_identity::node_identity_name;
pub use runtime::reshard::{
    reshard, ReshardError, ReshardOptions, ReshardProgress, ReshardReport,
    DEFAULT_RESHARD_ATTEMPTS_MAX, DEFAULT_RESHARD_KEYS_PER_BATCH,
};
pub use runtime::snapshot::{
    Persistence, SnapshotError, SnapshotInfo, SnapshotLoadError, LOADED_SNAPSHOT_FILE,
    SNAPSHOT_FILE,
};
pub use runtime::{
    AutopilotOptions, ConfigFileError, Node, NodeBuilder, NodeConfig, NodeTransport, StartError,
    DEFAULT_HANDOVER_TIMEOUT, NODES_CONF_FILE, NODE_TIMEOUT_MS_MIN,
};
pub use slot_migration::atomic_source::{
    SlotMigrationError, SlotMigrationOptions, SlotMigrationPhase, SlotMigrationProgress,
    SlotMigrationReport, DEFAULT_BATCHES_IN_FLIGHT, DEFAULT_PAUSE_AT_DIRTY_KEYS,
    DEFAULT_SLOT_MIGRATION_ACK_TIMEOUT, DEFAULT_SLOT_MIGRATION_BATCH_BYTES,
    DEFAULT_SLOT_MIGRATION_PAUSE_MAX, DEFAULT_TAIL_ROUNDS_MAX, FLIP_SETTLE,
};
pub use slot_migration::atomic_target::DEFAULT_IMPORT_IDLE_TIMEOUT;
pub use slot_migration::jobs::{
    SlotMigrationJob, SlotMigrationJobState, SlotMigrationOperation, StartMigrationsError,
    SLOT_MIGRATION_JOBS_MAX, SLOT_MIGRATION_LOG_MAX,
};
pub use slot_migration::source::{
    MigrateError, MigrateOptions, MigrateReply, DEFAULT_MIGRATE_TIMEOUT_MS,
};
