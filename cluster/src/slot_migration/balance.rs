//! Which slots a rebalance moves, decided purely from who owns what and each master's
//! weight (the decision of `redis-cli --cluster rebalance`, also the one a future autopilot
//! takes): each master should own the owned slots in proportion to its weight; if one is
//! off by more than the threshold, slots move from the most overloaded to the most
//! underloaded master until every master owns exactly its share. A master of weight 0
//! gives all its slots away (how a node is drained before it is removed).
//!
//! The shares add up exactly (the remainder of the division goes, a slot each, to the
//! masters with the largest fractions, ties by node id), so the plan always ends balanced,
//! and it is deterministic: the same inputs give the same moves.

use slotkv_engine::Slot;

use crate::core::node::NodeId;

/// One master as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterShare {
    /// The master.
    pub(crate) id: NodeId,
    /// The slots it owns, in any order.
    pub(crate) slots: Vec<Slot>,
    /// Its weight: its share of the slots is `weight / sum of weights`; 0 drains it.
    pub(crate) weight: u32,
}

/// Slots to move from one master to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotMove {
    /// The master giving them.
    pub(crate) from: NodeId,
    /// The master taking them.
    pub(crate) to: NodeId,
    /// The slots, ascending.
    pub(crate) slots: Vec<Slot>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BalanceError {
    /// Every master has weight 0: nobody could take the slots.
    #[error("every master has weight 0: no master could take the slots")]
    NoWeight,
    /// A master appears twice.
    #[error("master {0} is listed twice")]
    Duplicate(NodeId),
}

/// The moves that bring `masters` to their weighted shares, or none when every master is
/// within `threshold_percent` of its share (a master of weight 0 that owns slots is always
/// beyond it). See the module docs.
pub(crate) fn plan_rebalance(
    masters: &[MasterShare],
    threshold_percent: f64,
) -> Result<Vec<SlotMove>, BalanceError> {
    let mut order: Vec<&MasterShare> = masters.iter().collect();
    order.sort_by_key(|master| master.id);
    if let Some(pair) = order.windows(2).find(|pair| pair[0].id == pair[1].id) {
        return Err(BalanceError::Duplicate(pair[0].id));
    }
    let total_weight: u64 = order.iter().map(|master| u64::from(master.weight)).sum();
    if total_weight == 0 {
        return Err(BalanceError::NoWeight);
    }
    let total_slots: u64 = order.iter().map(|master| master.slots.len() as u64).sum();
    let shares = shares(&order, total_slots, total_weight);
    let beyond = order.iter().zip(&shares).any(|(master, &share)| {
        let owned = master.slots.len() as f64;
        let share = share as f64;
        if share == 0.0 {
            owned > 0.0
        } else {
            (owned - share).abs() * 100.0 / share > threshold_percent
        }
    });
    if !beyond {
        return Ok(Vec::new());
    }
    // Balance: owned minus share. Slots leave the end of each giver's sorted list.
    let mut givers: Vec<(NodeId, Vec<Slot>, usize)> = Vec::new();
    let mut takers: Vec<(NodeId, usize)> = Vec::new();
    for (master, &share) in order.iter().zip(&shares) {
        let owned = master.slots.len();
        let share = share as usize;
        if owned > share {
            let mut slots = master.slots.clone();
            slots.sort_unstable();
            givers.push((master.id, slots, owned - share));
        } else if owned < share {
            takers.push((master.id, share - owned));
        }
    }
    // Most overloaded giver and most underloaded taker first, ties by id (stable sorts).
    givers.sort_by_key(|giver| std::cmp::Reverse(giver.2));
    takers.sort_by_key(|taker| std::cmp::Reverse(taker.1));
    let mut moves: Vec<SlotMove> = Vec::new();
    let (mut giver, mut taker) = (0, 0);
    while giver < givers.len() && taker < takers.len() {
        let count = givers[giver].2.min(takers[taker].1);
        let (from, slots, surplus) = &mut givers[giver];
        let mut moved = slots.split_off(slots.len() - count);
        moved.sort_unstable();
        *surplus -= count;
        let to = takers[taker].0;
        takers[taker].1 -= count;
        match moves
            .iter_mut()
            .find(|planned| planned.from == *from && planned.to == to)
        {
            Some(planned) => {
                planned.slots.extend(moved);
                planned.slots.sort_unstable();
            }
            None => moves.push(SlotMove {
                from: *from,
                to,
                slots: moved,
            }),
        }
        if givers[giver].2 == 0 {
            giver += 1;
        }
        if takers[taker].1 == 0 {
            taker += 1;
        }
    }
    Ok(moves)
}

/// Each master's share of `total_slots` by weight, adding up exactly: the floor of its
/// fraction, plus one slot each for the largest remainders (ties by id, as `order` is).
fn shares(order: &[&MasterShare], total_slots: u64, total_weight: u64) -> Vec<u64> {
    let mut shares: Vec<u64> = order
        .iter()
        .map(|master| total_slots * u64::from(master.weight) / total_weight)
        .collect();
    let handed: u64 = shares.iter().sum();
    let mut by_remainder: Vec<usize> = (0..order.len())
        .filter(|&index| order[index].weight > 0)
        .collect();
    let remainder = |index: usize| (total_slots * u64::from(order[index].weight)) % total_weight;
    by_remainder.sort_by_key(|&index| std::cmp::Reverse(remainder(index)));
    for &index in by_remainder.iter().take((total_slots - handed) as usize) {
        shares[index] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    fn id(byte: u8) -> NodeId {
        NodeId([byte; 20])
    }

    fn master(byte: u8, slots: std::ops::Range<Slot>, weight: u32) -> MasterShare {
        MasterShare {
            id: id(byte),
            slots: slots.collect(),
            weight,
        }
    }

    /// Applies `moves` and returns each master's slot count, checking every moved slot
    /// was its giver's.
    fn apply(masters: &[MasterShare], moves: &[SlotMove]) -> Vec<(NodeId, usize)> {
        let mut owned: Vec<(NodeId, Vec<Slot>)> = masters
            .iter()
            .map(|master| (master.id, master.slots.clone()))
            .collect();
        for planned in moves {
            let from = owned
                .iter_mut()
                .find(|(id, _)| *id == planned.from)
                .unwrap();
            for slot in &planned.slots {
                let position = from.1.iter().position(|owned| owned == slot);
                assert!(position.is_some(), "slot {slot} was not its giver's");
                from.1.remove(position.unwrap());
            }
            let to = owned.iter_mut().find(|(id, _)| *id == planned.to).unwrap();
            to.1.extend(&planned.slots);
        }
        owned
            .into_iter()
            .map(|(id, slots)| (id, slots.len()))
            .collect()
    }

    #[test]
    fn an_empty_master_gets_its_quarter_from_the_three_others() {
        let masters = [
            master(1, 0..5462, 1),
            master(2, 5462..10923, 1),
            master(3, 10923..16384, 1),
            master(4, 0..0, 1),
        ];
        let moves = plan_rebalance(&masters, 2.0).unwrap();
        assert_eq!(moves.len(), 3, "{moves:?}");
        assert!(moves.iter().all(|planned| planned.to == id(4)));
        let counts = apply(&masters, &moves);
        assert!(counts.iter().all(|(_, count)| *count == 4096), "{counts:?}");
    }

    #[test]
    fn within_the_threshold_nothing_moves() {
        let masters = [master(1, 0..8200, 1), master(2, 8200..16384, 1)];
        assert_eq!(plan_rebalance(&masters, 2.0).unwrap(), Vec::new());
        let moves = plan_rebalance(&masters, 0.0).unwrap();
        assert_eq!(apply(&masters, &moves), vec![(id(1), 8192), (id(2), 8192)]);
    }

    #[test]
    fn weight_zero_drains_a_master_onto_the_others_by_their_weights() {
        let masters = [
            master(1, 0..6000, 0),
            master(2, 6000..11000, 1),
            master(3, 11000..16384, 3),
        ];
        let moves = plan_rebalance(&masters, 50.0).unwrap();
        let counts = apply(&masters, &moves);
        assert_eq!(counts, vec![(id(1), 0), (id(2), 4096), (id(3), 12288)]);
    }

    #[test]
    fn no_weight_and_duplicates_are_refused() {
        let masters = [master(1, 0..10, 0)];
        assert_eq!(plan_rebalance(&masters, 2.0), Err(BalanceError::NoWeight));
        let masters = [master(1, 0..10, 1), master(1, 10..20, 1)];
        assert_eq!(
            plan_rebalance(&masters, 2.0),
            Err(BalanceError::Duplicate(id(1)))
        );
    }

    #[test]
    fn random_layouts_end_exactly_at_their_shares_with_each_slot_moved_once() {
        for seed in 0..300 {
            let mut rng = Rng::new(seed);
            let count = 1 + rng.below(7) as usize;
            let mut cuts: Vec<Slot> = (0..count - 1).map(|_| rng.below(16384) as Slot).collect();
            cuts.sort_unstable();
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(16384);
            let mut masters: Vec<MasterShare> = (0..count)
                .map(|index| master(index as u8 + 1, bounds[index]..bounds[index + 1], 0))
                .collect();
            for master in &mut masters {
                master.weight = rng.below(4) as u32;
            }
            if masters.iter().all(|master| master.weight == 0) {
                masters[0].weight = 1;
            }
            let moves = plan_rebalance(&masters, 0.0).unwrap();
            let counts = apply(&masters, &moves);
            let total_weight: u32 = masters.iter().map(|master| master.weight).sum();
            let mut moved: Vec<Slot> = moves.iter().flat_map(|m| m.slots.clone()).collect();
            let before = moved.len();
            moved.sort_unstable();
            moved.dedup();
            assert_eq!(moved.len(), before, "seed {seed}: a slot moved twice");
            assert_eq!(counts.iter().map(|(_, c)| c).sum::<usize>(), 16384);
            for (master, (_, count)) in masters.iter().zip(&counts) {
                let exact = 16384.0 * f64::from(master.weight) / f64::from(total_weight);
                assert!(
                    (*count as f64 - exact).abs() < 1.0,
                    "seed {seed}: {count} slots for a share of {exact}"
                );
            }
            for planned in &moves {
                assert_ne!(planned.from, planned.to);
            }
        }
    }
}
