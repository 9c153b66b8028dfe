//! What a host's lifecycle does to a node: a node shut down and started again on the same
//! address at once (an in-process restart, or a supervisor that restarts immediately) binds
//! on the first try, over TCP and QUIC, while a peer keeps links open to it.

mod node_support;

use std::time::Duration;

use slotkv_cluster::{Node, NodeTransport};

use node_support::{eventually, quic_transports, tcp, NODE_TIMEOUT_MS};

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
