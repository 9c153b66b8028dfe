//! Shared helpers of the node scenario tests: starting clusters on TCP, QUIC and the
//! simulated network, and polling for conditions with a deadline.

#![allow(dead_code)]

pub(crate) mod child;
pub(crate) mod history;
pub(crate) mod load;
pub(crate) mod netns;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::create_cluster;
use slotkv_cluster::{Node, NodeBuilder, NodeTransport};
use slotkv_transport::quic::{DevCertificateAuthority, QuicConfig};
use slotkv_transport::sim::SimNet;
use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTls};

/// node_timeout of the test clusters, in ms.
pub(crate) const NODE_TIMEOUT_MS: u64 = 1000;

/// A TCP transport with the tests' secret.
pub(crate) fn tcp() -> NodeTransport {
    let secret = ClusterSecret::new(b"slotkv node tests secret".to_vec()).unwrap();
    NodeTransport::Tcp(TcpConfig::new(secret))
}

/// TLS-over-TCP transports with the tests' secret and certificates of `authority`.
pub(crate) fn tcp_tls_transports(
    authority: &DevCertificateAuthority,
    count: usize,
) -> Vec<NodeTransport> {
    let secret = ClusterSecret::new(b"slotkv node tests secret".to_vec()).unwrap();
    (0..count)
        .map(|_| {
            let identity = authority.issue_node_identity().unwrap();
            let tls = TcpTls::new(&identity, &authority.trust_anchor()).unwrap();
            NodeTransport::Tcp(TcpConfig::new(secret.clone()).with_tls(tls))
        })
        .collect()
}

/// QUIC transports sharing one development CA.
pub(crate) fn quic_transports(count: usize) -> Vec<NodeTransport> {
    let authority = DevCertificateAuthority::generate().unwrap();
    (0..count)
        .map(|_| {
            let identity = authority.issue_node_identity().unwrap();
            NodeTransport::Quic(QuicConfig::new(identity, authority.trust_anchor()))
        })
        .collect()
}

/// A node builder with the tests' timeouts and the core seeded with `seed`.
pub(crate) fn builder(transport: NodeTransport, seed: u64) -> NodeBuilder {
    Node::builder(transport)
        .node_timeout_ms(NODE_TIMEOUT_MS)
        .request_timeout_ms(1_000)
        .rng_seed(seed)
}

/// Starts `count` nodes with the given transports on loopback.
pub(crate) async fn start_nodes(transports: Vec<NodeTransport>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (index, transport) in transports.into_iter().enumerate() {
        let node = builder(transport, index as u64 + 1).start().await.unwrap();
        nodes.push(node);
    }
    nodes
}

/// Starts `count` nodes on the simulated network `net`, named `n<i>:7000`.
pub(crate) async fn start_sim_nodes(net: &SimNet, count: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for index in 0..count {
        let transport = NodeTransport::Custom(Arc::new(net.transport()));
        let node = builder(transport, index as u64 + 1)
            .bind(format!("n{index}:7000"))
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

/// Forms 3 masters with one replica each.
pub(crate) async fn form(nodes: &[Node]) {
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 1, Duration::from_secs(30))
        .await
        .unwrap();
}

/// Polls `check` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh directory under the system temp dir (removed by the caller if it cares).
pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let path = std::env::temp_dir().join(format!("slotkv-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&path).unwrap();
    path
}

/// Starts one TCP node persisting in `directory`, listening on `bind`.
pub(crate) async fn start_persistent(bind: &str, directory: &std::path::Path, seed: u64) -> Node {
    builder(tcp(), seed)
        .bind(bind)
        .data_dir(directory)
        .start()
        .await
        .unwrap()
}

/// The index of the master (among `nodes`) that owns `key`'s slot, by node 0's map.
pub(crate) async fn owner_index(nodes: &[Node], key: &[u8]) -> usize {
    let slot = slotkv_engine::key_slot(key);
    let owner = nodes[0]
        .inspect(move |core| core.slot_owner(slot))
        .await
        .unwrap();
    nodes
        .iter()
        .position(|node| Some(node.id()) == owner)
        .unwrap()
}

/// The index of the last node (among `nodes`) replicating the master `master`.
pub(crate) async fn replica_index(nodes: &[Node], master: NodeId) -> usize {
    let mut replica = None;
    for (index, node) in nodes.iter().enumerate() {
        if node.inspect(|core| core.my_master()).await.unwrap() == Some(master) {
            replica = Some(index);
        }
    }
    replica.expect("the master has a replica")
}

/// Shuts every node down, failing the test if that takes more than 10 s.
pub(crate) async fn shutdown_within_10s(nodes: Vec<Node>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await
    .unwrap();
}
