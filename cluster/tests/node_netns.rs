//! Nodes on distinct addresses in separate network namespaces, each its own process bound to
//! the wildcard address and announcing its namespace's address (10.77.0.x on a private
//! bridge): formation, WAIT and failover after the master's process is killed.
//!
//! Each node is this test binary run again under `ip netns exec`, with the test
//! [`netns_child_node`] selected and `SLOTKV_NETNS_HOST` set: it starts a node and obeys one
//! command per line on stdin, answering one `@@`-prefixed line on stdout (see [`Child`]).
//! Needs root and iproute2: under CI (`CI` set) their absence fails the test; elsewhere it
//! skips with the reason printed. Namespaces, the bridge and the children are removed when
//! the test ends, failing or not ([`Lab`]'s `Drop`).

mod node_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child as Process, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::core::{AdminCommand, ClusterState};
use slotkv_cluster::{spread_slots, Durability, Node};
use slotkv_engine::key_slot;
use slotkv_transport::PeerAddr;

use node_support::{tcp, NODE_TIMEOUT_MS};

/// Set in a child's environment: the host it announces.
const CHILD_HOST_VARIABLE: &str = "SLOTKV_NETNS_HOST";
/// The port every node binds (on the wildcard address of its own namespace).
const PORT: u16 = 7000;
/// Masters, then one replica of the first master.
const MASTERS: usize = 3;
const NODES: usize = MASTERS + 1;
/// Keys written with replica durability before the kill.
const KEYS: usize = 200;
/// Longest wait for one answer of a child.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for formation, or for the failover.
const PHASE_TIMEOUT: Duration = Duration::from_secs(20);

/// The namespaces' subnet: the nodes are `10.77.0.1` ... on a bridge of their own.
fn host_of(index: usize) -> String {
    format!("10.77.0.{}", index + 1)
}

/// The child side: a node in this process's namespace, driven over stdin. Returns at once
/// when the process is not a child (an ordinary test run).
#[test]
fn netns_child_node() {
    let Ok(host) = std::env::var(CHILD_HOST_VARIABLE) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(serve_commands(host));
}

async fn serve_commands(host: String) {
    let node = Node::builder(tcp())
        .bind(format!("0.0.0.0:{PORT}"))
        .announce_host(host)
        .node_timeout_ms(NODE_TIMEOUT_MS)
        .request_timeout_ms(1_000)
        .start()
        .await
        .unwrap();
    println!("@@ready {} {}", node.id(), node.bus_address());
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match obey(&node, &line).await {
            Ok(answer) => format!("@@ok {answer}"),
            Err(error) => format!("@@err {error}"),
        };
        println!("{answer}");
        std::io::stdout().flush().unwrap();
    }
    node.shutdown().await;
}

/// Runs one command line on `node`; the answer's text.
async fn obey(node: &Node, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let fail = |error: &dyn std::fmt::Display| error.to_string();
    let durable = node.cluster().with_durability(Durability::Replicas {
        replicas: 1,
        timeout_ms: 5_000,
    });
    match words.as_slice() {
        ["epoch", epoch] => {
            let epoch = epoch.parse().map_err(|error| fail(&error))?;
            let _ = node.command(AdminCommand::SetConfigEpoch(epoch)).await;
            Ok(String::new())
        }
        ["meet", address] => {
            let address = PeerAddr::new(*address).map_err(|error| fail(&error))?;
            node.meet(&address).await.map_err(|error| fail(&error))?;
            Ok(String::new())
        }
        ["addslots", start, end] => {
            let (start, end) = (
                start.parse().map_err(|error| fail(&error))?,
                end.parse().map_err(|error| fail(&error))?,
            );
            let range = SlotRange::new(start, end).ok_or("bad range")?;
            node.add_slots(vec![range])
                .await
                .map_err(|error| fail(&error))?;
            Ok(String::new())
        }
        ["replicate", master] => {
            let master = NodeId::parse_hex(master).map_err(|error| fail(&error))?;
            node.replicate(master).await.map_err(|error| fail(&error))?;
            Ok(String::new())
        }
        ["status"] => node
            .inspect(|core| {
                let known = core.nodes().filter(|record| !record.in_handshake()).count();
                let ok = core.cluster_state() == ClusterState::Ok;
                let master = core.myself().is_master();
                let slots: usize = core
                    .slots_of(&core.myself_id())
                    .iter()
                    .map(|range| range.len())
                    .sum();
                format!("known={known} ok={ok} master={master} slots={slots}")
            })
            .await
            .map_err(|error| fail(&error)),
        ["set", key, value] => durable
            .set(key.as_bytes(), value.as_bytes())
            .await
            .map(|()| String::new())
            .map_err(|error| fail(&error)),
        ["wait", replicas] => {
            let replicas = replicas.parse().map_err(|error| fail(&error))?;
            durable
                .wait(replicas, Duration::from_secs(5))
                .await
                .map(|count| count.to_string())
                .map_err(|error| fail(&error))
        }
        ["get", key] => node
            .cluster()
            .get(key.as_bytes())
            .await
            .map(|value| {
                value.map_or("(nil)".to_string(), |value| {
                    String::from_utf8_lossy(&value).into_owned()
                })
            })
            .map_err(|error| fail(&error)),
        _ => Err(format!("unknown command {line:?}")),
    }
}

/// One node process in its namespace: commands go to its stdin, `@@` lines come back.
struct Child {
    process: Process,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
    id: String,
    address: String,
}

impl Child {
    fn spawn(namespace: &str, index: usize) -> Child {
        let exe = std::env::current_exe().unwrap();
        let mut process = Command::new("ip")
            .args(["netns", "exec", namespace])
            .arg(exe)
            .args([
                "netns_child_node",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_HOST_VARIABLE, host_of(index))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the test binary under ip netns exec");
        let stdin = process.stdin.take().unwrap();
        let stdout = process.stdout.take().unwrap();
        let (sender, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness prints the test's name before the first answer, on its line.
                if let Some(at) = line.find("@@") {
                    if sender.send(line[at + 2..].to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let ready = answers
            .recv_timeout(ANSWER_TIMEOUT)
            .unwrap_or_else(|_| panic!("node {index} did not start in namespace {namespace}"));
        let mut words = ready.split_whitespace().skip(1);
        let (id, address) = (
            words.next().unwrap().to_string(),
            words.next().unwrap().to_string(),
        );
        assert_eq!(
            address,
            format!("{}:{PORT}", host_of(index)),
            "known by its announced address"
        );
        Child {
            process,
            stdin,
            answers,
            id,
            address,
        }
    }

    /// Sends `command`; its answer, `Err` for an `@@err` answer.
    fn ask(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.stdin, "{command}").unwrap();
        let answer = self
            .answers
            .recv_timeout(ANSWER_TIMEOUT)
            .unwrap_or_else(|_| panic!("no answer to {command:?} from {}", self.address));
        match answer.strip_prefix("ok") {
            Some(rest) => Ok(rest.trim().to_string()),
            None => Err(answer.trim_start_matches("err").trim().to_string()),
        }
    }

    fn must(&mut self, command: &str) -> String {
        self.ask(command)
            .unwrap_or_else(|error| panic!("{command:?} on {}: {error}", self.address))
    }
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
        if let Some(mut child) = self.children[index].take() {
            let _ = child.process.kill();
            let _ = child.process.wait();
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

/// Polls `check` on `child` until it holds or `timeout` passes.
fn until(
    child: &mut Child,
    command: &str,
    timeout: Duration,
    check: impl Fn(&str) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if child.ask(command).is_ok_and(|answer| check(&answer)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
        let meshed = until(lab.child(index), "status", PHASE_TIMEOUT, |status| {
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
        let ok = until(lab.child(index), "status", PHASE_TIMEOUT, |status| {
            status.contains("ok=true")
        });
        assert!(ok, "node {index} never reached state ok");
    }
}

#[test]
fn nodes_in_separate_network_namespaces_form_wait_and_fail_over() {
    if std::env::var_os(CHILD_HOST_VARIABLE).is_some() || !lab_available() {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::new(NODES);
    for index in 0..NODES {
        let child = Child::spawn(&lab.namespaces[index].clone(), index);
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
    let promoted = until(replica, "status", PHASE_TIMEOUT, |status| {
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
    let served = until(reader, &format!("get {first}"), PHASE_TIMEOUT, |value| {
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
