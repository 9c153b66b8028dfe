//! Manual failover in each mode: default (MFSTART handshake), FORCE and TAKEOVER.

use slotkv_cluster::core::{AdminCommand, AdminError, FailoverMode};
use slotkv_cluster::sim::Simulator;

/// 3 masters n0..n2, replicas n3..n5 (n3 replicates n0).
fn cluster(seed: u64) -> Simulator {
    Simulator::formed(6, 3, seed, 1000).unwrap_or_else(|error| panic!("{error}"))
}

fn swapped(sim: &Simulator) -> bool {
    let new_master = sim.core(3).unwrap();
    let old_master = sim.core(0).unwrap();
    new_master.accepts_writes()
        && new_master.slot_owner(0) == sim.id_of(3)
        && old_master.my_master() == sim.id_of(3)
}

#[test]
fn default_manual_failover_swaps_roles_without_losing_writes() {
    let mut sim = cluster(31);
    sim.command(3, AdminCommand::Failover(FailoverMode::Default))
        .unwrap();
    // The master pauses writes while the replica catches up.
    sim.run_until(500, |sim| !sim.core(0).unwrap().accepts_writes())
        .unwrap();
    assert!(
        !sim.core(0).unwrap().accepts_writes(),
        "the master did not pause"
    );
    let paused_offset = sim.core(0).unwrap().myself().repl_offset;
    let done = sim.run_until(3000, swapped).unwrap();
    assert!(done, "roles were not swapped");
    // Every write the old master accepted had reached the replica before it took over.
    assert!(sim.core(3).unwrap().myself().repl_offset >= paused_offset);
    sim.run_for(3000).unwrap();
    assert!(swapped(&sim));
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn forced_manual_failover_works_with_the_master_down() {
    let mut sim = cluster(32);
    sim.kill(0);
    // Before failure detection could even notice (node_timeout is 1 s).
    sim.run_for(100).unwrap();
    sim.command(3, AdminCommand::Failover(FailoverMode::Force))
        .unwrap();
    let started = sim.now_ms();
    let promoted = sim
        .run_until(3000, |sim| {
            sim.core(3).unwrap().slot_owner(0) == sim.id_of(3)
        })
        .unwrap();
    assert!(promoted);
    assert!(
        sim.now_ms() - started < 500,
        "FORCE waited for failure detection"
    );
    sim.run_for(5000).unwrap();
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn default_manual_failover_is_refused_when_the_master_is_failing() {
    let mut sim = cluster(33);
    let master = sim.id_of(0).unwrap();
    sim.kill(0);
    let noticed = sim
        .run_until(3000, |sim| {
            sim.core(3)
                .unwrap()
                .node(&master)
                .is_some_and(|node| node.is_failing())
        })
        .unwrap();
    assert!(noticed);
    assert!(
        sim.core(3).unwrap().my_master().is_some(),
        "already promoted"
    );
    let error = sim
        .command(3, AdminCommand::Failover(FailoverMode::Default))
        .unwrap_err();
    assert!(error.reason.contains(&AdminError::MasterDown.to_string()));
}

#[test]
fn takeover_needs_no_majority() {
    let mut sim = cluster(34);
    // Two of three masters gone: no election can win.
    sim.kill(1);
    sim.kill(2);
    sim.run_for(200).unwrap();
    let epoch_before = sim.core(3).unwrap().current_epoch();
    sim.command(3, AdminCommand::Failover(FailoverMode::Takeover))
        .unwrap();
    let core = sim.core(3).unwrap();
    assert!(core.myself().is_master());
    assert_eq!(core.slot_owner(0), sim.id_of(3));
    assert!(core.myself().config_epoch > epoch_before);
    sim.run_for(3000).unwrap();
    assert_eq!(sim.core(0).unwrap().my_master(), sim.id_of(3));
}

#[test]
fn failover_on_a_master_is_refused() {
    let mut sim = cluster(35);
    let result = sim.core(0).map(|core| core.myself().is_master());
    assert_eq!(result, Some(true));
    let error = sim
        .command(0, AdminCommand::Failover(FailoverMode::Force))
        .unwrap_err();
    assert!(error.reason.contains(&AdminError::NotReplica.to_string()));
}
