//! Partitions: a master cut off in a minority stops accepting writes, is failed over by
//! the majority, and after healing becomes a replica of its successor.

use slotkv_cluster::core::ClusterState;
use slotkv_cluster::sim::Simulator;

fn cluster(nodes: usize, masters: usize, seed: u64) -> Simulator {
    Simulator::formed(nodes, masters, seed, 1000).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn minority_master_stops_writes_then_rejoins_as_replica() {
    let mut sim = cluster(9, 3, 11);
    assert!(sim.core(0).unwrap().accepts_writes());
    let old_id = sim.id_of(0).unwrap();
    sim.partition(&[vec![0]]);
    let cut_at = sim.now_ms();
    let stopped = sim
        .run_until(5000, |sim| !sim.core(0).unwrap().accepts_writes())
        .unwrap();
    assert!(stopped, "the isolated master kept accepting writes");
    let stopped_after_ms = sim.now_ms() - cut_at;
    assert!(
        stopped_after_ms <= 1000 + 500,
        "stopped after {stopped_after_ms} ms"
    );
    let replaced = sim
        .run_until(10_000, |sim| {
            [3, 6]
                .iter()
                .any(|index| sim.core(*index).unwrap().accepts_writes())
        })
        .unwrap();
    assert!(replaced, "the majority did not fail the master over");
    sim.heal();
    sim.run_for(10_000).unwrap();
    let core = sim.core(0).unwrap();
    assert!(
        core.myself().is_replica(),
        "the old master is still a master"
    );
    let new_master = core.my_master().unwrap();
    assert_ne!(new_master, old_id);
    assert!([3, 6].contains(&sim.index_of_id(&new_master).unwrap()));
    assert_eq!(core.cluster_state(), ClusterState::Ok);
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn healed_minority_master_waits_the_rejoin_delay() {
    // n0 and its replicas are cut off together: no failover, and n0 is in the minority.
    let mut sim = cluster(9, 3, 12);
    sim.partition(&[vec![0, 3, 6]]);
    sim.run_for(3000).unwrap();
    assert_eq!(sim.core(0).unwrap().cluster_state(), ClusterState::Fail);
    // The majority sees n0 FAIL and, with full coverage required, is down too.
    assert_eq!(sim.core(1).unwrap().cluster_state(), ClusterState::Fail);
    sim.heal();
    let healed_at = sim.now_ms();
    let ok = sim
        .run_until(10_000, |sim| {
            sim.core(0).unwrap().cluster_state() == ClusterState::Ok
        })
        .unwrap();
    assert!(ok);
    let waited_ms = sim.now_ms() - healed_at;
    // Rejoin delay: clamp(node_timeout, 500, 5000) = 1000 ms since last seen in minority.
    assert!(waited_ms >= 900, "rejoined after only {waited_ms} ms");
    sim.run_for(5000).unwrap();
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        sim.core(0).unwrap().myself().is_master(),
        "no failover could have happened"
    );
}

#[test]
fn two_masters_killed_at_once_are_both_failed_over() {
    // 5 masters (n0..n4) with one replica each (n5..n9).
    let mut sim = cluster(10, 5, 13);
    sim.kill(0);
    sim.kill(1);
    let both = sim
        .run_until(30_000, |sim| {
            sim.core(5).unwrap().accepts_writes() && sim.core(6).unwrap().accepts_writes()
        })
        .unwrap();
    assert!(both, "not both replicas were promoted");
    sim.run_for(5000).unwrap();
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}
