//! Real crashes of real processes: six node processes on loopback (three masters, each with
//! a replica, every node with its own data directory) and a host node in this process that
//! owns no slot and writes through the cluster with replica durability, continuously, from
//! four tasks. Meanwhile the test SIGKILLs processes and starts them again from their data
//! directories, as a supervisor does: each master in turn (its replica takes over; the
//! restarted process, which lost its keys, rejoins as a replica), then a replica, then a
//! master restarted at once (before its failure is noticed: it must hand its slots to its
//! replica rather than serve or ship its empty engine). At the
//! end every write that was acknowledged must read back with its value or a later one of
//! the same writer (never an older one, never a value no one wrote).
//!
//! The node processes are this test binary run again as child nodes (`node_support::child`).

mod node_support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use node_support::child::{self, await_status, form, running, status_field, Child, ChildSpec};
use node_support::history::Clients;
use node_support::temp_dir;

const MASTERS: usize = 3;
const NODES: usize = 2 * MASTERS;
/// Writer tasks of the host node.
const WRITERS: usize = 4;

/// The child side (see `node_support::child`).
#[test]
fn child_node() {
    child::serve_if_child();
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap()
}

struct Cluster {
    specs: Vec<ChildSpec>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn start(root: &std::path::Path) -> Cluster {
        let specs: Vec<ChildSpec> = (0..NODES)
            .map(|index| {
                let directory: PathBuf = root.join(format!("n{index}"));
                std::fs::create_dir_all(&directory).unwrap();
                ChildSpec {
                    namespace: None,
                    bind: format!("127.0.0.1:{}", free_port()),
                    announce: None,
                    data_dir: Some(directory),
                    persist: false,
                }
            })
            .collect();
        let children = specs.iter().map(|spec| Some(Child::spawn(spec))).collect();
        Cluster { specs, children }
    }

    fn child(&mut self, index: usize) -> &mut Child {
        running(&mut self.children, index)
    }

    fn kill(&mut self, index: usize) {
        if let Some(child) = self.children[index].take() {
            child.kill();
        }
    }

    fn restart(&mut self, index: usize) {
        assert!(self.children[index].is_none(), "node {index} still runs");
        let child = Child::spawn(&self.specs[index]);
        self.children[index] = Some(child);
    }

    fn await_status(&mut self, index: usize, what: &str, wanted: impl Fn(&str) -> bool) {
        await_status(&mut self.children, index, what, wanted);
    }

    /// Waits until replica `replica` follows `master` on its current history (its full
    /// sync is done), so it holds everything it acknowledges from now on and all before.
    fn await_synced(&mut self, replica: usize, master: usize) {
        let master_id = self.child(master).id.clone();
        let replid = status_field(&self.child(master).must("status"), "replid");
        self.await_status(replica, "synced with its master", |status| {
            status.contains(&format!("following={master_id}"))
                && status.contains(&format!("replid={replid} "))
                && status.contains("syncing=false")
        });
    }
}

#[test]
fn sigkilled_and_restarted_processes_lose_no_acknowledged_write() {
    if child::is_child() {
        return;
    }
    let started = Instant::now();
    let root = temp_dir("processes");
    let mut cluster = Cluster::start(&root);
    form(&mut cluster.children, MASTERS);
    println!(
        "formed {NODES} node processes in {} ms",
        started.elapsed().as_millis()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = runtime.block_on(child::join_host("127.0.0.1:0", 77, &cluster.children));

    let clients = Clients::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| runtime.spawn(clients.clone().write(host.cluster(), writer)))
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let mut faults = 0;
    // Each master in turn: SIGKILL, its replica takes over, the process comes back from its
    // directory without its keys and rejoins as a replica of the new owner.
    for master in 0..MASTERS {
        let replica = MASTERS + master;
        let killed = Instant::now();
        cluster.kill(master);
        faults += 1;
        cluster.await_status(replica, "took over its killed master's slots", |status| {
            status.contains("master=true") && !status.contains("slots=0")
        });
        println!(
            "master {master} killed: its replica took over after {} ms",
            killed.elapsed().as_millis()
        );
        cluster.restart(master);
        cluster.await_synced(master, replica);
        println!(
            "master {master} restarted: a replica again after {} ms",
            killed.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A replica (now node 0, of node 3): SIGKILL and back.
    cluster.kill(0);
    faults += 1;
    std::thread::sleep(Duration::from_millis(1_500));
    cluster.restart(0);
    cluster.await_synced(0, MASTERS);
    std::thread::sleep(Duration::from_millis(500));
    // A master (node 3) killed and restarted at once, before anyone noticed: it comes back
    // owning its slots without their keys, and must hand them to its replica (node 0)
    // instead of serving or shipping its empty engine.
    let restarted = Instant::now();
    cluster.kill(MASTERS);
    faults += 1;
    cluster.restart(MASTERS);
    cluster.await_status(
        0,
        "took over from the master restarted without data",
        |status| status.contains("master=true") && !status.contains("slots=0"),
    );
    cluster.await_synced(MASTERS, 0);
    println!(
        "master {MASTERS} restarted at once: its replica serves, it follows, after {} ms",
        restarted.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_secs(1));

    clients.stop.store(true, Ordering::Release);
    runtime.block_on(async {
        for writer in writers {
            writer.await.unwrap();
        }
    });
    let lost = runtime.block_on(clients.lost(&host.cluster()));
    let history = clients.history.lock();
    println!(
        "{} acknowledged writes ({} keys), {} failed or not durable, {faults} SIGKILLs, \
         {} lost, in {} ms",
        history.acknowledged_writes,
        history.acknowledged.len(),
        history.failed_writes,
        lost.len(),
        started.elapsed().as_millis()
    );
    assert!(history.acknowledged_writes > 0, "no write was acknowledged");
    assert!(
        lost.is_empty(),
        "acknowledged writes lost: {:?}",
        &lost[..lost.len().min(10)]
    );
    runtime.block_on(host.shutdown());
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
}
