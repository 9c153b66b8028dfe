//! Per-node identity on real sockets (TLS over TCP, and QUIC): each node's certificate names
//! its node id and its announced host, and the cluster binds both. Three nodes form and serve
//! writes; a member-grade impostor (a certificate of the same CA, the cluster secret) that
//! claims an address its certificate does not name is refused by the transport, and one that
//! claims another member's node id has every bus message dropped; neither gets into a
//! table. A node whose own certificate does not name it refuses to start, saying why.

mod node_support;

use std::time::Duration;

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::rng::Rng;
use slotkv_cluster::{node_identity_name, Node, NodeTransport, StartError};
use slotkv_transport::quic::{DevCertificateAuthority, QuicConfig};
use slotkv_transport::tcp::{ClusterSecret, TcpConfig, TcpTls};
use slotkv_transport::tls::NodeIdentity;

use node_support::{builder, eventually, form};

fn secret() -> ClusterSecret {
    ClusterSecret::new(b"slotkv node tests secret".to_vec()).unwrap()
}

/// A certificate of `authority` naming `id` and `host`.
fn identity_for(authority: &DevCertificateAuthority, id: &NodeId, host: &str) -> NodeIdentity {
    authority
        .issue_named_node_identity(&[node_identity_name(id), host.to_string()])
        .unwrap()
}

fn tcp_binding(authority: &DevCertificateAuthority, identity: &NodeIdentity) -> NodeTransport {
    let tls = TcpTls::new(identity, &authority.trust_anchor())
        .unwrap()
        .binding_identities();
    NodeTransport::Tcp(TcpConfig::new(secret()).with_tls(tls))
}

/// The same certificate without binding on its own side (so it starts whatever it claims).
fn tcp_unbound(authority: &DevCertificateAuthority, identity: &NodeIdentity) -> NodeTransport {
    let tls = TcpTls::new(identity, &authority.trust_anchor()).unwrap();
    NodeTransport::Tcp(TcpConfig::new(secret()).with_tls(tls))
}

fn quic_binding(authority: &DevCertificateAuthority, identity: &NodeIdentity) -> NodeTransport {
    let mut config = QuicConfig::new(identity.clone(), authority.trust_anchor());
    config.bind_identities = true;
    NodeTransport::Quic(config)
}

async fn start_named(
    transport: impl Fn(&DevCertificateAuthority, &NodeIdentity) -> NodeTransport,
    authority: &DevCertificateAuthority,
    count: usize,
) -> Vec<Node> {
    let mut rng = Rng::new(41);
    let mut nodes = Vec::new();
    for index in 0..count {
        let id = NodeId::random(&mut rng);
        let identity = identity_for(authority, &id, "127.0.0.1");
        let node = builder(transport(authority, &identity), index as u64 + 1)
            .node_id(id)
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    nodes
}

async fn known_nodes(node: &Node) -> usize {
    node.inspect(|core| core.nodes().count()).await.unwrap_or(0)
}

async fn writes_and_reads(nodes: &[Node]) {
    let cluster = nodes[0].cluster();
    for index in 0..300 {
        let key = format!("identity:{index}");
        cluster.set(key.as_bytes(), key.as_bytes()).await.unwrap();
    }
    let other = nodes[nodes.len() - 1].cluster();
    for index in 0..300 {
        let key = format!("identity:{index}");
        let value = other.get(key.as_bytes()).await.unwrap();
        assert_eq!(value.as_deref(), Some(key.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_nodes_form_and_impostors_of_an_address_or_a_node_id_are_kept_out() {
    let authority = DevCertificateAuthority::generate().unwrap();
    let nodes = start_named(tcp_binding, &authority, 3).await;
    form(&nodes).await;
    writes_and_reads(&nodes).await;

    // A certificate of the cluster's CA naming 127.0.0.1, used from 127.0.0.3: the hello
    // claims an address the certificate does not name.
    let mut rng = Rng::new(99);
    let stranger_id = NodeId::random(&mut rng);
    let stolen = identity_for(&authority, &stranger_id, "127.0.0.1");
    let address_impostor = builder(tcp_unbound(&authority, &stolen), 90)
        .node_id(stranger_id)
        .bind("127.0.0.3:0")
        .start()
        .await
        .unwrap();
    let refused_before = nodes[0].stats().links.inbound_refused_authentication;
    address_impostor.meet(nodes[0].bus_address()).await.unwrap();
    let refused = eventually(Duration::from_secs(10), || async {
        nodes[0].stats().links.inbound_refused_authentication > refused_before
    })
    .await;
    assert!(
        refused,
        "the address impostor's links were not refused: {:?}",
        nodes[0].stats().links
    );

    // A certificate naming its own id and host, claiming node 1's id in its messages.
    let own_id = NodeId::random(&mut rng);
    let own = identity_for(&authority, &own_id, "127.0.0.1");
    let id_impostor = builder(tcp_unbound(&authority, &own), 91)
        .node_id(nodes[1].id())
        .start()
        .await
        .unwrap();
    id_impostor.meet(nodes[2].bus_address()).await.unwrap();
    let dropped = eventually(Duration::from_secs(10), || async {
        nodes[2].stats().bus_messages_impostor > 0
    })
    .await;
    assert!(dropped, "no message of the node-id impostor was dropped");

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for node in &nodes {
        assert_eq!(known_nodes(node).await, 3, "an impostor got into a table");
        let address = node
            .inspect({
                let id = nodes[1].id();
                move |core| core.node(&id).map(|record| record.bus_address())
            })
            .await
            .unwrap();
        assert_eq!(
            address.as_deref(),
            Some(nodes[1].bus_address().as_str()),
            "node 1 was re-addressed by its impostor"
        );
    }
    writes_and_reads(&nodes).await;
    address_impostor.shutdown().await;
    id_impostor.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_nodes_form_over_quic() {
    let authority = DevCertificateAuthority::generate().unwrap();
    let nodes = start_named(quic_binding, &authority, 3).await;
    form(&nodes).await;
    writes_and_reads(&nodes).await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_certificate_does_not_name_it_refuses_to_start() {
    let authority = DevCertificateAuthority::generate().unwrap();
    let mut rng = Rng::new(5);
    let (named, other) = (NodeId::random(&mut rng), NodeId::random(&mut rng));
    let identity = identity_for(&authority, &named, "127.0.0.1");
    let started = builder(tcp_binding(&authority, &identity), 1)
        .node_id(other)
        .start()
        .await;
    match started {
        Err(StartError::Identity(problem)) => {
            assert!(problem.contains(&node_identity_name(&other)), "{problem}")
        }
        Err(error) => panic!("refused for another reason: {error}"),
        Ok(_) => panic!("started with a certificate that does not name it"),
    }
    // The same certificate with the id it names starts.
    let good = builder(tcp_binding(&authority, &identity), 1)
        .node_id(named)
        .start()
        .await
        .unwrap();
    good.shutdown().await;
}
