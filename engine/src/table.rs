//! One hash slot's table: its entries, its index of keys with a TTL and its memory count.
//!
//! Callers hold the slot's lock (read for lookups, write for changes) and pass the key's
//! hash, computed once per command by the store. Every change goes through [`SlotTable::put`]
//! or [`SlotTable::remove_key`], which keep the TTL index and the memory count exact.

use hashbrown::HashTable;

use crate::entry::Entry;

/// A non-owning pointer into the table, listed in the TTL index.
struct VolatileRef(*const ());

// SAFETY: only dereferenced (as an identity to look up) under the slot's lock.
unsafe impl Send for VolatileRef {}
// SAFETY: see `Send`.
unsafe impl Sync for VolatileRef {}

/// A slot's TTL index: `(hash, identity)` of every entry with a TTL, in no order. One pointer
/// wide while the slot has no TTL.
#[derive(Default)]
// A `Vec` is three words; boxed it is one, which is what keeps `SlotCell` in one line.
#[allow(clippy::box_collection)]
struct VolatileIndex(Option<Box<Vec<(u64, VolatileRef)>>>);

impl std::ops::Deref for VolatileIndex {
    type Target = [(u64, VolatileRef)];

    fn deref(&self) -> &Self::Target {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl VolatileIndex {
    fn push(&mut self, item: (u64, VolatileRef)) {
        self.0.get_or_insert_default().push(item);
    }

    fn swap_remove(&mut self, pos: usize) {
        if let Some(items) = &mut self.0 {
            items.swap_remove(pos);
            if items.is_empty() {
                self.0 = None;
            }
        }
    }
}

/// What [`SlotTable::write_with`] does to the entry it found.
pub(crate) enum Edit {
    /// Nothing.
    Keep,
    /// Insert this entry, or replace the one found with it.
    Put(Entry),
    /// Remove the entry found (nothing if there is none).
    Remove,
}

/// The entries of one hash slot.
#[derive(Default)]
pub(crate) struct SlotTable {
    entries: HashTable<Entry>,
    /// Entries that have a TTL, for sampling by active expiry and volatile eviction; holds the
    /// hash with the identity so an entry can be found again. Boxed so that the table header
    /// stays small (see `SlotCell`); allocated with the slot's first TTL.
    volatile: VolatileIndex,
    memory_bytes: usize,
}

impl SlotTable {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    #[inline]
    pub(crate) fn get(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.entries.find(hash, |entry| entry.has_key(key))
    }

    /// Inserts or replaces the entry for `entry.key()`; returns the replaced one.
    pub(crate) fn put(
        &mut self,
        hash: u64,
        entry: Entry,
        hasher: impl Fn(&[u8]) -> u64,
    ) -> Option<Entry> {
        self.memory_bytes += entry.memory_bytes();
        let has_ttl = entry.expire_at_ms().is_some();
        let identity = entry.identity();
        let slot = self.entries.entry(
            hash,
            |existing| existing.has_key(entry.key()),
            |existing| hasher(existing.key()),
        );
        let replaced = match slot {
            hashbrown::hash_table::Entry::Occupied(mut occupied) => {
                Some(std::mem::replace(occupied.get_mut(), entry))
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(entry);
                None
            }
        };
        if let Some(old) = &replaced {
            self.forget(old);
        }
        if has_ttl {
            self.index_volatile(hash, identity);
        }
        replaced
    }

    /// One probe for a whole write: `decide` sees the entry for `key` (if any) and returns the
    /// edit to make where it was found, with a result passed through. Returns the entry the
    /// edit replaced or removed, for the caller to account and free after unlocking.
    pub(crate) fn write_with<R>(
        &mut self,
        hash: u64,
        key: &[u8],
        hasher: impl Fn(&[u8]) -> u64,
        decide: impl FnOnce(Option<&Entry>) -> (Edit, R),
    ) -> (Option<Entry>, R) {
        let found = self.entries.entry(
            hash,
            |existing| existing.has_key(key),
            |existing| hasher(existing.key()),
        );
        let (old, inserted) = match found {
            hashbrown::hash_table::Entry::Occupied(mut occupied) => {
                match decide(Some(occupied.get())) {
                    (Edit::Keep, result) => return (None, result),
                    (Edit::Put(entry), result) => {
                        self.memory_bytes += entry.memory_bytes();
                        let identity = entry.identity();
                        let has_ttl = entry.expire_at_ms().is_some();
                        let old = std::mem::replace(occupied.get_mut(), entry);
                        ((old, result), has_ttl.then_some(identity))
                    }
                    (Edit::Remove, result) => ((occupied.remove().0, result), None),
                }
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => match decide(None) {
                (Edit::Put(entry), result) => {
                    self.memory_bytes += entry.memory_bytes();
                    let has_ttl = entry.expire_at_ms().is_some();
                    let identity = entry.identity();
                    vacant.insert(entry);
                    if has_ttl {
                        self.index_volatile(hash, identity);
                    }
                    return (None, result);
                }
                (Edit::Keep | Edit::Remove, result) => return (None, result),
            },
        };
        let (old, result) = old;
        self.forget(&old);
        if let Some(identity) = inserted {
            self.index_volatile(hash, identity);
        }
        (Some(old), result)
    }

    /// Removes the entry for `key`, if any.
    pub(crate) fn remove_key(&mut self, hash: u64, key: &[u8]) -> Option<Entry> {
        let occupied = self
            .entries
            .find_entry(hash, |entry| entry.has_key(key))
            .ok()?;
        let (entry, _) = occupied.remove();
        self.forget(&entry);
        Some(entry)
    }

    /// Removes the entry for `key` only if it is the allocation `identity`.
    pub(crate) fn remove_identical(&mut self, hash: u64, identity: *const ()) -> Option<Entry> {
        let occupied = self
            .entries
            .find_entry(hash, |entry| entry.same_as(identity))
            .ok()?;
        let (entry, _) = occupied.remove();
        self.forget(&entry);
        Some(entry)
    }

    /// Sets or clears the TTL of the entry for `key`; returns the entry it replaced when the
    /// entry had to be rebuilt to gain room for a TTL. Returns `None` if the key is absent.
    pub(crate) fn set_expire(
        &mut self,
        hash: u64,
        key: &[u8],
        expire_at_ms: Option<u64>,
        hasher: impl Fn(&[u8]) -> u64,
    ) -> Option<Option<Entry>> {
        let entry = self.get(hash, key)?;
        if !entry.can_hold_expire() && expire_at_ms.is_some() {
            let rebuilt = entry.rebuild(expire_at_ms);
            return Some(self.put(hash, rebuilt, hasher));
        }
        let had_ttl = entry.expire_at_ms().is_some();
        let identity = entry.identity();
        let before = entry.memory_bytes();
        entry.store_expire_at_ms(expire_at_ms);
        let after = entry.memory_bytes();
        let pos = entry.volatile_pos();
        self.memory_bytes = self.memory_bytes - before + after;
        match (had_ttl, expire_at_ms.is_some()) {
            (false, true) => self.index_volatile(hash, identity),
            (true, false) => self.unindex_volatile(pos),
            _ => {}
        }
        Some(None)
    }

    /// The `index`-th entry of the TTL index (modulo its length) and its hash.
    pub(crate) fn volatile_at(&self, index: usize) -> Option<(u64, &Entry)> {
        if self.volatile.is_empty() {
            return None;
        }
        let (hash, VolatileRef(identity)) = self.volatile[index % self.volatile.len()];
        let entry = self.entries.find(hash, |entry| entry.same_as(identity))?;
        Some((hash, entry))
    }

    /// The `index`-th entry in table order (modulo the length); O(index).
    pub(crate) fn entry_at(&self, index: usize) -> Option<&Entry> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        self.entries.iter().nth(index % len)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Empties the table, returning the entries so the caller can free them after unlocking.
    pub(crate) fn take_all(&mut self) -> HashTable<Entry> {
        self.volatile = VolatileIndex::default();
        self.memory_bytes = 0;
        std::mem::take(&mut self.entries)
    }

    fn forget(&mut self, entry: &Entry) {
        self.memory_bytes -= entry.memory_bytes();
        if entry.expire_at_ms().is_some() {
            self.unindex_volatile(entry.volatile_pos());
        }
    }

    fn index_volatile(&mut self, hash: u64, identity: *const ()) {
        let pos = self.volatile.len();
        self.volatile.push((hash, VolatileRef(identity)));
        if let Some(entry) = self.entries.find(hash, |entry| entry.same_as(identity)) {
            entry.store_volatile_pos(pos);
        }
    }

    fn unindex_volatile(&mut self, pos: usize) {
        assert!(pos < self.volatile.len(), "TTL index out of sync");
        self.volatile.swap_remove(pos);
        if let Some(&(hash, VolatileRef(identity))) = self.volatile.get(pos) {
            if let Some(moved) = self.entries.find(hash, |entry| entry.same_as(identity)) {
                moved.store_volatile_pos(pos);
            }
        }
    }

    /// Checks the TTL index and memory count against the entries (tests only).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let memory: usize = self.entries.iter().map(Entry::memory_bytes).sum();
        assert_eq!(memory, self.memory_bytes);
        let with_ttl = self.entries.iter().filter(|e| e.expire_at_ms().is_some());
        assert_eq!(with_ttl.count(), self.volatile.len());
        for (pos, (hash, VolatileRef(identity))) in self.volatile.iter().enumerate() {
            let entry = self.entries.find(*hash, |e| e.same_as(*identity));
            let entry = entry.expect("indexed entry is in the table");
            assert_eq!(entry.volatile_pos(), pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn put_replace_remove_keep_index_and_memory_exact() {
        let hasher = hashbrown::DefaultHashBuilder::default();
        let hash = |key: &[u8]| hasher.hash_one(key);
        let mut table = SlotTable::default();
        for i in 0..50u32 {
            let key = i.to_be_bytes();
            let ttl = (i % 3 == 0).then_some(1_000 + u64::from(i));
            table.put(hash(&key), Entry::new(&key, &[b"v"], ttl, 0), hash);
        }
        table.check_invariants();
        assert_eq!(table.volatile_len(), 17);
        for i in (0..50u32).step_by(2) {
            let key = i.to_be_bytes();
            assert!(table.remove_key(hash(&key), &key).is_some());
            table.check_invariants();
        }
        let key = 1u32.to_be_bytes();
        table.set_expire(hash(&key), &key, Some(77), hash);
        table.check_invariants();
        table.set_expire(hash(&key), &key, None, hash);
        table.check_invariants();
        let replaced = table.put(hash(&key), Entry::new(&key, &[b"w"], Some(5), 0), hash);
        assert!(replaced.is_some());
        table.check_invariants();
        let entries = table.take_all();
        assert_eq!(entries.len(), 25);
        assert_eq!(table.memory_bytes(), 0);
    }
}
