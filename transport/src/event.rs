//! What an [`Endpoint`](crate::Endpoint) reports to its owner: connection lifecycle events and
//! inbound frames tagged with the sending peer and channel.

use std::time::Duration;

use bytes::Bytes;

use crate::{Channel, LinkError, PeerAddr};

/// Which side opened a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// This node dialed the peer; `send_*` and `request` travel on outbound links.
    Outbound,
    /// The peer dialed this node; inbound frames and requests arrive on these links.
    Inbound,
}

/// A change in the life of a link (one channel between this node and one peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// The link is open and authenticated; for inbound links the peer has named itself.
    Connected {
        /// The peer's listening address.
        peer: PeerAddr,
        /// The channel.
        channel: Channel,
        /// Who dialed.
        direction: Direction,
    },
    /// The link closed.
    Closed {
        /// The peer's listening address.
        peer: PeerAddr,
        /// The channel.
        channel: Channel,
        /// Who dialed.
        direction: Direction,
        /// Why it closed.
        reason: LinkError,
    },
    /// An outbound link will be dialed again after `delay` (bounded exponential backoff).
    Reconnecting {
        /// The peer's listening address.
        peer: PeerAddr,
        /// The channel.
        channel: Channel,
        /// 1 for the first retry after a failure, growing until a connection succeeds.
        attempt: u32,
        /// How long the link waits before dialing.
        delay: Duration,
        /// Why the previous connection or attempt ended.
        last_error: LinkError,
    },
    /// An inbound connection was refused before it could carry frames (failed
    /// authentication, bad hello, TLS failure). The listener keeps serving others.
    Rejected {
        /// The transport's description of the remote side (a socket address, a node name).
        remote: String,
        /// Why it was refused.
        reason: LinkError,
    },
}

/// A frame received on [`Channel::Bus`] or [`Channel::Bulk`].
#[derive(Clone, Debug)]
pub struct InboundFrame {
    /// The sender's listening address, as it announced it after authentication.
    pub from: PeerAddr,
    /// The channel it arrived on.
    pub channel: Channel,
    /// The frame.
    pub payload: Bytes,
    /// The certificate the sender proved on its link when the transport binds identities
    /// ([`crate::tcp::TcpTls::binding_identities`]; it names `from`'s host): a message
    /// claiming a sender the certificate does not name is an impostor's. `None`: the
    /// transport binds none.
    pub identity: Option<crate::tls::PeerIdentity>,
}
