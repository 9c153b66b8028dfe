//! QUIC transport (`quinn` 0.11, rustls with `ring`, ALPN `slotkv/1`, mutual TLS).
//!
//! Each node dials one QUIC connection per peer it sends to and opens one bidirectional stream
//! per channel on it; the first byte of a stream is the channel tag, then length-delimited
//! frames follow. QUIC's per-stream flow control keeps a stalled `Bulk` stream from delaying
//! `Bus`. Peers authenticate each other with certificates from the cluster CA
//! ([`crate::tls`], shared with TLS over TCP).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::tls::{self, PeerIdentity};
pub use crate::tls::{
    self_signed_node_identity, DevCertificateAuthority, NodeIdentity, TlsConfigError, TrustAnchor,
    ALPN_PROTOCOL, CLUSTER_SERVER_NAME_DEFAULT,
};

use crate::source_budget::SourceBudget;
use crate::{
    framed_byte_link, Accept, AcceptedLink, Channel, FrameLimits, FramedLink, LinkError, Listener,
    PeerAddr, Transport,
};

/// Streams a peer may have open on one connection (three channels plus reconnect slack).
const STREAMS_PER_CONNECTION_MAX: u32 = 16;
/// Connection attempts quinn holds before they are accepted or refused (handshakes pending).
const INCOMING_CONNECTIONS_MAX: usize = 256;
/// Accepted links waiting for the endpoint before stream acceptance waits.
const ACCEPT_QUEUE_LINKS_MAX: usize = 64;

/// QUIC transport settings.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// This node's certificate chain and key.
    pub identity: NodeIdentity,
    /// The cluster CA that peers' certificates must chain to.
    pub trust: TrustAnchor,
    /// The DNS name peers' certificates must carry (default [`CLUSTER_SERVER_NAME_DEFAULT`]).
    pub server_name: String,
    /// A connection silent this long is closed (default 10 000 ms).
    pub idle_timeout_ms: u64,
    /// Keep-alive interval, below `idle_timeout_ms` (default 2 000 ms).
    pub keep_alive_interval_ms: u64,
    /// Limit on reading a new stream's channel tag (default 5 000 ms).
    pub stream_open_timeout_ms: u64,
    /// Limit on an inbound connection's TLS handshake, in ms (default
    /// [`crate::tcp::HANDSHAKE_TIMEOUT_MS_DEFAULT`]): an unauthenticated client holds a
    /// handshake slot at most this long.
    pub handshake_timeout_ms: u64,
    /// Inbound TLS handshakes in flight from one source IP address, within the
    /// listener's bound of 256 pending connections; further attempts from that address are
    /// refused at once and reported (default
    /// [`crate::tcp::HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT`]).
    pub handshakes_in_flight_per_source_max: NonZeroUsize,
    /// Per-node identity (default off): each peer's certificate must name what it claims,
    /// as [`crate::tcp::TcpTls::binding_identities`] describes: the dialed host, the host of
    /// an accepted link's hello, and (checked by the cluster on each inbound frame's
    /// [`crate::InboundFrame::identity`]) the node id its messages claim.
    pub bind_identities: bool,
}

impl QuicConfig {
    /// Settings with this identity and trust anchor and default bounds.
    pub fn new(identity: NodeIdentity, trust: TrustAnchor) -> QuicConfig {
        QuicConfig {
            identity,
            trust,
            server_name: CLUSTER_SERVER_NAME_DEFAULT.to_string(),
            idle_timeout_ms: 10_000,
            keep_alive_interval_ms: 2_000,
            stream_open_timeout_ms: 5_000,
            handshake_timeout_ms: crate::tcp::HANDSHAKE_TIMEOUT_MS_DEFAULT,
            handshakes_in_flight_per_source_max: NonZeroUsize::new(
                crate::tcp::HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT,
            )
            .unwrap_or(NonZeroUsize::MIN),
            bind_identities: false,
        }
    }
}

type ConnectionSlot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// The QUIC [`Transport`]. One value per endpoint: `listen` creates the UDP socket that
/// `connect` also dials from.
pub struct QuicTransport {
    server_config: quinn::ServerConfig,
    client_config: quinn::ClientConfig,
    server_name: String,
    stream_open_timeout_ms: u64,
    handshake_timeout_ms: u64,
    handshakes_in_flight_per_source_max: NonZeroUsize,
    bind_identities: bool,
    endpoint: Mutex<Option<quinn::Endpoint>>,
    /// The UDP address `listen` bound, released again by [`Transport::close`].
    bound: Mutex<Option<SocketAddr>>,
    connections: Mutex<HashMap<SocketAddr, ConnectionSlot>>,
}

/// Longest wait in [`Transport::close`] for quinn's endpoint driver to release the UDP
/// socket after the last handle is gone, in ms.
pub const SOCKET_RELEASE_WAIT_MS_MAX: u64 = 2_000;

impl QuicTransport {
    /// Builds the TLS and QUIC settings; fails if the certificates or key are unusable.
    pub fn new(config: QuicConfig) -> Result<QuicTransport, TlsConfigError> {
        let transport = Arc::new(transport_config(&config)?);
        let server_tls = tls::server_config(&config.identity, &config.trust, ALPN_PROTOCOL)?;
        let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
            .map_err(|error| TlsConfigError::Rustls(error.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config
            .transport_config(Arc::clone(&transport))
            .max_incoming(INCOMING_CONNECTIONS_MAX);
        let client_tls = tls::client_config(&config.identity, &config.trust, ALPN_PROTOCOL)?;
        let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)
            .map_err(|error| TlsConfigError::Rustls(error.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
        client_config.transport_config(transport);
        Ok(QuicTransport {
            server_config,
            client_config,
            server_name: config.server_name,
            stream_open_timeout_ms: config.stream_open_timeout_ms,
            handshake_timeout_ms: config.handshake_timeout_ms,
            handshakes_in_flight_per_source_max: config.handshakes_in_flight_per_source_max,
            bind_identities: config.bind_identities,
            endpoint: Mutex::new(None),
            bound: Mutex::new(None),
            connections: Mutex::new(HashMap::new()),
        })
    }

    /// The live connection to `address`, dialing one if needed (one dial at a time per peer).
    async fn connection_to(&self, address: SocketAddr) -> Result<quinn::Connection, LinkError> {
        let slot = Arc::clone(self.connections.lock().entry(address).or_default());
        let mut slot = slot.lock().await;
        if let Some(connection) = slot
            .as_ref()
            .filter(|connection| connection.close_reason().is_none())
        {
            return Ok(connection.clone());
        }
        let endpoint = self.endpoint.lock().clone().ok_or_else(|| {
            LinkError::Unreachable("the QUIC transport must listen before it connects".to_string())
        })?;
        let connecting = endpoint
            .connect(address, &self.server_name)
            .map_err(|error| LinkError::Unreachable(format!("cannot dial {address}: {error}")))?;
        let connection = connecting.await.map_err(connection_error)?;
        *slot = Some(connection.clone());
        Ok(connection)
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        if let Some(endpoint) = self.endpoint.lock().take() {
            endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
        }
    }
}

fn transport_config(config: &QuicConfig) -> Result<quinn::TransportConfig, TlsConfigError> {
    let idle = quinn::IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms))
        .map_err(|error| TlsConfigError::Rustls(format!("idle_timeout_ms: {error}")))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(Duration::from_millis(config.keep_alive_interval_ms)))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(STREAMS_PER_CONNECTION_MAX))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Ok(transport)
}

/// Maps a QUIC connection failure to a link error a person can act on.
fn connection_error(error: quinn::ConnectionError) -> LinkError {
    match error {
        quinn::ConnectionError::TimedOut => {
            LinkError::Unreachable("the QUIC peer did not answer (timed out)".to_string())
        }
        quinn::ConnectionError::LocallyClosed => LinkError::LocalClose,
        quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::Reset => {
            LinkError::PeerClosed
        }
        other => LinkError::Tls(other.to_string()),
    }
}

/// The link error behind an I/O error raised by a QUIC stream, if it carries one.
pub(crate) fn link_error_from_io(error: &std::io::Error) -> Option<LinkError> {
    let inner = error.get_ref()?;
    let lost = match (
        inner.downcast_ref::<quinn::ReadError>(),
        inner.downcast_ref::<quinn::WriteError>(),
    ) {
        (Some(quinn::ReadError::ConnectionLost(lost)), _) => lost,
        (_, Some(quinn::WriteError::ConnectionLost(lost))) => lost,
        (Some(quinn::ReadError::Reset(_)), _) | (_, Some(quinn::WriteError::Stopped(_))) => {
            return Some(LinkError::PeerClosed);
        }
        _ => return None,
    };
    Some(connection_error(lost.clone()))
}

impl QuicTransport {
    /// Closes the shared UDP endpoint and every connection, waiting until they are idle.
    async fn close_endpoint(&self) {
        self.connections.lock().clear();
        let endpoint = self.endpoint.lock().take();
        if let Some(endpoint) = endpoint {
            endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
            endpoint.wait_idle().await;
            drop(endpoint);
        }
        // quinn's endpoint driver drops the socket on its next wake-up once the last handle
        // (transport, listener, connections) is gone: wait, bounded, until the port is free.
        let Some(address) = self.bound.lock().take() else {
            return;
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(SOCKET_RELEASE_WAIT_MS_MAX);
        loop {
            match std::net::UdpSocket::bind(address) {
                Ok(probe) => {
                    drop(probe);
                    return;
                }
                Err(error) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(%address, %error, "the QUIC socket was not released in time");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
}

impl Transport for QuicTransport {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.close_endpoint())
    }

    fn listen<'a>(
        &'a self,
        local: &'a PeerAddr,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, LinkError>> {
        Box::pin(async move {
            let mut endpoint =
                quinn::Endpoint::server(self.server_config.clone(), local.resolve().await?)?;
            endpoint.set_default_client_config(self.client_config.clone());
            let socket = endpoint.local_addr()?;
            let bound = PeerAddr::from(socket);
            *self.endpoint.lock() = Some(endpoint.clone());
            *self.bound.lock() = Some(socket);
            let (accepted, queue) = mpsc::channel(ACCEPT_QUEUE_LINKS_MAX);
            let bounds = ListenerBounds {
                bind_identities: self.bind_identities,
                stream_open_timeout_ms: self.stream_open_timeout_ms,
                handshake_timeout_ms: self.handshake_timeout_ms,
                handshakes: SourceBudget::new(
                    INCOMING_CONNECTIONS_MAX,
                    self.handshakes_in_flight_per_source_max,
                ),
            };
            let task = tokio::spawn(run_listener(endpoint.clone(), limits, bounds, accepted));
            let listener: Box<dyn Listener> = Box::new(QuicListener {
                local: bound,
                queue,
                task,
                endpoint,
            });
            Ok(listener)
        })
    }

    fn connect<'a>(
        &'a self,
        peer: &'a PeerAddr,
        channel: Channel,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<FramedLink, LinkError>> {
        Box::pin(async move {
            let connection = self.connection_to(peer.resolve().await?).await?;
            if self.bind_identities
                && !peer_identity(&connection).is_some_and(|identity| identity.names(peer.host()))
            {
                return Err(LinkError::Authentication(format!(
                    "QUIC with {peer}: its certificate does not name {}",
                    peer.host()
                )));
            }
            let (mut send, receive) = connection.open_bi().await.map_err(connection_error)?;
            send.write_all(&[channel.tag()])
                .await
                .map_err(|error| match error {
                    quinn::WriteError::ConnectionLost(lost) => connection_error(lost),
                    other => LinkError::Io(other.to_string()),
                })?;
            Ok(framed_byte_link(receive, send, channel, limits))
        })
    }
}

struct QuicListener {
    local: PeerAddr,
    queue: mpsc::Receiver<Accept>,
    task: tokio::task::JoinHandle<()>,
    endpoint: quinn::Endpoint,
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
    }
}

impl Listener for QuicListener {
    fn local_addr(&self) -> PeerAddr {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, Option<Accept>> {
        Box::pin(self.queue.recv())
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.task.abort();
            let _ = (&mut self.task).await;
            self.queue.close();
            self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
            self.endpoint.wait_idle().await;
        })
    }
}

/// The identity proved by the connection's peer (its end-entity certificate), if any.
fn peer_identity(connection: &quinn::Connection) -> Option<PeerIdentity> {
    let certificates = connection
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certificates.first().cloned().map(PeerIdentity::new)
}

/// What the listener enforces on inbound connections.
struct ListenerBounds {
    bind_identities: bool,
    stream_open_timeout_ms: u64,
    handshake_timeout_ms: u64,
    handshakes: Arc<SourceBudget>,
}

async fn run_listener(
    endpoint: quinn::Endpoint,
    limits: FrameLimits,
    bounds: ListenerBounds,
    accepted: mpsc::Sender<Accept>,
) {
    let mut connections = tokio::task::JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        let permit = match bounds.handshakes.try_acquire(remote.ip()) {
            Ok(permit) => permit,
            Err(reason) => {
                incoming.refuse();
                let remote = remote.to_string();
                if accepted
                    .send(Accept::Rejected { remote, reason })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let accepted = accepted.clone();
        let (handshake_ms, stream_open_ms, bind_identities) = (
            bounds.handshake_timeout_ms,
            bounds.stream_open_timeout_ms,
            bounds.bind_identities,
        );
        connections.spawn(async move {
            let remote = remote.to_string();
            let handshake = tokio::time::timeout(Duration::from_millis(handshake_ms), incoming);
            let connected = match handshake.await {
                Ok(connected) => connected.map_err(connection_error),
                Err(_) => Err(LinkError::Timeout {
                    what: "authenticating",
                    after_ms: handshake_ms,
                }),
            };
            drop(permit);
            match connected {
                Ok(connection) => {
                    let identity = bind_identities
                        .then(|| peer_identity(&connection))
                        .flatten();
                    let stream = StreamBounds {
                        limits,
                        timeout_ms: stream_open_ms,
                        identity,
                    };
                    serve_connection(connection, remote, stream, accepted).await
                }
                Err(reason) => {
                    let _ = accepted.send(Accept::Rejected { remote, reason }).await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Accepts the streams of one connection; each becomes a link once its tag is read. Tags are
/// read concurrently (at most `STREAMS_PER_CONNECTION_MAX` streams exist), so one silent
/// stream never delays the others.
async fn serve_connection(
    connection: quinn::Connection,
    remote: String,
    bounds: StreamBounds,
    accepted: mpsc::Sender<Accept>,
) {
    let mut streams = tokio::task::JoinSet::new();
    while let Ok((send, receive)) = connection.accept_bi().await {
        let (remote, accepted, bounds) = (remote.clone(), accepted.clone(), bounds.clone());
        streams.spawn(async move {
            let outcome = open_stream(send, receive, remote, bounds).await;
            let _ = accepted.send(outcome).await;
        });
        while streams.try_join_next().is_some() {}
    }
}

/// What each stream of one accepted connection gets: the frame limits, the bound on
/// reading its tag, and the connection's proved identity (when identities are bound).
#[derive(Clone)]
struct StreamBounds {
    limits: FrameLimits,
    timeout_ms: u64,
    identity: Option<PeerIdentity>,
}

async fn open_stream(
    send: quinn::SendStream,
    mut receive: quinn::RecvStream,
    remote: String,
    bounds: StreamBounds,
) -> Accept {
    let StreamBounds {
        limits,
        timeout_ms,
        identity,
    } = bounds;
    let tag = tokio::time::timeout(Duration::from_millis(timeout_ms), receive.read_u8()).await;
    let reason = match tag {
        Ok(Ok(tag)) => match Channel::from_tag(tag) {
            Some(channel) => {
                let link = framed_byte_link(receive, send, channel, limits);
                return Accept::Link(AcceptedLink {
                    channel,
                    remote,
                    link,
                    identity,
                });
            }
            None => LinkError::Protocol(format!("unknown channel tag {tag}")),
        },
        Ok(Err(error)) => LinkError::from(error),
        Err(_) => LinkError::Timeout {
            what: "reading a stream's channel tag",
            after_ms: timeout_ms,
        },
    };
    Accept::Rejected { remote, reason }
}
