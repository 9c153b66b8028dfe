//! Random fault schedules: kills, restarts, partitions, loss and delay, then heal and
//! check convergence. Every step also checks the safety invariants.
//!
//! `SLOTKV_SIM_SEEDS=N` runs N seeds (default 200); `SLOTKV_SIM_SEED=S` replays one.
//! A failure prints its seed, the replay command and the last events. The harsh variant
//! (`SLOTKV_SIM_HARSH_SEEDS=N`, default 40) adds up to 15 % loss, up to 10 % duplicated
//! messages and delays up to ~450 ms, which reorders messages across ping rounds.

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

/// Seeds of the harsh variant when `SLOTKV_SIM_HARSH_SEEDS` is unset.
const DEFAULT_HARSH_SEEDS: u64 = 40;

fn faulty_network(rng: &mut Rng, harsh: bool) -> NetworkConfig {
    let mut network = NetworkConfig {
        delay_ms_min: 1,
        delay_ms_max: 5 + rng.below(40),
        drop_per_million: rng.below(50_000),
        duplicate_per_million: 0,
    };
    if harsh {
        network.delay_ms_max += rng.below(400);
        network.drop_per_million += rng.below(100_000);
        network.duplicate_per_million = rng.below(100_000);
    }
    network
}

/// One random fault; returns nothing, records itself in the trace.
fn random_fault(sim: &mut Simulator, rng: &mut Rng, harsh: bool) -> Result<(), SimError> {
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
            let network = faulty_network(rng, harsh);
            sim.note(format!("network {network:?}"));
            sim.set_network(network);
        }
        _ => {}
    }
    Ok(())
}

fn run_seed(seed: u64, harsh: bool) -> Result<(), SimError> {
    run_seed_traced(seed, harsh).0
}

/// Runs one seed; also returns a fingerprint of the run (trace, time, steps, bytes) so a
/// replay can be compared with the original.
fn run_seed_traced(seed: u64, harsh: bool) -> (Result<(), SimError>, String) {
    let mut sim = Simulator::new(SimConfig::new(NODES, seed, NODE_TIMEOUT_MS));
    let result = drive(&mut sim, seed, harsh);
    let fingerprint = format!(
        "{}\n{} ms, {} steps, bytes {:?}\n{}",
        sim.trace_text(),
        sim.now_ms(),
        sim.steps(),
        sim.bytes_sent(),
        sim.describe()
    );
    (result, fingerprint)
}

fn drive(sim: &mut Simulator, seed: u64, harsh: bool) -> Result<(), SimError> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    sim.form_cluster(MASTERS)?;
    sim.run_for(3 * NODE_TIMEOUT_MS)?;
    let network = faulty_network(&mut rng, harsh);
    sim.set_network(network);
    let fault_end_ms = sim.now_ms() + FAULT_PHASE_MS;
    while sim.now_ms() < fault_end_ms {
        random_fault(sim, &mut rng, harsh)?;
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

fn run_seeds(harsh: bool, count_variable: &str, default_count: u64) {
    let seeds: Vec<u64> = match env_u64("SLOTKV_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64(count_variable).unwrap_or(default_count)).collect(),
    };
    let mut failures = Vec::new();
    for seed in &seeds {
        if let Err(error) = run_seed(*seed, harsh) {
            if failures.is_empty() {
                eprintln!("{error}");
            }
            failures.push(*seed);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed (harsh: {harsh}): {failures:?} (replay one with SLOTKV_SIM_SEED=<seed>)",
        failures.len(),
        seeds.len()
    );
}

#[test]
fn random_fault_schedules_keep_the_invariants_and_converge() {
    run_seeds(false, "SLOTKV_SIM_SEEDS", DEFAULT_SEEDS);
}

#[test]
fn harsh_fault_schedules_with_duplication_and_reordering_keep_the_invariants() {
    run_seeds(true, "SLOTKV_SIM_HARSH_SEEDS", DEFAULT_HARSH_SEEDS);
}

#[test]
fn a_seed_replays_exactly() {
    for (seed, harsh) in [(3, false), (11, true)] {
        let (first_result, first) = run_seed_traced(seed, harsh);
        let (second_result, second) = run_seed_traced(seed, harsh);
        assert_eq!(first_result.is_ok(), second_result.is_ok());
        assert!(first == second, "seed {seed} did not replay exactly");
    }
}
