//! The data path's rules on real TCP: ASK during a slot migration (followed with ASKING),
//! TRYAGAIN for a multi-key request split across source and target, durability that cannot
//! be met, expirations replicated as deletes, and a default manual failover that loses no
//! write.

mod node_support;

use std::time::Duration;

use slotkv_cluster::core::{FailoverMode, SetSlotAction};
use slotkv_cluster::{ClusterError, Durability};
use slotkv_engine::{ExpireTime, SetExpiry, SetOptions};

use node_support::{eventually, form, owner_index, replica_index, start_nodes, tcp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_slots_answer_ask_and_tryagain_and_the_handle_follows() {
    let nodes = start_nodes((0..3).map(|_| tcp()).collect()).await;
    let refs: Vec<&slotkv_cluster::Node> = nodes.iter().collect();
    slotkv_cluster::create_cluster(&refs, 0, Duration::from_secs(30))
        .await
        .unwrap();
    let present = b"{moving}present";
    let absent = b"{moving}absent";
    let source = owner_index(&nodes, present).await;
    let target = (source + 1) % 3;
    let third = (source + 2) % 3;
    nodes[0].cluster().set(present, b"here").await.unwrap();
    let slot = slotkv_engine::key_slot(present);
    let (source_id, target_id) = (nodes[source].id(), nodes[target].id());
    nodes[target]
        .set_slot(slot, SetSlotAction::Importing(source_id))
        .await
        .unwrap();
    nodes[source]
        .set_slot(slot, SetSlotAction::Migrating(target_id))
        .await
        .unwrap();

    let through_third = nodes[third].cluster();
    through_third.set(absent, b"new").await.unwrap();
    assert_eq!(
        nodes[target].store().get(absent).as_deref(),
        Some(&b"new"[..])
    );
    assert!(
        nodes[source].store().get(absent).is_none(),
        "ASK sends new keys to the target"
    );
    assert_eq!(
        through_third.get(present).await.unwrap().as_deref(),
        Some(&b"here"[..])
    );
    assert_eq!(
        through_third.get(absent).await.unwrap().as_deref(),
        Some(&b"new"[..])
    );
    let split = through_third.mget(&[present, absent]).await.unwrap_err();
    assert!(matches!(split, ClusterError::TryAgain { .. }), "{split:?}");
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_carries_expiry_as_deletes_and_unmet_durability_is_reported() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let key = b"short-lived";
    let master = owner_index(&nodes, key).await;
    let master_id = nodes[master].id();
    let replica = replica_index(&nodes, master_id).await;
    let options = SetOptions {
        expiry: SetExpiry::Expire(ExpireTime::Milliseconds(300)),
        ..SetOptions::default()
    };
    let durable = nodes[0].cluster().with_durability(Durability::Replicas {
        replicas: 1,
        timeout_ms: 5_000,
    });
    durable.set_with(key, b"soon gone", options).await.unwrap();
    assert_eq!(nodes[replica].store().dbsize(), 1);
    let deleted = eventually(Duration::from_secs(10), || async {
        nodes[replica].store().dbsize() == 0
    })
    .await;
    assert!(deleted, "the expiry did not reach the replica as a delete");

    let impossible = nodes[0].cluster().with_durability(Durability::Replicas {
        replicas: 2,
        timeout_ms: 200,
    });
    let error = impossible.set(key, b"v").await.unwrap_err();
    assert_eq!(
        error,
        ClusterError::NotDurable {
            acknowledged: 1,
            wanted: 2
        }
    );
    assert_eq!(
        nodes[0].cluster().get(key).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_manual_failover_loses_no_write() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let cluster = nodes[0].cluster();
    for index in 0..1_000 {
        let key = format!("manual:{index}");
        cluster.set(key.as_bytes(), key.as_bytes()).await.unwrap();
    }
    let master_id = nodes[0].id();
    let promoted = replica_index(&nodes, master_id).await;
    nodes[promoted]
        .failover(FailoverMode::Default)
        .await
        .unwrap();
    let swapped = eventually(Duration::from_secs(20), || async {
        let new_master = nodes[promoted]
            .inspect(|core| core.my_master().is_none())
            .await;
        let old_replica = nodes[0].inspect(|core| core.my_master()).await;
        new_master.unwrap_or(false) && old_replica.ok().flatten() == Some(nodes[promoted].id())
    })
    .await;
    assert!(swapped, "the manual failover did not complete");
    for index in 0..1_000 {
        let key = format!("manual:{index}");
        let value = cluster.get(key.as_bytes()).await.unwrap();
        assert_eq!(value.as_deref(), Some(key.as_bytes()), "lost {key}");
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// A key of a slot that node 0 masters after `create_cluster` (slots 0..=5460).
fn key_of_first_master(tag: &str) -> Vec<u8> {
    (0..)
        .map(|index| format!("{tag}:{index}").into_bytes())
        .find(|key| slotkv_engine::key_slot(key) <= 5_460)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disagreeing_slot_maps_give_bounded_redirections_and_the_handle_follows_moved() {
    let nodes = start_nodes((0..3).map(|_| tcp()).collect()).await;
    let refs: Vec<&slotkv_cluster::Node> = nodes.iter().collect();
    slotkv_cluster::create_cluster(&refs, 0, Duration::from_secs(30))
        .await
        .unwrap();
    let key = key_of_first_master("disagree");
    let slot = slotkv_engine::key_slot(&key);
    let (first, second) = (nodes[0].id(), nodes[1].id());
    let through_third = nodes[2].cluster();

    // Node 0 hands the slot to node 1, which never hears of it: each names the other as the
    // owner (nobody claims the slot, so gossip leaves both maps as they are).
    nodes[0]
        .set_slot(slot, SetSlotAction::Node(second))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), through_third.set(&key, b"x"))
        .await
        .expect("a MOVED loop must end by itself");
    assert!(
        matches!(answer, Err(ClusterError::TooManyRedirections { .. })),
        "{answer:?}"
    );
    assert!(nodes[0].store().get(&key).is_none() && nodes[1].store().get(&key).is_none());

    // Node 1 takes the slot: nodes 0 and 1 now agree, node 2 still names node 0 until
    // gossip reaches it. The handle on node 2 follows node 0's MOVED to node 1.
    nodes[1]
        .set_slot(slot, SetSlotAction::Node(second))
        .await
        .unwrap();
    through_third.set(&key, b"moved").await.unwrap();
    assert_eq!(nodes[1].store().get(&key).as_deref(), Some(&b"moved"[..]));
    assert!(
        nodes[0].store().get(&key).is_none(),
        "the old owner took a write"
    );
    assert_eq!(
        through_third.get(&key).await.unwrap().as_deref(),
        Some(&b"moved"[..])
    );
    let converged = eventually(Duration::from_secs(20), || async {
        let owner = nodes[2]
            .inspect(move |core| core.slot_owner(slot))
            .await
            .unwrap();
        owner == Some(second)
    })
    .await;
    assert!(converged, "node 2's map never caught up with node 1");
    assert_ne!(first, second);
    through_third.set(&key, b"direct").await.unwrap();
    assert_eq!(nodes[1].store().get(&key).as_deref(), Some(&b"direct"[..]));
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_more_replicas_than_exist_returns_the_count_within_its_timeout() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let cluster = nodes[0].cluster();
    let mut owners = std::collections::HashSet::new();
    for index in 0..64 {
        let key = format!("wait:{index}");
        cluster.set(key.as_bytes(), b"v").await.unwrap();
        owners.insert(owner_index(&nodes, key.as_bytes()).await);
    }
    assert_eq!(owners.len(), 3, "the writes should reach every master");
    // Each master has one replica, so WAIT 2 runs into its timeout on every master: the
    // answer is the count (not a timeout error), and the masters are waited on together.
    let started = std::time::Instant::now();
    let count = cluster.wait(2, Duration::from_millis(1_000)).await;
    let elapsed = started.elapsed();
    assert_eq!(count, Ok(1));
    assert!(elapsed < Duration::from_millis(2_500), "{elapsed:?}");
    for node in nodes {
        node.shutdown().await;
    }
}
