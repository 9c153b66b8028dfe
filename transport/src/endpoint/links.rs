//! The table of open links, for [`Endpoint::links`](crate::Endpoint::links) (a node's CLUSTER
//! LINKS): each link task registers its link once it is established (an inbound one after its
//! hello) and the registration ends with the link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::{Channel, Direction, PeerAddr};

/// One open link, as [`Endpoint::links`](crate::Endpoint::links) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The peer's announced address (for an inbound link, the one its hello named).
    pub peer: PeerAddr,
    /// The channel it carries.
    pub channel: Channel,
    /// Dialed by this node (outbound) or by the peer (inbound).
    pub direction: Direction,
    /// When it was established (an outbound link's current connection).
    pub since: SystemTime,
    /// Frames queued for it and not yet written (outbound links; inbound ones send only
    /// responses, from a queue of their own, and report 0).
    pub queued_frames: usize,
    /// Bytes of those frames.
    pub queued_bytes: u64,
}

/// An open link's entry (see [`LinkInfo`]; the queue figures are filled in when read).
#[derive(Debug, Clone)]
struct OpenLink {
    peer: PeerAddr,
    channel: Channel,
    direction: Direction,
    since: SystemTime,
}

/// The open links of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct LinkTable {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, OpenLink>>,
}

/// A link's registration; dropping it removes the link from the table.
#[derive(Debug)]
pub(crate) struct Registration {
    table: Arc<LinkTable>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.open.lock().remove(&self.id);
    }
}

impl LinkTable {
    /// Records an established link until the returned registration is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        peer: &PeerAddr,
        channel: Channel,
        direction: Direction,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let link = OpenLink {
            peer: peer.clone(),
            channel,
            direction,
            since: SystemTime::now(),
        };
        self.open.lock().insert(id, link);
        Registration {
            table: Arc::clone(self),
            id,
        }
    }

    /// The open links, oldest first, with `queued(peer, channel)` as each outbound link's
    /// queued frames and bytes.
    pub(crate) fn snapshot(
        &self,
        queued: impl Fn(&PeerAddr, Channel) -> (usize, u64),
    ) -> Vec<LinkInfo> {
        let mut open: Vec<(u64, OpenLink)> = self
            .open
            .lock()
            .iter()
            .map(|(id, link)| (*id, link.clone()))
            .collect();
        open.sort_by_key(|(id, _)| *id);
        open.into_iter()
            .map(|(_, link)| {
                let (queued_frames, queued_bytes) = match link.direction {
                    Direction::Outbound => queued(&link.peer, link.channel),
                    Direction::Inbound => (0, 0),
                };
                LinkInfo {
                    peer: link.peer,
                    channel: link.channel,
                    direction: link.direction,
                    since: link.since,
                    queued_frames,
                    queued_bytes,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_listed_while_registered_with_its_outbound_queue() {
        let table = Arc::new(LinkTable::default());
        let peer = PeerAddr::new("10.0.0.2:17000").unwrap();
        let outbound = table.register(&peer, Channel::Bus, Direction::Outbound);
        let inbound = table.register(&peer, Channel::Bus, Direction::Inbound);
        let links = table.snapshot(|_, _| (3, 120));
        assert_eq!(links.len(), 2);
        assert_eq!(
            (
                links[0].direction,
                links[0].queued_frames,
                links[0].queued_bytes
            ),
            (Direction::Outbound, 3, 120)
        );
        assert_eq!(
            (links[1].direction, links[1].queued_frames),
            (Direction::Inbound, 0)
        );
        drop(outbound);
        let links = table.snapshot(|_, _| (0, 0));
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].direction, Direction::Inbound);
        drop(inbound);
        assert!(table.snapshot(|_, _| (0, 0)).is_empty());
    }
}
