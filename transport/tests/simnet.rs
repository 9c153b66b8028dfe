//! Scenario tests of the simulated network's fault controls: partitions and healing,
//! kill and restore, frame drops (seeded, replayable) and latency (pipelined, in order).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use slotkv_transport::sim::SimNet;
use slotkv_transport::{
    Channel, Direction, Endpoint, Incoming, LinkError, PeerAddr, TransportEvent,
};
use support::{connect_all, receive, test_config, wait_event, PATIENCE};

async fn node(net: &SimNet, name: &str) -> (Endpoint, Incoming) {
    let transport = std::sync::Arc::new(net.transport());
    Endpoint::bind(transport, PeerAddr::new(name).unwrap(), test_config())
        .await
        .unwrap()
}

fn unreachable_close(event: &TransportEvent) -> bool {
    matches!(
        event,
        TransportEvent::Closed {
            direction: Direction::Outbound,
            channel: Channel::Bus,
            reason: LinkError::Unreachable(_),
            ..
        }
    )
}

async fn nothing_arrives(queue: &mut tokio::sync::mpsc::Receiver<slotkv_transport::InboundFrame>) {
    let waited = tokio::time::timeout(Duration::from_millis(300), queue.recv()).await;
    assert!(waited.is_err(), "a frame crossed the partition: {waited:?}");
}

#[tokio::test]
async fn a_partition_cuts_links_until_healed() {
    let net = SimNet::new(1);
    let (a, mut a_in) = node(&net, "a").await;
    let (b, mut b_in) = node(&net, "b").await;
    let (c, mut c_in) = node(&net, "c").await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    connect_all(&a, &mut a_in, c.local_addr()).await;
    net.partition(&["a"], &["b"]);
    wait_event(&mut a_in, unreachable_close).await;
    a.send_bus(b.local_addr(), Bytes::from_static(b"queued"))
        .unwrap();
    nothing_arrives(&mut b_in.bus).await;
    a.send_bus(c.local_addr(), Bytes::from_static(b"to c"))
        .unwrap();
    assert_eq!(&receive(&mut c_in.bus).await.payload[..], b"to c");

    net.heal();
    // Frames queued while partitioned go out once the link reconnects.
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"queued");
    a.send_bus(b.local_addr(), Bytes::from_static(b"healed"))
        .unwrap();
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"healed");
}

#[tokio::test]
async fn a_killed_node_is_unreachable_until_restored() {
    let net = SimNet::new(2);
    let (a, mut a_in) = node(&net, "a").await;
    let (b, mut b_in) = node(&net, "b").await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    net.kill("b");
    let closed = wait_event(&mut a_in, unreachable_close).await;
    let TransportEvent::Closed { reason, .. } = closed else {
        unreachable!()
    };
    assert!(reason.to_string().contains("killed"), "{reason}");
    let failed = a
        .request_with_timeout(b.local_addr(), Bytes::new(), Duration::from_millis(200))
        .await;
    assert!(failed.is_err());
    net.restore("b");
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
    a.send_bus(b.local_addr(), Bytes::from_static(b"back"))
        .unwrap();
    assert_eq!(&receive(&mut b_in.bus).await.payload[..], b"back");
}

/// Sends 1 000 numbered bus frames with `percent` dropped; returns the numbers received.
async fn survivors(seed: u64, percent: u8) -> Vec<u32> {
    let net = SimNet::new(seed);
    let (a, mut a_in) = node(&net, "a").await;
    let (b, mut b_in) = node(&net, "b").await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    net.set_drop_percent(percent);
    for index in 0..1_000u32 {
        a.send_bus(b.local_addr(), Bytes::copy_from_slice(&index.to_be_bytes()))
            .unwrap();
    }
    a.send_bulk(b.local_addr(), Bytes::from_static(b"end"))
        .await
        .unwrap();
    receive(&mut b_in.bulk).await;
    let mut received = Vec::new();
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), b_in.bus.recv()).await {
        let payload = frame.unwrap().payload;
        received.push(u32::from_be_bytes([
            payload[0], payload[1], payload[2], payload[3],
        ]));
    }
    received
}

#[tokio::test]
async fn dropped_frames_follow_the_percentage_and_replay_from_the_seed() {
    let first = survivors(11, 30).await;
    assert!(
        (550..=850).contains(&first.len()),
        "{} of 1000 survived a 30% drop",
        first.len()
    );
    assert!(
        first.windows(2).all(|pair| pair[0] < pair[1]),
        "survivors were reordered"
    );
    let replay = survivors(11, 30).await;
    assert_eq!(first, replay, "the same seed must drop the same frames");
    let other = survivors(12, 30).await;
    assert_ne!(first, other);
}

#[tokio::test]
async fn latency_delays_frames_in_a_pipeline_without_reordering() {
    let net = SimNet::new(3);
    let (a, mut a_in) = node(&net, "a").await;
    let (b, mut b_in) = node(&net, "b").await;
    connect_all(&a, &mut a_in, b.local_addr()).await;
    net.set_latency(150, 20);
    let started = Instant::now();
    for index in 0..50u8 {
        a.send_bus(b.local_addr(), Bytes::copy_from_slice(&[index]))
            .unwrap();
    }
    for index in 0..50u8 {
        assert_eq!(receive(&mut b_in.bus).await.payload[0], index);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(150),
        "arrived after only {elapsed:?}"
    );
    assert!(
        elapsed < PATIENCE / 5,
        "latency was applied serially: {elapsed:?}"
    );
}
