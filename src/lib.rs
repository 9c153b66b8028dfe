//! # slotkv
//!
//! An embeddable distributed in-memory cache. Each host process runs a cluster node
//! inside itself; the nodes shard keys over 16384 hash slots exactly as Redis Cluster
//! does and talk over a pluggable transport (TCP, QUIC or an in-memory simulated network).
//!
//! This crate is the facade: it re-exports the public API of the member crates.
//!
//! | crate | part |
//! |---|---|
//! | [`engine`] | the per-slot in-memory store and slot math |
//! | [`transport`] | the `Transport` trait and its TCP, QUIC and simulated implementations |
//! | [`cluster`] | the sans-IO cluster core and its runtime |

pub use slotkv_cluster as cluster;
pub use slotkv_engine as engine;
pub use slotkv_transport as transport;

pub use slotkv_engine::key_slot;
