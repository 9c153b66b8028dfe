//! Timers as data: the cron deadline plus the election deadline, and the tick entry point.
//!
//! The caller asks [`Core::poll_timeout`] for the next deadline and calls
//! [`Core::handle_tick`] when it is reached (calling it more often is harmless: the cron
//! body runs at most once per [`TICK_INTERVAL_MS`]).

use crate::core::{Core, TICK_INTERVAL_MS};

/// The cron's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timers {
    /// When the cron body runs next (`now` ms).
    pub(crate) next_cron_ms: u64,
    /// How many times the cron body ran (every 10th run pings a random node).
    pub(crate) cron_runs: u64,
}

impl Timers {
    pub(crate) fn new(now_ms: u64) -> Timers {
        Timers {
            next_cron_ms: now_ms + TICK_INTERVAL_MS,
            cron_runs: 0,
        }
    }
}

impl Core {
    /// The next time (`now` ms) at which [`Core::handle_tick`] must be called.
    pub fn poll_timeout(&self) -> u64 {
        let mut deadline = self.timers.next_cron_ms;
        if let Some(election_ms) = self.failover.pending_deadline_ms() {
            if election_ms > self.now_ms {
                deadline = deadline.min(election_ms);
            }
        }
        deadline
    }

    /// Time passes: runs the cron when due (every [`TICK_INTERVAL_MS`]) and any due election.
    pub fn handle_tick(&mut self, now_ms: u64) {
        self.advance(now_ms);
        if self.now_ms >= self.timers.next_cron_ms {
            self.timers.next_cron_ms = self.now_ms + TICK_INTERVAL_MS;
            self.timers.cron_runs += 1;
            self.run_cron();
        }
        self.handle_replica_failover();
        self.handle_restart_progress();
        self.handle_failed_former_master();
        self.finish_input();
    }

    /// The cron body (`clusterCron`).
    fn run_cron(&mut self) {
        self.state_dirty = true;
        self.expire_handshakes();
        self.expire_blacklist();
        self.send_handshake_messages();
        if self.timers.cron_runs.is_multiple_of(10) {
            self.ping_random_node();
        }
        self.ping_due_nodes();
        self.detect_failures();
        self.release_long_failed_peers();
        self.handle_manual_failover_timeout();
        self.handle_manual_failover_progress();
        self.handle_replica_migration();
        self.follow_master_of_master();
        self.handle_formation();
    }
}
