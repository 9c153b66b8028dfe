#![allow(missing_docs)]
//! Criterion benches of the embedded node's data path.
//!
//! - `handle/{get,set}/{local,tcp,quic}/{1,64}`: calls through the `Cluster` handle of node 0
//!   of a 3-master cluster, on a key node 0 owns (local engine, the baseline) or a key
//!   another master owns (forwarded over TCP or QUIC), with 1 or 64 concurrent callers.
//! - `replication/tcp`: 1,000 writes on a master plus WAIT until its replica acknowledged
//!   them all.
//!
//! Run: `cargo bench --bench cluster -- --warm-up-time 1 --measurement-time 3`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slotkv::transport::quic::{DevCertificateAuthority, QuicConfig};
use slotkv::transport::tcp::{ClusterSecret, TcpConfig};
use slotkv::{create_cluster, Cluster, Node, NodeTransport};
use tokio::runtime::Runtime;

const VALUE: &[u8] = b"a 32-byte value for the benches.";
const REPLICATION_BATCH: u64 = 1_000;

fn transports(quic: bool, count: usize) -> Vec<NodeTransport> {
    if quic {
        let authority = DevCertificateAuthority::generate().unwrap();
        return (0..count)
            .map(|_| {
                let identity = authority.issue_node_identity().unwrap();
                NodeTransport::Quic(QuicConfig::new(identity, authority.trust_anchor()))
            })
            .collect();
    }
    let secret = ClusterSecret::new(b"slotkv bench cluster secret".to_vec()).unwrap();
    (0..count)
        .map(|_| NodeTransport::Tcp(TcpConfig::new(secret.clone())))
        .collect()
}

async fn cluster_of(quic: bool, masters: usize, replicas: usize) -> Vec<Node> {
    let mut nodes = Vec::new();
    for transport in transports(quic, masters * (replicas + 1)) {
        nodes.push(
            Node::builder(transport)
                .node_timeout_ms(5_000)
                .start()
                .await
                .unwrap(),
        );
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, replicas, Duration::from_secs(60))
        .await
        .unwrap();
    nodes
}

/// A key whose slot `owner` masters.
async fn key_owned_by(nodes: &[Node], owner: usize) -> Vec<u8> {
    let wanted = nodes[owner].id();
    for index in 0.. {
        let key = format!("bench:{index}").into_bytes();
        let slot = slotkv::key_slot(&key);
        let found = nodes[0]
            .inspect(move |core| core.slot_owner(slot))
            .await
            .unwrap();
        if found == Some(wanted) {
            return key;
        }
    }
    unreachable!("some key hashes to every master")
}

/// Runs `iterations` calls split over `callers` tasks; returns the elapsed time.
async fn timed(
    cluster: &Cluster,
    key: &[u8],
    set: bool,
    callers: u64,
    iterations: u64,
) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let cluster = cluster.clone();
        let key = key.to_vec();
        let share = iterations / callers + u64::from(caller < iterations % callers);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                if set {
                    cluster.set(&key, VALUE).await.unwrap();
                } else {
                    std::hint::black_box(cluster.get(&key).await.unwrap());
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn bench_handle(criterion: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = criterion.benchmark_group("handle");
    group.throughput(Throughput::Elements(1));
    for (name, quic) in [("tcp", false), ("quic", true)] {
        let nodes = runtime.block_on(cluster_of(quic, 3, 0));
        let local = runtime.block_on(key_owned_by(&nodes, 0));
        let remote = runtime.block_on(key_owned_by(&nodes, 1));
        let cluster = nodes[0].cluster();
        runtime.block_on(cluster.set(&local, VALUE)).unwrap();
        runtime.block_on(cluster.set(&remote, VALUE)).unwrap();
        for callers in [1u64, 64] {
            for (operation, set) in [("get", false), ("set", true)] {
                let mut targets = vec![(name, &remote)];
                if !quic {
                    targets.insert(0, ("local", &local));
                }
                for (target, key) in targets {
                    let id = BenchmarkId::new(format!("{operation}/{target}"), callers);
                    group.bench_function(id, |bencher| {
                        bencher.iter_custom(|iterations| {
                            runtime.block_on(timed(&cluster, key, set, callers, iterations))
                        })
                    });
                }
            }
        }
        runtime.block_on(async {
            for node in nodes {
                node.shutdown().await;
            }
        });
    }
    group.finish();
}

fn bench_replication(criterion: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let nodes = runtime.block_on(cluster_of(false, 1, 1));
    let cluster = nodes[0].cluster();
    let mut group = criterion.benchmark_group("replication");
    group.throughput(Throughput::Elements(REPLICATION_BATCH));
    let mut next = 0u64;
    group.bench_function("tcp", |bencher| {
        bencher.iter_custom(|iterations| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    for _ in 0..REPLICATION_BATCH {
                        next += 1;
                        let key = format!("replicated:{next}");
                        cluster.set(key.as_bytes(), VALUE).await.unwrap();
                    }
                    let acknowledged = cluster.wait(1, Duration::from_secs(10)).await.unwrap();
                    assert_eq!(acknowledged, 1);
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    runtime.block_on(async {
        for node in nodes {
            node.shutdown().await;
        }
    });
}

criterion_group!(benches, bench_handle, bench_replication);
criterion_main!(benches);
