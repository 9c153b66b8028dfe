//! The real Redis tools against six `kvnode` processes: `redis-cli --cluster create` forms
//! 3 masters + 3 replicas, `--cluster check` passes, `redis-cli -c` follows MOVED for SET
//! and GET through every node, the `redis` crate's cluster client writes and reads 1,000
//! keys, `redis-benchmark --cluster` runs, and garbage RESP, a huge multibulk count and an
//! endless inline line are refused with Redis's errors while the node keeps serving.
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

fn start(dir: &Path, port: u16) -> Kvnode {
    let log = std::fs::File::create(dir.join(format!("kvnode-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args([
            "--port",
            &port.to_string(),
            "--cluster-node-timeout",
            "2000",
        ])
        .arg("--dir")
        .arg(dir)
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

#[test]
fn redis_tools_form_check_and_use_a_kvnode_cluster() {
    if !tools_present() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kvnode-tools-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nodes: Vec<Kvnode> = free_ports(6)
        .into_iter()
        .map(|port| start(&dir, port))
        .collect();
    let ports: Vec<String> = nodes.iter().map(|node| node.port.to_string()).collect();
    for port in &ports {
        wait_until("kvnode answers PING", Duration::from_secs(10), || {
            text(&cli(&["-p", port, "ping"])).contains("PONG")
        });
    }

    let addresses: Vec<String> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
    let created = cli(&create);
    let created_text = text(&created);
    assert!(created.status.success(), "create failed:\n{created_text}");
    assert!(
        created_text.contains("[OK] All 16384 slots covered."),
        "{created_text}"
    );

    wait_until("--cluster check passes", Duration::from_secs(30), || {
        let check = cli(&["--cluster", "check", &addresses[0]]);
        let output = text(&check);
        check.status.success()
            && output.contains("[OK] All nodes agree about slots configuration.")
            && output.contains("[OK] All 16384 slots covered.")
            && !output.contains("[WARNING]")
    });

    for port in &ports {
        wait_until(
            "every node's cluster_state is ok",
            Duration::from_secs(30),
            || text(&cli(&["-p", port, "cluster", "info"])).contains("cluster_state:ok"),
        );
    }

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
    let _ = std::fs::remove_dir_all(&dir);
}
