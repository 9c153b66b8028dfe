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

use std::process::Command;
use std::time::{Duration, Instant};

use slotkv_cluster::spread_slots;
use slotkv_engine::key_slot;

use node_support::child::{self, Child, ChildSpec};

/// The port every node binds (on the wildcard address of its own namespace).
const PORT: u16 = 7000;
/// Masters, then one replica of the first master.
const MASTERS: usize = 3;
const NODES: usize = MASTERS + 1;
/// Keys written with replica durability before the kill.
const KEYS: usize = 200;
/// Longest wait for formation, or for the failover.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

/// The namespaces' subnet: the nodes are `10.77.0.1` ... on a bridge of their own.
fn host_of(index: usize) -> String {
    format!("10.77.0.{}", index + 1)
}

/// The child side (see `node_support::child`).
#[test]
fn child_node() {
    child::serve_if_child();
}

fn spawn(namespace: &str, index: usize) -> Child {
    let child = Child::spawn(&ChildSpec {
        namespace: Some(namespace.to_string()),
        bind: format!("0.0.0.0:{PORT}"),
        announce: Some(host_of(index)),
        data_dir: None,
    });
    assert_eq!(
        child.address,
        format!("{}:{PORT}", host_of(index)),
        "known by its announced address"
    );
    child
}

/// The namespaces, their veth pairs on one bridge, and the node processes; all removed on
/// drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Option<Child>>,
}

fn ip(arguments: &[&str]) {
    let status = Command::new("ip").args(arguments).status().expect("run ip");
    assert!(status.success(), "ip {} failed", arguments.join(" "));
}

impl Lab {
    fn new(nodes: usize) -> Lab {
        // Interface names are at most 15 bytes: "skv" + pid + suffix.
        let prefix = format!("skv{}", std::process::id() % 100_000);
        let mut lab = Lab {
            prefix: prefix.clone(),
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let bridge = format!("{prefix}br");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        for index in 0..nodes {
            let namespace = format!("{prefix}ns{index}");
            ip(&["netns", "add", &namespace]);
            lab.namespaces.push(namespace.clone());
            let (outer, inner) = (format!("{prefix}v{index}"), format!("{prefix}p{index}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            ip(&["link", "set", &inner, "netns", &namespace]);
            let inside = |arguments: &[&str]| {
                let mut all = vec!["netns", "exec", namespace.as_str(), "ip"];
                all.extend_from_slice(arguments);
                ip(&all);
            };
            inside(&["link", "set", "lo", "up"]);
            inside(&[
                "addr",
                "add",
                &format!("{}/24", host_of(index)),
                "dev",
                &inner,
            ]);
            inside(&["link", "set", &inner, "up"]);
        }
        lab
    }

    fn child(&mut self, index: usize) -> &mut Child {
        self.children[index].as_mut().expect("a live node")
    }

    /// Kills node `index`'s process (SIGKILL: no shutdown, as a crash).
    fn kill(&mut self, index: usize) {
        if let Some(child) = self.children[index].take() {
            child.kill();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.kill(index);
        }
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
        let bridge = format!("{}br", self.prefix);
        let _ = Command::new("ip").args(["link", "del", &bridge]).status();
    }
}

/// Whether the namespace test can run here: root and `ip`. Under CI their absence is a
/// failure; elsewhere the test skips, saying why.
fn lab_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|output| output.status.success());
    if root && ip {
        return true;
    }
    let reason = format!(
        "the network-namespace test needs root (root: {root}) and iproute2's ip (found: {ip})"
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{reason}; .ci/run installs iproute2 and runs as root"
    );
    println!("skipped: {reason}");
    false
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

fn form(lab: &mut Lab) {
    for index in 0..MASTERS {
        lab.child(index).must(&format!("epoch {}", index + 1));
    }
    for index in 1..NODES {
        let address = lab.child(index).address.clone();
        lab.child(0).must(&format!("meet {address}"));
    }
    for index in 0..NODES {
        let meshed = lab.child(index).until("status", PHASE_TIMEOUT, |status| {
            status.contains(&format!("known={NODES} "))
        });
        assert!(
            meshed,
            "node {index} never knew all {NODES} nodes across the namespaces"
        );
    }
    for (index, range) in spread_slots(MASTERS).into_iter().enumerate() {
        lab.child(index)
            .must(&format!("addslots {} {}", range.start, range.end));
    }
    let master = lab.child(0).id.clone();
    lab.child(MASTERS).must(&format!("replicate {master}"));
    for index in 0..NODES {
        let ok = lab
            .child(index)
            .until("status", PHASE_TIMEOUT, |status| status.contains("ok=true"));
        assert!(ok, "node {index} never reached state ok");
    }
}

#[test]
fn nodes_in_separate_network_namespaces_form_wait_and_fail_over() {
    if child::is_child() || !lab_available() {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::new(NODES);
    for index in 0..NODES {
        let child = spawn(&lab.namespaces[index].clone(), index);
        lab.children.push(Some(child));
    }
    form(&mut lab);
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
