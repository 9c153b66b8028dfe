#![allow(missing_docs)]
//! Core throughput and bus bandwidth, measured in the deterministic simulator.
//!
//! - `core_steps/{6,100}`: simulator steps per second (one step = one input to one core
//!   plus routing its outputs through the real wire encoding) in an idle formed cluster;
//!   the 6-node figure is the baseline for the 100-node one.
//! - `virtual_second/100`: wall time to simulate one second of a 100-node cluster.
//! - Printed before the timings: bus bytes per node per second in steady state at 6 and
//!   100 nodes, ours against the same messages in Redis's format.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use slotkv_cluster::sim::{SimConfig, Simulator};

fn formed(nodes: usize, masters: usize, node_timeout_ms: u64) -> Simulator {
    let mut sim = Simulator::new(SimConfig::new(nodes, 99, node_timeout_ms));
    sim.form_cluster(masters)
        .unwrap_or_else(|error| panic!("{error}"));
    sim.run_for(4 * node_timeout_ms)
        .unwrap_or_else(|error| panic!("{error}"));
    sim
}

fn print_bus_bytes() {
    for (nodes, masters) in [(6, 3), (100, 50)] {
        let mut sim = formed(nodes, masters, 5000);
        let (ours, redis) = sim
            .measure_bus_bytes_per_node_per_second(30_000)
            .unwrap_or_else(|error| panic!("{error}"));
        println!(
            "bus bytes/node/s, {nodes} nodes, node_timeout 5 s: slotkv {ours:.0}, Redis format {redis:.0} ({:.1}%)",
            100.0 * ours / redis
        );
    }
}

fn core_steps(criterion: &mut Criterion) {
    print_bus_bytes();
    let mut group = criterion.benchmark_group("core_steps");
    group.throughput(Throughput::Elements(1));
    for (nodes, masters) in [(6, 3), (100, 50)] {
        let mut sim = formed(nodes, masters, 1000);
        group.bench_function(BenchmarkId::from_parameter(nodes), |bencher| {
            bencher.iter(|| sim.step_once().unwrap_or_else(|error| panic!("{error}")))
        });
    }
    group.finish();
}

fn virtual_second(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("virtual_second");
    group.sample_size(10);
    let mut sim = formed(100, 50, 1000);
    group.bench_function(BenchmarkId::from_parameter(100), |bencher| {
        bencher.iter(|| sim.run_for(1000).unwrap_or_else(|error| panic!("{error}")))
    });
    group.finish();
}

criterion_group!(benches, core_steps, virtual_second);
criterion_main!(benches);
