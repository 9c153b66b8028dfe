//! Master → replica replication: one stream kind on the bulk channel.
//!
//! The log it streams is the node's write log ([`crate::node_state::write_log`]), which the
//! data path appends to. Here:
//! - [`stream`]: the frame format;
//! - [`master`]: serving PSYNC (full sync from slot snapshots while writes continue, or
//!   partial resync from the backlog) and streaming ops, one task per replica;
//! - [`replica`]: the replication task (the replica's side: sync, apply, acknowledge; the
//!   master's housekeeping: active expiry, engine removals into the log).
//!
//! It receives only replication frames: the runtime's bulk demultiplexer routes by stream
//! tag ([`crate::node_state::bulk`]), and every frame sent here carries the replication tag.

pub(crate) mod master;
pub(crate) mod replica;
pub(crate) mod stream;
