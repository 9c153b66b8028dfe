//! Replication and failover on real TCP: writes acknowledged by a replica survive the
//! master's death, the replica takes over, and the old master returns as a replica and
//! resyncs; a node restarts from its persisted config.

mod node_support;

use std::time::{Duration, Instant};

use slotkv_cluster::core::ClusterState;
use slotkv_cluster::{Durability, Node, ReadFrom};

use node_support::{eventually, form, owner_index, start_persistent, temp_dir};

const KEYS: usize = 2_000;

fn key(index: usize) -> Vec<u8> {
    format!("key:{index}").into_bytes()
}

async fn start_six(directory: &std::path::Path) -> Vec<Node> {
    let mut nodes = Vec::new();
    for index in 0..6 {
        let node_dir = directory.join(format!("node{index}"));
        nodes.push(start_persistent("127.0.0.1:0", &node_dir, index as u64 + 1).await);
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_failover_and_the_old_master_resyncs_as_replica() {
    let directory = temp_dir("failover");
    let mut nodes = start_six(&directory).await;
    form(&nodes).await;
    let durable = nodes[0].cluster().with_durability(Durability::Replicas {
        replicas: 1,
        timeout_ms: 5_000,
    });
    for index in 0..KEYS {
        durable.set(&key(index), &key(index)).await.unwrap();
    }
    assert!(durable.wait(1, Duration::from_secs(5)).await.unwrap() >= 1);
    let replica_reader = nodes[5].cluster().with_read_from(ReadFrom::Replica);
    for index in 0..50 {
        assert_eq!(
            replica_reader.get(&key(index)).await.unwrap().as_deref(),
            Some(&key(index)[..])
        );
    }

    let victim = owner_index(&nodes, b"key:0").await;
    let victim_id = nodes[victim].id();
    let victim_address = nodes[victim].bus_address().to_string();
    drop(nodes.remove(victim));
    let killed_at = Instant::now();
    let survivor = nodes[0].cluster();
    let served = eventually(Duration::from_secs(30), || async {
        survivor
            .get(b"key:0")
            .await
            .is_ok_and(|value| value.is_some())
    })
    .await;
    assert!(served, "the replica never took over");
    println!("failover took {:?}", killed_at.elapsed());
    for index in 0..KEYS {
        let value = survivor.get(&key(index)).await.unwrap();
        assert_eq!(value.as_deref(), Some(&key(index)[..]), "key {index} lost");
    }

    let node_dir = directory.join(format!("node{victim}"));
    let returned = start_persistent(&victim_address, &node_dir, 99).await;
    assert_eq!(returned.id(), victim_id, "restarted with its persisted id");
    let rejoined = eventually(Duration::from_secs(30), || async {
        let is_replica = returned
            .inspect(|core| core.my_master().is_some())
            .await
            .unwrap_or(false);
        is_replica && returned.memory().keys > 0
    })
    .await;
    assert!(
        rejoined,
        "the old master did not come back as a synced replica"
    );
    let state_ok = eventually(Duration::from_secs(10), || async {
        returned
            .cluster_state()
            .await
            .is_ok_and(|state| state == ClusterState::Ok)
    })
    .await;
    assert!(state_ok);
    returned.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&directory);
}
