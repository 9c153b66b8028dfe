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
