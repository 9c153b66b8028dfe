//! The clients of the crash and chaos tests: writers that write with replica durability and
//! keep a history of what they attempted and what was acknowledged, and a reader that checks
//! every value it reads was written by someone (no phantoms).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use slotkv_cluster::core::rng::Rng;
use slotkv_cluster::{Cluster, Durability};

/// Keys each writer cycles through (so later writes overwrite earlier ones).
pub(crate) const KEYS_PER_WRITER: u64 = 200;
/// Back-off after a refused call: some refusals come back at once (CLUSTERDOWN).
const RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// Reads of one key the final check retries on an error (200 ms apart) before failing.
const LOST_READ_ATTEMPTS: u32 = 50;

/// What the clients did.
#[derive(Default)]
pub(crate) struct History {
    /// Every value attempted per key.
    pub(crate) attempted: HashMap<String, HashSet<u64>>,
    /// The last acknowledged value per key.
    pub(crate) acknowledged: HashMap<String, u64>,
    /// Writes acknowledged.
    pub(crate) acknowledged_writes: u64,
    /// Writes refused, failed or not durable.
    pub(crate) failed_writes: u64,
    /// Reads answered.
    pub(crate) reads: u64,
    /// Reads that returned a value no writer attempted for the key.
    pub(crate) phantoms: Vec<(String, String)>,
}

/// The shared history and the flag that stops the clients.
#[derive(Clone, Default)]
pub(crate) struct Clients {
    /// The history.
    pub(crate) history: Arc<Mutex<History>>,
    /// Set to stop every client.
    pub(crate) stop: Arc<AtomicBool>,
}

impl Clients {
    /// Writer `writer` writes `w<writer>:<i mod KEYS_PER_WRITER>` = `i` for i = 0, 1, ...
    /// with replica durability until stopped.
    pub(crate) async fn write(self, cluster: Cluster, writer: usize) {
        let cluster = cluster.with_durability(Durability::Replicas {
            replicas: 1,
            timeout_ms: 2_000,
        });
        let mut sequence: u64 = 0;
        while !self.stop.load(Ordering::Acquire) {
            let key = format!("w{writer}:{}", sequence % KEYS_PER_WRITER);
            self.history
                .lock()
                .attempted
                .entry(key.clone())
                .or_default()
                .insert(sequence);
            let result = cluster
                .set(key.as_bytes(), sequence.to_string().as_bytes())
                .await;
            let failed = result.is_err();
            {
                let mut history = self.history.lock();
                if failed {
                    history.failed_writes += 1;
                } else {
                    history.acknowledged.insert(key, sequence);
                    history.acknowledged_writes += 1;
                }
            }
            if failed {
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            sequence += 1;
        }
    }

    /// Reads random keys of `writers` writers until stopped, recording phantoms.
    pub(crate) async fn read(self, cluster: Cluster, writers: usize) {
        let mut rng = Rng::new(7);
        while !self.stop.load(Ordering::Acquire) {
            let writer = rng.below(writers as u64);
            let key = format!("w{writer}:{}", rng.below(KEYS_PER_WRITER));
            match cluster.get(key.as_bytes()).await {
                Ok(Some(value)) => {
                    let text = String::from_utf8_lossy(&value).into_owned();
                    let mut history = self.history.lock();
                    history.reads += 1;
                    let written = text.parse::<u64>().ok().is_some_and(|sequence| {
                        history
                            .attempted
                            .get(&key)
                            .is_some_and(|values| values.contains(&sequence))
                    });
                    if !written {
                        history.phantoms.push((key, text));
                    }
                }
                Ok(None) => self.history.lock().reads += 1,
                Err(_) => tokio::time::sleep(RETRY_BACKOFF).await,
            }
        }
    }

    /// The acknowledged writes whose key no longer reads back a value of its writer that is
    /// at least the acknowledged one (key, acknowledged, read).
    pub(crate) async fn lost(&self, reader: &Cluster) -> Vec<(String, u64, Option<u64>)> {
        let acknowledged = self.history.lock().acknowledged.clone();
        let mut lost = Vec::new();
        for (key, acknowledged) in acknowledged {
            // Unavailable for a moment (a paused slot resolving its flip, a failover) is
            // not lost: retry for a while. Still unavailable then counts as lost (read
            // `None`), so the caller prints what it knows of the run.
            let mut attempts = 0;
            let value = loop {
                match reader.get(key.as_bytes()).await {
                    Ok(value) => break value,
                    Err(error) if attempts < LOST_READ_ATTEMPTS => {
                        attempts += 1;
                        eprintln!("reading back {key} failed ({error}); retrying");
                        tokio::time::sleep(RETRY_BACKOFF * 10).await;
                    }
                    Err(error) => {
                        eprintln!("reading back {key} failed {attempts} times: {error}");
                        break None;
                    }
                }
            };
            let read =
                value.and_then(|value| std::str::from_utf8(&value).ok()?.parse::<u64>().ok());
            let held = read.is_some_and(|read| {
                read >= acknowledged
                    && self
                        .history
                        .lock()
                        .attempted
                        .get(&key)
                        .is_some_and(|values| values.contains(&read))
            });
            if !held {
                lost.push((key, acknowledged, read));
            }
        }
        lost
    }
}
