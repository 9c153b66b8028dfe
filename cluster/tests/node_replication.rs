//! Replication under maxmemory: the master evicts and its evictions reach the replica as
//! deletes; the replica ignores maxmemory (as Redis's `replica-ignore-maxmemory`), so it never
//! evicts or refuses on its own and its keys stay the master's; promoted, it enforces
//! maxmemory again, set in place on its engine. Sustained eviction never overflows the
//! removal log into repeated full syncs. A WAIT asks the replica for its ack at once.

mod node_support;

use std::sync::Arc;
use std::time::Duration;

use slotkv_cluster::core::FailoverMode;
use slotkv_cluster::create_cluster;
use slotkv_cluster::{Node, NodeTransport};
use slotkv_engine::{EvictionPolicy, ExpireTime, SetExpiry, SetOptions};
use slotkv_transport::sim::SimNet;

use node_support::eventually;

/// Engine memory limit of both nodes, in bytes.
const MAX_MEMORY_BYTES: u64 = 256 << 10;

async fn start_pair(net: &SimNet, max_memory_bytes: u64) -> Vec<Node> {
    let mut nodes = Vec::new();
    for index in 0..2 {
        let node = Node::builder(NodeTransport::Custom(Arc::new(net.transport())))
            .bind(format!("m{index}:7000"))
            .node_timeout_ms(1_000)
            .max_memory(max_memory_bytes, EvictionPolicy::AllKeysLru)
            .rng_seed(index as u64 + 1)
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 1, Duration::from_secs(30))
        .await
        .unwrap();
    nodes
}

/// Waits (up to 20 s) until `replica` follows `master`'s replication history, so later
/// writes reach it as streamed ops.
async fn wait_until_streaming(master: &Node, replica: &Node) {
    let streaming = eventually(Duration::from_secs(20), || async {
        replica.replication_info().replid == master.replication_info().replid
    })
    .await;
    assert!(streaming, "the replica never synced");
}

fn key(index: usize) -> Vec<u8> {
    format!("evict:{index}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holds_exactly_the_keys_its_evicting_master_holds() {
    let net = SimNet::new(7);
    let nodes = start_pair(&net, MAX_MEMORY_BYTES).await;
    let (master, replica) = (&nodes[0], &nodes[1]);
    // The writes below must stream as ops, not arrive in a snapshot.
    wait_until_streaming(master, replica).await;
    let cluster = master.cluster();
    let value = vec![b'v'; 4 << 10];
    let (old, written) = (40, 200);
    for index in 0..old {
        cluster.set(&key(index), &value).await.unwrap();
    }
    // Reads refresh the LRU clock of the first half of the old keys on the master only
    // (reads do not replicate), so the master and an evicting replica would pick different
    // victims.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    for index in 0..old / 2 {
        cluster.get(&key(index)).await.unwrap();
    }
    for index in old..written {
        cluster.set(&key(index), &value).await.unwrap();
    }
    assert!(
        master.store().dbsize() < written,
        "the master should have evicted"
    );
    let caught_up = eventually(Duration::from_secs(20), || async {
        master.store().removals_dropped() == 0
            && replica.replication_info().offset == master.replication_info().offset
            && replica.store().dbsize() == master.store().dbsize()
    })
    .await;
    assert!(
        caught_up,
        "replica {} keys at {}, master {} keys at {}",
        replica.store().dbsize(),
        replica.replication_info().offset,
        master.store().dbsize(),
        master.replication_info().offset
    );
    for index in 0..written {
        let key = key(index);
        assert_eq!(
            replica.store().get(&key).is_some(),
            master.store().get(&key).is_some(),
            "key {index} differs"
        );
    }
    assert_eq!(replica.store().max_memory_bytes(), 0);

    // Promoted, the replica enforces maxmemory again and keeps every key, on the same
    // engine: nothing is copied (a copy would hold every write for its length).
    let engine_before = replica.store();
    let keys_before = engine_before.dbsize();
    replica.failover(FailoverMode::Default).await.unwrap();
    let limited = eventually(Duration::from_secs(20), || async {
        replica.store().max_memory_bytes() == MAX_MEMORY_BYTES
    })
    .await;
    assert!(limited, "the promoted replica does not enforce maxmemory");
    assert_eq!(replica.store().dbsize(), keys_before);
    assert!(
        Arc::ptr_eq(&engine_before, &replica.store()),
        "the promotion copied the engine"
    );
    for node in nodes {
        node.shutdown().await;
    }
}

/// When the keys of the removal-log test expire: after they are all written and replicated.
const EXPIRE_AFTER_MS: i64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_lost_by_the_engine_make_the_replica_resync() {
    let net = SimNet::new(11);
    let nodes = start_pair(&net, 0).await;
    let (master, replica) = (&nodes[0], &nodes[1]);
    wait_until_streaming(master, replica).await;
    let cluster = master.cluster();
    // Every key expires at one instant, after all are written and replicated, so active
    // expiry has no time to drain them before the lazy reads below find them all expired.
    let unix_ms = |at: std::time::SystemTime| {
        at.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64)
    };
    let deadline_ms = unix_ms(std::time::SystemTime::now()) + EXPIRE_AFTER_MS;
    let options = SetOptions {
        expiry: SetExpiry::Expire(ExpireTime::UnixMilliseconds(deadline_ms)),
        ..SetOptions::default()
    };
    // More expirations at once than the engine's removal log holds.
    let keys = slotkv_engine::DEFAULT_REMOVAL_LOG_CAPACITY * 3 / 2;
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..keys)
        .map(|index| (format!("{{x}}{index}").into_bytes(), b"v".to_vec()))
        .collect();
    for (key, value) in &pairs {
        cluster.set_with(key, value, options).await.unwrap();
    }
    let all_written = eventually(Duration::from_secs(20), || async {
        replica.store().dbsize() == keys
    })
    .await;
    assert!(all_written, "the replica never received the writes");
    let master_store = master.store();
    let now_ms = unix_ms(std::time::SystemTime::now());
    let wait_ms = (deadline_ms + 20 - now_ms).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    // Reads of expired keys remove them lazily, each one a removal event, faster than the
    // replication task drains them.
    for (key, _) in &pairs {
        let _ = master_store.get(key);
    }
    assert!(
        master_store.removals_dropped() > 0,
        "the removal log kept up"
    );
    let emptied = eventually(Duration::from_secs(30), || async {
        replica.store().dbsize() == 0
    })
    .await;
    assert!(
        emptied,
        "the replica still holds {} keys its master removed",
        replica.store().dbsize()
    );
    for node in nodes {
        node.shutdown().await;
    }
}

/// Sustained eviction, faster than a housekeeping round drains the removal log, must not
/// make the replica full-sync again and again: the writers that evict log their removals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_eviction_does_not_restart_full_syncs() {
    let net = SimNet::new(13);
    let nodes = start_pair(&net, MAX_MEMORY_BYTES).await;
    let (master, replica) = (&nodes[0], &nodes[1]);
    wait_until_streaming(master, replica).await;
    let full_syncs = master.replication_info().full_syncs_served;
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let cluster = master.cluster();
            tokio::spawn(async move {
                for index in 0..60_000 {
                    let key = format!("storm:{writer}:{index}");
                    cluster.set(key.as_bytes(), b"value").await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let converged = eventually(Duration::from_secs(20), || async {
        replica.replication_info().offset == master.replication_info().offset
            && replica.store().dbsize() == master.store().dbsize()
    })
    .await;
    let info = master.replication_info();
    assert!(
        converged,
        "replica {} keys, master {} keys",
        replica.store().dbsize(),
        master.store().dbsize()
    );
    assert_eq!(
        master.store().removals_dropped(),
        0,
        "the removal log overflowed under sustained eviction"
    );
    assert_eq!(info.full_syncs_served, full_syncs, "{info:?}");
    for node in nodes {
        node.shutdown().await;
    }
}

/// A WAIT is answered by an ack the master asks for (GETACK), not by the replica's periodic
/// ack (every 100 ms): replicas no longer ack every batch, so without the request each of
/// these waits would last until the next periodic ack, about 50 ms on average.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_asks_the_replica_for_its_ack_at_once() {
    let net = SimNet::new(11);
    let nodes = start_pair(&net, 64 << 20).await;
    let (master, replica) = (&nodes[0], &nodes[1]);
    wait_until_streaming(master, replica).await;
    let cluster = master.cluster();
    const WAITS: u32 = 40;
    let started = std::time::Instant::now();
    for index in 0..WAITS as usize {
        cluster.set(&key(index), b"v").await.unwrap();
        assert_eq!(cluster.wait(1, Duration::from_secs(5)).await.unwrap(), 1);
    }
    let elapsed = started.elapsed();
    // Periodic acks alone: about 40 × 50 ms = 2 s (at least ~1.3 s with near certainty).
    assert!(
        elapsed < Duration::from_millis(800),
        "{WAITS} WAITs took {elapsed:?}: answered by periodic acks, not on request"
    );
    for node in nodes {
        node.shutdown().await;
    }
}
