//! Random fault schedules with the data-carrying simulator: clients write (acknowledged
//! when every replica of the shard acknowledged, the WAIT model) and read all along, while
//! nodes are killed, restarted, paused and resumed with old timers, and the network
//! partitions, cuts links one way, loses and delays messages; then everything heals, half
//! the runs lose one node for good, and the run checks convergence and that every
//! acknowledged write is readable from its slot's owner. Every step also checks the
//! safety invariants (`slotkv_cluster::sim::invariants`).
//!
//! `SLOTKV_SIM_SEEDS=N` runs N seeds (default 200); `SLOTKV_SIM_SEED=S` replays one
//! (`SLOTKV_SIM_TRACE_LINES=L` keeps the last L trace lines instead of 400).
//! A failure prints its seed, the replay command and the last events. The harsh variant
//! (`SLOTKV_SIM_HARSH_SEEDS=N`, default 40) adds up to 15 % loss, up to 10 % duplicated
//! messages and delays up to ~450 ms, which reorders messages across ping rounds.
//! Restarts that lose the node's data run in their own test
//! (`SLOTKV_SIM_DATA_LOSS_SEEDS=N`, default 60): the restarted master hands its slots to
//! its best replica, and serves them empty only when no replica can hold any of their
//! data (`Core::note_restarted_without_data`).

use slotkv_cluster::core::rng::Rng;
use slotkv_cluster::sim::{NetworkConfig, SimConfig, SimError, Simulator, Workload};

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

/// Time after the heal before a node may die for good: every replica has resynced.
const SYNC_AFTER_HEAL_MS: u64 = 5_000;
/// Longest process pause, in virtual ms.
const PAUSE_MS_MAX: u64 = 3_000;

/// What a run's faults may include.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Schedule {
    /// Harsh network (duplication, reordering, heavy loss).
    harsh: bool,
    /// Restarts may lose the node's data.
    data_loss: bool,
}

fn pick(rng: &mut Rng, nodes: &[usize]) -> usize {
    nodes[rng.below(nodes.len() as u64) as usize]
}

/// One random fault; returns nothing, records itself in the trace.
fn random_fault(sim: &mut Simulator, rng: &mut Rng, schedule: Schedule) -> Result<(), SimError> {
    let live = sim.live_nodes();
    let dead: Vec<usize> = (0..NODES).filter(|index| !live.contains(index)).collect();
    match rng.below(10) {
        0 if live.len() > NODES / 2 => sim.kill(pick(rng, &live)),
        1 if !dead.is_empty() => {
            let index = pick(rng, &dead);
            if schedule.data_loss && rng.chance(1, 2) {
                sim.restart_without_data(index)?;
            } else {
                sim.restart(index)?;
            }
        }
        2 => {
            let mut nodes: Vec<usize> = (0..NODES).collect();
            rng.shuffle(&mut nodes);
            let size = 1 + rng.below(NODES as u64 / 2) as usize;
            sim.partition(&[nodes[..size].to_vec()]);
        }
        3 => sim.heal(),
        4 => {
            let network = faulty_network(rng, schedule.harsh);
            sim.note(format!("network {network:?}"));
            sim.set_network(network);
        }
        5 => {
            let from = rng.below(NODES as u64) as usize;
            let to = (from + 1 + rng.below(NODES as u64 - 1) as usize) % NODES;
            sim.cut_one_way(from, to);
        }
        6 if !live.is_empty() => sim.pause(pick(rng, &live), 1 + rng.below(PAUSE_MS_MAX)),
        _ => {}
    }
    Ok(())
}

fn run_seed(seed: u64, schedule: Schedule) -> Result<(), SimError> {
    run_seed_traced(seed, schedule).0
}

/// Runs one seed; also returns a fingerprint of the run (trace, time, steps, bytes) so a
/// replay can be compared with the original.
fn run_seed_traced(seed: u64, schedule: Schedule) -> (Result<(), SimError>, String) {
    let mut config = SimConfig::new(NODES, seed, NODE_TIMEOUT_MS);
    if let Some(lines) = env_u64("SLOTKV_SIM_TRACE_LINES") {
        config.trace_capacity_lines = lines as usize;
    }
    let mut sim = Simulator::new(config);
    let result = drive(&mut sim, seed, schedule);
    let fingerprint = format!(
        "{}\n{} ms, {} steps, bytes {:?}, clients {:?}\n{}",
        sim.trace_text(),
        sim.now_ms(),
        sim.steps(),
        sim.bytes_sent(),
        sim.client_stats(),
        sim.describe()
    );
    (result, fingerprint)
}

fn drive(sim: &mut Simulator, seed: u64, schedule: Schedule) -> Result<(), SimError> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    sim.form_cluster(MASTERS)?;
    sim.run_for(3 * NODE_TIMEOUT_MS)?;
    sim.start_clients(Workload::default());
    let network = faulty_network(&mut rng, schedule.harsh);
    sim.set_network(network);
    let fault_end_ms = sim.now_ms() + FAULT_PHASE_MS;
    while sim.now_ms() < fault_end_ms {
        random_fault(sim, &mut rng, schedule)?;
        sim.run_for(200 + rng.below(4000))?;
    }
    for index in 0..NODES {
        sim.restart(index)?;
    }
    sim.heal();
    sim.set_network(NetworkConfig::default());
    // Half the runs lose one node for good once the rest is back and synced (a master
    // dead for good earlier, or before its replicas synced, legitimately leaves its shard
    // down: a replica that never synced, or whose data aged past the validity limit while
    // no majority could elect it, does not fail over).
    if rng.chance(1, 2) {
        sim.run_for(SYNC_AFTER_HEAL_MS + rng.below(2 * NODE_TIMEOUT_MS))?;
        let index = rng.below(NODES as u64) as usize;
        sim.note(format!("n{index} stays dead"));
        sim.kill(index);
    }
    sim.run_for(QUIET_MS)?;
    sim.stop_clients();
    sim.run_for(QUIET_MS / 4)?;
    sim.check_converged()?;
    sim.check_data_converged()?;
    let stats = sim.client_stats();
    if stats.writes_acknowledged == 0 {
        return Err(sim.error(format!("no write was acknowledged: {stats:?}")));
    }
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
}

fn run_seeds(schedule: Schedule, count_variable: &str, default_count: u64) {
    let seeds: Vec<u64> = match env_u64("SLOTKV_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64(count_variable).unwrap_or(default_count)).collect(),
    };
    let mut failures = Vec::new();
    for seed in &seeds {
        if let Err(error) = run_seed(*seed, schedule) {
            if failures.is_empty() {
                eprintln!("{error}");
            }
            failures.push(*seed);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed ({schedule:?}): {failures:?} (replay one with SLOTKV_SIM_SEED=<seed>)",
        failures.len(),
        seeds.len()
    );
}

const NORMAL: Schedule = Schedule {
    harsh: false,
    data_loss: false,
};
const HARSH: Schedule = Schedule {
    harsh: true,
    data_loss: false,
};

#[test]
fn random_fault_schedules_keep_the_invariants_and_converge() {
    run_seeds(NORMAL, "SLOTKV_SIM_SEEDS", DEFAULT_SEEDS);
}

#[test]
fn harsh_fault_schedules_with_duplication_and_reordering_keep_the_invariants() {
    run_seeds(HARSH, "SLOTKV_SIM_HARSH_SEEDS", DEFAULT_HARSH_SEEDS);
}

/// Seeds of the restarts-without-data variant when `SLOTKV_SIM_DATA_LOSS_SEEDS` is unset.
const DEFAULT_DATA_LOSS_SEEDS: u64 = 60;

#[test]
fn random_restarts_without_data_lose_no_acknowledged_write() {
    let schedule = Schedule {
        harsh: false,
        data_loss: true,
    };
    run_seeds(
        schedule,
        "SLOTKV_SIM_DATA_LOSS_SEEDS",
        DEFAULT_DATA_LOSS_SEEDS,
    );
}

#[test]
fn a_seed_replays_exactly() {
    for (seed, schedule) in [(3, NORMAL), (11, HARSH)] {
        let (first_result, first) = run_seed_traced(seed, schedule);
        let (second_result, second) = run_seed_traced(seed, schedule);
        assert_eq!(first_result.is_ok(), second_result.is_ok());
        assert!(first == second, "seed {seed} did not replay exactly");
    }
}
