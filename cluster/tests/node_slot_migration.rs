//! Slot migration on real TCP, 3 masters with a replica each: 2,000 slots of a
//! 200,000-key cluster move while 8 tasks read, write and delete throughout, atomically
//! (`Node::migrate_slots`: no error and no ASK seen by any caller) and key by key
//! (`reshard`, Redis's path: no error, the callers follow ASK), every key as last
//! acknowledged and the per-slot counts the writes imply. A target killed mid-migration
//! leaves the slots served by the source with nothing lost; a source killed mid-migration
//! leaves the slots wholly with its promoted replica and the target drops its copy; a
//! cancelled migration leaves no copy at the target; a target restarted from its data
//! directory mid-migration comes back with the slots stable at the source, none of its
//! partial copy, and takes them on a retry. Background migrations (`start_slot_migrations`)
//! start all or none, report their state and cancel.
//!
//! `cargo test --release -p slotkv-cluster --test node_slot_migration -- --nocapture`
//! prints what each migration moved and how long its slots were paused.

mod node_support;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::slots::{SlotRange, SlotState};
use slotkv_cluster::{
    create_cluster, reshard, Node, Persistence, ReshardOptions, SlotMigrationError,
    SlotMigrationJobState, SlotMigrationOperation, SlotMigrationOptions, SlotMigrationProgress,
    StartMigrationsError,
};
use slotkv_engine::{key_slot, Slot};

use node_support::load::{preload, preloaded, write_read_and_delete, Expected, TaskReport};
use node_support::{builder, eventually, form, shutdown_within_10s, start_nodes, tcp, temp_dir};

const KEYS: usize = 200_000;
const TASKS: usize = 8;

/// The index of the master owning `slot` in `nodes[0]`'s view.
async fn owner_of(nodes: &[Node], slot: Slot) -> usize {
    let owner = nodes[0]
        .inspect(move |core| core.slot_owner(slot))
        .await
        .unwrap()
        .unwrap();
    nodes.iter().position(|node| node.id() == owner).unwrap()
}

/// Index of the replica of master `master`.
async fn replica_of(nodes: &[Node], master: NodeId) -> usize {
    for (index, node) in nodes.iter().enumerate() {
        if node.inspect(|core| core.my_master()).await.unwrap() == Some(master) {
            return index;
        }
    }
    panic!("master {master} has no replica");
}

/// Starts `TASKS` writer-readers over `keys` through the nodes in turn.
fn start_load(
    nodes: &[Node],
    keys: &[Vec<u8>],
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<TaskReport>> {
    (0..TASKS)
        .map(|task| {
            let own: Vec<Vec<u8>> = keys.iter().skip(task).step_by(TASKS).cloned().collect();
            let initial = preloaded(&own);
            tokio::spawn(write_read_and_delete(
                task,
                nodes[task % nodes.len()].cluster(),
                own,
                initial,
                Arc::clone(stop),
            ))
        })
        .collect()
}

/// Stops the load and returns what the keys must hold, failing on any wrong read and,
/// when `no_errors`, on any error a caller saw.
async fn finish_load(
    stop: &AtomicBool,
    tasks: Vec<tokio::task::JoinHandle<TaskReport>>,
    no_errors: bool,
) -> HashMap<Vec<u8>, Expected> {
    stop.store(true, Ordering::Release);
    let mut expected = HashMap::new();
    let (mut writes, mut reads) = (0, 0);
    for task in tasks {
        let report = task.await.unwrap();
        assert!(
            report.wrong_reads.is_empty(),
            "{} wrong reads, first: {:?}",
            report.wrong_reads.len(),
            &report.wrong_reads[..1]
        );
        if no_errors {
            assert!(
                report.errors.is_empty(),
                "{} errors, first: {:?}",
                report.errors.len(),
                &report.errors[..1]
            );
        }
        writes += report.writes;
        reads += report.reads;
        expected.extend(report.expected);
    }
    println!("callers: {writes} writes, {reads} reads");
    assert!(writes > 0 && reads > 0);
    expected
}

/// Every key reads as expected through `node`.
async fn check_keys(node: &Node, expected: &HashMap<Vec<u8>, Expected>) {
    let reader = node.cluster();
    let keys: Vec<&Vec<u8>> = expected.keys().collect();
    for chunk in keys.chunks(256) {
        let reads = chunk.iter().map(|key| reader.get(key));
        let values = futures_util::future::join_all(reads).await;
        for (key, value) in chunk.iter().zip(values) {
            let value = value.unwrap();
            assert!(
                expected[*key].admits(value.as_deref()),
                "{} lost: {:?}",
                String::from_utf8_lossy(key),
                value.map(|value| String::from_utf8_lossy(&value).to_string())
            );
        }
    }
}

/// Keys of `expected` present, per slot.
fn present_per_slot(expected: &HashMap<Vec<u8>, Expected>) -> HashMap<Slot, usize> {
    let mut counts = HashMap::new();
    for (key, wanted) in expected {
        if wanted.acknowledged.is_some() && wanted.in_doubt.is_none() {
            *counts.entry(key_slot(key)).or_insert(0) += 1;
        }
    }
    counts
}

/// Six nodes (3 masters with a replica each) holding `KEYS` keys named `<prefix>:<i>`,
/// with `TASKS` tasks reading, writing and deleting them through the masters' handles.
struct LoadedCluster {
    nodes: Vec<Node>,
    /// The master of slot 0 and of slot 16383, and the latter's replica.
    source: usize,
    target: usize,
    target_replica: usize,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<TaskReport>>,
}

impl LoadedCluster {
    async fn start(prefix: &str) -> LoadedCluster {
        let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
        form(&nodes).await;
        let keys: Vec<Vec<u8>> = (0..KEYS)
            .map(|index| format!("{prefix}:{index}").into_bytes())
            .collect();
        preload(&nodes[1].cluster(), &keys).await;
        let source = owner_of(&nodes, 0).await;
        let target = owner_of(&nodes, 16_383).await;
        assert_ne!(source, target);
        let target_replica = replica_of(&nodes, nodes[target].id()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = start_load(&nodes[..3], &keys, &stop);
        tokio::time::sleep(Duration::from_millis(300)).await;
        LoadedCluster {
            nodes,
            source,
            target,
            target_replica,
            stop,
            tasks,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slots_move_atomically_under_load_with_no_error_and_no_ask() {
    let loaded = LoadedCluster::start("atomic").await;
    let (nodes, source, target, target_replica) = (
        &loaded.nodes,
        loaded.source,
        loaded.target,
        loaded.target_replica,
    );

    // 2,000 slots in two migrations of 1,000, each flipped with one epoch bump.
    let mut pauses = Vec::new();
    for range in [
        SlotRange { start: 0, end: 999 },
        SlotRange {
            start: 1000,
            end: 1999,
        },
    ] {
        let mut batches = 0;
        let report = nodes[source]
            .migrate_slots(
                &[range],
                nodes[target].id(),
                SlotMigrationOptions::default(),
                |_| {
                    batches += 1;
                    ControlFlow::Continue(())
                },
            )
            .await
            .unwrap();
        println!("migrate_slots {range:?}: {report:?}, {batches} batches");
        assert_eq!(report.slots, 1000);
        assert!(report.keys_sent >= (KEYS * 1000 / 16_384 * 9 / 10) as u64);
        pauses.push(report.pause);
    }
    println!("pauses: {pauses:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = finish_load(&loaded.stop, loaded.tasks, true).await;

    let asks: u64 = nodes.iter().map(|node| node.stats().asks_answered).sum();
    assert_eq!(asks, 0, "an atomic migration never answers ASK");
    let completed = nodes[source].stats().slot_migrations_completed;
    assert_eq!(completed, 2);
    check_moved(nodes, source, target, target_replica, &expected).await;
    shutdown_within_10s(loaded.nodes).await;
}

/// Keys of the slots in `range`, `count` of them.
/// After slots 0..2000 moved from master `source` to master `target` (replicated to
/// `target_replica`): every node sees the target own them, none open; every key reads as
/// `expected`; the target and its replica hold exactly the keys the writes imply, per
/// slot; the source holds none of them.
async fn check_moved(
    nodes: &[Node],
    source: usize,
    target: usize,
    target_replica: usize,
    expected: &HashMap<Vec<u8>, Expected>,
) {
    let target_id = nodes[target].id();
    let moved = eventually(Duration::from_secs(10), || async {
        for node in nodes {
            let owned = node
                .inspect(move |core| {
                    (0..2000).all(|slot| {
                        core.slot_owner(slot) == Some(target_id)
                            && core.slot_state(slot) == SlotState::Stable
                    })
                })
                .await
                .unwrap();
            if !owned {
                return false;
            }
        }
        true
    })
    .await;
    assert!(moved, "not every node sees the slots at the target");
    check_keys(&nodes[2], expected).await;
    let wanted = present_per_slot(expected);
    let counts_match = |node: usize| {
        let store = nodes[node].store();
        let wanted = &wanted;
        (0..2000u16).all(move |slot| {
            store.count_keys_in_slot(slot).unwrap() == wanted.get(&slot).copied().unwrap_or(0)
        })
    };
    assert!(counts_match(target), "the target's per-slot counts differ");
    let replica_caught_up = eventually(Duration::from_secs(10), || async {
        counts_match(target_replica)
    })
    .await;
    assert!(
        replica_caught_up,
        "the target's replica's per-slot counts differ"
    );
    let left: usize = (0..2000u16)
        .map(|slot| nodes[source].store().count_keys_in_slot(slot).unwrap())
        .sum();
    assert_eq!(left, 0, "the source kept keys of slots it gave away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slots_move_key_by_key_under_load_with_no_error_and_nothing_lost() {
    let loaded = LoadedCluster::start("bykey").await;
    let (nodes, source, target, target_replica) = (
        &loaded.nodes,
        loaded.source,
        loaded.target,
        loaded.target_replica,
    );

    // Redis's path: per slot IMPORTING, MIGRATING, keys in MIGRATE batches, SETSLOT NODE.
    let refs: Vec<&Node> = nodes.iter().collect();
    let slots: Vec<Slot> = (0..2000).collect();
    let started = std::time::Instant::now();
    let report = reshard(
        &refs,
        nodes[source].id(),
        nodes[target].id(),
        &slots,
        ReshardOptions::default(),
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    println!(
        "reshard of 2,000 slots: {report:?}, {:.0} keys/s",
        report.keys_moved as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(report.slots_moved, 2000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Callers follow ASK (and retry TRYAGAIN) on their own: none saw an error.
    let expected = finish_load(&loaded.stop, loaded.tasks, true).await;
    let asks: u64 = nodes.iter().map(|node| node.stats().asks_answered).sum();
    println!("ASK answers seen by callers' handles: {asks}");
    check_moved(nodes, source, target, target_replica, &expected).await;
    shutdown_within_10s(loaded.nodes).await;
}

/// Options slow enough for a kill or restart to land mid-snapshot: 200 kB/s in batches of
/// 500 keys, each ack awaited at most 2 s.
fn throttled() -> SlotMigrationOptions {
    SlotMigrationOptions {
        bytes_per_second: Some(200_000),
        batch_keys: 500,
        ack_timeout: Duration::from_secs(2),
        ..SlotMigrationOptions::default()
    }
}

/// A flag set once the target acknowledged a batch, and the progress callback setting it.
fn ack_flag() -> (
    Arc<AtomicBool>,
    impl FnMut(&SlotMigrationProgress) -> ControlFlow<()>,
) {
    let acked = Arc::new(AtomicBool::new(false));
    let first_ack = Arc::clone(&acked);
    (acked, move |_: &SlotMigrationProgress| {
        first_ack.store(true, Ordering::Release);
        ControlFlow::Continue(())
    })
}

fn keys_in(range: SlotRange, count: usize) -> Vec<Vec<u8>> {
    (0..)
        .map(|index| format!("few:{index}").into_bytes())
        .filter(|key| (range.start..=range.end).contains(&key_slot(key)))
        .take(count)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_mid_migration_leaves_the_slots_served_by_the_source() {
    let mut nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let range = SlotRange { start: 0, end: 499 };
    let keys = keys_in(range, 20_000);
    preload(&nodes[0].cluster(), &keys).await;
    let source = owner_of(&nodes, 0).await;
    let target = owner_of(&nodes, 16_383).await;
    let target_id = nodes[target].id();
    let successor_id = nodes[replica_of(&nodes, target_id).await].id();
    let target_node = nodes.remove(target);
    let source = if source > target { source - 1 } else { source };

    let stop = Arc::new(AtomicBool::new(false));
    let tasks = start_load(&nodes[..2], &keys, &stop);
    // Throttled so the kill lands mid-snapshot.
    let options = throttled();
    let ranges = [range];
    let migration =
        nodes[source].migrate_slots(&ranges, target_id, options, |_| ControlFlow::Continue(()));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        target_node.shutdown().await;
    };
    let (result, ()) = tokio::join!(migration, kill);
    println!("migration with its target killed: {result:?}");
    // Silent once gone, or refusing while it shuts down (its writes paused for the
    // hand-over to its replica).
    assert!(
        matches!(
            result,
            Err(SlotMigrationError::TargetSilent { .. } | SlotMigrationError::Refused(_))
        ),
        "{result:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected = finish_load(&stop, tasks, true).await;
    let source_id = nodes[source].id();
    let kept = nodes[source]
        .inspect(move |core| {
            (0..500).all(|slot| {
                core.slot_owner(slot) == Some(source_id)
                    && core.slot_state(slot) == SlotState::Stable
            })
        })
        .await
        .unwrap();
    assert!(kept, "the source no longer serves the slots");
    assert_eq!(nodes[source].stats().slot_migrations_abandoned, 1);
    check_keys(&nodes[1], &expected).await;
    // The target's replica took over from it with its partial copy: the copy goes too.
    let successor = nodes
        .iter()
        .position(|node| node.id() == successor_id)
        .unwrap();
    let copy_dropped = eventually(Duration::from_secs(15), || async {
        let copy: usize = (0..500u16)
            .map(|slot| nodes[successor].store().count_keys_in_slot(slot).unwrap())
            .sum();
        copy == 0
    })
    .await;
    let copy: usize = (0..500u16)
        .map(|slot| nodes[successor].store().count_keys_in_slot(slot).unwrap())
        .sum();
    assert!(
        copy_dropped,
        "the target's successor kept {copy} keys of its partial copy"
    );
    shutdown_within_10s(nodes).await;
}

/// The 30-minute chaos run's loss: a replica promoted in place of a master that is down
/// is its shard's only live member, so what it imports has one copy; it must refuse the
/// import (the source keeps the slots and its replicated copy) rather than acknowledge it
/// alone, where its crash would lose the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_shard_has_a_member_down_refuses_an_import_it_would_hold_alone() {
    let mut nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let range = SlotRange { start: 0, end: 99 };
    let keys = keys_in(range, 2_000);
    preload(&nodes[0].cluster(), &keys).await;
    let source_id = nodes[owner_of(&nodes, 0).await].id();
    let old_target = owner_of(&nodes, 16_383).await;
    let promoted_id = nodes[replica_of(&nodes, nodes[old_target].id()).await].id();
    drop(nodes.remove(old_target));
    let source = nodes
        .iter()
        .position(|node| node.id() == source_id)
        .unwrap();
    let promoted = nodes
        .iter()
        .position(|node| node.id() == promoted_id)
        .unwrap();
    let took_over = eventually(Duration::from_secs(30), || async {
        let at_source = nodes[source]
            .inspect(|core| core.slot_owner(16_383))
            .await
            .unwrap();
        let own = nodes[promoted]
            .inspect(|core| {
                core.myself().is_master() && core.slot_owner(16_383) == Some(core.myself_id())
            })
            .await
            .unwrap();
        own && at_source == Some(promoted_id)
    })
    .await;
    assert!(took_over, "the replica did not take over");
    let ranges = [range];
    let result = nodes[source]
        .migrate_slots(
            &ranges,
            promoted_id,
            SlotMigrationOptions::default(),
            |_| ControlFlow::Continue(()),
        )
        .await;
    assert!(
        result.is_err(),
        "imported with no copy besides the target: {result:?}"
    );
    let kept = nodes[source]
        .inspect(move |core| (0..100).all(|slot| core.slot_owner(slot) == Some(source_id)))
        .await
        .unwrap();
    assert!(kept, "the source gave the slots away");
    check_keys(&nodes[0], &preloaded(&keys)).await;
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_migration_leaves_every_key_at_the_source_and_no_copy_at_the_target() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let range = SlotRange { start: 0, end: 99 };
    let keys = keys_in(range, 5_000);
    preload(&nodes[0].cluster(), &keys).await;
    let source = owner_of(&nodes, 0).await;
    let target = owner_of(&nodes, 16_383).await;
    let options = SlotMigrationOptions {
        batch_keys: 1_000,
        ..SlotMigrationOptions::default()
    };
    let mut batches = 0;
    let result = nodes[source]
        .migrate_slots(&[range], nodes[target].id(), options, |_| {
            batches += 1;
            if batches == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await;
    assert_eq!(result, Err(SlotMigrationError::Cancelled));
    let copy: usize = (0..100u16)
        .map(|slot| nodes[target].store().count_keys_in_slot(slot).unwrap())
        .sum();
    assert_eq!(copy, 0, "the target kept a partial copy");
    let stable = nodes[target]
        .inspect(|core| (0..100).all(|slot| core.slot_state(slot) == SlotState::Stable))
        .await
        .unwrap();
    assert!(stable, "the target still imports");
    let expected = preloaded(&keys);
    check_keys(&nodes[1], &expected).await;
    // A migration whose future is dropped mid-stream is cancelled the same way.
    let throttled = SlotMigrationOptions {
        bytes_per_second: Some(100_000),
        batch_keys: 200,
        ..SlotMigrationOptions::default()
    };
    let ranges = [range];
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        nodes[source].migrate_slots(&ranges, nodes[target].id(), throttled, |_| {
            ControlFlow::Continue(())
        }),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the throttled migration ended within 300 ms"
    );
    let cleaned = eventually(Duration::from_secs(5), || async {
        let copy: usize = (0..100u16)
            .map(|slot| nodes[target].store().count_keys_in_slot(slot).unwrap())
            .sum();
        copy == 0 && nodes[source].stats().slot_migrations_abandoned == 2
    })
    .await;
    assert!(cleaned, "a dropped migration left a copy at the target");
    // One migration per slot: another one may start now, and completes.
    let again = nodes[source]
        .migrate_slots(
            &[range],
            nodes[target].id(),
            SlotMigrationOptions::default(),
            |_| ControlFlow::Continue(()),
        )
        .await
        .unwrap();
    assert_eq!(again.slots, 100);
    check_keys(&nodes[1], &expected).await;
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_killed_mid_migration_leaves_the_slots_wholly_with_its_successor() {
    let mut nodes = Vec::new();
    for index in 0..6u64 {
        let node = builder(tcp(), index + 1)
            .import_idle_timeout(Duration::from_secs(2))
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    form(&nodes).await;
    let range = SlotRange { start: 0, end: 499 };
    let keys = keys_in(range, 20_000);
    preload(&nodes[0].cluster(), &keys).await;
    let source = owner_of(&nodes, 0).await;
    let target = owner_of(&nodes, 16_383).await;
    let source_id = nodes[source].id();
    let successor = replica_of(&nodes, source_id).await;
    let successor_id = nodes[successor].id();
    // The preload is acknowledged without replica durability: the crash below must not
    // lose keys its replica had not received yet, which no migration could help.
    let replicated = eventually(Duration::from_secs(10), || async {
        let held: usize = (0..500u16)
            .map(|slot| nodes[successor].store().count_keys_in_slot(slot).unwrap())
            .sum();
        held == keys.len()
    })
    .await;
    assert!(replicated, "the source's replica never held the preload");
    let target_id = nodes[target].id();
    let source_node = nodes.remove(source);
    let target = if target > source { target - 1 } else { target };

    let options = throttled();
    let ranges = [range];
    let (acked, note_ack) = ack_flag();
    let migration = source_node.migrate_slots(&ranges, target_id, options, note_ack);
    // The migration is dropped with its source once the target acknowledged a batch,
    // mid-snapshot: a crash as far as the others can tell (no hand-over).
    let outcome = tokio::select! {
        result = migration => Some(result),
        _ = async {
            while !acked.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } => None,
    };
    assert!(
        outcome.is_none(),
        "the migration ended before the kill: {outcome:?}"
    );
    let partial: usize = (0..500u16)
        .map(|slot| nodes[target].store().count_keys_in_slot(slot).unwrap())
        .sum();
    // Usually some of the snapshot is there; the checks below hold either way.
    println!("keys at the target when the source died: {partial}");
    drop(source_node);

    // The source's replica takes its slots, all of them; the target drops its copy.
    let successor_owns = eventually(Duration::from_secs(15), || async {
        nodes[target]
            .inspect(move |core| (0..500).all(|slot| core.slot_owner(slot) == Some(successor_id)))
            .await
            .unwrap()
    })
    .await;
    assert!(successor_owns, "the successor did not take the slots");
    let dropped = eventually(Duration::from_secs(10), || async {
        let copy: usize = (0..500u16)
            .map(|slot| nodes[target].store().count_keys_in_slot(slot).unwrap())
            .sum();
        let importing = nodes[target]
            .inspect(|core| (0..500).any(|slot| core.slot_state(slot) != SlotState::Stable))
            .await
            .unwrap();
        copy == 0 && !importing
    })
    .await;
    assert!(
        dropped,
        "the target kept its partial copy ({partial} keys at the kill)"
    );
    let reader = nodes[target].cluster();
    for key in &keys {
        let value = reader.get(key).await.unwrap();
        assert_eq!(
            value.as_deref(),
            Some(&key[..]),
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_restarted_mid_migration_comes_back_without_the_import_or_its_partial_copy() {
    // Two masters without replicas keeping their data in snapshots across restarts.
    let directories = [
        temp_dir("restarted-target-0"),
        temp_dir("restarted-target-1"),
    ];
    let start = |bind: String, index: usize| {
        // A longer request timeout than the tests' 1 s: the check reads 11,000 keys, 256
        // at a time, on a machine the other tests keep busy.
        builder(tcp(), index as u64 + 1)
            .request_timeout_ms(10_000)
            .bind(bind)
            .data_dir(&directories[index])
            .persistence(Persistence::Snapshot)
            .start()
    };
    let mut nodes = vec![
        start("127.0.0.1:0".to_string(), 0).await.unwrap(),
        start("127.0.0.1:0".to_string(), 1).await.unwrap(),
    ];
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 0, Duration::from_secs(30))
        .await
        .unwrap();
    let range = SlotRange { start: 0, end: 199 };
    let moving = keys_in(range, 10_000);
    let staying = keys_in(
        SlotRange {
            start: 16_000,
            end: 16_383,
        },
        1_000,
    );
    let all: Vec<Vec<u8>> = moving.iter().chain(&staying).cloned().collect();
    preload(&nodes[0].cluster(), &all).await;
    let source = owner_of(&nodes, 0).await;
    let target = owner_of(&nodes, 16_383).await;
    assert_ne!(source, target);
    let target_node = nodes.remove(target);
    let source_node = nodes.remove(0);
    let (source_id, target_id) = (source_node.id(), target_node.id());
    let target_address = target_node.bus_address().to_string();

    let options = throttled();
    let ranges = [range];
    let (acked, note_ack) = ack_flag();
    let migration = source_node.migrate_slots(&ranges, target_id, options, note_ack);
    // The target shuts down (saving its snapshot, partial copy included) once it
    // acknowledged a batch, mid-snapshot.
    let restart = async {
        while !acked.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let partial: usize = (0..200u16)
            .map(|slot| target_node.store().count_keys_in_slot(slot).unwrap())
            .sum();
        println!("keys at the target when it shut down: {partial}");
        assert!(partial > 0, "the acknowledged batch is not at the target");
        target_node.shutdown().await;
    };
    let (result, ()) = tokio::join!(migration, restart);
    println!("migration with its target restarted: {result:?}");
    assert!(result.is_err(), "the migration completed: {result:?}");
    let restarted = start(target_address, target).await.unwrap();

    // Back with the slots stable at the source and no key of them.
    let stable = restarted
        .inspect(move |core| {
            (0..200).all(|slot| {
                core.slot_owner(slot) == Some(source_id)
                    && core.slot_state(slot) == SlotState::Stable
            })
        })
        .await
        .unwrap();
    assert!(stable, "the restarted target still imports");
    let copy: usize = (0..200u16)
        .map(|slot| restarted.store().count_keys_in_slot(slot).unwrap())
        .sum();
    assert_eq!(copy, 0, "the restarted target loaded its partial copy");
    assert_eq!(
        restarted.store().dbsize(),
        staying.len(),
        "the target's own keys came back"
    );
    // The slots may move to it again, and do, completely.
    let healthy = eventually(Duration::from_secs(15), || async {
        source_node
            .inspect(move |core| {
                core.nodes()
                    .any(|node| node.id == target_id && !node.is_failing())
            })
            .await
            .unwrap()
    })
    .await;
    assert!(healthy, "the source never saw the restarted target healthy");
    let writer = restarted.cluster();
    let serving = eventually(Duration::from_secs(15), || async {
        writer.set(&staying[0], &staying[0]).await.is_ok()
    })
    .await;
    assert!(serving, "the restarted target never took writes");
    let again = source_node
        .migrate_slots(&ranges, target_id, SlotMigrationOptions::default(), |_| {
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(again.slots, 200);
    let expected = preloaded(&all);
    check_keys(&source_node, &expected).await;
    check_keys(&restarted, &expected).await;
    shutdown_within_10s(vec![source_node, restarted]).await;
    for directory in directories {
        let _ = std::fs::remove_dir_all(directory);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_migrations_start_all_or_none_report_their_state_and_cancel() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let keys = keys_in(SlotRange { start: 0, end: 299 }, 6_000);
    preload(&nodes[0].cluster(), &keys).await;
    let source = owner_of(&nodes, 0).await;
    let target = owner_of(&nodes, 16_383).await;
    let (source_node, target_id) = (&nodes[source], nodes[target].id());
    let range = |start, end| SlotRange { start, end };
    // All or none: an overlap, or a slot this node does not own, starts nothing.
    let overlap = source_node.start_slot_migrations(
        &[
            (vec![range(0, 9)], target_id),
            (vec![range(5, 19)], target_id),
        ],
        SlotMigrationOptions::default(),
    );
    assert_eq!(overlap, Err(StartMigrationsError::Overlap(5)));
    let not_mine = source_node.start_slot_migrations(
        &[
            (vec![range(0, 9)], target_id),
            (vec![range(16_383, 16_383)], target_id),
        ],
        SlotMigrationOptions::default(),
    );
    assert_eq!(
        not_mine,
        Err(StartMigrationsError::Migration(
            SlotMigrationError::NotOwner(16_383)
        ))
    );
    assert!(
        source_node.slot_migrations().is_empty(),
        "a refused start left a job"
    );

    // Two jobs; the throttled one is cancelled, the other completes.
    let throttled = SlotMigrationOptions {
        bytes_per_second: Some(100_000),
        batch_keys: 100,
        ..SlotMigrationOptions::default()
    };
    let names = source_node
        .start_slot_migrations(&[(vec![range(100, 299)], target_id)], throttled)
        .unwrap();
    let quick = source_node
        .start_slot_migrations(
            &[(vec![range(0, 99)], target_id)],
            SlotMigrationOptions::default(),
        )
        .unwrap();
    assert_eq!((names.len(), quick.len()), (1, 1));
    assert_eq!(names[0].len(), 40);
    let again = source_node.start_slot_migrations(
        &[(vec![range(150, 150)], target_id)],
        SlotMigrationOptions::default(),
    );
    assert_eq!(
        again,
        Err(StartMigrationsError::Migration(
            SlotMigrationError::AlreadyMigrating(150)
        ))
    );
    let state_of = |name: &str| {
        source_node
            .slot_migrations()
            .into_iter()
            .find(|job| job.name == name)
            .map(|job| job.state)
    };
    let done = eventually(Duration::from_secs(10), || async {
        state_of(&quick[0]) == Some(SlotMigrationJobState::Succeeded)
    })
    .await;
    assert!(
        done,
        "the quick job did not succeed: {:?}",
        source_node.slot_migrations()
    );
    assert!(state_of(&names[0]).is_some_and(SlotMigrationJobState::is_running));
    assert_eq!(source_node.cancel_slot_migrations(), 1);
    let cancelled = eventually(Duration::from_secs(10), || async {
        state_of(&names[0]) == Some(SlotMigrationJobState::Cancelled)
    })
    .await;
    assert!(cancelled, "{:?}", source_node.slot_migrations());
    let jobs = source_node.slot_migrations();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0].source, jobs[0].target),
        (source_node.id(), target_id)
    );
    assert!(jobs[1].message.contains("100 slots"), "{jobs:?}");
    // The cancelled job's slots stayed, with no copy at the target; the others moved.
    let copy: usize = (100..300u16)
        .map(|slot| nodes[target].store().count_keys_in_slot(slot).unwrap())
        .sum();
    let cleaned = eventually(Duration::from_secs(5), || async {
        (100..300u16)
            .map(|slot| nodes[target].store().count_keys_in_slot(slot).unwrap())
            .sum::<usize>()
            == 0
    })
    .await;
    assert!(cleaned, "the target kept {copy} keys of the cancelled job");
    let owners = nodes[source]
        .inspect(move |core| (core.slot_owner(0), core.slot_owner(100)))
        .await
        .unwrap();
    assert_eq!(owners, (Some(target_id), Some(nodes[source].id())));
    // The target logs its side of both: the quick one imported with its keys, the other
    // cancelled by its source.
    let moved: usize = (0..100u16)
        .map(|slot| nodes[target].store().count_keys_in_slot(slot).unwrap())
        .sum();
    let imports = nodes[target].slot_migrations();
    let import_of = |start: u16| {
        imports
            .iter()
            .find(|job| job.ranges[0].start == start)
            .unwrap_or_else(|| panic!("no import of {start}: {imports:?}"))
    };
    let (done, stopped) = (import_of(0), import_of(100));
    assert!(imports
        .iter()
        .all(|job| job.operation == SlotMigrationOperation::Import
            && (job.source, job.target) == (nodes[source].id(), target_id)));
    assert_eq!(done.state, SlotMigrationJobState::Succeeded, "{imports:?}");
    assert_eq!(done.keys_sent, moved as u64, "{imports:?}");
    assert!(done.message.contains("100 slots owned"), "{imports:?}");
    assert_eq!(
        stopped.state,
        SlotMigrationJobState::Cancelled,
        "{imports:?}"
    );
    assert_eq!(
        nodes[target].cancel_slot_migrations(),
        0,
        "imports are the source's to cancel"
    );
    check_keys(&nodes[1], &preloaded(&keys)).await;
    shutdown_within_10s(nodes).await;
}

/// Several background migrations from one source to one target at once, each batch
/// several frames long (300 KB values): the target keeps their batches apart, every job
/// succeeds and every value arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_to_one_target_keep_their_batches_apart() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let source = owner_of(&nodes, 0).await;
    let target = owner_of(&nodes, 16_383).await;
    let (source_node, target_id) = (&nodes[source], nodes[target].id());
    let keys = keys_in(SlotRange { start: 0, end: 11 }, 96);
    let value = |key: &[u8]| {
        let mut value = key.to_vec();
        value.resize(300_000, b'v');
        value
    };
    let cache = nodes[1].cluster();
    for key in &keys {
        cache.set(key, &value(key)).await.unwrap();
    }
    let requests: Vec<_> = (0..6u16)
        .map(|job| {
            let range = SlotRange {
                start: job * 2,
                end: job * 2 + 1,
            };
            (vec![range], target_id)
        })
        .collect();
    let names = source_node
        .start_slot_migrations(&requests, SlotMigrationOptions::default())
        .unwrap();
    let finished = eventually(Duration::from_secs(20), || async {
        source_node
            .slot_migrations()
            .iter()
            .all(|job| !job.state.is_running())
    })
    .await;
    let jobs = source_node.slot_migrations();
    assert!(finished, "{jobs:?}");
    assert_eq!(jobs.len(), names.len());
    for job in &jobs {
        assert_eq!(job.state, SlotMigrationJobState::Succeeded, "{jobs:?}");
    }
    for key in &keys {
        let read = cache.get(key).await.unwrap();
        assert_eq!(read.as_deref(), Some(&value(key)[..]), "{key:?}");
        assert_eq!(
            nodes[target].store().count_keys_in_slot(key_slot(key)),
            Ok(keys.iter().filter(|k| key_slot(k) == key_slot(key)).count())
        );
    }
    shutdown_within_10s(nodes).await;
}
