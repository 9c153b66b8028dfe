//! Nodes on distinct addresses in separate network namespaces, each its own process bound to
//! the wildcard address and announcing its namespace's address (10.77.0.x on a private
//! bridge): formation, WAIT and failover after the master's process is killed.
//!
//! Each node is this test binary run again under `ip netns exec` as a child node
//! (`node_support::child`): it starts a node and obeys one command per line on stdin.
//! Needs root and iproute2: under CI (`CI` set) their absence fails the test; elsewhere it
//! skips with the reason printed. Namespaces, the bridge and the children are removed when
//! the test ends, failing or not ([`Lab`]'s `Drop`).

mod node_support;

use std::time::{Duration, Instant};

use slotkv_cluster::spread_slots;
use slotkv_engine::key_slot;

use node_support::child::{self, form, Child};
use node_support::netns::{host_of, lab_available, Lab, NODE_PORT};

/// Masters, then one replica of the first master.
const MASTERS: usize = 3;
const NODES: usize = MASTERS + 1;
/// Keys written with replica durability before the kill.
const KEYS: usize = 200;
/// Longest wait for formation, or for the failover.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

/// The child side (see `node_support::child`).
#[test]
fn child_node() {
    child::serve_if_child();
}

fn spawn(lab: &Lab, index: usize) -> Child {
    let child = Child::spawn(&lab.spec(index));
    assert_eq!(
        child.address,
        format!("{}:{NODE_PORT}", host_of(index)),
        "known by its announced address"
    );
    child
}

/// Keys of the first master's slots.
fn keys_of_first_master() -> Vec<String> {
    let range = spread_slots(MASTERS)[0];
    (0..)
        .map(|index| format!("netns:{index}"))
        .filter(|key| (range.start..=range.end).contains(&key_slot(key.as_bytes())))
        .take(KEYS)
        .collect()
}

#[test]
fn nodes_in_separate_network_namespaces_form_wait_and_fail_over() {
    if child::is_child() || !lab_available() {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::new(NODES, "f");
    for index in 0..NODES {
        let child = spawn(&lab, index);
        lab.children[index] = Some(child);
    }
    form(&mut lab.children, MASTERS);
    println!(
        "formed across {NODES} namespaces in {} ms",
        started.elapsed().as_millis()
    );

    let keys = keys_of_first_master();
    for key in &keys {
        lab.child(0).must(&format!("set {key} value-of-{key}"));
    }
    let acknowledged: u32 = lab.child(0).must("wait 1").parse().unwrap();
    assert_eq!(
        acknowledged, 1,
        "the replica in its own namespace acknowledged the writes"
    );

    let killed = Instant::now();
    lab.kill(0);
    let replica = lab.child(MASTERS);
    let promoted = replica.until("status", PHASE_TIMEOUT, |status| {
        status.contains("master=true") && !status.contains("slots=0")
    });
    assert!(
        promoted,
        "the replica never took over its killed master's slots"
    );
    println!(
        "the replica took over {} ms after the kill",
        killed.elapsed().as_millis()
    );
    // Read through another master: the request crosses namespaces to the new owner.
    let reader = lab.child(1);
    let first = &keys[0];
    let served = reader.until(&format!("get {first}"), PHASE_TIMEOUT, |value| {
        value == format!("value-of-{first}")
    });
    assert!(served, "another master never reached the new owner");
    for key in &keys {
        assert_eq!(
            reader.must(&format!("get {key}")),
            format!("value-of-{key}"),
            "{key} lost"
        );
    }
    println!(
        "namespace test done in {} ms",
        started.elapsed().as_millis()
    );
}
