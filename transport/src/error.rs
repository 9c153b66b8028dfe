//! Error types, one enum per operation.
//!
//! [`LinkError`] is why one link (one channel to one peer) failed or closed; it is cloned into
//! [`TransportEvent`](crate::TransportEvent)s. The operation errors ([`SendError`],
//! [`RequestError`], [`BindError`]) say what the caller asked for and whether anything was sent.

use crate::{Channel, PeerAddr};

/// An address string that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The address is the empty string.
    #[error("peer address is empty")]
    Empty,
    /// The address exceeds [`PEER_ADDR_BYTES_MAX`](crate::PEER_ADDR_BYTES_MAX).
    #[error("peer address is {length} bytes long; the maximum is 255")]
    TooLong {
        /// The rejected length in bytes.
        length: usize,
    },
    /// The address contains whitespace or control characters.
    #[error("peer address {address:?} contains whitespace or control characters")]
    InvalidCharacter {
        /// The rejected address.
        address: String,
    },
    /// A `host:port` address could not be resolved to a socket address.
    #[error("cannot resolve {address:?} to a socket address: {cause}")]
    Unresolvable {
        /// The address that failed.
        address: String,
        /// What the resolver said.
        cause: String,
    },
}

/// A configuration value outside its documented range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport configuration: {field} {problem}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Why a link (one channel to one peer) could not be opened, or why it closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The remote side closed the link cleanly.
    #[error("the peer closed the connection")]
    PeerClosed,
    /// A frame announced more bytes than the channel allows; the link was closed before
    /// anything of that size was allocated.
    #[error("a frame on the {channel} channel exceeded the maximum of {max_bytes} bytes")]
    FrameTooLarge {
        /// The channel the frame arrived on.
        channel: Channel,
        /// The channel's configured maximum in bytes.
        max_bytes: usize,
    },
    /// The peer did not prove the cluster secret / certificate, or rejected ours.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// TLS or QUIC connection setup failed.
    #[error("TLS/QUIC failure: {0}")]
    Tls(String),
    /// The peer sent bytes that do not follow the slotkv link protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(String),
    /// A bounded wait expired.
    #[error("timed out after {after_ms} ms while {what}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The bound that expired, in milliseconds.
        after_ms: u64,
    },
    /// The peer cannot be reached (not listening, killed or partitioned away).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// This node refused the link because a configured bound was reached.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The peer address cannot be used by this transport.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// This node closed the link (shutdown or `disconnect`).
    #[error("closed locally")]
    LocalClose,
}

impl From<std::io::Error> for LinkError {
    fn from(error: std::io::Error) -> LinkError {
        if let Some(quic) = crate::quic::link_error_from_io(&error) {
            return quic;
        }
        if let Some(tls) = crate::tls::link_error_from_io(&error) {
            return tls;
        }
        match error.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => LinkError::PeerClosed,
            _ => LinkError::Io(error.to_string()),
        }
    }
}

/// Why a frame could not be queued on [`Channel::Bus`] or [`Channel::Bulk`]. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The frame exceeds this node's limit for the channel.
    #[error("frame of {length} bytes exceeds the {channel} channel maximum of {max_bytes} bytes")]
    FrameTooLarge {
        /// The channel.
        channel: Channel,
        /// The frame length in bytes.
        length: usize,
        /// The limit in bytes.
        max_bytes: usize,
    },
    /// The per-peer bus queue is full; the frame was dropped and counted.
    #[error("the bus queue to {peer} is full; the frame was dropped")]
    QueueFull {
        /// The destination.
        peer: PeerAddr,
    },
    /// The endpoint was shut down.
    #[error("the endpoint is shut down")]
    Shutdown,
}

/// Why a request got no response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Payload plus header exceed this node's request frame limit. Nothing was sent.
    #[error("request of {length} bytes exceeds the maximum of {max_bytes} bytes")]
    FrameTooLarge {
        /// The framed length in bytes.
        length: usize,
        /// The limit in bytes.
        max_bytes: usize,
    },
    /// No response within the timeout; the request may or may not have been executed.
    #[error("no response from {peer} within {timeout_ms} ms")]
    Timeout {
        /// The destination.
        peer: PeerAddr,
        /// The timeout in milliseconds.
        timeout_ms: u64,
    },
    /// The link closed while the request was outstanding; it may or may not have been executed.
    #[error("the link to {peer} closed while the request was outstanding: {reason}")]
    LinkClosed {
        /// The destination.
        peer: PeerAddr,
        /// Why the link closed.
        reason: LinkError,
    },
    /// The remote side dropped the request without responding.
    #[error("{peer} dropped the request without responding")]
    Unanswered {
        /// The destination.
        peer: PeerAddr,
    },
    /// The endpoint was shut down.
    #[error("the endpoint is shut down")]
    Shutdown,
}

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The configuration is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport could not listen on the address.
    #[error("cannot listen on {address}: {cause}")]
    Listen {
        /// The requested address.
        address: PeerAddr,
        /// The transport's reason.
        cause: LinkError,
    },
    /// An announced host or port was given, but the bound address is not `host:port`
    /// (e.g. a simulated node's name), so there is nothing to replace.
    #[error("cannot announce another host or port for {bound}: it is not a host:port address")]
    Announce {
        /// The bound address.
        bound: PeerAddr,
    },
}
