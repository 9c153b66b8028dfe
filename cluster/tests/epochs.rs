//! configEpoch collisions and UPDATE messages.

use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::core::wire::{MessageType, MAX_EPOCH};
use slotkv_cluster::core::AdminCommand;
use slotkv_cluster::sim::{SimConfig, Simulator};

#[test]
fn colliding_config_epochs_are_resolved_by_the_smaller_id() {
    let mut sim = Simulator::new(SimConfig::new(2, 21, 1000));
    for index in 0..2 {
        sim.command(index, AdminCommand::SetConfigEpoch(5)).unwrap();
    }
    sim.add_slots(0, vec![SlotRange::new(0, 8191).unwrap()])
        .unwrap();
    sim.add_slots(1, vec![SlotRange::new(8192, 16383).unwrap()])
        .unwrap();
    sim.meet(0, 1).unwrap();
    sim.run_for(5000).unwrap();
    let (small, large) = if sim.id_of(0) < sim.id_of(1) {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(sim.core(large).unwrap().myself().config_epoch, 5);
    assert!(sim.core(small).unwrap().myself().config_epoch > 5);
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn set_config_epoch_is_refused_once_others_are_known() {
    let mut sim = Simulator::new(SimConfig::new(2, 22, 1000));
    sim.meet(0, 1).unwrap();
    sim.run_for(2000).unwrap();
    assert!(sim.command(0, AdminCommand::SetConfigEpoch(9)).is_err());
}

#[test]
fn an_epoch_peers_would_reject_cannot_be_set() {
    let mut sim = Simulator::new(SimConfig::new(2, 24, 1000));
    assert!(sim
        .command(0, AdminCommand::SetConfigEpoch(u64::MAX))
        .is_err());
    assert_eq!(sim.core(0).unwrap().myself().config_epoch, 0);
    sim.command(0, AdminCommand::SetConfigEpoch(MAX_EPOCH))
        .unwrap();
    // Bumping from the largest accepted epoch must not wrap back to a small one.
    sim.command(0, AdminCommand::BumpEpoch).unwrap();
    assert!(sim.core(0).unwrap().current_epoch() >= MAX_EPOCH);
}

#[test]
fn a_stale_master_gets_an_update_and_follows_the_new_owner() {
    let mut sim = Simulator::new(SimConfig::new(6, 23, 1000));
    sim.form_cluster(3)
        .unwrap_or_else(|error| panic!("{error}"));
    sim.run_for(3000).unwrap();
    sim.kill(0);
    sim.run_for(5000).unwrap();
    assert!(sim.core(3).unwrap().accepts_writes());
    sim.restart(0).unwrap();
    sim.run_for(5000).unwrap();
    let updates: u64 = sim
        .live_nodes()
        .iter()
        .map(|index| sim.core(*index).unwrap().stats().sent[MessageType::Update.index()])
        .sum();
    assert!(updates > 0, "no UPDATE was sent to the stale master");
    let core = sim.core(0).unwrap();
    assert_eq!(core.my_master(), sim.id_of(3));
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn bump_epoch_reports_bumped_then_still() {
    let mut sim = Simulator::new(SimConfig::new(3, 24, 1000));
    sim.form_cluster(3)
        .unwrap_or_else(|error| panic!("{error}"));
    sim.run_for(3000).unwrap();
    let max_epoch = (0..3)
        .map(|index| sim.core(index).unwrap().myself().config_epoch)
        .max()
        .unwrap();
    let holder = (0..3)
        .find(|index| sim.core(*index).unwrap().myself().config_epoch == max_epoch)
        .unwrap();
    let other = (holder + 1) % 3;
    let reply = sim.command(other, AdminCommand::BumpEpoch).unwrap();
    assert!(matches!(reply, slotkv_cluster::core::AdminReply::Bumped(epoch) if epoch > max_epoch));
    let again = sim.command(other, AdminCommand::BumpEpoch).unwrap();
    assert!(matches!(again, slotkv_cluster::core::AdminReply::Still(_)));
    sim.run_for(3000).unwrap();
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}
