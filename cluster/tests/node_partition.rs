//! A master cut off in a minority partition (simulated transport) stops accepting writes,
//! the majority fails it over, and after the heal it returns as a replica of its successor.

mod node_support;

use std::time::Duration;

use slotkv_cluster::core::ClusterState;
use slotkv_cluster::ClusterError;
use slotkv_transport::sim::SimNet;

use node_support::{eventually, form, owner_index, start_sim_nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_master_refuses_writes_and_rejoins_as_replica_after_the_heal() {
    let net = SimNet::new(11);
    let nodes = start_sim_nodes(&net, 6).await;
    form(&nodes).await;
    let key = b"partitioned-key";
    let isolated = owner_index(&nodes, key).await;
    let isolated_name = nodes[isolated].bus_address().to_string();
    let others: Vec<String> = nodes
        .iter()
        .map(|node| node.bus_address().to_string())
        .filter(|name| *name != isolated_name)
        .collect();
    let other_refs: Vec<&str> = others.iter().map(String::as_str).collect();
    net.partition(&[isolated_name.as_str()], &other_refs);

    let minority = nodes[isolated].cluster();
    let refused = eventually(Duration::from_secs(20), || async {
        matches!(
            minority.set(key, b"lost").await,
            Err(ClusterError::ClusterDown(_))
        )
    })
    .await;
    assert!(refused, "the minority master kept accepting writes");

    let witness = (isolated + 1) % nodes.len();
    let majority = nodes[witness].cluster();
    let failed_over = eventually(Duration::from_secs(20), || async {
        majority.set(key, b"kept").await.is_ok()
    })
    .await;
    assert!(
        failed_over,
        "the majority did not fail the isolated master over"
    );

    net.heal();
    let rejoined = eventually(Duration::from_secs(30), || async {
        let demoted = nodes[isolated]
            .inspect(|core| core.my_master().is_some() && core.cluster_state() == ClusterState::Ok)
            .await
            .unwrap_or(false);
        demoted && nodes[isolated].store().get(key).as_deref() == Some(&b"kept"[..])
    })
    .await;
    assert!(
        rejoined,
        "the old master did not return as a synced replica"
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await
    .unwrap();
}
