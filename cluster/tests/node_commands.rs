//! The string commands added in the command registry's shape, each through the `Cluster`
//! handle of node 0 of a 3-master cluster on the simulated network: once on a key node 0
//! owns (the local path) and once on a key another master owns (forwarded over the request
//! protocol), with Redis's replies and error lines on both paths; and the per-slot reads
//! and writes the owner counts on both paths.

mod node_support;

use std::time::Duration;

use slotkv_cluster::core::slots::SlotRange;
use slotkv_cluster::create_cluster;
use slotkv_cluster::{Cluster, ClusterError, Node};
use slotkv_transport::sim::SimNet;

use node_support::{owner_index, start_sim_nodes};

/// A hash tag whose slot `owner` masters, as `{tag}`.
async fn tag_owned_by(nodes: &[Node], owner: usize) -> String {
    for index in 0.. {
        let tag = format!("{{t{index}}}");
        if owner_index(nodes, tag.as_bytes()).await == owner {
            return tag;
        }
    }
    unreachable!("some tag hashes to every master")
}

/// The Redis error line of a failed call.
fn line<T: std::fmt::Debug>(result: Result<T, ClusterError>) -> String {
    result.unwrap_err().to_string()
}

/// Runs every check on keys tagged `tag` through `cluster`; `owner` holds them.
async fn check_all(cluster: &Cluster, owner: &Node, tag: &str) {
    let key = |name: &str| format!("{tag}{name}").into_bytes();
    check_ranges(cluster, owner, &key("range")).await;
    check_set_family(cluster, owner, &key("set")).await;
    check_incrbyfloat(cluster, &key("float")).await;
    check_copy(cluster, owner, &key("source"), &key("destination")).await;
    check_touch_and_unlink(cluster, owner, &key("a"), &key("b"), &key("missing")).await;
}

async fn check_ranges(cluster: &Cluster, owner: &Node, key: &[u8]) {
    cluster.set(key, b"Hello World").await.unwrap();
    assert_eq!(cluster.setrange(key, 6, b"Redis").await.unwrap(), 11);
    assert_eq!(owner.store().get(key).as_deref(), Some(&b"Hello Redis"[..]));
    assert_eq!(cluster.setrange(key, 13, b"!").await.unwrap(), 14);
    assert_eq!(&cluster.getrange(key, 11, -1).await.unwrap()[..], b"\0\0!");
    assert_eq!(&cluster.getrange(key, 0, 4).await.unwrap()[..], b"Hello");
    assert_eq!(&cluster.getrange(key, -8, -4).await.unwrap()[..], b"Redis");
    assert!(cluster.getrange(key, 5, 2).await.unwrap().is_empty());
    assert_eq!(
        line(cluster.setrange(key, -1, b"x").await),
        "ERR offset is out of range"
    );
    let missing = [key, b"-missing"].concat();
    assert_eq!(cluster.setrange(&missing, 3, b"").await.unwrap(), 0);
    assert_eq!(cluster.exists(&[&missing]).await.unwrap(), 0);
    assert!(cluster.getrange(&missing, 0, -1).await.unwrap().is_empty());
}

async fn check_set_family(cluster: &Cluster, owner: &Node, key: &[u8]) {
    assert!(cluster.setnx(key, b"first").await.unwrap());
    assert!(!cluster.setnx(key, b"second").await.unwrap());
    assert_eq!(
        cluster.getset(key, b"third").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(owner.store().get(key).as_deref(), Some(&b"third"[..]));
    cluster.setex(key, 100, b"expiring").await.unwrap();
    let remaining = cluster.pttl(key).await.unwrap();
    assert!((99_000..=100_000).contains(&remaining), "{remaining}");
    assert_eq!(
        cluster.getset(key, b"plain").await.unwrap().as_deref(),
        Some(&b"expiring"[..])
    );
    assert_eq!(cluster.ttl(key).await.unwrap(), -1, "GETSET clears the TTL");
    cluster.psetex(key, 1_500, b"short").await.unwrap();
    let remaining = cluster.pttl(key).await.unwrap();
    assert!((1..=1_500).contains(&remaining), "{remaining}");
    assert_eq!(
        line(cluster.setex(key, 0, b"v").await),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        line(cluster.psetex(key, -5, b"v").await),
        "ERR invalid expire time in 'psetex' command"
    );
    assert_eq!(owner.store().get(key).as_deref(), Some(&b"short"[..]));
}

async fn check_incrbyfloat(cluster: &Cluster, key: &[u8]) {
    cluster.set(key, b"10.50").await.unwrap();
    assert_eq!(&cluster.incr_by_float(key, 0.1).await.unwrap()[..], b"10.6");
    assert_eq!(&cluster.incr_by_float(key, -5.0).await.unwrap()[..], b"5.6");
    assert_eq!(
        cluster.get(key).await.unwrap().as_deref(),
        Some(&b"5.6"[..])
    );
    cluster.set(key, b"5.0e3").await.unwrap();
    assert_eq!(
        &cluster.incr_by_float(key, 2.0e2).await.unwrap()[..],
        b"5200"
    );
    cluster.set(key, b"not a number").await.unwrap();
    assert_eq!(
        line(cluster.incr_by_float(key, 1.0).await),
        "ERR value is not a valid float"
    );
    cluster.set(key, b"1e308").await.unwrap();
    assert_eq!(
        line(cluster.incr_by_float(key, 1e308).await),
        "ERR increment would produce NaN or Infinity"
    );
    assert_eq!(
        cluster.get(key).await.unwrap().as_deref(),
        Some(&b"1e308"[..])
    );
}

async fn check_copy(cluster: &Cluster, owner: &Node, source: &[u8], destination: &[u8]) {
    cluster.setex(source, 100, b"one").await.unwrap();
    assert!(cluster.copy(source, destination, false).await.unwrap());
    assert_eq!(owner.store().get(destination).as_deref(), Some(&b"one"[..]));
    assert_eq!(
        cluster.ttl(destination).await.unwrap(),
        100,
        "COPY keeps the TTL"
    );
    cluster.set(source, b"two").await.unwrap();
    assert!(!cluster.copy(source, destination, false).await.unwrap());
    assert!(cluster.copy(source, destination, true).await.unwrap());
    assert_eq!(
        cluster.get(destination).await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        line(cluster.copy(source, source, true).await),
        "ERR source and destination objects are the same"
    );
    assert_eq!(
        cluster.copy(b"{a}x", b"{b}y", false).await,
        Err(ClusterError::CrossSlot)
    );
}

async fn check_touch_and_unlink(
    cluster: &Cluster,
    owner: &Node,
    a: &[u8],
    b: &[u8],
    missing: &[u8],
) {
    cluster.mset(&[(a, b"1"), (b, b"2")]).await.unwrap();
    assert_eq!(cluster.touch(&[a, a, missing]).await.unwrap(), 2);
    assert_eq!(cluster.unlink(&[a, b, missing]).await.unwrap(), 2);
    assert!(owner.store().get(a).is_none());
    assert_eq!(cluster.unlink(&[a]).await.unwrap(), 0);
    assert_eq!(
        line(cluster.unlink(&[]).await),
        "ERR wrong number of arguments for 'unlink' command"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_string_commands_behave_as_in_redis_locally_and_forwarded() {
    let net = SimNet::new(5);
    let nodes = start_sim_nodes(&net, 3).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 0, Duration::from_secs(30))
        .await
        .unwrap();
    let cluster = nodes[0].cluster();
    let local = tag_owned_by(&nodes, 0).await;
    let remote = tag_owned_by(&nodes, 1).await;
    check_all(&cluster, &nodes[0], &local).await;
    check_all(&cluster, &nodes[1], &remote).await;
    assert!(
        nodes[0]
            .store()
            .get(format!("{remote}range").as_bytes())
            .is_none(),
        "the remote keys live on their owner only"
    );
    assert_eq!(nodes[0].stats(), Default::default());
    assert_eq!(nodes[1].stats(), Default::default());
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_slot_counts_the_reads_and_writes_its_owner_executed() {
    let net = SimNet::new(6);
    let nodes = start_sim_nodes(&net, 3).await;
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 0, Duration::from_secs(30))
        .await
        .unwrap();
    let tag = tag_owned_by(&nodes, 0).await;
    let (key, other) = (format!("{tag}a"), format!("{tag}b"));
    let slot = slotkv_engine::key_slot(key.as_bytes());
    let range = SlotRange::single(slot);
    // Through the owner's handle (the local path) and another node's (forwarded).
    let (local, remote) = (nodes[0].cluster(), nodes[1].cluster());
    local.set(key.as_bytes(), b"not a number").await.unwrap();
    remote.set(other.as_bytes(), b"x").await.unwrap();
    for _ in 0..3 {
        local.get(key.as_bytes()).await.unwrap();
    }
    remote.get(key.as_bytes()).await.unwrap();
    // One multi-key read; one write the engine refuses (not an integer) counts nothing.
    local
        .mget(&[key.as_bytes(), other.as_bytes()])
        .await
        .unwrap();
    assert!(local.incr(key.as_bytes()).await.is_err());
    let stats = nodes[0].slot_statistics(range);
    assert_eq!(stats.len(), 1);
    let stats = stats[0];
    assert_eq!(
        (stats.slot, stats.keys, stats.reads, stats.writes),
        (slot, 2, 5, 2),
        "{stats:?}"
    );
    assert!(stats.bytes > key.len() + 12 + other.len(), "{stats:?}");
    // Nothing of it on the node that only forwarded.
    let forwarder = nodes[1].slot_statistics(range)[0];
    assert_eq!(
        (forwarder.keys, forwarder.reads, forwarder.writes),
        (0, 0, 0)
    );
    let all = nodes[0].slot_statistics(SlotRange {
        start: 0,
        end: 16_383,
    });
    assert_eq!(all.len(), 16_384);
    assert_eq!(all.iter().map(|slot| slot.reads).sum::<u64>(), 5);
    assert!(nodes[0]
        .slot_statistics(SlotRange { start: 9, end: 3 })
        .is_empty());
    for node in nodes {
        node.shutdown().await;
    }
}
