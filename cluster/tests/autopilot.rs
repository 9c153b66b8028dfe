//! The autopilot in the simulator: 3 to 12 nodes, each given only the seed list, form a
//! cluster on a lossy, delaying network with no operator, while a random node may be
//! paused through the formation (it arrives late; when it is the seed, nobody meets anyone
//! until it is back). At the end: every node agrees, state ok, every slot covered, each
//! master's share within one slot of the fair share, replicas spread evenly, and every
//! node has a role (a late node replicates a master lacking one).
//!
//! `SLOTKV_SIM_SEEDS=N` runs N seeds (default 200); `SLOTKV_SIM_SEED=S` replays one. A
//! failure prints its seed and the last events.

use std::collections::BTreeMap;

use slotkv_cluster::core::formation::FormationConfig;
use slotkv_cluster::core::rng::Rng;
use slotkv_cluster::core::slots::SLOT_COUNT;
use slotkv_cluster::sim::{NetworkConfig, SimConfig, SimError, Simulator, SIM_BUS_PORT};

const DEFAULT_SEEDS: u64 = 200;
const NODE_TIMEOUT_MS: u64 = 1000;
const SETTLE_MS: u64 = 2000;
/// Longest wait for the formed cluster to agree, in virtual ms.
const FORMED_WITHIN_MS: u64 = 60_000;

struct Run {
    nodes: usize,
    replicas: usize,
    min_masters: usize,
    paused: Option<(usize, u64)>,
}

fn draw(seed: u64) -> Run {
    let mut rng = Rng::new(seed ^ 0xA070);
    let nodes = 3 + rng.below(10) as usize;
    let replicas = rng.below(3) as usize;
    let min_masters = (1 + rng.below(3) as usize).min(nodes);
    let paused =
        (rng.below(3) == 0).then(|| (rng.below(nodes as u64) as usize, 500 + rng.below(4000)));
    Run {
        nodes,
        replicas,
        min_masters,
        paused,
    }
}

fn run_seed(seed: u64) -> Result<(), SimError> {
    let run = draw(seed);
    let mut rng = Rng::new(seed);
    let mut config = SimConfig::new(run.nodes, seed, NODE_TIMEOUT_MS);
    config.network = NetworkConfig {
        delay_ms_min: 1,
        delay_ms_max: 5 + rng.below(40),
        drop_per_million: rng.below(50_000),
        duplicate_per_million: rng.below(20_000),
    };
    config.formation = Some(FormationConfig {
        seeds: vec![("n0".to_string(), SIM_BUS_PORT)],
        min_masters: run.min_masters,
        replicas_per_master: run.replicas,
        settle_ms: SETTLE_MS,
        dry_run: false,
    });
    let mut sim = Simulator::new(config);
    sim.note(format!(
        "{} nodes, {} replicas per master, min {} masters, paused {:?}",
        run.nodes, run.replicas, run.min_masters, run.paused
    ));
    if let Some((index, pause_ms)) = run.paused {
        sim.pause(index, pause_ms);
    }
    let formed = sim.run_until(FORMED_WITHIN_MS, |sim| {
        sim.all_ok_and_agreed() && every_node_has_a_role(sim, run.replicas)
    })?;
    if !formed {
        return Err(sim.error(format!(
            "not formed within {FORMED_WITHIN_MS} ms: {}",
            shape(&sim)
        )));
    }
    check_shape(&sim, &run)
}

/// Every node is a master with slots or a replica, except masters left over once every
/// master has its replicas.
fn every_node_has_a_role(sim: &Simulator, replicas: usize) -> bool {
    let Some(core) = sim.core(0) else {
        return false;
    };
    let masters: Vec<_> = core
        .nodes()
        .filter(|node| node.is_master() && core.slots_of(&node.id).iter().any(|r| !r.is_empty()))
        .map(|node| node.id)
        .collect();
    let lacking = masters
        .iter()
        .any(|master| core.replicas_of(master).count() < replicas);
    core.nodes()
        .all(|node| node.is_replica() || masters.contains(&node.id) || !lacking)
        && core.nodes().count() == sim.node_count()
}

fn shape(sim: &Simulator) -> String {
    let Some(core) = sim.core(0) else {
        return "node 0 down".to_string();
    };
    let views: Vec<String> = (0..sim.node_count())
        .map(|index| match sim.core(index) {
            Some(core) => format!(
                "n{index} knows {} ({} in handshake), {:?}",
                core.nodes().count(),
                core.nodes().filter(|node| node.in_handshake()).count(),
                core.cluster_state()
            ),
            None => format!("n{index} down"),
        })
        .collect();
    format!("views [{}]; node 0 sees: ", views.join("; "))
        + &core
            .nodes()
            .map(|node| {
                let slots: usize = core
                    .slots_of(&node.id)
                    .iter()
                    .map(|range| range.len())
                    .sum();
                let index = sim.index_of_id(&node.id).unwrap_or(usize::MAX);
                match node.master_id.filter(|_| node.is_replica()) {
                    Some(master) => format!("n{index} replica of n{:?}", sim.index_of_id(&master)),
                    None => format!("n{index} master of {slots} slots"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
}

fn check_shape(sim: &Simulator, run: &Run) -> Result<(), SimError> {
    let core = sim
        .core(0)
        .ok_or_else(|| sim.error("node 0 down".to_string()))?;
    let mut shares: BTreeMap<_, usize> = BTreeMap::new();
    for node in core.nodes() {
        let slots: usize = core
            .slots_of(&node.id)
            .iter()
            .map(|range| range.len())
            .sum();
        if slots > 0 {
            shares.insert(node.id, slots);
        }
    }
    let masters = shares.len();
    let fair = SLOT_COUNT / masters.max(1);
    if shares.values().any(|share| share.abs_diff(fair) > 1) {
        return Err(sim.error(format!("uneven shares {shares:?}: {}", shape(sim))));
    }
    let counts: Vec<usize> = shares
        .keys()
        .map(|master| core.replicas_of(master).count())
        .collect();
    let (least, most) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    let expected_least = run.replicas.min((run.nodes - masters) / masters.max(1));
    if least < expected_least || most > run.replicas.max(1) {
        return Err(sim.error(format!(
            "replicas per master {counts:?}, wanted {} each: {}",
            run.replicas,
            shape(sim)
        )));
    }
    if masters < run.min_masters.min(run.nodes) && run.paused.is_none() {
        return Err(sim.error(format!(
            "{masters} masters, at least {} wanted: {}",
            run.min_masters,
            shape(sim)
        )));
    }
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn nodes_given_only_seeds_form_a_balanced_cluster_under_loss_and_late_arrivals() {
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
        "{} of {} seeds failed: {failures:?} (replay one with SLOTKV_SIM_SEED=<seed> cargo test \
         --release -p slotkv-cluster --test autopilot)",
        failures.len(),
        seeds.len()
    );
}
