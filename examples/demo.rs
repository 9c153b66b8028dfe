//! The slotkv demo: six embedded nodes (3 masters, 3 replicas) in one process on loopback.
//!
//! It writes 100,000 keys through one node (each write acknowledged by a replica), reads
//! them all back through every node, kills a master, reports how long its replica takes to
//! serve the slots and checks that every key is still readable, then prints CLUSTER NODES.
//! TCP by default; `--quic` switches to QUIC with mutual TLS. Exits non-zero if a check
//! fails.
//!
//! ```sh
//! cargo run --release --example demo [-- --quic]
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use slotkv::transport::quic::{DevCertificateAuthority, QuicConfig};
use slotkv::transport::tcp::{ClusterSecret, TcpConfig};
use slotkv::{create_cluster, Cluster, Durability, Node, NodeTransport};

/// Keys written and read back.
const KEYS: usize = 100_000;
/// Concurrent callers per phase.
const CALLERS: usize = 64;
/// The demo's cluster-node-timeout, in ms: short so the failover is quick.
const NODE_TIMEOUT_MS: u64 = 1_000;
/// Longest wait for formation or failover.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn key(index: usize) -> String {
    format!("demo:key:{index}")
}

fn transports(quic: bool) -> DemoResult<Vec<NodeTransport>> {
    if !quic {
        let secret = ClusterSecret::new(b"slotkv demo cluster secret".to_vec())?;
        return Ok((0..6)
            .map(|_| NodeTransport::Tcp(TcpConfig::new(secret.clone())))
            .collect());
    }
    let authority = DevCertificateAuthority::generate()?;
    let mut transports = Vec::new();
    for _ in 0..6 {
        let identity = authority.issue_node_identity()?;
        let config = QuicConfig::new(identity, authority.trust_anchor());
        transports.push(NodeTransport::Quic(config));
    }
    Ok(transports)
}

/// Runs `work(cluster, index)` for every index in `0..KEYS` with [`CALLERS`] concurrent
/// callers; returns how many calls failed their check.
async fn for_all_keys<F, Fut>(cluster: &Cluster, work: F) -> usize
where
    F: Fn(Cluster, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let cluster = cluster.clone();
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for index in (caller..KEYS).step_by(CALLERS) {
                if !work(cluster.clone(), index).await {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap_or(KEYS);
    }
    failed
}

async fn read_all(cluster: &Cluster) -> usize {
    for_all_keys(cluster, |cluster, index| async move {
        let expected = key(index);
        matches!(cluster.get(expected.as_bytes()).await, Ok(Some(value)) if value == expected.as_bytes())
    })
    .await
}

fn rate(count: usize, elapsed: Duration) -> String {
    format!(
        "{:.0} ops/s",
        count as f64 / elapsed.as_secs_f64().max(1e-9)
    )
}

fn check(ok: bool, what: &str, failures: &mut Vec<String>) {
    println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
    if !ok {
        failures.push(what.to_string());
    }
}

async fn start(quic: bool) -> DemoResult<Vec<Node>> {
    let mut nodes = Vec::new();
    for transport in transports(quic)? {
        let node = Node::builder(transport)
            .node_timeout_ms(NODE_TIMEOUT_MS)
            .request_timeout_ms(1_000)
            .start()
            .await?;
        nodes.push(node);
    }
    Ok(nodes)
}

async fn write_phase(nodes: &[Node], failures: &mut Vec<String>) {
    let writer = nodes[0].cluster().with_durability(Durability::Replicas {
        replicas: 1,
        timeout_ms: 5_000,
    });
    let started = Instant::now();
    let failed = for_all_keys(&writer, |cluster, index| async move {
        let name = key(index);
        cluster.set(name.as_bytes(), name.as_bytes()).await.is_ok()
    })
    .await;
    let elapsed = started.elapsed();
    println!(
        "wrote {KEYS} keys through node 0, each acknowledged by a replica, in {elapsed:.2?} ({})",
        rate(KEYS, elapsed)
    );
    check(
        failed == 0,
        &format!("every write acknowledged ({failed} failed)"),
        failures,
    );
}

async fn read_phase(nodes: &[Node], failures: &mut Vec<String>) {
    for (index, node) in nodes.iter().enumerate() {
        let started = Instant::now();
        let missing = read_all(&node.cluster()).await;
        let elapsed = started.elapsed();
        println!(
            "read {KEYS} keys back through node {index} in {elapsed:.2?} ({})",
            rate(KEYS, elapsed)
        );
        check(
            missing == 0,
            &format!("node {index} returned every key ({missing} missing)"),
            failures,
        );
    }
}

async fn failover_phase(nodes: &mut Vec<Node>, failures: &mut Vec<String>) -> DemoResult<()> {
    let probe = key(0);
    let slot = slotkv::key_slot(probe.as_bytes());
    let owner = nodes[0].inspect(move |core| core.slot_owner(slot)).await?;
    let victim = nodes
        .iter()
        .position(|node| Some(node.id()) == owner)
        .ok_or("no owner for the probe key")?;
    let survivor_index = if victim == 0 { 1 } else { 0 };
    println!(
        "killing master node {victim} ({}), owner of slot {slot}",
        nodes[victim].id()
    );
    let killed = nodes.remove(victim);
    let killed_at = Instant::now();
    drop(killed);
    let survivor = nodes[survivor_index.min(nodes.len() - 1)].cluster();
    let mut served = false;
    while killed_at.elapsed() < PHASE_TIMEOUT {
        if matches!(survivor.get(probe.as_bytes()).await, Ok(Some(_))) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "its replica served the slots {:.2?} after the kill",
        killed_at.elapsed()
    );
    check(
        served,
        "the replica took over the dead master's slots",
        failures,
    );
    let started = Instant::now();
    let missing = read_all(&survivor).await;
    println!("re-read {KEYS} keys in {:.2?}", started.elapsed());
    check(
        missing == 0,
        &format!("every replica-acknowledged key is still readable ({missing} missing)"),
        failures,
    );
    Ok(())
}

async fn run(quic: bool) -> DemoResult<Vec<String>> {
    let mut failures = Vec::new();
    println!(
        "slotkv demo: 6 nodes over {} on loopback",
        if quic { "QUIC" } else { "TCP" }
    );
    let started = Instant::now();
    let mut nodes = start(quic).await?;
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 1, PHASE_TIMEOUT).await?;
    println!(
        "cluster of 3 masters + 3 replicas formed in {:.2?}",
        started.elapsed()
    );
    write_phase(&nodes, &mut failures).await;
    read_phase(&nodes, &mut failures).await;
    failover_phase(&mut nodes, &mut failures).await?;
    println!(
        "\nCLUSTER NODES (as node {} sees it):",
        nodes[0].bus_address()
    );
    print!("{}", nodes[0].cluster_nodes().await?);
    for node in nodes {
        node.shutdown().await;
    }
    Ok(failures)
}

fn main() -> ExitCode {
    let quic = std::env::args().any(|argument| argument == "--quic");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(quic)) {
        Ok(failures) if failures.is_empty() => {
            println!("\nall checks passed");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            eprintln!(
                "\n{} check(s) failed: {}",
                failures.len(),
                failures.join("; ")
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}
