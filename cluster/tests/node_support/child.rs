//! Node processes for the multi-process tests: the test binary is run again with
//! [`CHILD_BIND`] set and only its `child_node` test selected; that test calls
//! [`serve_if_child`], which starts one node and obeys one command per line on stdin,
//! answering one `@@`-prefixed line on stdout ([`Child::ask`]). Killing the process is a
//! real crash (SIGKILL): no shutdown, no hand-over, no nodes.conf save beyond what was
//! already written.
//!
//! Every test binary that uses [`Child`] defines the entry point:
//!
//! ```ignore
//! #[test]
//! fn child_node() {
//!     node_support::child::serve_if_child();
//! }
//! ```

use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Child as Process, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::slots::{ranges_from_sorted_slots, slots_of_ranges, SlotRange};
use slotkv_cluster::core::{AdminCommand, ClusterState};
use slotkv_cluster::{Durability, Node, Persistence, SlotMigrationOptions};
use slotkv_transport::PeerAddr;

use super::{builder, eventually, tcp, NODE_TIMEOUT_MS};

/// Set in a child's environment: the address its node binds.
pub(crate) const CHILD_BIND: &str = "SLOTKV_CHILD_BIND";
/// Optional: the host it announces (a wildcard bind needs one).
pub(crate) const CHILD_ANNOUNCE: &str = "SLOTKV_CHILD_ANNOUNCE";
/// Optional: its data directory (nodes.conf), kept across restarts of the process.
pub(crate) const CHILD_DIR: &str = "SLOTKV_CHILD_DIR";
/// Optional, with [`CHILD_DIR`]: keys persist in a snapshot across graceful restarts
/// (`Persistence::Snapshot`).
pub(crate) const CHILD_PERSIST: &str = "SLOTKV_CHILD_PERSIST";
/// The log a child with a data directory appends to there (this process is the test
/// binary, not the library: it may install a subscriber).
pub(crate) const CHILD_LOG_FILE: &str = "node.log";
/// The name of the test every such binary defines as the child's entry point.
const CHILD_TEST: &str = "child_node";
/// Longest wait for one answer of a child.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether this process is a child node (the parent's tests return at once in it).
pub(crate) fn is_child() -> bool {
    std::env::var_os(CHILD_BIND).is_some()
}

/// The child side: starts the node and serves commands until stdin closes. Returns at once
/// when the process is not a child (an ordinary test run).
pub(crate) fn serve_if_child() {
    let Ok(bind) = std::env::var(CHILD_BIND) else {
        return;
    };
    if let Ok(directory) = std::env::var(CHILD_DIR) {
        log_to(&PathBuf::from(directory).join(CHILD_LOG_FILE));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(serve_commands(bind));
}

/// Sends this process's `info` and louder events to `path` (appended); nothing if it cannot
/// be opened.
fn log_to(path: &std::path::Path) {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}

/// The last `lines` lines of the log of the child whose data directory is `directory`.
pub(crate) fn log_tail(directory: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(directory.join(CHILD_LOG_FILE)).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn serve_commands(bind: String) {
    let mut builder = Node::builder(tcp())
        .bind(bind)
        .node_timeout_ms(NODE_TIMEOUT_MS)
        .request_timeout_ms(1_000);
    if let Ok(host) = std::env::var(CHILD_ANNOUNCE) {
        builder = builder.announce_host(host);
    }
    if let Ok(directory) = std::env::var(CHILD_DIR) {
        builder = builder.data_dir(directory);
        if std::env::var_os(CHILD_PERSIST).is_some() {
            builder = builder.persistence(Persistence::Snapshot);
        }
    }
    let node = builder.start().await.unwrap();
    println!("@@ready {} {}", node.id(), node.bus_address());
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line == "shutdown" {
            // A graceful stop: the hand-over and (with persistence) the snapshot; the
            // process exits once the node is down.
            break;
        }
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
        ["status"] => {
            let replication = node.replication_info();
            let (syncing, replid, offset, streams) = (
                replication.sync_in_progress,
                replication.replid,
                replication.offset,
                replication.replicas.len(),
            );
            node.inspect(move |core| {
                let known = core.nodes().filter(|record| !record.in_handshake()).count();
                let ok = core.cluster_state() == ClusterState::Ok;
                let master = core.myself().is_master();
                let slots: usize = core
                    .slots_of(&core.myself_id())
                    .iter()
                    .map(|range| range.len())
                    .sum();
                let following = core
                    .my_master()
                    .map_or_else(|| "-".to_string(), |id| id.to_string());
                format!(
                    "known={known} ok={ok} master={master} slots={slots} \
                     following={following} syncing={syncing} replid={replid:x} offset={offset} \
                     streams={streams}"
                )
            })
            .await
            .map_err(|error| fail(&error))
        }
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
        ["migrate", skip, count, target, how] => {
            let (skip, count): (usize, usize) = (
                skip.parse().map_err(|error| fail(&error))?,
                count.parse().map_err(|error| fail(&error))?,
            );
            let target = NodeId::parse_hex(target).map_err(|error| fail(&error))?;
            let ranges = node
                .inspect(move |core| pick_slots(&core.slots_of(&core.myself_id()), skip, count))
                .await
                .map_err(|error| fail(&error))?;
            if ranges.is_empty() {
                return Err("no slots to move".to_string());
            }
            let slots: usize = ranges.iter().map(|range| range.len()).sum();
            if *how == "background" {
                node.start_slot_migrations(&[(ranges, target)], SlotMigrationOptions::default())
                    .map(|names| format!("{slots} slots, job {}", names.join(",")))
                    .map_err(|error| fail(&error))
            } else {
                node.migrate_slots(&ranges, target, SlotMigrationOptions::default(), |_| {
                    ControlFlow::Continue(())
                })
                .await
                .map(|report| format!("{slots} slots, {} keys", report.keys_sent))
                .map_err(|error| fail(&error))
            }
        }
        _ => Err(format!("unknown command {line:?}")),
    }
}

/// `count` of the slots of `owned` (in order), starting after the first `skip` of them
/// (modulo their number), as ranges; wraps around to the start; never all of them.
fn pick_slots(owned: &[SlotRange], skip: usize, count: usize) -> Vec<SlotRange> {
    let slots: Vec<u16> = slots_of_ranges(owned).collect();
    // A master keeps at least one slot: one that gives away its last becomes a replica of
    // the taker (as in Redis), which these tests do not want from a random move.
    if slots.len() < 2 {
        return Vec::new();
    }
    let mut picked: Vec<u16> = slots
        .iter()
        .cycle()
        .skip(skip % slots.len())
        .take(count.min(slots.len() - 1))
        .copied()
        .collect();
    picked.sort_unstable();
    ranges_from_sorted_slots(picked)
}

/// How to start one child node.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildSpec {
    /// Run under `ip netns exec <namespace>`.
    pub(crate) namespace: Option<String>,
    /// The address its node binds.
    pub(crate) bind: String,
    /// The host it announces.
    pub(crate) announce: Option<String>,
    /// Its data directory.
    pub(crate) data_dir: Option<PathBuf>,
    /// Keys persist in a snapshot across graceful restarts (needs `data_dir`).
    pub(crate) persist: bool,
}

/// One node process: commands go to its stdin, `@@` lines come back.
pub(crate) struct Child {
    process: Process,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
    /// Its node id, as hex.
    pub(crate) id: String,
    /// Its announced bus address.
    pub(crate) address: String,
}

impl Child {
    /// Starts the child and waits for its node to be up.
    pub(crate) fn spawn(spec: &ChildSpec) -> Child {
        let exe = std::env::current_exe().unwrap();
        let mut command = match &spec.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        command
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_BIND, &spec.bind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(host) = &spec.announce {
            command.env(CHILD_ANNOUNCE, host);
        }
        if let Some(directory) = &spec.data_dir {
            command.env(CHILD_DIR, directory);
        }
        if spec.persist {
            command.env(CHILD_PERSIST, "1");
        }
        let mut process = command.spawn().expect("run the test binary as a node");
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
            .unwrap_or_else(|_| panic!("the node for {spec:?} did not start"));
        let mut words = ready.split_whitespace().skip(1);
        let (id, address) = (
            words.next().unwrap().to_string(),
            words.next().unwrap().to_string(),
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
    pub(crate) fn ask(&mut self, command: &str) -> Result<String, String> {
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

    /// [`Child::ask`], panicking on an error answer.
    pub(crate) fn must(&mut self, command: &str) -> String {
        self.ask(command)
            .unwrap_or_else(|error| panic!("{command:?} on {}: {error}", self.address))
    }

    /// Polls `command` until its answer passes `check` or `timeout` passes.
    pub(crate) fn until(
        &mut self,
        command: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.ask(command).is_ok_and(|answer| check(&answer)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops the node gracefully (hand-over, snapshot) and waits for the process to exit;
    /// SIGKILL if it has not within [`ANSWER_TIMEOUT`].
    pub(crate) fn shutdown(mut self) {
        let _ = writeln!(self.stdin, "shutdown");
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {ANSWER_TIMEOUT:?}", self.address);
    }

    /// SIGKILL, then reaps the process: a crash, nothing saved on the way out.
    pub(crate) fn kill(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Longest wait for formation, a failover or a rejoin of a set of child nodes.
pub(crate) const PHASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The value of field `name` in a `status` answer (`name=value` words).
pub(crate) fn status_field(status: &str, name: &str) -> String {
    status
        .split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
        .to_string()
}

/// Node `index` of `children`.
pub(crate) fn running(children: &mut [Option<Child>], index: usize) -> &mut Child {
    children[index].as_mut().expect("a running node")
}

/// Waits until node `index`'s status passes `wanted`; on a timeout prints every running
/// node's status and panics naming `what`.
pub(crate) fn await_status(
    children: &mut [Option<Child>],
    index: usize,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) {
    if running(children, index).until("status", PHASE_TIMEOUT, wanted) {
        return;
    }
    for (other, child) in children.iter_mut().enumerate() {
        if let Some(child) = child {
            let id = child.id.clone();
            eprintln!("node {other} ({id}): {:?}", child.ask("status"));
        }
    }
    panic!("node {index} never reached: {what}");
}

/// Forms a cluster of `children`: the first `masters` get epochs 1.. and the spread slots,
/// node `masters + i` replicates master `i`; returns once every node is in state ok.
pub(crate) fn form(children: &mut [Option<Child>], masters: usize) {
    let nodes = children.len();
    for index in 0..masters {
        running(children, index).must(&format!("epoch {}", index + 1));
    }
    for index in 1..nodes {
        let address = running(children, index).address.clone();
        running(children, 0).must(&format!("meet {address}"));
    }
    for index in 0..nodes {
        await_status(children, index, "a full mesh", |status| {
            status.contains(&format!("known={nodes} "))
        });
    }
    for (index, range) in slotkv_cluster::spread_slots(masters)
        .into_iter()
        .enumerate()
    {
        running(children, index).must(&format!("addslots {} {}", range.start, range.end));
    }
    for replica in masters..nodes {
        let master = running(children, replica - masters).id.clone();
        running(children, replica).must(&format!("replicate {master}"));
    }
    for index in 0..nodes {
        await_status(children, index, "state ok", |status| {
            status.contains("ok=true")
        });
    }
}

/// The test's own node (core seeded with `seed`) bound at `bind`, met into the cluster of
/// `children` through the first one, once it sees the cluster ok.
pub(crate) async fn join_host(bind: &str, seed: u64, children: &[Option<Child>]) -> Node {
    let host = builder(tcp(), seed).bind(bind).start().await.unwrap();
    let first = children[0].as_ref().expect("a live first node");
    let address = PeerAddr::new(first.address.clone()).unwrap();
    host.meet(&address).await.unwrap();
    let joined = eventually(PHASE_TIMEOUT, || async {
        host.cluster_state()
            .await
            .is_ok_and(|state| state == ClusterState::Ok)
    })
    .await;
    assert!(joined, "the host node never saw the cluster ok");
    host
}
