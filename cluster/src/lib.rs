//! `slotkv-cluster`: membership, failure detection, failover and slot ownership.
//!
//! Its heart is a sans-IO state machine ([`core`]): the Redis Cluster protocol with time
//! as an argument, received messages as inputs and messages, config saves and events as
//! outputs. [`sim`] drives many cores on a virtual clock over a seeded, faulty network; a
//! tokio runtime wires the same core to a transport and to the engine.

pub mod config_file;
pub mod core;
pub mod replication;
pub mod routing;
pub mod runtime;
pub mod sim;

pub use routing::{Cluster, ClusterError, Durability, ReadFrom};
pub use runtime::{Node, NodeBuilder, NodeConfig, NodeTransport, StartError};
