//! `slotkv-resp`: the RESP gateway of a slotkv node, so the Redis tools and cluster
//! clients people already use (redis-cli, redis-benchmark, redis-py, redis-rs) drive it, and
//! `kvnode` (`src/bin/kvnode.rs`), a node as a process of its own.
//!
//! The files follow the path of a request:
//! - [`limits`]: the named bounds of one client's input (Redis's defaults);
//! - [`frame`]: the incremental parser of multibulk and inline requests;
//! - [`reply`]: replies and their RESP2 / RESP3 encoding;
//! - `connection`: one client's read, run, write loop; `commands`: the authentication
//!   gate, keyed commands through the registry, and one file per family of RESP-only
//!   commands; `clients`: the connected clients (CLIENT LIST / KILL);
//! - [`server`]: the listener, [`RespServer`] and its [`RespConfig`].
//!
//! The gateway holds no cluster logic: keyed commands go through the cluster crate's
//! command registry, cluster commands through the node's admin API and views.

pub(crate) mod clients;
pub(crate) mod commands;
pub(crate) mod connection;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod policy;
pub mod reply;
pub mod server;

pub use commands::cluster::BUS_PORT_OFFSET;
pub use frame::{ProtocolError, RequestParser};
pub use limits::RequestLimits;
pub use reply::{Protocol, Reply};
pub use server::{
    RespConfig, RespListener, RespServer, RespStartError, RespTls, TLS_HANDSHAKE_TIMEOUT,
};
