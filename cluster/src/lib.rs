//! `slotkv-cluster`: membership, failure detection, failover and slot ownership.
//!
//! Its heart is a sans-IO state machine (`core`); a tokio runtime wires it to a
//! transport and to the engine.
