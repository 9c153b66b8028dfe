//! Admin commands: replica migration, FORGET with its ban, RESET, SETSLOT states.

use slotkv_cluster::core::slots::{SlotRange, SlotState};
use slotkv_cluster::core::{AdminCommand, ResetMode, SetSlotAction};
use slotkv_cluster::sim::{SimConfig, Simulator};

fn cluster(nodes: usize, masters: usize, seed: u64) -> Simulator {
    Simulator::formed(nodes, masters, seed, 1000).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn a_replica_migrates_to_an_orphaned_master() {
    // n3, n6 replicate n0; n4 replicates n1; n5 replicates n2.
    let mut sim = cluster(7, 3, 41);
    sim.kill(5);
    let target = sim.id_of(2).unwrap();
    let migrated = sim
        .run_until(20_000, |sim| {
            [3, 6]
                .iter()
                .any(|index| sim.core(*index).unwrap().my_master() == Some(target))
        })
        .unwrap();
    assert!(migrated, "no replica moved to the orphaned master");
    // Exactly one moved, and the barrier (1) kept one replica with n0.
    let with_n0 = [3, 6]
        .iter()
        .filter(|index| sim.core(**index).unwrap().my_master() == sim.id_of(0))
        .count();
    assert_eq!(with_n0, 1);
    // Barrier: the orphan-maker's donor master is not stripped below the barrier.
    sim.run_for(10_000).unwrap();
    let with_n0_later = [3, 6]
        .iter()
        .filter(|index| sim.core(**index).unwrap().my_master() == sim.id_of(0))
        .count();
    assert_eq!(with_n0_later, 1);
}

#[test]
fn forget_on_one_node_works_cluster_wide_for_the_ban_then_a_meet_brings_it_back() {
    let mut sim = cluster(6, 3, 42);
    let forgotten = sim.id_of(5).unwrap();
    sim.command(0, AdminCommand::Forget(forgotten)).unwrap();
    sim.run_for(30_000).unwrap();
    for index in 0..5 {
        assert!(
            sim.core(index).unwrap().node(&forgotten).is_none(),
            "n{index} knows the forgotten node during the ban"
        );
    }
    sim.run_for(35_000).unwrap();
    sim.meet(0, 5).unwrap();
    let back = sim
        .run_until(20_000, |sim| {
            (0..5).all(|index| sim.core(index).unwrap().node(&forgotten).is_some())
        })
        .unwrap();
    assert!(back, "never re-learned after the ban");
}

#[test]
fn forget_refuses_myself_and_my_master() {
    let mut sim = cluster(6, 3, 43);
    let myself = sim.id_of(3).unwrap();
    let master = sim.id_of(0).unwrap();
    assert!(sim.command(3, AdminCommand::Forget(myself)).is_err());
    assert!(sim.command(3, AdminCommand::Forget(master)).is_err());
}

#[test]
fn hard_reset_gives_a_new_identity_with_zero_epochs() {
    let mut sim = cluster(6, 3, 44);
    let old = sim.id_of(3).unwrap();
    sim.command(3, AdminCommand::Reset(ResetMode::Hard))
        .unwrap();
    sim.forget_epoch_history(3);
    let core = sim.core(3).unwrap();
    assert_ne!(core.myself_id(), old);
    assert_eq!(core.current_epoch(), 0);
    assert_eq!(core.nodes().count(), 1);
    assert!(core.myself().is_master());
}

#[test]
fn soft_reset_keeps_identity_and_forgets_everyone() {
    let mut sim = cluster(6, 3, 45);
    let old = sim.id_of(4).unwrap();
    let epoch = sim.core(4).unwrap().current_epoch();
    sim.command(4, AdminCommand::Reset(ResetMode::Soft))
        .unwrap();
    let core = sim.core(4).unwrap();
    assert_eq!(core.myself_id(), old);
    assert_eq!(core.current_epoch(), epoch);
    assert_eq!(core.nodes().count(), 1);
}

#[test]
fn slot_moves_through_importing_migrating_and_node_with_an_epoch_bump() {
    let mut sim = cluster(3, 3, 46);
    let source = sim.id_of(0).unwrap();
    let target = sim.id_of(1).unwrap();
    let set = |action| AdminCommand::SetSlot { slot: 7, action };
    assert!(sim
        .command(0, set(SetSlotAction::Importing(target)))
        .is_err());
    sim.command(1, set(SetSlotAction::Importing(source)))
        .unwrap();
    sim.command(0, set(SetSlotAction::Migrating(target)))
        .unwrap();
    assert_eq!(
        sim.core(1).unwrap().slot_state(7),
        SlotState::Importing(source)
    );
    assert_eq!(
        sim.core(0).unwrap().slot_state(7),
        SlotState::Migrating(target)
    );
    let epochs_before: u64 = (0..3)
        .map(|index| sim.core(index).unwrap().myself().config_epoch)
        .max()
        .unwrap();
    sim.command(1, set(SetSlotAction::Node(target))).unwrap();
    sim.command(0, set(SetSlotAction::Node(target))).unwrap();
    let target_epoch = sim.core(1).unwrap().myself().config_epoch;
    assert!(
        target_epoch > epochs_before,
        "no epoch bump on the importing node"
    );
    assert_eq!(sim.core(1).unwrap().slot_state(7), SlotState::Stable);
    assert_eq!(sim.core(0).unwrap().slot_state(7), SlotState::Stable);
    sim.run_for(3000).unwrap();
    for index in 0..3 {
        assert_eq!(sim.core(index).unwrap().slot_owner(7), Some(target));
    }
    sim.check_converged()
        .unwrap_or_else(|error| panic!("{error}"));
}

#[test]
fn add_and_delete_slots_are_checked() {
    let mut sim = Simulator::new(SimConfig::new(2, 47, 1000));
    let range = SlotRange::new(10, 20).unwrap();
    sim.add_slots(0, vec![range]).unwrap();
    assert!(sim
        .add_slots(0, vec![SlotRange::new(15, 15).unwrap()])
        .is_err());
    let bad = SlotRange {
        start: 5,
        end: 20000,
    };
    assert!(sim.add_slots(1, vec![bad]).is_err());
    sim.command(0, AdminCommand::DelSlots(vec![range])).unwrap();
    assert!(sim.command(0, AdminCommand::DelSlots(vec![range])).is_err());
    assert_eq!(sim.core(0).unwrap().slot_table().assigned_count(), 0);
}

#[test]
fn replicate_refuses_a_master_with_slots() {
    let mut sim = cluster(6, 3, 48);
    let other = sim.id_of(1).unwrap();
    assert!(sim.command(0, AdminCommand::Replicate(other)).is_err());
    let replica = sim.id_of(4).unwrap();
    assert!(sim.command(5, AdminCommand::Replicate(replica)).is_err());
}
