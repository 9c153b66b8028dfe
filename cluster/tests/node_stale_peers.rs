//! A master lets go of the replication streams and outbound links it keeps for peers it no
//! longer needs: a replica that follows another master, a dead replica that was forgotten, a
//! node that came back on a new address.

mod node_support;

use std::time::Duration;

use slotkv_cluster::Node;
use slotkv_transport::PeerAddr;

use node_support::{
    eventually, form, shutdown_within_10s, start_nodes, start_persistent, tcp, temp_dir,
};

async fn streams_become(node: &Node, count: usize) -> bool {
    eventually(Duration::from_secs(10), || async {
        node.replication_info().master_streams == count
    })
    .await
}

fn linked_to(node: &Node, address: &PeerAddr) -> bool {
    node.linked_peers().contains(address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_follows_another_master_is_no_longer_streamed_to() {
    // 2 replicates 0, 3 replicates 1.
    let nodes = start_nodes((0..4).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    assert!(streams_become(&nodes[0], 1).await, "0 never streamed to 2");
    nodes[2].replicate(nodes[1].id()).await.unwrap();
    assert!(streams_become(&nodes[1], 2).await, "1 streams to both");
    assert!(
        streams_become(&nodes[0], 0).await,
        "0 still streams to its old replica"
    );
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_dead_replica_leaves_no_stream_and_no_link_anywhere() {
    let mut nodes = start_nodes((0..4).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    assert!(streams_become(&nodes[1], 1).await, "1 never streamed to 3");
    let dead = nodes.pop().unwrap();
    let (dead_id, dead_address) = (dead.id(), dead.bus_address().clone());
    dead.shutdown().await;
    nodes[1].forget(dead_id).await.unwrap();
    assert!(
        streams_become(&nodes[1], 0).await,
        "the stream outlived FORGET"
    );
    for (index, node) in nodes.iter().enumerate() {
        let let_go = eventually(Duration::from_secs(5), || async {
            let known = node.inspect(move |core| core.node(&dead_id).is_some());
            !known.await.unwrap() && !linked_to(node, &dead_address)
        })
        .await;
        assert!(
            let_go,
            "node {index} still knows or links the forgotten node"
        );
    }
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_live_replica_is_not_streamed_to_again() {
    let nodes = start_nodes((0..4).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    assert!(streams_become(&nodes[1], 1).await, "1 never streamed to 3");
    // Node 3 stays up and keeps asking its master for a stream (every PSYNC retry).
    let forgotten = nodes[3].id();
    nodes[1].forget(forgotten).await.unwrap();
    assert!(
        streams_become(&nodes[1], 0).await,
        "the stream outlived FORGET"
    );
    // Several PSYNC retries later the master still streams to no one (so none of its
    // acknowledgements counts for WAIT).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        nodes[1].replication_info().master_streams,
        0,
        "the forgotten replica got a stream again"
    );
    assert!(
        nodes[1].stats().psyncs_from_strangers > 0,
        "its PSYNCs were not refused"
    );
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_on_a_new_address_is_found_and_its_old_address_let_go() {
    let directory = temp_dir("readdressed");
    let mut nodes = start_nodes((0..3).map(|_| tcp()).collect()).await;
    nodes.push(start_persistent("127.0.0.1:0", &directory, 4).await);
    form(&nodes).await;
    let moving = nodes.pop().unwrap();
    let (id, old_address) = (moving.id(), moving.bus_address().clone());
    assert!(
        eventually(Duration::from_secs(5), || async {
            linked_to(&nodes[1], &old_address)
        })
        .await
    );
    moving.shutdown().await;
    let moved = start_persistent("127.0.0.1:0", &directory, 4).await;
    assert_eq!(moved.id(), id, "same node, same id");
    let new_address = moved.bus_address().to_string();
    assert_ne!(new_address, old_address.to_string());
    for (index, node) in nodes.iter().enumerate() {
        let expected = new_address.clone();
        let old = &old_address;
        let found = eventually(Duration::from_secs(10), || {
            let expected = expected.clone();
            async move {
                let address = node
                    .inspect(move |core| core.node(&id).map(|record| record.bus_address()))
                    .await
                    .unwrap();
                address == Some(expected) && !linked_to(node, old)
            }
        })
        .await;
        assert!(
            found,
            "node {index} did not move to {new_address} or still links {old_address}: {:?}",
            node.linked_peers()
        );
    }
    nodes.push(moved);
    shutdown_within_10s(nodes).await;
    let _ = std::fs::remove_dir_all(directory);
}
