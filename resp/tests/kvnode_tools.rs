//! The real Redis tools against `kvnode` processes. The first test: `redis-cli --cluster
//! create` forms 3 masters + 3 replicas, `--cluster check` passes, `redis-cli -c` follows
//! MOVED for SET and GET through every node, the `redis` crate's cluster client writes and
//! reads 1,000 keys, `redis-benchmark --cluster` runs, and garbage RESP, a huge multibulk
//! count and an endless inline line are refused with Redis's errors while the node keeps
//! serving. The operations test: `add-node` as master and as replica, `rebalance
//! --cluster-use-empty-masters`, a timed `reshard` (MIGRATE), an atomic move back with
//! `CLUSTER MIGRATESLOTS` followed by `GETSLOTMIGRATIONS`, emptying a master and `del-node`
//! of it, each followed by a clean `--cluster check` and every key read back.
//!
//! Needs `redis-cli` and `redis-benchmark` (Debian's `redis-tools`, installed by `.ci/run`):
//! under CI (`CI` set) their absence fails the test, elsewhere it skips and says why.
//! Every process it starts it stops, by its PID, also when an assertion fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis::Commands;

/// A kvnode process, killed (by PID) when dropped.
struct Kvnode {
    child: Child,
    port: u16,
}

impl Drop for Kvnode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools_present() -> bool {
    let present = ["redis-cli", "redis-benchmark"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-cli / redis-benchmark missing under CI: .ci/run installs redis-tools"
        );
        eprintln!(
            "skipped: redis-cli or redis-benchmark is not installed (apt-get install redis-tools)"
        );
    }
    present
}

/// `count` ports whose bus ports (port + 10000) are free too.
fn free_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut held = Vec::new();
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port > 55_000 || ports.contains(&port) {
            held.push(listener);
            continue;
        }
        if let Ok(bus) = TcpListener::bind(("127.0.0.1", port + 10_000)) {
            ports.push(port);
            drop(bus);
        }
        held.push(listener);
    }
    ports
}

/// The arguments of a test's kvnode on `port` with its files in `dir`.
fn default_arguments(dir: &Path, port: u16) -> Vec<String> {
    vec![
        "--port".into(),
        port.to_string(),
        "--cluster-node-timeout".into(),
        "2000".into(),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

/// Starts a kvnode with `arguments`; its output goes to `kvnode-<port>.log` in `dir`.
fn start(dir: &Path, port: u16, arguments: &[String]) -> Kvnode {
    let log = std::fs::File::create(dir.join(format!("kvnode-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args(arguments)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Kvnode { child, port }
}

fn cli(args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `bytes` on a new connection and returns what the node answers until it closes.
fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The node may close before reading all of a large input; that is part of the test.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A scratch directory for one test's nodes, removed when dropped: on tmpfs (`/dev/shm`)
/// where there is one, since every CLUSTER SETSLOT waits for an fsync of nodes.conf and a
/// reshard is many of them (see the README's reshard speed).
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = root.join(format!("kvnode-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Attempts at starting one kvnode before the test fails.
const START_ATTEMPTS: usize = 5;

/// Starts `count` kvnodes on free ports, one after the other, each answering PING before
/// the next starts. A node whose process exits first (its port or its bus port taken
/// between the pick and its bind, by another test's node or connection) starts again on
/// other ports, at most [`START_ATTEMPTS`] times; its log is printed.
fn start_all(dir: &Path, count: usize) -> Vec<Kvnode> {
    start_all_with(dir, count, |port| default_arguments(dir, port))
}

/// [`start_all`] with each node's arguments made by `arguments` from its port.
fn start_all_with(dir: &Path, count: usize, arguments: impl Fn(u16) -> Vec<String>) -> Vec<Kvnode> {
    let mut nodes = Vec::new();
    for _ in 0..count {
        for attempt in 1..=START_ATTEMPTS {
            let port = free_ports(1)[0];
            let mut node = start(dir, port, &arguments(port));
            let port_text = port.to_string();
            let deadline = Instant::now() + Duration::from_secs(10);
            let answered = loop {
                if text(&cli(&["-p", &port_text, "ping"])).contains("PONG") {
                    break true;
                }
                let exited = node.child.try_wait().ok().flatten().is_some();
                if exited || Instant::now() >= deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            if answered {
                nodes.push(node);
                break;
            }
            let log =
                std::fs::read_to_string(dir.join(format!("kvnode-{port}.log"))).unwrap_or_default();
            assert!(
                attempt < START_ATTEMPTS,
                "kvnode on port {port} never answered PING; its log:\n{log}"
            );
            eprintln!("kvnode on port {port} did not start, trying other ports; its log:\n{log}");
        }
    }
    nodes
}

/// Whether `redis-cli --cluster check` through `address` is clean: every slot covered, the
/// nodes agree, no open slot nor any other warning or error.
fn check_is_clean(address: &str) -> Result<(), String> {
    let check = cli(&["--cluster", "check", address]);
    let output = text(&check);
    let clean = check.status.success()
        && output.contains("[OK] All nodes agree about slots configuration.")
        && output.contains("[OK] All 16384 slots covered.")
        && !output.contains("[WARNING]")
        && !output.contains("[ERR]");
    if clean {
        Ok(())
    } else {
        Err(output)
    }
}

/// Waits until [`check_is_clean`] holds, then until every node's `cluster_state` is ok.
fn wait_clean(address: &str, ports: &[String], after: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check_is_clean(address) {
            Ok(()) => break,
            Err(output) if Instant::now() >= deadline => {
                panic!("--cluster check after {after} is not clean:\n{output}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    for port in ports {
        wait_until(
            "every node's cluster_state is ok",
            Duration::from_secs(30),
            || text(&cli(&["-p", port, "cluster", "info"])).contains("cluster_state:ok"),
        );
    }
}

/// `redis-cli --cluster create` (through `run`, which adds any TLS flags) of the nodes on
/// `ports` with `replicas` replicas per master, asserting it covered every slot; the
/// nodes' `127.0.0.1:port` addresses.
fn cluster_create(
    run: impl Fn(&[&str]) -> Output,
    ports: &[String],
    replicas: &str,
) -> Vec<String> {
    let addresses: Vec<String> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", replicas, "--cluster-yes"]);
    let created = run(&create);
    let created_text = text(&created);
    assert!(created.status.success(), "create failed:\n{created_text}");
    assert!(
        created_text.contains("[OK] All 16384 slots covered."),
        "{created_text}"
    );
    addresses
}

/// `redis-cli --cluster create` of 3 masters and 3 replicas over six new kvnodes, waited
/// until `check` is clean and every node's state is ok; the nodes, their ports and
/// `127.0.0.1:port` addresses.
fn form_cluster(dir: &Path) -> (Vec<Kvnode>, Vec<String>, Vec<String>) {
    let nodes = start_all(dir, 6);
    let ports: Vec<String> = nodes.iter().map(|node| node.port.to_string()).collect();
    let addresses = cluster_create(cli, &ports, "1");
    wait_clean(&addresses[0], &ports, "create");
    (nodes, ports, addresses)
}

#[test]
fn redis_tools_form_check_and_use_a_kvnode_cluster() {
    if !tools_present() {
        return;
    }
    let scratch = Scratch::new("tools");
    let (nodes, ports, _) = form_cluster(&scratch.0);

    for (index, port) in ports.iter().enumerate() {
        let key = format!("cli:{index}");
        let set = cli(&["-c", "-p", port, "set", &key, &format!("value-{index}")]);
        assert_eq!(text(&set).trim(), "OK", "SET through {port}");
        for reader in &ports {
            let got = cli(&["-c", "-p", reader, "get", &key]);
            assert_eq!(
                text(&got).trim(),
                format!("value-{index}"),
                "GET through {reader}"
            );
        }
    }

    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}/"))
        .collect();
    let client = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut connection = client.get_connection().unwrap();
    for index in 0..1_000 {
        let _: () = connection
            .set(format!("crate:{index}"), format!("v{index}"))
            .unwrap();
    }
    for index in 0..1_000 {
        let value: String = connection.get(format!("crate:{index}")).unwrap();
        assert_eq!(value, format!("v{index}"));
    }
    let total: i64 = ports
        .iter()
        .take(3)
        .map(|port| {
            text(&cli(&["-p", port, "dbsize"]))
                .trim()
                .parse::<i64>()
                .unwrap_or(0)
        })
        .sum();
    assert!(total >= 1_006, "masters hold {total} keys");

    let benchmark = Command::new("redis-benchmark")
        .args([
            "--cluster",
            "-p",
            &ports[0],
            "-t",
            "set,get",
            "-n",
            "20000",
            "-q",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let benchmark_text = text(&benchmark);
    assert!(benchmark.status.success(), "{benchmark_text}");
    assert!(benchmark_text.contains("GET:"), "{benchmark_text}");

    let port = nodes[0].port;
    assert_eq!(
        raw_exchange(port, b"*99999999\r\n"),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert_eq!(
        raw_exchange(port, b"*1\r\n+PING\r\n"),
        "-ERR Protocol error: expected '$', got '+'\r\n"
    );
    assert_eq!(
        raw_exchange(port, &vec![b'a'; 70 << 10]),
        "-ERR Protocol error: too big inline request\r\n"
    );
    assert_eq!(
        raw_exchange(port, b"*1\r\n$999999999999\r\n"),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    let after = cli(&["-p", &ports[0], "ping"]);
    assert_eq!(
        text(&after).trim(),
        "PONG",
        "the node serves on after garbage"
    );
    let value: String = connection.get("crate:7").unwrap();
    assert_eq!(value, "v7");

    drop(connection);
    drop(nodes);
}

/// One line of CLUSTER NODES: id, client port, master or not, its master, slots held.
#[derive(Debug, Clone)]
struct NodeLine {
    id: String,
    port: u16,
    master: bool,
    master_id: Option<String>,
    slots: usize,
}

/// CLUSTER NODES as node `port` sees it.
fn cluster_nodes(port: &str) -> Vec<NodeLine> {
    text(&cli(&["-p", port, "cluster", "nodes"]))
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let address = fields[1].split('@').next()?;
            let port = address.rsplit_once(':')?.1.parse().ok()?;
            let slots = fields[8..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .map(|range| match range.split_once('-') {
                    Some((first, last)) => {
                        last.parse::<usize>().unwrap_or(0) + 1 - first.parse::<usize>().unwrap_or(0)
                    }
                    None => 1,
                })
                .sum();
            Some(NodeLine {
                id: fields[0].to_string(),
                port,
                master: fields[2].contains("master"),
                master_id: (fields[3] != "-").then(|| fields[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// The line of the node at `port`.
fn line_of(lines: &[NodeLine], port: u16) -> NodeLine {
    lines
        .iter()
        .find(|line| line.port == port)
        .unwrap_or_else(|| panic!("no node at {port} in {lines:?}"))
        .clone()
}

/// Runs a `redis-cli --cluster` step and asserts it succeeded; returns its output and time.
fn tool_step(args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let output = cli(args);
    let elapsed = started.elapsed();
    let output_text = text(&output);
    assert!(
        output.status.success() && !output_text.contains("[ERR]"),
        "redis-cli {args:?} failed:\n{output_text}"
    );
    (output_text, elapsed)
}

/// Keys written by the operations test and checked after each step.
const KEYS_WRITTEN: usize = 20_000;
/// Keys per pipeline of the cluster client.
const KEYS_PER_PIPELINE: usize = 1_000;

fn write_keys(urls: &[String]) {
    let client = redis::cluster::ClusterClient::new(urls.to_vec()).unwrap();
    let mut connection = client.get_connection().unwrap();
    for chunk in (0..KEYS_WRITTEN)
        .collect::<Vec<_>>()
        .chunks(KEYS_PER_PIPELINE)
    {
        let mut pipe = redis::cluster::cluster_pipe();
        for index in chunk {
            pipe.set(format!("op:{index}"), format!("value-{index}"))
                .ignore();
        }
        let _: () = pipe.query(&mut connection).unwrap();
    }
}

/// Every written key through a fresh cluster client, with its value.
fn assert_every_key_readable(urls: &[String], after: &str) {
    let client = redis::cluster::ClusterClient::new(urls.to_vec()).unwrap();
    let mut connection = client.get_connection().unwrap();
    for chunk in (0..KEYS_WRITTEN)
        .collect::<Vec<_>>()
        .chunks(KEYS_PER_PIPELINE)
    {
        let mut pipe = redis::cluster::cluster_pipe();
        for index in chunk {
            pipe.get(format!("op:{index}"));
        }
        let values: Vec<Option<String>> = pipe.query(&mut connection).unwrap();
        for (index, value) in chunk.iter().zip(values) {
            assert_eq!(
                value,
                Some(format!("value-{index}")),
                "op:{index} after {after}"
            );
        }
    }
}

/// Keys held by the masters (DBSIZE of each master's client port).
/// The first slot range CLUSTER NODES (as node `port` sees it) gives node `id`.
fn first_range_of(port: &str, id: &str) -> (u16, u16) {
    let nodes = text(&cli(&["-p", port, "cluster", "nodes"]));
    let line = nodes
        .lines()
        .find(|line| line.starts_with(id))
        .unwrap_or_else(|| panic!("no line of {id} in {nodes}"));
    let range = line
        .split_whitespace()
        .skip(8)
        .find(|range| !range.starts_with('['))
        .unwrap_or_else(|| panic!("{id} has no slot: {line}"));
    let bound = |text: &str| text.parse::<u16>().expect("a slot number");
    match range.split_once('-') {
        Some((first, last)) => (bound(first), bound(last)),
        None => (bound(range), bound(range)),
    }
}

/// Slots the operations test moves back with `CLUSTER MIGRATESLOTS` (at most).
const ATOMIC_SLOTS: u16 = 500;

fn keys_on(port: u16) -> usize {
    text(&cli(&["-p", &port.to_string(), "dbsize"]))
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Slots the operations test reshards (5–8 ms each on tmpfs, 30–40 ms on a busy disk: see
/// the README).
const RESHARD_SLOTS: usize = 1_000;

/// The weight `rebalance` gives the empty master (the others weigh 1): a few slots only.
const NEW_MASTER_WEIGHT: &str = "0.02";

#[test]
fn redis_tools_reshard_rebalance_add_and_delete_nodes_of_a_kvnode_cluster() {
    if !tools_present() {
        return;
    }
    let scratch = Scratch::new("operations");
    let (mut nodes, mut members, addresses) = form_cluster(&scratch.0);
    let entry = addresses[0].as_str();
    let urls: Vec<String> = members
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}/"))
        .collect();
    write_keys(&urls);

    // add-node as a master, then one as its replica.
    let started = start_all(&scratch.0, 2);
    let extra: Vec<u16> = started.iter().map(|node| node.port).collect();
    nodes.extend(started);
    let (new_master, new_replica) = (
        format!("127.0.0.1:{}", extra[0]),
        format!("127.0.0.1:{}", extra[1]),
    );
    let (added, _) = tool_step(&["--cluster", "add-node", &new_master, entry]);
    assert!(
        added.contains("Send FUNCTION RESTORE") && !added.contains("Failed"),
        "add-node copies the (empty) functions:\n{added}"
    );
    members.push(extra[0].to_string());
    wait_clean(entry, &members, "add-node of a master");
    let new_master_id = line_of(&cluster_nodes(&members[0]), extra[0]).id;
    tool_step(&[
        "--cluster",
        "add-node",
        &new_replica,
        entry,
        "--cluster-slave",
        "--cluster-master-id",
        &new_master_id,
    ]);
    members.push(extra[1].to_string());
    wait_clean(entry, &members, "add-node of a replica");
    wait_until(
        "the new replica replicates the new master",
        Duration::from_secs(20),
        || {
            line_of(&cluster_nodes(&members[0]), extra[1])
                .master_id
                .as_deref()
                == Some(new_master_id.as_str())
        },
    );

    // rebalance onto the empty master.
    let weight = format!("{new_master_id}={NEW_MASTER_WEIGHT}");
    tool_step(&[
        "--cluster",
        "rebalance",
        entry,
        "--cluster-use-empty-masters",
        "--cluster-weight",
        &weight,
    ]);
    wait_clean(entry, &members, "rebalance");
    let after_rebalance = cluster_nodes(&members[0]);
    let new_slots = line_of(&after_rebalance, extra[0]).slots;
    assert!(new_slots > 0, "rebalance gave the empty master no slot");
    assert!(
        keys_on(extra[0]) > 0,
        "rebalance moved no key to the new master"
    );
    assert_every_key_readable(&urls, "rebalance");

    // reshard between two of the first masters, timed.
    let masters: Vec<NodeLine> = after_rebalance
        .iter()
        .filter(|line| line.master && line.slots > RESHARD_SLOTS && line.port != extra[0])
        .cloned()
        .collect();
    let (from, to) = (&masters[0], &masters[1]);
    let keys_before = keys_on(to.port);
    let (_, elapsed) = tool_step(&[
        "--cluster",
        "reshard",
        entry,
        "--cluster-from",
        &from.id,
        "--cluster-to",
        &to.id,
        "--cluster-slots",
        &RESHARD_SLOTS.to_string(),
        "--cluster-yes",
    ]);
    wait_clean(entry, &members, "reshard");
    let after_reshard = cluster_nodes(&members[0]);
    assert_eq!(
        line_of(&after_reshard, from.port).slots,
        from.slots - RESHARD_SLOTS
    );
    assert_eq!(
        line_of(&after_reshard, to.port).slots,
        to.slots + RESHARD_SLOTS
    );
    let moved = keys_on(to.port).saturating_sub(keys_before);
    assert!(moved > 0, "the reshard moved no key");
    println!(
        "reshard of {RESHARD_SLOTS} slots: {moved} keys in {:.2} s, {:.0} keys/s, {:.1} ms per slot",
        elapsed.as_secs_f64(),
        moved as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1_000.0 / RESHARD_SLOTS as f64
    );
    assert_every_key_readable(&urls, "reshard");

    // The atomic path, as Valkey 9 spells it: part of the target's first range moves back
    // in one background job, followed with GETSLOTMIGRATIONS.
    let (start, end) = first_range_of(&members[0], &to.id);
    let end = end.min(start + ATOMIC_SLOTS - 1);
    let moving = end - start + 1;
    let to_port = to.port.to_string();
    let migrate_slots = |first: u16, last: u16| {
        text(&cli(&[
            "-p",
            &to_port,
            "cluster",
            "migrateslots",
            "slotsrange",
            &first.to_string(),
            &last.to_string(),
            "node",
            &from.id,
        ]))
    };
    let started = Instant::now();
    let answer = migrate_slots(start, end);
    assert_eq!(answer.trim(), "OK", "MIGRATESLOTS: {answer}");
    let mut report = String::new();
    wait_until(
        "the atomic migration succeeds",
        Duration::from_secs(30),
        || {
            report = text(&cli(&["-p", &to_port, "cluster", "getslotmigrations"]));
            assert!(!report.contains("failed"), "the migration failed: {report}");
            report.contains("success")
        },
    );
    let elapsed = started.elapsed();
    for field in ["EXPORT", &format!("{start}-{end}"), &from.id, &to.id] {
        assert!(
            report.contains(field),
            "GETSLOTMIGRATIONS lacks {field}: {report}"
        );
    }
    println!(
        "MIGRATESLOTS of {moving} slots: done within {:.2} s; GETSLOTMIGRATIONS:\n{report}",
        elapsed.as_secs_f64()
    );
    // The receiving master lists its side of it.
    let import = text(&cli(&[
        "-p",
        &from.port.to_string(),
        "cluster",
        "getslotmigrations",
    ]));
    for field in [
        "IMPORT",
        "success",
        &format!("{start}-{end}"),
        "keys_received",
    ] {
        assert!(
            import.contains(field),
            "the target's GETSLOTMIGRATIONS lacks {field}: {import}"
        );
    }
    wait_clean(entry, &members, "migrateslots");
    assert_eq!(
        line_of(&cluster_nodes(&members[0]), from.port).slots,
        from.slots - RESHARD_SLOTS + moving as usize
    );
    assert_every_key_readable(&urls, "migrateslots");
    // A slot it does not own is refused with the reason; nothing runs to cancel.
    let refused = migrate_slots(start, start);
    assert!(
        refused.contains("ERR") && refused.contains(&start.to_string()),
        "{refused}"
    );
    let cancelled = text(&cli(&["-p", &to_port, "cluster", "cancelslotmigrations"]));
    assert_eq!(cancelled.trim(), "OK");

    // Empty the new master, then del-node it.
    tool_step(&[
        "--cluster",
        "reshard",
        entry,
        "--cluster-from",
        &new_master_id,
        "--cluster-to",
        &from.id,
        "--cluster-slots",
        &new_slots.to_string(),
        "--cluster-yes",
    ]);
    wait_clean(entry, &members, "emptying the new master");
    assert_eq!(line_of(&cluster_nodes(&members[0]), extra[0]).slots, 0);
    assert_every_key_readable(&urls, "emptying the new master");
    tool_step(&["--cluster", "del-node", entry, &new_master_id]);
    members.retain(|port| *port != extra[0].to_string());
    wait_until(
        "the deleted node is forgotten",
        Duration::from_secs(20),
        || {
            cluster_nodes(&members[0])
                .iter()
                .all(|line| line.port != extra[0])
        },
    );
    wait_clean(entry, &members, "del-node");
    assert_every_key_readable(&urls, "del-node");
    assert_eq!(
        text(&cli(&["-p", &extra[0].to_string(), "cluster", "info"]))
            .lines()
            .find(|line| line.starts_with("cluster_known_nodes:"))
            .map(str::trim),
        Some("cluster_known_nodes:1"),
        "the deleted node was reset"
    );
    assert_eq!(
        keys_on(extra[0]),
        0,
        "the deleted node, a replica after it lost its last slot, was reset into an empty master"
    );
    drop(nodes);
}

/// Writes a development CA's certificate into `dir` (`ca.pem`); returns the CA.
fn write_ca(dir: &Path) -> slotkv_transport::tls::DevCertificateAuthority {
    let ca = slotkv_transport::tls::DevCertificateAuthority::generate().unwrap();
    std::fs::write(dir.join("ca.pem"), ca.certificate_pem()).unwrap();
    ca
}

/// Writes the certificate pair of the kvnode on `port` into `dir`, issued by `ca` and
/// naming node id [`node_id_for`] of the port and 127.0.0.1 (per-node identity):
/// `node-<port>.crt`, `node-<port>.key`.
fn write_node_certificate(
    ca: &slotkv_transport::tls::DevCertificateAuthority,
    dir: &Path,
    port: u16,
) {
    let id = slotkv_cluster::core::node::NodeId::parse_hex(&node_id_for(port)).unwrap();
    let names = [
        slotkv_cluster::node_identity_name(&id),
        "127.0.0.1".to_string(),
    ];
    let (certificate, key) = ca.issue_named_node_pem(&names).unwrap();
    std::fs::write(dir.join(format!("node-{port}.crt")), certificate).unwrap();
    std::fs::write(dir.join(format!("node-{port}.key")), key).unwrap();
}

/// The node id the kvnode on `port` is started with (its certificate names it).
fn node_id_for(port: u16) -> String {
    format!("{port:040x}")
}

/// kvnode's process-level settings, with the real tools: three kvnodes started from
/// redis.conf-style files (the command line overriding one directive) form a cluster over
/// QUIC with per-node identity (each certificate naming its node's id and address) with
/// `redis-cli --cluster create`; with `proxy-redirects yes` a plain client, with
/// no cluster support, reads and writes every key through any one node; the pidfile and
/// logfile are written; `save 1 1` saves a master's keys, and a master stopped by SIGTERM
/// and started again from its file serves them again (its pidfile removed meanwhile).
#[test]
fn kvnodes_from_config_files_form_a_quic_cluster_serve_plain_clients_and_keep_saved_keys() {
    if !tools_present() {
        return;
    }
    let scratch = Scratch::new("config");
    let dir = scratch.0.clone();
    let ca = write_ca(&dir);
    let config_of = |port: u16| -> Vec<String> {
        write_node_certificate(&ca, &dir, port);
        let node_dir = dir.join(format!("node-{port}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let file = dir.join(format!("kvnode-{port}.conf"));
        let text = format!(
            "# kvnode {port}\n\
             port {port}\n\
             bind 127.0.0.1\n\
             cluster-enabled yes\n\
             cluster-node-timeout 15000\n\
             cluster-config-file \"nodes.conf\"\n\
             dir {node}\n\
             transport quic\n\
             tls-cert-file {root}/node-{port}.crt\n\
             tls-key-file {root}/node-{port}.key\n\
             tls-ca-cert-file {root}/ca.pem\n\
             tls-node-identity yes\n\
             cluster-node-id {id}\n\
             proxy-redirects yes\n\
             save \"\"\n\
             save 1 1\n\
             appendonly no\n\
             daemonize no\n\
             pidfile {root}/kvnode-{port}.pid\n\
             logfile {root}/kvnode-{port}.log\n\
             loglevel notice\n",
            node = node_dir.display(),
            root = dir.display(),
            id = node_id_for(port),
        );
        std::fs::write(&file, text).unwrap();
        vec![
            file.display().to_string(),
            "--cluster-node-timeout".into(),
            "2000".into(),
        ]
    };
    let mut nodes = start_all_with(&dir, 3, config_of);
    let ports: Vec<String> = nodes.iter().map(|node| node.port.to_string()).collect();
    let addresses = cluster_create(cli, &ports, "0");
    wait_clean(&addresses[0], &ports, "create");

    for (index, node) in nodes.iter().enumerate() {
        let pid = std::fs::read_to_string(dir.join(format!("kvnode-{}.pid", node.port))).unwrap();
        assert_eq!(
            pid.trim(),
            node.child.id().to_string(),
            "node {index}'s pidfile"
        );
        let log = std::fs::read_to_string(dir.join(format!("kvnode-{}.log", node.port))).unwrap();
        assert!(
            log.contains("kvnode ready"),
            "node {index}'s logfile:\n{log}"
        );
    }
    let setting = |port: &str, name: &str| text(&cli(&["-p", port, "config", "get", name]));
    assert!(
        setting(&ports[0], "save").contains("1 1"),
        "{}",
        setting(&ports[0], "save")
    );
    assert!(setting(&ports[0], "proxy-redirects").contains("yes"));
    let bus = text(&cli(&["-p", &ports[0], "cluster", "nodes"]));
    assert!(bus.contains("myself,master"), "{bus}");

    // A plain client (no cluster support: a MOVED would be an error to it) on node 0.
    let keys = 300;
    let plain = |port: &str| {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let mut connection = plain(&ports[0]);
    for key in 0..keys {
        let () = connection
            .set(format!("key:{key}"), format!("value:{key}"))
            .unwrap_or_else(|error| panic!("SET key:{key} through node 0: {error}"));
    }
    let mut other = plain(&ports[1]);
    for key in 0..keys {
        let value: Option<String> = other.get(format!("key:{key}")).unwrap();
        assert_eq!(
            value,
            Some(format!("value:{key}")),
            "key:{key} through node 1"
        );
    }
    let held: Vec<usize> = nodes.iter().map(|node| keys_on(node.port)).collect();
    assert_eq!(held.iter().sum::<usize>(), keys, "{held:?}");
    assert!(
        held.iter().all(|&count| count > 0),
        "every master holds keys: {held:?}"
    );
    let declined = text(&cli(&[
        "-p",
        &ports[0],
        "config",
        "set",
        "proxy-redirects",
        "no",
    ]));
    assert!(declined.contains("OK"), "{declined}");
    let moved = (0..keys)
        .any(|key| text(&cli(&["-p", &ports[0], "get", &format!("key:{key}")])).contains("MOVED"));
    assert!(
        moved,
        "with proxy-redirects no, keys of other nodes are answered MOVED"
    );
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("proxy-redirects")
        .arg("yes")
        .query(&mut connection)
        .unwrap();

    // `save 1 1`: node 2's keys are saved within a few seconds of the writes.
    let victim = nodes.remove(2);
    let snapshot = dir
        .join(format!("node-{}", victim.port))
        .join("data.snapshot");
    wait_until("node 2 saved its keys", Duration::from_secs(15), || {
        snapshot.exists()
    });
    let victim_port = victim.port;
    let pidfile = dir.join(format!("kvnode-{victim_port}.pid"));
    let stopped = Command::new("kill")
        .args(["-TERM", &victim.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let mut victim = victim;
    let status = victim.child.wait().unwrap();
    assert!(status.success(), "SIGTERM stops kvnode cleanly: {status}");
    assert!(!pidfile.exists(), "the pidfile is removed on exit");
    let restarted = start(&dir, victim_port, &config_of(victim_port));
    nodes.push(restarted);
    wait_clean(&addresses[0], &ports, "node 2's restart");
    assert_eq!(
        keys_on(victim_port),
        held[2],
        "node 2 loaded its saved keys"
    );
    // The others may still mark the master that was away as failed for a moment (it has no
    // replica: the cluster is down meanwhile), so the reads wait for a CLUSTERDOWN to pass.
    let mut other = plain(&ports[1]);
    for key in 0..keys {
        let deadline = Instant::now() + Duration::from_secs(20);
        let value: Option<String> = loop {
            match other.get(format!("key:{key}")) {
                Ok(value) => break value,
                Err(error) if error.code() == Some("CLUSTERDOWN") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(error) => panic!("GET key:{key} after node 2's restart: {error}"),
            }
        };
        assert_eq!(
            value,
            Some(format!("value:{key}")),
            "key:{key} after node 2's restart"
        );
    }
    drop(victim);
    drop(nodes);
}

/// RESP over TLS with the real tools: three kvnodes with `--port 0 --tls-port P`
/// (`tls-auth-clients yes`) and the bus under TLS form with `redis-cli --tls --cluster
/// create`; `redis-cli --tls -c` writes through one node and reads through every other,
/// following MOVED to TLS ports; a TLS client without a certificate and a plain client are
/// refused, and the nodes keep serving.
#[test]
fn kvnodes_serve_resp_over_tls_to_the_real_tools() {
    if !tools_present() {
        return;
    }
    let scratch = Scratch::new("tls");
    let dir = scratch.0.clone();
    let ca = write_ca(&dir);
    let ports = free_ports(3);
    let client_port = free_ports(1)[0];
    write_node_certificate(&ca, &dir, client_port);
    let root = dir.display().to_string();
    let (ca_file, client_cert, client_key) = (
        format!("{root}/ca.pem"),
        format!("{root}/node-{client_port}.crt"),
        format!("{root}/node-{client_port}.key"),
    );
    let mut nodes = Vec::new();
    for &port in &ports {
        write_node_certificate(&ca, &dir, port);
        let arguments: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cluster",
            "yes",
            "--tls-cert-file",
            &format!("{root}/node-{port}.crt"),
            "--tls-key-file",
            &format!("{root}/node-{port}.key"),
            "--tls-ca-cert-file",
            &ca_file,
            "--cluster-node-timeout",
            "2000",
            "--dir",
            &root,
        ]
        .iter()
        .map(|word| word.to_string())
        .collect();
        nodes.push(start(&dir, port, &arguments));
    }
    let tls_cli = |args: &[&str]| {
        let mut all = vec![
            "--tls",
            "--cacert",
            &ca_file,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
        ];
        all.extend_from_slice(args);
        cli(&all)
    };
    let port_texts: Vec<String> = ports.iter().map(u16::to_string).collect();
    for port in &port_texts {
        wait_until("the TLS port answers PING", Duration::from_secs(10), || {
            text(&tls_cli(&["-p", port, "ping"])).contains("PONG")
        });
    }
    cluster_create(tls_cli, &port_texts, "0");
    for port in &port_texts {
        wait_until("cluster_state:ok over TLS", Duration::from_secs(30), || {
            text(&tls_cli(&["-p", port, "cluster", "info"])).contains("cluster_state:ok")
        });
    }
    let slots = text(&tls_cli(&["-p", &port_texts[0], "cluster", "slots"]));
    for port in &port_texts {
        assert!(
            slots.contains(port.as_str()),
            "CLUSTER SLOTS names the TLS ports:\n{slots}"
        );
    }
    for index in 0..30 {
        let key = format!("tls-key-{index}");
        let set = text(&tls_cli(&[
            "-c",
            "-p",
            &port_texts[0],
            "set",
            &key,
            &format!("v{index}"),
        ]));
        assert!(set.contains("OK"), "SET {key} over TLS: {set}");
    }
    for port in &port_texts[1..] {
        for index in 0..30 {
            let key = format!("tls-key-{index}");
            let got = text(&tls_cli(&["-c", "-p", port, "get", &key]));
            assert_eq!(
                got.trim(),
                format!("v{index}"),
                "GET {key} through {port} over TLS"
            );
        }
    }
    // A value larger than the socket buffers both ways (the reply waits in the TLS session
    // while the socket is full).
    let big = "x".repeat(3 << 20);
    let big_file = dir.join("big.txt");
    std::fs::write(&big_file, &big).unwrap();
    let set_big = Command::new("redis-cli")
        .args([
            "--tls",
            "--cacert",
            &ca_file,
            "--cert",
            &client_cert,
            "--key",
            &client_key,
        ])
        .args(["-c", "-p", &port_texts[0], "-x", "set", "big"])
        .stdin(std::fs::File::open(&big_file).unwrap())
        .output()
        .unwrap();
    assert!(
        text(&set_big).contains("OK"),
        "SET of 3 MiB over TLS: {}",
        text(&set_big)
    );
    let got_big = tls_cli(&["-c", "-p", &port_texts[1], "get", "big"]);
    assert_eq!(
        String::from_utf8_lossy(&got_big.stdout).trim_end().len(),
        big.len(),
        "GET of 3 MiB over TLS"
    );
    // No client certificate: the handshake fails (tls-auth-clients yes).
    let anonymous = cli(&["--tls", "--cacert", &ca_file, "-p", &port_texts[0], "ping"]);
    assert!(
        !text(&anonymous).contains("PONG"),
        "a client without a certificate was served"
    );
    // A plain client gets no RESP answer from a TLS port.
    let plain = raw_exchange(ports[0], b"PING\r\n");
    assert!(
        !plain.contains("PONG"),
        "a plain client was served: {plain:?}"
    );
    for port in &port_texts {
        assert!(
            text(&tls_cli(&["-p", port, "ping"])).contains("PONG"),
            "node {port} stopped serving"
        );
    }
    drop(nodes);
}
