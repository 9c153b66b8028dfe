//! Shared fixtures of the scenario tests: one harness per transport and event helpers.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use slotkv_transport::quic::{DevCertificateAuthority, QuicConfig, QuicTransport};
use slotkv_transport::sim::SimNet;
use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTls, TcpTransport};
use slotkv_transport::{
    BackoffConfig, Channel, Direction, Endpoint, EndpointConfig, InboundFrame, Incoming, PeerAddr,
    Transport, TransportEvent,
};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A configuration with short timeouts and backoff so failures show quickly.
pub fn test_config() -> EndpointConfig {
    EndpointConfig {
        connect_timeout_ms: 2_000,
        hello_timeout_ms: 2_000,
        request_timeout_ms: 5_000,
        backoff: BackoffConfig {
            delay_ms_base: 10,
            delay_ms_max: 200,
        },
        jitter_seed: Some(7),
        ..EndpointConfig::default()
    }
}

/// Makes nodes of one isolated cluster over one transport.
pub trait Harness: Sized + Send + Sync + 'static {
    /// A fresh world (new secret, new CA, new simulated network).
    fn new() -> Self;
    /// A transport carrying this cluster's credentials.
    fn transport(&self) -> Arc<dyn Transport>;
    /// A transport whose credentials belong to another cluster.
    fn foreign_transport(&self) -> Arc<dyn Transport>;
    /// The address a new node should listen on (`name` is used by the simulated network).
    fn address(&self, name: &str) -> PeerAddr;
    /// The simulated network, if this harness has one.
    fn simnet(&self) -> Option<SimNet> {
        None
    }

    /// Binds a node of this cluster.
    async fn node(&self, name: &str, config: EndpointConfig) -> (Endpoint, Incoming) {
        Endpoint::bind(self.transport(), self.address(name), config)
            .await
            .unwrap()
    }

    /// Binds a node with another cluster's credentials.
    async fn foreign_node(&self, name: &str) -> (Endpoint, Incoming) {
        Endpoint::bind(self.foreign_transport(), self.address(name), test_config())
            .await
            .unwrap()
    }

    /// Binds a node at exactly `address`, retrying while the old owner releases it.
    async fn node_at(&self, address: &PeerAddr, config: EndpointConfig) -> (Endpoint, Incoming) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match Endpoint::bind(self.transport(), address.clone(), config.clone()).await {
                Ok(bound) => return bound,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    eprintln!("rebinding {address}: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot rebind {address}: {error}"),
            }
        }
    }
}

const SECRET: &[u8] = b"conformance-suite-cluster-secret";
const FOREIGN_SECRET: &[u8] = b"some-other-cluster-secret-value!";

/// TCP on loopback with an HMAC cluster secret.
pub struct TcpHarness;

impl Harness for TcpHarness {
    fn new() -> Self {
        TcpHarness
    }
    fn transport(&self) -> Arc<dyn Transport> {
        tcp_transport(SECRET)
    }
    fn foreign_transport(&self) -> Arc<dyn Transport> {
        tcp_transport(FOREIGN_SECRET)
    }
    fn address(&self, _name: &str) -> PeerAddr {
        PeerAddr::new("127.0.0.1:0").unwrap()
    }
}

fn tcp_transport(secret: &[u8]) -> Arc<dyn Transport> {
    let secret = ClusterSecret::new(secret.to_vec()).unwrap();
    Arc::new(TcpTransport::new(TcpConfig::new(secret)))
}

/// TCP on loopback under mutual TLS (node certificates from a development cluster CA),
/// the HMAC handshake inside it. The foreign node knows the secret and trusts our CA but
/// presents a certificate of another CA: TLS alone must turn it away.
pub struct TcpTlsHarness {
    authority: DevCertificateAuthority,
    foreign_authority: DevCertificateAuthority,
}

impl Harness for TcpTlsHarness {
    fn new() -> Self {
        TcpTlsHarness {
            authority: DevCertificateAuthority::generate().unwrap(),
            foreign_authority: DevCertificateAuthority::generate().unwrap(),
        }
    }
    fn transport(&self) -> Arc<dyn Transport> {
        tcp_tls_transport(&self.authority, &self.authority)
    }
    fn foreign_transport(&self) -> Arc<dyn Transport> {
        tcp_tls_transport(&self.foreign_authority, &self.authority)
    }
    fn address(&self, _name: &str) -> PeerAddr {
        PeerAddr::new("127.0.0.1:0").unwrap()
    }
}

/// A TLS-over-TCP transport with a certificate of `issuer`, trusting `trusted`.
pub fn tcp_tls_transport(
    issuer: &DevCertificateAuthority,
    trusted: &DevCertificateAuthority,
) -> Arc<dyn Transport> {
    let identity = issuer.issue_node_identity().unwrap();
    let tls = TcpTls::new(&identity, &trusted.trust_anchor()).unwrap();
    let secret = ClusterSecret::new(SECRET.to_vec()).unwrap();
    Arc::new(TcpTransport::new(TcpConfig::new(secret).with_tls(tls)))
}

/// Plain TCP with this suite's secret (no TLS).
pub fn tcp_plain_transport() -> Arc<dyn Transport> {
    tcp_transport(SECRET)
}

/// QUIC on loopback with node certificates from a development cluster CA.
pub struct QuicHarness {
    authority: DevCertificateAuthority,
    foreign_authority: DevCertificateAuthority,
}

impl Harness for QuicHarness {
    fn new() -> Self {
        QuicHarness {
            authority: DevCertificateAuthority::generate().unwrap(),
            foreign_authority: DevCertificateAuthority::generate().unwrap(),
        }
    }
    fn transport(&self) -> Arc<dyn Transport> {
        quic_transport(&self.authority)
    }
    fn foreign_transport(&self) -> Arc<dyn Transport> {
        // Trusts our CA but presents a certificate from another one.
        let identity = self.foreign_authority.issue_node_identity().unwrap();
        let config = QuicConfig::new(identity, self.authority.trust_anchor());
        Arc::new(QuicTransport::new(config).unwrap())
    }
    fn address(&self, _name: &str) -> PeerAddr {
        PeerAddr::new("127.0.0.1:0").unwrap()
    }
}

fn quic_transport(authority: &DevCertificateAuthority) -> Arc<dyn Transport> {
    let identity = authority.issue_node_identity().unwrap();
    let config = QuicConfig::new(identity, authority.trust_anchor());
    Arc::new(QuicTransport::new(config).unwrap())
}

/// The in-memory simulated network.
pub struct SimHarness {
    net: SimNet,
}

impl Harness for SimHarness {
    fn new() -> Self {
        SimHarness {
            net: SimNet::new(42),
        }
    }
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.net.transport())
    }
    fn foreign_transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.net.transport_with_credential(99))
    }
    fn address(&self, name: &str) -> PeerAddr {
        PeerAddr::new(name).unwrap()
    }
    fn simnet(&self) -> Option<SimNet> {
        Some(self.net.clone())
    }
}

/// Waits for the first event matching `predicate`, skipping others.
pub async fn wait_event(
    incoming: &mut Incoming,
    predicate: impl Fn(&TransportEvent) -> bool,
) -> TransportEvent {
    let waiting = async {
        loop {
            let event = incoming.events.recv().await.expect("event queue closed");
            if predicate(&event) {
                return event;
            }
        }
    };
    tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the expected event did not arrive")
}

/// Opens the outbound links from `endpoint` to `peer` and waits until all three are up.
pub async fn connect_all(endpoint: &Endpoint, incoming: &mut Incoming, peer: &PeerAddr) {
    endpoint.connect(peer).unwrap();
    for _ in Channel::ALL {
        wait_event(incoming, |event| {
            matches!(event, TransportEvent::Connected { peer: p, direction: Direction::Outbound, .. } if p == peer)
        })
        .await;
    }
}

/// Receives one frame or panics after [`PATIENCE`].
pub async fn receive(queue: &mut mpsc::Receiver<InboundFrame>) -> InboundFrame {
    tokio::time::timeout(PATIENCE, queue.recv())
        .await
        .expect("no frame arrived in time")
        .expect("frame queue closed")
}
