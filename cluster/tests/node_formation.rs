//! A 6-node cluster forms over real TCP on loopback and over the simulated network, and
//! every node serves every command for every key.

mod node_support;

use std::time::Duration;

use slotkv_cluster::core::ClusterState;
use slotkv_cluster::{Cluster, Node};
use slotkv_engine::{ExpireCondition, ExpireTime, GetExExpiry, SetCondition, SetOptions};
use slotkv_transport::sim::SimNet;

use node_support::{form, shutdown_within_10s, start_nodes, start_sim_nodes, tcp};

async fn assert_formed(nodes: &[Node]) {
    for node in nodes {
        assert_eq!(node.cluster_state().await.unwrap(), ClusterState::Ok);
        let slots = node.cluster_slots().await.unwrap();
        assert_eq!(slots.len(), 3);
        let replicas = node
            .inspect(|core| core.nodes().filter(|record| record.is_replica()).count())
            .await
            .unwrap();
        assert_eq!(replicas, 3);
    }
}

/// Runs every command through `cluster` on keys that live on every master.
async fn exercise(cluster: &Cluster, tag: &str) {
    for index in 0..12 {
        let key = format!("{tag}:{index}");
        let key = key.as_bytes();
        cluster.set(key, b"10").await.unwrap();
        assert_eq!(cluster.get(key).await.unwrap().as_deref(), Some(&b"10"[..]));
        assert_eq!(cluster.incr(key).await.unwrap(), 11);
        assert_eq!(cluster.incr_by(key, 5).await.unwrap(), 16);
        assert_eq!(cluster.decr(key).await.unwrap(), 15);
        assert_eq!(cluster.decr_by(key, 5).await.unwrap(), 10);
        assert_eq!(cluster.append(key, b"0").await.unwrap(), 3);
        assert_eq!(cluster.strlen(key).await.unwrap(), 3);
        assert_eq!(cluster.exists(&[key]).await.unwrap(), 1);
        assert_eq!(cluster.ttl(key).await.unwrap(), -1);
        let expire = ExpireTime::Seconds(100);
        assert!(cluster
            .expire(key, expire, ExpireCondition::Always)
            .await
            .unwrap());
        assert!((99..=100).contains(&cluster.ttl(key).await.unwrap()));
        assert!(cluster.pttl(key).await.unwrap() > 90_000);
        assert!(cluster.persist(key).await.unwrap());
        let nx = SetOptions {
            condition: SetCondition::IfAbsent,
            ..SetOptions::default()
        };
        assert!(!cluster.set_with(key, b"x", nx).await.unwrap().written);
        let got = cluster
            .getex(key, GetExExpiry::Expire(ExpireTime::Seconds(50)))
            .await;
        assert_eq!(got.unwrap().as_deref(), Some(&b"100"[..]));
        assert!(cluster.ttl(key).await.unwrap() > 0);
        assert_eq!(
            cluster.getdel(key).await.unwrap().as_deref(),
            Some(&b"100"[..])
        );
        assert_eq!(cluster.get(key).await.unwrap(), None);
        assert_eq!(cluster.del(&[key]).await.unwrap(), 0);
        let a = format!("{{{tag}{index}}}a");
        let b = format!("{{{tag}{index}}}b");
        let pairs = [(a.as_bytes(), &b"1"[..]), (b.as_bytes(), &b"2"[..])];
        cluster.mset(&pairs).await.unwrap();
        assert!(!cluster.msetnx(&pairs).await.unwrap());
        let values = cluster.mget(&[a.as_bytes(), b.as_bytes()]).await.unwrap();
        assert_eq!(values[1].as_deref(), Some(&b"2"[..]));
        assert_eq!(cluster.del(&[a.as_bytes(), b.as_bytes()]).await.unwrap(), 2);
    }
    let error = cluster.mget(&[b"foo", b"bar"]).await.unwrap_err();
    assert_eq!(error, slotkv_cluster::ClusterError::CrossSlot);
    let error = cluster.incr(b"not-a-number-key").await;
    assert!(error.is_ok());
    cluster.set(b"text", b"abc").await.unwrap();
    let error = cluster.incr(b"text").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "ERR value is not an integer or out of range"
    );
    let keys: Vec<String> = (0..50)
        .map(|index| format!("{tag}-multi-{index}"))
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = keys
        .iter()
        .map(|key| (key.as_bytes(), key.as_bytes()))
        .collect();
    cluster.mset_multi(&pairs).await.unwrap();
    let refs: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
    let values = cluster.mget_multi(&refs).await.unwrap();
    for (key, value) in keys.iter().zip(values) {
        assert_eq!(value.as_deref(), Some(key.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_tcp_nodes_form_a_cluster_and_every_node_serves_every_command() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    assert_formed(&nodes).await;
    for (index, node) in nodes.iter().enumerate() {
        exercise(&node.cluster(), &format!("tcp{index}")).await;
    }
    let table = nodes[0].cluster_nodes().await.unwrap();
    assert_eq!(table.lines().count(), 6);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_simulated_nodes_form_a_cluster_and_serve_through_every_node() {
    let net = SimNet::new(7);
    let nodes = start_sim_nodes(&net, 6).await;
    form(&nodes).await;
    assert_formed(&nodes).await;
    for (index, node) in nodes.iter().enumerate() {
        exercise(&node.cluster(), &format!("sim{index}")).await;
    }
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_node_stops_its_tasks_and_frees_its_address() {
    let nodes = start_nodes(vec![tcp()]).await;
    let address = nodes[0].bus_address().to_string();
    let cluster = nodes[0].cluster();
    drop(nodes);
    let freed = node_support::eventually(Duration::from_secs(5), || async {
        std::net::TcpListener::bind(address.as_str()).is_ok()
    })
    .await;
    assert!(freed, "the dropped node still holds {address}");
    let error = cluster.get(b"k").await.unwrap_err();
    assert!(
        matches!(
            error,
            slotkv_cluster::ClusterError::ClusterDown(_) | slotkv_cluster::ClusterError::Shutdown
        ),
        "{error:?}"
    );
}
