//! Failure detection (4 of the spec): PFAIL, failure reports, FAIL and its clearing.
//!
//! PFAIL is a node's local opinion: nothing has been heard from the peer for node_timeout
//! and a PING to it has gone unanswered for node_timeout/2. (Redis waits for the PING
//! itself to be unanswered for node_timeout, which adds up to node_timeout/2 to detection
//! because the PING only goes out node_timeout/2 after the last PONG.) Masters' gossip about PFAIL/FAIL nodes becomes failure
//! reports, valid for 2 × node_timeout; when the reports plus our own opinion reach a
//! majority of the slot-owning masters the node is FAIL and a FAIL message is broadcast.
//! Unlike Redis, a master that newly marks a node PFAIL pings every other master at once
//! ([`crate::core::Config::fast_failure_push`]) so reports gather within one round trip.

use crate::core::gossip::PingKind;
use crate::core::node::{FailureReport, NodeFlags, NodeId};
use crate::core::wire::{Body, GossipEntry};
use crate::core::{Core, Event, ReleaseReason};

/// Redis's `CLUSTER_FAIL_REPORT_VALIDITY_MULT`: a failure report stays valid for this many
/// node timeouts.
pub const FAIL_REPORT_VALIDITY_MULT: u64 = 2;
/// A master that owns slots keeps FAIL for at least this many node timeouts.
const FAIL_UNDO_TIME_MULT: u64 = 2;

/// The failure-report rule, for failure detection and CLUSTER COUNT-FAILURE-REPORTS alike:
/// a report is valid while it is at most [`FAIL_REPORT_VALIDITY_MULT`] × `node_timeout_ms`
/// old at `now_ms`.
///
/// Saturating: a huge node_timeout gives a validity of `u64::MAX` (never a wrapped, short
/// one), and a report stamped after `now_ms` is of age 0.
pub fn is_failure_report_valid(report: &FailureReport, now_ms: u64, node_timeout_ms: u64) -> bool {
    let validity_ms = node_timeout_ms.saturating_mul(FAIL_REPORT_VALIDITY_MULT);
    now_ms.saturating_sub(report.time_ms) <= validity_ms
}

impl Core {
    /// Cron: mark as PFAIL every node silent for node_timeout with a ping unanswered for
    /// node_timeout/2.
    pub(super) fn detect_failures(&mut self) {
        let now = self.now_ms;
        let timeout_ms = self.config.node_timeout_ms;
        // Redis: the PING itself must be unanswered for node_timeout.
        let ping_wait_ms = if self.config.redis_failover_timing {
            timeout_ms
        } else {
            timeout_ms / 2
        };
        let newly_failing: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| {
                !node.flags.intersects(
                    NodeFlags::MYSELF
                        | NodeFlags::HANDSHAKE
                        | NodeFlags::NOADDR
                        | NodeFlags::PFAIL
                        | NodeFlags::FAIL,
                ) && node.ping_sent_ms != 0
                    && now - node.ping_sent_ms > ping_wait_ms
                    && now - node.data_received_ms > timeout_ms
            })
            .map(|node| node.id)
            .collect();
        for id in newly_failing {
            if let Some(node) = self.nodes.get_mut(&id) {
                node.flags.insert(NodeFlags::PFAIL);
            }
            tracing::debug!(node = %id, "marked PFAIL");
            if self.config.fast_failure_push && self.is_voting_master(&self.myself) {
                self.push_failure_report(&id);
            }
            self.mark_failing_if_needed(&id);
        }
    }

    /// Sends a PING (whose gossip carries every PFAIL node) to every other voting master.
    fn push_failure_report(&mut self, failing: &NodeId) {
        let masters: Vec<NodeId> = self
            .other_known_nodes()
            .into_iter()
            .filter(|id| id != failing && self.is_voting_master(id))
            .collect();
        for id in masters {
            self.send_ping(id, PingKind::Ping);
        }
    }

    /// A gossip entry from the voting master `reporter` about a known node.
    pub(super) fn note_gossip_report(&mut self, reporter: &NodeId, entry: &GossipEntry) {
        let now = self.now_ms;
        let Some(node) = self.nodes.get_mut(&entry.id) else {
            return;
        };
        if entry.flags.intersects(NodeFlags::PFAIL | NodeFlags::FAIL) {
            match node
                .failure_reports
                .iter_mut()
                .find(|report| report.reporter == *reporter)
            {
                Some(report) => report.time_ms = now,
                None => node.failure_reports.push(FailureReport {
                    reporter: *reporter,
                    time_ms: now,
                }),
            }
            self.mark_failing_if_needed(&entry.id);
        } else {
            node.failure_reports
                .retain(|report| report.reporter != *reporter);
        }
    }

    /// Valid failure reports about `id` from voting masters (expired ones are dropped).
    pub(crate) fn count_failure_reports(&mut self, id: &NodeId) -> usize {
        let (now_ms, node_timeout_ms) = (self.now_ms, self.config.node_timeout_ms);
        let Some(node) = self.nodes.get_mut(id) else {
            return 0;
        };
        node.failure_reports
            .retain(|report| is_failure_report_valid(report, now_ms, node_timeout_ms));
        let reporters: Vec<NodeId> = node.failure_reports.iter().map(|r| r.reporter).collect();
        reporters
            .iter()
            .filter(|reporter| self.is_voting_master(reporter))
            .count()
    }

    /// PFAIL + a majority of reports (ours included when we vote) ⇒ FAIL, broadcast.
    fn mark_failing_if_needed(&mut self, id: &NodeId) {
        let Some(node) = self.nodes.get(id) else {
            return;
        };
        if !node.flags.contains(NodeFlags::PFAIL) || node.is_failed() {
            return;
        }
        let mut failures = self.count_failure_reports(id);
        if self.is_voting_master(&self.myself) {
            failures += 1;
        }
        if failures < self.quorum() {
            return;
        }
        self.set_fail(id);
        tracing::info!(node = %id, failures, "marked FAIL");
        for peer in self.other_known_nodes() {
            self.send(peer, Body::Fail { node: *id });
        }
    }

    fn set_fail(&mut self, id: &NodeId) {
        let now = self.now_ms;
        if let Some(node) = self.nodes.get_mut(id) {
            node.flags.remove(NodeFlags::PFAIL);
            node.flags.insert(NodeFlags::FAIL);
            node.fail_time_ms = now;
        }
        self.config_dirty = true;
        self.state_dirty = true;
        self.emit(Event::NodeFailed(*id));
    }

    /// Nodes FAIL for a node timeout or more: the shell closes their stream and links once
    /// (queued frames included; a later PING opens a fresh link).
    pub(super) fn release_long_failed_peers(&mut self) {
        let now = self.now_ms;
        let wait_ms = self.config.node_timeout_ms;
        let due: Vec<(NodeId, String)> = self
            .nodes
            .values()
            .filter(|node| {
                node.is_failed()
                    && !node.flags.contains(NodeFlags::MYSELF)
                    && now.saturating_sub(node.fail_time_ms) >= wait_ms
                    && !self.released_failed.contains(&node.id)
            })
            .map(|node| (node.id, node.bus_address()))
            .collect();
        for (id, address) in due {
            self.released_failed.insert(id);
            self.release_peer(address, &id, ReleaseReason::Failed);
            // A PING in flight dies with the link. Left pending, it would never be re-sent
            // while the node's own PINGs keep arriving, and only a PONG clears FAIL: pinged
            // afresh instead, on a new link, once it is due.
            if let Some(node) = self.nodes.get_mut(&id) {
                node.ping_sent_ms = 0;
            }
        }
    }

    /// A FAIL message: believe it (FAIL beats PFAIL) unless it is about us.
    pub(super) fn handle_fail_message(&mut self, sender: &NodeId, failing: &NodeId) {
        if !self.is_known(sender) || *failing == self.myself {
            return;
        }
        let already = self.nodes.get(failing).is_none_or(|node| node.is_failed());
        if already {
            return;
        }
        self.set_fail(failing);
    }

    /// A PONG from a FAIL node: clear FAIL for replicas and slotless masters at once, and
    /// for a master with slots only after 2 × node_timeout (no failover happened).
    pub(super) fn clear_fail_if_needed(&mut self, id: &NodeId) {
        let now = self.now_ms;
        let undo_ms = self
            .config
            .node_timeout_ms
            .saturating_mul(FAIL_UNDO_TIME_MULT);
        let owns_slots = self.slots.count_of(id) > 0;
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        if !node.is_failed() {
            return;
        }
        let clear = node.is_replica()
            || (node.is_master() && !owns_slots)
            || now - node.fail_time_ms > undo_ms;
        if clear {
            node.flags.remove(NodeFlags::FAIL);
            node.fail_time_ms = 0;
            self.released_failed.remove(id);
            self.config_dirty = true;
            self.state_dirty = true;
            self.emit(Event::NodeRecovered(*id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_failure_report_valid, FAIL_REPORT_VALIDITY_MULT};
    use crate::core::node::{FailureReport, NodeFlags};
    use crate::core::testing::{add_node, core, drain, id, own};
    use crate::core::wire::{Body, GossipEntry};
    use crate::core::{Core, Event, Output, ReleaseReason};

    /// Me (1) and 2, 3, 4 are masters with slots; 4 is the suspect.
    fn cluster_of_four() -> Core {
        let mut core = core(1);
        own(&mut core, 1, 0..=99);
        for peer in [2, 3, 4] {
            add_node(&mut core, peer, None, u64::from(peer));
            own(
                &mut core,
                peer,
                u16::from(peer) * 100..=u16::from(peer) * 100 + 99,
            );
        }
        core
    }

    fn report_about(suspect: u8) -> GossipEntry {
        GossipEntry {
            id: id(suspect),
            ip: format!("n{suspect}"),
            client_port: 7000,
            bus_port: 17000,
            flags: NodeFlags::MASTER | NodeFlags::PFAIL,
            pong_age_ms: 5000,
            ping_pending: true,
        }
    }

    fn fail_broadcasts(outputs: &[Output]) -> usize {
        outputs
            .iter()
            .filter(|output| matches!(output, Output::Transmit { message, .. } if matches!(message.body, Body::Fail { .. })))
            .count()
    }

    #[test]
    fn a_node_fail_for_a_node_timeout_is_released_once_per_failure() {
        let mut core = cluster_of_four();
        core.handle_fail_message(&id(2), &id(4));
        drain(&mut core);
        let released = |core: &mut Core| {
            drain(core)
                .iter()
                .filter(|output| {
                    matches!(output, Output::ReleasePeer { address, reason: ReleaseReason::Failed }
                        if address == "n4:17000")
                })
                .count()
        };
        core.handle_tick(10_500);
        assert_eq!(released(&mut core), 0, "not failed for long yet");
        core.handle_tick(11_100);
        assert_eq!(released(&mut core), 1);
        core.handle_tick(12_000);
        assert_eq!(released(&mut core), 0, "once");
        core.nodes
            .get_mut(&id(4))
            .unwrap()
            .flags
            .remove(NodeFlags::FAIL);
        core.released_failed.remove(&id(4));
        core.handle_fail_message(&id(2), &id(4));
        core.handle_tick(13_100);
        assert_eq!(released(&mut core), 1, "again after a new failure");
    }

    #[test]
    fn silence_makes_pfail_and_a_majority_of_reports_makes_fail() {
        let mut core = cluster_of_four();
        let suspect = id(4);
        let record = core.nodes.get_mut(&suspect).unwrap();
        record.ping_sent_ms = core.now_ms;
        core.now_ms += 1001;
        core.detect_failures();
        assert!(core
            .node(&suspect)
            .unwrap()
            .flags
            .contains(NodeFlags::PFAIL));
        assert!(
            !core.node(&suspect).unwrap().is_failed(),
            "1 of the 3 needed"
        );
        core.note_gossip_report(&id(2), &report_about(4));
        assert!(
            !core.node(&suspect).unwrap().is_failed(),
            "2 of the 3 needed"
        );
        drain(&mut core);
        core.note_gossip_report(&id(3), &report_about(4));
        let outputs = drain(&mut core);
        assert!(core.node(&suspect).unwrap().is_failed(), "me, 2 and 3 of 4");
        assert!(outputs.contains(&Output::Event(Event::NodeFailed(suspect))));
        assert_eq!(fail_broadcasts(&outputs), 3);
    }

    #[test]
    fn a_fresh_ping_does_not_make_pfail_even_after_long_silence() {
        let mut core = cluster_of_four();
        core.now_ms += 5000;
        core.nodes.get_mut(&id(4)).unwrap().ping_sent_ms = core.now_ms - 100;
        core.detect_failures();
        assert!(!core.node(&id(4)).unwrap().is_failing());
    }

    #[test]
    fn expired_reports_do_not_count() {
        let mut core = cluster_of_four();
        core.note_gossip_report(&id(2), &report_about(4));
        core.now_ms += 2001;
        assert_eq!(core.count_failure_reports(&id(4)), 0);
    }

    #[test]
    fn a_report_is_valid_for_twice_the_node_timeout_and_saturates_at_the_extremes() {
        let report = |time_ms| FailureReport {
            reporter: id(2),
            time_ms,
        };
        assert_eq!(FAIL_REPORT_VALIDITY_MULT, 2);
        assert!(is_failure_report_valid(&report(1_000), 3_000, 1_000));
        assert!(!is_failure_report_valid(&report(1_000), 3_001, 1_000));
        // A report newer than now (a clock the caller moved back) is of age 0, not ~2^64.
        assert!(is_failure_report_valid(&report(5_000), 1_000, 0));
        // 2 × node_timeout past u64::MAX saturates: every report stays valid.
        assert!(is_failure_report_valid(
            &report(0),
            u64::MAX,
            u64::MAX / 2 + 1
        ));
        assert!(is_failure_report_valid(&report(0), u64::MAX, u64::MAX));
        assert!(!is_failure_report_valid(
            &report(0),
            u64::MAX,
            u64::MAX / 2 - 1
        ));
    }

    #[test]
    fn a_huge_node_timeout_saturates_the_report_validity_instead_of_wrapping() {
        let mut core = cluster_of_four();
        // 2 × node_timeout is 2^64: wrapped, it would be a validity of 0 ms.
        core.config.node_timeout_ms = u64::MAX / 2 + 1;
        core.note_gossip_report(&id(2), &report_about(4));
        core.now_ms += 1;
        assert_eq!(core.count_failure_reports(&id(4)), 1);
    }

    #[test]
    fn fail_on_a_master_with_slots_clears_only_after_twice_the_node_timeout() {
        let mut core = cluster_of_four();
        core.handle_fail_message(&id(2), &id(4));
        assert!(core.node(&id(4)).unwrap().is_failed());
        core.now_ms += 1000;
        core.clear_fail_if_needed(&id(4));
        assert!(core.node(&id(4)).unwrap().is_failed());
        core.now_ms += 1001;
        core.clear_fail_if_needed(&id(4));
        assert!(!core.node(&id(4)).unwrap().is_failed());
    }

    #[test]
    fn fail_on_a_replica_clears_at_once() {
        let mut core = cluster_of_four();
        add_node(&mut core, 5, Some(2), 2);
        core.handle_fail_message(&id(2), &id(5));
        assert!(core.node(&id(5)).unwrap().is_failed());
        core.clear_fail_if_needed(&id(5));
        assert!(!core.node(&id(5)).unwrap().is_failed());
    }

    #[test]
    fn a_released_failed_node_that_keeps_pinging_us_is_pinged_again_and_its_fail_clears() {
        let mut core = cluster_of_four();
        // No failure-report pushes: the silent n2 and n3 would make this node ping n4.
        core.config.fast_failure_push = false;
        // Our PING to n4 is in flight when it fails; then its link is released.
        core.send_ping(id(4), crate::core::gossip::PingKind::Ping);
        core.handle_fail_message(&id(2), &id(4));
        drain(&mut core);
        let pings_to_4 = |outputs: &[Output]| {
            outputs
                .iter()
                .filter(|output| {
                    matches!(output, Output::Transmit { to, message }
                        if to.address == "n4:17000" && matches!(message.body, Body::Ping(_)))
                })
                .count()
        };
        let mut pinged = 0;
        for now_ms in (10_100..=20_000).step_by(100) {
            // n4 is back and pings us every tick: its PINGs are not PONGs.
            let message = crate::core::wire::Message {
                header: crate::core::testing::header(4, None, 4, &[]),
                body: Body::Ping(Vec::new()),
            };
            core.handle_message(now_ms, "n4:17000", message);
            core.handle_tick(now_ms);
            pinged += pings_to_4(&drain(&mut core));
        }
        assert!(
            pinged > 0,
            "n4 was never pinged after its link was released"
        );
        let pong = crate::core::wire::Message {
            header: crate::core::testing::header(4, None, 4, &[]),
            body: Body::Pong(Vec::new()),
        };
        core.handle_message(20_100, "n4:17000", pong);
        drain(&mut core);
        assert!(!core.nodes[&id(4)].is_failed(), "its PONG clears FAIL");
    }
}
