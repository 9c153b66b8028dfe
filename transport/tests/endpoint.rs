//! Peer-manager behaviours that do not depend on the transport, shown over the simulated
//! network: bus drops are counted instead of blocking, `disconnect` stops a peer's links and
//! fails its requests, bad configuration is refused, and shutdown stops everything.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slotkv_transport::sim::SimNet;
use slotkv_transport::{
    BindError, Channel, Direction, Endpoint, EndpointConfig, Incoming, LinkError, PeerAddr,
    RequestError, SendError, TransportEvent,
};
use support::{connect_all, test_config, wait_event, PATIENCE};

async fn node(net: &SimNet, name: &str, config: EndpointConfig) -> (Endpoint, Incoming) {
    let transport = Arc::new(net.transport());
    Endpoint::bind(transport, PeerAddr::new(name).unwrap(), config)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_bus_queue_drops_and_counts_without_blocking() {
    let net = SimNet::new(5);
    let config = EndpointConfig {
        bus_queue_frames_max: 4,
        ..test_config()
    };
    let (a, _a_in) = node(&net, "a", config).await;
    let nobody = PeerAddr::new("nobody").unwrap();
    let outcomes: Vec<_> = (0..10)
        .map(|_| a.send_bus(&nobody, Bytes::from_static(b"gossip")))
        .collect();
    assert!(outcomes[..4].iter().all(Result::is_ok), "{outcomes:?}");
    assert!(outcomes[4..]
        .iter()
        .all(|outcome| matches!(outcome, Err(SendError::QueueFull { .. }))));
    assert_eq!(a.bus_frames_dropped(&nobody), 6);
}

#[tokio::test]
async fn established_links_are_listed_on_both_sides_with_what_waits_to_be_sent() {
    let net = SimNet::new(7);
    let (a, mut a_in) = node(&net, "a", test_config()).await;
    let (b, mut b_in) = node(&net, "b", test_config()).await;
    assert!(a.links().is_empty());
    connect_all(&a, &mut a_in, b.local_addr()).await;
    let outbound: Vec<Channel> = a
        .links()
        .iter()
        .filter(|link| link.direction == Direction::Outbound && &link.peer == b.local_addr())
        .map(|link| link.channel)
        .collect();
    assert_eq!(outbound.len(), 3, "{:?}", a.links());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b.links().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", b.links());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(b
        .links()
        .iter()
        .all(|link| link.direction == Direction::Inbound && &link.peer == a.local_addr()));
    // A peer that never answers keeps its frames queued: none is established, none listed.
    let nobody = PeerAddr::new("nobody").unwrap();
    a.send_bus(&nobody, Bytes::from_static(b"gossip")).unwrap();
    assert!(a.links().iter().all(|link| link.peer != nobody));
    // Frames written are taken off the count: after delivery nothing is left queued.
    for _ in 0..5 {
        a.send_bus(b.local_addr(), Bytes::from_static(b"gossip"))
            .unwrap();
    }
    for _ in 0..5 {
        tokio::time::timeout(PATIENCE, b_in.bus.recv())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(a
        .links()
        .iter()
        .all(|link| link.queued_bytes == 0 && link.queued_frames == 0));
    assert!(a.disconnect(b.local_addr()));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !a.links().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", a.links());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn disconnect_closes_the_links_and_fails_outstanding_requests() {
    let net = SimNet::new(6);
    let (a, mut a_in) = node(&net, "a", test_config()).await;
    let (b, mut b_in) = node(&net, "b", test_config()).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    let pending = tokio::spawn({
        let (a, peer) = (a.clone(), b.local_addr().clone());
        async move { a.request(&peer, Bytes::from_static(b"slow")).await }
    });
    let _held = tokio::time::timeout(PATIENCE, b_in.requests.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(a.disconnect(b.local_addr()));
    let failed = pending.await.unwrap();
    assert!(
        matches!(
            failed,
            Err(RequestError::LinkClosed {
                reason: LinkError::LocalClose,
                ..
            })
        ),
        "{failed:?}"
    );
    wait_event(&mut a_in, |event| {
        matches!(
            event,
            TransportEvent::Closed {
                direction: Direction::Outbound,
                channel: Channel::Bus,
                reason: LinkError::LocalClose,
                ..
            }
        )
    })
    .await;
    assert!(!a.disconnect(b.local_addr()), "the peer is forgotten");
}

#[tokio::test]
async fn out_of_range_configuration_is_refused_at_bind() {
    let net = SimNet::new(7);
    let config = EndpointConfig {
        requests_outstanding_max: 0,
        ..test_config()
    };
    let refused = Endpoint::bind(
        Arc::new(net.transport()),
        PeerAddr::new("a").unwrap(),
        config,
    )
    .await;
    assert!(
        matches!(refused, Err(BindError::Config(error)) if error.field == "requests_outstanding_max")
    );
}

#[tokio::test]
async fn shutdown_closes_links_and_refuses_new_work() {
    let net = SimNet::new(8);
    let (a, mut a_in) = node(&net, "a", test_config()).await;
    let (b, mut b_in) = node(&net, "b", test_config()).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    a.shutdown();
    assert_eq!(
        a.send_bus(b.local_addr(), Bytes::new()),
        Err(SendError::Shutdown)
    );
    let refused = a
        .request_with_timeout(b.local_addr(), Bytes::new(), Duration::from_millis(100))
        .await;
    assert_eq!(refused, Err(RequestError::Shutdown));
    wait_event(&mut b_in, |event| {
        matches!(
            event,
            TransportEvent::Closed {
                direction: Direction::Inbound,
                reason: LinkError::PeerClosed,
                ..
            }
        )
    })
    .await;
}
