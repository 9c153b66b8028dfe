//! The transport conformance suite: every scenario is written once, generically over a
//! [`Harness`], and instantiated for TCP, QUIC and the simulated network by `conformance!`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use slotkv_transport::{
    Channel, Direction, EndpointConfig, FrameLimits, LinkError, RequestError, TransportEvent,
};
use support::{connect_all, receive, test_config, wait_event, Harness, PATIENCE};

fn numbered(index: u32, length: usize) -> Bytes {
    let mut frame = vec![(index % 251) as u8; length.max(4)];
    frame[..4].copy_from_slice(&index.to_be_bytes());
    Bytes::from(frame)
}

fn number_of(frame: &Bytes) -> u32 {
    u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]])
}

async fn frames_keep_their_order_within_a_channel<H: Harness>() {
    let harness = H::new();
    let (a, mut a_in) = harness.node("a", test_config()).await;
    let (b, mut b_in) = harness.node("b", test_config()).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    for index in 0..500 {
        a.send_bus(b.local_addr(), numbered(index, 64)).unwrap();
        a.send_bulk(b.local_addr(), numbered(index, 2_000))
            .await
            .unwrap();
    }
    for index in 0..500 {
        let bus = receive(&mut b_in.bus).await;
        assert_eq!(
            (number_of(&bus.payload), bus.channel),
            (index, Channel::Bus)
        );
        assert_eq!(
            &bus.from,
            a.local_addr(),
            "frames are tagged with the sender's address"
        );
        let bulk = receive(&mut b_in.bulk).await;
        assert_eq!(
            (number_of(&bulk.payload), bulk.channel),
            (index, Channel::Bulk)
        );
    }
}

async fn a_stalled_bulk_reader_does_not_block_the_bus<H: Harness>() {
    let harness = H::new();
    let receiver_config = EndpointConfig {
        inbound_queue_frames_max: 4,
        ..test_config()
    };
    let sender_config = EndpointConfig {
        bulk_queue_frames_max: 4,
        ..test_config()
    };
    let (a, mut a_in) = harness.node("a", sender_config).await;
    let (b, mut b_in) = harness.node("b", receiver_config).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    // Nobody reads b's bulk queue: keep sending until backpressure stalls the sender.
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let mut stalled = false;
    for _ in 0..2_000 {
        let send = a.send_bulk(b.local_addr(), chunk.clone());
        if tokio::time::timeout(Duration::from_millis(500), send)
            .await
            .is_err()
        {
            stalled = true;
            break;
        }
    }
    assert!(stalled, "bulk sends never applied backpressure");
    for index in 0..100 {
        a.send_bus(b.local_addr(), numbered(index, 64)).unwrap();
    }
    for index in 0..100 {
        assert_eq!(number_of(&receive(&mut b_in.bus).await.payload), index);
    }
    let answer = tokio::spawn({
        let (a, peer) = (a.clone(), b.local_addr().clone());
        async move { a.request(&peer, Bytes::from_static(b"ping")).await }
    });
    let request = tokio::time::timeout(PATIENCE, b_in.requests.recv())
        .await
        .unwrap()
        .unwrap();
    request
        .responder
        .respond(Bytes::from_static(b"pong"))
        .unwrap();
    assert_eq!(&answer.await.unwrap().unwrap()[..], b"pong");
}

async fn large_frames_arrive_intact<H: Harness>() {
    let harness = H::new();
    let (a, mut a_in) = harness.node("a", test_config()).await;
    let (b, mut b_in) = harness.node("b", test_config()).await;
    let large: Bytes = (0..8 * 1024 * 1024u32)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    connect_all(&a, &mut a_in, b.local_addr()).await;
    a.send_bulk(b.local_addr(), large.clone()).await.unwrap();
    let frame = receive(&mut b_in.bulk).await;
    assert_eq!(frame.payload.len(), large.len());
    assert!(frame.payload == large, "the 8 MiB frame was corrupted");

    let echo = tokio::spawn(async move {
        let request = b_in.requests.recv().await.unwrap();
        let payload = request.payload.clone();
        request.responder.respond(payload).unwrap();
    });
    let payload = large.slice(..4 * 1024 * 1024);
    let response = a.request(b.local_addr(), payload.clone()).await.unwrap();
    assert!(response == payload, "the 4 MiB response was corrupted");
    echo.await.unwrap();
}

async fn an_oversized_frame_closes_the_link_and_the_listener_keeps_serving<H: Harness>() {
    let harness = H::new();
    let strict = EndpointConfig {
        frame_limits: FrameLimits {
            bus_frame_bytes_max: 4_096,
            ..FrameLimits::default()
        },
        ..test_config()
    };
    let (a, mut a_in) = harness.node("a", test_config()).await;
    let (b, mut b_in) = harness.node("b", strict).await;
    let (c, mut c_in) = harness.node("c", test_config()).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    a.send_bus(b.local_addr(), Bytes::from(vec![1u8; 8_192]))
        .unwrap();
    let closed = wait_event(&mut b_in, |event| {
        matches!(
            event,
            TransportEvent::Closed {
                direction: Direction::Inbound,
                channel: Channel::Bus,
                ..
            }
        )
    })
    .await;
    let TransportEvent::Closed { reason, peer, .. } = closed else {
        unreachable!()
    };
    assert_eq!(
        reason,
        LinkError::FrameTooLarge {
            channel: Channel::Bus,
            max_bytes: 4_096
        }
    );
    assert_eq!(&peer, a.local_addr());
    assert_eq!(b.statistics().inbound_closed_frame_too_large, 1);
    // The sender sees its link close and reconnects.
    wait_event(&mut a_in, |event| {
        matches!(
            event,
            TransportEvent::Reconnecting {
                channel: Channel::Bus,
                ..
            }
        )
    })
    .await;
    // Others are still served, and the offender's later, valid frames get through.
    connect_all(&c, &mut c_in, b.local_addr()).await;
    c.send_bus(b.local_addr(), Bytes::from_static(b"from c"))
        .unwrap();
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"from c");
    wait_event(&mut a_in, |event| {
        matches!(
            event,
            TransportEvent::Connected {
                channel: Channel::Bus,
                ..
            }
        )
    })
    .await;
    a.send_bus(b.local_addr(), Bytes::from_static(b"small"))
        .unwrap();
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"small");
    // A local send over the local limit fails without touching the link.
    assert!(a
        .send_bus(b.local_addr(), Bytes::from(vec![0u8; 2 << 20]))
        .is_err());
}

async fn a_closed_peer_is_reconnected_with_backoff<H: Harness>() {
    let harness = H::new();
    let (a, mut a_in) = harness.node("a", test_config()).await;
    let (b, b_in) = harness.node("b", test_config()).await;
    let b_address = b.local_addr().clone();
    connect_all(&a, &mut a_in, &b_address).await;
    drop((b, b_in));
    wait_event(&mut a_in, |event| {
        matches!(
            event,
            TransportEvent::Closed {
                direction: Direction::Outbound,
                channel: Channel::Bus,
                ..
            }
        )
    })
    .await;
    let mut attempts = Vec::new();
    while attempts.len() < 3 {
        let event = wait_event(&mut a_in, |event| {
            matches!(
                event,
                TransportEvent::Reconnecting {
                    channel: Channel::Bus,
                    ..
                }
            )
        })
        .await;
        if let TransportEvent::Reconnecting { attempt, delay, .. } = event {
            assert!(
                delay <= Duration::from_millis(200),
                "delay above the configured cap"
            );
            attempts.push(attempt);
        }
    }
    assert!(
        attempts.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{attempts:?}"
    );

    let (b, mut b_in) = harness.node_at(&b_address, test_config()).await;
    wait_event(&mut a_in, |event| {
        matches!(
            event,
            TransportEvent::Connected {
                channel: Channel::Bus,
                ..
            }
        )
    })
    .await;
    a.send_bus(&b_address, Bytes::from_static(b"again"))
        .unwrap();
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"again");
    drop(b);
}

async fn foreign_credentials_are_rejected_with_a_reason<H: Harness>() {
    let harness = H::new();
    let (b, mut b_in) = harness.node("b", test_config()).await;
    let (intruder, mut intruder_in) = harness.foreign_node("intruder").await;
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
    assert!(
        matches!(reason, LinkError::Authentication(_) | LinkError::Tls(_)),
        "unexpected reason {reason:?}"
    );
    let counted = b.statistics();
    assert!(
        counted.inbound_refused_authentication + counted.inbound_refused_other >= 1,
        "the refusal was not counted: {counted:?}"
    );
    let retry = wait_event(&mut intruder_in, |event| {
        matches!(
            event,
            TransportEvent::Reconnecting {
                channel: Channel::Bus,
                ..
            }
        )
    })
    .await;
    let TransportEvent::Reconnecting { last_error, .. } = retry else {
        unreachable!()
    };
    assert!(
        matches!(
            last_error,
            LinkError::Authentication(_) | LinkError::Tls(_) | LinkError::PeerClosed
        ),
        "unexpected dialer error {last_error:?}"
    );
    // No frame of the intruder was delivered, and members are still served.
    let (a, mut a_in) = harness.node("a", test_config()).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    a.send_bus(b.local_addr(), Bytes::from_static(b"member"))
        .unwrap();
    let frame = receive(&mut b_in.bus).await;
    assert_eq!(
        (&frame.payload[..], &frame.from),
        (&b"member"[..], a.local_addr())
    );
}

async fn many_peers_exchange_frames_concurrently<H: Harness>() {
    const PEERS: usize = 24;
    const FRAMES: u32 = 50;
    let harness = H::new();
    let (hub, _hub_in) = harness.node("hub", test_config()).await;
    let mut hub_in = _hub_in;
    let mut spokes = Vec::new();
    for index in 0..PEERS {
        let (spoke, spoke_in) = harness.node(&format!("spoke{index}"), test_config()).await;
        spokes.push((spoke, spoke_in));
    }
    let mut tasks = Vec::new();
    for (spoke, mut spoke_in) in spokes {
        let hub_address = hub.local_addr().clone();
        tasks.push(tokio::spawn(async move {
            for index in 0..FRAMES {
                spoke
                    .send_bulk(&hub_address, numbered(index, 512))
                    .await
                    .unwrap();
            }
            // Serve one request from the hub, then keep the node alive until told.
            let request = tokio::time::timeout(PATIENCE, spoke_in.requests.recv())
                .await
                .unwrap()
                .unwrap();
            let answer = format!("{}", spoke.local_addr());
            request.responder.respond(Bytes::from(answer)).unwrap();
            (spoke, spoke_in)
        }));
    }
    let mut next: HashMap<String, u32> = HashMap::new();
    for _ in 0..PEERS as u32 * FRAMES {
        let frame = receive(&mut hub_in.bulk).await;
        let expected = next.entry(frame.from.to_string()).or_insert(0);
        assert_eq!(number_of(&frame.payload), *expected, "from {}", frame.from);
        *expected += 1;
    }
    assert_eq!(next.len(), PEERS);
    let peers: Vec<String> = next.keys().cloned().collect();
    let mut answers = Vec::new();
    for peer in peers {
        let (hub, address) = (hub.clone(), slotkv_transport::PeerAddr::new(peer).unwrap());
        answers.push(tokio::spawn(async move {
            let answer = hub
                .request(&address, Bytes::from_static(b"who"))
                .await
                .unwrap();
            assert_eq!(std::str::from_utf8(&answer).unwrap(), address.as_str());
        }));
    }
    for answer in answers {
        answer.await.unwrap();
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn concurrent_requests_are_matched_when_answered_out_of_order<H: Harness>() {
    const REQUESTS: usize = 200;
    let harness = H::new();
    let (a, mut a_in) = harness.node("a", test_config()).await;
    let (b, mut b_in) = harness.node("b", test_config()).await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    let mut pending = Vec::new();
    for index in 0..REQUESTS {
        let (a, peer) = (a.clone(), b.local_addr().clone());
        pending.push(tokio::spawn(async move {
            let payload = Bytes::from(format!("request {index}"));
            let response = a.request(&peer, payload).await.unwrap();
            assert_eq!(
                response,
                Bytes::from(format!("response to request {index}"))
            );
        }));
    }
    let mut received = Vec::new();
    while received.len() < REQUESTS {
        received.push(
            tokio::time::timeout(PATIENCE, b_in.requests.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for request in received.into_iter().rev() {
        let text = std::str::from_utf8(&request.payload).unwrap();
        let answer = Bytes::from(format!("response to {text}"));
        request.responder.respond(answer).unwrap();
    }
    for task in pending {
        task.await.unwrap();
    }
    // A dropped responder is reported as unanswered; a held one times out.
    let b_address = b.local_addr().clone();
    let dropping = tokio::spawn(async move {
        drop(b_in.requests.recv().await);
        let held = b_in.requests.recv().await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        drop(held);
        (b, b_in)
    });
    let unanswered = a.request(&b_address, Bytes::new()).await;
    assert!(
        matches!(unanswered, Err(RequestError::Unanswered { .. })),
        "{unanswered:?}"
    );
    let timeout = Duration::from_millis(300);
    let timed_out = a
        .request_with_timeout(&b_address, Bytes::new(), timeout)
        .await;
    assert!(
        matches!(timed_out, Err(RequestError::Timeout { .. })),
        "{timed_out:?}"
    );
    dropping.await.unwrap();
}

macro_rules! conformance {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn frames_keep_their_order_within_a_channel() {
                super::frames_keep_their_order_within_a_channel::<$harness>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_stalled_bulk_reader_does_not_block_the_bus() {
                super::a_stalled_bulk_reader_does_not_block_the_bus::<$harness>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn large_frames_arrive_intact() {
                super::large_frames_arrive_intact::<$harness>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_oversized_frame_closes_the_link_and_the_listener_keeps_serving() {
                super::an_oversized_frame_closes_the_link_and_the_listener_keeps_serving::<$harness>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_closed_peer_is_reconnected_with_backoff() {
                super::a_closed_peer_is_reconnected_with_backoff::<$harness>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn foreign_credentials_are_rejected_with_a_reason() {
                super::foreign_credentials_are_rejected_with_a_reason::<$harness>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_peers_exchange_frames_concurrently() {
                super::many_peers_exchange_frames_concurrently::<$harness>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_requests_are_matched_when_answered_out_of_order() {
                super::concurrent_requests_are_matched_when_answered_out_of_order::<$harness>().await;
            }
        }
    };
}

conformance!(tcp, support::TcpHarness);
conformance!(tcp_tls, support::TcpTlsHarness);
conformance!(quic, support::QuicHarness);
conformance!(sim, support::SimHarness);

/// A plain TCP node and a TLS one never link, either way round: the TLS listener refuses the
/// plain dialer's handshake bytes as TLS, the plain listener refuses the TLS ClientHello as
/// a malformed handshake; each counts the refusal, and no frame is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tls_tcp_nodes_refuse_each_other() {
    use slotkv_transport::quic::DevCertificateAuthority;
    use slotkv_transport::{Endpoint, PeerAddr};
    let authority = DevCertificateAuthority::generate().unwrap();
    let loopback = || PeerAddr::new("127.0.0.1:0").unwrap();
    let tls = support::tcp_tls_transport(&authority, &authority);
    let plain = support::tcp_plain_transport();
    for (listener, dialer, listener_is_tls) in
        [(tls.clone(), plain.clone(), true), (plain, tls, false)]
    {
        let (b, mut b_in) = Endpoint::bind(listener, loopback(), test_config())
            .await
            .unwrap();
        let (a, _a_in) = Endpoint::bind(dialer, loopback(), test_config())
            .await
            .unwrap();
        a.send_bus(b.local_addr(), Bytes::from_static(b"across modes"))
            .unwrap();
        let rejected = wait_event(&mut b_in, |event| {
            matches!(event, TransportEvent::Rejected { .. })
        })
        .await;
        let TransportEvent::Rejected { reason, .. } = rejected else {
            unreachable!()
        };
        assert!(
            matches!(
                reason,
                LinkError::Tls(_) | LinkError::Authentication(_) | LinkError::Protocol(_)
            ),
            "listener is TLS: {listener_is_tls}; unexpected reason {reason:?}"
        );
        assert!(b_in.bus.try_recv().is_err(), "a frame crossed the modes");
        let counted = b.statistics();
        assert!(
            counted.inbound_refused_authentication
                + counted.inbound_refused_protocol
                + counted.inbound_refused_other
                >= 1,
            "the refusal was not counted: {counted:?}"
        );
    }
}
