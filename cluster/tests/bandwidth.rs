//! Bus bytes: at most a quarter of what Redis's format would take for the same schedule.

use slotkv_cluster::sim::{SimConfig, Simulator};

fn idle_cluster(nodes: usize, masters: usize, node_timeout_ms: u64) -> Simulator {
    let mut sim = Simulator::new(SimConfig::new(nodes, 61, node_timeout_ms));
    sim.form_cluster(masters)
        .unwrap_or_else(|error| panic!("{error}"));
    sim.run_for(4 * node_timeout_ms)
        .unwrap_or_else(|error| panic!("{error}"));
    sim
}

#[test]
fn idle_six_node_cluster_sends_a_quarter_of_redis_bytes_or_less() {
    let mut sim = idle_cluster(6, 3, 5000);
    let (ours, redis) = sim.measure_bus_bytes_per_node_per_second(60_000).unwrap();
    println!("6 nodes, node_timeout 5 s: {ours:.0} B/s per node (Redis format: {redis:.0} B/s)");
    assert!(ours * 4.0 <= redis, "{ours:.0} B/s vs Redis {redis:.0} B/s");
    // The schedule itself is Redis's: about 9 KB/s per node in Redis's format.
    assert!(
        (5_000.0..15_000.0).contains(&redis),
        "Redis-format rate {redis:.0} B/s"
    );
}

#[test]
fn idle_hundred_node_cluster_sends_a_quarter_of_redis_bytes_or_less() {
    let mut sim = idle_cluster(100, 50, 5000);
    let (ours, redis) = sim.measure_bus_bytes_per_node_per_second(20_000).unwrap();
    println!("100 nodes, node_timeout 5 s: {ours:.0} B/s per node (Redis format: {redis:.0} B/s)");
    assert!(ours * 4.0 <= redis, "{ours:.0} B/s vs Redis {redis:.0} B/s");
}
