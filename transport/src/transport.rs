//! The [`Transport`] trait: the small surface a link implementation provides.
//!
//! A transport only opens and accepts *framed links*: one ordered, reliable, flow-controlled
//! stream of frames per (peer, channel), already authenticated. Everything else (queues,
//! reconnection with backoff, peer identity, request/response matching, events) lives once in
//! [`Endpoint`](crate::Endpoint), which drives any transport.
//!
//! # Writing a transport
//!
//! 1. [`Transport::listen`] binds `local` and returns a [`Listener`]. [`Listener::accept`]
//!    yields each inbound link as [`Accept::Link`] once the remote side has authenticated and
//!    named the channel, or [`Accept::Rejected`] for a connection refused during setup (the
//!    endpoint reports it and keeps accepting). `None` means the listener is gone for good.
//!    `accept` must be cancel-safe: dropping its future must not lose an accepted link.
//! 2. [`Transport::connect`] dials `peer` for one channel, runs the transport's
//!    authentication, and returns a [`FramedLink`]. The endpoint calls it once per channel and
//!    wraps it in a timeout, so it need not be cancel-safe, but dropping it must release
//!    everything it opened.
//! 3. Both ends of a link enforce `limits.for_channel(channel)` on every frame *read*: a larger
//!    announced length ends the reader with [`LinkError::FrameTooLarge`] without allocating it.
//!    Frames written are checked by the endpoint before they reach the writer.
//! 4. A link delivers frames in the order written, each exactly once, until it fails; after a
//!    failure the reader ends with an error (or `None` for a clean close) and the writer fails.
//!    Dropping both halves must close the underlying connection or stream.
//! 5. Channels must not block one another: a reader that is not polled may stall its own
//!    link's sender, but never another channel's link (separate connections or streams).
//!
//! If the transport yields byte streams (`AsyncRead`/`AsyncWrite`), [`framed_byte_link`]
//! turns them into a conforming [`FramedLink`] with the same length-delimited framing TCP and
//! QUIC use. The endpoint sends a hello frame naming the dialer's address first on every link,
//! so a transport does not need to know node identities.
//!
//! [`framed_byte_link`]: crate::framed_byte_link

use std::pin::Pin;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{Sink, Stream};

use crate::{Channel, FrameLimits, LinkError, PeerAddr};

/// The receiving half of a link: frames in order, ending with `None` (clean close) or an error.
pub type FrameReader = Pin<Box<dyn Stream<Item = Result<Bytes, LinkError>> + Send>>;

/// The sending half of a link. `feed` queues a frame, `flush` pushes queued frames out.
pub type FrameWriter = Pin<Box<dyn Sink<Bytes, Error = LinkError> + Send>>;

/// One open, authenticated link carrying one channel between two nodes.
pub struct FramedLink {
    /// Frames from the remote side.
    pub reader: FrameReader,
    /// Frames to the remote side.
    pub writer: FrameWriter,
}

/// An inbound link that passed the transport's authentication.
pub struct AcceptedLink {
    /// The channel the dialer opened this link for.
    pub channel: Channel,
    /// The transport's description of the remote side, for logs and events.
    pub remote: String,
    /// The link itself.
    pub link: FramedLink,
    /// The certificate the dialer proved, when the transport binds identities (see
    /// [`crate::tcp::TcpTls::binding_identities`]): its hello must claim a host the
    /// certificate names. `None`: the transport binds none.
    pub identity: Option<crate::tls::PeerIdentity>,
}

/// One outcome of [`Listener::accept`].
pub enum Accept {
    /// A link ready to carry frames.
    Link(AcceptedLink),
    /// A connection refused during setup (authentication, TLS, malformed preamble).
    Rejected {
        /// The transport's description of the remote side.
        remote: String,
        /// Why it was refused.
        reason: LinkError,
    },
}

/// The listening side of a transport, owned by one endpoint.
pub trait Listener: Send {
    /// The address peers should dial (with the real port when `listen` was given port 0).
    fn local_addr(&self) -> PeerAddr;

    /// The next inbound link or refusal; `None` once the listener is closed. Cancel-safe.
    fn accept(&mut self) -> BoxFuture<'_, Option<Accept>>;

    /// Stops accepting and releases the listening socket; resolves only once it is released,
    /// so the address can be bound again at once. The default does nothing (a listener that
    /// holds no OS resource).
    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A way of linking nodes: TCP, QUIC, the simulated network, or your own.
///
/// One transport value serves one endpoint: `listen` is called once, before any `connect`.
pub trait Transport: Send + Sync + 'static {
    /// Starts listening on `local`, enforcing `limits` on frames read from inbound links.
    fn listen<'a>(
        &'a self,
        local: &'a PeerAddr,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, LinkError>>;

    /// Opens one authenticated link to `peer` for `channel`, enforcing `limits` on frames read.
    fn connect<'a>(
        &'a self,
        peer: &'a PeerAddr,
        channel: Channel,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<FramedLink, LinkError>>;

    /// Releases what the transport holds beyond its listener and links (e.g. QUIC's shared
    /// UDP socket); called by the endpoint after its listener and every link are closed.
    /// Resolves once the resources are released. The default does nothing.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
