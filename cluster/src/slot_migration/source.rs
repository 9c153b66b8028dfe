//! The source's side of a key-by-key migration: MIGRATE of a list of keys to a target
//! node, as one batch on the migration stream.
//!
//! Under the exclusive migration gate of every slot involved
//! ([`crate::node_state::migration_gate`]), so no request on a migrating slot runs in
//! between: read each key (value and remaining TTL) under its write stripe, send the batch,
//! wait for the target's ack (it comes only once the target's replicas hold the keys), then
//! delete the acknowledged keys (unless COPY), each under its stripe and logged, so this
//! node's replicas delete them too. A key is deleted only if it is unchanged since it was
//! read (a write that reached it another way keeps it here, to be moved again). Nothing is
//! deleted on a refusal, a send failure or a timeout.

use std::time::Duration;

use bytes::Bytes;
use slotkv_engine::{key_slot, ExportedEntry, Slot};
use slotkv_transport::PeerAddr;

use crate::node_state::write_log::{capture, Op};
use crate::node_state::NodeState;
use crate::slot_migration::batch::{
    encode_frame, frames_of_batch, AckOutcome, ImportRefusal, BATCH_KEYS_MAX, KEY_BYTES_MAX,
};
use crate::slot_migration::MigrationHub;

/// MIGRATE's default timeout for the whole batch (send and ack), in ms.
pub const DEFAULT_MIGRATE_TIMEOUT_MS: u64 = 10_000;

/// MIGRATE's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateOptions {
    /// COPY: leave the keys here too.
    pub copy: bool,
    /// REPLACE: overwrite keys that exist at the target (else they are BUSYKEY).
    pub replace: bool,
    /// Longest time for sending the batch, then again for its ack, in ms.
    pub timeout_ms: u64,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            copy: false,
            replace: false,
            timeout_ms: DEFAULT_MIGRATE_TIMEOUT_MS,
        }
    }
}

/// What a MIGRATE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateReply {
    /// OK: the keys found are at the target (and, without COPY, deleted here).
    Moved {
        /// Keys the target imported.
        keys: usize,
        /// Their key and value bytes.
        bytes: usize,
        /// Keys imported but kept here because a write changed them meanwhile.
        kept_changed: usize,
    },
    /// NOKEY: none of the keys exists here.
    NoKey,
}

/// Why a MIGRATE failed, worded as Redis replies. Nothing was deleted here except where a
/// variant says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// Some keys exist at the target and REPLACE was not given: those stay here (the
    /// others moved and, without COPY, were deleted here).
    #[error("ERR Target instance replied with error: BUSYKEY Target key name already exists.")]
    BusyKey {
        /// Keys moved.
        moved: usize,
        /// Keys left here because they exist at the target.
        busy: usize,
    },
    /// The batch could not be sent (`writing`) or its ack did not come in time; nothing
    /// was deleted here, and the target may hold a copy (a retry with REPLACE heals it).
    #[error(
        "IOERR error or timeout {} to target instance",
        if *writing { "writing" } else { "reading" }
    )]
    Io {
        /// Sending failed (else the ack did not arrive in time).
        writing: bool,
    },
    /// The target refused the batch; nothing was deleted here.
    #[error("ERR Target instance replied with error: {0}")]
    Refused(String),
    /// More keys than one batch carries.
    #[error("ERR MIGRATE of {count} keys exceeds the {max}-key batch limit")]
    TooManyKeys {
        /// Keys given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A key longer than a migration carries.
    #[error("ERR a key of {bytes} bytes exceeds the migration's {max}-byte key limit")]
    KeyTooLarge {
        /// The key's length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// The text of a refusal as the target would word its error.
pub(crate) fn refusal_text(refusal: &ImportRefusal) -> String {
    match refusal {
        ImportRefusal::NotImporting { slot } => {
            format!("MOVED {slot} (the target neither owns nor imports this hash slot)")
        }
        ImportRefusal::NotMaster => "the target is not a master".to_string(),
        ImportRefusal::WritesPaused => "TRYAGAIN the target's writes are paused".to_string(),
        ImportRefusal::ClusterDown => "CLUSTERDOWN The cluster is down".to_string(),
        ImportRefusal::Engine(text) => text.clone(),
        ImportRefusal::NotReplicated {
            acknowledged,
            wanted,
        } => format!(
            "NOREPLICAS {acknowledged} of the {wanted} other members of the target's shard \
             acknowledged the keys (a member that is down counts: bring it back, or FORGET it \
             if it is gone for good)"
        ),
        ImportRefusal::Incomplete => "the batch arrived incomplete".to_string(),
        ImportRefusal::SlotBusy { slot } => {
            format!("hash slot {slot} is owned or already imported by the target")
        }
        ImportRefusal::Admin(text) => text.clone(),
        ImportRefusal::Superseded { slot } => {
            format!("a later migration of hash slot {slot} runs at the target")
        }
    }
}

/// MIGRATE `keys` to `target` (see the module docs).
pub(crate) async fn migrate_keys(
    shared: &NodeState,
    hub: &MigrationHub,
    target: &PeerAddr,
    keys: &[&[u8]],
    options: MigrateOptions,
) -> Result<MigrateReply, MigrateError> {
    check_keys(keys)?;
    let mut slots: Vec<Slot> = keys.iter().map(|key| key_slot(key)).collect();
    slots.sort_unstable();
    slots.dedup();
    let _gates = shared.gates.close(&slots).await;
    let entries = read_entries(shared, keys);
    if entries.is_empty() {
        return Ok(MigrateReply::NoKey);
    }
    let outcome = ship(shared, hub, target, &entries, &[], options).await?;
    let busy = match outcome {
        AckOutcome::Imported { busy, .. } => busy,
        AckOutcome::Refused(refusal) => return Err(MigrateError::Refused(refusal_text(&refusal))),
        AckOutcome::Ready | AckOutcome::Owned { .. } | AckOutcome::Abandoned => {
            return Err(MigrateError::Refused(
                "the target answered a batch as a slots request".to_string(),
            ))
        }
    };
    let mut imported: Vec<&ExportedEntry> = Vec::with_capacity(entries.len());
    let mut busy_indices = busy.iter().peekable();
    for (index, entry) in entries.iter().enumerate() {
        if busy_indices.peek() == Some(&&(index as u32)) {
            busy_indices.next();
            continue;
        }
        imported.push(entry);
    }
    let kept_changed = if options.copy {
        0
    } else {
        delete_unchanged(shared, &imported)
    };
    let bytes = imported
        .iter()
        .map(|entry| entry.key.len() + entry.value.len())
        .sum();
    if !busy.is_empty() {
        return Err(MigrateError::BusyKey {
            moved: imported.len(),
            busy: busy.len(),
        });
    }
    Ok(MigrateReply::Moved {
        keys: imported.len(),
        bytes,
        kept_changed,
    })
}

fn check_keys(keys: &[&[u8]]) -> Result<(), MigrateError> {
    if keys.len() > BATCH_KEYS_MAX {
        return Err(MigrateError::TooManyKeys {
            count: keys.len(),
            max: BATCH_KEYS_MAX,
        });
    }
    match keys.iter().find(|key| key.len() > KEY_BYTES_MAX) {
        Some(key) => Err(MigrateError::KeyTooLarge {
            bytes: key.len(),
            max: KEY_BYTES_MAX,
        }),
        None => Ok(()),
    }
}

/// The keys that exist, with their values and remaining TTLs, each read under its stripe.
fn read_entries(shared: &NodeState, keys: &[&[u8]]) -> Vec<ExportedEntry> {
    read_states(shared, keys.iter().copied()).0
}

/// The current state of each key, read under its stripe: the keys that exist (value and
/// remaining TTL) and those that do not (absent, or expired).
pub(crate) fn read_states<'a>(
    shared: &NodeState,
    keys: impl Iterator<Item = &'a [u8]>,
) -> (Vec<ExportedEntry>, Vec<Bytes>) {
    let store = shared.store.get();
    let clock = shared.store.clock();
    let mut entries = Vec::new();
    let mut absent = Vec::new();
    for key in keys {
        let _stripe = shared.log.lock_slot(key_slot(key));
        let Op::Set {
            key,
            value,
            expire_at_ms,
        } = capture(&store, key)
        else {
            absent.push(Bytes::copy_from_slice(key));
            continue;
        };
        let now_ms = clock.now_ms();
        let ttl_ms = match expire_at_ms {
            Some(deadline) if deadline <= now_ms => {
                absent.push(key);
                continue;
            }
            Some(deadline) => Some(deadline - now_ms),
            None => None,
        };
        entries.push(ExportedEntry { key, value, ttl_ms });
    }
    (entries, absent)
}

/// Sends the batch (its keys, and the deletions of an atomic migration's tail) and waits
/// for its ack, each within the timeout.
pub(crate) async fn ship(
    shared: &NodeState,
    hub: &MigrationHub,
    target: &PeerAddr,
    entries: &[ExportedEntry],
    deletes: &[Bytes],
    options: MigrateOptions,
) -> Result<AckOutcome, MigrateError> {
    let sent = send_batch(shared, hub, target, entries, deletes, options).await?;
    sent.ack(hub, options).await
}

/// A batch sent whose ack is awaited.
pub(crate) struct SentBatch {
    batch: u64,
    ack: tokio::sync::oneshot::Receiver<AckOutcome>,
}

impl SentBatch {
    /// Waits for the ack, at most the options' timeout.
    pub(crate) async fn ack(
        self,
        hub: &MigrationHub,
        options: MigrateOptions,
    ) -> Result<AckOutcome, MigrateError> {
        let timeout = Duration::from_millis(options.timeout_ms);
        match tokio::time::timeout(timeout, self.ack).await {
            Ok(Ok(outcome)) => Ok(outcome),
            _ => {
                hub.forget(self.batch);
                Err(MigrateError::Io { writing: false })
            }
        }
    }
}

/// Sends the batch's frames within the timeout, in this node's turn for the target (see
/// [`MigrationHub::send_turn`]); its ack is awaited separately (so an atomic migration
/// keeps a few batches in flight).
pub(crate) async fn send_batch(
    shared: &NodeState,
    hub: &MigrationHub,
    target: &PeerAddr,
    entries: &[ExportedEntry],
    deletes: &[Bytes],
    options: MigrateOptions,
) -> Result<SentBatch, MigrateError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(options.timeout_ms);
    let Ok(_turn) = tokio::time::timeout_at(deadline, hub.send_turn(target)).await else {
        return Err(MigrateError::Io { writing: true });
    };
    let (batch, ack) = hub.expect_ack(target);
    let sending = async {
        for frame in frames_of_batch(batch, options.replace, entries, deletes) {
            let bytes = Bytes::from(encode_frame(&frame));
            shared.endpoint.send_bulk(target, bytes).await?;
        }
        Ok::<(), slotkv_transport::SendError>(())
    };
    match tokio::time::timeout_at(deadline, sending).await {
        Ok(Ok(())) => Ok(SentBatch { batch, ack }),
        Ok(Err(error)) => {
            hub.forget(batch);
            tracing::debug!(%target, batch, %error, "could not send a migration batch");
            Err(MigrateError::Io { writing: true })
        }
        Err(_) => {
            hub.forget(batch);
            Err(MigrateError::Io { writing: true })
        }
    }
}

/// Deletes each acknowledged key that still holds what was sent (logged, so replicas
/// delete it too); returns how many were kept because they changed.
fn delete_unchanged(shared: &NodeState, entries: &[&ExportedEntry]) -> usize {
    let store = shared.store.get();
    let mut kept = 0;
    for entry in entries {
        let _stripe = shared.log.lock_slot(key_slot(&entry.key));
        let unchanged = store
            .get(&entry.key)
            .is_some_and(|value| value == entry.value)
            && store.expire_at_ms(&entry.key).is_some() == entry.ttl_ms.is_some();
        if !unchanged {
            kept += 1;
            continue;
        }
        if store.apply_del(&entry.key).is_ok() {
            shared.log.record(&store, &[&entry.key[..]]);
        }
    }
    kept
}
