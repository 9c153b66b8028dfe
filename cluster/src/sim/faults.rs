//! Faults injected on purpose (test builds only): each breaks one rule of the shell or the
//! core so that a test can show the invariant guarding that rule fire.

use std::collections::BTreeMap;

use crate::core::{ClusterState, Core};
use crate::sim::data::{Key, Value};
use crate::sim::Simulator;

/// The switches; all off by default.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    /// A master paused for a manual failover keeps accepting writes.
    pub(crate) paused_master_accepts_writes: bool,
    /// A full sync merges the snapshot into the replica's old copy instead of replacing it.
    pub(crate) full_sync_keeps_old_keys: bool,
    /// A write reaching a slot's owner is taken by the owner's first live replica instead.
    pub(crate) replicas_accept_writes: bool,
}

impl Faults {
    /// Whether the pause fault lets `core` take a write it would refuse.
    pub(crate) fn accepts_writes_despite_pause(&self, core: &Core) -> bool {
        self.paused_master_accepts_writes
            && core.myself().is_master()
            && core.cluster_state() == ClusterState::Ok
    }
}

impl Simulator {
    /// The replica fault: the node that takes a write for `target`'s slot.
    pub(crate) fn write_acceptor(&self, target: usize) -> usize {
        if !self.faults.replicas_accept_writes {
            return target;
        }
        let Some(core) = self.core(target) else {
            return target;
        };
        let replica = core
            .replicas_of(&core.myself_id())
            .find_map(|replica| self.index_of_id(&replica.id))
            .filter(|replica| self.core(*replica).is_some());
        replica.unwrap_or(target)
    }

    /// After a full sync replaced node `index`'s data: the merge fault puts back the keys
    /// of the old copy the snapshot lacks.
    pub(crate) fn apply_full_sync_fault(&mut self, index: usize, before: BTreeMap<Key, Value>) {
        if !self.faults.full_sync_keeps_old_keys {
            return;
        }
        let values = &mut self.nodes[index].data.values;
        for (key, value) in before {
            values.entry(key).or_insert(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::{AdminCommand, FailoverMode};
    use crate::sim::{Durability, NetworkConfig, SimError, Simulator, Workload};

    /// Writes only, one every millisecond, acknowledged by one replica.
    fn busy_writers() -> Workload {
        Workload {
            op_interval_ms: 1,
            writes_per_mille: 1000,
            durability: Durability::Replicas(1),
            ..Workload::default()
        }
    }

    fn formed(nodes: usize, seed: u64) -> Simulator {
        Simulator::formed(nodes, 3, seed, 1000).unwrap_or_else(|error| panic!("{error}"))
    }

    /// A manual failover of n0 to n3 under writes (n6 is n0's other replica).
    fn manual_failover_under_writes(
        seed: u64,
        paused_master_accepts: bool,
    ) -> Result<(), SimError> {
        let mut sim = formed(9, seed);
        sim.faults.paused_master_accepts_writes = paused_master_accepts;
        sim.start_clients(busy_writers());
        sim.run_for(1_000)?;
        sim.command(3, AdminCommand::Failover(FailoverMode::Default))?;
        sim.run_for(5_000)
    }

    #[test]
    fn a_paused_master_that_keeps_accepting_writes_loses_acknowledged_writes() {
        let lost = (0..8).find_map(|seed| manual_failover_under_writes(seed, true).err());
        let error = lost.expect("no seed lost a write");
        assert!(error.reason.contains("is held by no live node"), "{error}");
    }

    #[test]
    fn a_replica_taking_writes_is_a_second_acceptor_at_its_masters_epoch() {
        let mut sim = formed(6, 1);
        sim.start_clients(busy_writers());
        sim.run_for(500).unwrap();
        sim.faults.replicas_accept_writes = true;
        let error = sim.run_for(500).expect_err("no second acceptor was seen");
        assert!(
            error.reason.contains("both accepted writes for slot"),
            "{error}"
        );
    }

    #[test]
    fn a_voter_that_ignores_its_vote_history_votes_twice_in_one_epoch() {
        let mut sim = formed(9, 2);
        for index in 0..3 {
            if let Some(core) = sim.nodes[index].core.as_mut() {
                core.fault_vote_ignores_history = true;
            }
        }
        // Every vote request arrives twice.
        sim.set_network(NetworkConfig {
            duplicate_per_million: 1_000_000,
            ..NetworkConfig::default()
        });
        sim.kill(0);
        let error = sim.run_for(10_000).expect_err("no double vote was seen");
        assert!(error.reason.contains("voted twice in epoch"), "{error}");
    }

    /// n3 (replica of n0) is moved to n1 under writes, then everything settles.
    fn replica_moved_to_another_shard(keeps_old_keys: bool) -> Result<(), SimError> {
        let mut sim = formed(6, 3);
        sim.faults.full_sync_keeps_old_keys = keeps_old_keys;
        sim.start_clients(Workload::default());
        sim.run_for(2_000)?;
        let n1 = sim.id_of(1).expect("n1 lives");
        sim.command(3, AdminCommand::Replicate(n1))?;
        sim.run_for(2_000)?;
        sim.stop_clients();
        sim.run_for(3_000)?;
        sim.check_converged()?;
        sim.check_data_converged()
    }

    #[test]
    fn a_node_that_keeps_a_lost_slots_keys_is_caught_after_healing() {
        replica_moved_to_another_shard(false).unwrap_or_else(|error| panic!("{error}"));
        let error = replica_moved_to_another_shard(true).expect_err("the kept keys were not seen");
        assert!(
            error.reason.contains("neither it nor its master"),
            "{error}"
        );
    }

    #[test]
    fn without_faults_the_same_runs_keep_every_invariant() {
        let mut sim = formed(6, 1);
        sim.start_clients(busy_writers());
        sim.run_for(1_000).unwrap_or_else(|error| panic!("{error}"));
        let mut sim = formed(9, 2);
        sim.set_network(NetworkConfig {
            duplicate_per_million: 1_000_000,
            ..NetworkConfig::default()
        });
        sim.kill(0);
        sim.run_for(10_000)
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            sim.core(3).unwrap().myself().is_master() || sim.core(6).unwrap().myself().is_master()
        );
    }
}
