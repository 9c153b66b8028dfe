//! Optional snapshot persistence on a real node over TCP: a master without replicas that is
//! shut down and started again on the same address and data directory keeps its keys (the
//! expired ones excepted); a snapshot that is corrupt, or of another node, stops the start
//! with an error naming the file; writes after a snapshot-saving shutdown are refused.

mod node_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::{
    create_cluster, ClusterError, Node, Persistence, SnapshotError, SnapshotLoadError, StartError,
    LOADED_SNAPSHOT_FILE, SNAPSHOT_FILE,
};
use slotkv_engine::{ExpireCondition, ExpireTime};

use node_support::{eventually, tcp, NODE_TIMEOUT_MS};

/// Keys the tests write.
const KEYS: usize = 2_000;

/// A fresh data directory under the system temp dir, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new(test: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!(
            "slotkv-node-persistence-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(bind: &str, dir: &Path, persistence: Persistence) -> Result<Node, StartError> {
    Node::builder(tcp())
        .bind(bind)
        .node_timeout_ms(NODE_TIMEOUT_MS)
        .data_dir(dir)
        .persistence(persistence)
        .start()
        .await
}

/// A one-node cluster holding every slot, with `KEYS` keys: every tenth expires in 300 ms,
/// every tenth from the fifth in an hour, the rest never.
async fn one_master_with_keys(dir: &Path) -> Node {
    let node = start("127.0.0.1:0", dir, Persistence::Snapshot)
        .await
        .unwrap();
    create_cluster(&[&node], 0, Duration::from_secs(10))
        .await
        .unwrap();
    let cluster = node.cluster();
    for index in 0..KEYS {
        let key = format!("key:{index}");
        cluster
            .set(key.as_bytes(), format!("value:{index}").as_bytes())
            .await
            .unwrap();
        let ttl_ms = match index % 10 {
            0 => 300,
            5 => 3_600_000,
            _ => continue,
        };
        let time = ExpireTime::Milliseconds(ttl_ms);
        assert!(cluster
            .expire(key.as_bytes(), time, ExpireCondition::Always)
            .await
            .unwrap());
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_replicas_keeps_its_keys_across_a_restart_on_the_same_address() {
    let dir = DataDir::new("restart");
    let node = one_master_with_keys(&dir.0).await;
    let (id, address) = (node.id(), node.bus_address().clone());
    node.shutdown().await;
    assert!(
        dir.file(SNAPSHOT_FILE).exists(),
        "shutdown wrote no snapshot"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;

    let node = start(address.as_str(), &dir.0, Persistence::Snapshot)
        .await
        .unwrap();
    assert_eq!(node.id(), id);
    let cluster = node.cluster();
    // A restarted node serves once its state is ok again.
    let serving = eventually(Duration::from_secs(10), || async {
        cluster.get(b"key:1").await.is_ok()
    })
    .await;
    assert!(serving, "the restarted node never served");
    for index in 0..KEYS {
        let key = format!("key:{index}");
        let value = cluster.get(key.as_bytes()).await.unwrap();
        if index % 10 == 0 {
            assert_eq!(value, None, "{key} had expired before the restart");
            continue;
        }
        assert_eq!(
            value.as_deref(),
            Some(format!("value:{index}").as_bytes()),
            "{key}"
        );
        let pttl = cluster.pttl(key.as_bytes()).await.unwrap();
        if index % 10 == 5 {
            assert!(pttl > 3_500_000 && pttl <= 3_600_000, "{key}: pttl {pttl}");
        } else {
            assert_eq!(pttl, -1, "{key}");
        }
    }
    assert_eq!(node.store().dbsize(), KEYS - KEYS / 10);
    // Loaded once: a crash from here on cannot bring this older copy back.
    assert!(!dir.file(SNAPSHOT_FILE).exists());
    assert!(dir.file(LOADED_SNAPSHOT_FILE).exists());
    node.shutdown().await;
    assert!(
        dir.file(SNAPSHOT_FILE).exists(),
        "the second shutdown wrote no snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_a_snapshot_saving_shutdown_are_refused() {
    let dir = DataDir::new("refused");
    let node = one_master_with_keys(&dir.0).await;
    let cluster = node.cluster();
    node.shutdown().await;
    let refused = cluster.set(b"late", b"write").await;
    assert!(
        matches!(refused, Err(ClusterError::Shutdown)),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_on_demand_counts_its_keys_and_needs_persistence() {
    let dir = DataDir::new("on-demand");
    let node = one_master_with_keys(&dir.0).await;
    let info = node.save_snapshot().await.unwrap();
    assert_eq!(info.path, dir.file(SNAPSHOT_FILE));
    assert!(
        info.keys >= (KEYS - KEYS / 10) as u64 && info.keys <= KEYS as u64,
        "{info:?}"
    );
    assert_eq!(info.bytes, std::fs::metadata(&info.path).unwrap().len());
    node.shutdown().await;

    let plain_dir = DataDir::new("on-demand-off");
    let plain = start("127.0.0.1:0", &plain_dir.0, Persistence::None)
        .await
        .unwrap();
    assert!(matches!(
        plain.save_snapshot().await,
        Err(SnapshotError::NotEnabled)
    ));
    plain.shutdown().await;
    assert!(!plain_dir.file(SNAPSHOT_FILE).exists());

    let missing_dir = Node::builder(tcp())
        .persistence(Persistence::Snapshot)
        .start()
        .await;
    assert!(
        matches!(missing_dir, Err(StartError::Config(_))),
        "{missing_dir:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_foreign_snapshot_stops_the_start_naming_the_file() {
    let dir = DataDir::new("corrupt");
    let node = one_master_with_keys(&dir.0).await;
    let address = node.bus_address().clone();
    node.shutdown().await;
    let path = dir.file(SNAPSHOT_FILE);
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    let error = start(address.as_str(), &dir.0, Persistence::Snapshot)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StartError::Snapshot(SnapshotLoadError::ChecksumMismatch { .. })
        ),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()) && message.contains("delete it"));

    std::fs::write(&path, &good[..good.len() / 3]).unwrap();
    let error = start(address.as_str(), &dir.0, Persistence::Snapshot)
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::Snapshot(_)), "{error}");

    // Another node's data directory: its nodes.conf names a different id.
    let other_dir = DataDir::new("corrupt-other");
    let other = start("127.0.0.1:0", &other_dir.0, Persistence::Snapshot)
        .await
        .unwrap();
    let other_id: NodeId = other.id();
    other.shutdown().await;
    std::fs::write(other_dir.file(SNAPSHOT_FILE), &good).unwrap();
    let error = start("127.0.0.1:0", &other_dir.0, Persistence::Snapshot)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StartError::Snapshot(SnapshotLoadError::OtherNode { expected, .. })
            if *expected == other_id),
        "{error}"
    );

    // Deleting the file, as the message says, starts the node empty.
    std::fs::remove_file(&path).unwrap();
    let node = start(address.as_str(), &dir.0, Persistence::Snapshot)
        .await
        .unwrap();
    assert_eq!(node.store().dbsize(), 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sets_a_snapshot_aside_at_start_without_loading_it() {
    let (master_dir, replica_dir) = (DataDir::new("replica-m"), DataDir::new("replica-r"));
    let master = start("127.0.0.1:0", &master_dir.0, Persistence::Snapshot)
        .await
        .unwrap();
    let replica = start("127.0.0.1:0", &replica_dir.0, Persistence::Snapshot)
        .await
        .unwrap();
    create_cluster(&[&master, &replica], 1, Duration::from_secs(10))
        .await
        .unwrap();
    // An on-demand snapshot of the replica, older than what its master will hold.
    replica.save_snapshot().await.unwrap();
    let address = replica.bus_address().clone();
    replica.shutdown().await;
    assert!(replica_dir.file(SNAPSHOT_FILE).exists());
    master.cluster().set(b"newer", b"value").await.unwrap();

    let replica = start(address.as_str(), &replica_dir.0, Persistence::Snapshot)
        .await
        .unwrap();
    assert!(
        !replica_dir.file(SNAPSHOT_FILE).exists(),
        "a replica left a snapshot a later start could load"
    );
    assert!(replica_dir.file(LOADED_SNAPSHOT_FILE).exists());
    let synced = eventually(Duration::from_secs(10), || async {
        replica.store().get(b"newer").is_some()
    })
    .await;
    assert!(
        synced,
        "the restarted replica never resynced from its master"
    );
    replica.shutdown().await;
    assert!(
        !replica_dir.file(SNAPSHOT_FILE).exists(),
        "a replica wrote a snapshot on shutdown"
    );
    master.shutdown().await;
}
