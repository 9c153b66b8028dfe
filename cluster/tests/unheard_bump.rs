//! The root of the crash reproduction's open liveness failure, in the simulator: a master
//! bumps its configEpoch without consensus (as an atomic migration's flip does) and dies
//! before anyone hears of it; its replica wins the election at the same epoch, and when the
//! master comes back (here without its data) two nodes claim its slots at one configEpoch.
//! The simulator's invariant (one claimant per slot and configEpoch) fires at once on every
//! seed. Redis has the same window (a bump without consensus is resolved after the fact by
//! the collision rule); the fix wanted here is a promoted replica's claim that beats any
//! claim its master may have made unheard, or a restarted master that yields its slots to
//! the replica promoted in its place. Ignored until then:
//! `cargo test --release -p slotkv-cluster --test unheard_bump -- --ignored`.

use slotkv_cluster::core::AdminCommand;
use slotkv_cluster::sim::{SimError, Simulator, Workload};

fn run(seed: u64) -> Result<(), SimError> {
    let mut sim = Simulator::formed(6, 3, seed, 1000)?;
    sim.start_clients(Workload::default());
    sim.run_for(2_000)?;
    sim.command(1, AdminCommand::BumpEpoch)?;
    sim.kill(1);
    sim.run_for(4_000)?;
    sim.restart_without_data(1)?;
    let repaired = sim.run_until(40_000, |sim| {
        sim.all_ok_and_agreed() && sim.check_data_converged().is_ok()
    })?;
    if !repaired {
        return Err(sim.error("not repaired within 40 s".to_string()));
    }
    sim.stop_clients();
    sim.run_for(3_000)?;
    sim.check_converged()?;
    sim.check_data_converged()
}

#[test]
#[ignore = "open: a failover at the epoch of a bump its master made unheard (see the module docs)"]
fn a_master_that_bumped_unheard_and_died_leaves_one_claimant_per_slot() {
    let failed: Vec<u64> = (0..40).filter(|seed| run(*seed).is_err()).collect();
    if let Some(first) = failed.first() {
        if let Err(error) = run(*first) {
            eprintln!("{error}");
        }
    }
    assert!(failed.is_empty(), "seeds failed: {failed:?}");
}
