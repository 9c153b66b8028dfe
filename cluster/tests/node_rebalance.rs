//! The cluster's shape changes under load on real TCP: a new master and its replica are
//! added (`add_node`), `rebalance` gives the empty master its quarter of the slots (three
//! atomic migrations, the default method), then `remove_node` drains an original master onto
//! the others (key by key, Redis's path), gives its replica away and has
//! every node forget it; four tasks write and read throughout, and every read and every
//! key at the end matches the last acknowledged write.
//!
//! `cargo test --release -p slotkv-cluster --test node_rebalance -- --nocapture` prints
//! what each step moved.

mod node_support;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slotkv_cluster::core::ClusterState;
use slotkv_cluster::{
    add_node, rebalance, remove_node, MoveMethod, Node, RebalanceOptions, ReshardOptions,
    DEFAULT_SHAPE_TIMEOUT,
};
use slotkv_engine::SLOT_COUNT;

use node_support::load::{preload, preloaded, write_read_and_delete, Expected};
use node_support::{eventually, form, shutdown_within_10s, start_nodes, tcp};

const KEYS: usize = 8_000;
const TASKS: usize = 4;

/// Each master's slot count in `node`'s view.
async fn slot_counts(node: &Node, masters: &[&Node]) -> Vec<usize> {
    let ids: Vec<_> = masters.iter().map(|master| master.id()).collect();
    node.inspect(move |core| {
        ids.iter()
            .map(|id| core.slot_table().count_of(id))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_added_rebalanced_onto_and_removed_under_load_losing_no_write() {
    let nodes = start_nodes((0..8).map(|_| tcp()).collect()).await;
    form(&nodes[..6]).await;
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|index| format!("shape:{index}").into_bytes())
        .collect();
    preload(&nodes[1].cluster(), &keys).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let own: Vec<Vec<u8>> = keys.iter().skip(task).step_by(TASKS).cloned().collect();
            let initial = preloaded(&own);
            tokio::spawn(write_read_and_delete(
                task,
                nodes[1 + task % 2].cluster(),
                own,
                initial,
                Arc::clone(&stop),
            ))
        })
        .collect();

    let six: Vec<&Node> = nodes[..6].iter().collect();
    add_node(&six, &nodes[6], None, DEFAULT_SHAPE_TIMEOUT)
        .await
        .unwrap();
    let seven: Vec<&Node> = nodes[..7].iter().collect();
    add_node(
        &seven,
        &nodes[7],
        Some(nodes[6].id()),
        DEFAULT_SHAPE_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(
        nodes[7].inspect(|core| core.my_master()).await.unwrap(),
        Some(nodes[6].id())
    );

    let all: Vec<&Node> = nodes.iter().collect();
    let masters: Vec<&Node> = vec![&nodes[0], &nodes[1], &nodes[2], &nodes[6]];
    // Without use_empty_masters an empty master is not counted: nothing moves.
    let unchanged = rebalance(&all, &RebalanceOptions::default(), |_| {
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert!(unchanged.moves.is_empty(), "{unchanged:?}");
    // The default method: each move an atomic migration.
    let options = RebalanceOptions {
        use_empty_masters: true,
        ..RebalanceOptions::default()
    };
    let balanced = rebalance(&all, &options, |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    println!("rebalance: {balanced:?}");
    assert_eq!(balanced.moves.len(), 3, "{balanced:?}");
    assert!(balanced
        .moves
        .iter()
        .all(|planned| planned.to == nodes[6].id()));
    let counts = slot_counts(&nodes[1], &masters).await;
    assert!(
        counts.iter().all(|&count| count == SLOT_COUNT / 4),
        "{counts:?}"
    );
    // Balanced now: a second run moves nothing.
    let again = rebalance(&all, &options, |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    assert!(again.moves.is_empty(), "{again:?}");

    let removed_id = nodes[0].id();
    let mut removed_replica = None;
    for (index, node) in nodes.iter().enumerate() {
        if node.inspect(|core| core.my_master()).await.unwrap() == Some(removed_id) {
            removed_replica = Some(index);
        }
    }
    let removed_replica = removed_replica.expect("the removed master had a replica");
    let removal = remove_node(
        &all,
        removed_id,
        // Redis's path: the drain runs key by key.
        MoveMethod::KeyByKey(ReshardOptions::default()),
        DEFAULT_SHAPE_TIMEOUT,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    println!("remove_node: {removal:?}");
    // Its replica was given away, by remove_node or already by replica migration when the
    // master lost its last slot.
    assert!(removal.replicas_moved <= 1);
    let slots_out: usize = removal.moves.iter().map(|planned| planned.slots).sum();
    assert_eq!(slots_out, SLOT_COUNT / 4);
    let remaining: Vec<&Node> = nodes[1..].iter().collect();
    let remaining_masters: Vec<&Node> = vec![&nodes[1], &nodes[2], &nodes[6]];
    let counts = slot_counts(&nodes[1], &remaining_masters).await;
    assert_eq!(counts.iter().sum::<usize>(), SLOT_COUNT, "{counts:?}");
    let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
    assert!(
        spread <= 1,
        "the drained slots were not spread evenly: {counts:?}"
    );
    let moved_to = nodes[removed_replica]
        .inspect(|core| core.my_master())
        .await
        .unwrap();
    assert!(moved_to.is_some_and(|master| master != removed_id));
    for node in &remaining {
        let known = node
            .inspect(move |core| core.node(&removed_id).is_some())
            .await
            .unwrap();
        assert!(!known, "{} still knows the removed node", node.id());
    }
    let forgotten_by_it = nodes[0].inspect(|core| core.nodes().count()).await.unwrap();
    assert_eq!(
        forgotten_by_it, 1,
        "the removed node still knows the cluster"
    );
    let ok = eventually(Duration::from_secs(10), || async {
        for node in &remaining {
            if !node
                .cluster_state()
                .await
                .is_ok_and(|state| state == ClusterState::Ok)
            {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok, "the remaining cluster is not ok");

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Release);
    let mut expected: HashMap<Vec<u8>, Expected> = HashMap::new();
    let (mut writes, mut reads) = (0, 0);
    for task in tasks {
        let report = task.await.unwrap();
        assert!(
            report.wrong_reads.is_empty(),
            "{:?}",
            &report.wrong_reads[..1]
        );
        writes += report.writes;
        reads += report.reads;
        expected.extend(report.expected);
    }
    println!("callers: {writes} writes, {reads} reads");
    assert!(writes > 0 && reads > 0);
    let reader = nodes[2].cluster();
    for (key, wanted) in &expected {
        let read = reader.get(key).await.unwrap();
        assert!(
            wanted.admits(read.as_deref()),
            "{}: read {read:?}",
            String::from_utf8_lossy(key)
        );
    }
    let held: usize = remaining_masters
        .iter()
        .map(|node| node.memory().keys)
        .sum();
    // Every key the writes left in place is on exactly one master (a write in doubt may
    // or may not have applied).
    let certain = expected
        .values()
        .filter(|wanted| wanted.acknowledged.is_some() && wanted.in_doubt.is_none())
        .count();
    let doubtful = expected
        .values()
        .filter(|wanted| wanted.in_doubt.is_some())
        .count();
    assert!(
        (certain..=certain + doubtful).contains(&held),
        "{held} keys held, {certain} expected (+{doubtful} in doubt): every key on exactly one master"
    );
    shutdown_within_10s(nodes).await;
}
