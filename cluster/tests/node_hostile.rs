//! Hostile peers against a running 3-master cluster over TCP, on real sockets: while clients
//! write and read through every master, one node is attacked on its bus port — a flood of
//! idle connections from another address, garbage before the handshake, the wrong cluster
//! secret, a malformed hello, an oversized frame, undecodable bus frames — and by a peer
//! that holds the secret but never completed a MEET handshake: replayed MEETs planting a
//! node id in their gossip, then forged (huge) epochs and slot claims under that id and
//! under its own. The node refuses and counts each, keeps serving and gossiping, and its
//! epochs and slot map do not move.

mod node_support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use slotkv_cluster::core::node::{NodeFlags, NodeId};
use slotkv_cluster::core::slots::{Slot, SlotRange};
use slotkv_cluster::core::wire::{self, Body, GossipEntry, Header, Message};
use slotkv_cluster::{Cluster, Node};
use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTransport};
use slotkv_transport::{
    Channel, Endpoint, EndpointConfig, FrameLimits, PeerAddr, Transport,
    BUS_FRAME_BYTES_MAX_DEFAULT,
};

use node_support::{eventually, form, shutdown_within_10s, start_nodes, tcp};

/// The secret of `node_support::tcp()`: the attacker below holds it.
const TEST_SECRET: &[u8] = b"slotkv node tests secret";
/// A huge epoch, still within the wire's bound (2^63 − 1).
const FORGED_EPOCH: u64 = 1 << 62;
const FLOOD_CONNECTIONS: usize = 100;
const KEYS: usize = 100;
/// Distinct addresses unknown pingers claim.
const STRANGER_PORTS: u16 = 50;

fn secret() -> ClusterSecret {
    ClusterSecret::new(TEST_SECRET.to_vec()).unwrap()
}

fn transport_with(secret: ClusterSecret) -> Arc<dyn Transport> {
    Arc::new(TcpTransport::new(TcpConfig::new(secret)))
}

/// A header as a master claiming `slots` with forged epochs would send it.
fn forged_header(sender: NodeId, bus_port: u16, slots: Vec<SlotRange>) -> Header {
    Header {
        sender,
        current_epoch: FORGED_EPOCH,
        config_epoch: FORGED_EPOCH,
        repl_offset: 0,
        flags: NodeFlags::MASTER,
        master_id: None,
        slots,
        ip: "127.0.0.1".to_string(),
        hostname: String::new(),
        client_port: bus_port,
        bus_port,
        cluster_ok: true,
        mflags: 0,
        shard_id: None,
    }
}

fn frame(header: &Header, body: Body) -> Bytes {
    Bytes::from(wire::encode(&Message {
        header: header.clone(),
        body,
    }))
}

/// The node's view: its currentEpoch, every slot's owner, and the ids it knows.
async fn view(node: &Node) -> (u64, Vec<Option<NodeId>>, Vec<NodeId>) {
    node.inspect(|core| {
        let owners = (0..16384u16)
            .map(|slot| core.slot_owner(slot as Slot))
            .collect();
        let ids = core.nodes().map(|record| record.id).collect();
        (core.current_epoch(), owners, ids)
    })
    .await
    .unwrap()
}

/// Writes then reads every key through `cluster`; returns how many operations failed.
async fn write_and_read(cluster: &Cluster, round: usize) -> usize {
    let mut failures = 0;
    for key in 0..KEYS {
        let (key, value) = (format!("key:{key}"), format!("value {round}"));
        if cluster.set(key.as_bytes(), value.as_bytes()).await.is_err() {
            failures += 1;
            continue;
        }
        match cluster.get(key.as_bytes()).await {
            Ok(Some(read)) if read == value.as_bytes() => {}
            _ => failures += 1,
        }
    }
    failures
}

/// Idle connections from 127.0.0.2 that never send a byte, held open.
async fn idle_flood(target: &PeerAddr) -> Vec<TcpStream> {
    let target: std::net::SocketAddr = target.as_str().parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..FLOOD_CONNECTIONS {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        held.push(socket.connect(target).await.unwrap());
    }
    held
}

/// Garbage instead of a handshake; returns once the node closed the connection.
async fn garbage_before_the_handshake(target: &PeerAddr) {
    let mut raw = TcpStream::connect(target.as_str()).await.unwrap();
    raw.write_all(&[0x5A; 64]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
}

/// The hello the endpoint sends first on a link (magic, channel tag, address).
fn hello(channel: Channel, address: &str) -> Bytes {
    let mut hello = b"SKV1".to_vec();
    hello.push(channel.tag());
    hello.push(address.len() as u8);
    hello.extend_from_slice(address.as_bytes());
    Bytes::from(hello)
}

/// Authenticated links that misbehave after the handshake: a malformed hello, an oversized
/// frame after a valid hello, and frames that are not bus messages.
async fn misbehave_after_the_handshake(target: &PeerAddr) {
    let transport = transport_with(secret());
    let limits = FrameLimits {
        bus_frame_bytes_max: 4 * BUS_FRAME_BYTES_MAX_DEFAULT,
        ..FrameLimits::default()
    };
    let mut link = transport
        .connect(target, Channel::Bus, limits)
        .await
        .unwrap();
    link.writer
        .send(Bytes::from_static(b"not a hello"))
        .await
        .unwrap();
    let mut link = transport
        .connect(target, Channel::Bus, limits)
        .await
        .unwrap();
    link.writer
        .send(hello(Channel::Bus, "127.0.0.1:1"))
        .await
        .unwrap();
    let oversized = Bytes::from(vec![0u8; 2 * BUS_FRAME_BYTES_MAX_DEFAULT]);
    let _ = link.writer.send(oversized).await;
    let mut link = transport
        .connect(target, Channel::Bus, limits)
        .await
        .unwrap();
    link.writer
        .send(hello(Channel::Bus, "127.0.0.1:1"))
        .await
        .unwrap();
    for garbage in [&[1u8, 0xff, 0xff][..], &[0xAA; 300][..], &[][..]] {
        link.writer
            .send(Bytes::copy_from_slice(garbage))
            .await
            .unwrap();
    }
    // Let the node read them before the link goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A peer holding the secret that never completed a MEET handshake: replays a MEET whose
/// gossip names a node id of its making, then claims every slot with forged epochs as that
/// id and as itself, and sends the other message types under both.
async fn forge_membership(attacker: &Endpoint, target: &PeerAddr, victims: [NodeId; 2]) {
    let own_id = NodeId([0xE1; 20]);
    let planted = NodeId([0xE2; 20]);
    // The attacker's header names a port nobody listens on, so the node's probes go
    // nowhere and no PONG from the attacker's own address can answer them.
    let claimed_port = 1;
    let every_slot = vec![SlotRange {
        start: 0,
        end: 16383,
    }];
    let planted_entry = GossipEntry {
        id: planted,
        ip: "127.0.0.1".to_string(),
        client_port: claimed_port,
        bus_port: claimed_port,
        flags: NodeFlags::MASTER,
        pong_age_ms: 0,
        ping_pending: false,
    };
    let meet_header = forged_header(own_id, claimed_port, Vec::new());
    for _ in 0..5 {
        let meet = frame(&meet_header, Body::Meet(vec![planted_entry.clone()]));
        attacker.send_bus(target, meet).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for sender in [planted, own_id] {
        let header = forged_header(sender, claimed_port, every_slot.clone());
        let bodies = [
            Body::Ping(vec![planted_entry.clone()]),
            Body::Pong(vec![planted_entry.clone()]),
            Body::Update {
                node: victims[0],
                config_epoch: FORGED_EPOCH,
                slots: every_slot.clone(),
            },
            Body::Fail { node: victims[1] },
            Body::FailoverAuthRequest,
        ];
        for body in bodies {
            attacker.send_bus(target, frame(&header, body)).unwrap();
        }
    }
    // Pings from unknown ids naming many addresses: each answer opens links there.
    for port in 0..STRANGER_PORTS {
        let header = forged_header(NodeId([0xE3; 20]), 40_000 + port, Vec::new());
        attacker
            .send_bus(target, frame(&header, Body::Ping(Vec::new())))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_under_hostile_peers_keeps_serving_and_its_epochs_and_slots_stay() {
    let nodes = start_nodes((0..3).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let clients: Vec<Cluster> = nodes.iter().map(Node::cluster).collect();
    for cluster in &clients {
        assert_eq!(write_and_read(cluster, 0).await, 0, "before the attack");
    }
    let target = nodes[0].bus_address().clone();
    let before = view(&nodes[0]).await;
    let malformed_before = nodes[0].inspect(|core| core.stats().malformed_dropped);
    let malformed_before = malformed_before.await.unwrap();

    let (attacker, _attacker_in) = Endpoint::bind(
        transport_with(secret()),
        PeerAddr::new("127.0.0.1:0").unwrap(),
        EndpointConfig::default(),
    )
    .await
    .unwrap();
    let wrong_secret = ClusterSecret::new(b"another cluster's secret!".to_vec()).unwrap();
    let (foreign, _foreign_in) = Endpoint::bind(
        transport_with(wrong_secret),
        PeerAddr::new("127.0.0.1:0").unwrap(),
        EndpointConfig::default(),
    )
    .await
    .unwrap();

    let flood = idle_flood(&target).await;
    let attack = async {
        for _ in 0..10 {
            garbage_before_the_handshake(&target).await;
        }
        let _ = foreign.send_bus(&target, Bytes::from_static(b"let me in"));
        misbehave_after_the_handshake(&target).await;
        let victims = [nodes[1].id(), nodes[2].id()];
        forge_membership(&attacker, &target, victims).await;
    };
    let serve = async {
        let mut failures = 0;
        for round in 1..=3 {
            for cluster in &clients {
                failures += write_and_read(cluster, round).await;
            }
        }
        failures
    };
    let ((), failures) = tokio::join!(attack, serve);
    assert_eq!(failures, 0, "operations failed during the attack");

    // Nothing the attacker sent moved the node's epochs or slots or planted a node.
    let after = view(&nodes[0]).await;
    assert_eq!(after.0, before.0, "currentEpoch moved");
    assert!(after.1 == before.1, "the slot map moved");
    assert!(
        !after.2.contains(&NodeId([0xE2; 20])) && !after.2.contains(&NodeId([0xE1; 20])),
        "a non-member became a member"
    );
    // It kept gossiping: every node still sees the others healthy, the cluster ok.
    for node in &nodes {
        let healthy = eventually(Duration::from_secs(5), || async {
            node.inspect(|core| {
                core.cluster_state() == slotkv_cluster::core::ClusterState::Ok
                    && core.nodes().filter(|record| record.is_failing()).count() == 0
            })
            .await
            .unwrap()
        })
        .await;
        assert!(healthy, "{} sees a failure after the attack", node.id());
    }
    // The links opened to answer strangers and to probe their handshakes are let go
    // (after the handshake lifetime, node_timeout here): only the members' stay.
    let mut members: Vec<PeerAddr> = nodes[1..]
        .iter()
        .map(|node| node.bus_address().clone())
        .collect();
    members.sort();
    let released = eventually(Duration::from_secs(5), || async {
        nodes[0].linked_peers() == members
    })
    .await;
    assert!(released, "links kept: {:?}", nodes[0].linked_peers());
    // Each refusal was counted.
    let links = nodes[0].stats().links;
    let held = slotkv_transport::tcp::HANDSHAKES_IN_FLIGHT_PER_SOURCE_MAX_DEFAULT;
    assert!(
        links.inbound_refused_overloaded >= (FLOOD_CONNECTIONS - held) as u64,
        "{links:?}"
    );
    assert!(links.inbound_refused_authentication >= 10, "{links:?}");
    assert!(links.inbound_refused_protocol >= 1, "{links:?}");
    assert!(links.inbound_closed_frame_too_large >= 1, "{links:?}");
    let malformed = nodes[0].inspect(|core| core.stats().malformed_dropped);
    assert!(malformed.await.unwrap() >= malformed_before + 3);
    drop(flood);
    attacker.close().await;
    foreign.close().await;
    shutdown_within_10s(nodes).await;
}
