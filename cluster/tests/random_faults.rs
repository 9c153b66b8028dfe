//! Random fault schedules: kills, restarts, partitions, loss and delay, then heal and
//! check convergence. Every step also checks the safety invariants.
//!
//! `SLOTKV_SIM_SEEDS=N` runs N seeds (default 200); `SLOTKV_SIM_SEED=S` replays one.
//! A failure prints its seed, the replay command and the last events.

use slotkv_cluster::core::rng::Rng;
use slotkv_cluster::sim::{NetworkConfig, SimConfig, SimError, Simulator};

/// Seeds run when `SLOTKV_SIM_SEEDS` is unset.
const DEFAULT_SEEDS: u64 = 200;
const NODES: usize = 9;
const MASTERS: usize = 3;
const NODE_TIMEOUT_MS: u64 = 1000;
/// Length of the fault phase, in virtual ms.
const FAULT_PHASE_MS: u64 = 30_000;
/// Quiet time after healing before convergence is checked, in virtual ms.
const QUIET_MS: u64 = 20_000;

fn faulty_network(rng: &mut Rng) -> NetworkConfig {
    NetworkConfig {
        delay_ms_min: 1,
        delay_ms_max: 5 + rng.below(40),
        drop_per_million: rng.below(50_000),
    }
}

/// One random fault; returns nothing, records itself in the trace.
fn random_fault(sim: &mut Simulator, rng: &mut Rng) -> Result<(), SimError> {
    let live = sim.live_nodes();
    let dead: Vec<usize> = (0..NODES).filter(|index| !live.contains(index)).collect();
    match rng.below(6) {
        0 if live.len() > NODES / 2 => sim.kill(live[rng.below(live.len() as u64) as usize]),
        1 if !dead.is_empty() => sim.restart(dead[rng.below(dead.len() as u64) as usize])?,
        2 => {
            let mut nodes: Vec<usize> = (0..NODES).collect();
            rng.shuffle(&mut nodes);
            let size = 1 + rng.below(NODES as u64 / 2) as usize;
            sim.partition(&[nodes[..size].to_vec()]);
        }
        3 => sim.heal(),
        4 => {
            let network = faulty_network(rng);
            sim.note(format!("network {network:?}"));
            sim.set_network(network);
        }
        _ => {}
    }
    Ok(())
}

fn run_seed(seed: u64) -> Result<(), SimError> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let mut sim = Simulator::new(SimConfig::new(NODES, seed, NODE_TIMEOUT_MS));
    sim.form_cluster(MASTERS)?;
    sim.run_for(3 * NODE_TIMEOUT_MS)?;
    let network = faulty_network(&mut rng);
    sim.set_network(network);
    let fault_end_ms = sim.now_ms() + FAULT_PHASE_MS;
    while sim.now_ms() < fault_end_ms {
        random_fault(&mut sim, &mut rng)?;
        sim.run_for(200 + rng.below(4000))?;
    }
    for index in 0..NODES {
        sim.restart(index)?;
    }
    sim.heal();
    sim.set_network(NetworkConfig::default());
    sim.run_for(QUIET_MS)?;
    sim.check_converged()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn random_fault_schedules_keep_the_invariants_and_converge() {
    let seeds: Vec<u64> = match env_u64("SLOTKV_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SLOTKV_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS)).collect(),
    };
    let mut failures = Vec::new();
    for seed in &seeds {
        if let Err(error) = run_seed(*seed) {
            if failures.is_empty() {
                eprintln!("{error}");
            }
            failures.push(*seed);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed: {failures:?} (replay one with SLOTKV_SIM_SEED=<seed>)",
        failures.len(),
        seeds.len()
    );
}
