//! The gateway's server: a TCP listener serving one [`Node`] to RESP clients, one task per
//! connection (the `connection` module), at most `maxclients` at once.
//!
//! The listener is bound first ([`RespListener::bind`]) so its port can be given to the
//! node (`NodeBuilder::client_port`) before the node starts: the client port travels in
//! gossip, and CLUSTER NODES / SLOTS / SHARDS and MOVED / ASK name it.
//! [`RespServer::shutdown`] stops accepting, closes every connection and returns once the
//! port is released.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slotkv_cluster::{Cluster, Node};
use slotkv_transport::tls::{
    client_port_server_config, ClientCertificates, NodeIdentity, TlsConfigError,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clients::Clients;
use crate::limits::RequestLimits;

/// Most clients connected at once by default (Redis's `maxclients`).
pub const MAX_CLIENTS_DEFAULT: usize = 10_000;

/// Most bytes of replies a client may leave unread before it is closed (Redis's
/// `client-output-buffer-limit normal` hard limit, which Redis leaves unlimited: here the
/// largest value a client may write, `proto-max-bulk-len`, twice over).
pub const OUTPUT_BUFFER_BYTES_MAX_DEFAULT: usize = 1 << 30;

/// How the gateway serves clients.
#[derive(Debug, Clone)]
pub struct RespConfig {
    /// `requirepass`: clients must AUTH with it first; `None`: no password.
    pub requirepass: Option<String>,
    /// `maxclients`: connections beyond it are answered an error and closed.
    pub max_clients: usize,
    /// Bounds of each client's input.
    pub limits: RequestLimits,
    /// Most bytes of unread replies per client before it is closed.
    pub output_buffer_bytes_max: usize,
    /// `proxy-redirects yes` (beyond Redis; off by default): a key of another node is served
    /// through this node's forwarding instead of answered MOVED or ASK, so a plain,
    /// non-cluster client can use any node. Cluster clients are served the same way (they
    /// then never see a redirection, and never learn the map from one).
    pub proxy_redirects: bool,
    /// `save` as CONFIG GET shows it: the snapshot points of the host (kvnode's `save`),
    /// empty when the keys are not saved. Not acted on by the gateway.
    pub save: String,
    /// TLS on the port (Redis's `tls-port`): every client connects with TLS first;
    /// `None` (the default): plain TCP.
    pub tls: Option<RespTls>,
}

/// Longest a client may take over its TLS handshake before it is closed (it holds one
/// of the `maxclients` places meanwhile).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for the client port: this node's certificate and what it asks of clients.
#[derive(Clone)]
pub struct RespTls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl RespTls {
    /// TLS with `identity`, client certificates as `clients` says (Redis's
    /// `tls-auth-clients`).
    pub fn new(
        identity: &NodeIdentity,
        clients: &ClientCertificates,
    ) -> Result<RespTls, TlsConfigError> {
        let config = client_port_server_config(identity, clients)?;
        Ok(RespTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

impl std::fmt::Debug for RespTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RespTls")
    }
}

impl Default for RespConfig {
    fn default() -> Self {
        RespConfig {
            requirepass: None,
            max_clients: MAX_CLIENTS_DEFAULT,
            limits: RequestLimits::default(),
            output_buffer_bytes_max: OUTPUT_BUFFER_BYTES_MAX_DEFAULT,
            proxy_redirects: false,
            save: String::new(),
            tls: None,
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RespStartError {
    /// The address could not be bound.
    #[error("cannot listen for RESP clients on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, not yet serving, RESP listener (see the module docs).
#[derive(Debug)]
pub struct RespListener {
    listener: TcpListener,
    address: SocketAddr,
}

impl RespListener {
    /// Binds `address` (`host:port`; port 0 picks one).
    pub async fn bind(address: &str) -> Result<RespListener, RespStartError> {
        let failed = |source| RespStartError::Bind {
            address: address.to_string(),
            source,
        };
        let listener = TcpListener::bind(address).await.map_err(failed)?;
        let address = listener.local_addr().map_err(failed)?;
        Ok(RespListener { listener, address })
    }

    /// The bound address (its port is the node's client port).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

/// What every connection of one server shares.
pub(crate) struct Gateway {
    /// The node served.
    pub(crate) node: Arc<Node>,
    /// Its data-path handle.
    pub(crate) cluster: Cluster,
    /// The configuration (CONFIG SET changes the settable parts).
    pub(crate) config: Mutex<RespConfig>,
    /// `config.proxy_redirects`, read by every keyed command without the lock.
    pub(crate) proxy_redirects: AtomicBool,
    /// The connected clients.
    pub(crate) clients: Clients,
    /// When the server started.
    pub(crate) started: Instant,
    /// The listener's address.
    pub(crate) address: SocketAddr,
    /// Set by a client's SHUTDOWN.
    shutdown_requested: watch::Sender<bool>,
    /// Set to true when the server stops: the accept loop ends.
    stop: watch::Sender<bool>,
}

impl Gateway {
    /// Records a client's SHUTDOWN for the host to act on.
    pub(crate) fn request_shutdown(&self) {
        self.shutdown_requested.send_replace(true);
    }
}

/// A running RESP gateway (see the module docs).
pub struct RespServer {
    gateway: Arc<Gateway>,
    accept: tokio::task::JoinHandle<()>,
    shutdown_requested: watch::Receiver<bool>,
}

impl std::fmt::Debug for RespServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RespServer")
            .field("address", &self.gateway.address)
            .finish()
    }
}

impl RespServer {
    /// Serves `node` on `listener` with `config`, on the current tokio runtime.
    pub fn start(listener: RespListener, node: Arc<Node>, config: RespConfig) -> RespServer {
        let (shutdown_requested, receiver) = watch::channel(false);
        let gateway = Arc::new(Gateway {
            cluster: node.cluster(),
            node,
            proxy_redirects: AtomicBool::new(config.proxy_redirects),
            config: Mutex::new(config),
            clients: Clients::default(),
            started: Instant::now(),
            address: listener.address,
            shutdown_requested,
            stop: watch::channel(false).0,
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&gateway), listener.listener));
        RespServer {
            gateway,
            accept,
            shutdown_requested: receiver,
        }
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.gateway.address
    }

    /// Resolves once a client sent SHUTDOWN (the host then stops the server and the node).
    pub async fn shutdown_requested(&self) {
        let mut receiver = self.shutdown_requested.clone();
        // An error means the server is gone: as good as a request.
        let _ = receiver.wait_for(|requested| *requested).await;
    }

    /// Stops accepting, closes every connection (replies already computed are written
    /// first) and returns once the listening port is released and every connection task
    /// ended.
    pub async fn shutdown(self) {
        self.gateway.stop.send_replace(true);
        if let Err(error) = self.accept.await {
            tracing::warn!(%error, "the RESP accept task ended abnormally");
        }
        tracing::info!(address = %self.gateway.address, "RESP gateway stopped");
    }
}

/// Accepts clients until the server stops, then closes the listener and waits for every
/// connection to end.
async fn accept_loop(gateway: Arc<Gateway>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    let mut stop = gateway.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        // Reap finished connections so the set stays as large as the open ones.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_client(Arc::clone(&gateway), stream, peer));
            }
            Err(error) => {
                tracing::debug!(%error, "could not accept a RESP client");
                // Out of descriptors and the like: let them free up.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    gateway.clients.kill_all();
    while connections.join_next().await.is_some() {}
}

async fn serve_client(gateway: Arc<Gateway>, stream: TcpStream, peer: SocketAddr) {
    let (max, tls) = {
        let config = gateway.config.lock();
        (config.max_clients, config.tls.clone())
    };
    let local = stream.local_addr().unwrap_or(gateway.address);
    let entry = gateway.clients.register(peer, local, max);
    match tls {
        None => {
            let Some(entry) = entry else {
                crate::connection::refuse(stream).await;
                return;
            };
            let id = entry.id;
            let (reader, writer) = stream.into_split();
            crate::connection::run(Arc::clone(&gateway), reader, writer, entry).await;
            gateway.clients.remove(id);
        }
        Some(tls) => {
            let id = entry.as_ref().map(|entry| entry.id);
            let handshake =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream));
            match (handshake.await, entry) {
                (Ok(Ok(secured)), Some(entry)) => {
                    let (reader, writer) = tokio::io::split(secured);
                    crate::connection::run(Arc::clone(&gateway), reader, writer, entry).await;
                }
                (Ok(Ok(secured)), None) => crate::connection::refuse(secured).await,
                (Ok(Err(error)), _) => {
                    tracing::info!(%peer, %error, "a RESP client's TLS handshake failed");
                }
                (Err(_), _) => {
                    tracing::info!(%peer, timeout = ?TLS_HANDSHAKE_TIMEOUT,
                        "closing a RESP client that did not finish its TLS handshake");
                }
            }
            if let Some(id) = id {
                gateway.clients.remove(id);
            }
        }
    }
}
