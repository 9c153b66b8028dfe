//! Rolling restarts of a 6-node cluster (3 masters + 3 replicas, node_timeout 2 s, TCP)
//! under continuous writes with replica durability from several tasks, as a deploy does
//! them: every node in turn is stopped and started again on the same address and data
//! directory. Every acknowledged write must survive, whether the stop hands over
//! (`Node::shutdown`) or loses the node's data (the node is dropped, as by a crash).
//!
//! The writers go through a seventh node that owns no slots (a client's view of the
//! cluster), so no writer loses its handle when a node restarts. Before the first restart
//! a set of keys is written and acknowledged; during the restarts each writer writes its
//! own keys with increasing sequence numbers and remembers the last one acknowledged per
//! key; at the end each key must hold that sequence number or a later attempted one.
//! Per restart the test prints the longest time a writer went without an acknowledged
//! write (the shard's write unavailability as a client sees it).

mod node_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use slotkv_cluster::core::ClusterState;
use slotkv_cluster::{create_cluster, Cluster, Durability, Node};
use slotkv_transport::PeerAddr;

use node_support::{builder, eventually, tcp, temp_dir};

/// node_timeout of these clusters, in ms (the setting).
const NODE_TIMEOUT_MS: u64 = 2_000;
/// Concurrent writer tasks.
const WRITERS: usize = 4;
/// Keys each writer cycles over: enough that most keys are written once, so a write lost
/// with a node's data is not hidden by a later overwrite.
const KEYS_PER_WRITER: u64 = 100_000;
/// Keys written (and acknowledged by a replica) before the first restart.
const PRELOADED_KEYS: u64 = 2_000;
/// Longest a writer may go without an acknowledged write during a restart (a generous
/// bound of the test; the target, printed, is 1 s).
const UNAVAILABILITY_BOUND: Duration = Duration::from_secs(10);
/// Longest wait for the cluster to be whole again after a restart.
const HEAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a node is stopped before it starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// `Node::shutdown()`: a master hands its slots over first.
    Graceful,
    /// The node is dropped without shutdown: it comes back without its data.
    Crash,
}

/// One node of the cluster: its address, data directory and seed survive its restarts.
struct Member {
    node: Option<Node>,
    address: String,
    directory: PathBuf,
    seed: u64,
}

async fn start_member(address: &str, directory: &Path, seed: u64) -> Node {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A dropped node releases its socket shortly after the drop, not at once.
        match builder(tcp(), seed)
            .node_timeout_ms(NODE_TIMEOUT_MS)
            .bind(address)
            .data_dir(directory)
            .start()
            .await
        {
            Ok(node) => return node,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("could not start {address} again: {error}"),
        }
    }
}

/// What the writers acknowledged and when they went without acknowledgements.
#[derive(Default)]
struct Ledger {
    /// Per key: the last acknowledged sequence number and the last attempted one.
    keys: HashMap<String, (u64, u64)>,
    /// Per writer: intervals between consecutive acknowledged writes longer than 50 ms.
    stalls: Vec<(Instant, Instant)>,
    acknowledged: u64,
}

async fn write_until(
    stop: Arc<AtomicBool>,
    cluster: Cluster,
    writer: usize,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut last_ack = Instant::now();
    let mut sequence = 0u64;
    while !stop.load(Ordering::Acquire) {
        sequence += 1;
        let key = format!("w{writer}:{}", sequence % KEYS_PER_WRITER);
        ledger.lock().keys.entry(key.clone()).or_insert((0, 0)).1 = sequence;
        loop {
            let value = sequence.to_string();
            match cluster.set(key.as_bytes(), value.as_bytes()).await {
                Ok(()) => break,
                Err(_) if stop.load(Ordering::Acquire) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let now = Instant::now();
        {
            let mut ledger = ledger.lock();
            if let Some(entry) = ledger.keys.get_mut(&key) {
                entry.0 = sequence;
            }
            ledger.acknowledged += 1;
            if now - last_ack > Duration::from_millis(50) {
                ledger.stalls.push((last_ack, now));
            }
        }
        last_ack = now;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every node answers, is in state ok, sees every master with a replica, and every master
/// has a replica that acknowledged the master's offset as of the start of the check.
async fn healed(members: &[Member]) -> bool {
    let nodes: Vec<&Node> = members
        .iter()
        .filter_map(|member| member.node.as_ref())
        .collect();
    for node in &nodes {
        let whole = node
            .inspect(|core| {
                let masters: Vec<_> = core
                    .nodes()
                    .filter(|record| record.is_master() && !core.slots_of(&record.id).is_empty())
                    .map(|record| record.id)
                    .collect();
                core.cluster_state() == ClusterState::Ok
                    && masters.len() == 3
                    && core.nodes().all(|record| !record.is_failing())
                    && masters.iter().all(|master| {
                        core.replicas_of(master)
                            .any(|replica| !replica.is_failing())
                    })
            })
            .await
            .unwrap_or(false);
        if !whole {
            return false;
        }
    }
    for node in &nodes {
        let is_master = node
            .inspect(|core| core.my_master().is_none())
            .await
            .unwrap_or(false);
        if !is_master {
            continue;
        }
        let offset = node.replication_info().offset;
        let caught_up = eventually(Duration::from_secs(5), || async {
            node.replication_info()
                .replicas
                .iter()
                .any(|(_, acknowledged)| *acknowledged >= offset)
        })
        .await;
        if !caught_up {
            return false;
        }
    }
    true
}

async fn rolling_restart(stop_kind: Stop, name: &str) {
    let root = temp_dir(name);
    let mut members = Vec::new();
    for index in 0..6u64 {
        let directory = root.join(format!("n{index}"));
        let node = start_member("127.0.0.1:0", &directory, index + 1).await;
        members.push(Member {
            address: node.bus_address().as_str().to_string(),
            node: Some(node),
            directory,
            seed: index + 1,
        });
    }
    let refs: Vec<&Node> = members
        .iter()
        .filter_map(|member| member.node.as_ref())
        .collect();
    create_cluster(&refs, 1, Duration::from_secs(30))
        .await
        .unwrap();
    let client = builder(tcp(), 99)
        .node_timeout_ms(NODE_TIMEOUT_MS)
        .start()
        .await
        .unwrap();
    client
        .meet(&PeerAddr::new(members[0].address.clone()).unwrap())
        .await
        .unwrap();
    let joined = eventually(Duration::from_secs(30), || async {
        client
            .inspect(|core| {
                core.cluster_state() == ClusterState::Ok
                    && core.nodes().filter(|record| !record.in_handshake()).count() == 7
            })
            .await
            .unwrap_or(false)
    })
    .await;
    assert!(joined, "the client node never saw the whole cluster");
    assert!(
        eventually(HEAL_TIMEOUT, || healed(&members)).await,
        "never healthy"
    );

    let durable = client.cluster().with_durability(Durability::Replicas {
        replicas: 1,
        timeout_ms: 2_000,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            tokio::spawn(write_until(
                Arc::clone(&stop),
                durable.clone(),
                writer,
                Arc::clone(&ledger),
            ))
        })
        .collect();
    for index in 0..PRELOADED_KEYS {
        let key = format!("pre:{index}");
        durable.set(key.as_bytes(), b"1").await.unwrap();
        ledger.lock().keys.insert(key, (1, 1));
    }

    let mut worst = Duration::ZERO;
    for index in 0..members.len() {
        let started = Instant::now();
        let node = members[index].node.take().expect("running");
        let was_master = node
            .inspect(|core| core.my_master().is_none())
            .await
            .unwrap();
        match stop_kind {
            Stop::Graceful => node.shutdown().await,
            Stop::Crash => drop(node),
        }
        let member = &members[index];
        let node = start_member(&member.address, &member.directory, member.seed).await;
        members[index].node = Some(node);
        assert!(
            eventually(HEAL_TIMEOUT, || healed(&members)).await,
            "restart {index}: the cluster did not heal"
        );
        // Let the writers go on a little after the heal, so a stall ending late is seen.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ended = Instant::now();
        let longest = ledger
            .lock()
            .stalls
            .iter()
            .filter(|(from, to)| *to >= started && *from <= ended)
            .map(|(from, to)| *to - *from)
            .max()
            .unwrap_or(Duration::ZERO);
        println!(
            "{name}: restart of node {index} ({}): longest write unavailability {} ms",
            if was_master { "master" } else { "replica" },
            longest.as_millis()
        );
        worst = worst.max(longest);
    }
    stop.store(true, Ordering::Release);
    for writer in writers {
        writer.await.unwrap();
    }

    let reader = client.cluster();
    let keys: Vec<(String, (u64, u64))> = ledger
        .lock()
        .keys
        .iter()
        .map(|(key, entry)| (key.clone(), *entry))
        .collect();
    let mut lost = Vec::new();
    for (key, (acknowledged, attempted)) in &keys {
        if *acknowledged == 0 {
            continue;
        }
        let value = reader.get(key.as_bytes()).await.unwrap();
        let sequence = value
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|text| text.parse::<u64>().ok());
        match sequence {
            Some(sequence) if sequence >= *acknowledged && sequence <= *attempted => {}
            other => lost.push(format!(
                "{key}: acknowledged {acknowledged}, read {other:?}"
            )),
        }
    }
    let acknowledged = ledger.lock().acknowledged;
    println!(
        "{name}: {acknowledged} writes acknowledged over {} keys, {} lost, worst unavailability {} ms",
        keys.len(),
        lost.len(),
        worst.as_millis()
    );
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged keys lost, e.g. {:?}",
        lost.len(),
        keys.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        worst <= UNAVAILABILITY_BOUND,
        "a writer went {} ms without an acknowledged write",
        worst.as_millis()
    );
    client.shutdown().await;
    for member in members {
        if let Some(node) = member.node {
            node.shutdown().await;
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_with_shutdown_loses_no_acknowledged_write() {
    rolling_restart(Stop::Graceful, "rolling-graceful").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_that_loses_each_nodes_data_loses_no_acknowledged_write() {
    rolling_restart(Stop::Crash, "rolling-crash").await;
}
