//! # slotkv
//!
//! An embeddable distributed in-memory cache. Each host process runs a cluster node
//! inside itself; the nodes shard keys over 16384 hash slots exactly as Redis Cluster
//! does and talk over a pluggable transport (TCP, QUIC or an in-memory simulated network).
//!
//! This crate is the facade: it re-exports the public API of the member crates. A host
//! builds a [`Node`] with [`Node::builder`], starts it on its tokio runtime, and uses the
//! [`Cluster`] handle from [`Node::cluster`] for `get`/`set`/... on the whole cluster;
//! [`create_cluster`] forms a cluster of in-process nodes like `redis-cli --cluster create`.
//! `cargo run --release --example demo` shows all of it.
//!
//! | crate | part |
//! |---|---|
//! | [`engine`] | the per-slot in-memory store and slot math |
//! | [`transport`] | the `Transport` trait and its TCP, QUIC and simulated implementations |
//! | [`cluster`] | the sans-IO cluster core and its runtime |
//! | `resp` (feature `resp`) | the RESP gateway: a node served to Redis clients and tools |

pub use slotkv_cluster as cluster;
pub use slotkv_engine as engine;
pub use slotkv_transport as transport;

#[cfg(feature = "resp")]
pub use slotkv_resp as resp;

pub use slotkv_engine::key_slot;

pub use slotkv_cluster::{create_cluster, AdminCallError, NodeMemory};
pub use slotkv_cluster::{
    AutopilotOptions, Cluster, ClusterError, Durability, Node, NodeBuilder, NodeConfig,
    NodeTransport, Persistence, ReadFrom, SnapshotError, SnapshotInfo, StartError,
};
pub use slotkv_engine::{
    CommandError, EvictionPolicy, ExpireCondition, ExpireTime, GetExExpiry, SetCondition,
    SetExpiry, SetOptions, SetOutcome,
};
