//! QUIC-specific scenarios: certificate pinning with self-signed identities, and stray UDP
//! garbage at the listening socket.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use slotkv_transport::quic::{
    self_signed_node_identity, NodeIdentity, QuicConfig, QuicTransport, TrustAnchor,
};
use slotkv_transport::{Endpoint, Incoming, LinkError, PeerAddr, TransportEvent};
use support::{connect_all, receive, test_config, wait_event};

async fn pinned_node(identity: NodeIdentity, pins: &[&NodeIdentity]) -> (Endpoint, Incoming) {
    let pinned = pins
        .iter()
        .map(|pin| pin.certificate().unwrap().clone())
        .collect();
    let config = QuicConfig::new(identity, TrustAnchor::pinned(pinned));
    let transport = Arc::new(QuicTransport::new(config).unwrap());
    let address = PeerAddr::new("127.0.0.1:0").unwrap();
    Endpoint::bind(transport, address, test_config())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_self_signed_nodes_connect_and_unpinned_ones_are_rejected() {
    let (first, second, stranger) = (
        self_signed_node_identity().unwrap(),
        self_signed_node_identity().unwrap(),
        self_signed_node_identity().unwrap(),
    );
    let pins = [&first, &second];
    let (a, mut a_in) = pinned_node(first.clone(), &pins).await;
    let (b, mut b_in) = pinned_node(second.clone(), &pins).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    a.send_bus(b.local_addr(), Bytes::from_static(b"pinned"))
        .unwrap();
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"pinned");

    // The stranger pins everybody (so it would accept them) but nobody pins it.
    let (intruder, _intruder_in) =
        pinned_node(stranger.clone(), &[&first, &second, &stranger]).await;
    intruder
        .send_bus(b.local_addr(), Bytes::from_static(b"let me in"))
        .unwrap();
    let rejected = wait_event(&mut b_in, |event| {
        matches!(event, TransportEvent::Rejected { .. })
    })
    .await;
    let TransportEvent::Rejected { reason, .. } = rejected else {
        unreachable!()
    };
    assert!(matches!(reason, LinkError::Tls(_)), "{reason:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_garbage_at_the_listener_is_ignored() {
    let harness = <support::QuicHarness as support::Harness>::new();
    let (a, mut a_in) = support::Harness::node(&harness, "a", test_config()).await;
    let (b, mut b_in) = support::Harness::node(&harness, "b", test_config()).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut datagram = [0u8; 1_200];
    for round in 0..200u32 {
        for (index, byte) in datagram.iter_mut().enumerate() {
            *byte = (round as usize * 31 + index * 7) as u8;
        }
        let length = 1 + (round as usize * 97) % datagram.len();
        socket
            .send_to(&datagram[..length], b.local_addr().as_str())
            .await
            .unwrap();
    }
    connect_all(&a, &mut a_in, b.local_addr()).await;
    a.send_bus(b.local_addr(), Bytes::from_static(b"after garbage"))
        .unwrap();
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"after garbage");
}
