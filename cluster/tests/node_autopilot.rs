//! The autopilot over real TCP on loopback: five nodes given only the first one's bus
//! address form a cluster of three masters and two replicas with no admin call, each
//! decision reported as an event; a sixth node arriving later becomes the replica of the
//! master that lacked one; every key written through one node reads back through another.
//! A dry run reports the same decision and changes nothing.

mod node_support;

use std::time::{Duration, Instant};

use slotkv_cluster::core::formation::AutopilotDecision;
use slotkv_cluster::core::{ClusterState, Event};
use slotkv_cluster::{AutopilotOptions, Node};

use node_support::{builder, eventually, tcp};

fn options(seed: Option<&str>, dry_run: bool) -> AutopilotOptions {
    AutopilotOptions {
        seeds: seed.into_iter().map(str::to_string).collect(),
        min_masters: 3,
        replicas_per_master: 1,
        settle: Duration::from_millis(1_000),
        dry_run,
    }
}

/// Starts `count` nodes with the autopilot, the first one's address as every node's seed.
async fn start(count: usize, dry_run: bool) -> (Vec<Node>, String) {
    let first = builder(tcp(), 1)
        .autopilot(options(None, dry_run))
        .start()
        .await
        .unwrap();
    let seed = first.bus_address().to_string();
    let mut nodes = vec![first];
    for index in 1..count {
        let node = builder(tcp(), index as u64 + 1)
            .autopilot(options(Some(&seed), dry_run))
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    (nodes, seed)
}

/// (masters with slots, replicas) in `node`'s view.
async fn shape(node: &Node) -> (usize, usize) {
    node.inspect(|core| {
        let masters = core
            .nodes()
            .filter(|record| record.is_master() && !core.slots_of(&record.id).is_empty())
            .count();
        let replicas = core.nodes().filter(|record| record.is_replica()).count();
        (masters, replicas)
    })
    .await
    .unwrap()
}

async fn all_ok(nodes: &[Node]) -> bool {
    for node in nodes {
        if node.cluster_state().await.ok() != Some(ClusterState::Ok) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_given_a_seed_form_a_cluster_and_a_late_node_fills_the_missing_replica() {
    let started = Instant::now();
    let (mut nodes, seed) = start(5, false).await;
    let mut events = nodes[0].subscribe_events();
    assert!(
        eventually(Duration::from_secs(30), || async {
            all_ok(&nodes).await && shape(&nodes[4]).await == (3, 2)
        })
        .await,
        "not formed: {:?}",
        shape(&nodes[0]).await
    );
    println!(
        "5 nodes formed 3 masters + 2 replicas {:?} after the first started (settle 1 s)",
        started.elapsed()
    );
    // The lowest id formed it; every node saw the slots arrive, no admin call was made.
    let mut formed_by = Vec::new();
    for node in &nodes {
        let decided = node
            .inspect(|core| core.myself().is_master())
            .await
            .unwrap();
        formed_by.push(decided);
    }
    assert_eq!(formed_by.iter().filter(|master| **master).count(), 3);
    let cluster = nodes[4].cluster();
    for index in 0..500 {
        let key = format!("autopilot-{index}");
        cluster.set(key.as_bytes(), key.as_bytes()).await.unwrap();
    }
    let reader = nodes[1].cluster();
    for index in 0..500 {
        let key = format!("autopilot-{index}");
        assert_eq!(
            reader.get(key.as_bytes()).await.unwrap().as_deref(),
            Some(key.as_bytes())
        );
    }
    // A sixth node: the master without a replica gets it.
    let joining = Instant::now();
    let late = builder(tcp(), 6)
        .autopilot(options(Some(&seed), false))
        .start()
        .await
        .unwrap();
    let mut late_events = late.subscribe_events();
    nodes.push(late);
    assert!(
        eventually(Duration::from_secs(30), || async {
            all_ok(&nodes).await && shape(&nodes[0]).await == (3, 3)
        })
        .await,
        "the late node did not join: {:?}",
        shape(&nodes[0]).await
    );
    println!(
        "the sixth node joined as a replica in {:?}",
        joining.elapsed()
    );
    let master = nodes[5].master().map(|(id, _)| id);
    assert!(master.is_some());
    let mut joined = false;
    while let Ok(event) = late_events.try_recv() {
        if let Event::Autopilot {
            decision: AutopilotDecision::JoinAsReplica { master: chosen },
            dry_run: false,
        } = event
        {
            joined = Some(chosen) == master;
        }
    }
    assert!(joined, "the join is reported as an event");
    // Each master has exactly one replica now.
    let replicas_per_master = nodes[0]
        .inspect(|core| {
            core.nodes()
                .filter(|record| record.is_master() && !core.slots_of(&record.id).is_empty())
                .map(|record| core.replicas_of(&record.id).count())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    assert_eq!(replicas_per_master, vec![1, 1, 1]);
    while events.try_recv().is_ok() {}
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_the_formation_and_claims_nothing() {
    let (nodes, _) = start(3, true).await;
    let mut receivers: Vec<_> = nodes.iter().map(Node::subscribe_events).collect();
    let mut reported = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while reported.is_none() && tokio::time::Instant::now() < deadline {
        for receiver in &mut receivers {
            while let Ok(event) = receiver.try_recv() {
                if let Event::Autopilot {
                    decision: AutopilotDecision::Form(plan),
                    dry_run: true,
                } = event
                {
                    reported = Some(plan);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plan = reported.expect("the dry run reports its plan");
    assert_eq!(plan.masters.len(), 3);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for node in &nodes {
        let owned = node
            .inspect(|core| core.slot_table().assigned_count())
            .await
            .unwrap();
        assert_eq!(owned, 0, "a dry run claims no slot");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_seed_that_is_not_host_and_port_is_refused_at_start() {
    let Err(error) = builder(tcp(), 1).seeds(["no-port-here"]).start().await else {
        panic!("a seed without a port was accepted");
    };
    assert!(error.to_string().contains("no-port-here"), "{error}");
}
