//! Chaos on a real network: six node processes (three masters, each with a replica), each in
//! its own network namespace on one bridge, bound to the wildcard address, with its own data
//! directory (nodes.conf survives a kill; keys do not); a host node in
//! the test's namespace (on the bridge address) writes with replica durability from three
//! tasks and reads from a fourth, keeping a history. Meanwhile, at random (seeded), one
//! fault at a time: SIGKILL a node and start it again (its keys are gone: it rejoins from
//! its replica or master), cut a node's link for a while (a partition of that node from all
//! others), partition a group of two or three nodes from the rest and the host node (a
//! minority, or half the masters' side), or shape a link (`tc`: netem delay/loss/reordering where the kernel has it,
//! else a token-bucket rate limit that delays and drops past its rate). After each fault
//! the cluster is given time to repair (every replica synced) before the next. At the end:
//! every acknowledged write reads back with its value or a later one of the same writer;
//! every read returned a value some writer wrote for that key (no phantoms); three masters
//! whose slots add up to the 16384 (no slot claimed twice or left out), the cluster ok on
//! every node, every replica on its master's history. A summary is printed
//! and any violation fails the run.
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
        let ok = statuses
            .iter()
            .all(|status| status_field(status, "ok") == "true");
        if ok && masters.len() == MASTERS && slots == 16384 && replicas_synced {
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
    cuts: u32,
    partitions: u32,
    shaped: u32,
    shaping_kind: &'static str,
}

/// One random fault, held for its time, then undone (a killed node restarted).
fn inject(lab: &mut Lab, specs: &[ChildSpec], rng: &mut Rng, faults: &mut Faults) {
    let index = rng.below(NODES as u64) as usize;
    let hold = Duration::from_millis(500 + rng.below(FAULT_MS_MAX));
    match rng.below(4) {
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
    let specs: Vec<ChildSpec> = (0..NODES)
        .map(|index| {
            let directory = root.join(format!("n{index}"));
            std::fs::create_dir_all(&directory).unwrap();
            ChildSpec {
                data_dir: Some(directory),
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
