//! The budget of unauthenticated connections a listener holds: a global bound and a bound per
//! source IP address, shared by the TCP and QUIC listeners.
//!
//! Before a peer has proven the cluster secret (TCP) or its certificate (QUIC), all a
//! listener knows of it is its source address. Without a per-source bound one client holding
//! every handshake slot for the handshake timeout would keep every real peer out; with it, such
//! a client holds at most its share, and real peers from other addresses still get in. A
//! permit is held from accept until the handshake ends (success, failure or timeout).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::LinkError;

/// Counts handshakes in flight, in total and per source address. The per-source map only
/// holds addresses with a handshake in flight, so it is bounded by the global bound.
pub(crate) struct SourceBudget {
    in_flight_max: usize,
    per_source_max: NonZeroUsize,
    state: Mutex<InFlight>,
}

#[derive(Default)]
struct InFlight {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One handshake's place in the budget, given back when dropped.
pub(crate) struct SourcePermit {
    budget: Arc<SourceBudget>,
    source: IpAddr,
}

impl SourceBudget {
    /// A budget of `in_flight_max` handshakes at once, at most `per_source_max` of them from
    /// one source address.
    pub(crate) fn new(in_flight_max: usize, per_source_max: NonZeroUsize) -> Arc<SourceBudget> {
        Arc::new(SourceBudget {
            in_flight_max,
            per_source_max,
            state: Mutex::new(InFlight::default()),
        })
    }

    /// A permit for one more handshake from `source`, or the bound that refuses it
    /// ([`LinkError::Overloaded`], naming the configuration field).
    pub(crate) fn try_acquire(
        self: &Arc<SourceBudget>,
        source: IpAddr,
    ) -> Result<SourcePermit, LinkError> {
        let source = source.to_canonical();
        let mut state = self.state.lock();
        let from_source = state.by_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.per_source_max.get() {
            return Err(LinkError::Overloaded(format!(
                "{from_source} handshakes from {source} already in flight \
                 (handshakes_in_flight_per_source_max)"
            )));
        }
        if state.total >= self.in_flight_max {
            return Err(LinkError::Overloaded(format!(
                "{} handshakes already in flight (handshakes_in_flight_max)",
                state.total
            )));
        }
        state.total += 1;
        *state.by_source.entry(source).or_insert(0) += 1;
        Ok(SourcePermit {
            budget: Arc::clone(self),
            source,
        })
    }

    /// Handshakes in flight now (total, and from `source`).
    #[cfg(test)]
    pub(crate) fn in_flight(&self, source: IpAddr) -> (usize, usize) {
        let state = self.state.lock();
        let from_source = state.by_source.get(&source.to_canonical()).copied();
        (state.total, from_source.unwrap_or(0))
    }
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        let mut state = self.budget.state.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                state.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_source_gets_its_share_and_other_sources_the_rest() {
        let budget = SourceBudget::new(5, NonZeroUsize::new(2).unwrap());
        let flooding = [
            budget.try_acquire(ip("10.0.0.1")).unwrap(),
            budget.try_acquire(ip("10.0.0.1")).unwrap(),
        ];
        let refused = budget.try_acquire(ip("10.0.0.1")).err().unwrap();
        assert!(refused.to_string().contains("per_source"), "{refused}");
        let others: Vec<SourcePermit> = ["10.0.0.2", "10.0.0.2", "10.0.0.3"]
            .into_iter()
            .map(|source| budget.try_acquire(ip(source)).unwrap())
            .collect();
        let full = budget.try_acquire(ip("10.0.0.4")).err().unwrap();
        assert!(
            full.to_string().contains("handshakes_in_flight_max"),
            "{full}"
        );
        drop(flooding);
        assert_eq!(budget.in_flight(ip("10.0.0.1")), (3, 0));
        assert!(budget.try_acquire(ip("10.0.0.1")).is_ok());
        drop(others);
        assert!(
            budget.state.lock().by_source.is_empty(),
            "no entry outlives its permits"
        );
    }

    #[test]
    fn an_ipv4_mapped_ipv6_source_counts_as_its_ipv4_address() {
        let budget = SourceBudget::new(8, NonZeroUsize::new(1).unwrap());
        let _held = budget.try_acquire(ip("192.0.2.7")).unwrap();
        assert!(budget.try_acquire(ip("::ffff:192.0.2.7")).is_err());
    }
}
