//! End-to-end scenarios through the facade: a QUIC cluster serves every command through
//! every node and keeps replica-acknowledged writes across a failover; a TCP node restarts
//! from its persisted nodes.conf and rejoins with its id and role.

use std::path::PathBuf;
use std::time::Duration;

use slotkv::transport::quic::{DevCertificateAuthority, QuicConfig};
use slotkv::transport::tcp::{ClusterSecret, TcpConfig};
use slotkv::{
    create_cluster, Cluster, Durability, ExpireCondition, ExpireTime, Node, NodeTransport,
};

const NODE_TIMEOUT_MS: u64 = 1_000;

async fn start(transport: NodeTransport, bind: &str, data_dir: Option<PathBuf>) -> Node {
    let mut builder = Node::builder(transport)
        .bind(bind)
        .node_timeout_ms(NODE_TIMEOUT_MS)
        .request_timeout_ms(1_000);
    if let Some(directory) = data_dir {
        builder = builder.data_dir(directory);
    }
    builder.start().await.unwrap()
}

fn tcp() -> NodeTransport {
    let secret = ClusterSecret::new(b"slotkv facade tests secret".to_vec()).unwrap();
    NodeTransport::Tcp(TcpConfig::new(secret))
}

async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn commands(cluster: &Cluster, tag: usize) {
    for index in 0..9 {
        let key = format!("facade:{tag}:{index}");
        let key = key.as_bytes();
        cluster.set(key, b"1").await.unwrap();
        assert_eq!(cluster.incr(key).await.unwrap(), 2);
        assert_eq!(cluster.append(key, b"x").await.unwrap(), 2);
        assert_eq!(cluster.get(key).await.unwrap().as_deref(), Some(&b"2x"[..]));
        let expire = ExpireTime::Milliseconds(60_000);
        assert!(cluster
            .expire(key, expire, ExpireCondition::Always)
            .await
            .unwrap());
        assert!(cluster.pttl(key).await.unwrap() > 0);
        assert_eq!(
            cluster.getdel(key).await.unwrap().as_deref(),
            Some(&b"2x"[..])
        );
        assert_eq!(cluster.exists(&[key]).await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_cluster_serves_every_node_and_keeps_acknowledged_writes_across_failover() {
    let authority = DevCertificateAuthority::generate().unwrap();
    let mut nodes = Vec::new();
    for _ in 0..6 {
        let identity = authority.issue_node_identity().unwrap();
        let transport = NodeTransport::Quic(QuicConfig::new(identity, authority.trust_anchor()));
        nodes.push(start(transport, "127.0.0.1:0", None).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 1, Duration::from_secs(30))
        .await
        .unwrap();
    for (index, node) in nodes.iter().enumerate() {
        commands(&node.cluster(), index).await;
    }
    let durable = nodes[0].cluster().with_durability(Durability::Replicas {
        replicas: 1,
        timeout_ms: 5_000,
    });
    for index in 0..500 {
        let key = format!("quic:{index}");
        durable.set(key.as_bytes(), key.as_bytes()).await.unwrap();
    }
    let slot = slotkv::key_slot(b"quic:0");
    let owner = nodes[0]
        .inspect(move |core| core.slot_owner(slot))
        .await
        .unwrap();
    let victim = nodes
        .iter()
        .position(|node| Some(node.id()) == owner)
        .unwrap();
    drop(nodes.remove(victim));
    let reader = nodes[0].cluster();
    assert!(
        eventually(Duration::from_secs(30), || async {
            matches!(reader.get(b"quic:0").await, Ok(Some(_)))
        })
        .await
    );
    for index in 0..500 {
        let key = format!("quic:{index}");
        let value = reader.get(key.as_bytes()).await.unwrap();
        assert_eq!(value.as_deref(), Some(key.as_bytes()));
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_from_its_persisted_config_with_its_id_and_role() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = std::env::temp_dir().join(format!("slotkv-restart-{}-{nanos}", std::process::id()));
    let mut nodes = Vec::new();
    for index in 0..6 {
        nodes.push(start(tcp(), "127.0.0.1:0", Some(root.join(format!("n{index}")))).await);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    create_cluster(&refs, 1, Duration::from_secs(30))
        .await
        .unwrap();
    nodes[0].cluster().set(b"persisted", b"yes").await.unwrap();
    let replica = nodes.remove(5);
    let (id, address) = (replica.id(), replica.bus_address().to_string());
    let master = replica.inspect(|core| core.my_master()).await.unwrap();
    replica.shutdown().await;
    // The old listener closes asynchronously after shutdown; retry the bind briefly.
    let mut restarted = None;
    for _ in 0..100 {
        let attempt = Node::builder(tcp())
            .bind(address.as_str())
            .node_timeout_ms(NODE_TIMEOUT_MS)
            .data_dir(root.join("n5"))
            .start()
            .await;
        if let Ok(node) = attempt {
            restarted = Some(node);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = restarted.expect("the restarted node could not bind its old address");
    assert_eq!(restarted.id(), id);
    assert!(
        eventually(Duration::from_secs(20), || async {
            let role = restarted.inspect(|core| core.my_master()).await.unwrap();
            role == master && restarted.memory().keys == nodes[2].memory().keys
        })
        .await,
        "the restarted replica did not resume replicating its master"
    );
    restarted.shutdown().await;
    for node in nodes {
        node.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&root);
}
