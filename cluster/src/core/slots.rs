//! The slot table: who owns each of the 16384 hash slots, and the open migration states.
//!
//! Ownership is one entry per slot; per-node counts are kept alongside so "how many
//! slots does X own" is O(log n). Slot sets travel as sorted [`SlotRange`]s (a master with
//! 5461 contiguous slots is one range), which is also how CLUSTER NODES prints them.

use std::collections::{BTreeMap, BTreeSet};

use bincode::{Decode, Encode};
pub use slotkv_engine::slot::{Slot, SLOT_COUNT};

use crate::core::node::NodeId;

/// An inclusive range of slots `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct SlotRange {
    /// First slot of the range.
    pub start: Slot,
    /// Last slot of the range (inclusive).
    pub end: Slot,
}

impl SlotRange {
    /// Every slot, `0..=16383`.
    pub const ALL: SlotRange = SlotRange {
        start: 0,
        end: (SLOT_COUNT - 1) as Slot,
    };

    /// The range `start..=end`; `None` unless `start <= end < SLOT_COUNT`.
    pub fn new(start: Slot, end: Slot) -> Option<SlotRange> {
        if start <= end && (end as usize) < SLOT_COUNT {
            Some(SlotRange { start, end })
        } else {
            None
        }
    }

    /// A range holding one slot.
    pub fn single(slot: Slot) -> SlotRange {
        SlotRange {
            start: slot,
            end: slot,
        }
    }

    /// True when `start <= end < SLOT_COUNT`.
    pub fn is_valid(&self) -> bool {
        self.start <= self.end && (self.end as usize) < SLOT_COUNT
    }

    /// Number of slots in the range.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize + 1
    }

    /// Always false: a range holds at least one slot.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The slots of the range in order.
    pub fn slots(&self) -> impl Iterator<Item = Slot> {
        self.start..=self.end
    }

    /// True when `slot` is in the range.
    pub fn contains(&self, slot: Slot) -> bool {
        (self.start..=self.end).contains(&slot)
    }
}

/// Compresses ascending slots into ranges (consecutive slots merge).
pub fn ranges_from_sorted_slots(slots: impl IntoIterator<Item = Slot>) -> Vec<SlotRange> {
    let mut ranges: Vec<SlotRange> = Vec::new();
    for slot in slots {
        match ranges.last_mut() {
            Some(last) if last.end.checked_add(1) == Some(slot) => last.end = slot,
            _ => ranges.push(SlotRange::single(slot)),
        }
    }
    ranges
}

/// Every slot of `ranges`, in the ranges' order.
pub fn slots_of_ranges(ranges: &[SlotRange]) -> impl Iterator<Item = Slot> + '_ {
    ranges.iter().flat_map(SlotRange::slots)
}

/// A slot's migration state on this node (8.1 of the spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SlotState {
    /// No migration in progress.
    #[default]
    Stable,
    /// This node owns the slot and is moving it to the given node.
    Migrating(NodeId),
    /// This node is receiving the slot from the given node.
    Importing(NodeId),
}

/// Open slots in slot order, from a list of migrating slots (with their targets) and one of
/// importing slots (with their sources), in any order: the one place that turns the two
/// lists into [`SlotState`]s, for the slot table, nodes.conf and the views.
pub fn open_slots_in_order(
    migrating: impl IntoIterator<Item = (Slot, NodeId)>,
    importing: impl IntoIterator<Item = (Slot, NodeId)>,
) -> Vec<(Slot, SlotState)> {
    let mut open: Vec<(Slot, SlotState)> = migrating
        .into_iter()
        .map(|(slot, target)| (slot, SlotState::Migrating(target)))
        .chain(
            importing
                .into_iter()
                .map(|(slot, source)| (slot, SlotState::Importing(source))),
        )
        .collect();
    open.sort_by_key(|(slot, _)| *slot);
    open
}

/// Per-slot owners plus the open (migrating/importing) slots of this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotTable {
    owners: Vec<Option<NodeId>>,
    counts: BTreeMap<NodeId, u32>,
    migrating_to: BTreeMap<Slot, NodeId>,
    importing_from: BTreeMap<Slot, NodeId>,
    /// The importing slots an atomic migration opened (a subset of `importing_from`): they
    /// live in memory only, never in nodes.conf, since the import they belong to (its
    /// stream and lease) does not survive a restart of this node.
    atomic_imports: BTreeSet<Slot>,
    /// Slots whose owner stopped claiming them: kept bound (no needless CLUSTERDOWN),
    /// but any claimer may take them and they never justify an UPDATE.
    unclaimed: BTreeSet<Slot>,
    /// Bumped on every ownership change, so callers can cache comparisons.
    version: u64,
}

impl Default for SlotTable {
    fn default() -> Self {
        SlotTable::new()
    }
}

impl SlotTable {
    /// A table with every slot unassigned and stable.
    pub fn new() -> SlotTable {
        SlotTable {
            owners: vec![None; SLOT_COUNT],
            counts: BTreeMap::new(),
            migrating_to: BTreeMap::new(),
            importing_from: BTreeMap::new(),
            atomic_imports: BTreeSet::new(),
            unclaimed: BTreeSet::new(),
            version: 0,
        }
    }

    /// The owner of `slot`, if assigned (`None` also for an out-of-range slot).
    pub fn owner(&self, slot: Slot) -> Option<NodeId> {
        self.owners.get(slot as usize).copied().flatten()
    }

    /// Binds `slot` to `owner` (or unbinds it); returns the previous owner.
    pub fn set_owner(&mut self, slot: Slot, owner: Option<NodeId>) -> Option<NodeId> {
        let entry = self.owners.get_mut(slot as usize)?;
        self.unclaimed.remove(&slot);
        self.version += 1;
        let previous = std::mem::replace(entry, owner);
        if let Some(old) = previous {
            if let Some(count) = self.counts.get_mut(&old) {
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(&old);
                }
            }
        }
        if let Some(new) = owner {
            *self.counts.entry(new).or_insert(0) += 1;
        }
        previous
    }

    /// Marks `slot` as no longer claimed by its owner (the binding stays).
    pub fn mark_unclaimed(&mut self, slot: Slot) {
        if self.owner(slot).is_some() && self.unclaimed.insert(slot) {
            self.version += 1;
        }
    }

    /// A counter that changes whenever ownership (or an unclaimed mark) changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// True when the owner of `slot` stopped claiming it.
    pub fn is_unclaimed(&self, slot: Slot) -> bool {
        self.unclaimed.contains(&slot)
    }

    /// True when both tables bind every slot to the same owner (states not compared).
    pub fn same_owners(&self, other: &SlotTable) -> bool {
        self.counts == other.counts && self.owners == other.owners
    }

    /// Number of slots `node` owns.
    pub fn count_of(&self, node: &NodeId) -> usize {
        self.counts.get(node).copied().unwrap_or(0) as usize
    }

    /// Number of assigned slots.
    pub fn assigned_count(&self) -> usize {
        self.counts.values().map(|count| *count as usize).sum()
    }

    /// Every node owning at least one slot, with its slot count.
    pub fn owners_with_counts(&self) -> impl Iterator<Item = (&NodeId, u32)> {
        self.counts.iter().map(|(id, count)| (id, *count))
    }

    /// The slots of `node` as sorted ranges (a scan of the table: use sparingly).
    pub fn ranges_of(&self, node: &NodeId) -> Vec<SlotRange> {
        if self.count_of(node) == 0 {
            return Vec::new();
        }
        let slots = (0..SLOT_COUNT as Slot).filter(|slot| self.owner(*slot) == Some(*node));
        ranges_from_sorted_slots(slots)
    }

    /// Maximal runs of slots with the same owner, unassigned slots skipped, in slot order.
    pub fn owner_ranges(&self) -> Vec<(SlotRange, NodeId)> {
        let mut runs: Vec<(SlotRange, NodeId)> = Vec::new();
        for slot in 0..SLOT_COUNT as Slot {
            let Some(owner) = self.owner(slot) else {
                continue;
            };
            match runs.last_mut() {
                Some((range, last)) if *last == owner && range.end + 1 == slot => range.end = slot,
                _ => runs.push((SlotRange::single(slot), owner)),
            }
        }
        runs
    }

    /// The migration state of `slot` on this node.
    pub fn state(&self, slot: Slot) -> SlotState {
        if let Some(target) = self.migrating_to.get(&slot) {
            SlotState::Migrating(*target)
        } else if let Some(source) = self.importing_from.get(&slot) {
            SlotState::Importing(*source)
        } else {
            SlotState::Stable
        }
    }

    /// Sets the migration state of `slot` (Stable clears both directions). An importing
    /// state set here is a key-by-key one (saved in nodes.conf).
    pub fn set_state(&mut self, slot: Slot, state: SlotState) {
        self.migrating_to.remove(&slot);
        self.importing_from.remove(&slot);
        self.atomic_imports.remove(&slot);
        match state {
            SlotState::Stable => {}
            SlotState::Migrating(target) => {
                self.migrating_to.insert(slot, target);
            }
            SlotState::Importing(source) => {
                self.importing_from.insert(slot, source);
            }
        }
    }

    /// Slots being migrated away, with their target.
    pub fn migrating(&self) -> impl Iterator<Item = (Slot, NodeId)> + '_ {
        self.migrating_to.iter().map(|(slot, node)| (*slot, *node))
    }

    /// Marks `slot` IMPORTING from `source` for an atomic migration: like
    /// `set_state(slot, Importing(source))`, but not saved (see [`SlotTable::saved_importing`]).
    /// Any later `set_state` of the slot ends it.
    pub fn set_atomic_import(&mut self, slot: Slot, source: NodeId) {
        self.set_state(slot, SlotState::Importing(source));
        self.atomic_imports.insert(slot);
    }

    /// True when `slot` is IMPORTING for an atomic migration.
    pub fn is_atomic_import(&self, slot: Slot) -> bool {
        self.atomic_imports.contains(&slot)
    }

    /// Slots being imported, with their source (both kinds of migration).
    pub fn importing(&self) -> impl Iterator<Item = (Slot, NodeId)> + '_ {
        self.importing_from
            .iter()
            .map(|(slot, node)| (*slot, *node))
    }

    /// The importing slots nodes.conf keeps: the key-by-key ones. An atomic import is not
    /// saved: a restarted target has lost its stream and lease, so its slots come back
    /// stable with their source, and the partial copy is dropped at start.
    pub fn saved_importing(&self) -> impl Iterator<Item = (Slot, NodeId)> + '_ {
        self.importing()
            .filter(|(slot, _)| !self.atomic_imports.contains(slot))
    }

    /// Every open (migrating or importing) slot with its state, in slot order.
    pub fn open_slots(&self) -> Vec<(Slot, SlotState)> {
        open_slots_in_order(self.migrating(), self.importing())
    }

    /// Clears every open slot state.
    pub fn clear_states(&mut self) {
        self.migrating_to.clear();
        self.importing_from.clear();
        self.atomic_imports.clear();
    }
}

/// Splits the 16384 slots into `masters` contiguous ranges the way redis-cli does.
pub fn spread_slots(masters: usize) -> Vec<SlotRange> {
    let per_master = SLOT_COUNT as f64 / masters.max(1) as f64;
    let mut ranges = Vec::with_capacity(masters);
    let mut first = 0usize;
    let mut cursor = 0f64;
    for index in 0..masters {
        let mut last = (cursor + per_master - 1.0).round() as usize;
        if last >= SLOT_COUNT || index + 1 == masters {
            last = SLOT_COUNT - 1;
        }
        if let Some(range) = SlotRange::new(first as Slot, last as Slot) {
            ranges.push(range);
        }
        first = last + 1;
        cursor += per_master;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> NodeId {
        NodeId([byte; 20])
    }

    #[test]
    fn ranges_merge_consecutive_slots() {
        let ranges = ranges_from_sorted_slots([0, 1, 2, 5, 7, 8]);
        assert_eq!(
            ranges,
            vec![
                SlotRange { start: 0, end: 2 },
                SlotRange { start: 5, end: 5 },
                SlotRange { start: 7, end: 8 }
            ]
        );
        assert_eq!(slots_of_ranges(&ranges).count(), 6);
    }

    #[test]
    fn set_owner_keeps_counts() {
        let mut table = SlotTable::new();
        for slot in 0..100 {
            table.set_owner(slot, Some(id(1)));
        }
        assert_eq!(table.count_of(&id(1)), 100);
        assert_eq!(table.set_owner(5, Some(id(2))), Some(id(1)));
        assert_eq!(table.count_of(&id(1)), 99);
        assert_eq!(table.count_of(&id(2)), 1);
        assert_eq!(table.ranges_of(&id(1)).len(), 2);
        assert_eq!(table.assigned_count(), 100);
        assert_eq!(table.owner_ranges().len(), 3);
    }

    #[test]
    fn slot_range_validates_bounds() {
        assert!(SlotRange::new(0, 16383).is_some());
        assert!(SlotRange::new(5, 4).is_none());
        assert!(SlotRange::new(0, 16384).is_none());
    }

    #[test]
    fn slot_states_are_exclusive() {
        let mut table = SlotTable::new();
        table.set_state(3, SlotState::Migrating(id(2)));
        table.set_state(3, SlotState::Importing(id(4)));
        assert_eq!(table.state(3), SlotState::Importing(id(4)));
        assert_eq!(table.migrating().count(), 0);
        table.set_state(3, SlotState::Stable);
        assert_eq!(table.state(3), SlotState::Stable);
    }

    #[test]
    fn open_slots_list_both_directions_in_slot_order() {
        let mut table = SlotTable::new();
        table.set_state(9, SlotState::Importing(id(4)));
        table.set_state(2, SlotState::Migrating(id(2)));
        table.set_state(5, SlotState::Importing(id(3)));
        table.set_state(7, SlotState::Migrating(id(1)));
        assert_eq!(
            table.open_slots(),
            vec![
                (2, SlotState::Migrating(id(2))),
                (5, SlotState::Importing(id(3))),
                (7, SlotState::Migrating(id(1))),
                (9, SlotState::Importing(id(4))),
            ]
        );
        table.clear_states();
        assert!(table.open_slots().is_empty());
    }
}
