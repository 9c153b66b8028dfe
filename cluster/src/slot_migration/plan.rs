//! Which steps one slot still needs to move from `from` to `to`, decided purely from what
//! the two nodes report (the `redis-cli --cluster reshard` sequence): IMPORTING on the
//! target, MIGRATING on the source, the keys, then SETSLOT NODE on the target (which bumps
//! its configEpoch), the source and every other master. Deciding from the observed states,
//! rather than from a script, makes a reshard resumable: a rerun after any interruption
//! (an error, a cancel, a dead target whose replica took over) skips what is done and
//! finishes the rest, or says why it cannot.

use crate::core::node::NodeId;
use crate::core::slots::SlotState;

/// What the orchestrator saw of a slot on the source and on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotView {
    /// The slot's owner in the source's view.
    pub(crate) owner_at_source: Option<NodeId>,
    /// The source's migration state of the slot.
    pub(crate) source_state: SlotState,
    /// The slot's owner in the target's view.
    pub(crate) owner_at_target: Option<NodeId>,
    /// The target's migration state of the slot.
    pub(crate) target_state: SlotState,
}

/// One step of a slot's move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// SETSLOT IMPORTING `from` on the target.
    SetImporting,
    /// SETSLOT MIGRATING `to` on the source.
    SetMigrating,
    /// MIGRATE the slot's keys in batches until the source holds none.
    MoveKeys,
    /// SETSLOT NODE `to` on the target (its configEpoch bump).
    AssignOnTarget,
    /// SETSLOT NODE `to` on the source.
    AssignOnSource,
    /// SETSLOT NODE `to` on every other master (gossip would tell them too).
    AssignOnOthers,
}

/// Why a slot cannot be moved as asked; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    /// Neither the source nor (finished) the target owns the slot.
    #[error("the source does not own it (owner: {owner:?})")]
    NotOwned {
        /// The owner in the source's view.
        owner: Option<NodeId>,
    },
    /// The source is migrating it to a third node.
    #[error("the source is migrating it to {target}")]
    MigratingElsewhere {
        /// That node.
        target: NodeId,
    },
    /// The target is importing it from a third node.
    #[error("the target is importing it from {origin}")]
    ImportingFromElsewhere {
        /// That node.
        origin: NodeId,
    },
}

/// The steps left for moving a slot from `from` to `to`. `retarget_from` names a former
/// target whose open migration `to` may continue (its replica, promoted after it died):
/// the keys it received are on `to`.
pub(crate) fn plan_slot(
    from: NodeId,
    to: NodeId,
    retarget_from: Option<NodeId>,
    view: SlotView,
) -> Result<Vec<Step>, PlanError> {
    if view.owner_at_target == Some(to) && view.target_state == SlotState::Stable {
        // The target took the slot: only the assignments are left.
        let mut steps = Vec::with_capacity(2);
        if view.owner_at_source != Some(to) {
            steps.push(Step::AssignOnSource);
        }
        steps.push(Step::AssignOnOthers);
        return Ok(steps);
    }
    if view.owner_at_source != Some(from) {
        return Err(PlanError::NotOwned {
            owner: view.owner_at_source,
        });
    }
    let mut steps = Vec::with_capacity(6);
    match view.target_state {
        SlotState::Importing(source) if source == from => {}
        SlotState::Importing(origin) => return Err(PlanError::ImportingFromElsewhere { origin }),
        _ => steps.push(Step::SetImporting),
    }
    match view.source_state {
        SlotState::Migrating(target) if target == to => {}
        SlotState::Migrating(target) if Some(target) == retarget_from => {
            steps.push(Step::SetMigrating);
        }
        SlotState::Migrating(target) => return Err(PlanError::MigratingElsewhere { target }),
        _ => steps.push(Step::SetMigrating),
    }
    steps.extend([
        Step::MoveKeys,
        Step::AssignOnTarget,
        Step::AssignOnSource,
        Step::AssignOnOthers,
    ]);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> NodeId {
        NodeId([byte; crate::core::node::NODE_ID_BYTES])
    }

    fn fresh() -> SlotView {
        SlotView {
            owner_at_source: Some(id(1)),
            source_state: SlotState::Stable,
            owner_at_target: Some(id(1)),
            target_state: SlotState::Stable,
        }
    }

    #[test]
    fn a_stable_slot_takes_the_whole_redis_cli_sequence() {
        assert_eq!(
            plan_slot(id(1), id(2), None, fresh()),
            Ok(vec![
                Step::SetImporting,
                Step::SetMigrating,
                Step::MoveKeys,
                Step::AssignOnTarget,
                Step::AssignOnSource,
                Step::AssignOnOthers,
            ])
        );
    }

    #[test]
    fn an_interrupted_move_resumes_where_it_stopped() {
        let open = SlotView {
            source_state: SlotState::Migrating(id(2)),
            target_state: SlotState::Importing(id(1)),
            ..fresh()
        };
        assert_eq!(
            plan_slot(id(1), id(2), None, open),
            Ok(vec![
                Step::MoveKeys,
                Step::AssignOnTarget,
                Step::AssignOnSource,
                Step::AssignOnOthers
            ])
        );
        let taken = SlotView {
            source_state: SlotState::Migrating(id(2)),
            owner_at_target: Some(id(2)),
            ..fresh()
        };
        assert_eq!(
            plan_slot(id(1), id(2), None, taken),
            Ok(vec![Step::AssignOnSource, Step::AssignOnOthers])
        );
        let done = SlotView {
            owner_at_source: Some(id(2)),
            owner_at_target: Some(id(2)),
            ..fresh()
        };
        assert_eq!(
            plan_slot(id(1), id(2), None, done),
            Ok(vec![Step::AssignOnOthers])
        );
    }

    #[test]
    fn a_dead_targets_migration_is_continued_only_when_named() {
        let to_dead = SlotView {
            source_state: SlotState::Migrating(id(9)),
            ..fresh()
        };
        assert_eq!(
            plan_slot(id(1), id(2), None, to_dead),
            Err(PlanError::MigratingElsewhere { target: id(9) })
        );
        let steps = plan_slot(id(1), id(2), Some(id(9)), to_dead).unwrap();
        assert_eq!(&steps[..2], &[Step::SetImporting, Step::SetMigrating]);
    }

    #[test]
    fn slots_the_source_does_not_own_or_others_import_are_refused() {
        let elsewhere = SlotView {
            owner_at_source: Some(id(3)),
            ..fresh()
        };
        assert_eq!(
            plan_slot(id(1), id(2), None, elsewhere),
            Err(PlanError::NotOwned { owner: Some(id(3)) })
        );
        let importing_other = SlotView {
            target_state: SlotState::Importing(id(3)),
            ..fresh()
        };
        assert_eq!(
            plan_slot(id(1), id(2), None, importing_other),
            Err(PlanError::ImportingFromElsewhere { origin: id(3) })
        );
    }
}
