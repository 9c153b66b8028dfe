//! Counters of inbound connections the endpoint refused and inbound links it closed on a
//! peer's fault, by cause: what [`Endpoint::statistics`](crate::Endpoint::statistics)
//! reports. Each refusal is also logged (warn) with the remote and the reason, and reported as
//! a [`TransportEvent`](crate::TransportEvent).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::LinkError;

/// A snapshot of an endpoint's refusal counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStatistics {
    /// Inbound connections refused because a bound was reached: handshakes in flight
    /// (global or from one source address) or `inbound_links_max`.
    pub inbound_refused_overloaded: u64,
    /// Inbound connections that failed authentication (wrong cluster secret or certificate,
    /// not the slotkv handshake, closed mid-handshake).
    pub inbound_refused_authentication: u64,
    /// Inbound connections refused for a malformed preamble or hello (unknown channel,
    /// wrong magic, bad address).
    pub inbound_refused_protocol: u64,
    /// Inbound connections that did not finish the handshake or send their hello in time.
    pub inbound_refused_timeout: u64,
    /// Inbound connections refused for any other cause (TLS setup, I/O errors).
    pub inbound_refused_other: u64,
    /// Established inbound links closed because a frame announced more than the channel's
    /// maximum (nothing of that size was allocated).
    pub inbound_closed_frame_too_large: u64,
    /// Established inbound links closed for a protocol violation (a truncated frame, a
    /// malformed request envelope).
    pub inbound_closed_protocol: u64,
}

/// The live counters (relaxed atomics: monitoring, not synchronisation).
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    refused_overloaded: AtomicU64,
    refused_authentication: AtomicU64,
    refused_protocol: AtomicU64,
    refused_timeout: AtomicU64,
    refused_other: AtomicU64,
    closed_frame_too_large: AtomicU64,
    closed_protocol: AtomicU64,
}

impl LinkCounters {
    /// Counts an inbound connection refused before it carried frames.
    pub(crate) fn count_refused(&self, reason: &LinkError) {
        let counter = match reason {
            LinkError::Overloaded(_) => &self.refused_overloaded,
            LinkError::Authentication(_) => &self.refused_authentication,
            LinkError::Protocol(_) | LinkError::FrameTooLarge { .. } | LinkError::Address(_) => {
                &self.refused_protocol
            }
            LinkError::Timeout { .. } => &self.refused_timeout,
            LinkError::PeerClosed
            | LinkError::Tls(_)
            | LinkError::Io(_)
            | LinkError::Unreachable(_)
            | LinkError::LocalClose => &self.refused_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an established inbound link closed on the peer's fault; a clean close or a
    /// local one is not counted.
    pub(crate) fn count_closed(&self, reason: &LinkError) {
        let counter = match reason {
            LinkError::FrameTooLarge { .. } => &self.closed_frame_too_large,
            LinkError::Protocol(_) => &self.closed_protocol,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LinkStatistics {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LinkStatistics {
            inbound_refused_overloaded: load(&self.refused_overloaded),
            inbound_refused_authentication: load(&self.refused_authentication),
            inbound_refused_protocol: load(&self.refused_protocol),
            inbound_refused_timeout: load(&self.refused_timeout),
            inbound_refused_other: load(&self.refused_other),
            inbound_closed_frame_too_large: load(&self.closed_frame_too_large),
            inbound_closed_protocol: load(&self.closed_protocol),
        }
    }
}
