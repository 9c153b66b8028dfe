//! Load for the tests that change the cluster's shape under traffic: tasks writing and
//! reading (and now and then deleting) their own keys through a `Cluster` handle, each read checked against the last
//! acknowledged write (or the one in doubt), and a preload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use slotkv_cluster::Cluster;

/// A key's last acknowledged value, and the value of a write whose outcome is unknown.
#[derive(Default, Clone)]
pub(crate) struct Expected {
    pub(crate) acknowledged: Option<Vec<u8>>,
    /// `Some(None)`: a delete whose outcome is unknown.
    pub(crate) in_doubt: Option<Option<Vec<u8>>>,
}

impl Expected {
    pub(crate) fn admits(&self, read: Option<&[u8]>) -> bool {
        read == self.acknowledged.as_deref()
            || self
                .in_doubt
                .as_ref()
                .is_some_and(|doubt| read == doubt.as_deref())
    }
}

/// What one writer-reader task saw.
#[derive(Default)]
pub(crate) struct TaskReport {
    pub(crate) writes: usize,
    pub(crate) reads: usize,
    pub(crate) errors: Vec<String>,
    pub(crate) wrong_reads: Vec<String>,
    pub(crate) expected: HashMap<Vec<u8>, Expected>,
}

/// Writes and reads its own keys through `cache` until `stop`, checking each read
/// against the last acknowledged write.
pub(crate) async fn write_and_read(
    task: usize,
    cache: Cluster,
    keys: Vec<Vec<u8>>,
    initial: HashMap<Vec<u8>, Expected>,
    stop: Arc<AtomicBool>,
) -> TaskReport {
    load(task, cache, keys, initial, stop, false).await
}

/// As [`write_and_read`], and one write in eleven deletes its key instead (a move must
/// carry deletions too).
pub(crate) async fn write_read_and_delete(
    task: usize,
    cache: Cluster,
    keys: Vec<Vec<u8>>,
    initial: HashMap<Vec<u8>, Expected>,
    stop: Arc<AtomicBool>,
) -> TaskReport {
    load(task, cache, keys, initial, stop, true).await
}

async fn load(
    task: usize,
    cache: Cluster,
    keys: Vec<Vec<u8>>,
    initial: HashMap<Vec<u8>, Expected>,
    stop: Arc<AtomicBool>,
    with_deletes: bool,
) -> TaskReport {
    let mut report = TaskReport {
        expected: initial,
        ..TaskReport::default()
    };
    let mut round = 0usize;
    while !stop.load(Ordering::Acquire) {
        round += 1;
        let key = &keys[(round * 7919) % keys.len()];
        let value = format!("t{task}:r{round}").into_bytes();
        let entry = report.expected.entry(key.clone()).or_default();
        let deletes = with_deletes && round.is_multiple_of(11);
        let written = if deletes {
            cache.del(&[&key[..]]).await.map(|_| None)
        } else {
            cache.set(key, &value).await.map(|()| Some(value.clone()))
        };
        match written {
            Ok(value) => {
                entry.acknowledged = value;
                entry.in_doubt = None;
                report.writes += 1;
            }
            Err(error) => {
                entry.in_doubt = Some((!deletes).then_some(value));
                report
                    .errors
                    .push(format!("SET {}: {error}", String::from_utf8_lossy(key)));
            }
        }
        let probe = &keys[(round * 104_729 + 13) % keys.len()];
        match cache.get(probe).await {
            Ok(read) => {
                report.reads += 1;
                let expected = report.expected.get(probe).cloned().unwrap_or_default();
                if !expected.admits(read.as_deref()) {
                    report.wrong_reads.push(format!(
                        "GET {} = {:?}, acknowledged {:?}",
                        String::from_utf8_lossy(probe),
                        read.map(|value| String::from_utf8_lossy(&value).to_string()),
                        expected
                            .acknowledged
                            .map(|value| String::from_utf8_lossy(&value).to_string()),
                    ));
                }
            }
            Err(error) => report
                .errors
                .push(format!("GET {}: {error}", String::from_utf8_lossy(probe))),
        }
    }
    report
}

/// Writes `keys` (value: the key itself) through `cache`, 64 at a time.
pub(crate) async fn preload(cache: &Cluster, keys: &[Vec<u8>]) {
    for chunk in keys.chunks(64) {
        let writes = chunk.iter().map(|key| cache.set(key, key));
        for result in futures_util::future::join_all(writes).await {
            result.unwrap();
        }
    }
}

/// What a task expects of `keys` after [`preload`]: each holds its own name.
pub(crate) fn preloaded(keys: &[Vec<u8>]) -> HashMap<Vec<u8>, Expected> {
    keys.iter()
        .map(|key| {
            let expected = Expected {
                acknowledged: Some(key.clone()),
                in_doubt: None,
            };
            (key.clone(), expected)
        })
        .collect()
}
