//! The gate between the key-by-key slot migration and the data path on a migrating slot.
//!
//! On a MIGRATING slot the owner's rules ([`crate::routing::serve`]) look at which keys
//! exist here before they execute (present: execute, absent: ASK the target). A migration
//! batch (`crate::slot_migration::source`) reads keys, ships them, waits for the target's
//! acknowledgement and deletes them. Without a gate a request could see a key present, the
//! batch delete it, and the request then write a fresh copy here (two owners) or read
//! nothing (a lost read). So each request on a migrating slot holds its slot's gate shared
//! from the rules' check through its execution, and a batch holds the gate of each of its
//! slots exclusively from its first read to its last delete: a request sees the slot
//! either wholly before a batch or wholly after it, as Redis's single thread sees MIGRATE.
//!
//! Gates are striped (slot modulo [`GATE_STRIPES`]); an async lock, because a batch holds
//! its gates across its network round trip.

use slotkv_engine::Slot;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Stripes of the migration gate (slot modulo this).
pub(crate) const GATE_STRIPES: usize = 1024;

/// The striped gates of one node (see the module docs).
pub(crate) struct MigrationGates {
    stripes: Box<[RwLock<()>]>,
}

impl Default for MigrationGates {
    fn default() -> Self {
        MigrationGates {
            stripes: (0..GATE_STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }
}

impl MigrationGates {
    /// The stripe index of `slot`.
    pub(crate) fn stripe_of(slot: Slot) -> usize {
        usize::from(slot) % GATE_STRIPES
    }

    /// A request's shared hold on `slot`'s gate.
    pub(crate) async fn enter(&self, slot: Slot) -> RwLockReadGuard<'_, ()> {
        self.stripes[Self::stripe_of(slot)].read().await
    }

    /// A batch's exclusive hold on the gates of `slots`, taken in stripe order (so two
    /// batches never wait on each other crosswise).
    pub(crate) async fn close(&self, slots: &[Slot]) -> Vec<RwLockWriteGuard<'_, ()>> {
        let mut stripes: Vec<usize> = slots.iter().map(|slot| Self::stripe_of(*slot)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].write().await);
        }
        guards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_gate_holds_requests_until_the_batch_ends() {
        let gates = std::sync::Arc::new(MigrationGates::default());
        let closed = gates.close(&[7, 7 + GATE_STRIPES as u16, 9]).await;
        assert_eq!(closed.len(), 2, "one guard per stripe");
        let entering = {
            let gates = std::sync::Arc::clone(&gates);
            tokio::spawn(async move {
                let _open = gates.enter(7).await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!entering.is_finished(), "a request passed a closed gate");
        let _other = gates.enter(8).await;
        drop(closed);
        entering.await.unwrap();
    }
}
