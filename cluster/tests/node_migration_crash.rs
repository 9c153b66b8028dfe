//! Atomic migrations of 1,500 slots whose target crashes 0–80 ms in (before or after the
//! flip) and restarts from its nodes.conf without data 2 s later, round after round, under
//! writes with replica durability from a host node; after each round, once every replica
//! is streamed to again, every acknowledged write must read back.
//!
//! It reproduces the losses the 30-minute chaos run found, each fixed since:
//! - a target acknowledged imported batches once the replicas it *streamed to* held them,
//!   so a listed replica not streamed to yet left it the only copy (it now waits for as many
//!   replicas as the cluster lists healthy for it: `slot_migration/target.rs`);
//! - a target that flipped and crashed before its replica heard of the claim kept the
//!   slots: the promoted replica claimed only those it knew, and the restarted target, with
//!   no replica left, served them empty though the promoted replica held their data (it now
//!   asks its promoted former replicas to adopt them: `core/handover.rs`).
//!
//! Still ignored in ordinary runs for one open failure (about one run in eight): the
//! target crashes right after its flip, its replica wins the election with an epoch no
//! higher than the flip's, and when the target restarts from nodes.conf its claim takes
//! the slots back; the replica follows it again, and the restarted target, withholding its
//! slots, refuses the PSYNC that would resync it: the round never repairs.
//!
//! On a failure it prints every node's events and where each lost key's copies are.
//! `SLOTKV_CRASH_ROUNDS=N` (default 6) runs longer: `SLOTKV_CRASH_ROUNDS=16 cargo test
//! --release -p slotkv-cluster --test node_migration_crash -- --ignored --nocapture`.

mod node_support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::core::ClusterState;
use slotkv_cluster::{Node, SlotMigrationOptions};

use node_support::history::Clients;
use node_support::{builder, eventually, form, tcp, temp_dir};

/// Every node's events, in order, with the time and the node's index (printed on failure).
type EventLog = Arc<Mutex<Vec<String>>>;

async fn start(dir: &std::path::Path, bind: &str, seed: u64, index: usize, log: &EventLog) -> Node {
    let node = builder(tcp(), seed)
        .bind(bind.to_string())
        .data_dir(dir)
        .start()
        .await
        .unwrap();
    let mut events = node.subscribe_events();
    let log = Arc::clone(log);
    let started = *EPOCH;
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            let line = format!(
                "{:>8.3}s node {index}: {event:?}",
                started.elapsed().as_secs_f64()
            );
            let line: String = line.chars().take(300).collect();
            log.lock().unwrap().push(line);
        }
    });
    node
}

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn print_events(log: &EventLog) {
    for line in log.lock().unwrap().iter() {
        println!("{line}");
    }
}

async fn masters(nodes: &[Option<Node>]) -> Vec<(usize, Vec<SlotRange>)> {
    let mut out = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let (master, slots) = node
            .inspect(|core| (core.myself().is_master(), core.slots_of(&core.myself_id())))
            .await
            .unwrap();
        if master && !slots.is_empty() {
            out.push((index, slots));
        }
    }
    out
}

async fn repaired(nodes: &[Option<Node>]) -> bool {
    for node in nodes.iter().flatten() {
        let ok = node
            .cluster_state()
            .await
            .is_ok_and(|state| state == ClusterState::Ok);
        if !ok || node.replication_info().sync_in_progress {
            return false;
        }
    }
    // Every replica streamed to by its master: one still waiting for its first sync holds
    // none of its master's data, and a crash of that master then loses every copy (a
    // double fault, outside the guarantee).
    for master in nodes.iter().flatten() {
        let replicas = nodes
            .iter()
            .flatten()
            .filter(|node| node.master().is_some_and(|(id, _)| id == master.id()))
            .count();
        if master.replication_info().replicas.len() < replicas {
            return false;
        }
    }
    masters(nodes).await.len() == 3
}

/// Prints each node's role, replication and streams.
async fn dump(nodes: &[Option<Node>]) {
    for (index, node) in nodes.iter().enumerate() {
        let Some(node) = node else { continue };
        let info = node.replication_info();
        let master = node.master().map(|(id, _)| id.to_string()[..8].to_string());
        let state = node.cluster_state().await;
        println!(
            "  node {index} {} at {}: master {master:?} state {state:?} offset {} replid {:x} \
             syncing {} streams {} replicas {:?}",
            &node.id().to_string()[..8],
            node.bus_address(),
            info.offset,
            info.replid,
            info.sync_in_progress,
            info.master_streams,
            info.replicas
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "one open liveness failure: see the module docs"]
async fn migrations_whose_target_crashes_lose_no_acknowledged_write() {
    let rounds: u64 = std::env::var("SLOTKV_CRASH_ROUNDS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(6);
    let dirs: Vec<_> = (0..6)
        .map(|index| temp_dir(&format!("migration-crash-{index}")))
        .collect();
    let log = EventLog::default();
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        nodes.push(Some(
            start(dir, "127.0.0.1:0", index as u64 + 1, index, &log).await,
        ));
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|node| node.as_ref().unwrap().bus_address().to_string())
        .collect();
    let all: Vec<Node> = nodes.iter_mut().map(|node| node.take().unwrap()).collect();
    form(&all).await;
    for (index, node) in all.into_iter().enumerate() {
        nodes[index] = Some(node);
    }
    let host = builder(tcp(), 99).start().await.unwrap();
    host.meet(nodes[0].as_ref().unwrap().bus_address())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            host.cluster_state()
                .await
                .is_ok_and(|state| state == ClusterState::Ok)
        })
        .await
    );
    let clients = Clients::default();
    let mut tasks: Vec<_> = (0..3)
        .map(|writer| tokio::spawn(clients.clone().write(host.cluster(), writer)))
        .collect();
    tasks.push(tokio::spawn(clients.clone().read(host.cluster(), 3)));
    for round in 0..rounds {
        let masters = masters(&nodes).await;
        let (source, source_slots) = masters[round as usize % masters.len()].clone();
        let (target, _) = masters[(round as usize + 1) % masters.len()].clone();
        let slots: Vec<u16> = slotkv_cluster::core::slots::slots_of_ranges(&source_slots).collect();
        let take = (slots.len() - 1).min(1500);
        let ranges = slotkv_cluster::core::slots::ranges_from_sorted_slots(slots[..take].to_vec());
        let target_id = nodes[target].as_ref().unwrap().id();
        let started = nodes[source]
            .as_ref()
            .unwrap()
            .start_slot_migrations(&[(ranges, target_id)], SlotMigrationOptions::default());
        let delay = (round * 5) % 80;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        println!(
            "round {round}: {source} -> {target} ({take} slots) {started:?}; \
             crash {target} after {delay} ms"
        );
        dump(&nodes).await;
        let note = |what: String| {
            let line = format!("{:>8.3}s {what}", EPOCH.elapsed().as_secs_f64());
            log.lock().unwrap().push(line);
        };
        note(format!(
            "round {round}: {source} -> {target}, crash {target}"
        ));
        drop(nodes[target].take());
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        nodes[target] =
            Some(start(&dirs[target], &addresses[target], 50 + round, target, &log).await);
        note(format!("round {round}: {target} restarted"));
        let deadline = Instant::now() + Duration::from_secs(40);
        while !repaired(&nodes).await {
            if Instant::now() > deadline {
                dump(&nodes).await;
                print_events(&log);
                panic!("round {round}: not repaired");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let lost = clients.lost(&host.cluster()).await;
        println!("round {round}: {} lost", lost.len());
        if !lost.is_empty() {
            print_events(&log);
            dump(&nodes).await;
            for (index, node) in nodes.iter().enumerate() {
                if let Some(node) = node {
                    println!("node {index} migrations: {:?}", node.slot_migrations());
                }
            }
            // Where each lost key's copies are: every node's engine, owner or not.
            for (key, acknowledged, _) in lost.iter().take(10) {
                let copies: Vec<String> = nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(index, node)| {
                        let node = node.as_ref()?;
                        let value = node.store().get(key.as_bytes())?;
                        Some(format!("node {index}: {}", String::from_utf8_lossy(&value)))
                    })
                    .collect();
                println!("{key} (acknowledged {acknowledged}): {copies:?}");
            }
        }
        assert!(
            lost.is_empty(),
            "round {round}: lost {:?}",
            &lost[..lost.len().min(10)]
        );
    }
    clients.stop.store(true, Ordering::Release);
    for task in tasks {
        task.await.unwrap();
    }
}
