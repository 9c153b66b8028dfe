//! `slotkv-cluster`: membership, failure detection, failover and slot ownership.
//!
//! Its heart is a sans-IO state machine ([`core`]): the Redis Cluster protocol with time
//! as an argument, received messages as inputs and messages, config saves and events as
//! outputs. [`sim`] drives many cores on a virtual clock over a seeded, faulty network; a
//! tokio runtime wires the same core to a transport and to the engine.
//!
//! The embedded node around the core: [`runtime`] ([`Node`], its builder, the driver task,
//! the admin API), [`routing`] (the [`Cluster`] data-path handle, forwarding and the
//! MOVED/ASK/TRYAGAIN rules) and [`replication`] (the master's write log, full and partial
//! resync over the bulk channel, WAIT).

pub mod codec;
pub mod core;
pub(crate) mod node_state;
pub(crate) mod replication;
pub(crate) mod routing;
pub(crate) mod runtime;
pub mod sim;
pub mod views;

pub use node_state::stats::NodeStatistics;
pub use node_state::write_log::ReplicationInfo;
pub use routing::protocol::{DownReason, ProtocolError};
pub use routing::{Cluster, ClusterError, Durability, ReadFrom};
pub use runtime::admin::{create_cluster, spread_slots, AdminCallError, NodeMemory};
pub use runtime::{
    ConfigFileError, Node, NodeBuilder, NodeConfig, NodeTransport, StartError, NODES_CONF_FILE,
    NODE_TIMEOUT_MS_MIN,
};
