//! Endpoint configuration: every queue, timeout and retry bound of the peer manager, named
//! with its unit and given a documented default.
//!
//! Transport-specific settings (the TCP cluster secret, QUIC certificates) live in the
//! transport's own config; this one is shared by every transport.

use crate::channel::{FrameLimits, FRAME_BYTES_MAX_LIMIT};
use crate::error::ConfigError;

/// Bounded exponential backoff between reconnection attempts.
///
/// Attempt `n` (starting at 1) waits a uniformly random delay in
/// `[d/2, d]` where `d = min(delay_ms_max, delay_ms_base * 2^(n-1))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// First delay in milliseconds (default 50; range 1..=`delay_ms_max`).
    pub delay_ms_base: u64,
    /// Cap on any delay in milliseconds (default 5 000).
    pub delay_ms_max: u64,
}

impl Default for BackoffConfig {
    fn default() -> BackoffConfig {
        BackoffConfig {
            delay_ms_base: 50,
            delay_ms_max: 5_000,
        }
    }
}

/// Bounds and defaults of an [`Endpoint`](crate::Endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Maximum frame length per channel, in bytes, for sending and receiving.
    pub frame_limits: FrameLimits,
    /// Frames queued per peer on [`Channel::Bus`](crate::Channel::Bus) before new ones are dropped
    /// and counted (default 1 024).
    pub bus_queue_frames_max: usize,
    /// Frames queued per peer on [`Channel::Bulk`](crate::Channel::Bulk) before `send_bulk`
    /// waits (default 64).
    pub bulk_queue_frames_max: usize,
    /// Requests queued per peer before `request` waits (default 256).
    pub request_queue_frames_max: usize,
    /// Requests outstanding per peer (sent, not yet answered) before `request` waits for a slot;
    /// also the size of each inbound link's response queue (default 1 024).
    pub requests_outstanding_max: usize,
    /// Inbound frames queued per channel (over all peers) before link readers wait, which
    /// pushes back on the senders through flow control (default 1 024).
    pub inbound_queue_frames_max: usize,
    /// Inbound links served at once; further accepted links are refused and reported as
    /// [`TransportEvent::Rejected`](crate::TransportEvent::Rejected) (default 4 096).
    pub inbound_links_max: usize,
    /// Lifecycle events queued before new ones are dropped and counted (default 4 096).
    pub event_queue_max: usize,
    /// Limit on opening one link, including the transport's authentication (default 5 000 ms).
    pub connect_timeout_ms: u64,
    /// Limit on receiving the hello that names an inbound link's peer (default 5 000 ms).
    pub hello_timeout_ms: u64,
    /// Default timeout of [`Endpoint::request`](crate::Endpoint::request) (default 5 000 ms).
    pub request_timeout_ms: u64,
    /// Reconnection backoff.
    pub backoff: BackoffConfig,
    /// Seed of the backoff jitter generator; `None` draws one from the operating system.
    pub jitter_seed: Option<u64>,
}

impl Default for EndpointConfig {
    fn default() -> EndpointConfig {
        EndpointConfig {
            frame_limits: FrameLimits::default(),
            bus_queue_frames_max: 1_024,
            bulk_queue_frames_max: 64,
            request_queue_frames_max: 256,
            requests_outstanding_max: 1_024,
            inbound_queue_frames_max: 1_024,
            inbound_links_max: 4_096,
            event_queue_max: 4_096,
            connect_timeout_ms: 5_000,
            hello_timeout_ms: 5_000,
            request_timeout_ms: 5_000,
            backoff: BackoffConfig::default(),
            jitter_seed: None,
        }
    }
}

impl EndpointConfig {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let limits = &self.frame_limits;
        check_frame_limit(
            "frame_limits.bus_frame_bytes_max",
            limits.bus_frame_bytes_max,
        )?;
        check_frame_limit(
            "frame_limits.bulk_frame_bytes_max",
            limits.bulk_frame_bytes_max,
        )?;
        check_frame_limit(
            "frame_limits.request_frame_bytes_max",
            limits.request_frame_bytes_max,
        )?;
        let positive = [
            ("bus_queue_frames_max", self.bus_queue_frames_max as u64),
            ("bulk_queue_frames_max", self.bulk_queue_frames_max as u64),
            (
                "request_queue_frames_max",
                self.request_queue_frames_max as u64,
            ),
            (
                "requests_outstanding_max",
                self.requests_outstanding_max as u64,
            ),
            (
                "inbound_queue_frames_max",
                self.inbound_queue_frames_max as u64,
            ),
            ("inbound_links_max", self.inbound_links_max as u64),
            ("event_queue_max", self.event_queue_max as u64),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("hello_timeout_ms", self.hello_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("backoff.delay_ms_base", self.backoff.delay_ms_base),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError {
                    field,
                    problem: "must be at least 1".to_string(),
                });
            }
        }
        if self.backoff.delay_ms_max < self.backoff.delay_ms_base {
            return Err(ConfigError {
                field: "backoff.delay_ms_max",
                problem: "must be at least backoff.delay_ms_base".to_string(),
            });
        }
        Ok(())
    }
}

fn check_frame_limit(field: &'static str, value: usize) -> Result<(), ConfigError> {
    // The request header (9 bytes) and the hello must fit in any channel.
    const FRAME_BYTES_MIN: usize = 512;
    if !(FRAME_BYTES_MIN..=FRAME_BYTES_MAX_LIMIT).contains(&value) {
        return Err(ConfigError {
            field,
            problem: format!("must be within {FRAME_BYTES_MIN}..={FRAME_BYTES_MAX_LIMIT} bytes"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_configuration_is_valid() {
        assert_eq!(EndpointConfig::default().validate(), Ok(()));
    }

    #[test]
    fn zero_queue_and_inverted_backoff_are_rejected() {
        let mut config = EndpointConfig {
            bus_queue_frames_max: 0,
            ..EndpointConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "bus_queue_frames_max");
        config.bus_queue_frames_max = 1;
        config.backoff.delay_ms_max = 1;
        assert_eq!(config.validate().unwrap_err().field, "backoff.delay_ms_max");
    }
}
