#![allow(missing_docs)]
//! Slot migration throughput and pause, both methods, over TCP and QUIC on loopback: 3
//! masters with a replica each (in this process, so the 2 cores here run all six nodes).
//!
//! For each transport and each load, 1,000 slots move from one master to another by
//! atomic migration (`Node::migrate_slots`), then back key by key (`reshard`, Redis's
//! MIGRATING / IMPORTING path); printed: keys/s, MB/s (key and value bytes), the atomic
//! pause, and GET/SET round-trip latency (p50 / p99) of a caller on the moving slots
//! during the atomic move against the same caller with no move; then the pause's spread
//! over `SLOTKV_BENCH_FLIPS` (30) atomic moves of the slots back and forth, the caller on
//! them.
//!
//! - 200,000 keys of 64-byte values;
//! - 2,000 keys of 16 KiB values.
//!
//! `cargo bench -p slotkv-cluster --bench slot_migration` (set `SLOTKV_BENCH_DATA_DIR` to
//! a directory to give the nodes a nodes.conf there, so every slot-state change is
//! fsynced as in production; without it nothing is written to disk;
//! `SLOTKV_BENCH_IN_FLIGHT` sets `SlotMigrationOptions::batches_in_flight`,
//! `SLOTKV_BENCH_BATCH_KEYS` its `batch_keys`).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::{
    create_cluster, reshard, Node, NodeTransport, ReshardOptions, SlotMigrationOptions,
};
use slotkv_engine::{key_slot, Slot};
use slotkv_transport::quic::{DevCertificateAuthority, QuicConfig};
use slotkv_transport::tcp::{ClusterSecret, TcpConfig};

const SLOTS: Slot = 1_000;

fn transports(quic: bool) -> Vec<NodeTransport> {
    if quic {
        let authority = DevCertificateAuthority::generate().expect("a dev CA");
        return (0..6)
            .map(|_| {
                let identity = authority.issue_node_identity().expect("an identity");
                NodeTransport::Quic(QuicConfig::new(identity, authority.trust_anchor()))
            })
            .collect();
    }
    let secret = ClusterSecret::new(b"slotkv bench secret".to_vec()).expect("a secret");
    (0..6)
        .map(|_| NodeTransport::Tcp(TcpConfig::new(secret.clone())))
        .collect()
}

async fn cluster(quic: bool, run: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (index, transport) in transports(quic).into_iter().enumerate() {
        let mut builder = Node::builder(transport).rng_seed(index as u64 + 1);
        if let Ok(dir) = std::env::var("SLOTKV_BENCH_DATA_DIR") {
            let dir = std::path::Path::new(&dir).join(format!("run{run}-node{index}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a data dir");
            builder = builder.data_dir(dir);
        }
        nodes.push(builder.start().await.expect("a node"));
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 1, Duration::from_secs(30))
        .await
        .expect("a cluster");
    nodes
}

/// `count` keys whose slots are below [`SLOTS`].
fn keys(count: usize) -> Vec<Vec<u8>> {
    (0u64..)
        .map(|index| format!("bench:{index}").into_bytes())
        .filter(|key| key_slot(key) < SLOTS)
        .take(count)
        .collect()
}

async fn preload(node: &Node, keys: &[Vec<u8>], value_bytes: usize) {
    let cache = node.cluster();
    let value = vec![b'v'; value_bytes];
    for chunk in keys.chunks(512) {
        let writes = chunk.iter().map(|key| cache.set(key, &value));
        for result in futures_util::future::join_all(writes).await {
            result.expect("a preload write");
        }
    }
}

fn index_of(nodes: &[Node], id: slotkv_cluster::core::node::NodeId) -> usize {
    nodes
        .iter()
        .position(|node| node.id() == id)
        .expect("a known node")
}

/// A caller's SET+GET round trips on `keys` until `stop`; returns the latencies.
async fn caller(
    node_cache: slotkv_cluster::Cluster,
    keys: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let mut round = 0usize;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        let key = &keys[(round * 7919) % keys.len()];
        let started = Instant::now();
        node_cache
            .set(key, b"caller")
            .await
            .expect("a caller write");
        node_cache.get(key).await.expect("a caller read");
        latencies.push(started.elapsed());
        tokio::task::yield_now().await;
    }
    latencies
}

/// The durations at `fractions` (0.0–1.0) of `samples`, sorted; `None` if there are none.
fn quantiles<const N: usize>(
    mut samples: Vec<Duration>,
    fractions: [f64; N],
) -> Option<[Duration; N]> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let last = (samples.len() - 1) as f64;
    Some(fractions.map(|fraction| samples[(last * fraction) as usize]))
}

fn percentiles(latencies: Vec<Duration>) -> String {
    let calls = latencies.len();
    match quantiles(latencies, [0.50, 0.99]) {
        None => "no calls".to_string(),
        Some([p50, p99]) => format!(
            "p50 {:.0} µs, p99 {:.0} µs ({calls} calls)",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
        ),
    }
}

fn pause_spread(pauses: Vec<Duration>) -> String {
    match quantiles(pauses, [0.50, 0.90, 1.0]) {
        None => "none".to_string(),
        Some([p50, p90, max]) => format!(
            "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            p50.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
        ),
    }
}

async fn measure(quic: bool, count: usize, value_bytes: usize, run: usize) {
    let transport = if quic { "QUIC" } else { "TCP" };
    let nodes = cluster(quic, run).await;
    let keys = keys(count);
    preload(&nodes[0], &keys, value_bytes).await;
    let source_id = nodes[0]
        .inspect(|core| core.slot_owner(0))
        .await
        .expect("the core")
        .expect("an owner");
    let target_id = nodes[0]
        .inspect(|core| core.slot_owner(16_383))
        .await
        .expect("the core")
        .expect("an owner");
    let (source, target) = (index_of(&nodes, source_id), index_of(&nodes, target_id));
    let bytes = (count * (value_bytes + 12)) as f64;

    // A caller with no move, then during the atomic move.
    let caller_keys: Vec<Vec<u8>> = keys.iter().step_by(97).cloned().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = tokio::spawn(caller(
        nodes[2].cluster(),
        caller_keys.clone(),
        Arc::clone(&stop),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    let quiet = quiet.await.expect("the caller");
    let stop = Arc::new(AtomicBool::new(false));
    let busy = tokio::spawn(caller(nodes[2].cluster(), caller_keys, Arc::clone(&stop)));

    let ranges = [SlotRange {
        start: 0,
        end: SLOTS - 1,
    }];
    let started = Instant::now();
    let mut options = SlotMigrationOptions::default();
    if let Some(in_flight) = std::env::var("SLOTKV_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        options.batches_in_flight = in_flight;
    }
    if let Some(batch_keys) = std::env::var("SLOTKV_BENCH_BATCH_KEYS")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        options.batch_keys = batch_keys;
    }
    let report = nodes[source]
        .migrate_slots(&ranges, target_id, options, |_| ControlFlow::Continue(()))
        .await
        .expect("the atomic migration");
    let atomic = started.elapsed();
    stop.store(true, Ordering::Release);
    let busy = busy.await.expect("the caller");

    let refs: Vec<&Node> = nodes.iter().collect();
    let slots: Vec<Slot> = (0..SLOTS).collect();
    let started = Instant::now();
    let back = reshard(
        &refs,
        target_id,
        source_id,
        &slots,
        ReshardOptions::default(),
        |_| ControlFlow::Continue(()),
    )
    .await
    .expect("the reshard back");
    let by_key = started.elapsed();
    let _ = target;

    // The pause's spread: the slots go back and forth atomically, a caller on them.
    let flips: usize = std::env::var("SLOTKV_BENCH_FLIPS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(30);
    let stop = Arc::new(AtomicBool::new(false));
    let caller_keys: Vec<Vec<u8>> = keys.iter().step_by(97).cloned().collect();
    let flipping = tokio::spawn(caller(nodes[2].cluster(), caller_keys, Arc::clone(&stop)));
    let mut pauses = Vec::with_capacity(flips);
    for flip in 0..flips {
        let (from, to) = if flip % 2 == 0 {
            (source, target_id)
        } else {
            (target, source_id)
        };
        let report = nodes[from]
            .migrate_slots(&ranges, to, options, |_| ControlFlow::Continue(()))
            .await
            .expect("an atomic migration back or forth");
        pauses.push(report.pause);
    }
    stop.store(true, Ordering::Release);
    let flipping = flipping.await.expect("the caller");

    println!(
        "{transport}, {count} keys of {value_bytes} B in {SLOTS} slots:\n  \
         atomic:      {:>9.0} keys/s {:>7.1} MB/s  ({} keys in {:.3} s, pause {:.2} ms, {} tail rounds)\n  \
         key by key:  {:>9.0} keys/s {:>7.1} MB/s  ({} keys in {:.3} s)\n  \
         caller SET+GET, no move: {}\n  \
         caller SET+GET, during the atomic move: {}\n  \
         pause over {flips} atomic moves back and forth: {}\n  \
         caller SET+GET during them: {}",
        count as f64 / atomic.as_secs_f64(),
        bytes / atomic.as_secs_f64() / 1e6,
        report.keys_sent,
        atomic.as_secs_f64(),
        report.pause.as_secs_f64() * 1e3,
        report.tail_rounds,
        count as f64 / by_key.as_secs_f64(),
        bytes / by_key.as_secs_f64() / 1e6,
        back.keys_moved,
        by_key.as_secs_f64(),
        percentiles(quiet),
        percentiles(busy),
        pause_spread(pauses),
        percentiles(flipping),
    );
    for node in nodes {
        node.shutdown().await;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks the transport.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut run = 0;
        for quic in [false, true] {
            let name = if quic { "quic" } else { "tcp" };
            if filter
                .as_deref()
                .is_some_and(|filter| !name.contains(filter))
            {
                continue;
            }
            for (count, value_bytes) in [(200_000, 64), (2_000, 16 << 10)] {
                run += 1;
                measure(quic, count, value_bytes, run).await;
            }
        }
    });
}
