//! The target's side of a migration batch (key by key, or an atomic migration's snapshot
//! and tail, which also deletes keys): imports a complete batch
//! ([`super::batch::CompleteBatch`]) into its engine with MIGRATE's REPLACE semantics, logs
//! each imported key to its write log (so its replicas receive it through normal
//! replication), waits until its replicas acknowledged them — every one it streams to, and
//! at least as many as its shard has other members, failing ones included (its replicas,
//! and a former master it replaced that is down), so neither a replica still waiting for
//! its first sync nor one that is down lets the target become the keys' only copy (the
//! batch is refused instead, and the source keeps the slots) — and
//! only then answers the source with an ack the source may delete on.

use std::time::Duration;

use slotkv_engine::{key_slot, ExportedEntry, Slot};

use crate::core::slots::SlotState;
use crate::node_state::write_log::WriteGate;
use crate::node_state::NodeState;
use crate::slot_migration::batch::{bounded_text, AckOutcome, CompleteBatch, ImportRefusal};

/// Longest wait for the target's replicas to acknowledge an imported batch, in ms.
pub(crate) const REPLICA_ACK_TIMEOUT_MS: u64 = 5_000;

/// A batch written to the engine and logged, whose ack waits for the replicas
/// ([`Imported::acknowledge`]).
#[derive(Debug)]
pub(crate) struct Imported {
    /// Keys written (the busy ones left out).
    pub(crate) keys: u32,
    busy: Vec<u32>,
    offset: Option<u64>,
}

/// Writes `batch` into the engine and the log now; `Err` is the refusal to send (what
/// applied before an engine refusal is logged all the same).
///
/// Synchronous on purpose: the stream's consumer applies one source's batches in the
/// order they arrived, so a later batch (an atomic migration's tail round, carrying a key's
/// newer state) never lands before an earlier one (its snapshot, carrying the older); only
/// the wait for the replicas runs beside the stream.
pub(crate) fn apply_batch(
    shared: &NodeState,
    batch: &CompleteBatch,
) -> Result<Imported, AckOutcome> {
    let slots = batch.slots();
    check_target(shared, &slots).map_err(AckOutcome::Refused)?;
    let (busy, offset) = apply(shared, batch).map_err(AckOutcome::Refused)?;
    Ok(Imported {
        keys: (batch.entries.len() - busy.len()) as u32,
        busy,
        offset,
    })
}

impl Imported {
    /// Waits until every replica this master streams to holds the batch (at most
    /// [`REPLICA_ACK_TIMEOUT_MS`]), then returns the ack the source may delete on.
    pub(crate) async fn acknowledge(self, shared: &NodeState) -> AckOutcome {
        if let Some(offset) = self.offset {
            if let Err(refusal) = replicated(shared, offset).await {
                return AckOutcome::Refused(refusal);
            }
        }
        AckOutcome::Imported {
            keys: self.keys,
            busy: self.busy,
        }
    }
}

/// Waits until every replica this master streams to holds its log up to `offset` (at most
/// [`REPLICA_ACK_TIMEOUT_MS`]): what a target waits for before it acknowledges an import,
/// or confirms an abandoned one's drop.
pub(crate) async fn replicated(shared: &NodeState, offset: u64) -> Result<(), ImportRefusal> {
    let table = shared.routing.table();
    // A replica that is not streamed to yet (its sync not begun, or refused) holds none of
    // the batch, and neither does a member of the shard that is down: counting only the
    // streamed replicas, or the healthy ones, would make this master the keys' only copy,
    // lost with it, though they were replicated at the source (the 30-minute chaos run
    // lost 53 keys so: a target promoted while its former master was down acknowledged an
    // import alone, then crashed).
    let listed = table.shard_members_besides_myself();
    let wanted = wanted_replicas(shared.log.replicas_at(0), listed);
    if wanted == 0 {
        return Ok(());
    }
    let timeout = Duration::from_millis(REPLICA_ACK_TIMEOUT_MS);
    let acknowledged = shared.log.wait(offset, wanted, timeout).await;
    if acknowledged < wanted {
        return Err(ImportRefusal::NotReplicated {
            acknowledged: acknowledged as u32,
            wanted: wanted as u32,
        });
    }
    Ok(())
}

/// How many replicas must hold an imported batch: every one streamed to, and at least as
/// many as the shard has other members.
fn wanted_replicas(streamed: usize, listed: usize) -> usize {
    streamed.max(listed)
}

/// A master that owns or imports every slot of the batch (a RESTORE-ASKING in Redis).
fn check_target(shared: &NodeState, slots: &[Slot]) -> Result<(), ImportRefusal> {
    let table = shared.routing.table();
    if !table.myself_is_master {
        return Err(ImportRefusal::NotMaster);
    }
    if !table.cluster_ok {
        return Err(ImportRefusal::ClusterDown);
    }
    for slot in slots {
        let owned = table
            .owner(*slot)
            .is_some_and(|owner| owner.id == table.myself);
        let importing = matches!(table.state(*slot), SlotState::Importing(_));
        if !owned && !importing {
            return Err(ImportRefusal::NotImporting { slot: *slot });
        }
    }
    Ok(())
}

/// Writes the batch slot by slot under each slot's write stripe and logs it; returns the
/// indices of busy keys and the last log offset written.
fn apply(
    shared: &NodeState,
    batch: &CompleteBatch,
) -> Result<(Vec<u32>, Option<u64>), ImportRefusal> {
    let store = shared.store.get();
    let mut busy = Vec::new();
    let mut offset = None;
    let mut by_slot: Vec<(Slot, usize)> = batch
        .entries
        .iter()
        .enumerate()
        .map(|(index, entry)| (key_slot(&entry.key), index))
        .collect();
    by_slot.sort_unstable();
    for group in by_slot.chunk_by(|left, right| left.0 == right.0) {
        let slot = group[0].0;
        let _stripe = shared.log.lock_slot(slot);
        if shared.log.gate() != WriteGate::Open {
            return Err(ImportRefusal::WritesPaused);
        }
        let mut written: Vec<&[u8]> = Vec::with_capacity(group.len());
        for (_, index) in group {
            let entry: &ExportedEntry = &batch.entries[*index];
            if !batch.replace && store.exists(&[&entry.key[..]]).unwrap_or(0) > 0 {
                busy.push(*index as u32);
                continue;
            }
            let imported = store.import_batch(std::slice::from_ref(entry));
            written.push(&entry.key);
            if let Err(error) = imported {
                // What applied before the refusal is logged all the same.
                shared.log.record(&store, &written);
                return Err(ImportRefusal::Engine(bounded_text(&error.to_string())));
            }
        }
        if !written.is_empty() {
            offset = Some(shared.log.record(&store, &written));
        }
    }
    // An atomic migration's deletions (keys removed at the source since its snapshot; no
    // key is both written and deleted by one batch).
    let mut deletes: Vec<(Slot, &[u8])> = batch
        .deletes
        .iter()
        .map(|key| (key_slot(key), &key[..]))
        .collect();
    deletes.sort_unstable();
    for group in deletes.chunk_by(|left, right| left.0 == right.0) {
        let _stripe = shared.log.lock_slot(group[0].0);
        if shared.log.gate() != WriteGate::Open {
            return Err(ImportRefusal::WritesPaused);
        }
        let keys: Vec<&[u8]> = group.iter().map(|(_, key)| *key).collect();
        if let Err(error) = store.del(&keys) {
            return Err(ImportRefusal::Engine(bounded_text(&error.to_string())));
        }
        offset = Some(shared.log.record(&store, &keys));
    }
    busy.sort_unstable();
    Ok((busy, offset))
}
