//! What a host's lifecycle does to a node: a node shut down and started again on the same
//! address at once (an in-process restart, or a supervisor that restarts immediately) binds
//! on the first try, over TCP and QUIC, while a peer keeps links open to it; nodes bound to
//! the wildcard address are known everywhere by their announced address.

mod node_support;

use std::time::Duration;

use slotkv_cluster::{Node, NodeTransport};

use node_support::{eventually, form, owner_index, quic_transports, tcp, NODE_TIMEOUT_MS};

/// Restarts in a row per transport.
const RESTARTS: usize = 30;

async fn start_on(
    transport: NodeTransport,
    bind: &str,
) -> Result<Node, slotkv_cluster::StartError> {
    Node::builder(transport)
        .bind(bind)
        .node_timeout_ms(NODE_TIMEOUT_MS)
        .request_timeout_ms(1_000)
        .start()
        .await
}

/// Starts a node on a free port with a peer that knows it (so inbound and outbound links
/// exist), then shuts it down and starts it again on the same address `RESTARTS` times.
async fn restart_on_the_same_address(mut transports: impl FnMut() -> NodeTransport) {
    let peer = start_on(transports(), "127.0.0.1:0").await.unwrap();
    let first = start_on(transports(), "127.0.0.1:0").await.unwrap();
    let address = first.bus_address().clone();
    let mut node = first;
    for restart in 0..RESTARTS {
        peer.meet(&address).await.unwrap();
        let linked = eventually(Duration::from_secs(5), || async {
            peer.inspect(|core| core.nodes().filter(|record| !record.in_handshake()).count())
                .await
                .unwrap()
                >= 2
        })
        .await;
        assert!(linked, "restart {restart}: the peer never met the node");
        node.shutdown().await;
        node = match start_on(transports(), address.as_str()).await {
            Ok(node) => node,
            Err(error) => panic!("restart {restart}: could not bind {address} again: {error}"),
        };
    }
    node.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_node_restarts_on_its_address_right_after_shutdown() {
    restart_on_the_same_address(tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_node_restarts_on_its_address_right_after_shutdown() {
    // One CA for every life of the node and its peer.
    let mut pool = quic_transports(2 * RESTARTS + 4).into_iter();
    restart_on_the_same_address(move || pool.next().unwrap()).await;
}

/// Six TCP nodes bound to the wildcard address, each announcing its own loopback address
/// (127.0.0.2 ... 127.0.0.7: distinct hosts, while every link's source is 127.0.0.1), as a
/// container deployment binds them.
async fn start_wildcard_six() -> Vec<Node> {
    let mut nodes = Vec::new();
    for index in 0..6u64 {
        let node = Node::builder(tcp())
            .bind("0.0.0.0:0")
            .announce_host(format!("127.0.0.{}", index + 2))
            .node_timeout_ms(NODE_TIMEOUT_MS)
            .request_timeout_ms(1_000)
            .rng_seed(index + 1)
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_bound_nodes_form_wait_and_fail_over_by_their_announced_address() {
    let mut nodes = start_wildcard_six().await;
    for (index, node) in nodes.iter().enumerate() {
        let announced = node.bus_address().as_str().to_string();
        assert!(
            announced.starts_with(&format!("127.0.0.{}:", index + 2)),
            "a wildcard-bound node is known by its announced address, not {announced}"
        );
    }
    form(&nodes).await;
    let durable = nodes[0]
        .cluster()
        .with_durability(slotkv_cluster::Durability::Replicas {
            replicas: 1,
            timeout_ms: 5_000,
        });
    for index in 0..500 {
        let key = format!("wild:{index}");
        durable.set(key.as_bytes(), b"v").await.unwrap();
    }
    assert_eq!(durable.wait(1, Duration::from_secs(5)).await.unwrap(), 1);
    let victim = owner_index(&nodes, b"wild:0").await;
    drop(nodes.remove(victim));
    let survivor = nodes[0].cluster();
    let served = eventually(Duration::from_secs(30), || async {
        survivor
            .get(b"wild:0")
            .await
            .is_ok_and(|value| value.is_some())
    })
    .await;
    assert!(served, "the replica of the dead master never took over");
    for index in 0..500 {
        let key = format!("wild:{index}");
        let value = survivor.get(key.as_bytes()).await.unwrap();
        assert_eq!(value.as_deref(), Some(&b"v"[..]), "{key} lost");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_wildcard_bind_without_an_announced_host_is_refused_with_the_fix() {
    let refused = Node::builder(tcp()).bind("0.0.0.0:0").start().await;
    let error = refused
        .expect_err("a wildcard-bound node would announce 0.0.0.0")
        .to_string();
    assert!(error.contains("announce_host"), "unhelpful error: {error}");
}

/// Redis exits when it cannot save nodes.conf, because what it would tell its peers next
/// (a vote, a new epoch, slots) may rest on the unsaved state. The node withholds every bus
/// message until a save succeeds again, counts the failures, and resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_save_its_config_tells_its_peers_nothing_until_it_can() {
    let directory = node_support::temp_dir("unsaved");
    let node_dir = directory.join("a");
    let node = node_support::start_persistent("127.0.0.1:0", &node_dir, 1).await;
    let peer = start_on(tcp(), "127.0.0.1:0").await.unwrap();
    peer.meet(node.bus_address()).await.unwrap();
    let met = eventually(Duration::from_secs(5), || async {
        peer.inspect(|core| core.nodes().filter(|record| !record.in_handshake()).count())
            .await
            .unwrap()
            == 2
    })
    .await;
    assert!(met);
    std::fs::remove_dir_all(&node_dir).unwrap();
    let range = slotkv_cluster::core::slots::SlotRange::new(0, 99).unwrap();
    node.add_slots(vec![range]).await.unwrap();
    let owner_seen_by_peer = || async { peer.inspect(|core| core.slot_owner(0)).await.unwrap() };
    tokio::time::sleep(Duration::from_millis(3 * NODE_TIMEOUT_MS)).await;
    assert_eq!(
        owner_seen_by_peer().await,
        None,
        "slots resting on an unsaved config reached a peer"
    );
    assert!(node.stats().config_saves_failed >= 1);
    std::fs::create_dir_all(&node_dir).unwrap();
    let resumed = eventually(Duration::from_secs(10), || async {
        owner_seen_by_peer().await == Some(node.id())
    })
    .await;
    assert!(
        resumed,
        "the node did not resume after its config could be saved"
    );
    node.shutdown().await;
    peer.shutdown().await;
    let _ = std::fs::remove_dir_all(&directory);
}

/// A host that means "wait as long as it takes" passes the largest timeout it can: WAIT and
/// replica durability on a remote master must neither panic nor wrap to a short timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_wait_and_durability_timeouts_neither_panic_nor_wrap() {
    let net = slotkv_transport::sim::SimNet::new(7);
    let nodes = node_support::start_sim_nodes(&net, 6).await;
    form(&nodes).await;
    // A key another master owns, so both the write and WAIT are forwarded.
    let mut remote_key = None;
    for index in 0..64 {
        let key = format!("far:{index}");
        if owner_index(&nodes, key.as_bytes()).await != 0 {
            remote_key = Some(key);
            break;
        }
    }
    let key = remote_key.expect("some key lives on another master");
    let durable = nodes[0]
        .cluster()
        .with_durability(slotkv_cluster::Durability::Replicas {
            replicas: 1,
            timeout_ms: u64::MAX,
        });
    durable.set(key.as_bytes(), b"v").await.unwrap();
    let counted = tokio::time::timeout(Duration::from_secs(20), durable.wait(1, Duration::MAX))
        .await
        .expect("WAIT with an unbounded timeout returns once a replica acknowledged");
    assert_eq!(counted.unwrap(), 1);
    for node in nodes {
        node.shutdown().await;
    }
}
