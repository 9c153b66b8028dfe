//! Per-node identity at the transport (TLS over TCP and QUIC with identities bound): a
//! dialer refuses a listener whose certificate does not name the host it dialed, and
//! connects to one whose certificate does.

use std::sync::Arc;

use slotkv_transport::quic::{DevCertificateAuthority, QuicConfig, QuicTransport};
use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTls, TcpTransport};
use slotkv_transport::tls::{NodeIdentity, PeerIdentity};
use slotkv_transport::{Channel, FrameLimits, LinkError, PeerAddr, Transport};

fn tcp(authority: &DevCertificateAuthority, identity: &NodeIdentity) -> Arc<dyn Transport> {
    let tls = TcpTls::new(identity, &authority.trust_anchor())
        .unwrap()
        .binding_identities();
    let secret = ClusterSecret::new(b"identity tests cluster secret".to_vec()).unwrap();
    Arc::new(TcpTransport::new(TcpConfig::new(secret).with_tls(tls)))
}

fn quic(authority: &DevCertificateAuthority, identity: &NodeIdentity) -> Arc<dyn Transport> {
    let mut config = QuicConfig::new(identity.clone(), authority.trust_anchor());
    config.bind_identities = true;
    Arc::new(QuicTransport::new(config).unwrap())
}

/// Listens on 127.0.0.2 with a certificate naming only 127.0.0.1 (and the dev names), then
/// on 127.0.0.1: the first dial is refused as an authentication failure, the second connects.
async fn dial_checks_the_listener_name(
    make: fn(&DevCertificateAuthority, &NodeIdentity) -> Arc<dyn Transport>,
) {
    let authority = DevCertificateAuthority::generate().unwrap();
    let listener_identity = authority
        .issue_named_node_identity(&["127.0.0.1".to_string()])
        .unwrap();
    let dialer_identity = authority
        .issue_named_node_identity(&["127.0.0.1".to_string()])
        .unwrap();
    for (host, named) in [("127.0.0.2", false), ("127.0.0.1", true)] {
        let listening = make(&authority, &listener_identity);
        let listener = listening
            .listen(
                &PeerAddr::new(format!("{host}:0")).unwrap(),
                FrameLimits::default(),
            )
            .await
            .unwrap();
        let dialer = make(&authority, &dialer_identity);
        // QUIC dials from its own listening socket.
        let _dialer_listener = dialer
            .listen(
                &PeerAddr::new("127.0.0.1:0").unwrap(),
                FrameLimits::default(),
            )
            .await
            .unwrap();
        let dialed = dialer
            .connect(&listener.local_addr(), Channel::Bus, FrameLimits::default())
            .await;
        match (dialed, named) {
            (Ok(_), true) => {}
            (Err(LinkError::Authentication(reason)), false) => {
                assert!(reason.contains("does not name 127.0.0.2"), "{reason}")
            }
            (Err(error), _) => panic!("dialing {host}: {error:?}"),
            (Ok(_), false) => panic!("connected to a listener not named {host}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_dialer_refuses_a_listener_its_certificate_does_not_name() {
    dial_checks_the_listener_name(tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_dialer_refuses_a_listener_its_certificate_does_not_name() {
    dial_checks_the_listener_name(quic).await;
}

#[test]
fn a_peer_identity_names_its_dns_and_ip_subject_alternative_names_only() {
    let authority = DevCertificateAuthority::generate().unwrap();
    let identity = authority
        .issue_named_node_identity(&["10.0.0.7".to_string(), "n7.cache.internal".to_string()])
        .unwrap();
    let peer = PeerIdentity::new(identity.certificate().unwrap().clone());
    for name in ["10.0.0.7", "n7.cache.internal", "slotkv-node", "localhost"] {
        assert!(peer.names(name), "{name}");
    }
    for name in ["10.0.0.8", "n8.cache.internal", "", "not a name", "::1"] {
        assert!(!peer.names(name), "{name}");
    }
}
