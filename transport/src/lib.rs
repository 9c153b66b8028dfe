//! `slotkv-transport`: the pluggable links between slotkv nodes.
//!
//! It moves length-delimited frames between addresses on separate logical channels and
//! knows no cluster message types.
//!
//! # Layout
//!
//! | file | concept |
//! |---|---|
//! | `transport.rs` | the [`Transport`] trait a link implementation provides (read it to write one) |
//! | `endpoint/` | [`Endpoint`]: the peer manager shared by every transport (queues, reconnect, requests, events) |
//! | `framing.rs` | length-delimited framing over byte streams, and the hello that opens every link |
//! | `tcp/` | [`tcp::TcpTransport`]: one TCP connection per channel, HMAC-SHA256 cluster handshake, optionally inside mutual TLS ([`tcp::TcpTls`]) |
//! | `tls/` | certificates, trust anchors, the development CA and pinning, shared by TLS over TCP and QUIC |
//! | `quic/` | [`quic::QuicTransport`]: one QUIC connection per direction, a stream per channel, mutual TLS |
//! | `sim/` | [`sim::SimNet`]: the in-memory network with partitions, drops, latency, kill/restore |
//! | `address.rs`, `channel.rs`, `config.rs`, `event.rs`, `error.rs` | the shared vocabulary |
//! | `source_budget.rs` | the unauthenticated-handshake budget, global and per source address (TCP and QUIC) |
//! | `backoff.rs`, `rng.rs` | reconnection backoff with seeded jitter |
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use slotkv_transport::{tcp::{ClusterSecret, TcpConfig, TcpTransport}, Endpoint, EndpointConfig, PeerAddr};
//!
//! let secret = ClusterSecret::new(b"a long shared cluster secret".to_vec())?;
//! let transport = Arc::new(TcpTransport::new(TcpConfig::new(secret)));
//! let (endpoint, mut incoming) =
//!     Endpoint::bind(transport, PeerAddr::new("127.0.0.1:0")?, EndpointConfig::default()).await?;
//! let peer = PeerAddr::new("127.0.0.1:7001")?;
//! endpoint.send_bus(&peer, bytes::Bytes::from_static(b"ping"))?;
//! let _answer = endpoint.request(&peer, bytes::Bytes::from_static(b"GET k")).await;
//! while let Some(frame) = incoming.bus.recv().await {
//!     println!("{} sent {} bytes", frame.from, frame.payload.len());
//! }
//! # Ok(()) }
//! ```

mod address;
mod backoff;
mod channel;
mod config;
mod endpoint;
mod error;
mod event;
mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod quic;
mod rng;
pub mod sim;
mod source_budget;
pub mod tcp;
pub mod tls;
mod transport;

pub use address::{PeerAddr, PEER_ADDR_BYTES_MAX};
pub use channel::{
    Channel, FrameLimits, BULK_FRAME_BYTES_MAX_DEFAULT, BUS_FRAME_BYTES_MAX_DEFAULT,
    FRAME_BYTES_MAX_LIMIT, REQUEST_FRAME_BYTES_MAX_DEFAULT,
};
pub use config::{BackoffConfig, EndpointConfig};
pub use endpoint::links::LinkInfo;
pub use endpoint::request::{InboundRequest, RespondError, Responder};
pub use endpoint::stats::LinkStatistics;
pub use endpoint::{Announce, Endpoint, Incoming};
pub use error::{AddressError, BindError, ConfigError, LinkError, RequestError, SendError};
pub use event::{Direction, InboundFrame, TransportEvent};
pub use framing::framed_byte_link;
pub use transport::{
    Accept, AcceptedLink, FrameReader, FrameWriter, FramedLink, Listener, Transport,
};
