//! Transport benchmarks: TCP vs QUIC vs the simulated network, all on loopback in one tokio
//! runtime (2 worker threads) built here, through the same `Endpoint` API the cluster uses.
//!
//! - `transport_round_trip/<transport>/<bytes>`: one `request` → `respond` round trip with a
//!   payload of 64 B or 16 KiB each way (the server task echoes the payload).
//! - `transport_one_way/<transport>/<bytes>`: `send_bulk` of a batch of 256 frames, timed until
//!   the receiver has taken all of them; `Throughput::Bytes` of the payload.
//!
//! Run: `cargo bench --bench transport -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slotkv::transport::quic::{DevCertificateAuthority, QuicConfig, QuicTransport};
use slotkv::transport::sim::SimNet;
use slotkv::transport::tcp::{ClusterSecret, TcpConfig, TcpTransport};
use slotkv::transport::{Endpoint, EndpointConfig, PeerAddr, Transport};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const FRAME_SIZES: [usize; 2] = [64, 16 * 1024];
const BATCH_FRAMES: usize = 256;

/// A client endpoint connected to a server endpoint that echoes requests and acknowledges
/// every `BATCH_FRAMES` bulk frames.
struct Pair {
    client: Endpoint,
    server: PeerAddr,
    batches: mpsc::Receiver<()>,
    _server: Endpoint,
}

fn transports(name: &str) -> (Arc<dyn Transport>, Arc<dyn Transport>, PeerAddr, PeerAddr) {
    let loopback = || PeerAddr::new("127.0.0.1:0").unwrap();
    match name {
        "tcp" => {
            let make = || -> Arc<dyn Transport> {
                let secret = ClusterSecret::new(b"benchmark-cluster-secret".to_vec()).unwrap();
                Arc::new(TcpTransport::new(TcpConfig::new(secret)))
            };
            (make(), make(), loopback(), loopback())
        }
        "quic" => {
            let authority = DevCertificateAuthority::generate().unwrap();
            let make = || -> Arc<dyn Transport> {
                let identity = authority.issue_node_identity().unwrap();
                let config = QuicConfig::new(identity, authority.trust_anchor());
                Arc::new(QuicTransport::new(config).unwrap())
            };
            (make(), make(), loopback(), loopback())
        }
        _ => {
            let net = SimNet::new(1);
            let (client, server) = (Arc::new(net.transport()), Arc::new(net.transport()));
            (
                client,
                server,
                PeerAddr::new("client").unwrap(),
                PeerAddr::new("server").unwrap(),
            )
        }
    }
}

async fn pair(name: &str) -> Pair {
    let (client_transport, server_transport, client_address, server_address) = transports(name);
    let config = EndpointConfig::default();
    let (server, server_in) = Endpoint::bind(server_transport, server_address, config.clone())
        .await
        .unwrap();
    let (client, _client_in) = Endpoint::bind(client_transport, client_address, config)
        .await
        .unwrap();
    let (mut requests, mut bulk) = (server_in.requests, server_in.bulk);
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let payload = request.payload.clone();
            let _ = request.responder.respond(payload);
        }
    });
    let (batch_done, batches) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut received = 0;
        while bulk.recv().await.is_some() {
            received += 1;
            if received % BATCH_FRAMES == 0 && batch_done.send(()).await.is_err() {
                return;
            }
        }
    });
    let server_address = server.local_addr().clone();
    // Warm the links up so no measurement includes connection setup.
    client
        .request(&server_address, Bytes::from_static(b"warm-up"))
        .await
        .unwrap();
    Pair {
        client,
        server: server_address,
        batches,
        _server: server,
    }
}

fn round_trip(c: &mut Criterion, runtime: &Runtime, pairs: &[(&str, Pair)]) {
    let mut group = c.benchmark_group("transport_round_trip");
    for size in FRAME_SIZES {
        let payload = Bytes::from(vec![b'r'; size]);
        for (name, pair) in pairs {
            group.bench_with_input(BenchmarkId::new(*name, size), &payload, |bench, payload| {
                bench.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iterations {
                            let answer = pair.client.request(&pair.server, payload.clone()).await;
                            assert_eq!(answer.unwrap().len(), size);
                        }
                        started.elapsed()
                    })
                });
            });
        }
    }
    group.finish();
}

fn one_way(c: &mut Criterion, runtime: &Runtime, pairs: &mut [(&str, Pair)]) {
    let mut group = c.benchmark_group("transport_one_way");
    for size in FRAME_SIZES {
        let frame = Bytes::from(vec![b'o'; size]);
        group.throughput(Throughput::Bytes((size * BATCH_FRAMES) as u64));
        for (name, pair) in pairs.iter_mut() {
            group.bench_with_input(BenchmarkId::new(*name, size), &frame, |bench, frame| {
                bench.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iterations {
                            for _ in 0..BATCH_FRAMES {
                                pair.client
                                    .send_bulk(&pair.server, frame.clone())
                                    .await
                                    .unwrap();
                            }
                            pair.batches.recv().await.unwrap();
                        }
                        started.elapsed()
                    })
                });
            });
        }
    }
    group.finish();
}

fn transport_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut pairs: Vec<(&str, Pair)> = ["tcp", "quic", "sim"]
        .into_iter()
        .map(|name| (name, runtime.block_on(pair(name))))
        .collect();
    round_trip(c, &runtime, &pairs);
    one_way(c, &runtime, &mut pairs);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = transport_benches
}
criterion_main!(benches);
