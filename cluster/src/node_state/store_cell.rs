//! The node's engine behind a replaceable cell: a replica runs its engine without
//! maxmemory and a promoted replica sets the configured limit on it in place.
//! [`export_batches`] is the one loop that walks every key of an engine in bounded batches
//! (full sync).

use std::sync::Arc;

use parking_lot::RwLock;

use super::slot_activity::SlotActivity;
use slotkv_engine::{
    Clock, CommandError, ExportCursor, ExportLimits, ExportedEntry, Slot, Store, StoreConfig,
    SLOT_COUNT,
};

/// The node's engine, replaceable as the role changes. A replica must hold exactly its
/// master's keys, so, like Redis's `replica-ignore-maxmemory`, it runs on an engine without
/// maxmemory: it never evicts or refuses a replicated write on its own; its master's
/// evictions reach it as deletes. Each full sync loads into such a fresh engine beside the
/// current one, which keeps serving until the load completes and is swapped in
/// ([`StoreCell::begin_load`], [`StoreCell::finish_load`]); an abandoned load leaves the old
/// copy in place. A promoted replica sets the configured limit on its engine in place.
pub(crate) struct StoreCell {
    current: RwLock<Arc<Store>>,
    /// The engine a full sync is loading into, swapped in at its end.
    loading: RwLock<Option<Arc<Store>>>,
    /// The configured engine settings (with maxmemory), for a master.
    master_config: StoreConfig,
    clock: Arc<dyn Clock>,
    /// Reads and writes executed per slot, whichever engine is current.
    activity: SlotActivity,
}

impl StoreCell {
    /// A cell holding a master's engine with `config`, on `clock`.
    pub(crate) fn new(config: StoreConfig, clock: Arc<dyn Clock>) -> StoreCell {
        let store = Store::new(config.clone(), Arc::clone(&clock));
        StoreCell {
            current: RwLock::new(Arc::new(store)),
            loading: RwLock::new(None),
            master_config: config,
            clock,
            activity: SlotActivity::default(),
        }
    }

    /// The reads and writes executed per slot (counted by `crate::command::execute_while`).
    pub(crate) fn activity(&self) -> &SlotActivity {
        &self.activity
    }

    /// The clock of every engine of this cell (unix ms).
    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The current engine. Writers take it with their write stripe held, so a swap made
    /// with every stripe held never loses a write.
    pub(crate) fn get(&self) -> Arc<Store> {
        Arc::clone(&self.current.read())
    }

    /// Replica side, at the start of a full sync: a fresh engine without maxmemory that the
    /// snapshot loads into, while the current engine (the old copy) stays in place. A load
    /// already under way is dropped.
    pub(crate) fn begin_load(&self) -> Arc<Store> {
        let config = StoreConfig {
            max_memory_bytes: 0,
            ..self.master_config.clone()
        };
        let store = Arc::new(Store::new(config, Arc::clone(&self.clock)));
        *self.loading.write() = Some(Arc::clone(&store));
        store
    }

    /// The engine a full sync is loading into, if one is under way.
    pub(crate) fn loading(&self) -> Option<Arc<Store>> {
        self.loading.read().clone()
    }

    /// True while a full sync is loading (the current engine is the old copy).
    pub(crate) fn is_loading(&self) -> bool {
        self.loading.read().is_some()
    }

    /// The full sync completed: its engine becomes the current one (the old copy is
    /// dropped). Returns false when no load was under way (nothing changes).
    pub(crate) fn finish_load(&self) -> bool {
        let Some(loaded) = self.loading.write().take() else {
            return false;
        };
        *self.current.write() = loaded;
        true
    }

    /// The full sync was abandoned (new PSYNC, new master, promotion): its partial engine
    /// is dropped and the old copy stays current.
    pub(crate) fn abandon_load(&self) {
        if self.loading.write().take().is_some() {
            tracing::debug!("an unfinished full sync was abandoned; the previous copy stays");
        }
    }

    /// This node became a master: the configured maxmemory applies again, set in place on
    /// the current engine (no copy, no lock). Data above the limit stays; the next writes
    /// that need memory evict by the policy (or are refused with OOM), as in Redis.
    pub(crate) fn enforce_limits(&self) {
        self.get()
            .set_max_memory_bytes(self.master_config.max_memory_bytes);
    }

    /// This node became a replica: its engine holds exactly its master's keys, so it stops
    /// evicting on its own (in place; a full sync's fresh engine has no limit either).
    pub(crate) fn lift_limits(&self) {
        self.get().set_max_memory_bytes(0);
    }
}

/// Every key of `store`, slot by slot, in batches bounded by [`ExportLimits::default`]:
/// the one walk over a whole engine (full sync, promotion copy). Each key present
/// throughout the walk is yielded exactly once (the engine's export guarantee); an engine
/// error on a slot ends the walk with that error.
pub(crate) fn export_batches(store: &Store) -> ExportBatches<'_> {
    ExportBatches {
        store,
        slot: 0,
        cursor: None,
    }
}

/// The iterator of [`export_batches`].
pub(crate) struct ExportBatches<'a> {
    store: &'a Store,
    /// The slot being exported (or the next to look at).
    slot: usize,
    /// Where the current slot's export resumes; `None`: the slot is not started.
    cursor: Option<ExportCursor>,
}

impl Iterator for ExportBatches<'_> {
    type Item = Result<Vec<ExportedEntry>, CommandError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.slot < SLOT_COUNT {
            let slot = self.slot as Slot;
            let cursor = match self.cursor.take() {
                Some(cursor) => cursor,
                None => match self.store.count_keys_in_slot(slot) {
                    Ok(0) => {
                        self.slot += 1;
                        continue;
                    }
                    Ok(_) => ExportCursor::start(),
                    Err(error) => {
                        self.slot = SLOT_COUNT;
                        return Some(Err(error));
                    }
                },
            };
            let batch = match self
                .store
                .export_slot(slot, &cursor, ExportLimits::default())
            {
                Ok(batch) => batch,
                Err(error) => {
                    self.slot = SLOT_COUNT;
                    return Some(Err(error));
                }
            };
            match batch.next {
                Some(next) => self.cursor = Some(next),
                None => self.slot += 1,
            }
            if !batch.entries.is_empty() {
                return Some(Ok(batch.entries));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use slotkv_engine::{ManualClock, SetOptions};

    use super::*;

    #[test]
    fn export_batches_yield_every_key_once() {
        let store = Store::new(StoreConfig::default(), Arc::new(ManualClock::new(1)));
        for index in 0..5_000u32 {
            let key = format!("key:{index}");
            store
                .set(key.as_bytes(), b"v", SetOptions::default())
                .unwrap();
        }
        // Many keys in one slot, so one slot spans several batches.
        for index in 0..3_000u32 {
            let key = format!("{{tag}}:{index}");
            store
                .set(key.as_bytes(), b"v", SetOptions::default())
                .unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        for batch in export_batches(&store) {
            for entry in batch.unwrap() {
                assert!(seen.insert(entry.key.clone()), "a key was exported twice");
            }
        }
        assert_eq!(seen.len(), 8_000);
    }
}
