//! Raw-socket tests of the TCP transport: a hostile or broken client speaking bytes directly
//! to a listening endpoint never causes a panic or a large allocation, is reported with a
//! reason, and does not stop the listener serving well-behaved peers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::framing::encode_hello;
use crate::{Direction, Endpoint, EndpointConfig, Incoming, TransportEvent};

const SECRET: &[u8] = b"raw-socket-tests-cluster-secret!";

fn transport(handshake_timeout_ms: u64) -> Arc<dyn Transport> {
    let mut config = TcpConfig::new(ClusterSecret::new(SECRET.to_vec()).unwrap());
    config.handshake_timeout_ms = handshake_timeout_ms;
    Arc::new(TcpTransport::new(config))
}

async fn node() -> (Endpoint, Incoming) {
    let address = PeerAddr::new("127.0.0.1:0").unwrap();
    Endpoint::bind(transport(500), address, EndpointConfig::default())
        .await
        .unwrap()
}

async fn next_event(
    incoming: &mut Incoming,
    predicate: impl Fn(&TransportEvent) -> bool,
) -> TransportEvent {
    let waiting = async {
        loop {
            let event = incoming.events.recv().await.unwrap();
            if predicate(&event) {
                return event;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
}

/// A raw socket that has passed the handshake and sent a valid hello on `channel`.
async fn authenticated_socket(target: &PeerAddr, channel: Channel) -> TcpStream {
    let mut stream = TcpStream::connect(target.as_str()).await.unwrap();
    let key = ClusterSecret::new(SECRET.to_vec()).unwrap().key;
    handshake::dial(&mut stream, &key, channel).await.unwrap();
    let hello = encode_hello(channel, &PeerAddr::new("127.0.0.1:1").unwrap());
    stream
        .write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&hello).await.unwrap();
    stream
}

/// Shows the listener still serves: a real peer connects and its frame arrives.
async fn assert_still_serving(target: &Endpoint, target_in: &mut Incoming) {
    let (peer, _peer_in) = node().await;
    peer.send_bus(target.local_addr(), Bytes::from_static(b"still here"))
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), target_in.bus.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&frame.payload[..], b"still here");
}

fn closed_inbound(event: &TransportEvent) -> bool {
    matches!(
        event,
        TransportEvent::Closed {
            direction: Direction::Inbound,
            ..
        }
    )
}

#[tokio::test]
async fn a_four_gibibyte_length_prefix_closes_the_link_without_allocating() {
    let (target, mut target_in) = node().await;
    let mut raw = authenticated_socket(target.local_addr(), Channel::Bulk).await;
    raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let event = next_event(&mut target_in, closed_inbound).await;
    let TransportEvent::Closed { reason, .. } = event else {
        unreachable!()
    };
    let max_bytes = crate::BULK_FRAME_BYTES_MAX_DEFAULT;
    assert_eq!(
        reason,
        LinkError::FrameTooLarge {
            channel: Channel::Bulk,
            max_bytes
        }
    );
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest).await;
    assert_eq!(target.statistics().inbound_closed_frame_too_large, 1);
    assert_still_serving(&target, &mut target_in).await;
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_is_rejected_with_a_reason() {
    let (target, mut target_in) = node().await;
    let mut raw = TcpStream::connect(target.local_addr().as_str())
        .await
        .unwrap();
    raw.write_all(&[0xA5; 64]).await.unwrap();
    let event = next_event(&mut target_in, |event| {
        matches!(event, TransportEvent::Rejected { .. })
    })
    .await;
    let TransportEvent::Rejected { reason, .. } = event else {
        unreachable!()
    };
    assert!(matches!(reason, LinkError::Authentication(_)), "{reason:?}");
    assert_eq!(target.statistics().inbound_refused_authentication, 1);
    let mut rest = Vec::new();
    assert!(raw.read_to_end(&mut rest).await.is_ok() || rest.is_empty());
    assert_still_serving(&target, &mut target_in).await;
}

#[tokio::test]
async fn a_truncated_frame_then_disconnect_closes_the_link_with_a_reason() {
    let (target, mut target_in) = node().await;
    let mut raw = authenticated_socket(target.local_addr(), Channel::Bus).await;
    raw.write_all(&100u32.to_be_bytes()).await.unwrap();
    raw.write_all(b"only ten b").await.unwrap();
    drop(raw);
    let event = next_event(&mut target_in, closed_inbound).await;
    let TransportEvent::Closed { reason, .. } = event else {
        unreachable!()
    };
    assert!(
        matches!(reason, LinkError::Protocol(_) | LinkError::PeerClosed),
        "{reason:?}"
    );
    assert_still_serving(&target, &mut target_in).await;
}

#[tokio::test]
async fn garbage_after_the_handshake_is_rejected_as_a_malformed_hello() {
    let (target, mut target_in) = node().await;
    let mut raw = TcpStream::connect(target.local_addr().as_str())
        .await
        .unwrap();
    let key = ClusterSecret::new(SECRET.to_vec()).unwrap().key;
    handshake::dial(&mut raw, &key, Channel::Request)
        .await
        .unwrap();
    raw.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    let event = next_event(&mut target_in, |event| {
        matches!(event, TransportEvent::Rejected { .. })
    })
    .await;
    let TransportEvent::Rejected { reason, .. } = event else {
        unreachable!()
    };
    assert!(matches!(reason, LinkError::Protocol(_)), "{reason:?}");
    assert_eq!(target.statistics().inbound_refused_protocol, 1);
    assert_still_serving(&target, &mut target_in).await;
}

#[tokio::test]
async fn disconnecting_mid_handshake_or_staying_silent_is_rejected() {
    let (target, mut target_in) = node().await;
    let mut raw = TcpStream::connect(target.local_addr().as_str())
        .await
        .unwrap();
    raw.write_all(b"SKVA").await.unwrap();
    drop(raw);
    let event = next_event(&mut target_in, |event| {
        matches!(event, TransportEvent::Rejected { .. })
    })
    .await;
    let TransportEvent::Rejected { reason, .. } = event else {
        unreachable!()
    };
    assert!(matches!(reason, LinkError::Authentication(_)), "{reason:?}");

    let _silent = TcpStream::connect(target.local_addr().as_str())
        .await
        .unwrap();
    let event = next_event(&mut target_in, |event| {
        matches!(event, TransportEvent::Rejected { .. })
    })
    .await;
    let TransportEvent::Rejected { reason, .. } = event else {
        unreachable!()
    };
    assert!(matches!(reason, LinkError::Timeout { .. }), "{reason:?}");
    assert_still_serving(&target, &mut target_in).await;
}

#[tokio::test]
async fn a_client_with_the_wrong_secret_learns_why() {
    let (target, _target_in) = node().await;
    let mut raw = TcpStream::connect(target.local_addr().as_str())
        .await
        .unwrap();
    let wrong = ClusterSecret::new(b"not-the-cluster-secret-at-all!!!".to_vec())
        .unwrap()
        .key;
    let outcome = handshake::dial(&mut raw, &wrong, Channel::Bus).await;
    assert!(
        matches!(outcome, Err(LinkError::Authentication(_))),
        "{outcome:?}"
    );
}

/// Opens `count` TCP connections to `target` from `source` (a loopback alias such as
/// 127.0.0.2) that never send a byte.
async fn idle_connections_from(source: &str, target: &PeerAddr, count: usize) -> Vec<TcpStream> {
    let target: std::net::SocketAddr = target.as_str().parse().unwrap();
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        connections.push(socket.connect(target).await.unwrap());
    }
    connections
}

/// How many of `connections` the listener closed within `wait` (the rest it still holds).
async fn count_closed_by_the_listener(connections: &mut [TcpStream], wait: Duration) -> usize {
    let mut closed = 0;
    for connection in connections.iter_mut() {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(wait, connection.read(&mut byte)).await {
            closed += 1;
        }
    }
    closed
}

#[tokio::test]
async fn a_flood_of_idle_connections_from_one_address_leaves_room_for_real_peers() {
    let address = PeerAddr::new("127.0.0.1:0").unwrap();
    let (target, mut target_in) =
        Endpoint::bind(transport(3_000), address, EndpointConfig::default())
            .await
            .unwrap();
    let flood = 200;
    let mut idle = idle_connections_from("127.0.0.2", target.local_addr(), flood).await;
    // A real peer from 127.0.0.1 connects and exchanges frames while the flood holds on.
    let (peer, mut peer_in) = node().await;
    peer.send_bus(
        target.local_addr(),
        Bytes::from_static(b"through the flood"),
    )
    .unwrap();
    let frame = tokio::time::timeout(Duration::from_millis(2_000), target_in.bus.recv())
        .await
        .expect("the real peer's frame did not arrive during the flood")
        .unwrap();
    assert_eq!(&frame.payload[..], b"through the flood");
    target
        .send_bus(peer.local_addr(), Bytes::from_static(b"and back"))
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_millis(2_000), peer_in.bus.recv())
        .await
        .expect("the answer did not arrive during the flood")
        .unwrap();
    assert_eq!(&frame.payload[..], b"and back");
    // The listener holds at most the per-source budget of the flood; it closed the rest.
    let closed = count_closed_by_the_listener(&mut idle, Duration::from_millis(20)).await;
    let held = flood - closed;
    assert!(
        held <= HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT,
        "{held} idle connections from one address held"
    );
    // Every refusal is counted once the endpoint has taken it from the listener.
    let refused = flood - HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while target.statistics().inbound_refused_overloaded < refused as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            target.statistics()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The held ones are dropped at the handshake timeout and counted too.
    let closed = count_closed_by_the_listener(&mut idle, Duration::from_secs(5)).await;
    assert_eq!(
        closed, flood,
        "every idle connection was closed at the timeout"
    );
    let statistics = target.statistics();
    assert_eq!(statistics.inbound_refused_overloaded, refused as u64);
    assert_eq!(
        statistics.inbound_refused_timeout,
        HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT as u64
    );
}
