//! Lost slots are cleaned, over TCP: a slot that passes from a master to another node by the
//! config rules leaves no key behind on the old master nor on its replica, and a master that
//! gets the slot back serves none of the old values. SETSLOT NODE giving away a slot that
//! still holds keys is refused with Redis's error.

mod node_support;

use std::time::Duration;

use slotkv_cluster::core::node::NodeId;
use slotkv_cluster::core::{AdminCommand, AdminError, SetSlotAction};
use slotkv_cluster::{AdminCallError, Node};
use slotkv_engine::key_slot;

use node_support::{eventually, form, shutdown_within_10s, start_nodes, tcp};

/// Keys written into the slot that moves.
const KEYS: usize = 200;

fn key(tag: &str, index: usize) -> Vec<u8> {
    format!("{{{tag}}}:{index}").into_bytes()
}

/// Every node binds `slot` to `owner`.
async fn all_see_owner(nodes: &[Node], slot: u16, owner: NodeId) -> bool {
    for node in nodes {
        if node.inspect(move |core| core.slot_owner(slot)).await.ok() != Some(Some(owner)) {
            return false;
        }
    }
    true
}

fn keys_in(node: &Node, slot: u16) -> usize {
    node.store().count_keys_in_slot(slot).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_away_leaves_no_keys_on_the_old_master_or_its_replica() {
    // 0 and 1 are masters (configEpochs 1 and 2); 2 replicates 0, 3 replicates 1.
    let nodes = start_nodes((0..4).map(|_| tcp()).collect()).await;
    form(&nodes).await;
    let (old_master, new_master, replica) = (&nodes[0], &nodes[1], &nodes[2]);
    let tag = (0..)
        .map(|index| format!("tag{index}"))
        .find(|tag| key_slot(tag.as_bytes()) < 100)
        .unwrap();
    let slot = key_slot(tag.as_bytes());
    assert!(all_see_owner(&nodes, slot, old_master.id()).await);
    let cache = old_master.cluster();
    for index in 0..KEYS {
        cache.set(&key(&tag, index), b"old").await.unwrap();
    }
    let replicated = eventually(Duration::from_secs(10), || async {
        keys_in(replica, slot) == KEYS
    })
    .await;
    assert!(replicated, "the replica never got the keys");

    let give = old_master
        .set_slot(slot, SetSlotAction::Node(new_master.id()))
        .await;
    assert_eq!(
        give,
        Err(AdminCallError::Refused(AdminError::SlotHasKeys(slot)))
    );
    assert_eq!(
        give.unwrap_err().to_string(),
        format!(
            "Can't assign hashslot {slot} to a different node while I still hold keys for this hash slot."
        )
    );

    // The new owner claims the slot with its greater configEpoch: rule 2 moves it.
    new_master
        .set_slot(slot, SetSlotAction::Node(new_master.id()))
        .await
        .unwrap();
    let moved = eventually(Duration::from_secs(10), || async {
        all_see_owner(&nodes, slot, new_master.id()).await
    })
    .await;
    assert!(moved, "the claim did not spread");
    let cleaned = eventually(Duration::from_secs(10), || async {
        keys_in(old_master, slot) == 0 && keys_in(replica, slot) == 0
    })
    .await;
    assert!(
        cleaned,
        "old master holds {}, its replica {} keys of the lost slot",
        keys_in(old_master, slot),
        keys_in(replica, slot)
    );
    assert_eq!(
        old_master.inspect(|core| core.my_master()).await.unwrap(),
        None
    );
    assert_eq!(
        replica.inspect(|core| core.my_master()).await.unwrap(),
        Some(old_master.id()),
        "a master that keeps other slots stays a master"
    );

    // The old master takes the slot back with a newer configEpoch: none of the old values.
    old_master
        .set_slot(slot, SetSlotAction::Node(old_master.id()))
        .await
        .unwrap();
    old_master.command(AdminCommand::BumpEpoch).await.unwrap();
    let back = eventually(Duration::from_secs(10), || async {
        all_see_owner(&nodes, slot, old_master.id()).await
    })
    .await;
    assert!(back, "the slot did not come back");
    let through = nodes[3].cluster();
    for index in 0..KEYS {
        assert_eq!(through.get(&key(&tag, index)).await.unwrap(), None);
    }
    assert_eq!(keys_in(old_master, slot), 0);
    assert_eq!(keys_in(replica, slot), 0);
    shutdown_within_10s(nodes).await;
}
