//! TCP transport: one TCP connection per (peer, channel), `TCP_NODELAY`, the HMAC-SHA256
//! cluster handshake (`handshake.rs`) before any frame, then length-delimited frames.
//!
//! With [`TcpConfig::tls`] set, every connection first runs mutual TLS 1.3 (certificates
//! from [`crate::tls`], ALPN [`crate::tls::ALPN_PROTOCOL_TCP`]), and the HMAC handshake and
//! every frame then travel inside it: encrypted and integrity-protected, and only a peer
//! holding a certificate the cluster trusts gets as far as the cluster secret. Without it,
//! the handshake is authenticated and the frames after it are plain (trusted networks).
//!
//! One connection per channel means a stalled `Bulk` reader only fills its own socket
//! buffers; the `Bus` connection keeps flowing. Handshakes run in their own tasks, bounded in
//! number, per source address (`source_budget.rs`) and in time, so a slow or hostile client
//! never stops the listener serving others: a connection beyond a bound is closed at once.

pub(crate) mod handshake;
#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ring::hmac;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::source_budget::SourceBudget;
use crate::tls::{
    self, NodeIdentity, PeerIdentity, TlsConfigError, TrustAnchor, ALPN_PROTOCOL_TCP,
    CLUSTER_SERVER_NAME_DEFAULT,
};
use crate::{
    framed_byte_link, Accept, AcceptedLink, Channel, ConfigError, FrameLimits, FramedLink,
    LinkError, Listener, PeerAddr, Transport,
};

/// Shortest cluster secret accepted, in bytes.
pub const CLUSTER_SECRET_BYTES_MIN: usize = 16;
/// Default of [`TcpConfig::handshake_timeout_ms`], in ms.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 3_000;
/// Default of [`TcpConfig::handshakes_in_flight_max`].
pub const HANDSHAKES_IN_FLIGHT_MAX_DEFAULT: usize = 64;
/// Default of [`TcpConfig::handshakes_in_flight_per_source_max`].
pub const HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT: usize = 8;
const _: () = assert!(
    HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT > 0
        && HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT < HANDSHAKES_IN_FLIGHT_MAX_DEFAULT
);
/// Accepted links waiting for the endpoint to take them before the listener stops accepting.
const ACCEPT_QUEUE_LINKS_MAX: usize = 64;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY_MS: u64 = 100;

/// The secret every node of a cluster shares; only nodes that know it can connect.
#[derive(Clone)]
pub struct ClusterSecret {
    key: hmac::Key,
}

impl ClusterSecret {
    /// Wraps a secret of at least [`CLUSTER_SECRET_BYTES_MIN`] bytes.
    pub fn new(secret: Vec<u8>) -> Result<ClusterSecret, ConfigError> {
        if secret.len() < CLUSTER_SECRET_BYTES_MIN {
            return Err(ConfigError {
                field: "cluster_secret",
                problem: format!("must be at least {CLUSTER_SECRET_BYTES_MIN} bytes"),
            });
        }
        Ok(ClusterSecret {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClusterSecret(<redacted>)")
    }
}

/// TLS over TCP: this node's certificate, the peers' trust anchor and the name peers'
/// certificates must carry, built once into the rustls configurations of both sides.
#[derive(Clone)]
pub struct TcpTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    server_name: rustls::pki_types::ServerName<'static>,
    identity: NodeIdentity,
    bind_identities: bool,
}

impl TcpTls {
    /// Mutual TLS with `identity`, peers verified against `trust` and the default cluster
    /// server name ([`CLUSTER_SERVER_NAME_DEFAULT`], which [`crate::tls::DevCertificateAuthority`]
    /// certificates carry).
    pub fn new(identity: &NodeIdentity, trust: &TrustAnchor) -> Result<TcpTls, TlsConfigError> {
        TcpTls::with_server_name(identity, trust, CLUSTER_SERVER_NAME_DEFAULT)
    }

    /// As [`TcpTls::new`], verifying servers against `server_name` instead.
    pub fn with_server_name(
        identity: &NodeIdentity,
        trust: &TrustAnchor,
        server_name: &str,
    ) -> Result<TcpTls, TlsConfigError> {
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|error| TlsConfigError::Rustls(format!("server name: {error}")))?;
        Ok(TcpTls {
            server: Arc::new(tls::server_config(identity, trust, ALPN_PROTOCOL_TCP)?),
            client: Arc::new(tls::client_config(identity, trust, ALPN_PROTOCOL_TCP)?),
            server_name,
            identity: identity.clone(),
            bind_identities: false,
        })
    }

    /// The same settings binding each peer's certificate to what it claims (per-node
    /// identity): a dialed listener's certificate must name the host dialed, an accepted
    /// link's certificate must name the host its hello claims, and the certificate travels
    /// with the link's frames ([`crate::InboundFrame::identity`]) so the cluster can check
    /// the node id each message claims. Every node's certificate then names its announced
    /// host (and, for the cluster's check, its node id).
    pub fn binding_identities(mut self) -> TcpTls {
        self.bind_identities = true;
        self
    }

    /// Whether peers' certificates are bound to their claims ([`TcpTls::binding_identities`]).
    pub fn binds_identities(&self) -> bool {
        self.bind_identities
    }

    /// This node's own identity (to check it names what the node will claim).
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }
}

impl fmt::Debug for TcpTls {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "TcpTls(server name {:?}, binding identities: {})",
            self.server_name, self.bind_identities
        )
    }
}

/// TCP transport settings.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// The cluster secret proven by both sides of every connection.
    pub cluster_secret: ClusterSecret,
    /// Mutual TLS under the handshake and every frame; `None` (the default): plain TCP with
    /// an authenticated handshake.
    pub tls: Option<TcpTls>,
    /// Limit on the whole handshake, each side, in ms (default
    /// [`HANDSHAKE_TIMEOUT_MS_DEFAULT`]). An unauthenticated client holds a handshake slot
    /// at most this long; the handshake is two round trips of a few dozen bytes.
    pub handshake_timeout_ms: u64,
    /// Inbound handshakes running at once; further connections are closed at once and
    /// reported (default [`HANDSHAKES_IN_FLIGHT_MAX_DEFAULT`]).
    pub handshakes_in_flight_max: usize,
    /// Inbound handshakes running at once from one source IP address (IPv4-mapped IPv6
    /// counts as IPv4), within `handshakes_in_flight_max`; further connections from that
    /// address are closed at once and reported (default
    /// [`HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT`]). A client flooding from one address
    /// holds at most this many slots, so peers from other addresses still get in.
    pub handshakes_in_flight_per_source_max: NonZeroUsize,
}

impl TcpConfig {
    /// Settings with the given secret and default bounds.
    pub fn new(cluster_secret: ClusterSecret) -> TcpConfig {
        TcpConfig {
            cluster_secret,
            tls: None,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS_DEFAULT,
            handshakes_in_flight_max: HANDSHAKES_IN_FLIGHT_MAX_DEFAULT,
            handshakes_in_flight_per_source_max: NonZeroUsize::new(
                HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT,
            )
            .unwrap_or(NonZeroUsize::MIN),
        }
    }

    /// The same settings with every connection under mutual TLS (see [`TcpTls`]).
    pub fn with_tls(mut self, tls: TcpTls) -> TcpConfig {
        self.tls = Some(tls);
        self
    }
}

/// The TCP [`Transport`].
pub struct TcpTransport {
    config: Arc<TcpConfig>,
}

impl TcpTransport {
    /// A transport using `config`.
    pub fn new(config: TcpConfig) -> TcpTransport {
        TcpTransport {
            config: Arc::new(config),
        }
    }
}

impl Transport for TcpTransport {
    fn listen<'a>(
        &'a self,
        local: &'a PeerAddr,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<Box<dyn Listener>, LinkError>> {
        Box::pin(async move {
            let listener = TcpListener::bind(local.resolve().await?).await?;
            let bound = PeerAddr::from(listener.local_addr()?);
            let (accepted, queue) = mpsc::channel(ACCEPT_QUEUE_LINKS_MAX);
            let task = tokio::spawn(run_listener(
                listener,
                Arc::clone(&self.config),
                limits,
                accepted,
            ));
            let handle: Box<dyn Listener> = Box::new(TcpListenerHandle {
                local: bound,
                queue,
                task,
            });
            Ok(handle)
        })
    }

    fn connect<'a>(
        &'a self,
        peer: &'a PeerAddr,
        channel: Channel,
        limits: FrameLimits,
    ) -> BoxFuture<'a, Result<FramedLink, LinkError>> {
        Box::pin(async move {
            let address = peer.resolve().await?;
            let mut stream = TcpStream::connect(address).await.map_err(|error| {
                LinkError::Unreachable(format!("cannot connect to {peer}: {error}"))
            })?;
            stream.set_nodelay(true)?;
            let after_ms = self.config.handshake_timeout_ms;
            let key = &self.config.cluster_secret.key;
            let timed_out = |_| LinkError::Timeout {
                what: "authenticating",
                after_ms,
            };
            let after = Duration::from_millis(after_ms);
            match &self.config.tls {
                None => {
                    tokio::time::timeout(after, handshake::dial(&mut stream, key, channel))
                        .await
                        .map_err(timed_out)??;
                    let (reader, writer) = stream.into_split();
                    Ok(framed_byte_link(reader, writer, channel, limits))
                }
                Some(settings) => {
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&settings.client));
                    let secured = async {
                        let mut secured = connector
                            .connect(settings.server_name.clone(), stream)
                            .await
                            .map_err(|error| tls_refusal(peer, &error))?;
                        if settings.bind_identities {
                            let named = peer_identity(secured.get_ref().1.peer_certificates())
                                .is_some_and(|identity| identity.names(peer.host()));
                            if !named {
                                return Err(LinkError::Authentication(format!(
                                    "TLS with {peer}: its certificate does not name {}",
                                    peer.host()
                                )));
                            }
                        }
                        handshake::dial(&mut secured, key, channel).await?;
                        Ok::<_, LinkError>(secured)
                    };
                    let secured = tokio::time::timeout(after, secured)
                        .await
                        .map_err(timed_out)??;
                    let (reader, writer) = tokio::io::split(secured);
                    Ok(framed_byte_link(reader, writer, channel, limits))
                }
            }
        })
    }
}

/// The identity proved by the end-entity certificate of `certificates`, if any.
fn peer_identity(
    certificates: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Option<PeerIdentity> {
    certificates?
        .first()
        .map(|leaf| PeerIdentity::new(leaf.clone()))
}

/// A TLS handshake's failure as the link's error, naming the peer.
fn tls_refusal(peer: &dyn fmt::Display, error: &std::io::Error) -> LinkError {
    match tls::link_error_from_io(error) {
        Some(LinkError::Authentication(text)) => {
            LinkError::Authentication(format!("TLS with {peer}: {text}"))
        }
        Some(LinkError::Tls(text)) => LinkError::Tls(format!("TLS with {peer}: {text}")),
        Some(other) => other,
        None => LinkError::from(std::io::Error::new(error.kind(), error.to_string())),
    }
}

struct TcpListenerHandle {
    local: PeerAddr,
    queue: mpsc::Receiver<Accept>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for TcpListenerHandle {
    fn local_addr(&self) -> PeerAddr {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, Option<Accept>> {
        Box::pin(self.queue.recv())
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.task.abort();
            // The socket is dropped with the task: wait until the abort has taken effect.
            let _ = (&mut self.task).await;
            self.queue.close();
        })
    }
}

async fn run_listener(
    listener: TcpListener,
    config: Arc<TcpConfig>,
    limits: FrameLimits,
    accepted: mpsc::Sender<Accept>,
) {
    let handshakes = SourceBudget::new(
        config.handshakes_in_flight_max,
        config.handshakes_in_flight_per_source_max,
    );
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::warn!(%error, "TCP accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)).await;
                continue;
            }
        };
        let permit = match handshakes.try_acquire(remote.ip()) {
            Ok(permit) => permit,
            Err(reason) => {
                // Closed at once, before reading a byte: the refusal costs no task.
                drop(stream);
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
        let remote = remote.to_string();
        let (config, accepted) = (Arc::clone(&config), accepted.clone());
        tokio::spawn(async move {
            let outcome = handle_inbound_connection(stream, remote, &config, limits).await;
            drop(permit);
            let _ = accepted.send(outcome).await;
        });
    }
}

async fn handle_inbound_connection(
    mut stream: TcpStream,
    remote: String,
    config: &TcpConfig,
    limits: FrameLimits,
) -> Accept {
    let after_ms = config.handshake_timeout_ms;
    let after = Duration::from_millis(after_ms);
    let timed_out = |_| LinkError::Timeout {
        what: "authenticating",
        after_ms,
    };
    let key = &config.cluster_secret.key;
    let outcome = match &config.tls {
        None => {
            let authenticated = async {
                stream.set_nodelay(true)?;
                tokio::time::timeout(after, handshake::accept(&mut stream, key))
                    .await
                    .map_err(timed_out)?
            };
            authenticated.await.map(|channel| {
                let (reader, writer) = stream.into_split();
                (
                    channel,
                    framed_byte_link(reader, writer, channel, limits),
                    None,
                )
            })
        }
        Some(settings) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&settings.server));
            let secured = async {
                stream.set_nodelay(true)?;
                let mut secured = acceptor
                    .accept(stream)
                    .await
                    .map_err(|error| tls_refusal(&remote, &error))?;
                let channel = handshake::accept(&mut secured, key).await?;
                Ok::<_, LinkError>((channel, secured))
            };
            match tokio::time::timeout(after, secured)
                .await
                .map_err(timed_out)
            {
                Ok(Ok((channel, secured))) => {
                    let identity = settings
                        .bind_identities
                        .then(|| peer_identity(secured.get_ref().1.peer_certificates()))
                        .flatten();
                    let (reader, writer) = tokio::io::split(secured);
                    let link = framed_byte_link(reader, writer, channel, limits);
                    Ok((channel, link, identity))
                }
                Ok(Err(error)) | Err(error) => Err(error),
            }
        }
    };
    match outcome {
        Ok((channel, link, identity)) => Accept::Link(AcceptedLink {
            channel,
            remote,
            link,
            identity,
        }),
        Err(reason) => Accept::Rejected { remote, reason },
    }
}
