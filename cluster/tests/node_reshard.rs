//! Key-by-key slot migration over TCP: MIGRATE's Redis semantics (REPLACE, BUSYKEY, COPY,
//! NOKEY, a target that does not import the slot), `reshard` moving 500 slots and some back
//! while four tasks write and read through `Cluster` handles (which follow ASK), and a
//! target dying mid-migration.
//!
//! `cargo test --release -p slotkv-cluster --test node_reshard -- --nocapture` prints the
//! move's rate.

mod node_support;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::slots::SlotState;
use slotkv_cluster::core::SetSlotAction;
use slotkv_cluster::{
    reshard, MigrateError, MigrateOptions, MigrateReply, Node, ReshardError, ReshardOptions,
};
use slotkv_engine::{key_slot, Slot, SLOT_COUNT};

use node_support::load::{preload, preloaded, write_and_read, Expected};
use node_support::{eventually, form, shutdown_within_10s, start_nodes, tcp};

/// Keys of the load test.
const KEYS: usize = 20_000;
/// Of which this many fall in the moved slots.
const KEYS_IN_MOVED_SLOTS: usize = 10_000;
/// Slots moved from master 0 to master 1, then the first `SLOTS_BACK` of them back.
const SLOTS_MOVED: Slot = 500;
const SLOTS_BACK: Slot = 100;
/// Writer-reader tasks.
const TASKS: usize = 4;

/// `count` key names whose slots satisfy `wanted`, from the name series `prefix:<n>`.
fn keys_where(prefix: &str, count: usize, wanted: impl Fn(Slot) -> bool) -> Vec<Vec<u8>> {
    (0..)
        .map(|index| format!("{prefix}:{index}").into_bytes())
        .filter(|key| wanted(key_slot(key)))
        .take(count)
        .collect()
}

/// Every node binds every slot to the same owner; returns node 0's owners.
async fn agreed_owners(nodes: &[&Node]) -> Option<Vec<Option<NodeId>>> {
    let owners = |core: &slotkv_cluster::core::Core| {
        (0..SLOT_COUNT as Slot)
            .map(|slot| core.slot_owner(slot))
            .collect::<Vec<_>>()
    };
    let first = nodes[0].inspect(owners).await.ok()?;
    for node in &nodes[1..] {
        if node.inspect(owners).await.ok()? != first {
            return None;
        }
    }
    first.iter().all(Option::is_some).then_some(first)
}

/// The masters among `nodes` holding `key` in their engines.
fn holders(masters: &[&Node], key: &[u8]) -> usize {
    masters
        .iter()
        .filter(|node| node.store().exists(&[key]).unwrap_or(0) > 0)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_keys_follows_redis_replace_busykey_copy_and_nokey() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let (source, target) = (&nodes[0], &nodes[1]);
    let slot = 7;
    let keys = keys_where("m", 3, |candidate| candidate == slot);
    let cache = source.cluster();
    for key in &keys {
        cache.set(key, b"source").await.unwrap();
    }
    // A value larger than a migration frame's payload travels in chunks.
    let big: Vec<u8> = (0..3 * (1 << 20) + 5)
        .map(|byte: usize| byte as u8)
        .collect();
    cache.set(&keys[2], &big).await.unwrap();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let to = target.bus_address().clone();

    // The target neither owns nor imports the slot: refused, nothing deleted.
    let refused = source
        .migrate_keys(&to, &refs, MigrateOptions::default())
        .await;
    assert!(
        matches!(refused, Err(MigrateError::Refused(_))),
        "{refused:?}"
    );
    assert!(refused
        .unwrap_err()
        .to_string()
        .starts_with("ERR Target instance replied with error: MOVED"));
    assert_eq!(source.count_keys_in_slot(slot).unwrap(), 3);

    target
        .set_slot(slot, SetSlotAction::Importing(source.id()))
        .await
        .unwrap();
    source
        .set_slot(slot, SetSlotAction::Migrating(target.id()))
        .await
        .unwrap();

    // COPY leaves the keys here.
    let copy = MigrateOptions {
        copy: true,
        ..MigrateOptions::default()
    };
    let copied = source.migrate_keys(&to, &refs[..1], copy).await.unwrap();
    assert!(matches!(copied, MigrateReply::Moved { keys: 1, .. }));
    assert_eq!(source.count_keys_in_slot(slot).unwrap(), 3);
    assert_eq!(target.count_keys_in_slot(slot).unwrap(), 1);

    // Without REPLACE the copied key is busy at the target and stays here; the others move.
    let busy = source
        .migrate_keys(&to, &refs, MigrateOptions::default())
        .await;
    assert_eq!(busy, Err(MigrateError::BusyKey { moved: 2, busy: 1 }));
    assert_eq!(
        busy.unwrap_err().to_string(),
        "ERR Target instance replied with error: BUSYKEY Target key name already exists."
    );
    assert_eq!(
        source.get_keys_in_slot(slot, 10).unwrap(),
        vec![keys[0].clone()]
    );

    // REPLACE moves it; then nothing is left: NOKEY.
    cache.set(&keys[0], b"newer").await.unwrap();
    let replace = MigrateOptions {
        replace: true,
        ..MigrateOptions::default()
    };
    let moved = source.migrate_keys(&to, &refs, replace).await.unwrap();
    assert!(
        matches!(moved, MigrateReply::Moved { keys: 1, .. }),
        "{moved:?}"
    );
    assert_eq!(source.count_keys_in_slot(slot).unwrap(), 0);
    assert_eq!(
        source.migrate_keys(&to, &refs, replace).await,
        Ok(MigrateReply::NoKey)
    );
    // Through ASK the handle reads them at the target, the replaced key with its newer value.
    assert_eq!(
        cache.get(&keys[0]).await.unwrap().as_deref(),
        Some(&b"newer"[..])
    );
    assert_eq!(
        cache.get(&keys[1]).await.unwrap().as_deref(),
        Some(&b"source"[..])
    );
    let moved_big = cache.get(&keys[2]).await.unwrap();
    assert!(
        moved_big.as_deref() == Some(&big[..]),
        "the chunked value arrived changed"
    );

    // A finished migration passes the keys-held refusal, and the target's replica holds them.
    target
        .set_slot(slot, SetSlotAction::Node(target.id()))
        .await
        .unwrap();
    source
        .set_slot(slot, SetSlotAction::Node(target.id()))
        .await
        .unwrap();
    let target_replica = &nodes[4];
    let replicated = eventually(Duration::from_secs(10), || async {
        target_replica.count_keys_in_slot(slot).unwrap() == 3
    })
    .await;
    assert!(replicated, "the target's replica lacks the imported keys");
    assert_eq!(
        nodes[3].count_keys_in_slot(slot).unwrap(),
        0,
        "the source's replica kept keys"
    );
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_keeps_every_acknowledged_write_on_one_owner() {
    let nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let masters: Vec<&Node> = nodes[..3].iter().collect();
    let (from, to) = (nodes[0].id(), nodes[1].id());
    let mut keys = keys_where("moved", KEYS_IN_MOVED_SLOTS, |slot| slot < SLOTS_MOVED);
    keys.extend(keys_where("other", KEYS - KEYS_IN_MOVED_SLOTS, |slot| {
        slot >= SLOTS_MOVED
    }));
    preload(&nodes[2].cluster(), &keys).await;

    // Task t owns the keys with index ≡ t (mod TASKS) and uses the handle of node t.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (task, node) in nodes.iter().enumerate().take(TASKS) {
        let own: Vec<Vec<u8>> = keys.iter().skip(task).step_by(TASKS).cloned().collect();
        let initial = preloaded(&own);
        let cache = node.cluster();
        tasks.push(tokio::spawn(write_and_read(
            task,
            cache,
            own,
            initial,
            Arc::clone(&stop),
        )));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let forward: Vec<Slot> = (0..SLOTS_MOVED).collect();
    let started = Instant::now();
    let mut events = 0;
    let moved = reshard(&refs, from, to, &forward, ReshardOptions::default(), |_| {
        events += 1;
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    let forward_elapsed = started.elapsed();
    let back: Vec<Slot> = (0..SLOTS_BACK).collect();
    let returned = reshard(&refs, to, from, &back, ReshardOptions::default(), |_| {
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Release);
    let mut expected: HashMap<Vec<u8>, Expected> = HashMap::new();
    let (mut writes, mut reads) = (0, 0);
    let mut problems = Vec::new();
    for task in tasks {
        let report = task.await.unwrap();
        writes += report.writes;
        reads += report.reads;
        problems.extend(report.errors);
        problems.extend(report.wrong_reads);
        expected.extend(report.expected);
    }
    println!(
        "reshard of {SLOTS_MOVED} slots: {} keys ({} bytes) in {:.2} s = {:.0} keys/s, {} retries; \
         back {SLOTS_BACK} slots: {} keys in {:.2} s; callers: {writes} writes, {reads} reads",
        moved.keys_moved,
        moved.bytes_moved,
        forward_elapsed.as_secs_f64(),
        moved.keys_moved as f64 / forward_elapsed.as_secs_f64(),
        moved.retries,
        returned.keys_moved,
        returned.elapsed.as_secs_f64(),
    );
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert_eq!(moved.slots_moved, SLOTS_MOVED as usize);
    // Each key moved exactly once: no request recreated a key at the source after its
    // batch deleted it (the migration gate), so no key had to move twice.
    assert_eq!(moved.keys_moved, KEYS_IN_MOVED_SLOTS as u64, "{moved:?}");
    let keys_back = keys.iter().filter(|key| key_slot(key) < SLOTS_BACK).count();
    assert_eq!(returned.keys_moved, keys_back as u64, "{returned:?}");
    assert!(
        events > SLOTS_MOVED as usize,
        "progress came per slot and per batch"
    );
    assert!(writes > 0 && reads > 0);

    // Every slot has one owner, the same on every node: 100..500 on master 1.
    let agreed = eventually(Duration::from_secs(10), || async {
        agreed_owners(&refs).await.is_some()
    })
    .await;
    assert!(agreed, "the nodes never agreed on the slot map");
    let owners = agreed_owners(&refs).await.unwrap();
    for slot in 0..SLOTS_MOVED {
        let wanted = if slot < SLOTS_BACK { from } else { to };
        assert_eq!(owners[usize::from(slot)], Some(wanted), "slot {slot}");
    }
    for node in &refs {
        let open = node
            .inspect(|core| core.slot_table().open_slots())
            .await
            .unwrap();
        assert!(open.is_empty(), "open slots left: {open:?}");
    }

    // Every key is on exactly one master, its slot's owner, with its last acknowledged value.
    let reader = nodes[5].cluster();
    for (key, expected) in &expected {
        assert_eq!(
            holders(&masters, key),
            1,
            "{} is on {} masters",
            String::from_utf8_lossy(key),
            holders(&masters, key)
        );
        let read = reader.get(key).await.unwrap();
        assert!(
            expected.admits(read.as_deref()),
            "{} lost its write",
            String::from_utf8_lossy(key)
        );
    }
    // The target's replica holds the keys of the slots it kept, like its master.
    let (target, target_replica) = (&nodes[1], &nodes[4]);
    let replicated = eventually(Duration::from_secs(10), || async {
        (SLOTS_BACK..SLOTS_MOVED).all(|slot| {
            target_replica.count_keys_in_slot(slot).unwrap()
                == target.count_keys_in_slot(slot).unwrap()
        })
    })
    .await;
    assert!(replicated, "the target's replica lacks moved keys");
    let held: usize = (SLOTS_BACK..SLOTS_MOVED)
        .map(|slot| target_replica.count_keys_in_slot(slot).unwrap())
        .sum();
    assert!(held > 0);
    shutdown_within_10s(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_dying_mid_migration_loses_no_key_and_a_rerun_finishes_on_its_replica() {
    let mut nodes = start_nodes((0..6).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let (from, dead) = (nodes[0].id(), nodes[1].id());
    let slots: Vec<Slot> = (0..8).collect();
    let keys = keys_where("dying", 800, |slot| slot < 8);
    let cache = nodes[0].cluster();
    preload(&cache, &keys).await;

    // Cancel after the first batch of the fourth slot, then kill the target.
    let options = ReshardOptions {
        keys_per_batch: std::num::NonZeroUsize::new(20).unwrap(),
        ..ReshardOptions::default()
    };
    let refs: Vec<&Node> = nodes.iter().collect();
    let stopped = reshard(&refs, from, dead, &slots, options, |progress| {
        if progress.slots_done == 3 && progress.slot == slots[3] {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await;
    match &stopped {
        Err(ReshardError::Cancelled { slot, open_slots }) => {
            assert_eq!(*slot, slots[3]);
            assert_eq!(open_slots, &vec![slots[3]], "the cut slot is reported open");
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    let split_at_source = nodes[0].count_keys_in_slot(slots[3]).unwrap();
    assert!(split_at_source > 0 && nodes[1].count_keys_in_slot(slots[3]).unwrap() > 0);
    drop(refs);
    drop(nodes.remove(1));
    let replica = &nodes[3]; // replicated the dead target; indices shift after the removal

    // Keys not yet moved are still served by the source.
    let unmoved = keys.iter().filter(|key| key_slot(key) > slots[3]);
    for key in unmoved {
        assert_eq!(cache.get(key).await.unwrap().as_deref(), Some(&key[..]));
    }
    let migrating = nodes[0]
        .inspect(move |core| core.slot_state(3))
        .await
        .unwrap();
    assert_eq!(migrating, SlotState::Migrating(dead), "the slot stays open");

    // The replica takes the dead target's slots over; a rerun continues towards it.
    let promoted = eventually(Duration::from_secs(20), || async {
        let id = replica.id();
        nodes[0]
            .inspect(move |core| core.slot_owner(0) == Some(id))
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(promoted, "the dead target's replica never took over");
    // While the dead target may come back, the replica imports nothing it would hold alone
    // (NOREPLICAS); the operator forgets the dead node, as a replacement does.
    let replica_id = replica.id();
    nodes[0].forget(dead).await.unwrap();
    let forgotten = eventually(Duration::from_secs(10), || async {
        replica
            .inspect(move |core| core.nodes().all(|node| node.id != dead))
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(forgotten, "{replica_id} still knows the dead target");
    let refs: Vec<&Node> = nodes.iter().collect();
    let options = ReshardOptions {
        retarget_from: Some(dead),
        ..ReshardOptions::default()
    };
    let rest = &slots[3..];
    let finished = reshard(&refs, from, replica.id(), rest, options, |_| {
        ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(finished.slots_moved, rest.len());

    // Every key is readable with its value, on exactly one live master.
    let masters: Vec<&Node> = vec![&nodes[0], &nodes[1], replica];
    for key in &keys {
        let read = eventually(Duration::from_secs(10), || async {
            cache.get(key).await.ok().flatten().as_deref() == Some(&key[..])
        })
        .await;
        assert!(read, "{} is lost", String::from_utf8_lossy(key));
        assert_eq!(
            holders(&masters, key),
            1,
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    shutdown_within_10s(nodes).await;
}
