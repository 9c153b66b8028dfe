//! Snapshot persistence measured: 1M small keys (16-byte keys, 32-byte values, every tenth
//! with a TTL) in a one-node cluster, saved with `Node::save_snapshot`, then loaded by a
//! restart on the same data directory; prints the save time, the file size and the start
//! time with and without the snapshot.
//!
//! Run: `cargo run --release --example snapshot [keys, default 1000000]`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use slotkv::engine::SetOptions;
use slotkv::transport::tcp::{ClusterSecret, TcpConfig};
use slotkv::{create_cluster, ExpireCondition, Node, NodeTransport, Persistence};

type ExampleResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn transport() -> ExampleResult<NodeTransport> {
    let secret = ClusterSecret::new(b"slotkv snapshot example secret".to_vec())?;
    Ok(NodeTransport::Tcp(TcpConfig::new(secret)))
}

async fn start(directory: &std::path::Path, persistence: Persistence) -> ExampleResult<Node> {
    Ok(Node::builder(transport()?)
        .node_timeout_ms(1_000)
        .data_dir(directory)
        .persistence(persistence)
        .start()
        .await?)
}

async fn run(keys: usize) -> ExampleResult<()> {
    let directory =
        std::env::temp_dir().join(format!("slotkv-snapshot-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    let node = start(&directory, Persistence::Snapshot).await?;
    create_cluster(&[&node], 0, Duration::from_secs(10)).await?;
    // Filled through the engine directly: the measurement is the snapshot, not the writes.
    let store = node.store();
    for index in 0..keys {
        let key = format!("key:{index:012}");
        store.set(key.as_bytes(), &[b'v'; 32], SetOptions::default())?;
        if index % 10 == 0 {
            store.expire(key.as_bytes(), 3_600, ExpireCondition::Always)?;
        }
    }
    let info = node.save_snapshot().await?;
    println!(
        "save: {} keys, {:.1} MB, {} ms ({:.0} K keys/s)",
        info.keys,
        info.bytes as f64 / 1e6,
        info.duration.as_millis(),
        info.keys as f64 / info.duration.as_secs_f64() / 1e3
    );
    // On demand, then on shutdown: the shutdown's save replaces the first.
    let stopping = Instant::now();
    node.shutdown().await;
    println!(
        "shutdown with its snapshot: {} ms",
        stopping.elapsed().as_millis()
    );

    let starting = Instant::now();
    let node = start(&directory, Persistence::Snapshot).await?;
    let loaded_ms = starting.elapsed().as_millis();
    let loaded = node.store().dbsize();
    println!("start with the snapshot: {loaded_ms} ms, {loaded} keys loaded");
    node.shutdown().await;
    std::fs::remove_file(directory.join(slotkv::cluster::SNAPSHOT_FILE))?;
    let starting = Instant::now();
    let node = start(&directory, Persistence::Snapshot).await?;
    println!(
        "start without a snapshot: {} ms",
        starting.elapsed().as_millis()
    );
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&directory);
    if loaded != keys {
        return Err(format!("loaded {loaded} keys, saved {keys}").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let keys = std::env::args()
        .nth(1)
        .and_then(|argument| argument.parse().ok())
        .unwrap_or(1_000_000);
    match run(keys).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("snapshot example failed: {error}");
            ExitCode::FAILURE
        }
    }
}
