//! Cluster formation from a chain of MEETs, at 3, 6, 50 and 100 nodes.

use slotkv_cluster::core::slots::SLOT_COUNT;
use slotkv_cluster::core::ClusterState;
use slotkv_cluster::sim::{SimConfig, Simulator};

/// Forms a cluster or panics with the simulator's report.
fn form(nodes: usize, masters: usize, seed: u64) -> Simulator {
    let mut sim = Simulator::new(SimConfig::new(nodes, seed, 1000));
    if let Err(error) = sim.form_cluster(masters) {
        panic!("{error}");
    }
    if let Err(error) = sim.check_converged() {
        panic!("{error}");
    }
    sim
}

#[test]
fn three_masters_form_a_cluster_from_a_meet_chain() {
    let sim = form(3, 3, 1);
    for index in 0..3 {
        let core = sim.core(index).unwrap();
        assert_eq!(core.cluster_state(), ClusterState::Ok);
        assert_eq!(core.nodes().count(), 3);
        assert!(core.myself().is_master());
    }
}

#[test]
fn fresh_masters_resolve_equal_config_epochs_into_unique_ones() {
    let mut sim = form(3, 3, 5);
    sim.run_for(5_000).unwrap();
    let epochs: std::collections::BTreeSet<u64> = (0..3)
        .map(|index| sim.core(index).unwrap().myself().config_epoch)
        .collect();
    assert_eq!(epochs.len(), 3, "{epochs:?}");
}

#[test]
fn six_nodes_form_three_shards() {
    let sim = form(6, 3, 2);
    for replica in 3..6 {
        let core = sim.core(replica).unwrap();
        let master = sim.id_of(replica - 3).unwrap();
        assert_eq!(core.my_master(), Some(master));
    }
    let first = sim.core(0).unwrap();
    assert_eq!(first.slot_table().assigned_count(), SLOT_COUNT);
}

#[test]
fn fifty_nodes_form_a_cluster() {
    form(50, 25, 3);
}

#[test]
fn a_hundred_nodes_form_a_cluster() {
    form(100, 50, 4);
}
