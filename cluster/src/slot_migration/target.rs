//! The target's side of a migration batch (key by key, or an atomic migration's snapshot
//! and tail, which also deletes keys): imports a complete batch
//! ([`super::batch::CompleteBatch`]) into its engine with MIGRATE's REPLACE semantics, logs
//! each imported key to its write log (so its replicas receive it through normal
//! replication), waits until every replica it streams to acknowledged them, and only then
//! answers the source with an ack the source may delete on.

use std::time::Duration;

use slotkv_engine::{key_slot, ExportedEntry, Slot};

use crate::core::slots::SlotState;
use crate::node_state::write_log::WriteGate;
use crate::node_state::NodeState;
use crate::slot_migration::batch::{bounded_text, AckOutcome, CompleteBatch, ImportRefusal};

/// Longest wait for the target's replicas to acknowledge an imported batch, in ms.
pub(crate) const REPLICA_ACK_TIMEOUT_MS: u64 = 5_000;

/// Imports `batch` and returns the ack to send (see the module docs).
pub(crate) async fn import_batch(shared: &NodeState, batch: &CompleteBatch) -> AckOutcome {
    let slots = batch.slots();
    if let Err(refusal) = check_target(shared, &slots) {
        return AckOutcome::Refused(refusal);
    }
    let (busy, offset) = match apply(shared, batch) {
        Ok(applied) => applied,
        Err(refusal) => return AckOutcome::Refused(refusal),
    };
    let imported = batch.entries.len() - busy.len();
    if let Some(offset) = offset {
        // Every replica this master streams to holds the keys before the source deletes.
        let wanted = shared.log.replicas_at(0);
        if wanted > 0 {
            let timeout = Duration::from_millis(REPLICA_ACK_TIMEOUT_MS);
            let acknowledged = shared.log.wait(offset, wanted, timeout).await;
            if acknowledged < wanted {
                return AckOutcome::Refused(ImportRefusal::NotReplicated {
                    acknowledged: acknowledged as u32,
                    wanted: wanted as u32,
                });
            }
        }
    }
    AckOutcome::Imported {
        keys: imported as u32,
        busy,
    }
}

/// A master that owns or imports every slot of the batch (a RESTORE-ASKING in Redis).
fn check_target(shared: &NodeState, slots: &[Slot]) -> Result<(), ImportRefusal> {
    let table = shared.routing.table();
    if !table.myself_is_master {
        return Err(ImportRefusal::NotMaster);
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
