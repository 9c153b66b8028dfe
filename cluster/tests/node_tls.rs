//! A cluster on TCP under mutual TLS: six nodes form, write with replica durability, lose a
//! master to a crash and fail over with every acknowledged write readable; a node that
//! knows the cluster secret but holds a certificate of another CA is never let in.

mod node_support;

use std::time::Duration;

use slotkv_cluster::{Durability, Node};
use slotkv_transport::quic::DevCertificateAuthority;

use node_support::{builder, eventually, form, owner_index, start_nodes, tcp_tls_transports};

const KEYS: usize = 1_000;

fn key(index: usize) -> Vec<u8> {
    format!("tls:{index}").into_bytes()
}

async fn known_nodes(node: &Node) -> usize {
    node.inspect(|core| core.nodes().count()).await.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_forms_replicates_and_fails_over_and_refuses_a_foreign_certificate() {
    let authority = DevCertificateAuthority::generate().unwrap();
    let mut nodes = start_nodes(tcp_tls_transports(&authority, 6)).await;
    form(&nodes).await;

    let durable = nodes[0].cluster().with_durability(Durability::Replicas {
        replicas: 1,
        timeout_ms: 5_000,
    });
    for index in 0..KEYS {
        durable.set(&key(index), &key(index)).await.unwrap();
    }

    // Same secret, a certificate of another CA: TLS refuses it before the secret is asked.
    let foreign_authority = DevCertificateAuthority::generate().unwrap();
    let intruder = builder(tcp_tls_transports(&foreign_authority, 1).remove(0), 77)
        .start()
        .await
        .unwrap();
    intruder.meet(nodes[0].bus_address()).await.unwrap();
    let refused = eventually(Duration::from_secs(10), || async {
        nodes[0].stats().links.inbound_refused_authentication > 0
    })
    .await;
    assert!(
        refused,
        "the foreign certificate was not refused: {:?}",
        nodes[0].stats().links
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for node in &nodes {
        assert_eq!(
            known_nodes(node).await,
            6,
            "the intruder got into a node's table"
        );
    }
    assert_eq!(
        known_nodes(&intruder).await,
        1,
        "the intruder learned the cluster"
    );
    intruder.shutdown().await;

    let victim = owner_index(&nodes, &key(0)).await;
    drop(nodes.remove(victim));
    let survivor = nodes[0].cluster();
    let served = eventually(Duration::from_secs(30), || async {
        survivor
            .get(&key(0))
            .await
            .is_ok_and(|value| value.is_some())
    })
    .await;
    assert!(served, "no replica took over over TLS");
    for index in 0..KEYS {
        let value = survivor.get(&key(index)).await.unwrap();
        assert_eq!(value.as_deref(), Some(&key(index)[..]), "key {index} lost");
    }
    for node in nodes {
        node.shutdown().await;
    }
}
