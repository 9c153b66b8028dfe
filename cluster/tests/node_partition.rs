//! On the simulated transport: a master cut off in a minority partition stops accepting writes,
//! the majority fails it over, and after the heal it returns as a replica of its successor.
//! A replica cut off from its master for a while resumes with a partial resync from the backlog.

mod node_support;

use std::time::Duration;

use slotkv_cluster::core::ClusterState;
use slotkv_cluster::ClusterError;
use slotkv_transport::sim::SimNet;

use node_support::{
    eventually, form, owner_index, replica_index, shutdown_within_10s, start_sim_nodes,
};

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
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_for_a_while_resumes_with_a_partial_resync() {
    let net = SimNet::new(23);
    let nodes = start_sim_nodes(&net, 6).await;
    form(&nodes).await;
    let master = owner_index(&nodes, b"{p}before").await;
    let master_id = nodes[master].id();
    let replica = replica_index(&nodes, master_id).await;
    let cluster = nodes[master].cluster();
    cluster.set(b"{p}before", b"1").await.unwrap();
    assert_eq!(cluster.wait(1, Duration::from_secs(5)).await.unwrap(), 1);
    let full_syncs = nodes[master].replication_info().full_syncs_served;
    let master_name = nodes[master].bus_address().to_string();
    let replica_name = nodes[replica].bus_address().to_string();
    net.partition(&[master_name.as_str()], &[replica_name.as_str()]);
    for index in 0..200 {
        let key = format!("{{p}}during:{index}");
        let _ = cluster.set(key.as_bytes(), b"2").await;
    }
    // Longer than the replica's stale-stream limit, so it asks for a resync.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    net.heal();
    let caught_up = eventually(Duration::from_secs(20), || async {
        nodes[replica].replication_info().offset == nodes[master].replication_info().offset
    })
    .await;
    assert!(caught_up, "the replica did not catch up after the heal");
    assert!(nodes[master].replication_info().offset > 200);
    assert_eq!(
        nodes[replica].store().dbsize(),
        nodes[master].store().dbsize()
    );
    let info = nodes[master].replication_info();
    assert_eq!(info.full_syncs_served, full_syncs, "{info:?}");
    assert!(info.partial_syncs_served >= 1, "{info:?}");
    shutdown_within_10s(nodes).await;
}
