//! Multi-slot convenience: MGET and MSET over keys in many slots, split per slot and run
//! concurrently, answers joined in the caller's order.
//!
//! **Not atomic across slots**: each slot's part is one atomic same-slot command, but
//! another client may observe some parts applied and not others, and on error some parts
//! may have been applied. Use same-slot keys (hash tags) with [`Cluster::mset`] for
//! atomicity.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::future::join_all;
use slotkv_engine::{key_slot, Slot};

use crate::routing::{Cluster, ClusterError};

/// Groups positions by slot.
fn group_by_slot<'a>(keys: impl Iterator<Item = &'a [u8]>) -> BTreeMap<Slot, Vec<usize>> {
    let mut groups: BTreeMap<Slot, Vec<usize>> = BTreeMap::new();
    for (position, key) in keys.enumerate() {
        groups.entry(key_slot(key)).or_default().push(position);
    }
    groups
}

impl Cluster {
    /// MGET over any keys: one MGET per slot, concurrently; values in the order of `keys`.
    /// Not atomic across slots (see the module docs).
    pub async fn mget_multi(&self, keys: &[&[u8]]) -> Result<Vec<Option<Bytes>>, ClusterError> {
        let groups = group_by_slot(keys.iter().copied());
        let parts = groups.values().map(|positions| async move {
            let slot_keys: Vec<&[u8]> = positions.iter().map(|at| keys[*at]).collect();
            self.mget(&slot_keys).await
        });
        let answers = join_all(parts).await;
        let mut values = vec![None; keys.len()];
        for (positions, answer) in groups.values().zip(answers) {
            for (at, value) in positions.iter().zip(answer?) {
                values[*at] = value;
            }
        }
        Ok(values)
    }

    /// MSET over any pairs: one MSET per slot, concurrently. Not atomic across slots: on
    /// error, other slots' parts may have been applied (see the module docs).
    pub async fn mset_multi(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), ClusterError> {
        let groups = group_by_slot(pairs.iter().map(|(key, _)| *key));
        let parts = groups.values().map(|positions| async move {
            let slot_pairs: Vec<(&[u8], &[u8])> = positions.iter().map(|at| pairs[*at]).collect();
            self.mset(&slot_pairs).await
        });
        for answer in join_all(parts).await {
            answer?;
        }
        Ok(())
    }
}
