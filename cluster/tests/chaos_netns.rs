//! Chaos on a real network: six node processes (three masters, each with a replica), each in
//! its own network namespace on one bridge, bound to the wildcard address, with its own data
//! directory (nodes.conf survives a kill; keys survive a graceful restart in a snapshot, not
//! a kill); a host node in the test's namespace (on the bridge address) writes with replica
//! durability from three tasks and reads from a fourth, keeping a history. Meanwhile, at
//! random (seeded), one fault at a time: SIGKILL a node and start it again (its keys are
//! gone: it rejoins from its replica or master); stop a node gracefully and start it again
//! (a deploy: the hand-over, then its snapshot); cut a node's link for a while (a partition
//! of that node from all others); partition a group of two or three nodes from the rest and
//! the host node (a minority, or half the masters' side); shape a link (`tc`: netem
//! delay/loss/reordering where the kernel has it, else a token-bucket rate limit that delays
//! and drops past its rate); or move a random part of one master's slots to another by
//! atomic migration, either waited for or in the background with its source or its target
//! SIGKILLed a moment later. After each fault the cluster is given time to repair (every
//! replica synced) before the next. At the end: every acknowledged write reads back with
//! its value or a later one of the same writer (moved keys included); every read returned a
//! value some writer wrote for that key (no phantoms); three masters whose slots add up to
//! the 16384 (no slot claimed twice or left out), the cluster ok on every node, every
//! replica on its master's history. A summary is printed and any violation fails the run.
//!
//! `SLOTKV_CHAOS_SECS` sets the fault phase (default 20 s), `SLOTKV_CHAOS_SEED` the seed.
//! Needs root and iproute2 (see `node_support::netns`).

mod node_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slotkv_cluster::core::rng::Rng;

use node_support::child::{self, form, status_field, Child, ChildSpec, PHASE_TIMEOUT};
use node_support::history::Clients;
use node_support::netns::{lab_available, Lab, BRIDGE_HOST};
use node_support::temp_dir;

const MASTERS: usize = 3;
const NODES: usize = 2 * MASTERS;
const WRITERS: usize = 3;
/// Fault phase when `SLOTKV_CHAOS_SECS` is unset.
const DEFAULT_FAULT_SECS: u64 = 20;
/// Longest a link stays cut or shaped, in ms.
const FAULT_MS_MAX: u64 = 3_000;

/// The child side (see `node_support::child`).
#[test]
fn child_node() {
    child::serve_if_child();
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Waits until every node is up, the cluster ok everywhere, three masters own every slot,
/// and each replica follows a master on its history (synced): the state in which one more
/// fault loses no acknowledged write.
fn await_repaired(lab: &mut Lab) {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let statuses: Vec<String> = (0..NODES)
            .map(|index| lab.child(index).ask("status").unwrap_or_default())
            .collect();
        let ids: Vec<String> = (0..NODES)
            .map(|index| lab.child(index).id.clone())
            .collect();
        let masters: Vec<usize> = (0..NODES)
            .filter(|index| status_field(&statuses[*index], "master") == "true")
            .collect();
        let slots: usize = masters
            .iter()
            .map(|index| {
                status_field(&statuses[*index], "slots")
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .sum();
        let replicas_synced = (0..NODES)
            .filter(|index| !masters.contains(index))
            .all(|index| {
                let following = status_field(&statuses[index], "following");
                let master = ids.iter().position(|id| *id == following);
                master.is_some_and(|master| {
                    status_field(&statuses[master], "replid")
                        == status_field(&statuses[index], "replid")
                        && status_field(&statuses[index], "syncing") == "false"
                })
            });
        // A replica following its master's history but not streamed to yet (its sync not
        // begun) holds nothing the master wrote since: the master is the only copy.
        let streamed = masters.iter().all(|master| {
            let following = (0..NODES)
                .filter(|index| status_field(&statuses[*index], "following") == ids[*master])
                .count();
            status_field(&statuses[*master], "streams")
                .parse::<usize>()
                .is_ok_and(|streams| streams >= following)
        });
        let ok = statuses
            .iter()
            .all(|status| status_field(status, "ok") == "true");
        if ok && masters.len() == MASTERS && slots == 16384 && replicas_synced && streamed {
            return;
        }
        if Instant::now() > deadline {
            for (index, status) in statuses.iter().enumerate() {
                eprintln!("node {index} ({}): {status}", ids[index]);
            }
            panic!("the cluster did not repair within {PHASE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The faults injected, by kind.
#[derive(Default, Debug)]
struct Faults {
    kills: u32,
    graceful_restarts: u32,
    cuts: u32,
    partitions: u32,
    shaped: u32,
    shaping_kind: &'static str,
    /// Atomic migrations that completed (waited for, or in the background and not killed).
    migrations: u32,
    /// Slots they moved.
    slots_moved: usize,
    /// Atomic migrations refused or failed with their slots left at the source.
    migrations_refused: u32,
    /// Background migrations whose source or target was SIGKILLed while they ran.
    migrations_killed: u32,
}

/// The index, id and slot count of every running master, from their status.
fn masters(lab: &mut Lab) -> Vec<(usize, String, usize)> {
    (0..NODES)
        .filter_map(|index| {
            let status = lab.child(index).ask("status").ok()?;
            let slots = status_field(&status, "slots").parse().ok()?;
            (status_field(&status, "master") == "true")
                .then(|| (index, lab.child(index).id.clone(), slots))
        })
        .collect()
}

/// One random fault, held for its time, then undone (a killed node restarted).
fn inject(lab: &mut Lab, specs: &[ChildSpec], rng: &mut Rng, faults: &mut Faults) {
    let index = rng.below(NODES as u64) as usize;
    let hold = Duration::from_millis(500 + rng.below(FAULT_MS_MAX));
    match rng.below(7) {
        4 => {
            println!("fault: graceful restart of node {index}");
            if let Some(child) = lab.children[index].take() {
                child.shutdown();
            }
            lab.children[index] = Some(Child::spawn(&specs[index]));
            faults.graceful_restarts += 1;
        }
        5 | 6 => migrate(lab, specs, rng, faults, hold),
        0 => {
            println!("fault: SIGKILL node {index}, restart after {hold:?}");
            lab.kill(index);
            std::thread::sleep(hold);
            lab.children[index] = Some(Child::spawn(&specs[index]));
            faults.kills += 1;
        }
        1 => {
            println!("fault: cut node {index}'s link for {hold:?}");
            lab.set_link(index, false);
            std::thread::sleep(hold);
            lab.set_link(index, true);
            faults.cuts += 1;
        }
        2 => {
            let size = 2 + rng.below(2) as usize;
            let mut group: Vec<usize> = Vec::with_capacity(size);
            while group.len() < size {
                let member = rng.below(NODES as u64) as usize;
                if !group.contains(&member) {
                    group.push(member);
                }
            }
            group.sort_unstable();
            println!("fault: partition nodes {group:?} from the rest for {hold:?}");
            lab.partition(&group);
            std::thread::sleep(hold);
            lab.heal(&group);
            faults.partitions += 1;
        }
        _ => {
            let delay = format!("{}ms", 1 + rng.below(40));
            let loss = format!("{}%", rng.below(5));
            let netem = [
                "netem", "delay", &delay, "10ms", "loss", &loss, "reorder", "10%",
            ];
            let shaped = if lab.shape(index, &netem) {
                faults.shaping_kind = "netem";
                true
            } else {
                // A kernel without sch_netem: a token bucket delays and drops past its rate.
                faults.shaping_kind = "tbf";
                lab.shape(
                    index,
                    &["tbf", "rate", "2mbit", "burst", "16kb", "latency", "50ms"],
                )
            };
            assert!(shaped, "tc could not shape node {index}'s link");
            println!(
                "fault: shape node {index}'s link ({}) for {hold:?}",
                faults.shaping_kind
            );
            std::thread::sleep(hold);
            lab.unshape(index);
            faults.shaped += 1;
        }
    }
}

/// An atomic migration of a random part of one master's slots to another; in the
/// background with a SIGKILL of its source or target a moment later (restarted after
/// `hold`), or waited for.
fn migrate(lab: &mut Lab, specs: &[ChildSpec], rng: &mut Rng, faults: &mut Faults, hold: Duration) {
    let masters = masters(lab);
    let sources: Vec<_> = masters.iter().filter(|master| master.2 > 0).collect();
    if masters.len() < 2 || sources.is_empty() {
        return;
    }
    let (source, source_id, _) = sources[rng.below(sources.len() as u64) as usize].clone();
    let targets: Vec<_> = masters
        .iter()
        .filter(|master| master.1 != source_id)
        .collect();
    let (target, target_id, _) = targets[rng.below(targets.len() as u64) as usize].clone();
    let (skip, count) = (rng.below(16384), 100 + rng.below(3000));
    let kill_after = rng
        .below(2)
        .eq(&0)
        .then(|| Duration::from_millis(rng.below(80)));
    let how = if kill_after.is_some() {
        "background"
    } else {
        "wait"
    };
    let command = format!("migrate {skip} {count} {target_id} {how}");
    let answer = lab.child(source).ask(&command);
    println!("fault: node {source} migrates {count} slots to node {target} ({how}): {answer:?}");
    let slots = |answer: &str| {
        answer
            .split_whitespace()
            .next()
            .and_then(|word| word.parse::<usize>().ok())
            .unwrap_or(0)
    };
    match (answer, kill_after) {
        (Err(_), _) => faults.migrations_refused += 1,
        (Ok(answer), None) => {
            faults.migrations += 1;
            faults.slots_moved += slots(&answer);
        }
        (Ok(_), Some(after)) => {
            std::thread::sleep(after);
            let victim = if rng.below(2) == 0 { source } else { target };
            println!(
                "fault: SIGKILL node {victim} {after:?} into the migration, restart after {hold:?}"
            );
            lab.kill(victim);
            std::thread::sleep(hold);
            lab.children[victim] = Some(Child::spawn(&specs[victim]));
            faults.migrations_killed += 1;
            faults.kills += 1;
        }
    }
}

#[test]
fn random_faults_on_a_real_network_lose_no_acknowledged_write() {
    if child::is_child() || !lab_available() {
        return;
    }
    let seed = env_u64("SLOTKV_CHAOS_SEED").unwrap_or(1);
    let fault_secs = env_u64("SLOTKV_CHAOS_SECS").unwrap_or(DEFAULT_FAULT_SECS);
    println!("chaos seed {seed} (replay with SLOTKV_CHAOS_SEED={seed}), {fault_secs} s of faults");
    let started = Instant::now();
    let mut lab = Lab::new(NODES, "c");
    let root = temp_dir("chaos");
    // Kept when the run fails: each node's log is `n<i>/node.log` there.
    println!(
        "node logs: {}/n<i>/{}",
        root.display(),
        child::CHILD_LOG_FILE
    );
    let specs: Vec<ChildSpec> = (0..NODES)
        .map(|index| {
            let directory = root.join(format!("n{index}"));
            std::fs::create_dir_all(&directory).unwrap();
            ChildSpec {
                data_dir: Some(directory),
                persist: true,
                ..lab.spec(index)
            }
        })
        .collect();
    for (index, spec) in specs.iter().enumerate() {
        lab.children[index] = Some(Child::spawn(spec));
    }
    form(&mut lab.children, MASTERS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = runtime.block_on(child::join_host(
        &format!("{BRIDGE_HOST}:0"),
        99,
        &lab.children,
    ));
    let clients = Clients::default();
    let mut tasks: Vec<_> = (0..WRITERS)
        .map(|writer| runtime.spawn(clients.clone().write(host.cluster(), writer)))
        .collect();
    tasks.push(runtime.spawn(clients.clone().read(host.cluster(), WRITERS)));

    let mut rng = Rng::new(seed);
    let mut faults = Faults::default();
    let fault_end = Instant::now() + Duration::from_secs(fault_secs);
    while Instant::now() < fault_end {
        inject(&mut lab, &specs, &mut rng, &mut faults);
        await_repaired(&mut lab);
    }
    std::thread::sleep(Duration::from_secs(1));
    clients.stop.store(true, Ordering::Release);
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    await_repaired(&mut lab);
    let lost = runtime.block_on(clients.lost(&host.cluster()));
    let history = clients.history.lock();
    println!(
        "chaos: {} acknowledged writes ({} keys), {} failed or not durable, {} reads, \
         faults {faults:?}, {} lost, {} phantom reads, in {} ms",
        history.acknowledged_writes,
        history.acknowledged.len(),
        history.failed_writes,
        history.reads,
        lost.len(),
        history.phantoms.len(),
        started.elapsed().as_millis()
    );
    if !lost.is_empty() {
        for index in 0..NODES {
            let directory = root.join(format!("n{index}"));
            eprintln!(
                "--- node {index}'s log, last lines:\n{}",
                child::log_tail(&directory, 60)
            );
        }
    }
    assert!(history.acknowledged_writes > 0, "no write was acknowledged");
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged writes lost: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(
        history.phantoms.is_empty(),
        "seed {seed}: reads of values never written: {:?}",
        &history.phantoms[..history.phantoms.len().min(10)]
    );
    drop(history);
    runtime.block_on(host.shutdown());
    drop(lab);
    let _ = std::fs::remove_dir_all(&root);
}
